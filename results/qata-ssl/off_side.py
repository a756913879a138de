"""Off-side predictions of the qata-ssl runs, scored while the queue's workspace held their checkpoints: for the test
images whose report names one lung, the share of predicted pixels in the image half the report does not name
(`medref evaluate`'s `off_side`, from 22905fa on). Writes off-side.md beside this file.

    python results/qata-ssl/off_side.py [WORKSPACE] [SCRATCH]    # default /work/ws-ssl, /work/ws-offside

Each run's checkpoint, config and split are copied into SCRATCH (its dataset linked from WORKSPACE, read only) and
evaluated there with this checkout's code and `--no-ablation`: the queue's runs and their committed scores stay as
they are. A run already evaluated in SCRATCH is not evaluated again. Global Dice is printed beside the committed one
(the snapshot's code scored them; the two agree to the fourth place on every run so far).

Each such evaluation's summary.json is kept beside the committed cell (`runs/<cell>/eval-test-rescored/`, a
lever run's under ../levers/runs/), and off-side.md is written from those: a machine that no longer holds a run's
checkpoint (a fresh one) still writes its row. A row of the previous off-side.md whose run has neither is kept as it
was (the runs scored before 2026-12-07 21:00, whose evaluations went with their machine).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from medref_cli.artifacts import eval_dir, load_summary  # noqa: E402
from medref_cli.stages.evaluate import EvaluateConfig  # noqa: E402
from medref_cli.stages.evaluate import run as evaluate  # noqa: E402
from medref_cli.workspace import Workspace, write_bytes_atomic  # noqa: E402

FILES = ("checkpoint_best.pt", "config.yaml", "run.json", "split.json", "metrics.jsonl")
RESCORED = "eval-test-rescored"  # a committed run's test evaluation with this checkout's code (off-side figures)


COMMITTED = (HERE / "runs", HERE.parent / "levers" / "runs")  # the cells' runs, the lever runs'


def committed(name: str) -> Path:
    """Where run `name` of the queue's workspace is committed: runs/<name>/, a lever run's ../levers/runs/<name>/."""
    return COMMITTED[name.startswith("lever-")] / name


def committed_runs() -> list[Path]:
    """Every committed run folder, cells' and levers', by name."""
    return sorted((run for root in COMMITTED for run in root.iterdir()), key=lambda run: run.name)


def keep(evaluation: Path, name: str, as_dir: str, files: tuple[str, ...] = ("summary.json",)) -> None:
    """Copy `files` of `evaluation` into the committed run `name`'s `as_dir`/ (each written atomically); nothing
    when the run is not committed yet."""
    run = committed(name)
    if run.is_dir():
        for file in files:
            write_bytes_atomic(run / as_dir / file, (evaluation / file).read_bytes())


def old_rows(md: Path) -> dict[str, str]:
    """The table rows of a previously written `md`, by run name (its first cell)."""
    if not md.is_file():
        return {}
    rows = [line for line in md.read_text().splitlines() if line.startswith("| t1-") or line.startswith("| lever-")]
    return {row.split("|")[1].strip(): row for row in rows}


def link_dataset(ws: Path, scratch: Path) -> None:
    """`scratch`'s datasets/qata: a link to the queue workspace's (read only)."""
    data = scratch / "datasets"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "qata").exists():
        (data / "qata").symlink_to(ws / "datasets" / "qata")


def scored(src: Path, scratch: Path, side_gate: bool = False) -> Path:
    """`src` (a finished run of the queue's workspace) copied into `scratch` (FILES) and evaluated there on test,
    `--no-ablation`, with or without the side gate, unless that evaluation is there already; -> the copy."""
    dst = scratch / "runs" / src.name
    if not (eval_dir(dst, "test", side_gate) / "summary.json").is_file():
        dst.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy2(src / name, dst / name)
        evaluate(EvaluateConfig(src.name, ablation=False, overlays=0, side_gate=side_gate), Workspace(scratch))
    return dst


def main(ws: Path, scratch: Path) -> None:
    link_dataset(ws, scratch)
    for src in sorted((ws / "runs").iterdir()):
        if (src / "checkpoint_best.pt").is_file() and (src / "eval-test" / "summary.json").is_file():
            keep(scored(src, scratch) / "eval-test", src.name, RESCORED)
    out = HERE / "off-side.md"
    rows = old_rows(out)
    for run in committed_runs():
        if not (run / RESCORED / "summary.json").is_file():
            continue
        s = load_summary(run / RESCORED / "summary.json")
        pos_aug = yaml.safe_load((run / "config.yaml").read_text())["config"]["method"]["pos_aug"]
        as_committed = json.loads((run / "eval-test" / "summary.json").read_text())["protocols"]["global"]["dice"]
        sides = [s.per_laterality[k] for k in ("left", "right")]
        rows[run.name] = (f"| {run.name} | {'yes' if pos_aug else 'no'} | {s.global_dice:.4f} ({as_committed:.4f}) | "
                          + " | ".join(f"{g['off_side']['share']:.1%} ({g['off_side']['images_with_any']} of {g['n']})"
                                       for g in sides)
                          + f" | {sides[0]['per_image']['dice']:.3f} / {sides[1]['per_image']['dice']:.3f} |")
    table = ["| run | PosAug | test Dice global (committed) | left-only reports: off side (images with any) | "
             "right-only reports: off side (images with any) | per-image Dice left-only / right-only |",
             "|---|---|---|---|---|---|", *(rows[name] for name in sorted(rows))]
    text = ("# Off-side predictions of the qata-ssl runs (written by `python results/qata-ssl/off_side.py`)\n\n"
            "Test = the 1429 `valid` images; 198 reports name the left lung only, 223 the right only. Off side:"
            " the predicted pixels in the image half the report does not name, as a share of the group's"
            " predicted pixels (`medref evaluate`, `per_laterality.<side>.off_side`).\n\n"
            + "\n".join(table) + "\n")
    write_bytes_atomic(out, text.encode())
    print(f"{len(rows)} runs -> {out}")


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args[0] if args else Path("/work/ws-ssl"), args[1] if len(args) > 1 else Path("/work/ws-offside"))
