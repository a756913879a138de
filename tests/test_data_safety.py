"""Users' data is never damaged and every bad input is one line: the cases a new user and a fault probe hit
(issue 21), one test or more per case. Tests that train a model are marked slow."""

import csv
import errno
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import REPO, image_array, mask_array, png

CAPTION = "Unilateral pulmonary infection, one infected area, lower left lung."


def _error_line(output: str) -> str:
    """The one `error:` line of a failed command (log lines may stand before it; no traceback may)."""
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def _prepare_sample(cli):
    res = cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini")
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-epoch tiny-preset run on the embedded qata-mini (seconds): (workspace, run folder)."""
    from medref_cli.config import TrainRequest
    from medref_cli.stages import pretrain
    from medref_cli.stages.prepare import PrepareConfig
    from medref_cli.stages.prepare import run as prepare
    from medref_cli.workspace import Workspace

    ws = Workspace.resolve(tmp_path_factory.mktemp("safety") / "work")
    prepare(PrepareConfig("qata", REPO / "sample_data" / "qata-mini", "mini"), ws)
    _, run = pretrain.run(TrainRequest(stage="pretrain", method="supervised", labeled="50%", dataset="mini",
                                       preset="tiny", overrides={"train": {"epochs": 2, "steps_per_epoch": 2,
                                                                           "val_max_images": 8}},
                                       name="tiny"), ws)
    return ws, run


# 1. outputs never overwrite an existing file, and never an input even with --overwrite ------------------
@pytest.mark.slow
def test_predict_never_writes_onto_its_input_and_refuses_existing_outputs(tiny_run, cli, tmp_path):
    ws, _ = tiny_run
    image = tmp_path / "x.png"
    image.write_bytes(next((ws.dataset_dir("mini") / "images").glob("*.png")).read_bytes())
    before = image.read_bytes()
    base = ["predict", "tiny", "--image", image, "--text", CAPTION, "--workdir", ws.root]
    res = cli(*base, "--out", image, "--overwrite")
    assert res.exit_code == 2 and "is or holds the input" in res.output and image.read_bytes() == before
    res = cli(*base, "--out", tmp_path / "y.png")
    assert res.exit_code == 0, res.output
    (tmp_path / "m.png").write_bytes(b"the user's own file")
    res = cli(*base, "--out", tmp_path / "m.png")
    assert res.exit_code == 2 and "already exists; pass --overwrite" in res.output
    assert (tmp_path / "m.png").read_bytes() == b"the user's own file"
    assert cli(*base, "--out", tmp_path / "m.png", "--overwrite").exit_code == 0
    assert (tmp_path / "m.png").read_bytes() != b"the user's own file"
    # the overlay name of `--out x` is x_overlay.png: an input called so is never replaced either
    res = cli("predict", "tiny", "--image", tmp_path / "m_overlay.png", "--text", CAPTION, "--out",
              tmp_path / "m.png", "--overwrite", "--workdir", ws.root)
    assert res.exit_code == 2 and "is or holds the input" in res.output


@pytest.mark.slow
def test_batch_predict_out_holding_its_input_is_refused_even_with_overwrite(tiny_run, cli, tmp_path):
    ws, _ = tiny_run
    folder = tmp_path / "cases"
    folder.mkdir()
    for src in sorted((ws.dataset_dir("mini") / "images").glob("*.png"))[:2]:
        (folder / src.name).write_bytes(src.read_bytes())
    kept = sorted(p.name for p in folder.iterdir())
    for out in (folder, tmp_path):
        res = cli("predict", "tiny", "--input", folder, "--text", CAPTION, "--out", out, "--overwrite",
                  "--workdir", ws.root)
        assert res.exit_code == 2 and "is or holds the input" in res.output, res.output
        assert sorted(p.name for p in folder.iterdir()) == kept


@pytest.mark.slow
def test_evaluate_rerun_needs_overwrite(tiny_run, cli):
    ws, run = tiny_run
    args = ["evaluate", "tiny", "--no-ablation", "--overlays", "0", "--workdir", ws.root]
    assert cli(*args).exit_code == 0
    first = (run / "eval-test" / "summary.json").read_text()
    res = cli(*args)
    assert res.exit_code == 2 and "already exists; pass --overwrite" in res.output
    assert (run / "eval-test" / "summary.json").read_text() == first
    assert cli(*args, "--overwrite").exit_code == 0


# 2. a custom table without a split column: val / test hold only images with masks ---------------------------
def _custom_table(root: Path, masked: int, unmasked: int, val_rows: int = 0) -> Path:
    """`masked` images with a mask, then `unmasked` without; the last `val_rows` rows say split=val."""
    lines = ["image,text,mask,split"]
    for i in range(masked + unmasked):
        png(root / "img" / f"c{i}.png", image_array(i))
        mask = f"m/c{i}.png" if i < masked else ""
        if mask:
            png(root / mask, mask_array(i % 8))
        lines.append(f"img/c{i}.png,\"{CAPTION}\",{mask}," + ("val" if i >= masked + unmasked - val_rows else ""))
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root / "cases.csv"


def test_split_of_a_partly_labelled_table_puts_only_masked_images_in_val_and_test(cli, workdir, tmp_path):
    table = _custom_table(tmp_path / "raw", masked=12, unmasked=20)
    assert cli("prepare", "custom", "--table", table).exit_code == 0
    res = cli("split", "-d", "cases", "-l", "50%")
    assert res.exit_code == 0, res.output
    spec = json.loads(next((workdir / "splits").glob("cases-*.json")).read_text())
    masked = {f"c{i}" for i in range(12)}
    assert spec["val"] and spec["test"] and set(spec["val"]) | set(spec["test"]) <= masked
    assert set(spec["train_unlabeled"]) >= {f"c{i}" for i in range(12, 32)}  # the mask-less ones are kept


def test_split_says_how_many_val_images_without_a_mask_it_left_out(cli, workdir, tmp_path):
    table = _custom_table(tmp_path / "raw", masked=12, unmasked=20, val_rows=5)
    assert cli("prepare", "custom", "--table", table).exit_code == 0
    res = cli("split", "-d", "cases", "-l", "50%")
    assert res.exit_code == 0 and "5 val/test images without a mask left out" in res.output, res.output
    spec = json.loads(next((workdir / "splits").glob("cases-*.json")).read_text())
    assert not {f"c{i}" for i in range(27, 32)} & {i for part in ("train_labeled", "train_unlabeled", "val", "test")
                                                  for i in spec[part]}


def test_training_on_a_table_with_no_masked_image_to_hold_out_is_one_line(cli, workdir, tmp_path):
    table = _custom_table(tmp_path / "raw", masked=1, unmasked=6)
    assert cli("prepare", "custom", "--table", table).exit_code == 0
    res = cli("pretrain", "-d", "cases", "-l", "100%", "--preset", "tiny")
    assert res.exit_code == 2 and "mask" in res.output and "Traceback" not in res.output, res.output
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir())


def test_an_old_split_with_unmasked_val_images_is_refused_before_a_run_exists(cli, workdir, tmp_path):
    table = _custom_table(tmp_path / "raw", masked=12, unmasked=20)
    assert cli("prepare", "custom", "--table", table).exit_code == 0
    assert cli("split", "-d", "cases", "-l", "50%").exit_code == 0
    path = next((workdir / "splits").glob("cases-*.json"))
    spec = json.loads(path.read_text())
    spec["train_unlabeled"].remove("c20")  # mask-less: the split rule before the fix could draw it as val
    spec["val"].append("c20")
    path.write_text(json.dumps(spec))
    res = cli("pretrain", "-d", "cases", "-l", "50%", "--preset", "tiny")
    assert res.exit_code == 2 and "val image(s) have no mask" in res.output, res.output
    assert not (workdir / "runs").exists()


@pytest.mark.slow
def test_pretrain_on_a_partly_labelled_table_without_split_column_trains(cli, workdir, tmp_path):
    table = _custom_table(tmp_path / "raw", masked=12, unmasked=20)
    assert cli("prepare", "custom", "--table", table).exit_code == 0
    res = cli("pretrain", "-d", "cases", "-l", "100%", "--preset", "tiny", "--epochs", "1")
    assert res.exit_code == 0, res.output
    assert json.loads((workdir / "runs" / "pretrain-cases-100pct-s42" / "run.json").read_text())["status"] \
        == "finished"


# 3. laterality: free-text reports name the patient's side ---------------------------------------------------
def test_patient_laterality_puts_a_right_lobe_on_the_image_left():
    import torch

    from medref_cli.report_zones import caption_zones
    from medref_cli.zone_masks import side_mask

    zones, known, _ = caption_zones("Right lower lobe consolidation.", "patient")
    assert known and zones == [0, 0, 1, 0, 0, 0]
    assert caption_zones("Right lower lobe consolidation.", "image")[0] == [0, 0, 0, 0, 0, 1]
    assert caption_zones(CAPTION, "patient")[0] == [0, 0, 1, 0, 0, 0]  # templates keep their image sides
    keep = side_mask(torch.tensor([zones]), 8, 8)[0, 0]
    assert keep[:, :4].all() and not keep[:, 4:].any()  # the side gate keeps the lesion's (image-left) half


def test_t_patchmix_ignores_a_phrase_that_contradicts_the_zone_vector():
    import torch

    from medref_cli.semi.t_patchmix import phrases_agree

    zones = torch.tensor([[0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0]])
    texts = ["Opacity in the lower right lung.", CAPTION]  # patient-side words vs the image-space vector
    assert phrases_agree(texts, zones).tolist() == [False, True]


def test_predictions_csv_names_image_sides():
    from medref_cli.stages.predict import ZONE_COLUMNS

    assert all(c.startswith(("image-left", "image-right")) for c in ZONE_COLUMNS)


def test_laterality_changes_the_dataset_hash_only_for_patient():
    from medref_cli.artifacts import DatasetManifest

    m = DatasetManifest("d", "custom", "", "t", [])
    image_hash = m.compute_hash()
    m.laterality = "patient"
    assert m.compute_hash() != image_hash


# 4. a huge image is refused from its header, with --skip-invalid honoured -----------------------------------
def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height (a few hundred bytes; a decoder would allocate it all)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12000, 20000])
def test_huge_image_is_named_and_skippable(cli, workdir, tmp_path, side):
    table = _custom_table(tmp_path / "raw", masked=3, unmasked=0)
    _png_header_only(tmp_path / "raw" / "img" / "huge.png", side, side)
    table.write_text(table.read_text() + f"img/huge.png,\"{CAPTION}\",\n")
    res = cli("prepare", "custom", "--table", table)
    assert res.exit_code == 2 and "huge.png" in res.output and "pixel limit" in res.output.replace("-", " ")
    assert "Traceback" not in res.output and not (workdir / "datasets" / "cases").exists()
    res = cli("prepare", "custom", "--table", table, "--skip-invalid")
    assert res.exit_code == 0 and "skipped 1" in res.output, res.output


# 5. captions over several lines, with control characters -----------------------------------------------------
def test_multi_line_csv_captions_keep_their_words_apart(cli, workdir, tmp_path):
    root = tmp_path / "raw"
    png(root / "a.png", image_array(0))
    with (root / "cases.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "text"])
        w.writerow(["a.png", "Opacity in the left\nlower\tzone,\x00 right\u200b base\x07."])
    assert cli("prepare", "custom", "--table", root / "cases.csv", "--laterality", "image").exit_code == 0
    rec = json.loads((workdir / "datasets" / "cases" / "dataset.json").read_text())["records"][0]
    assert rec["caption"] == "Opacity in the left lower zone, right base."
    assert rec["zones"] == [0, 0, 1, 0, 0, 1]


def test_normalise_caption_table():
    from medref_cli.zones import normalise_caption

    assert normalise_caption("left\nlower") == "left lower"
    assert normalise_caption("a\r\n\tb\x0bc\x1fd") == "a b c d"
    assert normalise_caption("zero\u200bwidth\ufeff") == "zero width"
    assert normalise_caption("end..") == "end."
    # issue 36: a pasted colour code goes whole; a zero-width space keeps two words apart, and the zones survive
    from medref_cli.zones import parse_zones

    assert normalise_caption("\x1b[31mleft\x1b[0m lung") == "left lung"
    assert normalise_caption("\x1b[1;38;5;196mlower\x1b[m left lung") == "lower left lung"
    assert normalise_caption("\x1b]0;title\x07upper right lung") == "upper right lung"
    assert normalise_caption("right\u200blung") == "right lung"
    assert parse_zones(normalise_caption("\x1b[31mlower left lung\x1b[0m")) == parse_zones("lower left lung")
    assert parse_zones(normalise_caption("lower right\u200blung")) == parse_zones("lower right lung")
    assert any(parse_zones("lower right lung"))


# 6. concurrent writers: a run's lock is held before anything is removed; temp folders are per process --------
def test_overwrite_of_a_run_held_by_a_live_process_removes_nothing(tmp_path):
    from medref_cli.errors import MedrefError
    from medref_cli.training.setup import _claim_new_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_latest.pt").write_bytes(b"weights of the live run")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(str(holder.pid))
        with pytest.raises(MedrefError, match=f"in use by process {holder.pid}"):
            _claim_new_run(run, overwrite=True)
        assert (run / "checkpoint_latest.pt").read_bytes() == b"weights of the live run"
    finally:
        holder.kill()
        holder.wait()
    _claim_new_run(run, overwrite=True)  # the holder is gone: taken over, emptied, locked by us
    assert [p.name for p in run.iterdir()] == [".lock"] and (run / ".lock").read_text() == str(os.getpid())


def test_a_new_run_is_locked_from_its_creation(tmp_path):
    from medref_cli.training.setup import _claim_new_run

    run = tmp_path / "runs" / "new"
    _claim_new_run(run, overwrite=False)
    assert (run / ".lock").read_text() == str(os.getpid())


def test_a_live_writers_temp_folder_survives_another_writer(tmp_path):
    from medref_cli.errors import MedrefError
    from medref_cli.workspace import staged_dir

    final = tmp_path / "preds"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".preds.{holder.pid}.abcd.tmp"
        live.mkdir()
        dead = tmp_path / ".preds.999999999.abcd.tmp"
        dead.mkdir()
        with staged_dir(final, overwrite=False) as tmp:
            (tmp / "a").write_text("mine")
        assert live.is_dir() and not dead.exists() and (final / "a").read_text() == "mine"
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(MedrefError, match="written by another process meanwhile"):  # a writer finished first
        with staged_dir(tmp_path / "late", overwrite=False) as tmp:
            (tmp_path / "late").mkdir()
            (tmp_path / "late" / "theirs").write_text("theirs")
    assert (tmp_path / "late" / "theirs").read_text() == "theirs"
    assert not list(tmp_path.glob(".late.*"))


# 7. links out of the table's folder ---------------------------------------------------------------------------
def test_symlink_out_of_the_table_folder_is_refused(cli, workdir, tmp_path):
    from medref_cli.errors import MedrefError
    from medref_cli.stages.predict import BatchPredictConfig, batch_inputs

    secret = png(tmp_path / "outside" / "secret.png", image_array(3))
    table = _custom_table(tmp_path / "raw", masked=2, unmasked=0)
    (tmp_path / "raw" / "img" / "link.png").symlink_to(secret)
    table.write_text(table.read_text() + f"img/link.png,\"{CAPTION}\",\n")
    res = cli("prepare", "custom", "--table", table)
    assert res.exit_code == 2 and "link.png" in res.output and "outside the table's folder" in res.output
    assert not (workdir / "datasets" / "cases").exists()
    predict_table = tmp_path / "raw" / "predict.csv"
    predict_table.write_text(f"image,text\nimg/link.png,{CAPTION.replace(',', '')}\n")
    with pytest.raises(MedrefError, match="outside the table's folder"):
        batch_inputs(BatchPredictConfig("run", predict_table, tmp_path / "o"))
    predict_table.write_text(f"image,text\n../outside/secret.png,{CAPTION.replace(',', '')}\n")
    with pytest.raises(MedrefError, match="leaves the table's folder"):
        batch_inputs(BatchPredictConfig("run", predict_table, tmp_path / "o"))


# 8. the whole config is checked before anything is created ----------------------------------------------------
@pytest.mark.parametrize(("yaml_text", "message"), [
    ("trian:\n  epochs: 3\n", "unknown section 'trian'"),
    ("train:\n  epochs: ten\n", "train.epochs: 'ten' is not int"),
    ("train:\n  lr: -1\n", "train.lr: -1 must be > 0"),
    ("train:\n  batch_size: 0\n", "train.batch_size: 0 must be >= 1"),
    ("model:\n  encoder_widths: [8, 16]\n", "model.encoder_widths"),
    ("method:\n  mix_prob: 2\n", "method.mix_prob: 2 must be in [0, 1]"),
    ("train: 5\n", "section 'train' must be a mapping"),
    # issue 36: sizes the network cannot take, and numbers that are not finite
    ("model:\n  image_size: 33\n", "model.image_size: 33 must be a multiple of 32"),
    ("model:\n  image_size: 7\n", "model.image_size: 7 must be a multiple of 32"),
    ("model:\n  image_size: 15\n", "model.image_size: 15 must be a multiple of 32"),
    ("model:\n  image_size: 100000\n", "model.image_size: 100000 must be a multiple of 32 between 32 and 2048"),
    ("train:\n  lr: .inf\n", "train.lr: inf must be a finite number"),
    ("train:\n  lr: .nan\n", "train.lr: nan must be a finite number"),
    ("method:\n  unsup_weight: .inf\n", "method.unsup_weight: inf must be a finite number"),
])
def test_bad_config_is_one_line_and_creates_nothing(cli, workdir, tmp_path, yaml_text, message):
    _prepare_sample(cli)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    res = cli("semi-train", "-d", "qata", "-l", "25%", "--preset", "tiny", "--config", cfg)
    assert res.exit_code == 2 and message in _error_line(res.output), res.output
    assert not (workdir / "runs").exists() and not (workdir / "splits").exists()


# 9. a full disk or an unwritable workdir: one line naming the path, exit 2, nothing half-written ---------------
def test_full_disk_during_prepare_is_one_line_and_leaves_nothing(cli, workdir, monkeypatch):
    import medref_cli.workspace as workspace

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(workspace.os, "fsync", full)
    res = cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini")
    line = _error_line(res.output)
    assert res.exit_code == 2 and "No space left on device" in line and "dataset" in line, res.output
    assert not (workdir / "datasets" / "qata").exists() and not list((workdir / "datasets").glob(".*"))


def test_workdir_that_cannot_be_a_folder_is_one_line(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini", "--workdir", blocker / "work")
    assert res.exit_code == 2 and str(blocker) in _error_line(res.output)


# 10. a torn metrics line and a lost epoch row are repaired on resume ----------------------------------------------
def test_torn_metrics_line_and_lost_row_are_repaired(tmp_path):
    from medref_cli.errors import MedrefError
    from medref_cli.training.run_dir import read_metrics, restore_metrics

    rows = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 2, "lo')
    assert read_metrics(tmp_path) == rows
    restore_metrics(tmp_path, 2, {"epoch": 2, "loss": 0.25})  # killed after the checkpoint, before the append
    assert read_metrics(tmp_path) == [*rows, {"epoch": 2, "loss": 0.25}]
    assert path.read_text().endswith("\n")
    path.write_text('{"epoch": 0}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(MedrefError, match="line 2 is not a JSON row"):
        read_metrics(tmp_path)


@pytest.mark.slow
def test_resume_after_a_kill_between_checkpoint_and_metrics(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("MEDREF_WORKDIR", str(tmp_path / "w"))
    _prepare_sample(cli)
    args = ["pretrain", "-d", "qata", "-l", "25%", "--preset", "tiny", "--name", "r"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  steps_per_epoch: 2\n  val_max_images: 8\n")
    assert cli(*args, "--epochs", "3", "--config", cfg).exit_code == 0
    run = tmp_path / "w" / "runs" / "r"
    full = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(full[:2]) + '\n{"epoch": 2, "lo')  # row 2 lost, torn
    res = cli(*args, "--epochs", "4", "--config", cfg, "--resume")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3] and rows[2] == json.loads(full[2])


# 11. artifacts follow the umask -------------------------------------------------------------------------------------
def test_artifacts_follow_the_umask(tmp_path):
    from medref_cli.workspace import staged_dir, write_bytes_atomic

    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "a.json", b"{}")
        with staged_dir(tmp_path / "folder", overwrite=False) as tmp:
            (tmp / "x").write_text("x")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
        os.umask(0o077)
        write_bytes_atomic(tmp_path / "b.json", b"{}")
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# 12. evaluating a run that is still training says so and records the epoch -----------------------------------------
@pytest.mark.slow
def test_evaluate_during_training_warns_and_records_the_epoch(tiny_run, cli):
    import torch

    ws, run = tiny_run
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(str(holder.pid))
        res = cli("evaluate", "tiny", "--split", "val", "--no-ablation", "--overlays", "0", "--workdir", ws.root)
    finally:
        holder.kill()
        holder.wait()
        (run / ".lock").unlink()
    assert res.exit_code == 0, res.output
    assert "still training" in res.output
    summary = json.loads((run / "eval-val" / "summary.json").read_text())
    epoch = torch.load(run / "checkpoint_best.pt", weights_only=True)["epoch"]
    assert summary["run_in_progress"] is True and summary["checkpoint_epoch"] == epoch


# issue 36: no command deletes what it did not make, and every value a user types is checked ----------------
def _input_folder(ws, tmp_path, n=2):
    folder = tmp_path / "cases"
    folder.mkdir(exist_ok=True)
    for src in sorted((ws.dataset_dir("mini") / "images").glob("*.png"))[:n]:
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.slow
def test_predict_overwrite_never_replaces_a_run_the_workspace_or_the_current_folder(tiny_run, cli, tmp_path,
                                                                                   monkeypatch):
    ws, run = tiny_run
    folder = _input_folder(ws, tmp_path)
    before = _tree(ws.root)
    base = ["predict", "tiny", "--input", folder, "--text", CAPTION, "--workdir", ws.root]
    for out, message in ((run, "inside"), (ws.root, "not a folder `medref predict --input` made"),
                         (ws.runs, "not a folder `medref predict --input` made")):
        res = cli(*base, "--out", out, "--overwrite")
        assert res.exit_code == 2 and message in _error_line(res.output), res.output
    res = cli("predict", "tiny", "--image", next(folder.iterdir()), "--text", CAPTION, "--workdir", ws.root,
              "--out", run / "curve.png", "--overwrite")
    assert res.exit_code == 2 and "inside" in _error_line(res.output)
    assert _tree(ws.root) == before
    monkeypatch.chdir(tmp_path / "cases")
    res = cli(*base, "--out", ".", "--overwrite")
    assert res.exit_code == 2 and "holds the input" in _error_line(res.output)
    here = tmp_path / "here"
    (here / "notes").mkdir(parents=True)
    monkeypatch.chdir(here)
    res = cli(*base, "--out", ".", "--overwrite")
    assert res.exit_code == 2 and "current folder" in _error_line(res.output)
    assert _tree(here) == ["notes"]  # no `..<pid>.*.old` left behind
    # a folder of the user's with something else in it is not replaced; a previous prediction folder is
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    res = cli(*base, "--out", mine, "--overwrite")
    assert res.exit_code == 2 and (mine / "thesis.tex").read_text() == "years of work"
    out = tmp_path / "pred"
    assert cli(*base, "--out", out).exit_code == 0
    res = cli(*base, "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"masks", "overlays", "predictions.csv"}


@pytest.mark.slow
@pytest.mark.parametrize(("option", "value", "message"), [
    ("--batch-size", "-1", "--batch-size -1: must be at least 1"),
    ("--batch-size", "0", "--batch-size 0: must be at least 1"),
    ("--threshold", "2", "--threshold 2.0: must lie strictly between 0 and 1"),
    ("--threshold", "-1", "--threshold -1.0: must lie strictly between 0 and 1"),
    ("--threshold", "nan", "--threshold nan: must lie strictly between 0 and 1"),
])
def test_predict_refuses_batch_sizes_below_1_and_thresholds_outside_0_1(tiny_run, cli, tmp_path, option, value,
                                                                         message):
    ws, _ = tiny_run
    folder = _input_folder(ws, tmp_path)
    res = cli("predict", "tiny", "--input", folder, "--text", CAPTION, "--out", tmp_path / "o", option, value,
              "--workdir", ws.root)
    assert res.exit_code == 2 and message in _error_line(res.output)
    assert not (tmp_path / "o").exists()
    if option == "--threshold":
        res = cli("predict", "tiny", "--image", next(folder.iterdir()), "--text", CAPTION, "--out",
                  tmp_path / "m.png", option, value, "--workdir", ws.root)
        assert res.exit_code == 2 and message in _error_line(res.output) and not (tmp_path / "m.png").exists()


@pytest.mark.slow
def test_predict_folder_refuses_a_link_leading_out_of_it(tiny_run, cli, tmp_path):
    ws, _ = tiny_run
    folder = _input_folder(ws, tmp_path)
    outside = tmp_path / "outside.png"
    outside.write_bytes(next(folder.iterdir()).read_bytes())
    (folder / "zz.png").symlink_to(outside)
    res = cli("predict", "tiny", "--input", folder, "--text", CAPTION, "--out", tmp_path / "o", "--workdir", ws.root)
    assert res.exit_code == 2 and "zz.png is a link to" in _error_line(res.output) and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_predict_one_image_onto_a_folder_names_the_folder(tiny_run, cli, tmp_path):
    ws, _ = tiny_run
    folder = _input_folder(ws, tmp_path)
    target = tmp_path / "bdir"
    target.mkdir()
    res = cli("predict", "tiny", "--image", next(folder.iterdir()), "--text", CAPTION, "--out", target,
              "--overwrite", "--workdir", ws.root)
    line = _error_line(res.output)
    assert res.exit_code == 2 and f"--out {target} is a folder; --image writes one file" in line and ".tmp" not in line


def test_a_seed_numpy_and_torch_cannot_take_is_refused_before_the_split(cli, workdir):
    _prepare_sample(cli)
    big = "99999999999999999999"
    res = cli("split", "-d", "qata", "-l", "25%", "--seed", big)
    assert res.exit_code == 2 and f"--seed {big}: must be a whole number in [0, 4294967295]" in _error_line(res.output)
    res = cli("pretrain", "-d", "qata", "-l", "25%", "--preset", "tiny", "--seed", big)
    assert res.exit_code == 2 and "must be" in _error_line(res.output)
    res = cli("split", "-d", "qata", "-l", "25%", "--seed", "-1")
    assert res.exit_code == 2
    assert not (workdir / "runs").exists() and not (workdir / "splits").exists()


@pytest.mark.parametrize(("seeds", "message"), [("a,b", "'a' is not a whole number"), ("0,,1", "'' is not"),
                                                ("0,-3", "--seeds -3: must be")])
def test_table1_seeds_that_are_not_seeds_are_one_line(cli, workdir, seeds, message):
    res = cli("table1", "--profile", "sample", "--seeds", seeds, "--list")
    assert res.exit_code == 2 and message in _error_line(res.output)


def test_a_loss_that_is_not_finite_stops_training_naming_the_epoch(tmp_path):
    from medref_cli.errors import MedrefError
    from medref_cli.training.loop import check_finite_loss

    check_finite_loss({"epoch": 3, "loss_sup": 0.4, "loss": 0.5}, tmp_path)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(MedrefError, match=r"epoch 7: loss_sup is (nan|inf) \(not finite\): training diverged"):
            check_finite_loss({"epoch": 7, "loss_sup": bad, "w_u": 0.0}, tmp_path)


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_records_failed(cli, workdir, monkeypatch):
    """A step that returns NaN (here forced) ends the run at that epoch: one line, exit 2, status failed."""
    from medref_cli.training import method as method_module

    real = method_module.Supervised.step

    def nan_step(self, model, batch_l, batch_u, epoch):
        loss, logs = real(self, model, batch_l, batch_u, epoch)
        if epoch == 1:
            loss = loss * float("nan")
            logs = {**logs, "loss_sup": float("nan")}
        return loss, logs

    monkeypatch.setattr(method_module.Supervised, "step", nan_step)
    _prepare_sample(cli)
    res = cli("pretrain", "-d", "qata", "-l", "25%", "--preset", "tiny", "--epochs", "4", "--name", "nan")
    assert res.exit_code == 2 and "epoch 1: loss_sup is nan" in _error_line(res.output), res.output
    run = workdir / "runs" / "nan"
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 0 only


@pytest.mark.slow
def test_pseudo_label_of_a_run_with_every_mask_is_one_line_and_writes_nothing(cli, workdir):
    _prepare_sample(cli)
    res = cli("pretrain", "-d", "qata", "-l", "100%", "--preset", "tiny", "--epochs", "1", "--name", "full")
    assert res.exit_code == 0, res.output
    res = cli("pseudo-label", "full")
    assert res.exit_code == 2 and "no unlabelled images in this run's split" in _error_line(res.output)
    assert not [p for p in (workdir / "runs" / "full").iterdir() if "pseudo" in p.name]


@pytest.mark.slow
def test_a_kill_between_the_two_renames_of_a_replace_restores_the_old_copy(cli, workdir):
    """SIGKILL after `prepare --overwrite` moved the old dataset aside and before the new one took its name: the
    next command puts the old copy back; no temp name is ever listed as a dataset."""
    _prepare_sample(cli)
    old_manifest = (workdir / "datasets" / "qata" / "dataset.json").read_text()
    code = f"""
import os, signal
from pathlib import Path
import medref_cli.workspace as w
real = os.replace
def replace(src, dst):
    real(src, dst)
    if Path(src).name == "qata" and Path(src).parent.name == "datasets":  # the old copy set aside: die here
        os.kill(os.getpid(), signal.SIGKILL)
w.os.replace = replace
from medref_cli.cli.app import app
app(["prepare", "qata", "--raw", {str(REPO / "sample_data" / "qata-mini")!r}, "--overwrite", "--size", "32"])
"""
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MEDREF_WORKDIR": str(workdir)},
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert not (workdir / "datasets" / "qata").exists()  # the state the kill left
    res = cli("split", "-d", "nope", "-l", "25%")
    assert res.exit_code == 2 and "(prepared: qata)" in res.output and ".tmp" not in res.output, res.output
    assert (workdir / "datasets" / "qata" / "dataset.json").read_text() == old_manifest
    assert cli("split", "-d", "qata", "-l", "25%").exit_code == 0
    res = cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini", "--overwrite")
    assert res.exit_code == 0 and not [p for p in (workdir / "datasets").iterdir() if p.name.startswith(".")]


def test_an_edited_dataset_json_is_refused_on_load(cli, workdir):
    _prepare_sample(cli)
    path = workdir / "datasets" / "qata" / "dataset.json"
    data = json.loads(path.read_text())
    for edit in (lambda d: d.update(dataset_hash="0" * 64),
                 lambda d: d["records"][0].update(caption="Bilateral pulmonary infection, all left lung.")):
        bad = json.loads(json.dumps(data))
        edit(bad)
        path.write_text(json.dumps(bad))
        res = cli("split", "-d", "qata", "-l", "25%")
        assert res.exit_code == 2 and "no longer match its dataset_hash" in _error_line(res.output)
    assert not (workdir / "splits").exists()
    path.write_text(json.dumps(data))
    assert cli("split", "-d", "qata", "-l", "25%").exit_code == 0


@pytest.mark.slow
def test_evaluate_names_a_prepared_image_that_was_swapped(cli, workdir):
    _prepare_sample(cli)
    res = cli("pretrain", "-d", "qata", "-l", "25%", "--preset", "tiny", "--epochs", "1", "--name", "r")
    assert res.exit_code == 0, res.output
    split = json.loads((workdir / "runs" / "r" / "split.json").read_text())
    images = workdir / "datasets" / "qata" / "images"
    victim, other = images / f"{split['test'][0]}.png", images / f"{split['train_labeled'][0]}.png"
    victim.write_bytes(other.read_bytes())
    res = cli("evaluate", "r")
    assert res.exit_code == 2 and f"{victim}: changed since `medref prepare`" in _error_line(res.output)
    assert not (workdir / "runs" / "r" / "eval-test").exists()


@pytest.mark.slow
def test_init_fixes_the_model_a_conflicting_preset_or_encoder_is_refused(tiny_run, cli):
    ws, _ = tiny_run
    base = ["semi-train", "-d", "mini", "-l", "50%", "--init", "tiny", "--epochs", "1", "--workdir", ws.root]
    before = sorted(p.name for p in ws.runs.iterdir())
    res = cli(*base, "--preset", "cpu")
    assert res.exit_code == 2 and "--preset cpu: --init tiny was trained with preset tiny" in _error_line(res.output)
    res = cli(*base, "--encoder", "unet")
    assert res.exit_code == 2 and "model.encoder 'unet': --init tiny has 'convnext'" in _error_line(res.output)
    assert sorted(p.name for p in ws.runs.iterdir()) == before
    res = cli(*base, "--name", "from-tiny", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "preset" not in json.loads((ws.runs / "from-tiny" / "run.json").read_text())  # status only
    from medref_cli.config import load_run_config

    assert load_run_config(ws.runs / "from-tiny").preset == "tiny"


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (["--encoder", "nope"], "model.encoder 'nope': choose one of"),
    (["--text-encoder", "/nowhere/encoder"], "text encoder '/nowhere/encoder'"),
    (["--device", "cuda"], "--device cuda: CUDA is not available"),
    (["--pseudo-labels", "/nowhere/pl"], "--pseudo-labels /nowhere/pl: not a folder"),
    (["--init", "no-such-run"], "no-such-run"),
])
def test_preflight_a_typo_leaves_no_run_and_no_split_and_the_fixed_command_runs(cli, workdir, args, message):
    """Issue 34: every name and resource is checked before anything is written; the corrected command then
    runs without --overwrite (no half-made run to trip over)."""
    import torch

    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _prepare_sample(cli)
    base = ["semi-train", "-d", "qata", "-l", "25%", "--preset", "tiny", "--epochs", "1", "--no-progress"]
    res = cli(*base, *args)
    assert res.exit_code == 2 and message in _error_line(res.output), res.output
    assert not (workdir / "runs").exists() and not (workdir / "splits").exists()
    assert cli(*base).exit_code == 0
