"""`medref table1 --profile P`: run the declared experiment matrix and write Table 1.

For each dataset x ratio x seed x method cell: prepare (once) -> split -> pretrain (supervised) or
semi-train -> evaluate on test. A cell whose `eval-test/summary.json` exists is skipped, an interrupted
run is resumed, and a failing cell is reported and the matrix goes on. Output in
`<workdir>/results/table1/<profile>/`: `table1.md`, `table1.csv`, `table1.png`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medref_cli.config import METHODS, RECIPES, TrainRequest, load_yaml
from medref_cli.errors import MedrefError
from medref_cli.result_schemas import EvalSummary, load_summary
from medref_cli.training.run_dir import load_run
from medref_cli.workspace import Workspace, write_bytes_atomic

log = logging.getLogger(__name__)


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
    wall_s: float = 0.0
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
    for m in prof["methods"]:
        parse_method(m, path)
    epm = prof.get("epochs_per_minute")
    if epm is not None and (not isinstance(epm, int | float) or epm <= 0 or not prof.get("budgets")):
        raise MedrefError(f"{path}: profile {profile!r}: epochs_per_minute must be a positive number, with budgets")
    return prof


def parse_method(name: str, source: Path | str = "methods") -> tuple[str, dict[str, Any]]:
    """A table1 method name -> (registered method, method overrides): `semi-medref-no-itcl` -> ("semi-medref",
    {"itcl": False}); `semi-medref-official` -> ("semi-medref", {"recipe": "official"})."""
    for base in sorted(METHODS, key=len, reverse=True):
        spec = METHODS[base]
        if name == base:
            return base, {}
        if name.startswith(base + "-"):
            rest = name[len(base) + 1 :]
            if spec.recipes and rest in RECIPES:
                return base, {"recipe": rest}
            if rest.startswith("no-") and rest[3:] in spec.ablations:
                return base, {rest[3:].replace("-", "_"): False}
    raise MedrefError(f"{source}: unknown method {name!r} (methods: {', '.join(METHODS)}, their -no-<part> "
                      f"ablations and -<recipe> variants)")


def _stage(method: str) -> str:
    return METHODS[parse_method(method)[0]].stage


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
    summary = run / "eval-test" / "summary.json"
    if summary.is_file():
        cell.summary, cell.status = load_summary(summary), "done (cached)"
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
    cell.status, cell.wall_s = "done", time.time() - t0


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
                    cells += [Cell(ds["name"], ratio, m, int(seed), budget=budget) for m in prof["methods"]
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


def run(cfg: Table1Config, ws: Workspace) -> tuple[list[Cell], Path]:
    """Run (or, with `collect`, gather) every cell, then write the table. `launcher`: `inline` runs the cells one
    after another in this process; `local` / `slurm` submit one submitit job per cell, at most `jobs` at a time."""
    pipeline, prof, cells = matrix(cfg)
    if not cfg.collect:
        for ds in prof["datasets"]:  # before any job: parallel cells must not prepare the same dataset twice
            if any(c.dataset == ds["name"] for c in cells):
                ensure_dataset(ws, ds, resolve_raw(str(ds["raw"]), cfg.raw, ds["name"]))
    t_start = time.time()
    if cfg.launcher == "inline" or cfg.collect:
        for k, cell in enumerate(cells, 1):
            run_guarded(ws, prof, cell, cfg.collect, f"{k}/{len(cells)}")
    else:
        from medref_cli.stages.table1_jobs import submit_all

        submit_all(cfg, ws, pipeline, cells)
    out = ws.results / "table1" / cfg.profile
    if cfg.only is None:
        write_outputs(out, cfg.profile, prof, cells, ws, time.time() - t_start)
    return cells, out


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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def write_outputs(out: Path, profile: str, prof: dict[str, Any], cells: list[Cell], ws: Workspace,
                  wall_s: float) -> None:
    """table1.csv (one row per cell), table1.md (mean ± std per method and column, per dataset) and table1.png."""
    from medref_cli.plots import panels_plot

    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "table1.csv", _csv(cells).encode())
    md = [f"# Table 1 — profile `{profile}` (preset `{prof['preset']}`)", ""]
    panels = []
    for ds in dict.fromkeys(c.dataset for c in cells):
        mine = [c for c in cells if c.dataset == ds]
        columns = list(dict.fromkeys(c.column for c in mine))
        methods = list(dict.fromkeys(c.method for c in mine))
        stats = {(m, col, metric): _mean_std([v for c in mine if (c.method, c.column) == (m, col)
                                              for v in [_metric(c.summary, metric)] if v is not None])
                 for m in methods for col in columns for metric in METRICS}
        md += _markdown(ds, mine, columns, methods, stats)
        series = {m: [(k, stats[(m, col, "dice")][0], stats[(m, col, "dice")][1])
                      for k, col in enumerate(columns) if stats[(m, col, "dice")][2]] for m in methods}
        panels.append((f"{ds}: test Dice (global), mean ± std over seeds", series, columns))
    failed = [c for c in cells if c.status == "failed"]
    md += [f"{len(cells)} cells, {len(failed)} failed; wall time {wall_s / 60:.1f} min.", ""]
    md += [f"- failed: {c.dataset} {c.column} {c.method} seed {c.seed}: {c.error}" for c in failed]
    write_bytes_atomic(out / "table1.md", ("\n".join(md) + "\n").encode())
    x_title = "label ratio, CPU budget per run" if prof.get("budgets") else "labelled share"
    panels_plot(panels, out / "table1.png", x_title, "Dice %")


def _csv(cells: list[Cell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "ratio", "budget_min", "method", "seed", "status", "dice_global", "iou_global",
                "dice_per_image", "iou_per_image", "text_gap_shuffled", "run", "split_file", "split_sha256",
                "dataset_hash", "wall_s", "error"])
    for c in cells:
        p = c.summary.protocols if c.summary else {"global": {}, "per_image": {}}
        gap = c.summary.shuffled_gap if c.summary else None
        split = Path(c.run) / "split.json" if c.run else Path("-")
        info = load_run(Path(c.run)) if c.run and (Path(c.run) / "run.json").is_file() else None
        w.writerow([c.dataset, c.ratio, "" if c.budget is None else c.budget, c.method, c.seed, c.status,
                    p["global"].get("dice", ""), p["global"].get("iou", ""),
                    p["per_image"].get("dice", ""), p["per_image"].get("iou", ""), "" if gap is None else gap,
                    c.run, info.split_file if info else "", _sha(split), info.dataset_hash if info else "",
                    round(c.wall_s, 1), c.error])
    return buf.getvalue()


METRICS = ("dice", "iou", "shuffled")  # table columns per ratio/budget: global Dice, IoU, shuffled-text Dice


def _metric(summary: EvalSummary | None, metric: str) -> float | None:
    """A table figure in %: the global Dice / IoU, or the global Dice with the captions shuffled across images."""
    if summary is None:
        return None
    if metric == "shuffled":
        return None if summary.text_ablation is None else 100 * summary.text_ablation["shuffled"]["global"]["dice"]
    return 100 * summary.protocols["global"][metric]


def _markdown(ds: str, cells: list[Cell], columns: list[str], methods: list[str],
              stats: dict[tuple[str, str, str], tuple[float, float, int]]) -> list[str]:
    """One dataset's table: bold = best per column; † = the mean beats supervised's by more than twice the
    larger of the two standard deviations (seeds > 1). The shuffled-text column shows how much the model leans
    on the report (far below Dice: it uses the text)."""
    seeds = sorted({c.seed for c in cells})
    md = [f"**{ds}** — Dice and IoU (%) on the test split, **global protocol** (true/false positives pooled over "
          f"all test pixels), threshold 0.5; mean ± std over seeds {seeds}. Bold: best per column; †: above "
          f"supervised by more than 2 std. Shuffled text: global Dice with the reports shuffled across test "
          f"images. Per-image-mean figures are in table1.csv.", ""]
    md += ["| method | " + " | ".join(f"{col} Dice | {col} IoU | {col} shuffled text" for col in columns) + " |",
           "|" + "---|" * (1 + len(METRICS) * len(columns))]
    best = {(col, metric): max((stats[(m, col, metric)][0] for m in methods if stats[(m, col, metric)][2]),
                               default=None) for col in columns for metric in ("dice", "iou")}
    for m in methods:
        row = [m]
        for col in columns:
            for metric in METRICS:
                mean, sd, n = stats[(m, col, metric)]
                if n == 0:
                    failed = any(c.status == "failed" for c in cells if (c.method, c.column) == (m, col))
                    row.append("failed" if failed else "—")
                    continue
                text = f"{mean:.2f} ± {sd:.2f}" if n > 1 else f"{mean:.2f} (1 seed)"
                if 1 < n < len(seeds):
                    text += f" ({n} seeds)"
                if metric == "shuffled":
                    row.append(text)
                    continue
                sup = stats.get(("supervised", col, metric), (float("nan"), 0.0, 0))
                if m != "supervised" and n > 1 and sup[2] > 1 and mean - sup[0] > 2 * max(sd, sup[1]):
                    text += " †"
                row.append(f"**{text}**" if mean == best[(col, metric)] else text)
        md.append("| " + " | ".join(row) + " |")
    return md + [""]


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std, n); nan, nan, 0 for no values; std 0 for one."""
    if not values:
        return float("nan"), float("nan"), 0
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd, len(values)
