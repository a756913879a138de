"""Off-side predictions of the qata-ssl runs whose checkpoints the queue's workspace still holds: for the test images
whose report names one lung, the share of predicted pixels in the image half the report does not name (`medref
evaluate`'s `off_side`, from 22905fa on). Writes off-side.md beside this file.

    python results/qata-ssl/off_side.py [WORKSPACE] [SCRATCH]    # default /work/ws-ssl, /work/ws-offside

Each run's checkpoint, config and split are copied into SCRATCH (its dataset linked from WORKSPACE, read only) and
evaluated there with this checkout's code and `--no-ablation`: the queue's runs and their committed scores stay as
they are. A run already evaluated in SCRATCH is not evaluated again. Global Dice is printed beside the committed one
(the snapshot's code scored them; the two agree to the fourth place on every run so far).
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
from medref_cli.workspace import Workspace  # noqa: E402

FILES = ("checkpoint_best.pt", "config.yaml", "run.json", "split.json", "metrics.jsonl")


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
    rows = ["| run | PosAug | test Dice global (committed) | left-only reports: off side (images with any) | "
            "right-only reports: off side (images with any) | per-image Dice left-only / right-only |",
            "|---|---|---|---|---|---|"]
    for src in sorted((ws / "runs").iterdir()):
        done = src / "eval-test" / "summary.json"
        if not ((src / "checkpoint_best.pt").is_file() and done.is_file()):
            continue
        s = load_summary(scored(src, scratch) / "eval-test" / "summary.json")
        pos_aug = yaml.safe_load((src / "config.yaml").read_text())["config"]["method"]["pos_aug"]
        committed = json.loads(done.read_text())["protocols"]["global"]["dice"]
        sides = [s.per_laterality[k] for k in ("left", "right")]
        rows.append(f"| {src.name} | {'yes' if pos_aug else 'no'} | {s.global_dice:.4f} ({committed:.4f}) | "
                    + " | ".join(f"{g['off_side']['share']:.1%} ({g['off_side']['images_with_any']} of {g['n']})"
                                 for g in sides)
                    + f" | {sides[0]['per_image']['dice']:.3f} / {sides[1]['per_image']['dice']:.3f} |")
    out = HERE / "off-side.md"
    out.write_text("# Off-side predictions of the qata-ssl runs (written by `python results/qata-ssl/off_side.py`)\n\n"
                   "Test = the 1429 `valid` images; 198 reports name the left lung only, 223 the right only. Off side:"
                   " the predicted pixels in the image half the report does not name, as a share of the group's"
                   " predicted pixels (`medref evaluate`, `per_laterality.<side>.off_side`).\n\n"
                   + "\n".join(rows) + "\n")
    print(f"{len(rows) - 2} runs -> {out}")


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args[0] if args else Path("/work/ws-ssl"), args[1] if len(args) > 1 else Path("/work/ws-offside"))
