"""Caption tables: LViT xlsx, `;`/`,` CSV ports, GuideDecoder CSV and the SGSeg annotation JSON.

Every reader yields `CaptionRow`s keyed by `image_key(name)`, so that `mask_covid_1.png`,
`covid_1.png` and `COVID_1` all meet the same image.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medref_cli.errors import MedrefError

IMAGE_COLUMNS = ("image",)
TEXT_COLUMNS = ("description", "text", "caption")


@dataclass(frozen=True)
class CaptionRow:
    key: str
    name: str  # the name as written in the table
    caption: str
    source: str  # "<file>:<row>"


def image_key(name: str) -> str:
    """Case-insensitive key of an image or mask file name: no `mask_` prefix, no extension."""
    stem = PurePosixPath(name.strip()).name.lower()
    for ext in (".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii", ".dcm", ".dicom"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    return stem[5:] if stem.startswith("mask_") else stem


def _check_name(table: Path, name: str, row: int) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise MedrefError(f"{table}: row {row}: image path {name!r} escapes the raw root")


def _rows_from_header(table: Path, header: list[str], rows: Iterable[tuple[int, list]]) -> list[CaptionRow]:
    lower = [str(h or "").strip().lower() for h in header]
    img_col = next((lower.index(c) for c in IMAGE_COLUMNS if c in lower), None)
    txt_col = next((lower.index(c) for c in TEXT_COLUMNS if c in lower), None)
    if img_col is None or txt_col is None:
        raise MedrefError(
            f"{table}: missing column(s) — need 'Image' and 'Description'/'text', found {header!r}"
        )
    out = []
    for row_no, row in rows:
        if not any(str(v or "").strip() for v in row):
            continue
        cell = row[img_col] if img_col < len(row) else None
        name = "" if cell is None else str(cell).strip()  # an empty xlsx cell is None, not "None"
        text = row[txt_col] if txt_col < len(row) else None
        text = "" if text is None else str(text)
        if not name:
            raise MedrefError(f"{table}: row {row_no}: empty image name")
        _check_name(table, name, row_no)
        out.append(CaptionRow(image_key(name), name, text, f"{table.name}:{row_no}"))
    return out


def read_csv(table: Path) -> list[CaptionRow]:
    """`Image;text` or `Image,Description` CSV (delimiter sniffed from the header line)."""
    try:
        text = table.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = table.read_text(encoding="latin-1")
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise MedrefError(f"{table}: empty caption table")
    return _rows_from_header(table, header, ((i + 2, row) for i, row in enumerate(reader)))


def read_xlsx(table: Path) -> list[CaptionRow]:
    """LViT `*_text.xlsx`: first sheet, header row with `Image` and `Description`."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(table, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken zip
        raise MedrefError(f"{table}: not a readable xlsx ({exc.__class__.__name__})") from None
    try:
        rows = wb.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise MedrefError(f"{table}: empty caption table")
        return _rows_from_header(table, list(header), ((i + 2, list(r)) for i, r in enumerate(rows)))
    finally:
        wb.close()


def read_sgseg_json(table: Path) -> dict[str, list[CaptionRow]]:
    """SGSeg `prompts/annotation.json`: `{split: [{"image_path": "mask_..png", "caption": ...}]}`."""
    try:
        data = json.loads(table.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedrefError(f"{table}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MedrefError(f"{table}: expected an object of splits, got {type(data).__name__}")
    out: dict[str, list[CaptionRow]] = {}
    for split, entries in data.items():
        rows = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "image_path" not in entry or "caption" not in entry:
                raise MedrefError(f"{table}: {split}[{i}] lacks 'image_path' or 'caption'")
            name = str(entry["image_path"])
            _check_name(table, name, i)
            rows.append(CaptionRow(image_key(name), name, str(entry["caption"] or ""), f"{table.name}:{split}[{i}]"))
        out[split] = rows
    return out


def read_table(table: Path) -> list[CaptionRow]:
    if table.suffix.lower() == ".xlsx":
        return read_xlsx(table)
    return read_csv(table)


def merge_rows(rows: Iterable[CaptionRow]) -> dict[str, CaptionRow]:
    """One caption per image key; the same key with two different captions is an error."""
    merged: dict[str, CaptionRow] = {}
    for row in rows:
        old = merged.get(row.key)
        if old is not None and " ".join(old.caption.split()) != " ".join(row.caption.split()):
            raise MedrefError(
                f"{row.source.split(':')[0]}: duplicate id {row.key!r} with different captions "
                f"({old.source} and {row.source})"
            )
        merged.setdefault(row.key, row)
    return merged
