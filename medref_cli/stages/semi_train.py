"""`medref semi-train`: Semi-MedRef and the SSL baselines in one loop (SPEC 3); an entry point of the one
training stage (stages/train.py).

`--init RUN` starts student and teacher from a `pretrain` run's best checkpoint; its preset and model config
become a layer of the run's config (`config.resolve_config`: a conflicting option is refused) and the burn-in is
skipped. `--pseudo-labels DIR` adds a `pseudo-label` output as extra labelled data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medref_cli.artifacts import RunStatus
from medref_cli.config import InitRun, TrainRequest, check_semi_method
from medref_cli.stages import train
from medref_cli.workspace import Workspace


def init_run(req: TrainRequest, ws: Workspace) -> tuple[InitRun, dict[str, Any]]:
    """`--init RUN`: what it brings to the config (`config.InitRun`) and the model weights it starts from."""
    from medref_cli.model import checkpoint
    from medref_cli.training.run_dir import resolve_run

    init_dir = resolve_run(req.init_from, ws.runs)
    ckpt, sha256 = checkpoint.load_hashed(init_dir / "checkpoint_best.pt")
    return InitRun(init_dir.name, sha256, ckpt["preset"], dict(ckpt["config"]["model"])), ckpt["model"]


def run(req: TrainRequest, ws: Workspace, pseudo_labels: Path | None = None) -> tuple[RunStatus, Path]:
    check_semi_method(req.method)  # before any folder exists
    init, init_state = init_run(req, ws) if req.init_from and not req.resume else (None, None)
    return train.run(req, ws, pseudo_labels, init_state, init)
