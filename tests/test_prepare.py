import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA, make_guidedecoder, make_lvit_xlsx, make_sgseg, png
from medref_cli.artifacts import load_manifest
from medref_cli.importers.layouts import detect


def _manifest(workdir, name):
    return load_manifest(workdir / "datasets" / name)


def test_sgseg_layout_case_insensitive(cli, workdir, tmp_path):
    raw = make_sgseg(tmp_path / "raw")
    res = cli("prepare", "qata", "--raw", raw)
    assert res.exit_code == 0, res.output
    m = _manifest(workdir, "qata")
    assert m.layout == "sgseg" and len(m.records) == 4
    assert {r.split for r in m.records} == {"train", "val"}
    rec = m.by_id()["Sub-S002"]
    assert rec.zones == [1, 1, 1, 1, 1, 1] and rec.caption.endswith("right lung.")
    mask = np.asarray(Image.open(workdir / "datasets" / "qata" / rec.mask))
    assert set(np.unique(mask)) <= {0, 255}


def test_lvit_xlsx_layout_merges_rgb_mask(cli, workdir, tmp_path):
    raw = make_lvit_xlsx(tmp_path / "raw")
    res = cli("prepare", "qata", "--raw", raw, "--name", "lv")
    assert res.exit_code == 0, res.output
    m = _manifest(workdir, "lv")
    assert m.layout == "lvit" and len(m.records) == 6
    assert sorted({r.split for r in m.records}) == ["test", "train", "val"]
    report = json.loads((workdir / "datasets" / "lv" / "prepare_report.json").read_text())
    assert any("merged to one channel" in f["fix"] for f in report["fixed"])


def test_guidedecoder_layout(cli, workdir, tmp_path):
    raw = make_guidedecoder(tmp_path / "raw")
    assert cli("prepare", "qata", "--raw", raw, "--size", "16").exit_code == 0
    m = _manifest(workdir, "qata")
    assert m.layout == "guidedecoder" and len(m.records) == 8
    assert all(r.height == 16 and r.width == 16 for r in m.records)


def test_unmatched_rows_are_reported_not_fatal(cli, workdir, tmp_path):
    raw = make_sgseg(tmp_path / "raw")
    png(raw / "images" / "train" / "images" / "orphan.png", np.zeros((32, 32), np.uint8))
    ann = json.loads((raw / "prompts" / "annotation.json").read_text())
    ann["train"].append({"image_path": "mask_ghost.png", "caption": "No pulmonary infection, zero infected areas."})
    (raw / "prompts" / "annotation.json").write_text(json.dumps(ann))
    assert cli("prepare", "qata", "--raw", raw).exit_code == 0
    report = json.loads((workdir / "datasets" / "qata" / "prepare_report.json").read_text())
    reasons = sorted(s["reason"].split(" (")[0] for s in report["skipped"])
    assert reasons == ["caption without image", "image without caption"]
    assert report["counts"]["records"] == 4


def test_rerun_needs_overwrite(cli, workdir, tmp_path):
    raw = make_sgseg(tmp_path / "raw")
    assert cli("prepare", "qata", "--raw", raw).exit_code == 0
    res = cli("prepare", "qata", "--raw", raw)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert cli("prepare", "qata", "--raw", raw, "--overwrite").exit_code == 0


def test_mosmed_csv_port_and_sample_layout(cli, workdir):
    from conftest import REPO

    res = cli("prepare", "mosmed", "--raw", REPO / "sample_data" / "mosmed-mini")
    assert res.exit_code == 0, res.output
    m = _manifest(workdir, "mosmed")
    from medref_cli.synthetic import SAMPLE_N

    assert len(m.records) == SAMPLE_N
    assert any(not any(r.zones) for r in m.records)  # "No pulmonary infection" slices
    assert all(r.caption.endswith(".") and not r.caption.endswith("..") for r in m.records)


def test_mosmed_nifti_volumes(cli, workdir, tmp_path):
    raw = tmp_path / "nifti"
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    vol = np.full((24, 20, 3), -1000.0, np.float32)
    vol[4:10, 5:9, 1] = 0.0
    mask = np.zeros((24, 20, 3), np.uint8)
    mask[4:10, 5:9, 1] = 1
    affine = np.diag([0.7, 0.7, 5.0, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), raw / "images" / "study_0001.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), raw / "masks" / "study_0001.nii.gz")
    (raw / "captions.csv").write_text(
        "Image;text\nstudy_0001_1.png;Unilateral pulmonary infection, one infected areas, upper left lung.\n"
        "study_0001_0.png;No pulmonary infection, zero infected areas.\n"
    )
    res = cli("prepare", "mosmed", "--raw", raw)
    assert res.exit_code == 0, res.output
    m = _manifest(workdir, "mosmed")
    assert m.layout == "nifti" and sorted(r.id for r in m.records) == ["study_0001_0", "study_0001_1"]
    rec = m.by_id()["study_0001_1"]
    img = np.asarray(Image.open(workdir / "datasets" / "mosmed" / rec.image))
    msk = np.asarray(Image.open(workdir / "datasets" / "mosmed" / rec.mask)) > 0
    assert img.shape == (20, 24) and msk.sum() == 24
    assert img[msk].min() > img[~msk].max()  # lesion HU 0 is brighter than air after windowing


@pytest.mark.skipif(not (SHARED_DATA / "qata-cov19").is_dir(), reason="../shared/data absent")
def test_real_qata_pairs_every_record(tmp_path):
    scan = detect(SHARED_DATA / "qata-cov19", "qata")
    assert scan.layout == "sgseg"
    assert len(scan.records) == 7145 and not scan.skipped
    assert sum(r.split == "train" for r in scan.records) == 5716
    assert all(r.mask is not None for r in scan.records)
    from medref_cli.stages.prepare import convert

    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for rec in scan.records[::700]:
        record = convert(rec, SHARED_DATA / "qata-cov19", out, None, [])
        assert (record.height, record.width) == (224, 224) and len(record.zones) == 6
