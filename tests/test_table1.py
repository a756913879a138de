"""The Table 1 runner on a 2-cell matrix: runs, writes the table, skips done cells, survives a failing cell."""

import csv
import json
import os

import pytest

from medref_cli.errors import MedrefError
from medref_cli.stages.table1 import run
from medref_cli.stages.table1_matrix import Table1Config, load_profile, parse_method
from medref_cli.workspace import Workspace

PIPELINE = """
profiles:
  two: &two
    preset: tiny
    datasets:
      - {name: qata-mini, kind: qata, raw: sample}
    ratios: ["25%"]
    methods: [supervised, semi-medref-no-itcl]
    seeds: [0]
    train: {epochs: 2, steps_per_epoch: 2, threads: 1}  # one thread: the same floats in one process or in jobs
    method: {burn_in_epochs: 1, unsup_ramp_epochs: 1, ema_ramp_epochs: 1}
  two-longer:  # the same cells (run names) as `two`, another experiment
    <<: *two
    train: {epochs: 3, steps_per_epoch: 2, threads: 1}
  budget:
    preset: tiny
    datasets:
      - {name: qata-mini, kind: qata, raw: sample}
    ratios: ["25%"]
    budgets: [1]
    epochs_per_minute: 2
    methods: [supervised, semi-medref-official]
    seeds: [0, 1]
    train: {epochs: 1, steps_per_epoch: 2}
    method: {burn_in_epochs: 0, unsup_ramp_epochs: 0, ema_ramp_epochs: 1}
  broken:
    preset: tiny
    datasets:
      - {name: qata-mini, kind: qata, raw: sample}
    ratios: ["25%", "100%"]
    methods: [supervised, semi-medref]
    seeds: [0]
    train: {epochs: 1, steps_per_epoch: 1}
    model: {no_such_field: 1}
"""


@pytest.fixture
def pipeline(tmp_path):
    path = tmp_path / "t1.yaml"
    path.write_text(PIPELINE)
    return path


@pytest.mark.slow
def test_two_cell_matrix(pipeline, tmp_path):
    ws = Workspace.resolve(tmp_path / "w")
    cells, out = run(Table1Config("two", pipeline, collect=True), ws)  # nothing evaluated yet: nothing trained
    assert [c.status for c in cells] == ["missing", "missing"] and not ws.runs.exists()
    assert "| supervised | — | — |" in (out / "table1.md").read_text()
    cells, out = run(Table1Config("two", pipeline), ws)
    assert [c.status for c in cells] == ["done", "done"]
    md = (out / "table1.md").read_text()
    assert "global protocol" in md and "semi-medref-no-itcl" in md and "25% Dice" in md
    import torch

    assert f"Trained on: cpu {torch.backends.cpu.get_cpu_capability()}, " in md and " (2 runs)." in md  # the machine
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert len(rows) == 2 and all(r["split_sha256"] and r["dataset_hash"] for r in rows)
    assert 0.0 <= float(rows[0]["dice_global"]) <= 1.0
    assert (out / "table1.png").is_file()
    cells, out = run(Table1Config("two", pipeline), ws)  # resumes: nothing is trained again
    assert [c.status for c in cells] == ["done (cached)", "done (cached)"]
    again = list(csv.DictReader((out / "table1.csv").open()))  # the runs' training times survive a re-collect
    assert [r["train_s"] for r in again] == [r["train_s"] for r in rows] and float(rows[0]["train_s"]) > 0
    assert [float(r["wall_s"]) for r in again] == [0.0, 0.0]
    # another profile whose cells have the same names: the finished runs are neither reused nor replaced
    before = {f: f.stat().st_mtime_ns for f in ws.runs.rglob("*") if f.is_file()}
    cells, _ = run(Table1Config("two-longer", pipeline), ws)
    assert [c.status for c in cells] == ["failed", "failed"]
    assert all("another experiment" in c.error and "train.epochs 2 -> 3" in c.error for c in cells)
    assert {f: f.stat().st_mtime_ns for f in ws.runs.rglob("*") if f.is_file()} == before


@pytest.mark.slow
def test_budget_profile_names_cells_by_budget_and_recipe(pipeline, tmp_path):
    ws = Workspace.resolve(tmp_path / "w")
    cells, out = run(Table1Config("budget", pipeline), ws)
    assert [c.status for c in cells] == ["done"] * 4
    assert {c.run_name for c in cells} == {f"t1-{m}-qata-mini-25pct-1min-s{s}" for m in ("supervised",
                                           "semi-medref-official") for s in (0, 1)}
    run_cfg = (ws.runs / "t1-semi-medref-official-qata-mini-25pct-1min-s0" / "config.yaml").read_text()
    assert "recipe: official" in run_cfg and "max_minutes: 1" in run_cfg
    assert "epochs: 2" in run_cfg  # epochs_per_minute x budget replaces the profile's epoch cap
    md = (out / "table1.md").read_text()
    assert "25% 1 min Dice" in md and md.count("±") == 1 + 2 * 3  # the legend, then Dice, IoU, shuffled text
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert {r["budget_min"] for r in rows} == {"1"} and len(rows) == 4


@pytest.mark.slow
def test_failing_cells_are_reported_and_the_matrix_goes_on(pipeline, tmp_path):
    cells, out = run(Table1Config("broken", pipeline), Workspace.resolve(tmp_path / "w"))
    assert len(cells) == 3  # 25 %: two methods; 100 %: supervised only
    assert all(c.status == "failed" and "no_such_field" in c.error for c in cells)
    assert "failed" in (out / "table1.md").read_text()


def test_profiles_and_methods_are_checked(pipeline):
    assert parse_method("semi-medref-no-pos-aug") == ("semi-medref", {"pos_aug": False})
    assert parse_method("semi-medref-official") == ("semi-medref", {"recipe": "official"})
    assert parse_method("semi-medref-no-cutmix") == ("semi-medref", {"cutmix": False})
    assert parse_method("semi-medref-no-t-patchmix-no-pos-aug-no-itcl") == (
        "semi-medref", {"t_patchmix": False, "pos_aug": False, "itcl": False})
    for bad in ("fixmatch", "semi-medref-no-itcl-no-itcl", "semi-medref-no-itcl-", "semi-medref-no-itcl-no-",
                "semi-medref-no-pos", "cutmix-no-itcl"):
        with pytest.raises(MedrefError, match="unknown method"):
            parse_method(bad)
    with pytest.raises(MedrefError, match="no profile"):
        load_profile(pipeline, "nope")
    bad = pipeline.parent / "bad.yaml"
    bad.write_text(pipeline.read_text().replace("epochs_per_minute: 2", "epochs_per_minute: -1"))
    with pytest.raises(MedrefError, match="epochs_per_minute must be a positive number"):
        load_profile(bad, "budget")
    from conftest import REPO

    for name in ("sample", "qata-cpu", "qata-budget", "qata-seeds", "qata-steps", "qata-ratios", "qata-ssl", "paper"):
        load_profile(REPO / "pipelines" / "table1.yaml", name)


def test_a_profile_may_list_its_methods_per_ratio(tmp_path):
    """qata-ssl: the ablations at 2 % only; its supervised and semi-medref cells share qata-ratios' run names."""
    from conftest import REPO
    from medref_cli.stages.table1_matrix import matrix

    shipped = REPO / "pipelines" / "table1.yaml"
    _, _, cells = matrix(Table1Config("qata-ssl", shipped))
    by_ratio = {r: {c.method for c in cells if c.ratio == r and c.seed == 0} for r in ("1%", "2%", "5%")}
    assert by_ratio["1%"] == by_ratio["5%"] == {"supervised", "cutmix", "semi-medref"}
    assert by_ratio["2%"] == {"supervised", "mean-teacher", "cutmix", "semi-medref", "semi-medref-no-t-patchmix",
                              "semi-medref-no-pos-aug", "semi-medref-no-itcl",
                              "semi-medref-no-t-patchmix-no-pos-aug-no-itcl"}
    assert len(cells) == 3 * (3 + 8 + 3)
    ratios = {c.run_name for c in matrix(Table1Config("qata-ratios", shipped))[2]}
    assert {c.run_name for c in cells if c.method in ("supervised", "semi-medref") and c.ratio != "15%"} <= ratios
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  p: {preset: tiny, datasets: [], ratios: ['1%', '2%'], seeds: [0],\n"
                   "      methods: {'1%': [supervised]}}\n")
    with pytest.raises(MedrefError, match="must name each of its ratios"):
        load_profile(bad, "p")


@pytest.mark.parametrize(("gain", "marked"), [(0.05, True), (0.0, False), (-0.05, False)])
def test_the_mark_comes_from_the_paired_comparison_with_supervised(tmp_path, gain, marked):
    """† when semi-medref beats supervised on the same test images (interval above 0, Holm p < 0.05); the
    comparison is listed under the table."""
    import numpy as np

    from conftest import fake_run
    from medref_cli.stages.table1_matrix import Cell
    from medref_cli.stages.table1_render import _comparison_lines, _markdown, _mean_std, against_supervised

    rng = np.random.default_rng(0)
    cells = []
    for s in range(3):
        base = rng.uniform(0.4, 0.8, 200)
        noise = rng.uniform(-0.05, 0.05, 200)
        for m, d in (("supervised", base), ("semi-medref", np.clip(base + gain + noise, 0, 1))):
            run = fake_run(tmp_path, f"t1-{m}-d-5pct-s{s}", s, d, method=m)
            cells.append(Cell("d", "5%", m, s, status="done", run=str(run), summary=object()))
    comparisons = against_supervised(cells)
    assert list(comparisons) == [("d", "semi-medref", "5%")]
    better = {(m, col) for (_, m, col), (_, _, ok) in comparisons.items() if ok}
    stats = {(m, "5%", metric): _mean_std([80.0, 81.0, 82.0]) for m in ("supervised", "semi-medref")
             for metric in ("dice", "iou", "shuffled")}
    lines = _markdown("d", cells, ["5%"], ["supervised", "semi-medref"], stats, better)
    row = next(line for line in lines if line.startswith("| semi-medref"))
    assert ("†" in row) is marked
    assert "5% shuffled text" in next(line for line in lines if line.startswith("| method"))
    listed = "\n".join(_comparison_lines("d", comparisons))
    row = next(line for line in listed.splitlines() if line.startswith("| semi-medref | 5% | 3 |"))
    per_image_gain = float(row.split("|")[5].split()[0])  # the Δ per-image Dice column, in points
    assert per_image_gain == pytest.approx(100 * gain, abs=0.5)


@pytest.mark.slow
def test_local_launcher_gives_the_in_process_table(pipeline, tmp_path):
    """`--launcher local --jobs 2`: a pool of two worker processes, a cell per task; with the profile's torch
    threads (1) the same figures to the last bit as the one-process run (another thread count changes float sums)."""
    inline_cells, inline_out = run(Table1Config("two", pipeline), Workspace.resolve(tmp_path / "a"))
    jobs_cells, jobs_out = run(Table1Config("two", pipeline, launcher="local", jobs=2),
                               Workspace.resolve(tmp_path / "b"))
    assert [c.status for c in jobs_cells] == ["done", "done"]
    a = {r["method"]: r for r in csv.DictReader((inline_out / "table1.csv").open())}
    b = {r["method"]: r for r in csv.DictReader((jobs_out / "table1.csv").open())}
    for method in a:
        assert a[method]["dice_global"] == b[method]["dice_global"] != ""
        assert a[method]["split_sha256"] == b[method]["split_sha256"]
    assert {p.name for p in (jobs_out / "jobs").glob("*.log")} == {f"{c.run_name}.log" for c in inline_cells}
    assert "global Dice" in (jobs_out / "jobs" / f"{inline_cells[0].run_name}.log").read_text()  # each job's log
    for cell in inline_cells:
        same = [tmp_path / w / "runs" / cell.run_name for w in ("a", "b")]
        assert same[0].joinpath("metrics.jsonl").read_text().count("\n") > 0
        strip = [[{k: v for k, v in json.loads(line).items() if not k.endswith("_s")}  # timings differ
                  for line in run.joinpath("metrics.jsonl").read_text().splitlines()] for run in same]
        assert strip[0] == strip[1], cell.run_name
        summaries = [json.loads((run / "eval-test" / "summary.json").read_text())["protocols"] for run in same]
        assert summaries[0] == summaries[1]


def test_list_prints_one_runnable_command_per_cell(pipeline, tmp_path, cli):
    res = cli("table1", "--profile", "budget", "--pipeline", pipeline, "--list", "--workdir", tmp_path / "w")
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("medref table1 --profile budget") for line in lines)
    assert lines[0].endswith("--only t1-supervised-qata-mini-25pct-1min-s0")
    res = cli("table1", "--profile", "budget", "--pipeline", pipeline, "--only", "nope", "--workdir", tmp_path / "w")
    assert res.exit_code == 2 and "no cell 'nope'" in res.output


@pytest.mark.slow
def test_one_cell_then_collect(pipeline, tmp_path, cli):
    w = tmp_path / "w"
    res = cli("table1", "--profile", "two", "--pipeline", pipeline, "--only", "t1-supervised-qata-mini-25pct-s0",
              "--workdir", w)
    assert res.exit_code == 0, res.output
    res = cli("table1", "--profile", "two", "--pipeline", pipeline, "--collect", "--workdir", w)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((w / "results" / "table1" / "two" / "table1.csv").open()))
    assert [r["status"] for r in rows] == ["done (cached)", "missing"]


@pytest.mark.slow
def test_failed_job_is_reported(pipeline, tmp_path):
    cells, out = run(Table1Config("broken", pipeline, launcher="local", jobs=2), Workspace.resolve(tmp_path / "w"))
    assert [c.status for c in cells] == ["failed"] * 3 and all("no_such_field" in c.error for c in cells)


@pytest.mark.slow
def test_pipelines_ship_inside_the_wheel(tmp_path):
    """`medref table1` reads the default matrices, `predict --model` the bundled models, as package data: a
    non-editable install has them."""
    import subprocess
    import sys
    import zipfile

    from conftest import REPO
    from medref_cli.stages.table1_matrix import default_pipeline

    assert default_pipeline().is_file() and default_pipeline().resolve().parent.parent.name == "medref_cli"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("medref*.whl"))).namelist()
    assert {"medref_cli/pipelines/table1.yaml", "medref_cli/pipelines/semi-from-pretrain.yaml"} <= set(names)
    bundled = {f"medref_cli/bundled/{p.name}" for p in (REPO / "medref_cli" / "bundled").glob("*.*")}
    assert bundled <= set(names)  # the bundled models and their cards too


def test_local_jobs_share_the_cores_out(monkeypatch):
    import os

    from medref_cli.stages.table1_jobs import shared_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    assert [shared_threads(j) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def _exit_now(code: int) -> None:  # a local worker that dies mid-cell (killed, out of memory)
    os._exit(code)


def _square(x: int) -> int:
    return x * x


def test_a_dead_local_worker_fails_its_task_and_a_new_pool_runs_the_next():
    from concurrent.futures.process import BrokenProcessPool

    from medref_cli.stages.table1_jobs import _LocalPool

    pool = _LocalPool(1, 1)
    try:
        dead = pool.submit(_exit_now, 3)
        with pytest.raises(BrokenProcessPool):
            dead.result(timeout=120)
        assert pool.submit(_square, 7).result(timeout=120) == 49
    finally:
        pool.shutdown()


def test_jobs_are_submitted_longest_first():
    from medref_cli.stages.table1_jobs import expected_cost
    from medref_cli.stages.table1_matrix import Cell

    cells = [Cell("d", "5%", "supervised", 0), Cell("d", "5%", "semi-medref-no-itcl", 0), Cell("d", "5%", "cutmix", 0),
             Cell("d", "5%", "supervised", 1, budget=5.0)]
    assert [expected_cost(c) for c in cells] == [1.0, 2.0, 2.0, 5.0]
    assert [c.method for c in sorted(cells, key=expected_cost, reverse=True)][:3] == \
        ["supervised", "semi-medref-no-itcl", "cutmix"]


def test_a_supervised_cell_from_before_the_run_spec_is_still_the_same_experiment(pipeline, tmp_path):
    """A workspace's supervised cell written before config.yaml 3 (no method block, identity in run.json 1) is the
    experiment its profile asks for (the profile's semi-train schedules are not pretrain's), so table1 reuses it."""
    import yaml

    from medref_cli.config import TrainRequest, resolve_config
    from medref_cli.stages.table1_cells import check_same_experiment, ensure_dataset

    ws = Workspace.resolve(tmp_path / "w")
    ensure_dataset(ws, {"name": "qata-mini", "kind": "qata"}, "sample")
    hash_ = json.loads((ws.dataset_dir("qata-mini") / "dataset.json").read_text())["dataset_hash"]
    prof = load_profile(pipeline, "two")
    req = TrainRequest(stage="pretrain", method="supervised", labeled="25%", dataset="qata-mini", seed=0,
                       preset="tiny", overrides={k: dict(prof.get(k) or {}) for k in ("model", "train", "method")})
    spec = resolve_config(req, {}).to_dict()
    run = ws.runs / "t1-supervised-qata-mini-25pct-s0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"schema_version": 2, "preset": "tiny", "inputs": {},
                                                     "config": {"model": spec["model"], "train": spec["train"]}}))
    (run / "run.json").write_text(json.dumps({
        "stage": "pretrain", "method": "supervised", "dataset": "qata-mini", "dataset_hash": hash_,
        "split_file": "qata-mini-25pct-s0.json", "ratio": "25%", "seed": 0, "preset": "tiny",
        "text_encoder": "minilm", "status": "finished", "epochs_done": 2}))
    check_same_experiment(ws, run, req)  # no error: the same experiment
    with pytest.raises(MedrefError, match="another experiment"):
        check_same_experiment(ws, run, TrainRequest(**{**req.__dict__, "overrides": {"train": {"epochs": 9}}}))


def test_a_cells_training_time_comes_from_its_metrics_and_a_damaged_file_does_not_fail_it(tmp_path):
    from medref_cli.stages.table1_cells import train_seconds

    assert train_seconds(tmp_path) is None  # no metrics.jsonl
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "elapsed_s": 3.5}\n{"epoch": 1, "elapsed_s": 7.25}\n{"ep')
    assert train_seconds(tmp_path) == 7.25  # a torn last line is left out
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "elapsed_s": 3.5}\nnot json\n{"epoch": 2, "elapsed_s": 9}\n')
    assert train_seconds(tmp_path) is None
