"""`medref pseudo-label`."""

from __future__ import annotations

from typing import Annotated

import typer

from medref_cli.cli.options import Device, NoProgress, Overwrite, Run, Workdir


def pseudo_label(
    run: Run,
    split: Annotated[str, typer.Option("--split", help="Which ids to label.")] = "train_unlabeled",
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | latest.")] = "best",
    model: Annotated[str, typer.Option("--model", help="teacher | student.")] = "teacher",
    side_gate: Annotated[bool | None, typer.Option(
        "--side-gate/--no-side-gate", help="Clear the image half a one-lung report does not name (default: as the "
        "run's teacher trained; on for the medref recipe).", show_default=False)] = None,
    device: Device = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Teacher masks, confidence maps and zone checks for unlabelled images, with an audit."""
    from medref_cli.progress import progress_enabled
    from medref_cli.stages.pseudo_label import PseudoLabelConfig
    from medref_cli.stages.pseudo_label import run as stage
    from medref_cli.workspace import Workspace

    cfg = PseudoLabelConfig(run, split, checkpoint, model, overwrite=overwrite, device=device,
                            progress=progress_enabled(not no_progress), side_gate=side_gate)
    audit, out = stage(cfg, Workspace.resolve(workdir))
    line = (f"pseudo-labelled {audit.n_images} images ({audit.model}{', side gate' if audit.side_gate else ''}); "
            f"zone agreement {audit.zone_agreement_exact:.3f}")
    if audit.dice_all is not None:
        line += f"; Dice vs ground truth (global) {audit.dice_all['global']['dice']:.4f}"
    typer.echo(f"{line} -> {out}")
