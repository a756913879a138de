"""The qata-ssl tables from the committed cells: `python results/qata-ssl/table.py` prints Markdown.

`--write` puts both into README.md instead.

1. One row per cell (test Dice, the same with the test reports shuffled across images, epochs).
2. The headline: per method and ratio the test Dice (global, mean +- std over seeds), its gain over supervised
   and over cutmix. Where both sides have `eval-test/per_case.csv`, the gain comes from `medref compare`'s
   statistics (a 95 % interval over seeds and images, Wilcoxon p on per-image Dice); where one side has only its
   summary (qata-ratios' cells, whose checkpoints were not kept), from the seeds alone (paired by seed: a t
   interval over the seed differences and a paired t-test p), marked "seeds". The p-values of the whole table
   are Holm-adjusted together. Only seeds both sides finished are paired.
3. The components: per part of Semi-MedRef (T-PatchMix, PosAug, ITCL, the three together) the default semi-train
   minus its ablation at 2 % (the part's effect; positive: the part helps), and the three-part ablation minus cutmix
   (what the medref recipe takes from the reports besides them), the same and each of those two alone over cutmix
   re-run on the machine of the later cells (`cutmix-rerun`), and the
   sharpened-ITCL lever over no ITCL and over the default (lever runs of ../levers/runs/, where committed), with
   the same statistics; Holm-adjusted together.
   A second table splits each effect (and Semi-MedRef's whole gain over cutmix) by the side the test report names.
4. The project README's matrix (methods x ratios): the headline's figures in one cell each, 3 decimals; a gain is
   in bold where it is a claim (3 seeds or more, its interval excludes 0, Holm p < 0.05, and the t interval over the
   per-seed differences excludes 0 where the gain was compared per image).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from medref_cli.stages.compare import by_lesion_size, by_report_side, holm, paired_stats, side_of  # noqa: E402

CELL = re.compile(r"t1-(?P<method>.+)-qata-(?P<ratio>\d+pct)-s(?P<seed>\d+)$")
# the qata-ssl queue's lever runs at 2 % (`lever NAME SEED` lines; ../levers/NAME.yaml over the default semi-train),
# committed under ../levers/runs/ by commit_cell.sh; their method is the lever's name
LEVER = re.compile(r"lever-(?P<method>.+)-semi-(?P<ratio>2pct)-s(?P<seed>\d+)$")
NO_PAPER = "semi-medref-no-t-patchmix-no-pos-aug-no-itcl"  # what is left: cutmix + side-clipped box + side gate
# lever runs that are a table1 cell's config at more seeds (3, 4): read as that cell's seeds
SAME_AS = {"default": "semi-medref", "three-parts-off": NO_PAPER}
ORDER = ("supervised", "mean-teacher", "cutmix", "semi-medref", "semi-medref-no-t-patchmix",
         "semi-medref-no-pos-aug", "semi-medref-no-itcl", NO_PAPER)
RATIOS = ("1pct", "2pct", "5pct")
# (label, with the part, without it): the paper's three parts one at a time and together, and what the medref recipe
# adds to CutMix from the reports (the box clipped to the lung halves both reports name, the side gate)
PARTS = (("T-PatchMix", "semi-medref", "semi-medref-no-t-patchmix"),
         ("PosAug", "semi-medref", "semi-medref-no-pos-aug"),
         ("ITCL", "semi-medref", "semi-medref-no-itcl"),
         ("the three together", "semi-medref", NO_PAPER),
         ("side-clipped CutMix + side gate (over cutmix)", NO_PAPER, "cutmix"),
         ("side-clipped CutMix + side gate (over cutmix re-run on the same machine)", NO_PAPER, "cutmix-rerun"),
         ("side-clipped CutMix box alone (over the cutmix re-run)", "side-box-only", "cutmix-rerun"),
         ("side gate alone (over the cutmix re-run)", "side-gate-only", "cutmix-rerun"),
         ("ITCL with its targets sharpened (`itc-power4` lever, over no ITCL)", "itc-power4", "semi-medref-no-itcl"),
         ("the `itc-power4` lever over the default", "itc-power4", "semi-medref"))
LABELS = {"supervised": "supervised (`pretrain`)", "mean-teacher": "mean teacher", "cutmix": "CutMix",
          "semi-medref": "**Semi-MedRef** (`semi-train`)", "semi-medref-no-t-patchmix": "Semi-MedRef without T-PatchMix",
          "semi-medref-no-pos-aug": "Semi-MedRef without PosAug", "semi-medref-no-itcl": "Semi-MedRef without ITCL",
          NO_PAPER: "Semi-MedRef without all three (CutMix, side-clipped, + side gate)"}


def cells() -> dict[tuple[str, str], dict[int, Path]]:
    """{(method, ratio): {seed: run folder}}: this study's runs, then qata-ratios' for what this study lacks."""
    out: dict[tuple[str, str], dict[int, Path]] = {}
    for root in (HERE / "runs", HERE.parent / "qata-ratios" / "runs", HERE.parent / "levers" / "runs"):
        for run in sorted(root.iterdir()) if root.is_dir() else []:
            m = CELL.match(run.name) or LEVER.match(run.name)
            if m and m["ratio"] in RATIOS and _summary(run) is not None:
                method = SAME_AS.get(m["method"], m["method"])
                out.setdefault((method, m["ratio"]), {}).setdefault(int(m["seed"]), run)
    return out


def _summary(run: Path) -> dict | None:
    for path in (run / "eval-test" / "summary.json", run / "eval-test-summary.json"):
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _dice(run: Path) -> float:
    return _summary(run)["protocols"]["global"]["dice"]


def _strata(rows: list[dict]) -> dict[str, dict]:
    """compare's strata -> {stratum: {diff, ci, n}} (the interval over seeds and images where there are several)."""
    return {z["stratum"]: {"diff": z["diff"], "ci": z["ci_seeds_and_cases"] or z["ci_cases"], "n": z["n_images"]}
            for z in rows}


def _gain(a: dict[int, Path], b: dict[int, Path]) -> dict | None:
    """A - B in global Dice over the seeds both have: per image where both have per-case scores, else per seed."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    if all((r / "eval-test" / "per_case.csv").is_file() for r in [*(a[s] for s in seeds), *(b[s] for s in seeds)]):
        sa, sb = side_of([a[s] for s in seeds]), side_of([b[s] for s in seeds])
        st = paired_stats(sa.counts, sb.counts)
        g = st["global_dice"]
        im = st["per_image_dice"]
        # with one seed a side, the images' interval and p hold these two models only, not the training noise
        return {"diff": g["diff"], "ci": g["ci_seeds_and_cases"] or g["ci_cases"],
                "p": im["wilcoxon_p"] if len(seeds) > 1 else None, "t": g["seeds_t"],
                "level": "images", "n": len(seeds),
                "per_image": {"diff": im["diff"], "ci": im["ci_seeds_and_cases"] or im["ci_cases"]},
                "by_size": _strata(by_lesion_size(sa.counts, sb.counts)),
                "by_side": _strata(by_report_side(sa.counts, sb.counts, sa.zones)) if sa.zones else {}}
    d = [_dice(a[s]) - _dice(b[s]) for s in seeds]
    mean = statistics.fmean(d)
    if len(d) < 2:
        return {"diff": mean, "ci": None, "p": None, "level": "seeds", "n": 1}
    half = stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / len(d) ** 0.5
    p = float(stats.ttest_rel([_dice(a[s]) for s in seeds], [_dice(b[s]) for s in seeds]).pvalue) \
        if statistics.stdev(d) > 0 else (0.0 if mean else 1.0)
    return {"diff": mean, "ci": [mean - half, mean + half], "p": p, "level": "seeds", "n": len(d)}


def tables() -> dict[str, str]:
    """{"cells": the per-cell table, "headline": the headline table}, as Markdown."""
    found = cells()
    lines = ["| cell | test Dice global | per-image | with the reports shuffled (global) | epochs (best) |",
             "|---|---|---|---|---|"]
    for run in sorted((HERE / "runs").iterdir()) if (HERE / "runs").is_dir() else []:
        s, info = _summary(run), json.loads((run / "run.json").read_text())
        if s is not None:
            shuffled = (s.get("text_ablation") or {}).get("shuffled")
            lines.append(f"| {run.name} | {s['protocols']['global']['dice']:.4f} | "
                         f"{s['protocols']['per_image']['dice']:.4f} | "
                         + ("-" if not shuffled else f"{shuffled['global']['dice']:.4f}")
                         + f" | {info['epochs_done']} ({info['best_epoch']}) |")
    out = {"cells": "\n".join(lines)}
    rows, gains = [], []
    for ratio in RATIOS:
        for method in ORDER:
            mine = found.get((method, ratio))
            if not mine:
                continue
            vals = [_dice(r) for r in mine.values()]
            row = {"method": method, "ratio": ratio, "dice": vals}
            for ref in ("supervised", "cutmix"):
                if method not in (ref, "supervised") and (ref, ratio) in found:
                    row[ref] = _gain(mine, found[(ref, ratio)])
                    if row[ref] and row[ref]["p"] is not None:
                        gains.append(row[ref])
            rows.append(row)
    for g, p in zip(gains, holm([g["p"] for g in gains]), strict=True):
        g["p_holm"] = p

    def fmt(g: dict | None) -> str:
        if not g:
            return "-"
        ci = "" if g["ci"] is None else f" [{g['ci'][0]:+.4f}, {g['ci'][1]:+.4f}]"
        p = "" if g["p"] is None else f", p {g['p']:.2g} (Holm {g['p_holm']:.2g})"
        seeds = f"{g['n']} seeds" if g["n"] > 1 else "1 seed: the images' interval only, no claim"
        t = "" if not g.get("t") else f"; seeds' t [{g['t']['ci'][0]:+.4f}, {g['t']['ci'][1]:+.4f}], p {g['t']['p']:.2g}"
        return f"{g['diff']:+.4f}{ci}{p}; {g['level']}, {seeds}{t}"

    lines = ["| ratio | method | test Dice (global) | gain over supervised | gain over cutmix |", "|---|---|---|---|---|"]
    for r in rows:
        v = r["dice"]
        dice = (f"{statistics.fmean(v):.4f} ± {statistics.stdev(v):.4f} ({len(v)} seeds)" if len(v) > 1
                else f"{v[0]:.4f} (1 seed)")
        lines.append(f"| {r['ratio'].replace('pct', ' %')} | {r['method']} | {dice} | {fmt(r.get('supervised'))} | "
                     f"{fmt(r.get('cutmix'))} |")
    out["headline"] = "\n".join(lines)
    out["matrix"] = _matrix(rows)
    parts = []
    for label, with_it, without in PARTS:
        full, ablated = found.get((with_it, "2pct"), {}), found.get((without, "2pct"), {})
        seeds = set(full) & set(ablated)  # the seeds compared, as in _gain
        if seeds:
            parts.append((label, statistics.fmean(_dice(ablated[s]) for s in seeds), _gain(full, ablated)))
    tested = [g for _, _, g in parts if g["p"] is not None]
    for g, p in zip(tested, holm([g["p"] for g in tested]), strict=True):
        g["p_holm"] = p

    def interval(im: dict | None) -> str:
        return "-" if im is None else f"{im['diff']:+.4f} [{im['ci'][0]:+.4f}, {im['ci'][1]:+.4f}]"

    lines = ["| part | test Dice without it (global, mean over the seeds compared) | its effect on global Dice: with "
             "it minus without | its effect on per-image Dice | on small lesions | medium | large |", "|---" * 7 + "|"]
    lines += [f"| {label} | {dice:.4f} | {fmt(g)} | {interval(g.get('per_image'))} | "
              + " | ".join(interval(g.get("by_size", {}).get(z)) for z in ("small", "medium", "large")) + " |"
              for label, dice, g in parts]
    out["components"] = "\n".join(lines)
    whole = [("Semi-MedRef over cutmix (the whole gain)", _gain(found[("semi-medref", "2pct")], found[("cutmix", "2pct")]))
             if ("semi-medref", "2pct") in found and ("cutmix", "2pct") in found else None]
    rows = [(label, g) for label, _, g in parts] + [w for w in whole if w]
    n = {z: v["n"] for _, g in rows for z, v in g.get("by_side", {}).items()}
    sides = [z for z in ("left", "right", "bilateral", "none") if z in n]
    names = {"left": "left lung only", "right": "right lung only", "bilateral": "both lungs", "none": "no side"}
    lines = ["| part | " + " | ".join(f"report: {names[z]} ({n[z]} images)" for z in sides) + " |",
             "|---|" + "---|" * len(sides)]
    lines += [f"| {label} | " + " | ".join(interval(g.get("by_side", {}).get(z)) for z in sides) + " |"
              for label, g in rows]
    out["components-sides"] = "\n".join(lines)
    return out


def _claim(g: dict) -> bool:
    """A gain is a claim with 3 seeds or more, an interval that excludes 0 and a Holm-adjusted p below 0.05, and,
    where the gain was compared per image, a t interval over the per-seed differences that excludes 0 too (with 3
    seeds the bootstrap's seed stage draws from three values)."""
    excludes_0 = lambda ci: ci[0] > 0 or ci[1] < 0  # noqa: E731
    return (g["n"] >= 3 and g["ci"] is not None and excludes_0(g["ci"])
            and g["p"] is not None and g["p_holm"] < 0.05 and (not g.get("t") or excludes_0(g["t"]["ci"])))


def _matrix(rows: list[dict]) -> str:
    """The README's table: one row per method, one column per ratio; a cell holds the test Dice and its gains."""
    def short(g: dict | None, ref: str) -> str:
        if not g:
            return ""
        # one seed a side: the images' interval leaves the training noise out, so the matrix shows the difference only
        ci = "" if g["ci"] is None or g["n"] < 2 else f" [{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}]"
        p = "" if g["p"] is None else f" p<sub>Holm</sub> {g['p_holm']:.2g}"
        text = f"{g['diff']:+.3f}{ci}{p} vs {ref}"
        return f"<br>**{text}**" if _claim(g) else f"<br>{text}"

    by = {(r["method"], r["ratio"]): r for r in rows}
    lines = ["| method | " + " | ".join(r.replace("pct", " %") for r in RATIOS) + " |",
             "|---|" + "---|" * len(RATIOS)]
    for method in ORDER:
        if not any((method, ratio) in by for ratio in RATIOS):
            continue
        cells = []
        for ratio in RATIOS:
            r = by.get((method, ratio))
            if r is None:
                cells.append("")
                continue
            v = r["dice"]
            dice = (f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}")
            seeds = "" if len(v) >= 3 else f" ({len(v)} seed{'s' if len(v) > 1 else ''})"
            cells.append(dice + seeds + short(r.get("supervised"), "supervised") + short(r.get("cutmix"), "CutMix"))
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_blocks(path: Path, blocks: dict[str, str]) -> None:
    """Rewrite `path` with each table of `blocks` between `<!-- NAME -->` and `<!-- /NAME -->`."""
    text = path.read_text()
    for name, table in blocks.items():
        begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        if begin not in text or end not in text:
            raise SystemExit(f"{path}: no {begin} ... {end} block")
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
    path.write_text(text)


def main() -> None:
    """Print the tables; with `--write`, put them between `<!-- NAME -->` and `<!-- /NAME -->`: the matrix into the
    project README (block `qata-ssl`), the others into this folder's README.md."""
    out = tables()
    if "--write" not in sys.argv[1:]:
        print("\n\n".join(out.values()))
        return
    _write_blocks(HERE.parents[1] / "README.md", {"qata-ssl": out.pop("matrix")})
    _write_blocks(HERE / "README.md", out)


if __name__ == "__main__":
    main()
