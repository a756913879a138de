"""The named layers of a config: the presets, the encoders' fixed widths and defaults, the method registry
(`METHODS`) and the recipes (`RECIPES`). Data only (torch-free): a method's class is named, not imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medref_cli.errors import MedrefError

# Encoders whose architecture fixes the widths the decoder sees (strides 4, 8, 16, 32); `resolve` sets them.
ENCODER_WIDTHS: dict[str, list[int]] = {"efficientnet-lite0": [24, 40, 112, 320]}
# Model fields an encoder brings when it is chosen: a layer just over the preset, so a `--config` file or an
# option still overrides them (`encoder_pretrained: null` trains Lite0 from scratch).
ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {"efficientnet-lite0": {"encoder_pretrained": "imagenet"}}

# `method` holds semi-train defaults (`schema.MethodConfig`) that a preset rescales.
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
        # MONAI BasicUNet blocks: from scratch on 128-px QaTa it beats the ConvNeXt encoder for both methods
        # (5 %, 3 seeds each: supervised 0.7920 +- 0.0086 vs 0.7659 +- 0.0016; README, results/backbones)
        "model": {"image_size": 128, "encoder": "unet", "encoder_widths": [32, 64, 128, 256],
                  "encoder_depths": [2, 2, 2, 2],
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
DEFAULT_RECIPE = "medref"


@dataclass(frozen=True)
class MethodSpec:
    """One trainable method. One entry in `METHODS` adds it to `pretrain` / `semi-train --method`, to table1
    (`methods:` of a profile), to run names and to the config reference; `builder` names its class, built lazily
    (`training.method.build_method`), so this registry stays torch-free."""

    summary: str  # one line for the CLI help and the docs
    stage: str  # pretrain (labelled images only) | semi-train
    builder: str  # "module:Class" of its `training.method.Method`, constructed as Class(ctx, method config)
    fixed: dict[str, Any] = field(default_factory=dict)  # MethodConfig values that define it: over every layer
    defaults: dict[str, Any] = field(default_factory=dict)  # MethodConfig values it starts from: any layer changes them
    ablations: tuple[str, ...] = ()  # switchable parts (`--no-<part>`, table1 `<method>-no-<part>`)
    recipes: bool = False  # takes `--recipe` (table1 `<method>-<recipe>`)
    # which key of checkpoint_best.pt holds which weights: `evaluated` (validated, evaluated, predicted with) and,
    # for a method with an EMA teacher, `teacher` (what `pseudo-label` uses by default)
    weights: dict[str, str] = field(default_factory=lambda: {"evaluated": "model"})
    # the MethodConfig fields it reads, which the layers (preset, `--config`, options) may set; None: all. The
    # others keep their defaults in its config, so a run records no value it never used
    reads: tuple[str, ...] | None = None


# The generic SSL baselines take nothing from the report in their training signal: no text-synchronised part,
# and no side gate of the teacher's pseudo-labels (the report's lung halves); the network itself still reads it.
_NO_PARTS = {"t_patchmix": False, "pos_aug": False, "itcl": False, "cutmix": False, "cutmix_sides": False,
             "side_gate": False}
_SUPERVISED = "medref_cli.training.method:Supervised"
_TEACHER_STUDENT = "medref_cli.semi.methods:TeacherStudent"
_WITH_TEACHER = {"evaluated": "model", "teacher": "teacher"}
METHODS: dict[str, MethodSpec] = {
    # no recipe (`recipe: null`): the recipes are semi-train layers; its loss is `sup_loss`, DiceCE by default
    "supervised": MethodSpec("labelled images only (`medref pretrain`)", "pretrain", _SUPERVISED,
                             {**_NO_PARTS, "recipe": None, "eval_model": "student"}, {"sup_loss": "dice_ce"},
                             reads=("sup_loss",)),
    "mean-teacher": MethodSpec("EMA teacher pseudo-labels the unlabelled images, no mixing, no side gate",
                               "semi-train", _TEACHER_STUDENT, _NO_PARTS, weights=_WITH_TEACHER),
    "cutmix": MethodSpec("mean teacher + random CutMix between unlabelled images, captions kept, no side gate",
                         "semi-train", _TEACHER_STUDENT, {**_NO_PARTS, "cutmix": True}, weights=_WITH_TEACHER),
    "semi-medref": MethodSpec("mean teacher + T-PatchMix, PosAug and ITCL (SPEC 3); the medref recipe adds a "
                              "side-consistent CutMix", "semi-train", _TEACHER_STUDENT,
                              ablations=("t-patchmix", "pos-aug", "itcl", "cutmix"), recipes=True,
                              weights=_WITH_TEACHER),
}


def check_semi_method(name: str) -> None:
    """Refuse a `semi-train --method` that is not a semi-train method (`supervised` runs as `medref pretrain`);
    an unknown name is left to `method_config`, which lists every method."""
    spec = METHODS.get(name)
    if spec is not None and spec.stage != "semi-train":
        semi = ", ".join(n for n, s in METHODS.items() if s.stage == "semi-train")
        raise MedrefError(f"--method {name}: a {spec.stage} method; run `medref {spec.stage}` (semi-train takes "
                          f"{semi})")


# Each recipe: {"method": {...}, "train": {...}} laid over the preset (the table in `medref_cli.config`'s
# docstring); `official` changes no method field, since MethodConfig's defaults are the official values.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "official": {"method": {}, "train": {"anneal_factor": 2.0}},
    "medref": {
        "method": {"sup_loss": "dice_ce", "unsup_loss": "masked_bce_dice", "pseudo_thresh_no_mix": 0.5,
                   "burn_in_teacher": "copy",
                   "pos_aug_first": False, "itc_unlabeled_view": "mixed", "itc_empty_positive": True,
                   "side_gate": True, "feature_dropout": 0.5, "cutmix": True, "cutmix_sides": True,
                   "unsup_weight": 1.0, "mix_prob": 0.25, "strong_view": "jitter",
                   "eval_model": "teacher"},
        "train": {"anneal_factor": 1.0},
    },
}


def recipe_layer(name: str) -> dict[str, dict[str, Any]]:
    """The config layer of recipe `name` (its own name included)."""
    if name not in RECIPES:
        raise MedrefError(f"--recipe {name!r}: choose one of {', '.join(RECIPES)}")
    layer = RECIPES[name]
    return {"method": {**layer["method"], "recipe": name}, "train": dict(layer["train"])}


DEFAULT_PRESET = "cpu"
