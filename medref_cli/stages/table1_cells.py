"""Running one Table 1 cell: its dataset prepared once, then split -> pretrain / semi-train -> evaluate; an
evaluated cell is skipped, an interrupted run resumed, a failure recorded on the cell.

A run already in the workspace under the cell's name is reused only when it is the cell's experiment: the same
preset and resolved config (fields that do not change results aside: `NOT_RESULTS`) on the same dataset
version. Another profile, an older default or a re-prepared dataset under the same run name is refused with the
first difference, never re-used in the table and never overwritten."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from medref_cli.artifacts import load_run, load_summary
from medref_cli.config import METHODS, TrainRequest
from medref_cli.errors import MedrefError
from medref_cli.stages.table1_matrix import Cell, parse_method
from medref_cli.workspace import Workspace

log = logging.getLogger(__name__)

NOT_RESULTS = {("train", "logger"), ("train", "threads"), ("train", "num_workers"),  # not compared
               ("train", "checkpoint_every_s")}


def resolve_raw(spec: str, cli_raw: Path | None, name: str) -> Path | str:
    if spec == "sample":
        return "sample"
    if spec == "$RAW":
        if cli_raw is None:
            raise MedrefError(f"dataset {name!r} needs raw data: pass --raw DIR (make ... RAW=DIR)")
        return cli_raw
    if spec in ("$QATA", "$MOSMED"):
        env = "MEDREF_QATA_RAW" if spec == "$QATA" else "MEDREF_MOSMED_RAW"
        if not os.environ.get(env):
            raise MedrefError(f"dataset {name!r} needs ${env}")
        return Path(os.environ[env])
    return Path(spec).expanduser()


def ensure_dataset(ws: Workspace, ds: dict[str, Any], raw: Path | str) -> None:
    from medref_cli.stages.prepare import PrepareConfig
    from medref_cli.stages.prepare import run as prepare

    if (ws.dataset_dir(ds["name"]) / "dataset.json").is_file():
        return
    if raw == "sample":
        from medref_cli.synthetic import write_sample_data
        from medref_cli.workspace import staged_dir

        raw_root = ws.root / "raw" / "sample"
        if not raw_root.is_dir():
            with staged_dir(raw_root, overwrite=True) as tmp:
                write_sample_data(tmp)
        raw = raw_root / ds["name"]
    prepare(PrepareConfig(ds["kind"], Path(raw), ds["name"]), ws)


def run_cell(ws: Workspace, prof: dict[str, Any], cell: Cell, collect: bool = False) -> None:
    from medref_cli.stages import pretrain, semi_train
    from medref_cli.stages.evaluate import EvaluateConfig
    from medref_cli.stages.evaluate import run as evaluate

    base, ablation = parse_method(cell.method)
    overrides = {k: dict(prof.get(k) or {}) for k in ("model", "train", "method")}
    overrides["method"].update(ablation)
    if cell.budget is not None:
        overrides["train"]["max_minutes"] = cell.budget
        if prof.get("epochs_per_minute"):  # the epoch cap grows with the budget, so the budget ends the run
            overrides["train"]["epochs"] = math.ceil(float(prof["epochs_per_minute"]) * cell.budget)
    stage = METHODS[base].stage
    req = TrainRequest(stage=stage, method=base, labeled=cell.ratio, dataset=cell.dataset, seed=cell.seed,
                       preset=prof["preset"], overrides=overrides, name=cell.run_name)
    run = ws.runs / req.name
    cell.run = str(run)
    if (run / "config.yaml").is_file() and (run / "run.json").is_file():  # else a half-made folder: replaced
        check_same_experiment(ws, run, req)
    summary = run / "eval-test" / "summary.json"
    if summary.is_file():
        cell.summary, cell.status, cell.train_s = load_summary(summary), "done (cached)", train_seconds(run)
        return
    if collect:
        cell.status = "missing"
        return
    t0 = time.time()
    finished = (run / "run.json").is_file() and load_run(run).status not in ("running", "failed")
    if not finished:
        req.resume = (run / "checkpoint_latest.pt").is_file()
        req.overwrite = not req.resume
        (pretrain.run if stage == "pretrain" else semi_train.run)(req, ws)
    cell.summary, _ = evaluate(EvaluateConfig(str(run), overlays=2), ws)
    cell.status, cell.wall_s, cell.train_s = "done", time.time() - t0, train_seconds(run)


def train_seconds(run: Path) -> float | None:
    """The run's training time as it recorded it: `elapsed_s` of its last `metrics.jsonl` row (None: no rows, or a
    damaged file: a figure for the table, not a reason to fail a finished cell)."""
    from medref_cli.training.run_dir import read_metrics

    try:
        rows = read_metrics(run)
    except MedrefError as exc:
        log.warning("%s", exc)
        return None
    return rows[-1].get("elapsed_s") if rows else None


def check_same_experiment(ws: Workspace, run: Path, req: TrainRequest) -> None:
    """The run in `run` is the experiment `req` asks for, or a one-line error naming the first difference."""
    from medref_cli.artifacts import load_dataset
    from medref_cli.config import load_run_config, plain_value, resolve_config

    was = load_run_config(run)
    manifest, _ = load_dataset(ws, req.dataset)
    if was.data.dataset_hash != manifest.dataset_hash:
        raise MedrefError(f"{run}: trained on another version of dataset {req.dataset!r}; move the run away or "
                          f"use another --workdir (the table never reuses or replaces it)")
    want = resolve_config(req, {})
    diffs = [f"{what} {a} -> {b}" for what, a, b in (("preset", was.preset, want.preset),
                                                      ("labelled share", was.data.ratio, req.labeled)) if a != b]
    old, new = was.to_dict(), want.to_dict()
    for section in new:
        for key, value in new[section].items():
            before = old.get(section, {}).get(key, "unset")
            if (section, key) not in NOT_RESULTS and plain_value(before) != plain_value(value):
                diffs.append(f"{section}.{key} {before!r} -> {value!r}")
    if diffs:
        raise MedrefError(f"{run}: a run of another experiment holds this cell's name ({'; '.join(diffs[:3])}"
                          f"{'; ...' if len(diffs) > 3 else ''}); move it away or use another --workdir (the "
                          "table never reuses or replaces it)")


def run_guarded(ws: Workspace, prof: dict[str, Any], cell: Cell, collect: bool, where: str) -> None:
    """run_cell; a failure is recorded on the cell and logged, and the matrix goes on."""
    try:
        run_cell(ws, prof, cell, collect)
    except Exception as exc:  # a failed cell is reported; the matrix goes on
        cell.status, cell.error = "failed", f"{exc.__class__.__name__}: {exc}"
        log.error("cell %s %s failed: %s", where, cell.run_name, cell.error)
        return
    if cell.summary:
        log.info("cell %s %s: %s, global Dice %.4f (%.1f s)", where, cell.run_name, cell.status,
                 cell.summary.global_dice, cell.wall_s)
