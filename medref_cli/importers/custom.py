"""`medref prepare custom --table FILE`: your own images and reports from one table.

Columns (case-insensitive): `image` (required), `text` (required; also `report`, `caption`, `description`),
`mask` (optional; empty cell = unlabelled image), `split` (optional: train | val | test and the usual aliases;
default train), `id` (optional: the prepared record's name). Paths are relative to the table's folder and may not
leave it. CSV (`,` or `;`), TSV or xlsx. Images: PNG, JPEG, TIFF (16-bit too), DICOM, 2-D NIfTI; masks: PNG/TIFF
or 2-D NIfTI.

Record ids: the `id` cell where the table has one, else the image file's name without its extension; file names
that several images share (`patient1/image.dcm`, `patient2/image.dcm`) take their path instead
(`patient1__image`). Ids compare case-insensitively; two rows with one id, or one image on two rows, are refused.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path, PurePosixPath

from medref_cli.errors import MedrefError
from medref_cli.importers.layouts import SPLIT_ALIASES, RawRecord, RawScan
from medref_cli.importers.tables import CaptionRow, file_stem, path_in_folder, read_grid

TEXT_COLUMNS = ("text", "report", "caption", "description")
ID_PATTERN = re.compile(r"\w[\w .+-]*")  # a file name of its own: no path separator, no leading dot


def _record_ids(table: Path, rows: list[tuple[int, dict[str, str]]]) -> list[tuple[str, str | None]]:
    """(id, fix note or None) per row: the `id` cell, else the file's stem, else (a stem shared with another row's
    file) its path under the table's folder with `__` for `/`."""
    names = [PurePosixPath(row["image"].strip().replace("\\", "/")) for _, row in rows]
    stems = [file_stem(n.name) for n in names]
    shared = Counter(stem.lower() for stem, (_, row) in zip(stems, rows, strict=True) if not row.get("id"))
    out: list[tuple[str, str | None]] = []
    for name, stem, (k, row) in zip(names, stems, rows, strict=True):
        if row.get("id"):
            if not ID_PATTERN.fullmatch(row["id"]):
                raise MedrefError(f"{table}: row {k}: id {row['id']!r} is not a file name (letters, digits, "
                                  "space, '.', '_', '+', '-'; no '/')")
            out.append((row["id"], None))
        elif shared[stem.lower()] > 1 and len(name.parts) > 1:
            rid = "__".join([*name.parent.parts, stem])
            out.append((rid, f"file name {name.name!r} shared by several images: id {rid!r} from its path"))
        else:
            out.append((stem, None))
    return out


def table_images(table: Path, rows: list[tuple[int, dict[str, str]]]) -> list[tuple[str, str | None, Path]]:
    """(record id, fix note or None, image path) per row of a table with an `image` column (see the module's
    doc for the ids). A row without an image, a missing file, two rows with one id or one file (through a link
    too) is a one-line error naming the row."""
    for k, row in rows:
        if not row.get("image"):
            raise MedrefError(f"{table}: row {k}: empty image name")
    seen_ids: dict[str, int] = {}
    seen_files: dict[Path, int] = {}
    out = []
    for (k, row), (rid, note) in zip(rows, _record_ids(table, rows), strict=True):
        image = path_in_folder(table, row["image"], k, "image")
        if image in seen_files:
            raise MedrefError(f"{table}: row {k}: image {row['image']!r} also on row {seen_files[image]}")
        if rid.lower() in seen_ids:
            raise MedrefError(f"{table}: row {k}: image id {rid!r} also on row {seen_ids[rid.lower()]}")
        seen_ids[rid.lower()], seen_files[image] = k, k
        out.append((rid, note, image))
    return out


def read_rows(table: Path) -> list[tuple[int, dict[str, str]]]:
    """(row number, {column: cell}) with lower-case column names; empty rows skipped."""
    grid = read_grid(table)
    header = [h.strip().lower() for h in grid[0][1]]
    return [(k, {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h})
            for k, row in grid[1:] if any(c.strip() for c in row)]


def image_rows(table: Path) -> tuple[list[tuple[int, dict[str, str]]], set[str]]:
    """`read_rows` and the table's column names, which must hold `image`."""
    rows = read_rows(table)
    columns = set(rows[0][1]) if rows else set()
    if "image" not in columns:
        raise MedrefError(f"{table}: no 'image' column (found {', '.join(sorted(columns)) or 'none'})")
    return rows, columns


def scan_table(table: Path) -> RawScan:
    """Every row -> a RawRecord; a missing column, file or split name is a one-line error naming the row."""
    if not table.is_file():
        raise MedrefError(f"{table}: table not found")
    rows, columns = image_rows(table)
    text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_col is None:
        raise MedrefError(f"{table}: no text column (one of {', '.join(TEXT_COLUMNS)}; found "
                          f"{', '.join(sorted(columns))})")
    scan = RawScan("custom-table")
    for (k, row), (rid, note, image) in zip(rows, table_images(table, rows), strict=True):
        mask = path_in_folder(table, row["mask"], k, "mask") if row.get("mask") else None
        if mask is not None and mask.resolve() == image.resolve():
            raise MedrefError(f"{table}: row {k}: the mask {row['mask']!r} is the image file itself; name the "
                              "mask file, or leave the cell empty for an unlabelled image")
        split = SPLIT_ALIASES.get((row.get("split") or "train").lower())
        if split is None:
            raise MedrefError(f"{table}: row {k}: split {row['split']!r} is not train, val or test")
        caption = CaptionRow(rid.lower(), row["image"], row[text_col], f"{table.name}:{k}")
        scan.records.append(RawRecord(split, rid.lower(), image, mask, caption, record_id=rid))
        if note:
            scan.fixed.append({"file": str(image), "fix": note})
        if mask is None:
            scan.fixed.append({"file": str(image), "fix": "no mask: kept as unlabelled"})
    if not scan.records:
        raise MedrefError(f"{table}: the table names no image")
    return scan
