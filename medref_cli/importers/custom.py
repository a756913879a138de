"""`medref prepare custom --table FILE`: your own images and reports from one table.

Columns (case-insensitive): `image` (required), `text` (required; also `report`, `caption`, `description`),
`mask` (optional; empty cell = unlabelled image), `split` (optional: train | val | test and the usual aliases;
default train). Paths are relative to the table's folder and may not leave it. CSV (`,` or `;`), TSV or xlsx.
Images: PNG, JPEG, TIFF (16-bit too), DICOM, 2-D NIfTI; masks: PNG/TIFF or 2-D NIfTI.
"""

from __future__ import annotations

from pathlib import Path

from medref_cli.errors import MedrefError
from medref_cli.importers.layouts import SPLIT_ALIASES, RawRecord, RawScan
from medref_cli.importers.tables import CaptionRow, image_key, path_in_folder, read_grid

TEXT_COLUMNS = ("text", "report", "caption", "description")


def read_rows(table: Path) -> list[tuple[int, dict[str, str]]]:
    """(row number, {column: cell}) with lower-case column names; empty rows skipped."""
    grid = read_grid(table)
    header = [h.strip().lower() for h in grid[0][1]]
    return [(k, {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h})
            for k, row in grid[1:] if any(c.strip() for c in row)]


def scan_table(table: Path) -> RawScan:
    """Every row -> a RawRecord; a missing column, file or split name is a one-line error naming the row."""
    if not table.is_file():
        raise MedrefError(f"{table}: table not found")
    rows = read_rows(table)
    columns = set(rows[0][1]) if rows else set()
    if "image" not in columns:
        raise MedrefError(f"{table}: no 'image' column (found {', '.join(sorted(columns)) or 'none'})")
    text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_col is None:
        raise MedrefError(f"{table}: no text column (one of {', '.join(TEXT_COLUMNS)}; found "
                          f"{', '.join(sorted(columns))})")
    scan = RawScan("custom-table")
    seen: dict[str, int] = {}
    for k, row in rows:
        if not row.get("image"):
            raise MedrefError(f"{table}: row {k}: empty image name")
        image = path_in_folder(table, row["image"], k, "image")
        mask = path_in_folder(table, row["mask"], k, "mask") if row.get("mask") else None
        split = SPLIT_ALIASES.get((row.get("split") or "train").lower())
        if split is None:
            raise MedrefError(f"{table}: row {k}: split {row['split']!r} is not train, val or test")
        key = image_key(row["image"])
        if key in seen:
            raise MedrefError(f"{table}: row {k}: image id {key!r} also on row {seen[key]}")
        seen[key] = k
        caption = CaptionRow(key, row["image"], row[text_col], f"{table.name}:{k}")
        scan.records.append(RawRecord(split, key, image, mask, caption))
        if mask is None:
            scan.fixed.append({"file": str(image), "fix": "no mask: kept as unlabelled"})
    if not scan.records:
        raise MedrefError(f"{table}: the table names no image")
    return scan
