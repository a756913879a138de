"""Configuration: the typed sections (`schema`: `ModelConfig`, `TrainConfig`, `MethodConfig`), the presets, the
method registry and the recipes (`presets`), and the request a training stage resolves into a run config
(`resolution`). Every public name is importable from `medref_cli.config`.

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
options, so any one difference can still be switched alone. `MethodConfig`'s defaults are the official values
(its `recipe` default says so), so the `official` recipe sets only the schedule; `RunConfig` is the result of every
layer, saved whole and versioned as `config.yaml` (older versions are migrated on load):

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

from medref_cli.config.presets import (  # noqa: F401 - the package's names, one import away
    DEFAULT_PRESET,
    DEFAULT_RECIPE,
    ENCODER_DEFAULTS,
    ENCODER_WIDTHS,
    METHODS,
    PRESETS,
    RECIPES,
    MethodSpec,
    check_semi_method,
    recipe_layer,
)
from medref_cli.config.resolution import (  # noqa: F401 - the package's names, one import away
    CONFIG_SECTIONS,
    CONFIG_VERSION,
    DEFAULT_SEED,
    LEGACY_METHOD_DEFAULTS,
    LEGACY_STRONG_VIEW,
    RESUMABLE,
    RUN_PRODUCER,
    InitRun,
    RunConfig,
    RunData,
    RunInputs,
    TrainRequest,
    check_init_conflicts,
    default_run_name,
    load_config_file,
    load_run_config,
    load_yaml,
    merge,
    plain_value,
    resolve,
    resolve_config,
    resume_config,
)
from medref_cli.config.schema import (  # noqa: F401 - the package's names, one import away
    ITC_VIEWS,
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MINILM,
    RANGES,
    STRONG_VIEWS,
    SUP_LOSSES,
    THRESHOLD,
    UNSUP_LOSSES,
    MethodConfig,
    ModelConfig,
    TrainConfig,
    check_fields,
    check_seed,
    method_config,
    model_config,
    train_config,
)
