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
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace, write_bytes_atomic

log = logging.getLogger(__name__)

ABLATIONS = ("t-patchmix", "pos-aug", "itcl")
BASE_METHODS = ("supervised", "mean-teacher", "cutmix", "semi-medref")


@dataclass
class Table1Config:
    profile: str = "sample"
    pipeline: Path | None = None
    raw: Path | None = None
    seeds: list[int] | None = None
    progress: bool = False


@dataclass
class Cell:
    dataset: str
    ratio: str
    method: str
    seed: int
    status: str = "pending"
    run: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    wall_s: float = 0.0


def default_pipeline() -> Path:
    here = Path(__file__).resolve().parents[2] / "pipelines" / "table1.yaml"
    return here


def load_profile(path: Path, profile: str) -> dict[str, Any]:
    from medref_cli.training.setup import load_yaml

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
    return prof


def parse_method(name: str, source: Path | str = "methods") -> tuple[str, dict[str, bool]]:
    """`semi-medref-no-itcl` -> ("semi-medref", {"itcl": False})."""
    for base in sorted(BASE_METHODS, key=len, reverse=True):
        if name == base:
            return base, {}
        if name.startswith(base + "-no-") and base == "semi-medref":
            off = name[len(base) + 4 :]
            if off in ABLATIONS:
                return base, {off.replace("-", "_"): False}
    raise MedrefError(f"{source}: unknown method {name!r}")


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


def run_cell(ws: Workspace, prof: dict[str, Any], cell: Cell) -> None:
    from medref_cli.stages import pretrain, semi_train
    from medref_cli.stages.evaluate import EvaluateConfig
    from medref_cli.stages.evaluate import run as evaluate
    from medref_cli.training.run_dir import load_run
    from medref_cli.training.setup import TrainRequest

    base, ablation = parse_method(cell.method)
    overrides = {k: dict(prof.get(k) or {}) for k in ("model", "train", "method")}
    overrides["method"].update(ablation)
    stage = "pretrain" if base == "supervised" else "semi-train"
    req = TrainRequest(stage, base, cell.ratio, cell.dataset, cell.seed, prof["preset"], None, overrides,
                       name=f"t1-{cell.method}-{cell.dataset}-{cell.ratio.replace('%', 'pct')}-s{cell.seed}")
    run = ws.runs / req.name
    cell.run = str(run)
    summary = run / "eval-test" / "summary.json"
    if summary.is_file():
        cell.summary, cell.status = json.loads(summary.read_text()), "done (cached)"
        return
    t0 = time.time()
    finished = (run / "run.json").is_file() and load_run(run).status != "running"
    if not finished:
        req.resume = (run / "checkpoint_latest.pt").is_file()
        req.overwrite = not req.resume
        (pretrain.run if stage == "pretrain" else semi_train.run)(req, ws)
    cell.summary, _ = evaluate(EvaluateConfig(str(run), overlays=2), ws)
    cell.status, cell.wall_s = "done", time.time() - t0


def run(cfg: Table1Config, ws: Workspace) -> tuple[list[Cell], Path]:
    pipeline = cfg.pipeline or default_pipeline()
    if not pipeline.is_file():
        raise MedrefError(f"{pipeline}: pipeline file not found; pass --pipeline pipelines/table1.yaml")
    prof = load_profile(pipeline, cfg.profile)
    seeds = cfg.seeds or list(prof["seeds"])
    cells: list[Cell] = []
    for ds in prof["datasets"]:
        ensure_dataset(ws, ds, resolve_raw(str(ds["raw"]), cfg.raw, ds["name"]))
        for ratio in prof["ratios"]:
            full = ratio.strip() in ("100%", "1", "1.0")
            for seed in seeds:
                for method in prof["methods"]:
                    if full and method != "supervised":
                        continue
                    cells.append(Cell(ds["name"], ratio, method, int(seed)))
    t_start = time.time()
    for k, cell in enumerate(cells, 1):
        try:
            run_cell(ws, prof, cell)
        except Exception as exc:  # a failed cell is reported; the matrix goes on
            cell.status, cell.error = "failed", f"{exc.__class__.__name__}: {exc}"
            log.error("cell %d/%d %s %s %s s%d failed: %s", k, len(cells), cell.dataset, cell.ratio, cell.method,
                      cell.seed, cell.error)
            continue
        dice = cell.summary["protocols"]["global"]["dice"]
        log.info("cell %d/%d %s %s %s s%d: %s, global Dice %.4f (%.1f s)", k, len(cells), cell.dataset, cell.ratio,
                 cell.method, cell.seed, cell.status, dice, cell.wall_s)
    out = ws.results / "table1" / cfg.profile
    write_outputs(out, cfg.profile, prof, cells, ws, time.time() - t_start)
    return cells, out


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def write_outputs(out: Path, profile: str, prof: dict[str, Any], cells: list[Cell], ws: Workspace,
                  wall_s: float) -> None:
    from medref_cli.plots import line_plot

    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "ratio", "method", "seed", "status", "dice_global", "iou_global", "dice_per_image",
                "iou_per_image", "text_gap_shuffled", "run", "split_file", "split_sha256", "dataset_hash",
                "wall_s", "error"])
    for c in cells:
        p = c.summary.get("protocols", {})
        split = Path(c.run) / "split.json" if c.run else Path("-")
        run_json = Path(c.run) / "run.json" if c.run else Path("-")
        info = json.loads(run_json.read_text()) if run_json.is_file() else {}
        w.writerow([c.dataset, c.ratio, c.method, c.seed, c.status,
                    p.get("global", {}).get("dice", ""), p.get("global", {}).get("iou", ""),
                    p.get("per_image", {}).get("dice", ""), p.get("per_image", {}).get("iou", ""),
                    c.summary.get("text_ablation", {}).get("gap_global_dice_shuffled", ""),
                    c.run, info.get("split_file", ""), _sha(split), info.get("dataset_hash", ""),
                    round(c.wall_s, 1), c.error])
    write_bytes_atomic(out / "table1.csv", buf.getvalue().encode())
    md = [f"# Table 1 — profile `{profile}` (preset `{prof['preset']}`)", ""]
    panels = []
    for ds in dict.fromkeys(c.dataset for c in cells):
        ratios = list(dict.fromkeys(c.ratio for c in cells if c.dataset == ds))
        methods = list(dict.fromkeys(c.method for c in cells if c.dataset == ds))
        stats: dict[tuple[str, str, str], tuple[float, float, int]] = {}
        for m in methods:
            for r in ratios:
                done = [c for c in cells if (c.dataset, c.method, c.ratio) == (ds, m, r) and c.summary]
                for metric in ("dice", "iou"):
                    vals = [100 * c.summary["protocols"]["global"][metric] for c in done]
                    mean, sd = _mean_std(vals)
                    stats[(m, r, metric)] = (mean, sd, len(vals))
        seeds = sorted({c.seed for c in cells if c.dataset == ds})
        md += [f"**{ds}** — Dice and IoU (%) on the test split, **global protocol** (true/false positives pooled "
               f"over all test pixels), threshold 0.5; mean ± std over seeds {seeds}. Bold: best per column. "
               f"Per-image-mean figures are in table1.csv.", ""]
        header = "| method | " + " | ".join(f"{r} Dice | {r} IoU" for r in ratios) + " |"
        md += [header, "|" + "---|" * (1 + 2 * len(ratios))]
        best = {}
        for r in ratios:
            for metric in ("dice", "iou"):
                vals = [stats[(m, r, metric)][0] for m in methods if stats[(m, r, metric)][2]]
                best[(r, metric)] = max(vals) if vals else None
        for m in methods:
            row = [m]
            for r in ratios:
                for metric in ("dice", "iou"):
                    mean, sd, n = stats[(m, r, metric)]
                    if n == 0:
                        failed = any(c.status == "failed" for c in cells if (c.dataset, c.method, c.ratio) == (ds, m, r))
                        row.append("failed" if failed else "—")
                        continue
                    text = f"{mean:.2f} ± {sd:.2f}"
                    row.append(f"**{text}**" if best[(r, metric)] is not None and mean == best[(r, metric)] else text)
            md.append("| " + " | ".join(row) + " |")
        md.append("")
        series = {m: [(k, stats[(m, r, "dice")][0], stats[(m, r, "dice")][1] if stats[(m, r, "dice")][2] > 1 else 0.0)
                      for k, r in enumerate(ratios) if stats[(m, r, "dice")][2]] for m in methods}
        panel = out / f".{ds}.png"
        line_plot(series, panel, f"{ds}: Dice (global) vs label ratio", "labelled share", "Dice %",
                  x_labels=ratios)
        panels.append(panel)
    failed = [c for c in cells if c.status == "failed"]
    md += [f"{len(cells)} cells, {len(failed)} failed; wall time {wall_s / 60:.1f} min.", ""]
    for c in failed:
        md.append(f"- failed: {c.dataset} {c.ratio} {c.method} seed {c.seed}: {c.error}")
    write_bytes_atomic(out / "table1.md", ("\n".join(md) + "\n").encode())
    _stack(panels, out / "table1.png")


def _stack(panels: list[Path], dest: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in panels]
    if not images:
        return
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for img in images:
        canvas.paste(img, (0, y))
        y += img.height
    b = io.BytesIO()
    canvas.save(b, format="PNG")
    write_bytes_atomic(dest, b.getvalue())
    for p in panels:
        p.unlink()
