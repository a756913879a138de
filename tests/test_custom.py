"""`medref prepare custom --table`: your own images and reports, every image format, named errors."""

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_dicom import write_dicom

from conftest import image_array, mask_array, png


def _dataset(root):
    img = image_array(1, 32)
    png(root / "img" / "a.png", img)
    Image.fromarray(img.astype(np.uint16) * 200).save(root / "img" / "b16.png")
    Image.fromarray(img).convert("RGB").save(root / "img" / "c.jpg", quality=95)
    Image.fromarray(img).save(root / "img" / "d.tiff")
    write_dicom(root / "img" / "e.dcm", img.astype(np.uint16) * 16, "MONOCHROME1", window=(2048, 4096))
    nib.save(nib.Nifti1Image(img.T[:, ::-1].astype(np.float32), np.eye(4)), root / "img" / "f.nii.gz")
    png(root / "masks" / "a.png", mask_array(1, 32))
    nib.save(nib.Nifti1Image((mask_array(2, 32) > 0).T[:, ::-1].astype(np.uint8), np.eye(4)), root / "masks" / "f.nii")
    rows = [
        ("img/a.png", "Unilateral pulmonary infection, one infected area, lower left lung.", "masks/a.png", "train"),
        ("img/b16.png", "Patchy right lower lobe opacity. No effusion.", "", "train"),
        ("img/c.jpg", "Bibasilar atelectasis.", "", "valid"),
        ("img/d.tiff", "No acute cardiopulmonary abnormality.", "", "test"),
        ("img/e.dcm", "No consolidation in the left lung; RUL nodule.", "", ""),
        ("img/f.nii.gz", "Left upper lobe consolidation.", "masks/f.nii", "train"),
    ]
    lines = ["image\treport\tmask\tsplit"] + ["\t".join(r) for r in rows]
    (root / "cases.tsv").write_text("\n".join(lines) + "\n")
    return root / "cases.tsv"


def test_prepare_custom_every_format_and_report_zones(cli, workdir, tmp_path):
    table = _dataset(tmp_path / "raw")
    res = cli("prepare", "custom", "--table", table)
    assert res.exit_code == 0, res.output
    manifest = json.loads((workdir / "datasets" / "cases" / "dataset.json").read_text())
    recs = {r["id"]: r for r in manifest["records"]}
    assert set(recs) == {"a", "b16", "c", "d", "e", "f"} and manifest["kind"] == "custom"
    assert manifest["laterality"] == "patient"  # the default for free-text reports
    assert recs["a"]["zones"] == [0, 0, 1, 0, 0, 0] and recs["a"]["zones_known"]  # the QaTa template: image sides
    # radiology phrasing names the patient's side, which is the image's other side on a frontal film
    assert recs["b16"]["zones"] == [0, 0, 1, 0, 0, 0]  # right lower lobe -> image-left lower zone
    assert recs["c"]["zones"] == [0, 0, 1, 0, 0, 1] and recs["c"]["split"] == "val"
    assert recs["d"]["zones_known"] is False and recs["d"]["split"] == "test"  # no position: unknown
    assert recs["e"]["zones"] == [1, 0, 0, 0, 0, 0] and recs["e"]["split"] == "train"  # negated left dropped; RUL
    assert recs["f"]["zones"] == [0, 0, 0, 1, 1, 0] and recs["f"]["mask"] and not recs["b16"]["mask"]
    ds = workdir / "datasets" / "cases"
    e = np.asarray(Image.open(ds / recs["e"]["image"]))
    a = np.asarray(Image.open(ds / recs["a"]["image"]))
    assert e.shape == a.shape == (32, 32)
    assert np.corrcoef(e.ravel().astype(float), a.ravel().astype(float))[0, 1] < -0.9  # MONOCHROME1 inverted
    f = np.asarray(Image.open(ds / recs["f"]["mask"]))
    assert (f > 0).sum() == (mask_array(2, 32) > 0).sum()  # the NIfTI label map, in display orientation
    report = json.loads((ds / "prepare_report.json").read_text())
    assert any("unknown" in f["fix"] for f in report["fixed"])


def test_prepare_custom_laterality_image_keeps_the_words_sides(cli, workdir, tmp_path):
    table = _dataset(tmp_path / "raw")
    res = cli("prepare", "custom", "--table", table, "--laterality", "image")
    assert res.exit_code == 0, res.output
    manifest = json.loads((workdir / "datasets" / "cases" / "dataset.json").read_text())
    recs = {r["id"]: r for r in manifest["records"]}
    assert manifest["laterality"] == "image"
    assert recs["a"]["zones"] == [0, 0, 1, 0, 0, 0]  # the template is image sides under either convention
    assert recs["b16"]["zones"] == [0, 0, 0, 0, 0, 1] and recs["e"]["zones"] == [0, 0, 0, 1, 0, 0]
    assert recs["f"]["zones"] == [1, 1, 0, 0, 0, 0]
    res = cli("prepare", "custom", "--table", table, "--name", "x", "--laterality", "radiological")
    assert res.exit_code == 2 and "--laterality 'radiological'" in res.output


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.write_text("image\tmask\nimg/a.png\t\n"), "no text column"),
    (lambda t: t.write_text("image\ttext\nimg/zz.png\tleft lung\n"), "row 2: image 'img/zz.png' not found"),
    (lambda t: t.write_text("image\ttext\n../x.png\tleft lung\n"), "leaves the table's folder"),
    (lambda t: t.write_text("image\ttext\tsplit\nimg/a.png\tleft lung\tholdout\n"), "split 'holdout'"),
    (lambda t: ((t.parent / "img" / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"junk"),
                t.write_text("image\ttext\nimg/bad.dcm\tleft lung\n")), "bad.dcm: unreadable DICOM"),
    # issue 36: a row whose mask is its own image; a UTF-16 table without its byte-order mark
    (lambda t: t.write_text("image\ttext\tmask\nimg/a.png\tleft lung\timg/a.png\n"),
     "row 2: the mask 'img/a.png' is the image file itself"),
    (lambda t: t.write_bytes("image\ttext\nimg/a.png\tleft lung\n".encode("utf-16-le")),
     "holds NUL bytes (UTF-16 without a byte-order mark?); save the table as UTF-8"),
])
def test_prepare_custom_bad_input_is_named(cli, workdir, tmp_path, edit, message):
    table = _dataset(tmp_path / "raw")
    edit(table)
    res = cli("prepare", "custom", "--table", table)
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (workdir / "datasets" / "cases").exists()


def test_prepare_custom_jpeg_masks_are_thresholded_and_dim_ones_refused(cli, workdir, tmp_path):
    raw = tmp_path / "raw"
    png(raw / "img" / "a.png", image_array(1, 64))
    truth = np.zeros((64, 64), np.uint8)
    truth[10:40, 8:30] = 255
    (raw / "masks").mkdir()
    Image.fromarray(truth).save(raw / "masks" / "a.jpg", quality=75)
    assert len(np.unique(np.asarray(Image.open(raw / "masks" / "a.jpg")))) > 2  # the compression left grey values
    (raw / "cases.csv").write_text("image,text,mask\nimg/a.png,Left lower lung.,masks/a.jpg\n")
    res = cli("prepare", "custom", "--table", raw / "cases.csv")
    assert res.exit_code == 0, res.output
    ds = workdir / "datasets" / "cases"
    got = np.asarray(Image.open(ds / "masks" / "a.png")) > 0
    assert (got == (truth > 0)).mean() > 0.99
    report = json.loads((ds / "prepare_report.json").read_text())
    assert any("JPEG mask thresholded at 128" in f["fix"] for f in report["fixed"])

    Image.fromarray((truth > 0).astype(np.uint8) * 40).save(raw / "masks" / "a.jpg", quality=75)  # a dim mask
    assert np.asarray(Image.open(raw / "masks" / "a.jpg")).max() < 128
    res = cli("prepare", "custom", "--table", raw / "cases.csv", "--name", "small")
    assert res.exit_code == 2 and "a.jpg: mask values beyond" in res.output and "save it as PNG" in res.output
    assert not (workdir / "datasets" / "small").exists()


def _folders_table(raw, rows, header="image,text,mask"):
    (raw / "cases.csv").write_text("\n".join([header, *rows]) + "\n")
    return raw / "cases.csv"


def test_prepare_custom_ids_shared_file_names_take_their_path(cli, workdir, tmp_path):
    raw = tmp_path / "raw"
    for k, folder in enumerate(("patient1/study", "patient2/study")):
        png(raw / folder / "image.png", image_array(k, 32))
        png(raw / folder / "label.png", mask_array(k, 32))
    (raw / "uids").mkdir()
    write_dicom(raw / "uids" / "1.2.840.10008.1", image_array(5, 32).astype(np.uint16) * 16, "MONOCHROME2")
    write_dicom(raw / "uids" / "1.2.840.10008.2", image_array(6, 32).astype(np.uint16) * 16, "MONOCHROME2")
    table = _folders_table(raw, [
        "patient1/study/image.png,Left lower lung.,patient1/study/label.png",
        "patient2/study/image.png,Right upper lung.,patient2/study/label.png",
        "uids/1.2.840.10008.1,Left lung.,", "uids/1.2.840.10008.2,Right lung.,"])
    res = cli("prepare", "custom", "--table", table)
    assert res.exit_code == 0, res.output
    ds = workdir / "datasets" / "cases"
    recs = {r["id"]: r for r in json.loads((ds / "dataset.json").read_text())["records"]}
    assert set(recs) == {"patient1__study__image", "patient2__study__image", "1.2.840.10008.1", "1.2.840.10008.2"}
    for k, rid in enumerate(("patient1__study__image", "patient2__study__image")):  # each image kept its own mask
        assert np.array_equal(np.asarray(Image.open(ds / recs[rid]["image"])), image_array(k, 32))
        assert np.array_equal(np.asarray(Image.open(ds / recs[rid]["mask"])), mask_array(k, 32))
    report = json.loads((ds / "prepare_report.json").read_text())
    assert sum("shared by several images" in f["fix"] for f in report["fixed"]) == 2


def test_prepare_custom_one_image_on_two_rows_is_refused(cli, workdir, tmp_path):
    raw = tmp_path / "raw"
    png(raw / "a" / "x.png", image_array(1, 32))
    (raw / "b").mkdir()
    (raw / "b" / "x.png").symlink_to(raw / "a" / "x.png")  # another name, the same file
    for rows, message in ((["a/x.png,Left lung.", "a/x.png,Right lung."], "row 3: image 'a/x.png' also on row 2"),
                          (["a/x.png,Left lung.", "b/x.png,Right lung."], "row 3: image 'b/x.png' also on row 2")):
        res = cli("prepare", "custom", "--table", _folders_table(raw, rows, "image,text"))
        assert res.exit_code == 2 and message in res.output, res.output
        assert not (workdir / "datasets" / "cases").exists()


def test_prepare_custom_id_column(cli, workdir, tmp_path):
    raw = tmp_path / "raw"
    for k in range(2):
        png(raw / f"p{k}" / "image.png", image_array(k, 32))
    rows = ["p0/image.png,Left lung.,case-007", "p1/image.png,Right lung.,case 8"]
    res = cli("prepare", "custom", "--table", _folders_table(raw, rows, "image,text,id"))
    assert res.exit_code == 0, res.output
    recs = json.loads((workdir / "datasets" / "cases" / "dataset.json").read_text())["records"]
    assert sorted(r["id"] for r in recs) == ["case 8", "case-007"]
    for bad, message in ((["p0/image.png,Left lung.,x/../y"], "row 2: id 'x/../y' is not a file name"),
                         (["p0/image.png,Left lung.,.hidden"], "id '.hidden' is not a file name"),
                         (["p0/image.png,Left lung.,c1", "p1/image.png,Right lung.,C1"],
                          "row 3: image id 'C1' also on row 2")):
        res = cli("prepare", "custom", "--table", _folders_table(raw, bad, "image,text,id"), "--name", "bad")
        assert res.exit_code == 2 and message in res.output, res.output
        assert not (workdir / "datasets" / "bad").exists()


@pytest.mark.parametrize(("name", "stem", "key"), [
    ("IM-0001.dcm", "IM-0001", "im-0001"),
    ("sub/CT.NII.GZ", "CT", "ct"),
    ("mask_covid_1.png", "mask_covid_1", "covid_1"),
    ("1.2.840.113619.2.5", "1.2.840.113619.2.5", "1.2.840.113619.2.5"),
    (".png", ".png", ".png"),  # a name that is only an extension is kept whole, by both rules
])
def test_file_stem_and_image_key_share_one_extension_rule(name, stem, key):
    from medref_cli.importers.tables import file_stem, image_key

    assert (file_stem(name), image_key(name)) == (stem, key)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_prepare_custom_reads_unicode_tables_with_a_byte_order_mark(cli, workdir, tmp_path, encoding):
    """Spreadsheet programs save "Unicode text" as UTF-16 with a BOM: read as UTF-8 is (no 'ÿþimage' column)."""
    import codecs

    table = _dataset(tmp_path / "raw")
    text = table.read_text().replace("left lung", "left lung — gauche")
    bom = {"utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    table.write_bytes(bom + text.encode(encoding))
    res = cli("prepare", "custom", "--table", table, "--name", "u")
    assert res.exit_code == 0, res.output
    data = json.loads((workdir / "datasets" / "u" / "dataset.json").read_text())
    assert any("gauche" in r["caption"] for r in data["records"])
