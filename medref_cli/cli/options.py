"""Option aliases shared by every command (Annotated, so each command stays a thin adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", help="Workspace folder (default: $MEDREF_WORKDIR or ./medref-work)."),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing artifact of the same name.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bars (also off when not a TTY).")]
Dataset = Annotated[str, typer.Option("--dataset", "-d", help="Prepared dataset name (see `medref prepare`).")]
Labeled = Annotated[str, typer.Option("--labeled", "-l", help="Labelled share: 10%, 0.1 or a count like 50.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the split (and of training).")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")]
Run = Annotated[str, typer.Argument(help="Run folder, or its name under <workdir>/runs/.")]
SideGate = Annotated[bool, typer.Option(
    "--side-gate", help="Text-consistent output: nothing in the image half a one-lung report does not name.")]
LATERALITY_HELP = ("Sides free-text reports name: patient (radiology convention: the patient's right is the image "
                   "LEFT of a frontal chest X-ray) | image. QaTa/MosMed template captions are image sides whatever "
                   "this says.")
Laterality = Annotated[str, typer.Option("--laterality", help=LATERALITY_HELP)]
GateLaterality = Annotated[str, typer.Option("--laterality", help=LATERALITY_HELP + " Read with --side-gate only.")]
PseudoLabels = Annotated[Path | None, typer.Option("--pseudo-labels", help="A pseudo-label output to add as labels.")]
