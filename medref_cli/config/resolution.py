"""From a training request to a run config: the preset merge (`resolve`), the request (`TrainRequest`), the
`--config` file, the run config saved as `config.yaml` (`RunConfig`, versioned, with its `RunInputs`) and what
`--resume` may change (`resume_config`)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from medref_cli.config.presets import (
    DEFAULT_PRESET,
    DEFAULT_RECIPE,
    ENCODER_DEFAULTS,
    ENCODER_WIDTHS,
    METHODS,
    PRESETS,
    recipe_layer,
)
from medref_cli.config.schema import MethodConfig, ModelConfig, TrainConfig, method_config, model_config, train_config
from medref_cli.errors import MedrefError


def merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    """Deep merge of config dicts: `override` wins, nested sections merge key by key (a new copy)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


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
        if self.method is not None:
            out["method"] = asdict(self.method)
        return {name: {k: plain_value(v) for k, v in section.items()} for name, section in out.items()}

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
