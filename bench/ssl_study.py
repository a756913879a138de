"""Is SSL worth it? Test Dice of evaluated runs, grouped by method and budget, against the CPU minutes spent.

    python -m bench.ssl_study --out results/DIR \\
        --point "supervised@100 ep=RUNS/pre-s0,RUNS/pre-s1,RUNS/pre-s2" \\
        --point "semi-medref@100 ep=RUNS/semi-s0,RUNS/semi-s1,RUNS/semi-s2" [--baseline supervised]

Each `--point "METHOD@BUDGET=RUN,RUN,..."` is one point: the runs (one per seed) of one method at one budget.
A run folder needs `run.json`, `metrics.jsonl` and its test summary (`eval-test/summary.json`, or a copied
`eval-test-summary.json`). Writes `study.md` (mean ± std of test Dice global and per-image, one-lung Dice, wall
minutes; the gap over the baseline at the same budget, paired by seed) and `study.png` (test Dice against wall
minutes, or epochs with `--x epochs`, one line per method, error bars where a point has several seeds).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from medref_cli.artifacts import load_run, load_summary
from medref_cli.config import load_run_config
from medref_cli.plots import line_plot
from medref_cli.stages.table1_render import _mean_std as mean_std  # (mean, sample std, n), as table1's cells
from medref_cli.training.run_dir import read_metrics
from medref_cli.workspace import write_bytes_atomic


@dataclass
class RunFigures:
    seed: int
    dice: float  # test Dice, global protocol
    dice_image: float  # test Dice, per-image mean
    one_lung: float  # global Dice of the left-only and right-only reports, pooled by image count
    minutes: float  # wall minutes of training (metrics.jsonl elapsed_s)
    epochs: int


def run_figures(run: Path) -> RunFigures:
    summary_path = run / "eval-test" / "summary.json"
    if not summary_path.is_file():
        summary_path = run / "eval-test-summary.json"
    s = load_summary(summary_path)
    status, seed = load_run(run), load_run_config(run).seed
    rows = read_metrics(run)
    lat = s.per_laterality
    one = [lat[k] for k in ("left", "right") if k in lat]
    n = sum(x["n"] for x in one)
    one_lung = sum(x["n"] * x["global"]["dice"] for x in one) / n if n else float("nan")
    return RunFigures(seed, s.global_dice, s.protocols["per_image"]["dice"], one_lung,
                      rows[-1]["elapsed_s"] / 60 if rows else float("nan"), status.epochs_done)


def paired_gap(runs: list[RunFigures], base: list[RunFigures]) -> tuple[float, float, int] | None:
    """Mean ± std of `dice - baseline dice` over the seeds both have; None without a shared seed."""
    by_seed = {r.seed: r.dice for r in base}
    gaps = [r.dice - by_seed[r.seed] for r in runs if r.seed in by_seed]
    return mean_std(gaps) if gaps else None


def parse_point(text: str) -> tuple[str, str, list[Path]]:
    head, _, runs = text.partition("=")
    method, _, budget = head.partition("@")
    if not runs or not method:
        raise SystemExit(f"--point {text!r}: expected METHOD@BUDGET=RUN[,RUN...]")
    return method.strip(), budget.strip(), [Path(r.strip()) for r in runs.split(",") if r.strip()]


def _fmt(stats: tuple[float, float, int]) -> str:
    mean, std, n = stats
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f} (1 seed)"


def study(points: list[tuple[str, str, list[Path]]], baseline: str, x: str = "minutes") -> tuple[str, dict]:
    """(markdown table, plot series) of the points; the plot's x is the mean wall minutes or epochs trained
    (`x="epochs"`: for runs measured on machines of different speed)."""
    figs = {(m, b): [run_figures(r) for r in runs] for m, b, runs in points}
    lines = ["| method | budget | seeds | test Dice global | per-image | one-lung reports | wall min | epochs | "
             f"gap over {baseline} (paired) |", "|---|---|---|---|---|---|---|---|---|"]
    series: dict[str, list[tuple[float, float, float]]] = {}
    for (method, budget), runs in figs.items():
        dice = mean_std([r.dice for r in runs])
        minutes = statistics.fmean(r.minutes for r in runs)
        gap = paired_gap(runs, figs.get((baseline, budget), [])) if method != baseline else None
        gap_text = "" if not gap else (f"{gap[0]:+.4f} ± {gap[1]:.4f} ({gap[2]} seeds)" if gap[2] > 1
                                       else f"{gap[0]:+.4f} (1 seed)")
        lines.append(f"| {method} | {budget} | {', '.join(str(r.seed) for r in runs)} | {_fmt(dice)} | "
                     f"{_fmt(mean_std([r.dice_image for r in runs]))} | "
                     f"{_fmt(mean_std([r.one_lung for r in runs]))} | {minutes:.1f} | "
                     f"{'/'.join(str(r.epochs) for r in runs)} | {gap_text} |")
        at = minutes if x == "minutes" else statistics.fmean(r.epochs for r in runs)
        series.setdefault(method, []).append((at, 100 * dice[0], 100 * dice[1]))
    return "\n".join(lines) + "\n", series


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--point", action="append", required=True, help="METHOD@BUDGET=RUN[,RUN...]")
    ap.add_argument("--baseline", default="supervised")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--x", choices=("minutes", "epochs"), default="minutes", help="the plot's x axis")
    ap.add_argument("--title", default="test Dice (global), mean ± std over seeds")
    args = ap.parse_args(argv)
    table, series = study([parse_point(p) for p in args.point], args.baseline, args.x)
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "bench.ssl_study", *(sys.argv[1:] if argv is None else argv)])
    write_bytes_atomic(args.out / "study.md", f"`{command}`\n\n{table}".encode())
    xlabel = "wall minutes (mean over seeds)" if args.x == "minutes" else "epochs trained (mean over seeds)"
    line_plot(series, args.out / "study.png", args.title, xlabel, "Dice %")
    print(table)


if __name__ == "__main__":
    main()
