"""`medref pretrain`: supervised training on `train_labeled` of a split (creating the split if needed)."""

from __future__ import annotations

from pathlib import Path

from medref_cli.training.run_dir import RunInfo
from medref_cli.training.setup import TrainRequest, build
from medref_cli.workspace import Workspace


def run(req: TrainRequest, ws: Workspace, pseudo_labels: Path | None = None) -> tuple[RunInfo, Path]:
    from medref_cli.stages.pseudo_label import extra_labeled
    from medref_cli.training.data import items
    from medref_cli.training.loop import Method, fit

    ctx, spec, manifest, folder = build(req, ws)
    data_l = items(manifest, folder, spec.train_labeled)
    if pseudo_labels is not None:
        data_l += extra_labeled(pseudo_labels, manifest, folder, spec)
    data_val = items(manifest, folder, spec.val)
    info = fit(ctx, Method(ctx), data_l, None, data_val, resume=req.resume)
    return info, ctx.run
