"""`medref evaluate` and `medref predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.options import NoProgress, Workdir

Run = Annotated[str, typer.Argument(help="Run folder, or its name under <workdir>/runs/.")]
Which = Annotated[str, typer.Option("--checkpoint", help="best | latest.")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda.")]


def evaluate(
    run: Run,
    split: Annotated[str, typer.Option("--split", help="test | val (never a training part).")] = "test",
    checkpoint: Which = "best",
    overlays: Annotated[int, typer.Option(help="Overlay PNGs to write.")] = 6,
    ablation: Annotated[bool, typer.Option(help="Also score shuffled and empty captions.")] = True,
    side_gate: Annotated[bool, typer.Option(
        "--side-gate", help="Text-consistent output: nothing in the image half a one-lung report does not name.")]
    = False,
    device: Device = "auto",
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Dice / IoU at 0.5, global and per-image protocols, breakdowns and the text-ablation gap."""
    from medref_cli.progress import progress_enabled
    from medref_cli.stages.evaluate import EvaluateConfig
    from medref_cli.stages.evaluate import run as stage
    from medref_cli.workspace import Workspace

    cfg = EvaluateConfig(run, split, checkpoint, overlays=overlays, ablation=ablation, device=device,
                         progress=progress_enabled(not no_progress), side_gate=side_gate)
    s, out = stage(cfg, Workspace.resolve(workdir))
    g, p = s["protocols"]["global"], s["protocols"]["per_image"]
    line = (f"{s['run']} on {s['split']} ({s['n_images']} images): global Dice {g['dice']:.4f} IoU {g['iou']:.4f}; "
            f"per-image Dice {p['dice']:.4f} IoU {p['iou']:.4f}")
    if "text_ablation" in s:
        t = s["text_ablation"]
        line += (f"; text gap (global Dice) shuffled {t['gap_global_dice_shuffled']:+.4f}, "
                 f"empty {t['gap_global_dice_empty']:+.4f}")
    typer.echo(f"{line} -> {out}")


def predict(
    run: Run,
    image: Annotated[Path, typer.Option("--image", help="PNG/JPEG or NIfTI (.nii/.nii.gz).")],
    text: Annotated[str, typer.Option("--text", help="The positional report.")],
    out: Annotated[Path, typer.Option("--out", help="Mask file (.png, or .nii.gz for NIfTI input).")],
    checkpoint: Which = "best",
    threshold: Annotated[float, typer.Option(help="Probability threshold.")] = 0.5,
    device: Device = "auto",
    workdir: Workdir = None,
) -> None:
    """Segment one image from its report; writes the mask and an overlay PNG."""
    from medref_cli.stages.predict import PredictConfig
    from medref_cli.stages.predict import run as stage
    from medref_cli.workspace import Workspace

    written = stage(PredictConfig(run, image, text, out, checkpoint, threshold, device), Workspace.resolve(workdir))
    typer.echo("wrote " + ", ".join(str(p) for p in written))
