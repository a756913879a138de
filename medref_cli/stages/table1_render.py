"""Writing Table 1: `table1.csv` (one row per cell), `table1.md` (mean ± std per method and column, per
dataset) and `table1.png`."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path
from typing import Any

from medref_cli.artifacts import EvalSummary, load_run
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
    for ds in dict.fromkeys(c.dataset for c in cells):
        mine = [c for c in cells if c.dataset == ds]
        columns = list(dict.fromkeys(c.column for c in mine))
        methods = list(dict.fromkeys(c.method for c in mine))
        stats = {(m, col, metric): _mean_std([v for c in mine if (c.method, c.column) == (m, col)
                                              for v in [_metric(c.summary, metric)] if v is not None])
                 for m in methods for col in columns for metric in METRICS}
        md += _markdown(ds, mine, columns, methods, stats)
        series = {m: [(k, stats[(m, col, "dice")][0], stats[(m, col, "dice")][1])
                      for k, col in enumerate(columns) if stats[(m, col, "dice")][2]] for m in methods}
        panels.append((f"{ds}: test Dice (global), mean ± std over seeds", series, columns))
    failed = [c for c in cells if c.status == "failed"]
    md += [f"{len(cells)} cells, {len(failed)} failed; wall time {wall_s / 60:.1f} min.", ""]
    md += [f"- failed: {c.dataset} {c.column} {c.method} seed {c.seed}: {c.error}" for c in failed]
    write_bytes_atomic(out / "table1.md", ("\n".join(md) + "\n").encode())
    x_title = "label ratio, CPU budget per run" if prof.get("budgets") else "labelled share"
    panels_plot(panels, out / "table1.png", x_title, "Dice %")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _csv(cells: list[Cell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "ratio", "budget_min", "method", "seed", "status", "dice_global", "iou_global",
                "dice_per_image", "iou_per_image", "text_gap_shuffled", "run", "split_file", "split_sha256",
                "dataset_hash", "wall_s", "error"])
    for c in cells:
        p = c.summary.protocols if c.summary else {"global": {}, "per_image": {}}
        gap = c.summary.shuffled_gap if c.summary else None
        split = Path(c.run) / "split.json" if c.run else Path("-")
        info = load_run(Path(c.run)) if c.run and (Path(c.run) / "run.json").is_file() else None
        w.writerow([c.dataset, c.ratio, "" if c.budget is None else c.budget, c.method, c.seed, c.status,
                    p["global"].get("dice", ""), p["global"].get("iou", ""),
                    p["per_image"].get("dice", ""), p["per_image"].get("iou", ""), "" if gap is None else gap,
                    c.run, info.split_file if info else "", _sha(split), info.dataset_hash if info else "",
                    round(c.wall_s, 1), c.error])
    return buf.getvalue()


def _metric(summary: EvalSummary | None, metric: str) -> float | None:
    """A table figure in %: the global Dice / IoU, or the global Dice with the captions shuffled across images."""
    if summary is None:
        return None
    if metric == "shuffled":
        return None if summary.text_ablation is None else 100 * summary.text_ablation["shuffled"]["global"]["dice"]
    return 100 * summary.protocols["global"][metric]


def _markdown(ds: str, cells: list[Cell], columns: list[str], methods: list[str],
              stats: dict[tuple[str, str, str], tuple[float, float, int]]) -> list[str]:
    """One dataset's table: bold = best per column; † = the mean beats supervised's by more than twice the
    larger of the two standard deviations (seeds > 1). The shuffled-text column shows how much the model leans
    on the report (far below Dice: it uses the text)."""
    seeds = sorted({c.seed for c in cells})
    md = [f"**{ds}** — Dice and IoU (%) on the test split, **global protocol** (true/false positives pooled over "
          f"all test pixels), threshold 0.5; mean ± std over seeds {seeds}. Bold: best per column; †: above "
          f"supervised by more than 2 std. Shuffled text: global Dice with the reports shuffled across test "
          f"images. Per-image-mean figures are in table1.csv.", ""]
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
                sup = stats.get(("supervised", col, metric), (float("nan"), 0.0, 0))
                if m != "supervised" and n > 1 and sup[2] > 1 and mean - sup[0] > 2 * max(sd, sup[1]):
                    text += " †"
                row.append(f"**{text}**" if mean == best[(col, metric)] else text)
        md.append("| " + " | ".join(row) + " |")
    return md + [""]


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std, n); nan, nan, 0 for no values; std 0 for one."""
    if not values:
        return float("nan"), float("nan"), 0
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd, len(values)
