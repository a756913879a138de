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


def test_killed_prepare_leaves_nothing_and_rerun_completes(cli, workdir):
    stale = workdir / "datasets" / ".qata.abc123.tmp"
    (stale / "images").mkdir(parents=True)
    (stale / "images" / "half.png").write_bytes(b"\x89PNG")
    res = cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini")
    assert res.exit_code == 0, res.output
    assert not stale.exists() and (workdir / "datasets" / "qata" / "dataset.json").is_file()


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


def _metrics(run):
    volatile = {"epoch_s", "elapsed_s", "text_cache_hit_rate"}
    return [{k: v for k, v in json.loads(line).items() if k not in volatile}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path):
    write(tmp_path / "raw", SampleSpec("qata", n=40, size=64, seed=4))
    ws = tmp_path / "w"
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(ws))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "medref_cli", "pretrain", "-d", "s", "-l", "50%", "--preset", "tiny",
            "--epochs", "4", "--workdir", str(ws), "--no-progress"]
    subprocess.run(base + ["--name", "full"], check=True, capture_output=True, env=env, timeout=300)
    proc = subprocess.Popen(base + ["--name", "cut"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    metrics = ws / "runs" / "cut" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-way through epoch 2 (or just after its checkpoint)
    proc.wait()
    assert len(metrics.read_text().splitlines()) < 4, "the run finished before it could be killed"
    res = subprocess.run(base + ["--name", "cut", "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    assert _metrics(ws / "runs" / "cut") == _metrics(ws / "runs" / "full")
    assert json.loads((ws / "runs" / "cut" / "run.json").read_text())["status"] == "finished"


def test_seed_drives_split_and_training(cli, workdir):
    import yaml

    assert cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini").exit_code == 0
    assert cli("pretrain", "-d", "qata", "-l", "100%", "--preset", "tiny", "--epochs", "1", "--seed", "7").exit_code == 0
    run = workdir / "runs" / "pretrain-qata-100pct-s7"
    assert yaml.safe_load((run / "config.yaml").read_text())["config"]["train"]["seed"] == 7
    assert json.loads((run / "split.json").read_text())["seed"] == 7


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
