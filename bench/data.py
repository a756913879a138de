"""The data side: loader throughput, `prepare` at 10k images, `evaluate` throughput, epoch-time scaling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.workload import Setup

REPO = Path(__file__).resolve().parents[1]


def loader_images_per_s(ws, s: Setup, steps: int) -> dict:  # noqa: ANN001
    """Images/s that the semi-train loaders (weak labelled + weak/strong unlabelled) deliver, no model."""
    from medref_cli.artifacts import load_dataset
    from medref_cli.stages import split as split_stage
    from medref_cli.training.data import items, loader, train_dataset
    from medref_cli.training.loop import EpochBatches

    manifest, folder = load_dataset(ws, "syn")
    spec, _, _ = split_stage.ensure(ws, "syn", "25%", 0)
    t = time.perf_counter()
    ds_l = train_dataset(items(manifest, folder, spec.train_labeled), s.train, s.model_cfg.image_size)
    ds_u = train_dataset(items(manifest, folder, spec.train_unlabeled, with_labels=False), s.train,
                         s.model_cfg.image_size, strong=True)
    cache_s = time.perf_counter() - t
    b_l, b_u = s.train.batch_size, s.train.batch_size_unlabeled
    it_l = iter(loader(ds_l, 1, False, s.train.num_workers, batch_sampler=EpochBatches(len(ds_l), b_l, steps, 0)))
    it_u = iter(loader(ds_u, 1, False, s.train.num_workers, batch_sampler=EpochBatches(len(ds_u), b_u, steps, 1)))
    t = time.perf_counter()
    for _ in range(steps):
        next(it_l)
        next(it_u)
    sec = time.perf_counter() - t
    return {"images_per_s": steps * (b_l + b_u) / sec, "step_s": sec / steps, "cache_build_s": cache_s,
            "cached_images": len(ds_l) + len(ds_u)}


def loader_with_monai_zoom(ws, s: Setup, steps: int) -> dict:  # noqa: ANN001
    """`loader_images_per_s` with MONAI's general `RandZoomd` in place of medref's `RandCentreZoomd`."""
    from monai.transforms import RandZoomd

    from medref_cli.training import data

    def weak(cfg):  # noqa: ANN001, ANN202
        return [RandZoomd(data.KEYS, prob=cfg.zoom_prob, min_zoom=cfg.zoom[0], max_zoom=cfg.zoom[1],
                          mode=("bilinear", "nearest"), keep_size=True, padding_mode="edge", allow_missing_keys=True)]

    original = data.weak_transforms
    data.weak_transforms = weak
    try:
        return loader_images_per_s(ws, s, steps)
    finally:
        data.weak_transforms = original


def prepare_10k(root: Path, n: int, size: int) -> dict:
    """`medref prepare` of `n` synthetic raw images in its own process: wall time and peak RSS.

    Peak RSS is the child's VmHWM: `ru_maxrss` would also count the pages of this (large) parent at fork."""
    from medref_cli.synthetic import SampleSpec, write

    raw = root / "raw10k"
    t = time.perf_counter()
    if not (raw / "prompt").is_dir():
        write(raw, SampleSpec("qata", n=n, size=size, seed=7))
    raw_s = time.perf_counter() - t
    code = ("import sys, time\n"
            "from medref_cli.cli.app import main\n"
            "t = time.perf_counter()\n"
            "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code or 0\nelse:\n    rc = 0\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('BENCH', time.perf_counter() - t, hwm, file=sys.stderr)\nsys.exit(rc)\n")
    cmd = [sys.executable, "-c", code, "prepare", "qata", "--raw", str(raw), "--name", "p10k",
           "--workdir", str(root / "ws10k"), "--overwrite", "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if res.returncode != 0:
        raise RuntimeError(f"prepare failed: {res.stderr[-800:]}")
    line = [x for x in res.stderr.splitlines() if x.startswith("BENCH")][-1].split()
    return {"images": n, "size": size, "raw_write_s": raw_s, "wall_s": float(line[1]),
            "peak_rss_mb": int(line[2]) / 1024, "images_per_s": n / float(line[1])}


def evaluate_images_per_s(ws, run: str, ablation: bool) -> dict:  # noqa: ANN001
    """`evaluate` of a run on its test split; with `ablation` each image is also run with a shuffled and
    an empty caption (3 forward passes per image)."""
    from medref_cli.stages import evaluate

    t = time.perf_counter()
    summary, _ = evaluate.run(evaluate.EvaluateConfig(run=run, split="test", ablation=ablation), ws)
    sec = time.perf_counter() - t
    return {"images": summary["n_images"], "seconds": sec, "images_per_s": summary["n_images"] / sec}


def epoch_seconds(root: Path, n: int, preset: str) -> dict:
    """One full supervised epoch over `n` labelled images (`pretrain`, 100 % labels)."""
    from bench.workload import synthetic_workspace
    from medref_cli.config import TrainRequest
    from medref_cli.stages import pretrain

    ws = synthetic_workspace(root / f"n{n}", n, size=64, seed=n)
    req = TrainRequest(stage="pretrain", method="supervised", labeled="100%", dataset="syn", seed=0, preset=preset,
                       name="epoch", overwrite=True,
                       overrides={"train": {"epochs": 1, "val_max_images": 8, "zoom_prob": 0.5}})
    pretrain.run(req, ws)
    row = json.loads((ws.runs / "epoch" / "metrics.jsonl").read_text().splitlines()[-1])
    return {"images": n, "epoch_s": row["epoch_s"], "steps": row["steps"]}
