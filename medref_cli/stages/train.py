"""The one training stage: `medref pretrain` (stages/pretrain.py) and `medref semi-train` (stages/semi_train.py)
are its two entry points. The run's method comes from its registry entry (`config.METHODS`, built by
`training.method.build_method`); a method that uses unlabelled images gets the split's unlabelled part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medref_cli.artifacts import RunStatus
from medref_cli.config import InitRun, TrainRequest
from medref_cli.errors import MedrefError
from medref_cli.training.setup import build
from medref_cli.workspace import Workspace


def run(req: TrainRequest, ws: Workspace, pseudo_labels: Path | None = None,
        init_state: dict[str, Any] | None = None, init: InitRun | None = None) -> tuple[RunStatus, Path]:
    """Train run `req` (new or `--resume`); `pseudo_labels`: a `pseudo-label` output added as labelled data;
    `init_state`: model weights to start from, and `init` what they bring to the config (`semi-train --init`)."""
    from medref_cli.pseudo_labels import extra_labeled
    from medref_cli.training.data import items
    from medref_cli.training.loop import fit
    from medref_cli.training.method import build_method

    with build(req, ws, pseudo_labels, init) as s:
        if init_state is not None:
            s.ctx.model.load_state_dict(init_state)
        method = build_method(s.ctx)
        data_l = items(s.manifest, s.folder, s.spec.train_labeled)
        if s.pseudo_labels is not None:  # as given, or (--resume) as config.yaml records it
            extra = extra_labeled(s.pseudo_labels, s.manifest, s.folder, s.spec)
            if not extra:
                raise MedrefError(f"{s.pseudo_labels}: no pseudo-labels for this split's unlabelled images")
            data_l += extra
        data_u = None
        if method.uses_unlabeled:
            unlabeled = set(s.spec.train_unlabeled) - {d["id"] for d in data_l}
            data_u = items(s.manifest, s.folder, sorted(unlabeled), with_labels=False)
        data_val = items(s.manifest, s.folder, s.spec.val)
        info = fit(s.ctx, method, data_l, data_u, data_val, resume=req.resume)
    return info, s.ctx.run
