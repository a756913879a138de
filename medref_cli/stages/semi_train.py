"""`medref semi-train`: Semi-MedRef and the SSL baselines in one loop (SPEC 3); an entry point of the one
training stage (stages/train.py).

`--init RUN` starts student and teacher from a `pretrain` run's best checkpoint (its model config wins)
and skips the burn-in. `--pseudo-labels DIR` adds a `pseudo-label` output as extra labelled data.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from medref_cli.artifacts import RunStatus
from medref_cli.config import TrainRequest, check_semi_method
from medref_cli.errors import MedrefError
from medref_cli.stages import train
from medref_cli.workspace import Workspace


def check_init_conflicts(req: TrainRequest, init_name: str, init_preset: str, init_model: dict) -> None:
    """`--init RUN` fixes the model: a `--preset` or a model field (`--encoder`, `--text-encoder`, a `model:`
    section) that differs from the run's is refused, not silently overridden."""
    from medref_cli.config import load_config_file, plain_value

    if req.preset is not None and req.preset != init_preset:
        raise MedrefError(f"--preset {req.preset}: --init {init_name} was trained with preset {init_preset}, and "
                          f"--init fixes the model; drop --preset (or pass --preset {init_preset})")
    asked = {**(load_config_file(req.config_file).get("model", {}) if req.config_file else {}),
             **req.overrides.get("model", {})}
    for key, value in asked.items():
        if key in init_model and key != "encoder_pretrained" and plain_value(value) != plain_value(init_model[key]):
            raise MedrefError(f"model.{key} {value!r}: --init {init_name} has {init_model[key]!r}, and --init fixes "
                              f"the model; drop the option (or train a new pretrain run with it)")


def run(req: TrainRequest, ws: Workspace, pseudo_labels: Path | None = None) -> tuple[RunStatus, Path]:
    from medref_cli.model import checkpoint
    from medref_cli.training.run_dir import resolve_run

    check_semi_method(req.method)  # before any folder exists
    init_state = None
    if req.init_from and not req.resume:  # the pretrain run's model config wins; no burn-in (a new request)
        init_dir = resolve_run(req.init_from, ws.runs)
        ckpt = checkpoint.load(init_dir / "checkpoint_best.pt")
        model_cfg = dict(ckpt["config"]["model"], encoder_pretrained=None)
        check_init_conflicts(req, init_dir.name, ckpt["preset"], model_cfg)
        req = replace(req, preset=ckpt["preset"],  # the run records the preset and model it really trains
                      overrides={**req.overrides, "model": {**req.overrides.get("model", {}), **model_cfg},
                                 "method": {**req.overrides.get("method", {}), "burn_in_epochs": 0}})
        init_state = ckpt["model"]
    return train.run(req, ws, pseudo_labels, init_state)
