"""Bad raw input: one-line error naming the file, non-zero exit, nothing half-written."""

import json

import numpy as np
import pytest

from conftest import make_lvit_xlsx, make_sgseg, png


def _corrupt_png(raw):
    (raw / "images" / "train" / "images" / "Sub-S000.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return "Sub-S000.png"


def _empty_png(raw):
    (raw / "images" / "train" / "images" / "Sub-S001.png").write_bytes(b"")
    return "Sub-S001.png"


def _size_mismatch(raw):
    png(raw / "images" / "train" / "masks" / "mask_Sub-S000.png", np.zeros((16, 16), np.uint8))
    return "mask_Sub-S000.png"


def _stray_mask_values(raw):
    m = np.zeros((32, 32), np.uint8)
    m[0, 0], m[1, 1] = 128, 255
    png(raw / "images" / "train" / "masks" / "mask_Sub-S000.png", m)
    return "mask_Sub-S000.png"


def _edit_annotation(raw, fn):
    path = raw / "prompts" / "annotation.json"
    ann = json.loads(path.read_text())
    fn(ann)
    path.write_text(json.dumps(ann))
    return "annotation.json"


def _empty_caption(raw):
    return _edit_annotation(raw, lambda a: a["train"][0].update(caption="  "))


def _duplicate_id(raw):
    return _edit_annotation(raw, lambda a: a["train"].append(
        {"image_path": a["train"][0]["image_path"], "caption": "No pulmonary infection, zero infected areas."}))


def _escaping_path(raw):
    return _edit_annotation(raw, lambda a: a["train"].append({"image_path": "../../etc/mask_x.png", "caption": "x"}))


def _duplicate_file_other_content(raw):
    png(raw / "images" / "train" / "images" / "SUB-S000.png", np.ones((32, 32), np.uint8))
    return "S000.png"


CASES = [_corrupt_png, _empty_png, _size_mismatch, _stray_mask_values, _empty_caption, _duplicate_id,
         _escaping_path, _duplicate_file_other_content]


@pytest.mark.parametrize("breaker", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_bad_raw_input_fails_cleanly(cli, workdir, tmp_path, breaker):
    raw = make_sgseg(tmp_path / "raw")
    named = breaker(raw)
    res = cli("prepare", "qata", "--raw", raw)
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and named in errors[0], res.output
    datasets = workdir / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []


@pytest.mark.parametrize("breaker", [_corrupt_png, _size_mismatch, _stray_mask_values, _empty_caption])
def test_skip_invalid_counts_the_skip(cli, workdir, tmp_path, breaker):
    raw = make_sgseg(tmp_path / "raw")
    breaker(raw)
    res = cli("prepare", "qata", "--raw", raw, "--skip-invalid")
    assert res.exit_code == 0, res.output
    report = json.loads((workdir / "datasets" / "qata" / "prepare_report.json").read_text())
    assert report["counts"]["records"] == 3 and report["counts"]["skipped"] == 1


def test_identical_case_duplicate_is_skipped(cli, workdir, tmp_path):
    raw = make_sgseg(tmp_path / "raw")
    src = raw / "images" / "train" / "images" / "Sub-S000.png"
    (src.parent / "SUB-S000.png").write_bytes(src.read_bytes())
    assert cli("prepare", "qata", "--raw", raw).exit_code == 0
    report = json.loads((workdir / "datasets" / "qata" / "prepare_report.json").read_text())
    assert [s["reason"] for s in report["skipped"]] == ["duplicate of SUB-S000.png"] or \
        [s["reason"] for s in report["skipped"]] == ["duplicate of Sub-S000.png"]


def test_unknown_layout_and_missing_dir(cli, workdir, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hi")
    res = cli("prepare", "qata", "--raw", tmp_path / "junk")
    assert res.exit_code == 2 and "unknown raw layout" in res.output and "junk" in res.output
    res = cli("prepare", "qata", "--raw", tmp_path / "nope")
    assert res.exit_code == 2 and "nope" in res.output and "not found" in res.output
    res = cli("prepare", "qata")
    assert res.exit_code == 2 and "MEDREF_QATA_RAW" in res.output and "prepare sample" in res.output


def test_xlsx_missing_column(cli, workdir, tmp_path):
    from openpyxl import Workbook

    raw = make_lvit_xlsx(tmp_path / "raw")
    wb = Workbook()
    wb.active.append(["Name", "Report"])
    wb.save(raw / "Test_text.xlsx")
    res = cli("prepare", "qata", "--raw", raw)
    assert res.exit_code == 2 and "Test_text.xlsx" in res.output and "missing column" in res.output


def test_xlsx_empty_image_cell_is_named(tmp_path):
    from openpyxl import Workbook

    from medref_cli.errors import MedrefError
    from medref_cli.importers.tables import read_table

    wb = Workbook()
    wb.active.append(["Image", "Description"])
    wb.active.append([None, "Unilateral pulmonary infection, one infected area, upper left lung."])
    wb.save(tmp_path / "t.xlsx")
    with pytest.raises(MedrefError, match=r"t.xlsx: row 2: empty image name"):
        read_table(tmp_path / "t.xlsx")


def test_manifest_schema_and_escape_are_refused(cli, workdir, tmp_path):
    raw = make_sgseg(tmp_path / "raw")
    assert cli("prepare", "qata", "--raw", raw).exit_code == 0
    path = workdir / "datasets" / "qata" / "dataset.json"
    data = json.loads(path.read_text())
    data["records"][0]["image"] = "../../../etc/passwd"
    path.write_text(json.dumps(data))
    res = cli("split", "--dataset", "qata", "--labeled", "50%")
    assert res.exit_code == 2 and "escapes" in res.output
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    res = cli("split", "--dataset", "qata", "--labeled", "50%")
    assert res.exit_code == 2 and "schema version 99" in res.output and "medref prepare" in res.output


def test_16bit_and_rgba_images_are_converted(cli, workdir, tmp_path):
    from PIL import Image

    raw = make_sgseg(tmp_path / "raw")
    img16 = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(img16).save(raw / "images" / "train" / "images" / "Sub-S000.png")
    rgba = np.dstack([np.full((32, 32), 100, np.uint8)] * 3 + [np.full((32, 32), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(raw / "images" / "train" / "images" / "Sub-S001.png")
    assert cli("prepare", "qata", "--raw", raw).exit_code == 0
    report = json.loads((workdir / "datasets" / "qata" / "prepare_report.json").read_text())
    fixes = " ".join(f["fix"] for f in report["fixed"])
    assert "scaled to 8-bit" in fixes and "RGBA converted" in fixes
    out = np.asarray(Image.open(workdir / "datasets" / "qata" / "images" / "Sub-S000.png"))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255


@pytest.mark.parametrize("caption", ["Épanchement pleural gauche — 左肺", "x" * 10_000,
                                     "Bilateral pulmonary infection, many areas."])
def test_odd_captions_are_kept_and_flagged(cli, workdir, tmp_path, caption):
    raw = make_sgseg(tmp_path / "raw")
    _edit_annotation(raw, lambda a: a["train"][0].update(caption=caption))
    assert cli("prepare", "qata", "--raw", raw).exit_code == 0
    m = json.loads((workdir / "datasets" / "qata" / "dataset.json").read_text())
    rec = next(r for r in m["records"] if r["id"] == "Sub-S000")
    assert rec["caption"] == caption and rec["zones"] == [0] * 6
    report = json.loads((workdir / "datasets" / "qata" / "prepare_report.json").read_text())
    assert any("names no zone" in f["fix"] for f in report["fixed"])


def test_csv_with_wrong_delimiter(cli, workdir, tmp_path):
    import shutil

    from conftest import REPO

    raw = tmp_path / "mm"
    shutil.copytree(REPO / "sample_data" / "mosmed-mini", raw)
    table = raw / "Train_text.csv"
    table.write_text(table.read_text().replace(";", "|"))  # `,`, `;` and tab are read; `|` is not
    res = cli("prepare", "mosmed", "--raw", raw)
    assert res.exit_code == 2 and "Train_text.csv" in res.output and "missing column" in res.output


@pytest.mark.parametrize("payload", [b"", b"\x5c\x01\x00\x00garbage", b"\x1f\x8b\x08\x00truncated-gzip"])
def test_corrupt_nifti_volume(cli, workdir, tmp_path, payload):
    raw = tmp_path / "nifti"
    (raw / "images").mkdir(parents=True)
    (raw / "images" / "vol.nii.gz").write_bytes(payload)
    (raw / "captions.csv").write_text("Image;text\nvol_0.png;No pulmonary infection, zero infected areas.\n")
    res = cli("prepare", "mosmed", "--raw", raw)
    assert res.exit_code == 2 and "vol.nii.gz" in res.output
    assert not (workdir / "datasets" / "mosmed").exists()
