"""Semi-train configuration: `MethodConfig` (every (ref) number of SPEC 3 is a field) and the two recipes.

A recipe is a named set of field values laid over the preset and under the user's `--config` file and
options, so any one difference can still be switched alone:

| field                 | `official` (aierwaixi/Semi-MedRef b9cd4b7)      | `medref`                                  |
|-----------------------|-------------------------------------------------|-------------------------------------------|
| sup_loss              | dice (MONAI 1.0.1's single-channel CE term is 0) | dice_ce                                   |
| unsup_loss            | dice on 1[p >= 0.5], every pixel                 | masked_bce_dice (confident pixels)        |
| burn_in_teacher       | ema (keeps averaging at ema_start)               | copy                                      |
| pos_aug_first         | true (T-PatchMix reads the augmented phrases)    | false                                     |
| itc_unlabeled_view    | weak (separate pass, original text)              | mixed (the student's own pass)            |
| itc_empty_positive    | false                                            | true (SPEC 3.4)                           |
| side_gate             | false                                            | true                                      |
| feature_dropout       | 0                                                | 0.5                                       |
| unsup_weight, mix_prob, eval_model | 0.3, 0.08, student                  | 1.0, 0.25, teacher                        |
| train.anneal_factor   | 2.0 (cosine over 200 epochs, training 100)       | 1.0                                       |

Pure: no torch import, so the CLI and the config checks stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from medref_cli.errors import MedrefError

SUP_LOSSES = ("dice_ce", "dice")
UNSUP_LOSSES = ("dice", "masked_bce_dice")
ITC_VIEWS = ("weak", "mixed")
DEFAULT_RECIPE = "medref"


@dataclass(frozen=True)
class MethodSpec:
    """One trainable method: how it is run and which MethodConfig fields it fixes. One entry in `METHODS`
    adds a method to `semi-train --method`, to table1 (`methods:` of a profile) and to run names."""

    summary: str  # one line for the CLI help and the docs
    stage: str  # pretrain (labelled images only) | semi-train
    fields: dict[str, Any]  # MethodConfig values the method sets over the recipe
    ablations: tuple[str, ...] = ()  # switchable parts (`--no-<part>`, table1 `<method>-no-<part>`)
    recipes: bool = False  # takes `--recipe` (table1 `<method>-<recipe>`)


_NO_PARTS = {"t_patchmix": False, "pos_aug": False, "itcl": False}
METHODS: dict[str, MethodSpec] = {
    "supervised": MethodSpec("labelled images only (`medref pretrain`)", "pretrain", _NO_PARTS),
    "mean-teacher": MethodSpec("EMA teacher pseudo-labels the unlabelled images, no mixing", "semi-train",
                               _NO_PARTS),
    "cutmix": MethodSpec("mean teacher + random CutMix between unlabelled images, captions kept", "semi-train",
                         {**_NO_PARTS, "cutmix": True}),
    "semi-medref": MethodSpec("mean teacher + T-PatchMix, PosAug and ITCL (SPEC 3)", "semi-train", {},
                              ablations=("t-patchmix", "pos-aug", "itcl"), recipes=True),
}


@dataclass
class MethodConfig:
    name: str = "semi-medref"
    recipe: str = DEFAULT_RECIPE
    t_patchmix: bool = True
    pos_aug: bool = True
    itcl: bool = True
    sup_loss: str = "dice_ce"  # dice_ce | dice
    unsup_loss: str = "masked_bce_dice"  # dice: Dice on the hard pseudo-label over every pixel (ref)
    pseudo_thresh: float = 0.5  # hard pseudo-label 1[p >= t] with T-PatchMix on (ref 0.5)
    pseudo_thresh_no_mix: float = 0.5  # ... and with T-PatchMix off (ref 0.55)
    conf_thresh: float = 0.55  # masked_bce_dice: teacher confidence for a pixel to count in L_u
    side_gate: bool = False  # zero the teacher's probability in the image half a one-lung report does not name
    feature_dropout: float = 0.0  # UniMatch-style channel dropout on the unlabelled student's encoder features
    unsup_weight: float = 0.3
    burn_in_epochs: int = 5
    burn_in_teacher: str = "ema"  # ema: keeps averaging at ema_start (ref) | copy: decay 0 during burn-in
    unsup_ramp_epochs: int = 15
    ema_start: float = 0.99
    ema_end: float = 0.999
    ema_ramp_epochs: int = 20
    itc_weight_labeled: float = 0.02
    itc_weight_unlabeled: float = 0.10
    itc_tau: float = 0.07
    itc_unlabeled_view: str = "weak"  # weak: student on (weak image, original text), own pass (ref) | mixed
    itc_empty_positive: bool = False  # two empty zone vectors are positives (SPEC 3.4) or not (ref)
    pos_aug_p: float = 0.5
    pos_aug_mode: str = "mix"
    pos_aug_first: bool = True  # PosAug before T-PatchMix reads the phrases (ref)
    mix_block: int = 16  # at 224 px; scaled with the image size
    mix_prob: float = 0.08
    mix_gate: float = 0.55
    cutmix: bool = False  # random CutMix of the unlabelled images (the cutmix baseline)
    cutmix_prob: float = 0.5
    eval_model: str = "student"  # student | teacher


# Each recipe: {"method": {...}, "train": {...}} laid over the preset (see the module table).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "official": {
        "method": {"sup_loss": "dice", "unsup_loss": "dice", "pseudo_thresh": 0.5, "pseudo_thresh_no_mix": 0.55,
                   "burn_in_teacher": "ema", "pos_aug_first": True, "itc_unlabeled_view": "weak",
                   "itc_empty_positive": False, "side_gate": False, "feature_dropout": 0.0, "unsup_weight": 0.3,
                   "mix_prob": 0.08, "eval_model": "student"},
        "train": {"anneal_factor": 2.0},
    },
    "medref": {
        "method": {"sup_loss": "dice_ce", "unsup_loss": "masked_bce_dice", "burn_in_teacher": "copy",
                   "pos_aug_first": False, "itc_unlabeled_view": "mixed", "itc_empty_positive": True,
                   "side_gate": True, "feature_dropout": 0.5, "unsup_weight": 1.0, "mix_prob": 0.25,
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
    """A checked MethodConfig; the method's registry entry (`METHODS`) fixes its own fields (the baselines
    switch T-PatchMix, PosAug and ITCL off)."""
    known = {f.name for f in fields(MethodConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MedrefError(f"{where}: unknown field(s) {', '.join(unknown)}")
    _choice(values.get("name", MethodConfig.name), tuple(METHODS), "--method")
    cfg = MethodConfig(**{**values, **METHODS[values.get("name", MethodConfig.name)].fields})
    _choice(cfg.recipe, tuple(RECIPES), "--recipe")
    _choice(cfg.eval_model, ("student", "teacher"), "--eval-model")
    _choice(cfg.sup_loss, SUP_LOSSES, f"{where}.sup_loss")
    _choice(cfg.unsup_loss, UNSUP_LOSSES, f"{where}.unsup_loss")
    _choice(cfg.itc_unlabeled_view, ITC_VIEWS, f"{where}.itc_unlabeled_view")
    _choice(cfg.burn_in_teacher, ("ema", "copy"), f"{where}.burn_in_teacher")
    if not 0.0 <= cfg.feature_dropout < 1.0:
        raise MedrefError(f"{where}.feature_dropout {cfg.feature_dropout}: must be in [0, 1)")
    return cfg
