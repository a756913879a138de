"""`medref pretrain`: supervised training on `train_labeled` of a split (creating the split if needed)."""

from __future__ import annotations

from pathlib import Path

from medref_cli.artifacts import RunInfo
from medref_cli.config import TrainRequest
from medref_cli.training.setup import build
from medref_cli.workspace import Workspace


def run(req: TrainRequest, ws: Workspace, pseudo_labels: Path | None = None) -> tuple[RunInfo, Path]:
    from medref_cli.pseudo_labels import extra_labeled
    from medref_cli.training.data import items
    from medref_cli.training.loop import fit
    from medref_cli.training.method import Supervised

    with build(req, ws, pseudo_labels) as s:
        data_l = items(s.manifest, s.folder, s.spec.train_labeled)
        if pseudo_labels is not None:
            data_l += extra_labeled(pseudo_labels, s.manifest, s.folder, s.spec)
        data_val = items(s.manifest, s.folder, s.spec.val)
        info = fit(s.ctx, Supervised(s.ctx), data_l, None, data_val, resume=req.resume)
    return info, s.ctx.run
