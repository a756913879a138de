"""`medref pretrain`: supervised training on `train_labeled` of a split (creating the split if needed); an entry
point of the one training stage (stages/train.py)."""

from __future__ import annotations

from pathlib import Path

from medref_cli.artifacts import RunStatus
from medref_cli.config import TrainRequest
from medref_cli.stages import train
from medref_cli.workspace import Workspace


def run(req: TrainRequest, ws: Workspace, pseudo_labels: Path | None = None) -> tuple[RunStatus, Path]:
    return train.run(req, ws, pseudo_labels)
