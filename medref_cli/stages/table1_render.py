"""Writing Table 1: `table1.csv` (one row per cell), `table1.md` (mean ± std per method and column, per
dataset) and `table1.png`."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path
from typing import Any

from medref_cli.artifacts import EvalSummary
from medref_cli.config import load_run_config
from medref_cli.stages.table1_matrix import Cell
from medref_cli.workspace import Workspace, write_bytes_atomic

METRICS = ("dice", "iou", "shuffled")  # table columns per ratio/budget: global Dice, IoU, shuffled-text Dice


def write_outputs(out: Path, profile: str, prof: dict[str, Any], cells: list[Cell], ws: Workspace,
                  wall_s: float) -> None:
    """table1.csv (one row per cell), table1.md (mean ± std per method and column, per dataset) and table1.png."""
    from medref_cli.plots import panels_plot

    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "table1.csv", _csv(cells).encode())
    md = [f"# Table 1 — profile `{profile}` (preset `{prof['preset']}`)", ""]
    panels = []
    comparisons = against_supervised(cells)
    better = {k for k, (_, _, ok) in comparisons.items() if ok}
    for ds in dict.fromkeys(c.dataset for c in cells):
        mine = [c for c in cells if c.dataset == ds]
        columns = list(dict.fromkeys(c.column for c in mine))
        methods = list(dict.fromkeys(c.method for c in mine))
        stats = {(m, col, metric): _mean_std([v for c in mine if (c.method, c.column) == (m, col)
                                              for v in [_metric(c.summary, metric)] if v is not None])
                 for m in methods for col in columns for metric in METRICS}
        md += _markdown(ds, mine, columns, methods, stats, {(m, col) for d, m, col in better if d == ds})
        md += _comparison_lines(ds, comparisons)
        series = {m: [(k, stats[(m, col, "dice")][0], stats[(m, col, "dice")][1])
                      for k, col in enumerate(columns) if stats[(m, col, "dice")][2]] for m in methods}
        panels.append((f"{ds}: test Dice (global), mean ± std over seeds", series, columns))
    failed = [c for c in cells if c.status == "failed"]
    trained = [c.train_s for c in cells if c.train_s is not None]
    recorded = f" (the runs' own training time: {sum(trained) / 60:.1f} min)" if trained else ""
    md += [f"{len(cells)} cells, {len(failed)} failed; wall time {wall_s / 60:.1f} min{recorded}.", ""]
    md += [_machines(cells), ""]
    md += [f"- failed: {c.dataset} {c.column} {c.method} seed {c.seed}: {c.error}" for c in failed]
    write_bytes_atomic(out / "table1.md", ("\n".join(md) + "\n").encode())
    x_title = "label ratio, CPU budget per run" if prof.get("budgets") else "labelled share"
    panels_plot(panels, out / "table1.png", x_title, "Dice %")


def _machines(cells: list[Cell]) -> str:
    """Where the cells' runs trained (their `environment.jsonl`; CPU figures differ from machine to machine by float
    noise), e.g. "Trained on: cpu AVX512, 1 thread, torch 2.13.0+cpu (30 runs)."."""
    from collections import Counter

    from medref_cli.training.environment import machine_of

    seen = Counter(machine_of(Path(c.run)) or "not recorded" for c in cells if c.run and c.summary is not None)
    return "Trained on: " + "; ".join(f"{m} ({n} run{'s' if n > 1 else ''})" for m, n in seen.most_common()) + "."


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _csv(cells: list[Cell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "ratio", "budget_min", "method", "seed", "status", "dice_global", "iou_global",
                "dice_per_image", "iou_per_image", "text_gap_shuffled", "run", "split_file", "split_sha256",
                "dataset_hash", "wall_s", "train_s", "error"])
    for c in cells:
        p = c.summary.protocols if c.summary else {"global": {}, "per_image": {}}
        gap = c.summary.shuffled_gap if c.summary else None
        split = Path(c.run) / "split.json" if c.run else Path("-")
        data = load_run_config(Path(c.run)).data if c.run and (Path(c.run) / "config.yaml").is_file() else None
        w.writerow([c.dataset, c.ratio, "" if c.budget is None else c.budget, c.method, c.seed, c.status,
                    p["global"].get("dice", ""), p["global"].get("iou", ""),
                    p["per_image"].get("dice", ""), p["per_image"].get("iou", ""), "" if gap is None else gap,
                    c.run, data.split_file if data else "", _sha(split), data.dataset_hash if data else "",
                    round(c.wall_s, 1), "" if c.train_s is None else round(c.train_s, 1), c.error])
    return buf.getvalue()


def _metric(summary: EvalSummary | None, metric: str) -> float | None:
    """A table figure in %: the global Dice / IoU, or the global Dice with the captions shuffled across images."""
    if summary is None:
        return None
    if metric == "shuffled":
        return None if summary.text_ablation is None else 100 * summary.text_ablation["shuffled"]["global"]["dice"]
    return 100 * summary.protocols["global"][metric]


def _markdown(ds: str, cells: list[Cell], columns: list[str], methods: list[str],
              stats: dict[tuple[str, str, str], tuple[float, float, int]],
              better: set[tuple[str, str]] = frozenset()) -> list[str]:
    """One dataset's table: bold = best per column; † = (method, column) in `better`, i.e. better than
    supervised by the paired comparison (`against_supervised`). The shuffled-text column shows how much the
    model leans on the report (far below Dice: it uses the text)."""
    seeds = sorted({c.seed for c in cells})
    md = [f"**{ds}** — Dice and IoU (%) on the test split, **global protocol** (true/false positives pooled over "
          f"all test pixels), threshold 0.5; mean ± std over seeds {seeds}. Bold: best per column; †: better than "
          f"supervised (paired over the same test images: the 95 % bootstrap interval of the global-Dice "
          f"difference lies above 0, so does the t interval over the per-seed differences, and the Holm-adjusted "
          f"Wilcoxon p < 0.05; see the comparisons below). "
          f"Shuffled text: global Dice with the reports shuffled across test images. Per-image-mean figures are "
          f"in table1.csv.", ""]
    md += ["| method | " + " | ".join(f"{col} Dice | {col} IoU | {col} shuffled text" for col in columns) + " |",
           "|" + "---|" * (1 + len(METRICS) * len(columns))]
    best = {(col, metric): max((stats[(m, col, metric)][0] for m in methods if stats[(m, col, metric)][2]),
                               default=None) for col in columns for metric in ("dice", "iou")}
    for m in methods:
        row = [m]
        for col in columns:
            for metric in METRICS:
                mean, sd, n = stats[(m, col, metric)]
                if n == 0:
                    failed = any(c.status == "failed" for c in cells if (c.method, c.column) == (m, col))
                    row.append("failed" if failed else "—")
                    continue
                text = f"{mean:.2f} ± {sd:.2f}" if n > 1 else f"{mean:.2f} (1 seed)"
                if 1 < n < len(seeds):
                    text += f" ({n} seeds)"
                if metric == "shuffled":
                    row.append(text)
                    continue
                if metric == "dice" and (m, col) in better:
                    text += " †"
                row.append(f"**{text}**" if mean == best[(col, metric)] else text)
        md.append("| " + " | ".join(row) + " |")
    return md + [""]


def against_supervised(cells: list[Cell]) -> dict[tuple[str, str, str], tuple[dict[str, Any], float, bool]]:
    """{(dataset, method, column): (paired statistics against supervised, Holm-adjusted p, better)} for every
    method and column where both sides have evaluated runs with per-case scores, on the seeds both have. The
    comparisons of the whole table are one family for Holm."""
    from medref_cli.stages.compare import holm, is_better, paired_stats, side_of

    done = [c for c in cells if c.summary is not None and (Path(c.run) / "eval-test" / "per_case.csv").is_file()]
    groups: dict[tuple[str, str, str], dict[int, Cell]] = {}
    for c in done:
        groups.setdefault((c.dataset, c.method, c.column), {})[c.seed] = c
    found = {}
    for (ds, m, col), mine in groups.items():
        sup = groups.get((ds, "supervised", col), {})
        seeds = sorted(set(mine) & set(sup))
        if m == "supervised" or not seeds:
            continue
        a, b = (side_of([Path(group[s].run) for s in seeds]) for group in (mine, sup))
        if a.ids == b.ids:
            found[(ds, m, col)] = paired_stats(a.counts, b.counts)
    keys = list(found)
    adjusted = holm([found[k]["per_image_dice"]["wilcoxon_p"] for k in keys])
    return {k: (found[k], p, is_better(found[k], p)) for k, p in zip(keys, adjusted, strict=True)}


def _comparison_lines(ds: str, comparisons: dict[tuple[str, str, str], tuple[dict[str, Any], float, bool]]
                      ) -> list[str]:
    mine = {k: v for k, v in comparisons.items() if k[0] == ds}
    if not mine:
        return []
    md = [f"Paired comparisons with supervised ({ds}; `medref compare`): difference in global and per-image Dice "
          f"(points), 95 % bootstrap interval over images (and over seeds and images, then the t interval of the "
          f"per-seed differences), Wilcoxon signed-rank p on per-image Dice, Holm-adjusted across the table.", "",
          "| method | column | seeds | Δ global Dice [CI images] [CI seeds + images] [CI seeds, t] | "
          "Δ per-image Dice [CI images] "
          "| p | Holm p |", "|---|---|---|---|---|---|---|"]
    pts = lambda ci: "—" if ci is None else f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"  # noqa: E731
    for (_, m, col), (st, p_holm, _) in mine.items():
        g, i = st["global_dice"], st["per_image_dice"]
        t_ci = g["seeds_t"] and g["seeds_t"]["ci"]
        md.append(f"| {m} | {col} | {len(st['per_seed'])} | {100 * g['diff']:+.2f} {pts(g['ci_cases'])} "
                  f"{pts(g['ci_seeds_and_cases'])} {pts(t_ci)} | {100 * i['diff']:+.2f} {pts(i['ci_cases'])} | "
                  f"{i['wilcoxon_p']:.2g} | {p_holm:.2g} |")
    return md + [""]


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std, n); nan, nan, 0 for no values; std 0 for one."""
    if not values:
        return float("nan"), float("nan"), 0
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd, len(values)
