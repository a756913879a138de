"""`medref prepare`: raw QaTa-COV19 / MosMedData+ (any known layout) -> a prepared dataset folder.

Output `<workdir>/datasets/<name>/`: `images/<id>.png` (uint8 grayscale), `masks/<id>.png` ({0,255}),
`dataset.json` (manifest, see `artifacts.DatasetManifest`) and `prepare_report.json` (every record fixed
or skipped and why). The folder appears only when complete (built under a temp name, then renamed).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medref_cli import __version__
from medref_cli.artifacts import DatasetManifest, Record
from medref_cli.errors import MedrefError
from medref_cli.imaging import load_gray, load_mask, png_bytes, resize, sha256
from medref_cli.importers import nifti
from medref_cli.importers.layouts import RawRecord, RawScan, detect
from medref_cli.progress import track
from medref_cli.report_zones import caption_zones, check_laterality
from medref_cli.workspace import Workspace, staged_dir, write_json_atomic
from medref_cli.zones import normalise_caption

log = logging.getLogger(__name__)

RAW_ENV = {"qata": "MEDREF_QATA_RAW", "mosmed": "MEDREF_MOSMED_RAW"}
DOWNLOAD_HINT = {
    "qata": (
        "QaTa-COV19 images: https://www.kaggle.com/datasets/aysendegerli/qatacov19-dataset ; "
        "LViT text: https://github.com/HUANGLIZI/LViT"
    ),
    "mosmed": (
        "MosMedData+ slices: https://github.com/HUANGLIZI/LViT (MosMedData+ link) ; "
        "volumes: https://mosmed.ai/datasets/covid19_1110"
    ),
}


@dataclass
class PrepareConfig:
    kind: str  # "qata" | "mosmed" | "custom" (raw = the table file)
    raw: Path | None = None
    name: str | None = None
    size: int | None = None
    overwrite: bool = False
    skip_invalid: bool = False
    progress: bool = False
    laterality: str | None = None  # sides of free-text reports: patient | image (None: patient for custom,
    # image for qata / mosmed, whose template captions name image sides)

    @property
    def report_laterality(self) -> str:
        return self.laterality or ("patient" if self.kind == "custom" else "image")


def resolve_raw(kind: str, raw: Path | None) -> Path:
    if raw is None:
        env = os.environ.get(RAW_ENV[kind])
        if not env:
            raise MedrefError(
                f"no raw {kind} folder: pass --raw DIR or set {RAW_ENV[kind]} "
                f"(download: {DOWNLOAD_HINT[kind]}); `medref prepare sample` works offline"
            )
        raw = Path(env)
    raw = raw.expanduser().resolve()
    if not raw.is_dir():
        raise MedrefError(f"{raw}: raw dataset folder not found")
    return raw


def _load_pair(rec: RawRecord, fixes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    if rec.slice_index is not None:
        image = nifti.image_slice(rec.image, rec.slice_index)
        mask = nifti.mask_slice(rec.mask, rec.slice_index, image.shape) if rec.mask else None
        return image, mask
    image = load_gray(rec.image, fixes)
    mask = load_mask(rec.mask, fixes) if rec.mask else None
    if mask is not None and mask.shape != image.shape:
        raise MedrefError(f"{rec.mask}: mask size {mask.shape[::-1]} != image size {image.shape[::-1]}")
    return image, mask


def _record_id(rec: RawRecord) -> str:
    if rec.record_id is not None:
        return rec.record_id
    if rec.slice_index is not None:
        return rec.key
    name = rec.image.name
    if name.lower().endswith(".nii.gz"):
        return name[:-7]
    return name[: -len(rec.image.suffix)] if rec.image.suffix else name


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def convert(rec: RawRecord, raw: Path, out: Path, size: int | None, fixes: list[str],
            laterality: str = "image") -> Record:
    """Read, check and write one record; raises MedrefError naming the file on bad input."""
    caption = normalise_caption(rec.caption.caption)
    if not caption:
        raise MedrefError(f"{rec.caption.source}: empty caption for {rec.caption.name!r}")
    if caption != str(rec.caption.caption).strip():
        fixes.append("caption: line breaks, control characters, repeated spaces or a trailing '..' normalised")
    zones, known, note = caption_zones(caption, laterality)
    if note:
        fixes.append(note)
    image, mask = _load_pair(rec, fixes)
    if size is not None and image.shape != (size, size):
        fixes.append(f"resized {image.shape[1]}x{image.shape[0]} -> {size}x{size}")
        image = resize(image, size, is_mask=False)
        mask = resize(mask, size, is_mask=True) if mask is not None else None
    rid = _record_id(rec)
    img_bytes = png_bytes(image)
    (out / "images" / f"{rid}.png").write_bytes(img_bytes)
    mask_rel, mask_sha = None, None
    if mask is not None:
        mask_bytes = png_bytes(mask * np.uint8(255))
        mask_rel, mask_sha = f"masks/{rid}.png", sha256(mask_bytes)
        (out / mask_rel).write_bytes(mask_bytes)
    source_image = _relative(rec.image, raw)
    if rec.slice_index is not None:
        source_image = f"{source_image}#z={rec.slice_index}"
    return Record(
        id=rid, split=rec.split, image=f"images/{rid}.png", mask=mask_rel, caption=caption,
        zones=zones, zones_known=known, height=int(image.shape[0]), width=int(image.shape[1]),
        source_image=source_image or "", source_mask=_relative(rec.mask, raw),
        image_sha256=sha256(img_bytes), mask_sha256=mask_sha,
    )


def run(cfg: PrepareConfig, ws: Workspace) -> DatasetManifest:
    """Prepare one dataset; returns its manifest. Nothing appears under its name unless complete."""
    name = cfg.name or cfg.kind
    final = ws.dataset_dir(name)
    check_laterality(cfg.report_laterality)
    if cfg.kind == "custom":
        from medref_cli.importers.custom import scan_table

        if cfg.raw is None:
            raise MedrefError("prepare custom: pass --table FILE (csv, tsv or xlsx with image and text columns)")
        table = cfg.raw.expanduser().resolve()
        scan: RawScan = scan_table(table)
        raw = table.parent
    else:
        raw = resolve_raw(cfg.kind, cfg.raw)
        scan = detect(raw, cfg.kind)
    if not scan.records:
        raise MedrefError(f"{raw}: {scan.layout} layout found but no image met a caption")
    log.info("%s: %s layout, %d records", raw, scan.layout, len(scan.records))
    with staged_dir(final, cfg.overwrite) as out:
        (out / "images").mkdir()
        (out / "masks").mkdir()
        records: list[Record] = []
        for rec in track(scan.records, len(scan.records), f"prepare {name}", cfg.progress):
            fixes: list[str] = []
            try:
                record = convert(rec, raw, out, cfg.size, fixes, cfg.report_laterality)
            except MedrefError as exc:
                if not cfg.skip_invalid:
                    raise
                scan.skipped.append({"file": str(rec.image), "reason": str(exc)})
                continue
            records.append(record)
            if fixes:
                scan.fixed.append({"id": record.id, "file": str(rec.image), "fix": "; ".join(fixes)})
        if not records:
            raise MedrefError(f"{raw}: every record was skipped; see the reasons with --skip-invalid off")
        manifest = DatasetManifest(
            name=name, kind=cfg.kind, source=str(raw), layout=scan.layout, records=records,
            created_by=f"medref {__version__} prepare {cfg.kind}", laterality=cfg.report_laterality,
            extra={"size": cfg.size, "splits": _count_splits(records)},
        )
        manifest.save(out)
        write_json_atomic(out / "prepare_report.json", {
            "layout": scan.layout,
            "source": str(raw),
            "counts": {"records": len(records), "fixed": len(scan.fixed), "skipped": len(scan.skipped)},
            "fixed": scan.fixed,
            "skipped": scan.skipped,
        })
    return manifest


def _count_splits(records: list[Record]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.split] = counts.get(r.split, 0) + 1
    return counts
