"""The Table 1 experiment matrix: a profile of `pipelines/table1.yaml` read and checked, and its cells
(dataset x ratio x budget x seed x method), each with its run name and the command that runs it alone."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medref_cli.artifacts import EvalSummary
from medref_cli.config import METHODS, RECIPES, load_yaml
from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace


@dataclass
class Table1Config:
    profile: str = "sample"
    pipeline: Path | None = None
    raw: Path | None = None
    seeds: list[int] | None = None
    progress: bool = False
    collect: bool = False  # only gather cells already evaluated (status "missing" for the others)
    only: str | None = None  # run this one cell (its run name, as `--list` prints it)
    launcher: str = "inline"  # inline | local | slurm
    jobs: int = 1  # cells running at once under local / slurm
    slurm: dict[str, Any] = field(default_factory=dict)  # extra submitit parameters, e.g. {"slurm_partition": "gpu"}


@dataclass
class Cell:
    dataset: str
    ratio: str
    method: str
    seed: int
    status: str = "pending"
    run: str = ""
    summary: EvalSummary | None = None
    error: str = ""
    wall_s: float = 0.0  # this invocation's time on the cell (0 for a cell found done)
    train_s: float | None = None  # the run's own training time (its last `elapsed_s`), also for a cell found done
    budget: float | None = None  # train.max_minutes of this cell (profiles with `budgets`)

    @property
    def column(self) -> str:
        """The table column: the ratio, and the budget where the profile has budgets."""
        return self.ratio if self.budget is None else f"{self.ratio} {self.budget:g} min"

    @property
    def run_name(self) -> str:
        budget = "" if self.budget is None else f"-{self.budget:g}min"
        return f"t1-{self.method}-{self.dataset}-{self.ratio.replace('%', 'pct')}{budget}-s{self.seed}"


def default_pipeline() -> Path:
    """The shipped matrices: package data (`medref_cli/pipelines/`, also reachable as `pipelines/` in a checkout),
    so `medref table1` works from a wheel too."""
    from importlib.resources import files

    return Path(str(files("medref_cli") / "pipelines" / "table1.yaml"))


def load_profile(path: Path, profile: str) -> dict[str, Any]:
    data = load_yaml(path)
    profiles = data.get("profiles", {})
    if profile not in profiles:
        raise MedrefError(f"{path}: no profile {profile!r} (profiles: {', '.join(profiles) or 'none'})")
    prof = profiles[profile]
    for key in ("preset", "datasets", "ratios", "methods", "seeds"):
        if key not in prof:
            raise MedrefError(f"{path}: profile {profile!r} lacks {key!r}")
    methods = prof["methods"]
    if isinstance(methods, dict):
        unknown = sorted(set(methods) - set(prof["ratios"]), key=str)
        if unknown or set(prof["ratios"]) - set(methods):
            raise MedrefError(f"{path}: profile {profile!r}: per-ratio methods must name each of its ratios "
                              f"{prof['ratios']} once (extra: {unknown or 'none'})")
    for m in {m for ms in (methods.values() if isinstance(methods, dict) else [methods]) for m in ms}:
        parse_method(m, path)
    epm = prof.get("epochs_per_minute")
    if epm is not None and (not isinstance(epm, int | float) or epm <= 0 or not prof.get("budgets")):
        raise MedrefError(f"{path}: profile {profile!r}: epochs_per_minute must be a positive number, with budgets")
    return prof


def parse_method(name: str, source: Path | str = "methods") -> tuple[str, dict[str, Any]]:
    """A table1 method name -> (registered method, method overrides): `semi-medref-no-itcl` -> ("semi-medref",
    {"itcl": False}); `semi-medref-official` -> ("semi-medref", {"recipe": "official"}); ablations chain:
    `semi-medref-no-pos-aug-no-itcl` -> ("semi-medref", {"pos_aug": False, "itcl": False})."""
    for base in sorted(METHODS, key=len, reverse=True):
        spec = METHODS[base]
        if name == base:
            return base, {}
        if name.startswith(base + "-"):
            rest = name[len(base) + 1 :]
            if spec.recipes and rest in RECIPES:
                return base, {"recipe": rest}
            parts = _ablations(rest, spec.ablations)
            if parts:
                return base, {part.replace("-", "_"): False for part in parts}
    raise MedrefError(f"{source}: unknown method {name!r} (methods: {', '.join(METHODS)}, their -no-<part> "
                      f"ablations and -<recipe> variants)")


def _ablations(rest: str, known: tuple[str, ...]) -> list[str]:
    """`no-a-no-b` -> [a, b] when every part is one of `known` (part names hold hyphens too); else []."""
    parts: list[str] = []
    while rest.startswith("no-"):
        part = next((k for k in sorted(known, key=len, reverse=True)
                     if rest[3:] == k or rest[3:].startswith(k + "-no-")), None)
        if part is None or part in parts:
            return []
        parts.append(part)
        rest = rest[3 + len(part) + 1 :]
    return parts if not rest else []


def ratio_methods(prof: dict[str, Any], ratio: str) -> list[str]:
    """The methods of a profile at one label ratio: `methods` is one list for every ratio, or a mapping from
    each ratio to its own list (a sparse matrix, e.g. the ablations at one ratio only)."""
    methods = prof["methods"]
    return list(methods[ratio] if isinstance(methods, dict) else methods)


def _stage(method: str) -> str:
    return METHODS[parse_method(method)[0]].stage


def matrix(cfg: Table1Config) -> tuple[Path, dict[str, Any], list[Cell]]:
    """(pipeline file, profile, every cell in run order) of `cfg`; `cfg.only` keeps the one cell of that name."""
    pipeline = cfg.pipeline or default_pipeline()
    if not pipeline.is_file():
        raise MedrefError(f"{pipeline}: pipeline file not found; pass --pipeline pipelines/table1.yaml")
    prof = load_profile(pipeline, cfg.profile)
    cells: list[Cell] = []
    for ds in prof["datasets"]:
        for ratio in prof["ratios"]:
            full = ratio.strip() in ("100%", "1", "1.0")
            for budget in prof.get("budgets") or [None]:
                for seed in cfg.seeds or list(prof["seeds"]):
                    cells += [Cell(ds["name"], ratio, m, int(seed), budget=budget) for m in ratio_methods(prof, ratio)
                              if not full or _stage(m) == "pretrain"]
    if cfg.only is not None:
        cells = [c for c in cells if c.run_name == cfg.only]
        if not cells:
            raise MedrefError(f"{pipeline}: profile {cfg.profile!r} has no cell {cfg.only!r} (see --list)")
    return pipeline, prof, cells


def commands(cfg: Table1Config, ws: Workspace) -> list[str]:
    """One shell command per cell, for other schedulers or GNU parallel; `--collect` writes the table after."""
    pipeline, _, cells = matrix(cfg)
    common = f"--profile {cfg.profile} --pipeline {shlex.quote(str(pipeline))} --workdir {shlex.quote(str(ws.root))}"
    if cfg.raw is not None:
        common += f" --raw {shlex.quote(str(cfg.raw))}"
    return [f"medref table1 {common} --only {c.run_name}" for c in cells]
