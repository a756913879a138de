"""`RunContext`: what every part of training shares about one run (folder, config, model, text encoder,
device, status, DDP rank). Its own module, so methods (training/method.py, semi/) and the loop import it
without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medref_cli.artifacts import RunStatus
from medref_cli.config import ModelConfig, RunConfig, TrainConfig


@dataclass
class RunContext:
    run: Path
    config: RunConfig
    model: nn.Module
    text: Any  # FrozenTextEncoder
    device: torch.device
    status: RunStatus  # run.json (what the run is: `config`)
    rank: int = 0
    world: int = 1
    progress: bool = False

    @property
    def model_cfg(self) -> ModelConfig:
        return self.config.model

    @property
    def train(self) -> TrainConfig:
        return self.config.train

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def amp(self) -> bool:
        return self.train.amp if self.device.type == "cuda" else self.train.amp_cpu
