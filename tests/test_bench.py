"""The benchmark's building blocks do what RESULTS.md says they do (the timings themselves are not tested)."""

import pytest
import torch

from bench.step import bare_semi_step, step_flops
from bench.workload import setup


@pytest.mark.slow
def test_bare_step_trains_the_model_and_flops_scale_with_the_batch():
    s = setup("tiny")
    before = [p.detach().clone() for p in s.model.parameters()]
    bare_semi_step(s)()
    changed = sum(not torch.equal(a, p) for a, p in zip(before, s.model.parameters(), strict=True))
    assert changed > 0.9 * len(before)
    small = step_flops(setup("tiny", batch_size=4, batch_size_unlabeled=4))
    large = step_flops(setup("tiny", batch_size=8, batch_size_unlabeled=8))
    assert small > 0 and 1.9 < large / small < 2.1


def _fake_run(root, name, seed, dice, minutes):
    """A run folder with what `bench.ssl_study` reads: run.json, metrics.jsonl, eval-test/summary.json."""
    import json

    from conftest import write_run_record
    from medref_cli.artifacts import EvalSummary

    run = root / name
    (run / "eval-test").mkdir(parents=True)
    write_run_record(run, "cutmix", seed, "tiny", "5%", epochs_done=10)
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 9, "elapsed_s": 60 * minutes}) + "\n")
    lat = {"left": {"n": 1, "global": {"dice": dice - 0.2}}, "right": {"n": 3, "global": {"dice": dice - 0.1}}}
    protocols = {"global": {"dice": dice, "iou": dice / 2}, "per_image": {"dice": dice - 0.05, "iou": 0.1}}
    EvalSummary(name, "test", "best", 4, 64, "student", protocols, {}, lat).save(run / "eval-test" / "summary.json")
    return run


def test_ssl_study_pairs_gaps_by_seed_and_writes_table_and_plot(tmp_path):
    from bench.ssl_study import main

    sup = [_fake_run(tmp_path, f"sup{s}", s, d, 5) for s, d in [(0, 0.70), (1, 0.72), (2, 0.74)]]
    semi = [_fake_run(tmp_path, f"semi{s}", s, d, 15) for s, d in [(2, 0.77), (0, 0.72), (1, 0.75)]]
    one = _fake_run(tmp_path, "one1", 1, 0.71, 15)
    main(["--out", str(tmp_path / "out"), "--point", "supervised@20=" + ",".join(map(str, sup)),
          "--point", "semi@20=" + ",".join(map(str, semi)), "--point", f"one seed@20={one}"])
    table = (tmp_path / "out" / "study.md").read_text().splitlines()[2:]  # after the command line
    assert "| 0.7200 ± 0.0200 |" in table[2] and "| 0.5950 ± 0.0200 |" in table[2]  # one-lung: 1 L, 3 R pooled
    assert table[3].endswith("| +0.0267 ± 0.0058 (3 seeds) |")  # gaps 0.02, 0.03, 0.03, paired by seed
    assert table[4].endswith("| -0.0100 (1 seed) |")  # no std to show for one pair
    assert (tmp_path / "out" / "study.png").stat().st_size > 1000


@pytest.mark.slow
def test_the_gpu_check_script_runs_its_path_on_cpu(tmp_path):
    """bench/gpu_check.py (the prepared GPU run) on CPU at a small size: torchrun, the paper preset with AMP
    requested, two epochs of semi-train, a row per epoch with images/s (peak memory only on CUDA)."""
    from bench.gpu_check import main

    result = main(["--device", "cpu", "--small", "--n", "24", "--out", str(tmp_path / "g")])
    assert [e["epoch"] for e in result["epochs"]] == [0, 1]
    assert all(e["images_per_s"] > 0 and e["cuda_peak_gib"] is None for e in result["epochs"])
    assert (tmp_path / "g" / "gpu_check.md").read_text().count("\n| ") == 3
    assert result["command"].startswith("torchrun --standalone --nproc-per-node 1 -m medref_cli semi-train")
    assert "--preset paper" in result["command"]


def test_itc_floor_bench_reads_an_annotation_file_and_prints_the_floor_per_power(tmp_path, monkeypatch, capsys):
    import json
    import math
    import sys

    from bench import itc_floor
    from conftest import CAPTIONS

    ann = tmp_path / "annotation.json"
    ann.write_text(json.dumps({"train": [{"image_path": f"m{i}.png", "caption": CAPTIONS[i % 4]} for i in range(12)]}))
    monkeypatch.setattr(sys, "argv", ["itc_floor", "--annotation", str(ann), "--batch", "4", "--draws", "20",
                                      "--powers", "1", "1000"])
    itc_floor.main()
    out = capsys.readouterr().out
    assert "12 train reports, 4 distinct zone vectors" in out
    floors = [float(line.split("floor ")[1].split()[0]) for line in out.splitlines() if line.startswith("power")]
    assert len(floors) == 2 and 0 <= floors[1] < floors[0] <= math.log(4) + 1e-3
