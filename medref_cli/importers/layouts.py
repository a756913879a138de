"""Detect which raw layout a folder holds and pair its images, masks and captions.

Layouts (detected in this order, never named by the user):
- `sgseg`: `images/<split>/{images,masks}/` + `prompts/annotation.json`
- `guidedecoder`: `prompt/<split>.csv` + `<Split>/{Images, GTs|Ground-truths}/`
- `lvit`: `<Split>_Folder/{img,labelcol}/` + caption tables (`*.xlsx` or `;`/`,` CSV) at the root or
  inside the split folders
- `nifti` (MosMedData volumes): `{images|volumes|img}/*.nii[.gz]` + `{masks|labels|labelcol}/` with the
  same names + a caption CSV keyed by slice name `<volume>_<z>`
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from medref_cli.errors import MedrefError
from medref_cli.importers.tables import (
    CaptionRow,
    image_key,
    merge_rows,
    read_sgseg_json,
    read_table,
)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_EXTS = (".nii", ".nii.gz")
SPLIT_ALIASES = {
    "train": "train", "training": "train", "train_folder": "train",
    "val": "val", "valid": "val", "validation": "val", "val_folder": "val",
    "test": "test", "testing": "test", "test_folder": "test",
}


@dataclass
class RawRecord:
    split: str
    key: str
    image: Path
    mask: Path | None
    caption: CaptionRow
    slice_index: int | None = None  # set for NIfTI volumes: axial slice z
    record_id: str | None = None  # the prepared id, where the importer chose it (else from the file name)


@dataclass
class RawScan:
    layout: str
    records: list[RawRecord] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    fixed: list[dict] = field(default_factory=list)


def child(folder: Path, *names: str) -> Path | None:
    """The first sub-path of `folder` whose name matches one of `names`, case-insensitively."""
    if not folder.is_dir():
        return None
    entries = {p.name.lower(): p for p in sorted(folder.iterdir())}
    for name in names:
        if name.lower() in entries:
            return entries[name.lower()]
    return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def index_files(folder: Path, exts: tuple[str, ...], scan: RawScan) -> dict[str, Path]:
    """key -> file; files differing only by case are one id: identical copies are skipped and
    reported, different contents are an error."""
    index: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.lower().endswith(exts) or path.name.startswith("."):
            continue
        key = image_key(path.name)
        if key in index:
            if _digest(index[key]) != _digest(path):
                raise MedrefError(f"{path}: duplicate id {key!r} (also {index[key].name}) with different content")
            scan.skipped.append({"file": str(path), "reason": f"duplicate of {index[key].name}"})
            continue
        index[key] = path
    return index


def pair_folder(
    split: str, img_dir: Path, mask_dir: Path | None, captions: dict[str, CaptionRow], scan: RawScan
) -> None:
    images = index_files(img_dir, IMAGE_EXTS, scan)
    masks = index_files(mask_dir, IMAGE_EXTS, scan) if mask_dir and mask_dir.is_dir() else {}
    for key, image in images.items():
        row = captions.get(key)
        if row is None:
            scan.skipped.append({"file": str(image), "reason": "image without caption"})
            continue
        mask = masks.get(key)
        if mask is None:
            scan.fixed.append({"file": str(image), "fix": "no mask: kept as unlabelled"})
        scan.records.append(RawRecord(split, key, image, mask, row))


def finish(scan: RawScan, captions: dict[str, CaptionRow]) -> RawScan:
    """Report caption rows that met no image; refuse ids that occur in two splits."""
    seen: dict[str, RawRecord] = {}
    for rec in scan.records:
        if rec.key in seen:
            raise MedrefError(f"{rec.image}: duplicate id {rec.key!r} (also {seen[rec.key].image})")
        seen[rec.key] = rec
    for key, row in captions.items():
        if key not in seen:
            scan.skipped.append({"file": row.source, "reason": f"caption without image ({row.name})"})
    return scan


def scan_sgseg(root: Path) -> RawScan:
    scan = RawScan("sgseg")
    table = child(child(root, "prompts") or root, "annotation.json")
    assert table is not None
    per_split = read_sgseg_json(table)
    captions = merge_rows(row for rows in per_split.values() for row in rows)
    images_root = child(root, "images")
    if images_root is None:
        raise MedrefError(f"{root}: SGSeg layout without an images/ folder")
    for split_dir in sorted(p for p in images_root.iterdir() if p.is_dir()):
        split = SPLIT_ALIASES.get(split_dir.name.lower(), split_dir.name.lower())
        img_dir = child(split_dir, "images")
        if img_dir is not None:
            pair_folder(split, img_dir, child(split_dir, "masks"), captions, scan)
    return finish(scan, captions)


def scan_guidedecoder(root: Path) -> RawScan:
    scan = RawScan("guidedecoder")
    prompt = child(root, "prompt")
    assert prompt is not None
    tables = sorted(p for p in prompt.iterdir() if p.suffix.lower() in (".csv", ".xlsx"))
    captions = merge_rows(row for t in tables for row in read_table(t))
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() in SPLIT_ALIASES):
        img_dir = child(split_dir, "Images", "img")
        if img_dir is not None:
            mask_dir = child(split_dir, "GTs", "Ground-truths", "Ground_truths", "masks")
            pair_folder(SPLIT_ALIASES[split_dir.name.lower()], img_dir, mask_dir, captions, scan)
    return finish(scan, captions)


def _split_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().endswith("_folder"))


def scan_lvit(root: Path) -> RawScan:
    scan = RawScan("lvit")
    folders = _split_folders(root)
    tables = [p for d in [root, *folders] for p in sorted(d.iterdir())
              if p.is_file() and p.suffix.lower() in (".xlsx", ".csv") and not p.name.startswith((".", "~$"))]
    if not tables:
        raise MedrefError(f"{root}: LViT layout without any caption table (*_text.xlsx or *.csv)")
    captions = merge_rows(row for t in tables for row in read_table(t))
    for folder in folders:
        img_dir = child(folder, "img", "images")
        if img_dir is not None:
            split = SPLIT_ALIASES.get(folder.name.lower(), folder.name.lower().removesuffix("_folder"))
            pair_folder(split, img_dir, child(folder, "labelcol", "masks"), captions, scan)
    return finish(scan, captions)


def _nifti_files(folder: Path) -> dict[str, Path]:
    return {image_key(p.name): p for p in sorted(folder.iterdir())
            if p.is_file() and p.name.lower().endswith(NIFTI_EXTS)}


def scan_nifti(root: Path) -> RawScan:
    """Volumes + masks; one record per axial slice that has a caption (`<volume>_<z>`)."""
    import nibabel as nib

    scan = RawScan("nifti")
    vol_dir = child(root, "images", "volumes", "img")
    assert vol_dir is not None
    mask_dir = child(root, "masks", "labels", "labelcol")
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".xlsx"))
    if not tables:
        raise MedrefError(f"{root}: NIfTI layout without a caption CSV keyed by slice name '<volume>_<z>'")
    captions = merge_rows(row for t in tables for row in read_table(t))
    masks = _nifti_files(mask_dir) if mask_dir else {}
    used: set[str] = set()
    for key, vol in _nifti_files(vol_dir).items():
        try:
            depth = int(nib.load(str(vol)).shape[2])
        except Exception as exc:  # nibabel raises several types for broken headers
            raise MedrefError(f"{vol}: unreadable NIfTI volume ({exc.__class__.__name__})") from None
        for z in range(depth):
            slice_key = f"{key}_{z}"
            row = captions.get(slice_key)
            if row is None:
                continue
            used.add(slice_key)
            scan.records.append(RawRecord("train", slice_key, vol, masks.get(key), row, slice_index=z))
    for key, row in captions.items():
        if key not in used:
            scan.skipped.append({"file": row.source, "reason": f"caption without slice ({row.name})"})
    return scan


def detect(root: Path, kind: str) -> RawScan:
    """Find the layout of `root` and pair everything in it."""
    if not root.is_dir():
        raise MedrefError(f"{root}: raw dataset folder not found")
    prompts = child(root, "prompts")
    if prompts is not None and child(prompts, "annotation.json"):
        return scan_sgseg(root)
    if child(root, "prompt") is not None and child(root, "train", "test") is not None:
        return scan_guidedecoder(root)
    if any(child(f, "img", "images") for f in _split_folders(root)):
        return scan_lvit(root)
    vol_dir = child(root, "images", "volumes", "img")
    if kind == "mosmed" and vol_dir is not None and _nifti_files(vol_dir):
        return scan_nifti(root)
    known = "SGSeg (prompts/annotation.json), GuideDecoder (prompt/*.csv + Train/), LViT (*_Folder/img)"
    if kind == "mosmed":
        known += ", NIfTI (images/*.nii.gz + masks/ + captions CSV)"
    raise MedrefError(f"{root}: unknown raw layout; expected one of: {known}")
