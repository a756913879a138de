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
             ("train", "threads"), ("train", "num_workers"), ("train", "checkpoint_every_s")}


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
    """A YAML file whose top level is a mapping (read with `workspace.safe_load_yaml`: a safe loader)."""
    import yaml

    from medref_cli.workspace import safe_load_yaml

    if not path.is_file():
        raise MedrefError(f"{path}: config file not found")
    try:
        data = safe_load_yaml(path.read_text()) or {}
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


CONFIG_VERSION = 3  # config.yaml; older versions come up through CONFIG_MIGRATIONS
RUN_PRODUCER = "medref pretrain` or `medref semi-train"


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
class RunData:
    """What a run trains on: the prepared dataset (name and the hash of its manifest), the labelled share as asked
    (`--labeled`) and the split file it drew (`splits/<file>`, copied to `<run>/split.json`)."""

    dataset: str = ""
    dataset_hash: str = ""
    ratio: str = ""
    split_file: str = ""


@dataclass(frozen=True)
class RunConfig:
    """A run's spec: everything it is, written once to `config.yaml` before training starts (only what `--resume`
    may change is rewritten later): the preset and every config section after every layer (preset, recipe,
    `--config` file, command-line options, `--init`, the method's own fields), the data and the inputs. The
    method (`method.name`; `supervised` for `pretrain`) gives the stage, `train.seed` the seed. `to_dict` is what
    each checkpoint holds of it; loading gives back an equal object (`from_dict`, `load_run_config`). run.json
    only says how far the run got (`artifacts.RunStatus`)."""

    preset: str
    model: ModelConfig
    train: TrainConfig
    method: MethodConfig
    data: RunData = field(default_factory=RunData)
    inputs: RunInputs = field(default_factory=RunInputs)

    @property
    def stage(self) -> str:
        """pretrain | semi-train: the method's (`METHODS`)."""
        return METHODS[self.method.name].stage

    @property
    def seed(self) -> int:
        return self.train.seed

    def to_dict(self) -> dict[str, Any]:
        """`{"model": {...}, "train": {...}, "method": {...}}`, plain YAML / JSON values, every field."""
        out = {"model": asdict(self.model), "train": asdict(self.train), "method": asdict(self.method)}
        return {name: {k: plain_value(v) for k, v in section.items()} for name, section in out.items()}

    def to_yaml(self) -> bytes:
        """`config.yaml` of a run: the spec, current version."""
        import yaml

        return yaml.safe_dump({"schema_version": CONFIG_VERSION, "preset": self.preset, "data": asdict(self.data),
                               "inputs": asdict(self.inputs), "config": self.to_dict()}, sort_keys=False).encode()

    @classmethod
    def build(cls, preset: str, config: dict[str, Any], method: str, where: str = "config") -> RunConfig:
        """From a config dict (`to_dict`'s form), checked; `method` names the method (`supervised` for pretrain)."""
        values = copy.deepcopy(config)
        return cls(preset, model_config(values["model"], f"{where}: model"),
                   train_config(values["train"], f"{where}: train"),
                   method_config(dict(values.get("method") or {}, name=method), f"{where}: method"))

    @classmethod
    def from_dict(cls, saved: dict[str, Any], where: str = "config.yaml") -> RunConfig:
        """The content of a current-version `config.yaml` (`to_yaml`), checked."""
        config = saved["config"]
        if not isinstance(config, dict) or not isinstance(config.get("method"), dict):
            raise MedrefError(f"{where}: malformed (expected `config:` with model, train and method sections)")
        parts = {}
        for name, kind in (("data", RunData), ("inputs", RunInputs)):
            recorded = saved.get(name) or {}
            unknown = sorted(set(recorded) - {f.name for f in fields(kind)})
            if unknown:
                raise MedrefError(f"{where}: {name}: unknown field(s) {', '.join(unknown)}")
            parts[name] = kind(**recorded)
        return replace(cls.build(saved["preset"], config, config["method"].get("name", ""), where), **parts)


def load_run_config(run: Path) -> RunConfig:
    """`<run>/config.yaml`, of any version (older ones migrated, `CONFIG_MIGRATIONS`), checked."""
    from medref_cli.artifacts import load_artifact

    return load_artifact(RunConfig, run / "config.yaml", CONFIG_VERSION, RUN_PRODUCER, CONFIG_MIGRATIONS)


# MethodConfig defaults of config.yaml files written before the whole config was (2026-12-01): the losses and
# threshold before they became the official values, and the strong view before `window` existed
LEGACY_STRONG_VIEW = {"strong_view": "jitter"}
LEGACY_METHOD_DEFAULTS = {"sup_loss": "dice_ce", "unsup_loss": "masked_bce_dice", "pseudo_thresh_no_mix": 0.5,
                          **LEGACY_STRONG_VIEW}


def _run_json_v1(saved: dict[str, Any], path: Path) -> dict[str, Any]:
    """The version-1 run.json beside an old config.yaml (`saved`, checked for its shape first): until config.yaml
    3 it held the run's identity."""
    import json

    if not isinstance(saved.get("config"), dict) or "preset" not in saved:
        raise MedrefError(f"{path}: malformed (expected `preset:` and `config:` as medref wrote them)")
    run_json = path.parent / "run.json"
    try:
        info = json.loads(run_json.read_text())
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict) or info.get("schema_version", 1) != 1 or "method" not in info:
        raise MedrefError(f"{path}: an old config.yaml (version < 3) needs the version-1 {run_json.name} beside it "
                          "(the run's method and data); it is missing or newer")
    return info


def migrate_config_v1(saved: dict[str, Any], path: Path) -> dict[str, Any]:
    """config.yaml 1 -> 2: no `inputs` yet; a method block written before the whole config was saved (no `name`:
    the preset's and the recipe's fields only) gets the defaults of its time, one written before `strong_view`
    existed ran the jitter view."""
    info = _run_json_v1(saved, path)
    config = copy.deepcopy(saved["config"])
    block = config.get("method")
    if info.get("stage") == "semi-train" and isinstance(block, dict):
        config["method"] = {**(LEGACY_METHOD_DEFAULTS if "name" not in block else LEGACY_STRONG_VIEW), **block}
    return {**saved, "config": config, "inputs": saved.get("inputs") or {}}


def migrate_config_v2(saved: dict[str, Any], path: Path) -> dict[str, Any]:
    """config.yaml 2 -> 3: the run's identity moves in from run.json 1 (the method, the data; `pretrain` gets its
    `supervised` method block); `--init` recorded as run.json's `init_from` when `inputs` lacks it."""
    info = _run_json_v1(saved, path)
    config = copy.deepcopy(saved["config"])
    config["method"] = {**(config.get("method") or {}), "name": info["method"]}
    inputs = dict(saved.get("inputs") or {})
    if inputs.get("init_run") is None and info.get("init_from"):
        inputs["init_run"] = info["init_from"]
    data = {k: info.get(k, "") for k in ("dataset", "dataset_hash", "ratio", "split_file")}
    return {**saved, "config": config, "inputs": inputs, "data": data}


CONFIG_MIGRATIONS = {1: migrate_config_v1, 2: migrate_config_v2}


@dataclass(frozen=True)
class InitRun:
    """What `semi-train --init RUN` brings to the new run: the run's name, the sha256 of the checkpoint_best.pt it
    copies, and its preset and model config, which fix the new run's."""

    name: str
    sha256: str
    preset: str
    model: dict[str, Any]


def check_init_conflicts(req: TrainRequest, init: InitRun, file_cfg: dict[str, Any]) -> None:
    """`--init RUN` fixes the model: a `--preset` or a model field (`--encoder`, `--text-encoder`, a `model:`
    section) that differs from the run's is refused, not silently overridden."""
    if req.preset is not None and req.preset != init.preset:
        raise MedrefError(f"--preset {req.preset}: --init {init.name} was trained with preset {init.preset}, and "
                          f"--init fixes the model; drop --preset (or pass --preset {init.preset})")
    asked = {**(file_cfg.get("model") or {}), **req.overrides.get("model", {})}
    for key, value in asked.items():
        if key in init.model and key != "encoder_pretrained" and plain_value(value) != plain_value(init.model[key]):
            raise MedrefError(f"model.{key} {value!r}: --init {init.name} has {init.model[key]!r}, and --init fixes "
                              f"the model; drop the option (or train a new pretrain run with it)")


def resolve_config(req: TrainRequest, file_cfg: dict[str, Any], init: InitRun | None = None,
                   pseudo_labels: tuple[str, str] | None = None) -> RunConfig:
    """The run's config, checked, before any folder exists: preset, then (semi-train) the recipe, then the
    `--config` file, then the command-line options, then `--init`'s preset and model (a conflicting option is
    refused) with no burn-in; the method's registry entry fixes its own fields last. The recipe is the one the
    options name, else the file's, else the default. `init` and `pseudo_labels` (folder, sha256 of its
    pseudo_labels.json) are recorded as the run's `inputs`."""
    overrides, preset = req.overrides, req.new_run_preset
    if init is not None:
        check_init_conflicts(req, init, file_cfg)
        preset = init.preset
        overrides = merge(overrides, {"model": dict(init.model, encoder_pretrained=None),
                                      "method": {"burn_in_epochs": 0}}, "--init")
    layers = [(file_cfg, str(req.config_file or "config"))]
    if req.stage == "semi-train":
        recipe = (req.overrides.get("method", {}).get("recipe") or file_cfg.get("method", {}).get("recipe")
                  or DEFAULT_RECIPE)
        layers.insert(0, (recipe_layer(recipe), f"recipe {recipe}"))
    config = resolve(preset, overrides, "command-line options", layers)
    config["train"]["seed"] = req.new_run_seed  # draws the split, seeds training
    reads = METHODS[req.method].reads if req.method in METHODS else None  # an unknown name: refused by build
    if reads is not None:  # e.g. supervised: the layers' semi-train schedules are not its values
        config["method"] = {k: v for k, v in (config.get("method") or {}).items() if k in reads}
    inputs = RunInputs(*((init.name, init.sha256) if init else (None, None)), *(pseudo_labels or (None, None)))
    try:
        return replace(RunConfig.build(preset, config, req.method), inputs=inputs)
    except MedrefError as exc:
        if req.config_file is None:
            raise
        raise MedrefError(f"{req.config_file} (or an option): {exc}") from None


def plain_value(value: Any) -> Any:
    """YAML round-trips tuples as lists: compare like with like."""
    return list(value) if isinstance(value, tuple) else value


def resume_config(req: TrainRequest, run: Path, was: RunConfig, file_cfg: dict[str, Any]) \
        -> tuple[RunConfig, list[str]]:
    """The run's saved config with what `--resume` may change applied (RESUMABLE); (config, applied changes).
    Any other change (preset, labelled share, seed, method, a model or method field) is a one-line error."""
    fixed = [("--preset", req.preset, was.preset), ("--labeled", req.labeled, was.data.ratio),
             ("--seed", req.seed, was.seed), ("--method", req.method, was.method.name)]
    for option, asked, had in fixed:
        if asked is not None and asked != had:
            raise MedrefError(f"{run}: --resume cannot change {option} ({had} -> {asked}); start a new run "
                              f"(--name) or pass --overwrite")
    config = was.to_dict()
    applied: list[str] = []
    for section, values in merge(file_cfg, req.overrides, "options").items():
        for key, value in (values or {}).items() if isinstance(values, dict) else []:
            now = config.get(section, {}).get(key, "unset")
            if plain_value(now) == plain_value(value):
                continue
            if (section, key) not in RESUMABLE:
                allowed = ", ".join(f"{a}.{b}" for a, b in sorted(RESUMABLE))
                raise MedrefError(f"{run}: --resume cannot change {section}.{key} ({now!r} -> {value!r}); it may "
                                  f"change {allowed}; start a new run (--name) or pass --overwrite")
            config[section][key] = value
            applied.append(f"{section}.{key} {now!r} -> {value!r}")
    return replace(RunConfig.build(was.preset, config, was.method.name), data=was.data, inputs=was.inputs), applied
