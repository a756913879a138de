"""Tiny synthetic data with distractors through every stage: the model must learn and must use the text."""

import csv
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image

from medref_cli.artifacts import load_audit, load_summary
from medref_cli.stages.evaluate import EvaluateConfig
from medref_cli.stages.evaluate import run as evaluate
from medref_cli.stages.prepare import PrepareConfig
from medref_cli.stages.prepare import run as prepare
from medref_cli.synthetic import SampleSpec, write
from medref_cli.workspace import Workspace

pytestmark = pytest.mark.slow  # trains models or runs subprocesses

CAPTION = "Unilateral pulmonary infection, one infected area, lower left lung."


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """160 synthetic 64-px images (lesions + distractors), tiny preset, 30 epochs, all labels (~80 s)."""
    from medref_cli.config import TrainRequest
    from medref_cli.stages import pretrain

    root = tmp_path_factory.mktemp("e2e")
    write(root / "raw", SampleSpec("qata", n=160, size=64, seed=0, distractors=True))
    ws = Workspace.resolve(root / "work")
    prepare(PrepareConfig("qata", root / "raw", "synth"), ws)
    info, run = pretrain.run(TrainRequest(stage="pretrain", method="supervised", labeled="100%", dataset="synth",
                                          preset="tiny", overrides={"train": {"epochs": 30}}, name="learn"), ws)
    return ws, info, run


def test_model_learned_and_uses_the_text(trained):
    ws, info, run = trained
    assert info.status == "finished" and info.epochs_done == 30
    summary, out = evaluate(EvaluateConfig("learn"), ws)
    dice = summary.protocols["global"]["dice"]
    gap = summary.text_ablation["gap_global_dice_shuffled"]
    assert dice > 0.65, summary.protocols
    assert gap > 0.10, summary.text_ablation  # the same model with shuffled captions is clearly worse
    assert summary.text_ablation["gap_global_dice_empty"] > 0.10
    assert set(summary.per_zone) == {"L-upper", "L-middle", "L-lower", "R-upper", "R-middle", "R-lower"}
    assert (out / "per_case.csv").read_text().count("\n") == summary.n_images + 1
    assert len(list((out / "overlays").glob("*.png"))) == 6
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and rows[-1]["text_cache_hit_rate"] == 1.0
    assert (run / "curve.png").is_file() and (run / "config.yaml").is_file() and (run / "split.json").is_file()


def test_opening_a_run_flushes_denormals(trained, denormals_kept):
    from medref_cli.training.trained_run import open_run

    open_run(trained[0], "learn", "best", "cpu")  # what evaluate / predict / pseudo-label start with
    assert not denormals_kept()


def test_off_side_pixels_are_what_the_side_gate_removes(trained, cli):
    """per_case.csv's `pred_off_side` (predicted pixels in the image half a one-lung report does not name) is what
    the side gate takes away from that image's mask (64-px model and images: no resize), 0 for other reports; the
    summary pools it per one-lung group, and the command line prints the shares."""
    from medref_cli.zone_masks import laterality

    ws, _, run = trained
    res = cli("evaluate", "learn", "--split", "val", "--no-ablation", "--overlays", "0", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    gated, _ = evaluate(EvaluateConfig("learn", "val", ablation=False, overlays=0, side_gate=True), ws)
    plain = load_summary(run / "eval-val" / "summary.json")
    rows = {r["id"]: r for r in csv.DictReader((run / "eval-val" / "per_case.csv").read_text().splitlines())}
    after = {r["id"]: r for r in csv.DictReader((run / "eval-val-side-gate" / "per_case.csv").read_text().splitlines())}
    pooled: dict[str, int] = {}
    for rid, r in rows.items():
        side, off = laterality([int(z) for z in r["zones"]]), int(r["pred_off_side"])
        assert int(after[rid]["tp"]) + int(after[rid]["fp"]) == int(r["tp"]) + int(r["fp"]) - off, rid
        assert int(after[rid]["pred_off_side"]) == 0 and (off == 0 or side in ("left", "right"))
        pooled[side] = pooled.get(side, 0) + off
    assert sum(pooled.values()) > 0  # the model does mark the other half somewhere: the check above bites
    for side in ("left", "right"):
        o = plain.per_laterality[side]["off_side"]
        assert o["off_side_pixels"] == pooled[side] and gated.per_laterality[side]["off_side"]["off_side_pixels"] == 0
        assert o["share"] == pytest.approx(pooled[side] / o["pred_pixels"])
    assert "off_side" not in plain.per_laterality.get("bilateral", {})
    left = plain.per_laterality["left"]["off_side"]
    assert f"left only {left['share']:.1%} (any in {left['images_with_any']} of" in res.output


def test_evaluate_refuses_training_ids_and_leaky_splits(trained, cli):
    ws, _, run = trained
    res = cli("evaluate", "learn", "--split", "train_labeled", "--workdir", ws.root)
    assert res.exit_code == 2 and "trained on" in res.output
    split = json.loads((run / "split.json").read_text())
    leaky = dict(split, test=split["test"] + split["train_labeled"][:1])
    (run / "split.json").write_text(json.dumps(leaky))
    try:
        res = cli("evaluate", "learn", "--workdir", ws.root)
        assert res.exit_code == 2 and "split.json" in res.output
    finally:
        (run / "split.json").write_text(json.dumps(split))


def test_evaluate_without_the_text_ablation(trained, cli):
    """`--no-ablation`: the summary has no text_ablation block and the command line says no gap."""
    ws, _, run = trained
    res = cli("evaluate", "learn", "--no-ablation", "--overlays", "0", "--overwrite", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    assert "global Dice" in res.output and "text gap" not in res.output
    summary = load_summary(run / "eval-test" / "summary.json")
    assert summary.text_ablation is None
    left = summary.per_laterality["left"]  # the breakdown by report side, one line
    assert f"left only {left['per_image']['dice']:.4f} ({left['n']})" in res.output
    evaluate(EvaluateConfig("learn", overwrite=True), ws)  # leave the fixture's full evaluation in place


def test_predict_png_and_nifti(trained, cli, tmp_path):
    ws, _, _ = trained
    src = next((ws.dataset_dir("synth") / "images").glob("*.png"))
    res = cli("predict", "learn", "--image", src, "--text", CAPTION, "--out", tmp_path / "m.png", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    mask = np.asarray(Image.open(tmp_path / "m.png"))
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "m_overlay.png").is_file()
    vol = np.stack([np.asarray(Image.open(src))] * 3, axis=-1).astype(np.float32)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "v.nii.gz")
    res = cli("predict", "learn", "--image", tmp_path / "v.nii.gz", "--text", CAPTION, "--out",
              tmp_path / "v_mask.nii.gz", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    out = nib.load(tmp_path / "v_mask.nii.gz")
    assert out.shape == vol.shape and np.allclose(out.affine, affine)
    res = cli("predict", "learn", "--image", tmp_path / "nope.png", "--text", CAPTION, "--out", tmp_path / "x.png",
              "--workdir", ws.root)
    assert res.exit_code == 2 and "nope.png" in res.output


def test_semi_train_and_pseudo_label(trained, cli):
    ws, _, _ = trained
    res = cli("split", "-d", "synth", "-l", "25%", "--workdir", ws.root)
    assert res.exit_code == 0
    cfg = ws.root / "semi.yaml"
    cfg.write_text("method: {burn_in_epochs: 5, unsup_ramp_epochs: 3, ema_start: 0.95, ema_end: 0.98}\n")
    res = cli("semi-train", "-d", "synth", "-l", "25%", "--preset", "tiny", "--epochs", "30", "--config", cfg,
              "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    run = ws.runs / "semi-medref-synth-25pct-s42"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    for key in ("loss_sup", "loss_u", "w_u", "ema_decay", "conf_ratio", "loss_itc_u", "pseudo_fg", "itc_floor_u",
                "val_i2t_zone_top1", "val_i2t_zone_chance"):
        assert key in last, last
    assert 0 < last["val_i2t_zone_chance"] < 1 and last["loss_itc_u"] >= last["itc_floor_u"] - 1e-5
    assert last["w_u"] > 0 and abs(last["ema_decay"] - 0.98) < 1e-9
    summary, _ = evaluate(EvaluateConfig("semi-medref-synth-25pct-s42", overlays=0), ws)
    # 30 epochs with a quarter of the masks: measured 0.63 global Dice, 0.11 below with an empty report
    assert summary.protocols["global"]["dice"] > 0.5, summary.protocols
    assert summary.text_ablation["gap_global_dice_empty"] > 0.05, summary.text_ablation
    res = cli("semi-train", "-d", "synth", "-l", "25%", "--preset", "tiny", "--epochs", "2", "--init", "learn",
              "--method", "mean-teacher", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    mt = [json.loads(line) for line in (ws.runs / "mean-teacher-synth-25pct-s42" / "metrics.jsonl").read_text().splitlines()]
    assert mt[0]["w_u"] == 0.0 and mt[1]["w_u"] > 0 and "loss_itc_u" not in mt[1]  # burn-in skipped, no ITCL
    from medref_cli.workspace import file_sha256

    recorded = yaml.safe_load((ws.runs / "mean-teacher-synth-25pct-s42" / "config.yaml").read_text())
    assert recorded["schema_version"] == 3 and recorded["inputs"]["init_run"] == "learn"  # config.yaml records --init
    assert recorded["inputs"]["init_sha256"] == file_sha256(ws.runs / "learn" / "checkpoint_best.pt")
    res_pl = cli("pseudo-label", "semi-medref-synth-25pct-s42", "--workdir", ws.root)
    assert res_pl.exit_code == 0, res_pl.output
    pl = run / "pseudo-labels-train_unlabeled"
    audit = load_audit(pl / "audit.json")
    meta = json.loads((pl / "pseudo_labels.json").read_text())
    assert audit.model == "teacher" and audit.n_images == len(meta["entries"]) > 0
    assert audit.with_ground_truth == audit.n_images and audit.dice_by_confidence
    assert len(list((pl / "masks").glob("*.png"))) == audit.n_images
    res = cli("pretrain", "-d", "synth", "-l", "25%", "--preset", "tiny", "--epochs", "1", "--pseudo-labels", pl,
              "--name", "self-train", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    assert "96 labelled" in (ws.runs / "self-train" / "log.txt").read_text()
    inputs = yaml.safe_load((ws.runs / "self-train" / "config.yaml").read_text())["inputs"]
    assert inputs["pseudo_labels"] == str(pl.resolve())
    assert inputs["pseudo_labels_sha256"] == file_sha256(pl / "pseudo_labels.json")
    # --resume goes on with the recorded set (not given again); a changed set is refused
    res = cli("pretrain", "-d", "synth", "-l", "25%", "--epochs", "2", "--name", "self-train", "--resume",
              "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    assert (ws.runs / "self-train" / "log.txt").read_text().count("96 labelled") == 2
    meta_file = pl / "pseudo_labels.json"
    meta_file.write_text(meta_file.read_text().replace('"entries"', '"entries" ', 1))
    res = cli("pretrain", "-d", "synth", "-l", "25%", "--epochs", "3", "--name", "self-train", "--resume",
              "--workdir", ws.root)
    assert res.exit_code == 2 and "changed since run self-train started with it" in res.output
    # the side gate: on by default as the run's teacher trained (the medref recipe), off on request; the gated
    # masks are the ungated ones with the image half a one-lung report does not name cleared (64 px: no resize)
    assert meta["side_gate"] is True and audit.side_gate is True and "side gate" in res_pl.output
    res = cli("pseudo-label", "semi-medref-synth-25pct-s42", "--split", "val", "--no-side-gate", "--workdir", ws.root)
    assert res.exit_code == 0 and "side gate" not in res.output, res.output
    val = run / "pseudo-labels-val"
    plain = {e["id"]: np.asarray(Image.open(val / e["mask"])) > 127
             for e in json.loads((val / "pseudo_labels.json").read_text())["entries"]}
    res = cli("pseudo-label", "semi-medref-synth-25pct-s42", "--split", "val", "--overwrite", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    gated = json.loads((val / "pseudo_labels.json").read_text())
    assert gated["side_gate"] is True and load_audit(val / "audit.json").side_gate is True
    cleared = 0
    for e in gated["entries"]:
        mask, before, zones = np.asarray(Image.open(val / e["mask"])) > 127, plain[e["id"]], e["caption_zones"]
        keep = np.ones_like(mask)
        half = mask.shape[1] // 2
        if any(zones[:3]) != any(zones[3:]):  # one lung named: its image side stays
            keep[:, :half] = any(zones[:3])  # zones: L-upper, L-middle, L-lower (image left), then R-...
            keep[:, half:] = any(zones[3:])
        assert np.array_equal(mask, before & keep), e["id"]
        cleared += int((before & ~keep).sum())
    assert cleared > 0  # the teacher does mark the other half somewhere: the check above bites


def test_checkpoint_every_s_skips_latest_saves_and_a_resume_redoes_the_lost_epochs(tmp_path, monkeypatch):
    """`train.checkpoint_every_s`: checkpoint_latest.pt only at a new best and the last epoch (a huge interval);
    a crash after epoch 3 of 5 resumes from the older checkpoint, and the metrics equal an uninterrupted run's."""
    from medref_cli.config import TrainRequest
    from medref_cli.model import checkpoint
    from medref_cli.stages import pretrain
    from medref_cli.training import loop

    write(tmp_path / "raw", SampleSpec("qata", n=24, size=64, seed=1))
    ws = Workspace.resolve(tmp_path / "w")
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), ws)

    def req(name, every, resume=False):  # val after epochs 2, 4 and 5 (1-based): no new best after epochs 1, 3
        return TrainRequest(stage="pretrain", method="supervised", labeled="50%", dataset="s", preset="tiny",
                            name=name, resume=resume, overrides={"train": {
                                "epochs": 5, "val_every": 2, "zoom_prob": 1.0, "checkpoint_every_s": every}})

    pretrain.run(req("full", 0.0), ws)
    saved: list[int] = []
    real_save, real_append = checkpoint.save, loop.append_metrics

    def counting_save(path, payload):
        if path.name == "checkpoint_latest.pt":
            saved.append(payload["epoch"])
        real_save(path, payload)

    def crash_after_three(run, row):
        real_append(run, row)
        if len((run / "metrics.jsonl").read_text().splitlines()) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", counting_save)
    monkeypatch.setattr(loop, "append_metrics", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(req("cut", 1e9), ws)
    assert saved == [1]  # epoch 0 (0-based): no validation; epoch 1: the first best; epoch 2: no validation
    monkeypatch.setattr(loop, "append_metrics", real_append)
    pretrain.run(req("cut", 1e9, resume=True), ws)
    assert "resumed from" in (ws.runs / "cut" / "log.txt").read_text() and saved[1] >= 3 and saved[-1] == 4
    volatile = {"epoch_s", "elapsed_s", "text_cache_hit_rate"}

    def rows(name):
        return [{k: v for k, v in json.loads(line).items() if k not in volatile}
                for line in (ws.runs / name / "metrics.jsonl").read_text().splitlines()]

    assert len(rows("cut")) == 5 and rows("cut") == rows("full")
    assert "at epoch 2" in (ws.runs / "cut" / "log.txt").read_text()  # epoch 2 (0-based) was redone


def test_val_batch_size_batches_validation_and_keeps_its_figures(tmp_path, monkeypatch):
    """`train.val_batch_size`: validation runs in batches of that many images; the val figures match the default
    batches' to float noise (another batch size may change a probability in its last bits)."""
    from medref_cli.config import TrainRequest
    from medref_cli.stages import pretrain
    from medref_cli.training import loop

    write(tmp_path / "raw", SampleSpec("qata", n=40, size=64, seed=1))
    ws = Workspace.resolve(tmp_path / "w")
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), ws)
    batches: list[int] = []
    real_validate = loop.validate

    def recording(module, text, ds, device, amp, batch, *args, **kw):
        batches.append(batch)
        return real_validate(module, text, ds, device, amp, batch, *args, **kw)

    monkeypatch.setattr(loop, "validate", recording)
    rows = {}
    for name, every in (("default", None), ("one-batch", 64)):
        pretrain.run(TrainRequest(stage="pretrain", method="supervised", labeled="50%", dataset="s", preset="tiny",
                                  name=name, overrides={"train": {"epochs": 2, "val_batch_size": every}}), ws)
        rows[name] = [json.loads(line) for line in (ws.runs / name / "metrics.jsonl").read_text().splitlines()]
    assert batches == [8, 8, 64, 64]  # the tiny preset's batch_size, then val_batch_size
    for a, b in zip(rows["default"], rows["one-batch"], strict=True):
        assert a["loss_sup"] == b["loss_sup"] and a["val_dice_global"] == pytest.approx(b["val_dice_global"], abs=1e-4)


def _interrupt(monkeypatch, train, epochs_done):
    """`train()` stopped by a KeyboardInterrupt once `epochs_done` rows of its metrics.jsonl are written."""
    from medref_cli.training import loop

    real_append = loop.append_metrics

    def crash(run, row):
        real_append(run, row)
        if len((run / "metrics.jsonl").read_text().splitlines()) == epochs_done:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "append_metrics", crash)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(loop, "append_metrics", real_append)


def _metric_rows(run):
    """metrics.jsonl without its timings and cache counts."""
    volatile = {"epoch_s", "elapsed_s", "text_cache_hit_rate"}
    return [{k: v for k, v in json.loads(line).items() if k not in volatile}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """Interrupt after epoch 2 of 4, resume: metrics identical to an uninterrupted run (CPU, same seed)."""
    from medref_cli.config import TrainRequest
    from medref_cli.stages import pretrain

    write(tmp_path / "raw", SampleSpec("qata", n=24, size=64, seed=1))
    ws = Workspace.resolve(tmp_path / "w")
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), ws)

    def req(name, resume=False):
        return TrainRequest(stage="pretrain", method="supervised", labeled="50%", dataset="s", preset="tiny",
                            name=name, resume=resume, overrides={"train": {"epochs": 4, "zoom_prob": 1.0}})

    pretrain.run(req("full"), ws)
    _interrupt(monkeypatch, lambda: pretrain.run(req("cut"), ws), 2)
    pretrain.run(req("cut", resume=True), ws)
    cut = _metric_rows(ws.runs / "cut")
    assert len(cut) == 4 and cut == _metric_rows(ws.runs / "full")
    # three runs in one process (one ended by an exception): each log.txt holds its own run's lines only
    import logging

    full_log = (ws.runs / "full" / "log.txt").read_text()
    assert full_log.count("epoch 1:") == 1 and "resumed from" not in full_log
    assert "resumed from" in (ws.runs / "cut" / "log.txt").read_text()
    assert not [h for h in logging.getLogger("medref_cli").handlers if isinstance(h, logging.FileHandler)]
    import torch

    # environment.jsonl: one record for the start and one for the resume, of this process's machine and threads
    env = [json.loads(line) for line in (ws.runs / "cut" / "environment.jsonl").read_text().splitlines()]
    assert len(env) == 2 and env[1]["time"] >= env[0]["time"]
    assert env[0]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env[0]["torch_threads"] == torch.get_num_threads() and env[0]["device"] == "cpu"
    assert env[0]["versions"]["torch"] == torch.__version__ and env[0]["world_size"] == 1
    assert "environment: " in (ws.runs / "cut" / "log.txt").read_text()


def test_semi_train_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """Semi-MedRef with every part at work from epoch 0 (teacher, T-PatchMix, PosAug, ITCL), interrupted after
    epoch 2 of 4 and resumed: the metrics of an uninterrupted run. The resumed run's text cache starts empty and
    meets its captions in other batches (features encoded in batches of some sizes got other last bits)."""
    from medref_cli.config import TrainRequest
    from medref_cli.stages import semi_train

    write(tmp_path / "raw", SampleSpec("qata", n=40, size=64, seed=4))
    ws = Workspace.resolve(tmp_path / "w")
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), ws)
    method = {"burn_in_epochs": 0, "unsup_ramp_epochs": 1, "mix_prob": 0.5, "mix_gate": 0.0}

    def req(name, resume=False):
        return TrainRequest(stage="semi-train", method="semi-medref", labeled="25%", dataset="s", preset="tiny",
                            name=name, resume=resume, overrides={"train": {"epochs": 4}, "method": method})

    semi_train.run(req("full"), ws)
    _interrupt(monkeypatch, lambda: semi_train.run(req("cut"), ws), 2)
    semi_train.run(req("cut", resume=True), ws)
    full = _metric_rows(ws.runs / "full")
    assert full[-1]["w_u"] > 0 and full[-1]["t_patchmix_acceptance"] > 0 and "loss_itc_u" in full[-1]
    assert _metric_rows(ws.runs / "cut") == full


def test_ddp_two_processes_gloo(tmp_path):
    """torchrun with 2 CPU processes (gloo): trains, rank 0 alone writes one run folder."""
    write(tmp_path / "raw", SampleSpec("qata", n=24, size=64, seed=2))
    ws = tmp_path / "w"
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(ws))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = torchrun + ["-m", "medref_cli", "pretrain", "-d", "s", "-l", "100%", "--preset", "tiny", "--epochs", "2",
                      "--workdir", str(ws), "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                                "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    runs = list((ws / "runs").iterdir())
    assert [r.name for r in runs] == ["pretrain-s-100pct-s42"]
    rows = (runs[0] / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and (runs[0] / "checkpoint_best.pt").is_file()
    assert "pretrain supervised: finished" in res.stdout


def test_batch_predict_folder_and_table(trained, cli, tmp_path):
    """--input a folder (PNG, DICOM, 2-D NIfTI) with one --text, then a table with a report per image."""
    from test_dicom import write_dicom

    ws, _, _ = trained
    srcs = sorted((ws.dataset_dir("synth") / "images").glob("*.png"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for s in srcs:
        (folder / s.name).write_bytes(s.read_bytes())
    pixels = np.asarray(Image.open(srcs[0])).astype(np.uint16) * 16
    write_dicom(folder / "scan.dcm", pixels, "MONOCHROME1")
    nib.save(nib.Nifti1Image(np.asarray(Image.open(srcs[1])).T[:, ::-1].astype(np.float32), np.eye(4)),
             folder / "slice.nii.gz")
    (folder / "notes.txt").write_text("not an image")
    res = cli("predict", "learn", "--input", folder, "--text", CAPTION, "--out", tmp_path / "out", "--overlays", "2",
              "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert len(rows) == 5 and {r["id"] for r in rows} >= {"scan", "slice"}
    for r in rows:
        assert 0 <= float(r["lesion_fraction_image-left-lower"]) <= 1 and 0 <= float(r["mean_probability"]) <= 1
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 5
    assert len(list((tmp_path / "out" / "overlays").glob("*.png"))) == 2
    res = cli("predict", "learn", "--input", folder, "--text", CAPTION, "--out", tmp_path / "out", "--workdir", ws.root)
    assert res.exit_code == 2 and "already exists" in res.output
    table = tmp_path / "t.csv"
    table.write_text("image,text\n" + "".join(f"in/{s.name},{CAPTION.replace(',', '')}\n" for s in srcs))
    res = cli("predict", "learn", "--input", table, "--format", "nifti", "--out", tmp_path / "out2", "--workdir",
              ws.root)
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out2" / "masks").glob("*.nii.gz"))) == 3


def test_batch_predict_same_file_names_get_a_mask_each(trained, cli, tmp_path):
    """patient0/image.png and patient1/image.png in a table get a mask each (named by their path), and so do image.png
    and image.dcm in one folder: never one mask over another."""
    ws, _, _ = trained
    srcs = sorted((ws.dataset_dir("synth") / "images").glob("*.png"))[:2]
    for k, s in enumerate(srcs):
        (tmp_path / f"patient{k}").mkdir()
        (tmp_path / f"patient{k}" / "image.png").write_bytes(s.read_bytes())
    caption = CAPTION.replace(",", "")
    table = tmp_path / "t.csv"
    table.write_text(f"image,text\npatient0/image.png,{caption}\npatient1/image.png,{caption}\n")
    res = cli("predict", "learn", "--input", table, "--out", tmp_path / "out", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert [r["id"] for r in rows] == ["patient0__image", "patient1__image"]
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["patient0__image.png",
                                                                             "patient1__image.png"]
    table.write_text(f"image,text,id\npatient0/image.png,{caption},case-1\npatient1/image.png,{caption},case-2\n")
    res = cli("predict", "learn", "--input", table, "--out", tmp_path / "out2", "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out2" / "masks").iterdir()) == ["case-1.png", "case-2.png"]
    from test_dicom import write_dicom  # a folder with x.png and x.dcm: each keeps its whole name

    write_dicom(tmp_path / "patient0" / "image.dcm", np.asarray(Image.open(srcs[1])).astype(np.uint16) * 16)
    res = cli("predict", "learn", "--input", tmp_path / "patient0", "--text", caption, "--out", tmp_path / "out3",
              "--workdir", ws.root)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out3" / "masks").iterdir()) == ["image.dcm.png", "image.png.png"]


@pytest.mark.parametrize(("setup", "message"), [
    ("empty_folder", "no images"),
    ("folder_without_text", "pass --text"),
    ("table_without_image_column", "no 'image' column"),
    ("table_missing_file", "not found"),
])
def test_batch_predict_bad_inputs(trained, cli, tmp_path, setup, message):
    ws, _, _ = trained
    src = next((ws.dataset_dir("synth") / "images").glob("*.png"))
    (tmp_path / "d").mkdir()
    args = ["--input", tmp_path / "d"]
    if setup == "folder_without_text":
        (tmp_path / "d" / "a.png").write_bytes(src.read_bytes())
    elif setup == "table_without_image_column":
        (tmp_path / "t.csv").write_text(f"file,text\na.png,{CAPTION.replace(',', '')}\n")
        args = ["--input", tmp_path / "t.csv"]
    elif setup == "table_missing_file":
        (tmp_path / "t.csv").write_text("image,text\nnope.png,left lung\n")
        args = ["--input", tmp_path / "t.csv"]
    res = cli("predict", "learn", *args, "--out", tmp_path / "o", "--workdir", ws.root)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("side_gate", [False, True])
def test_predict_and_evaluate_give_the_same_masks(trained, cli, tmp_path, side_gate):
    """The one inference path: `predict` on the prepared image files and their reports gives, image for image,
    the true / false positive and false negative pixel counts `evaluate` scored (one Predictor, one resize), with
    the side gate as without."""
    from medref_cli.artifacts import load_dataset

    ws, _, _ = trained
    _, out = evaluate(EvaluateConfig("learn", split="val", ablation=False, overlays=0, overwrite=True,
                                     side_gate=side_gate), ws)
    scored = {r["id"]: r for r in csv.DictReader((out / "per_case.csv").open())}
    manifest, folder = load_dataset(ws, "synth")
    recs = [manifest.by_id()[i] for i in scored]
    (tmp_path / "in").mkdir()
    for r in recs:  # the prepared files, byte for byte (a table reads nothing outside its folder)
        (tmp_path / "in" / f"{r.id}.png").write_bytes((folder / r.image).read_bytes())
    table = tmp_path / "val.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "image", "text"])
        w.writerows([r.id, f"in/{r.id}.png", r.caption] for r in recs)
    gate = ["--side-gate"] if side_gate else []
    res = cli("predict", "learn", "--input", table, "--out", tmp_path / "p", "--overlays", "0", *gate, "--workdir",
              ws.root)
    assert res.exit_code == 0, res.output
    for r in recs:
        pred = np.asarray(Image.open(tmp_path / "p" / "masks" / f"{r.id}.png")) > 127
        truth = np.asarray(Image.open(folder / r.mask)) > 127
        counts = [int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())]
        assert counts == [int(scored[r.id][k]) for k in ("tp", "fp", "fn")], r.id
    assert sum(int(s["tp"]) for s in scored.values()) > 0


def test_predict_side_gate_reads_free_text_sides_under_laterality(trained, cli, tmp_path):
    """A free-text report naming the patient's right lung: `--side-gate` keeps only the image LEFT half under the
    default `--laterality patient` and only the image right half under `image`; each gated mask is the plain one
    with the other half cleared (threshold 0.01, so the plain mask covers both halves and the check bites)."""
    ws, _, _ = trained
    src = next((ws.dataset_dir("synth") / "images").glob("*.png"))
    report = "Patchy opacity in the right lower lobe."

    def mask(name: str, *extra: str) -> np.ndarray:
        res = cli("predict", "learn", "--image", src, "--text", report, "--threshold", "0.01", "--out",
                  tmp_path / f"{name}.png", *extra, "--workdir", ws.root)
        assert res.exit_code == 0, res.output
        return np.asarray(Image.open(tmp_path / f"{name}.png")) > 127

    plain, patient, image = mask("plain"), mask("patient", "--side-gate"), mask("image", "--side-gate",
                                                                             "--laterality", "image")
    half = plain.shape[1] // 2
    assert plain[:, :half].any() and plain[:, half:].any()
    assert np.array_equal(patient[:, :half], plain[:, :half]) and not patient[:, half:].any()
    assert np.array_equal(image[:, half:], plain[:, half:]) and not image[:, :half].any()
    res = cli("predict", "learn", "--image", src, "--text", report, "--side-gate", "--laterality", "left",
              "--out", tmp_path / "bad.png", "--workdir", ws.root)
    assert res.exit_code == 2 and "--laterality 'left'" in res.output and not (tmp_path / "bad.png").exists()
