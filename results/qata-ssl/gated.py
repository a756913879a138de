"""How much of Semi-MedRef's lead over the text-blind methods would a side gate at inference give them for free?

    python results/qata-ssl/gated.py [WORKSPACE] [SCRATCH]    # default /work/ws-ssl, /work/ws-offside

The finished runs whose checkpoints WORKSPACE holds are copied into SCRATCH as `off_side.py` does and evaluated
there with `side_gate` (`medref evaluate --side-gate`: the image half a one-lung report does not name is
cleared; `eval-test-side-gate/`, `--no-ablation`), with this checkout's code; a run already evaluated is not
evaluated again. Writes gated.md beside this file: per run, test global Dice without and with the gate and the
per-image Dice on one-lung reports; then, with `medref compare`'s statistics, the text-blind methods with the gate
(mean teacher; CutMix once its re-run on this machine is in) against Semi-MedRef as committed (no gate), seeds 0-2.
Only the runs whose method has no side gate of its own in training (mean-teacher, cutmix) and the default
semi-train (for scale) are scored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from off_side import link_dataset, scored  # noqa: E402

from medref_cli.artifacts import load_summary  # noqa: E402
from medref_cli.stages.compare import paired_stats, side_of  # noqa: E402

SCORED = ("t1-mean-teacher-", "t1-cutmix-", "t1-semi-medref-qata-", "lever-cutmix-rerun-")
# text-blind runs of seeds 0-2 at 2 % (name with {seed}) compared, gated, with Semi-MedRef as committed
AGAINST_SEMI = {"Mean teacher": "t1-mean-teacher-qata-2pct-s{seed}",
                "CutMix (re-run)": "lever-cutmix-rerun-semi-2pct-s{seed}"}


def _fmt(ci: list[float]) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def main(ws: Path, scratch: Path) -> None:
    link_dataset(ws, scratch)
    rows = ["| run | test Dice global: as committed -> with the side gate | per-image Dice left-only / right-only: "
            "committed -> gated |", "|---|---|---|"]
    gated_runs: dict[str, Path] = {}
    for src in sorted((ws / "runs").iterdir()):
        if not (src.name.startswith(SCORED) and (src / "checkpoint_best.pt").is_file()
                and (src / "eval-test" / "summary.json").is_file()):
            continue
        dst = scored(src, scratch, side_gate=True)
        gated_runs[src.name] = dst
        plain, gate = (load_summary(p) for p in (src / "eval-test" / "summary.json",
                                                  dst / "eval-test-side-gate" / "summary.json"))
        side = lambda s: " / ".join(f"{s.per_laterality[k]['per_image']['dice']:.3f}" for k in ("left", "right"))  # noqa: E731
        rows.append(f"| {src.name} | {plain.global_dice:.4f} -> {gate.global_dice:.4f} "
                    f"({gate.global_dice - plain.global_dice:+.4f}) | {side(plain)} -> {side(gate)} |")
    lines = ["# A side gate at inference for the qata-ssl runs (written by `python results/qata-ssl/gated.py`)", "",
             "Test = the 1429 `valid` images; `medref evaluate --side-gate --no-ablation` on each run's best "
             "checkpoint (the image half a one-lung report does not name cleared), against the committed "
             "evaluation. The gate uses the report at inference only: a text-blind method plus the gate is what "
             "the report's side alone would give it, without training on it.", "", *rows, ""]
    semi = [HERE / "runs" / f"t1-semi-medref-qata-2pct-s{s}" for s in range(3)]
    for label, pattern in AGAINST_SEMI.items():
        blind = [gated_runs.get(pattern.format(seed=s)) for s in range(3)]
        if not (all(blind) and all((r / "eval-test" / "per_case.csv").is_file() for r in semi)):
            continue
        a, b = side_of(blind, side_gate=True), side_of(semi)  # type: ignore[arg-type]
        assert a.ids == b.ids and a.seeds == b.seeds, (a.seeds, b.seeds)
        st = paired_stats(a.counts, b.counts)
        g, p = st["global_dice"], st["per_image_dice"]
        lines += [f"{label} with the gate against Semi-MedRef as committed (2 %, seeds 0-2 paired by number; "
                  "`medref compare`'s statistics; Semi-MedRef s0 ran on the other machine):", "",
                  f"- global Dice {g['a']:.4f} against {g['b']:.4f}: {g['diff']:+.4f} {_fmt(g['ci_seeds_and_cases'])} "
                  f"over seeds and images, seeds' t {_fmt(g['seeds_t']['ci'])}, p {g['seeds_t']['p']:.2g}",
                  f"- per-image Dice {p['a']:.4f} against {p['b']:.4f}: {p['diff']:+.4f} "
                  f"{_fmt(p['ci_seeds_and_cases'])}, Wilcoxon p {p['wilcoxon_p']:.2g}", ""]
    out = HERE / "gated.md"
    out.write_text("\n".join(lines))
    print(json.dumps({"runs": len(rows) - 2, "out": str(out)}))


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args[0] if args else Path("/work/ws-ssl"), args[1] if len(args) > 1 else Path("/work/ws-offside"))
