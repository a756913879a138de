"""`medref evaluate` and `medref predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.options import Device, GateLaterality, NoProgress, Overwrite, Run, SideGate, Workdir
from medref_cli.config import THRESHOLD

Which = Annotated[str, typer.Option("--checkpoint", help="best | latest.")]


def evaluate(
    run: Run,
    split: Annotated[str, typer.Option("--split", help="test | val (never a training part).")] = "test",
    checkpoint: Which = "best",
    overlays: Annotated[int, typer.Option(help="Overlay PNGs to write.")] = 6,
    ablation: Annotated[bool, typer.Option(help="Also score shuffled and empty captions.")] = True,
    side_gate: SideGate = False,
    device: Device = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Dice / IoU at 0.5, global and per-image protocols, breakdowns and the text-ablation gap."""
    from medref_cli.progress import progress_enabled
    from medref_cli.stages.evaluate import EvaluateConfig
    from medref_cli.stages.evaluate import run as stage
    from medref_cli.workspace import Workspace

    cfg = EvaluateConfig(run, split, checkpoint, overlays=overlays, ablation=ablation, device=device,
                         progress=progress_enabled(not no_progress), side_gate=side_gate,
                         overwrite=overwrite)
    s, out = stage(cfg, Workspace.resolve(workdir))
    g, p = s.protocols["global"], s.protocols["per_image"]
    line = (f"{s.run} on {s.split} ({s.n_images} images): global Dice {g['dice']:.4f} IoU {g['iou']:.4f}; "
            f"per-image Dice {p['dice']:.4f} IoU {p['iou']:.4f}")
    if s.text_ablation is not None:
        t = s.text_ablation
        line += (f"; text gap (global Dice) shuffled {t['gap_global_dice_shuffled']:+.4f}, "
                 f"empty {t['gap_global_dice_empty']:+.4f}")
    typer.echo(f"{line} -> {out}")
    sides = [(name, s.per_laterality[key]) for key, name in (("left", "left only"), ("right", "right only"),
                                                              ("bilateral", "both"), ("none", "none"))
             if key in s.per_laterality]
    if len(sides) > 1:  # where report-reading methods differ most: the one-lung reports
        typer.echo("  by the side the report names, per-image Dice: " + ", ".join(
            f"{name} {g['per_image']['dice']:.4f} ({g['n']})" for name, g in sides))
    off = [(name, g["n"], g["off_side"]) for name, g in sides if "off_side" in g]
    if off:  # does the mask keep to the lung the report names?
        typer.echo("  predicted pixels in the half a one-lung report does not name: " + ", ".join(
            f"{name} {o['share']:.1%} (any in {o['images_with_any']} of {n} images)" for name, n, o in off))


def predict(
    out: Annotated[Path, typer.Option("--out", help="Mask file (one --image), or a new folder (--input).")],
    run: Annotated[str | None, typer.Argument(
        help="Run folder, or its name under <workdir>/runs/ (or --model NAME instead).", show_default=False)] = None,
    image: Annotated[Path | None, typer.Option("--image", help="One PNG/JPEG/TIFF/DICOM or NIfTI image.")] = None,
    input_: Annotated[Path | None, typer.Option(
        "--input", help="Many images: a folder, or a csv/tsv/xlsx table with image and text columns.")] = None,
    text: Annotated[str | None, typer.Option("--text", help="The positional report (for every image of a folder).")]
    = None,
    checkpoint: Which = "best",
    threshold: Annotated[float, typer.Option(help="Probability threshold, in (0, 1).")] = THRESHOLD,
    mask_format: Annotated[str, typer.Option("--format", help="Masks of --input: png | nifti.")] = "png",
    overlays: Annotated[int, typer.Option(help="Overlay PNGs written for --input (evenly spread).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass for --input.")] = 16,
    overwrite: Overwrite = False,
    device: Device = "auto",
    no_progress: NoProgress = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="A bundled trained model instead of a RUN (`medref models` lists them).")] = None,
    side_gate: SideGate = False,
    laterality: GateLaterality = "patient",
    workdir: Workdir = None,
) -> None:
    """Segment images from their reports with a trained RUN or a bundled --model: one --image (mask + overlay) or
    a folder / table with --input (masks, overlays and predictions.csv)."""
    from medref_cli.errors import MedrefError
    from medref_cli.progress import progress_enabled
    from medref_cli.stages import predict as stage
    from medref_cli.workspace import Workspace

    ws = Workspace.resolve(workdir)
    if (image is None) == (input_ is None):
        raise MedrefError("predict: give one --image or an --input folder / table")
    if input_ is not None:
        cfg = stage.BatchPredictConfig(run, input_, out, text, checkpoint, threshold, batch_size, mask_format,
                                       overlays, overwrite, device, progress_enabled(not no_progress), model,
                                       side_gate, laterality)
        folder, n = stage.run_batch(cfg, ws)
        typer.echo(f"predicted {n} images -> {folder} (masks/, overlays/, predictions.csv)")
        return
    if text is None:
        raise MedrefError("--text: give the positional report of the image")
    written = stage.run(stage.PredictConfig(run, image, text, out, checkpoint, threshold, device, overwrite, model,
                                            side_gate, laterality), ws)
    typer.echo("wrote " + ", ".join(str(p) for p in written))
