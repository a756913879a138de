"""How much of Semi-MedRef's lead over the text-blind methods would a side gate at inference give them for free?

    python results/qata-ssl/gated.py [WORKSPACE] [SCRATCH]    # default /work/ws-ssl, /work/ws-offside

The finished runs whose checkpoints WORKSPACE holds are copied into SCRATCH as `off_side.py` does and evaluated
there with `side_gate` (`medref evaluate --side-gate`: the image half a one-lung report does not name is
cleared; `eval-test-side-gate/`, `--no-ablation`), with this checkout's code; a run already evaluated is not
evaluated again. Writes gated.md beside this file: per run, test global Dice without and with the gate and the
per-image Dice on one-lung reports; then, with `medref compare`'s statistics, the text-blind methods with the gate
(mean teacher; CutMix once its re-run on this machine is in) against Semi-MedRef as committed (no gate), seeds 0-2.
Only the runs whose method has no side gate of its own in training (mean-teacher, cutmix) and the default
semi-train (for scale) are scored. As in `off_side.py`, each gated evaluation (summary.json, per_case.csv) is kept
beside its committed run (`runs/<cell>/eval-test-side-gate/`) and gated.md is written from those, so a fresh machine
keeps every row; a row, or a comparison, of the previous gated.md that the kept evaluations cannot rewrite stays as
it was (the runs gated before 2026-12-07 21:00, whose evaluations went with their machine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from off_side import committed, committed_runs, keep, link_dataset, old_rows, scored  # noqa: E402

from medref_cli.artifacts import eval_dir, load_summary  # noqa: E402
from medref_cli.stages.compare import paired_stats, side_of  # noqa: E402
from medref_cli.workspace import write_bytes_atomic  # noqa: E402

SCORED = ("t1-mean-teacher-", "t1-cutmix-", "t1-semi-medref-qata-", "lever-cutmix-rerun-")
# text-blind runs of seeds 0-2 at 2 % (name with {seed}) compared, gated, with Semi-MedRef as committed
AGAINST_SEMI = {"Mean teacher": "t1-mean-teacher-qata-2pct-s{seed}",
                "CutMix (re-run)": "lever-cutmix-rerun-semi-2pct-s{seed}"}


def _fmt(ci: list[float]) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def old_comparisons(md: Path) -> dict[str, list[str]]:
    """The comparison paragraphs of a previously written `md` (a line '<label> with the gate against ...' and its
    bullets), by label."""
    if not md.is_file():
        return {}
    found: dict[str, list[str]] = {}
    label = None
    for line in md.read_text().splitlines():
        if " with the gate against Semi-MedRef" in line:
            label = line.split(" with the gate against")[0]
            found[label] = [line, ""]
        elif label and line.startswith("- "):
            found[label].append(line)
    return {k: [*v, ""] for k, v in found.items()}


def main(ws: Path, scratch: Path) -> None:
    link_dataset(ws, scratch)
    gate_dir = eval_dir(Path("."), "test", True).name  # eval-test-side-gate
    for src in sorted((ws / "runs").iterdir()):
        if (src.name.startswith(SCORED) and (src / "checkpoint_best.pt").is_file()
                and (src / "eval-test" / "summary.json").is_file()):
            keep(scored(src, scratch, side_gate=True) / gate_dir, src.name, gate_dir, ("summary.json", "per_case.csv"))
    out = HERE / "gated.md"
    rows = old_rows(out)
    for run in committed_runs():
        if not (run.name.startswith(SCORED) and (run / gate_dir / "summary.json").is_file()):
            continue
        plain, gate = (load_summary(run / d / "summary.json") for d in ("eval-test", gate_dir))
        side = lambda s: " / ".join(f"{s.per_laterality[k]['per_image']['dice']:.3f}" for k in ("left", "right"))  # noqa: E731
        rows[run.name] = (f"| {run.name} | {plain.global_dice:.4f} -> {gate.global_dice:.4f} "
                          f"({gate.global_dice - plain.global_dice:+.4f}) | {side(plain)} -> {side(gate)} |")
    lines = ["# A side gate at inference for the qata-ssl runs (written by `python results/qata-ssl/gated.py`)", "",
             "Test = the 1429 `valid` images; `medref evaluate --side-gate --no-ablation` on each run's best "
             "checkpoint (the image half a one-lung report does not name cleared), against the committed "
             "evaluation. The gate uses the report at inference only: a text-blind method plus the gate is what "
             "the report's side alone would give it, without training on it.", "",
             "| run | test Dice global: as committed -> with the side gate | per-image Dice left-only / right-only: "
             "committed -> gated |", "|---|---|---|", *(rows[name] for name in sorted(rows)), ""]
    before = old_comparisons(out)
    semi = [HERE / "runs" / f"t1-semi-medref-qata-2pct-s{s}" for s in range(3)]
    for label, pattern in AGAINST_SEMI.items():
        blind = [committed(pattern.format(seed=s)) for s in range(3)]
        if not (all((r / gate_dir / "per_case.csv").is_file() for r in blind)
                and all((r / "eval-test" / "per_case.csv").is_file() for r in semi)):
            lines += before.get(label, [])
            continue
        a, b = side_of(blind, side_gate=True), side_of(semi)
        assert a.ids == b.ids and a.seeds == b.seeds, (a.seeds, b.seeds)
        st = paired_stats(a.counts, b.counts)
        g, p = st["global_dice"], st["per_image_dice"]
        lines += [f"{label} with the gate against Semi-MedRef as committed (2 %, seeds 0-2 paired by number; "
                  "`medref compare`'s statistics; Semi-MedRef s0 ran on the other machine):", "",
                  f"- global Dice {g['a']:.4f} against {g['b']:.4f}: {g['diff']:+.4f} {_fmt(g['ci_seeds_and_cases'])} "
                  f"over seeds and images, seeds' t {_fmt(g['seeds_t']['ci'])}, p {g['seeds_t']['p']:.2g}",
                  f"- per-image Dice {p['a']:.4f} against {p['b']:.4f}: {p['diff']:+.4f} "
                  f"{_fmt(p['ci_seeds_and_cases'])}, Wilcoxon p {p['wilcoxon_p']:.2g}", ""]
    write_bytes_atomic(out, "\n".join(lines).encode())
    print(json.dumps({"runs": len(rows), "out": str(out)}))


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args[0] if args else Path("/work/ws-ssl"), args[1] if len(args) > 1 else Path("/work/ws-offside"))
