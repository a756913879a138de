"""The qata-ratios tables from the committed cells: `python results/qata-ratios/table.py [RUNS]` prints Markdown.

First one row per ratio and seed (each method's test Dice, its stopping epoch and best epoch, the paired gain),
then per ratio: supervised and default semi-train test Dice (global and per-image), mean +- sample std over the
seeds present, and the gain paired by seed (only seeds where both cells finished). A ratio or method with no
finished cell prints "-". Reads `runs/<cell>/eval-test-summary.json` and `run.json` only.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

RATIOS = ("1pct", "2pct", "5pct", "15pct")
METHODS = ("supervised", "semi-medref")
CELL = re.compile(r"t1-(?P<method>.+)-qata-(?P<ratio>\d+pct)-s(?P<seed>\d+)$")


def load(runs: Path) -> dict[tuple[str, str], dict[int, dict]]:
    """{(method, ratio): {seed: {"global", "per_image", "epochs", "best_epoch"}}}."""
    out: dict[tuple[str, str], dict[int, dict]] = {}
    for cell in sorted(runs.iterdir()):
        m = CELL.match(cell.name)
        summary = cell / "eval-test-summary.json"
        if not m or not summary.is_file():
            continue
        protocols = json.loads(summary.read_text())["protocols"]
        run = json.loads((cell / "run.json").read_text())
        out.setdefault((m["method"], m["ratio"]), {})[int(m["seed"])] = {
            "global": protocols["global"]["dice"], "per_image": protocols["per_image"]["dice"],
            "epochs": run["epochs_done"], "best_epoch": run["best_epoch"], "status": run["status"]}
    return out


def mean_std(values: list[float], sign: str = "") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:{sign}.4f} (1 seed)"
    return f"{statistics.mean(values):{sign}.4f} ± {statistics.stdev(values):.4f} ({len(values)} seeds)"


def describe(cell: dict | None) -> str:
    """'0.7193 / 0.6130 (early stop at epoch 22, best epoch 6)', or 'queued' for a missing cell."""
    if cell is None:
        return "queued"
    end = {"stopped-early": "early stop at epoch", "finished": "the cap, epoch"}.get(cell["status"], cell["status"])
    return (f"{cell['global']:.4f} / {cell['per_image']:.4f} ({end} {cell['epochs']}, "
            f"best epoch {cell['best_epoch']})")


def per_seed(cells: dict[tuple[str, str], dict[int, dict]]) -> str:
    rows = ["| ratio | seed | supervised (global / per-image Dice) | default semi-train | gap (global / per-image) |",
            "|---|---|---|---|---|"]
    for ratio in RATIOS:
        sup, semi = cells.get(("supervised", ratio), {}), cells.get(("semi-medref", ratio), {})
        for seed in sorted(set(sup) | set(semi)):
            a, b = sup.get(seed), semi.get(seed)
            gap = (f"{b['global'] - a['global']:+.4f} / {b['per_image'] - a['per_image']:+.4f}" if a and b else "-")
            rows.append(f"| {ratio.replace('pct', ' %')} | {seed} | {describe(a)} | {describe(b)} | {gap} |")
    return "\n".join(rows)


def table(cells: dict[tuple[str, str], dict[int, dict]]) -> str:
    rows = ["| ratio | supervised: global / per-image Dice | default semi-train: global / per-image Dice | "
            "gain (global), paired by seed | per seed (supervised -> semi) |",
            "|---|---|---|---|---|"]
    for ratio in RATIOS:
        sup, semi = cells.get(("supervised", ratio), {}), cells.get(("semi-medref", ratio), {})
        if not sup and not semi:
            continue
        paired = sorted(set(sup) & set(semi))
        gains = [semi[s]["global"] - sup[s]["global"] for s in paired]
        per_seed = ", ".join(f"s{s}: {sup[s]['global']:.4f} -> {semi[s]['global']:.4f}" for s in paired)
        rows.append(
            f"| {ratio.replace('pct', ' %')} "
            f"| {mean_std([v['global'] for v in sup.values()])} / {mean_std([v['per_image'] for v in sup.values()])} "
            f"| {mean_std([v['global'] for v in semi.values()])} / {mean_std([v['per_image'] for v in semi.values()])} "
            f"| {mean_std(gains, '+')} | {per_seed or '-'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "runs"
    cells = load(runs)
    print(per_seed(cells), table(cells), sep="\n\n")
