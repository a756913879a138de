"""Interruptions and concurrent writers: nothing finished is lost, nothing half-written is visible."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from medref_cli.stages.prepare import PrepareConfig
from medref_cli.stages.prepare import run as prepare
from medref_cli.synthetic import SampleSpec, write
from medref_cli.workspace import Workspace


@pytest.mark.slow
def test_killed_prepare_leaves_nothing_and_rerun_completes(cli, workdir):
    stale = workdir / "datasets" / ".qata.abc123.tmp"
    (stale / "images").mkdir(parents=True)
    (stale / "images" / "half.png").write_bytes(b"\x89PNG")
    res = cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini")
    assert res.exit_code == 0, res.output
    assert not stale.exists() and (workdir / "datasets" / "qata" / "dataset.json").is_file()


@pytest.mark.slow  # trains
def test_second_writer_is_refused_and_stale_lock_taken_over(cli, workdir):
    assert cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini").exit_code == 0
    run = workdir / "runs" / "locked"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(str(holder.pid))
        res = cli("pretrain", "-d", "qata", "-l", "50%", "--preset", "tiny", "--epochs", "1", "--name", "locked",
                  "--overwrite")
        assert res.exit_code == 2 and f"in use by process {holder.pid}" in res.output
        assert (run / ".lock").is_file()
    finally:
        holder.kill()
        holder.wait()
    res = cli("pretrain", "-d", "qata", "-l", "50%", "--preset", "tiny", "--epochs", "1", "--name", "locked",
              "--overwrite")
    assert res.exit_code == 0, res.output
    assert not (run / ".lock").exists()


def _tmp_pngs(parent, prefix):
    return sum(len(list(t.rglob("*.png"))) for t in parent.glob(f".{prefix}.*.tmp")) if parent.is_dir() else 0


def _kill_when(proc, ready, what, timeout=240):
    """SIGKILL `proc` as soon as `ready()` holds; fail if it finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    assert proc.poll() is None, f"{what} finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _cmd(*args):
    return [sys.executable, "-m", "medref_cli", *map(str, args), "--no-progress"]


def _metrics(run):
    volatile = {"epoch_s", "elapsed_s", "text_cache_hit_rate"}
    return [{k: v for k, v in json.loads(line).items() if k not in volatile}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path):
    write(tmp_path / "raw", SampleSpec("qata", n=40, size=64, seed=4))
    ws = tmp_path / "w"
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(ws))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = _cmd("pretrain", "-d", "s", "-l", "50%", "--preset", "tiny", "--epochs", "4", "--workdir", ws)
    subprocess.run(base + ["--name", "full"], check=True, capture_output=True, env=env, timeout=300)
    proc = subprocess.Popen(base + ["--name", "cut"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    metrics = ws / "runs" / "cut" / "metrics.jsonl"
    # mid-way through epoch 2 (or just after its checkpoint)
    _kill_when(proc, lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 2, "training")
    assert len(metrics.read_text().splitlines()) < 4, "the run finished before it could be killed"
    res = subprocess.run(base + ["--name", "cut", "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    assert _metrics(ws / "runs" / "cut") == _metrics(ws / "runs" / "full")
    assert json.loads((ws / "runs" / "cut" / "run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_seed_drives_split_and_training(cli, workdir):
    import yaml

    assert cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini").exit_code == 0
    assert cli("pretrain", "-d", "qata", "-l", "100%", "--preset", "tiny", "--epochs", "1", "--seed", "7").exit_code == 0
    run = workdir / "runs" / "pretrain-qata-100pct-s7"
    assert yaml.safe_load((run / "config.yaml").read_text())["config"]["train"]["seed"] == 7
    assert json.loads((run / "split.json").read_text())["seed"] == 7


@pytest.mark.slow  # trains
def test_resume_without_checkpoint_and_rerun_without_flags_are_refused(cli, workdir):
    assert cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini").exit_code == 0
    res = cli("pretrain", "-d", "qata", "-l", "50%", "--preset", "tiny", "--resume", "--name", "x")
    assert res.exit_code == 2 and "nothing to resume" in res.output
    assert cli("pretrain", "-d", "qata", "-l", "50%", "--preset", "tiny", "--epochs", "1", "--name", "x").exit_code == 0
    res = cli("pretrain", "-d", "qata", "-l", "50%", "--preset", "tiny", "--epochs", "1", "--name", "x")
    assert res.exit_code == 2 and "--resume" in res.output and "--overwrite" in res.output


@pytest.mark.parametrize("order", [("evaluate", "nope"), ("pseudo-label", "nope"), ("semi-train", "-l", "10%")])
def test_wrong_stage_order_names_the_missing_step(cli, workdir, order):
    res = cli(*order)
    assert res.exit_code == 2
    assert "medref prepare" in res.output or "no run folder" in res.output


@pytest.mark.slow
def test_sigkill_mid_prepare_leaves_no_dataset_and_rerun_completes(tmp_path):
    write(tmp_path / "raw", SampleSpec("qata", n=600, size=96, seed=5))
    ws = tmp_path / "w"
    cmd = _cmd("prepare", "qata", "--raw", tmp_path / "raw", "--name", "s", "--workdir", ws)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: _tmp_pngs(ws / "datasets", "s") >= 20, "prepare")
    assert not (ws / "datasets" / "s").exists(), "a killed prepare left a dataset under its real name"
    assert list((ws / "datasets").glob(".s.*.tmp")), "expected the killed writer's temp folder"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    manifest = json.loads((ws / "datasets" / "s" / "dataset.json").read_text())
    assert len(manifest["records"]) == 600
    assert not list((ws / "datasets").glob(".s.*")), "temp folders left behind"


@pytest.mark.slow
def test_sigkill_mid_pseudo_label_leaves_no_output_and_rerun_completes(tmp_path):
    write(tmp_path / "raw", SampleSpec("qata", n=400, size=64, seed=6))
    ws = tmp_path / "w"
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(ws))
    subprocess.run(_cmd("pretrain", "-d", "s", "-l", "5%", "--preset", "tiny", "--epochs", "1", "--name", "r",
                        "--workdir", ws), check=True, capture_output=True, timeout=300)
    run = ws / "runs" / "r"
    cmd = _cmd("pseudo-label", "r", "--workdir", ws)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: _tmp_pngs(run, "pseudo-labels-train_unlabeled") >= 20, "pseudo-label")
    out = run / "pseudo-labels-train_unlabeled"
    assert not out.exists(), "a killed pseudo-label left output under its real name"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    meta = json.loads((out / "pseudo_labels.json").read_text())
    n_unlabeled = len(json.loads((run / "split.json").read_text())["train_unlabeled"])
    assert len(meta["entries"]) == n_unlabeled == len(list((out / "masks").glob("*.png")))
    assert not list(run.glob(".pseudo-labels-train_unlabeled.*")), "temp folders left behind"


@pytest.mark.slow
def test_semi_train_same_seed_gives_identical_metrics(tmp_path):
    write(tmp_path / "raw", SampleSpec("qata", n=40, size=64, seed=4))
    ws = tmp_path / "w"
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(ws))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = _cmd("semi-train", "-d", "s", "-l", "25%", "--preset", "tiny", "--epochs", "3", "--workdir", ws)
    # burn-in 0 so that every epoch runs the teacher, T-PatchMix, PosAug and ITCL
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("method:\n  burn_in_epochs: 0\n  unsup_ramp_epochs: 1\n  mix_prob: 0.5\n  mix_gate: 0.0\n")
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        subprocess.run(base + ["--config", cfg, "--seed", str(seed), "--name", name], check=True,
                       capture_output=True, env=env, timeout=300)
        runs[name] = _metrics(ws / "runs" / name)
    assert runs["a"][-1].get("t_patchmix_acceptance", 0) > 0 and runs["a"][-1]["w_u"] > 0, runs["a"][-1]
    assert 0 < runs["a"][-1]["t_patchmix_share"] < 0.5, runs["a"][-1]
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"], "another seed gave the very same run"
