"""Fixtures: a temp workspace, builders of small raw datasets in each real layout, the CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

CAPTIONS = [
    "Unilateral pulmonary infection, one infected area, lower right lung.",
    "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
    "Bilateral pulmonary infection, six infected areas, all left lung and all right lung..",
    "Unilateral pulmonary infection, one infected areas, middle left lung.",
]


def counts_for(dice: np.ndarray, truth: int = 1_000_000) -> np.ndarray:
    """Per-case (tp, fp, fn) `(..., 3)` whose per-image Dice is `dice` (no false positive: d = 2tp / (tp + T);
    T lesion pixels per image, so the Dice is realised to 1e-6)."""
    tp = np.round(dice * truth / (2 - dice)).astype(np.int64)
    return np.stack([tp, np.zeros_like(tp), truth - tp], axis=-1)


def write_run_record(run: Path, method: str, seed: int, preset: str = "cpu", ratio: str = "2%",
                     epochs_done: int = 0) -> None:
    """A run's config.yaml (its spec: `method`, `seed`, `preset`, `ratio` of dataset "qata") and run.json, as
    training writes them, without training."""
    from dataclasses import replace

    from medref_cli.artifacts import RunStatus
    from medref_cli.config import METHODS, RunData, TrainRequest, resolve_config

    req = TrainRequest(stage=METHODS[method].stage, method=method, labeled=ratio, seed=seed, preset=preset)
    data = RunData("qata", "h" * 64, ratio, f"qata-{ratio.rstrip('%')}pct-s{seed}.json")
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_bytes(replace(resolve_config(req, {}), data=data).to_yaml())
    RunStatus("finished", epochs_done).save(run)


def fake_run(root: Path, name: str, seed: int, dice, method: str = "cutmix", ids: list[str] | None = None) -> Path:
    """`<root>/runs/<name>/` with a config.yaml, a run.json and an `eval-test/per_case.csv` of these per-image Dice
    scores (no model): what `medref compare` and table1's comparisons read."""
    import csv

    from medref_cli.artifacts import PER_CASE_HEADER
    from medref_cli.stages.compare import per_image_dice

    run = root / "runs" / name
    (run / "eval-test").mkdir(parents=True)
    write_run_record(run, method, seed)
    c = counts_for(np.asarray(dice))
    ids = ids or [f"img{k:04d}" for k in range(len(dice))]
    with (run / "eval-test" / "per_case.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PER_CASE_HEADER)
        for i, (tp, fp, fn), d in zip(ids, c, per_image_dice(c), strict=True):
            w.writerow([i, "left lung", "100000", tp, fp, fn, f"{d:.5f}", f"{d / (2 - d):.5f}", 0])
    return run


def png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def image_array(i: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (size, size), dtype=np.uint8)


def mask_array(i: int, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[4 + i : 12 + i, 4:12] = 255
    return m


def make_sgseg(root: Path, n: int = 4) -> Path:
    ann = {"train": [], "valid": []}
    for i in range(n):
        split = "train" if i < n - 1 else "valid"
        name = f"Sub-S{i:03d}.png"  # mixed case on disk, lower case in the JSON
        png(root / "images" / split / "images" / name, image_array(i))
        png(root / "images" / split / "masks" / f"mask_{name}", mask_array(i))
        ann[split].append({"image_path": f"mask_{name.lower()}", "caption": CAPTIONS[i % 4],
                           "pseudo_label": [0] * 6})
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "annotation.json").write_text(json.dumps(ann))
    return root


def make_lvit_xlsx(root: Path, n: int = 6) -> Path:
    from openpyxl import Workbook

    rows = {"Train_Val": [], "Test": []}
    for i in range(n):
        folder = ["Train_Folder", "Val_Folder", "Test_Folder"][i % 3]
        name = f"covid_{i}.png"
        png(root / folder / "img" / name, image_array(i))
        mask = mask_array(i)
        png(root / folder / "labelcol" / f"mask_{name}", np.stack([mask] * 3, -1) if i == 0 else mask)
        rows["Test" if folder == "Test_Folder" else "Train_Val"].append((f"mask_{name}", CAPTIONS[i % 4]))
    for table, entries in rows.items():
        wb = Workbook()
        ws = wb.active
        ws.append(["Image", "Description"])
        for e in entries:
            ws.append(list(e))
        wb.save(root / f"{table}_text.xlsx")
    return root


def make_guidedecoder(root: Path, n: int = 4) -> Path:
    import csv

    for split in ("train", "test"):
        (root / "prompt").mkdir(parents=True, exist_ok=True)
        with (root / "prompt" / f"{split}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["Image", "Description"])
            for i in range(n):
                name = f"{split}_{i}.png"
                png(root / split.capitalize() / "Images" / name, image_array(i))
                png(root / split.capitalize() / "Ground-truths" / f"mask_{name}", mask_array(i))
                w.writerow([f"mask_{name}", CAPTIONS[i % 4]])
    return root


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs `-n 2`), each worker takes its share of the cores as torch threads:
    two workers that each take every core slow each other several times over."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        from medref_cli.stages.table1_jobs import shared_threads

        threads = shared_threads(workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # and the subprocesses a test starts (CLI, torchrun, jobs)


# The test files that take longest under `make test` (seconds on one of 2 cores, measured 2026-12-06: 79, 73, 59,
# 27, 10, 9, 9, 6; the other 20 files together 19 s), longest first.
LONGEST_FILES = ("test_end_to_end.py", "test_reliability.py", "test_table1.py", "test_data_safety.py",
                 "test_resume.py", "test_bench.py", "test_paper_preset.py", "test_tensorboard.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first, then the rest by their number of slow tests (a stable sort: each file's tests stay
    together and in order). `make test` hands whole files to its two pytest-xdist workers in this order
    (`--dist loadfile --no-loadscope-reorder`; xdist's own reorder puts files with many tests first), so the long
    files start first and the short ones fill in, instead of one worker running the last long file alone."""
    from collections import Counter

    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), -slow[item.path]))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wd = tmp_path / "work"
    monkeypatch.setenv("MEDREF_WORKDIR", str(wd))
    monkeypatch.delenv("MEDREF_QATA_RAW", raising=False)
    monkeypatch.delenv("MEDREF_MOSMED_RAW", raising=False)
    return wd


@pytest.fixture
def cli():
    from medref_cli.cli.app import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def denormals_kept():
    """Flush-to-zero off for the test and after it (skips where the CPU has no such mode); yields a check that
    a float32 denormal (1e-39, below 1.18e-38) still survives arithmetic."""
    import torch

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    torch.set_flush_denormal(False)
    yield lambda: (torch.tensor([1e-39]) * 1.0).item() > 0.0
    torch.set_flush_denormal(False)
