"""Caption tables: LViT xlsx, `;`/`,` CSV ports, GuideDecoder CSV and the SGSeg annotation JSON.

Every reader yields `CaptionRow`s keyed by `image_key(name)`, so that `mask_covid_1.png`,
`covid_1.png` and `COVID_1` all meet the same image.
"""

from __future__ import annotations

import csv
import io
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


IMAGE_FILE_EXTENSIONS = (".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii", ".dcm", ".dicom")


def file_stem(name: str) -> str:
    """'IM-0001.dcm' -> 'IM-0001', 'ct.nii.gz' -> 'ct' (case kept); a name without a known image extension, or
    that is only one ('.png'), is kept whole (DICOM files named by their UID: '1.2.840.113619.2.5')."""
    name = PurePosixPath(name).name
    ext = next((e for e in IMAGE_FILE_EXTENSIONS if name.lower().endswith(e) and len(name) > len(e)), "")
    return name[: len(name) - len(ext)]


def image_key(name: str) -> str:
    """Case-insensitive key of an image or mask file name: no `mask_` prefix, no extension."""
    stem = file_stem(name.strip()).lower()
    return stem[5:] if stem.startswith("mask_") else stem


def _check_name(table: Path, name: str, row: int) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise MedrefError(f"{table}: row {row}: image path {name!r} escapes the raw root")


def path_in_folder(table: Path, name: str, row: int, what: str) -> Path:
    """The file `name` (relative to the table's folder) of a table row, which must exist and, with every link
    resolved, stay inside that folder: an absolute path, `..` or a symbolic link leading out is refused."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise MedrefError(f"{table}: row {row}: {what} path {name!r} leaves the table's folder")
    root = table.parent.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise MedrefError(f"{table}: row {row}: {what} {name!r} is a link to {path}, outside the table's folder")
    if not path.is_file():
        raise MedrefError(f"{table}: row {row}: {what} {name!r} not found")
    return path


def _rows_from_header(table: Path, header: list[str], rows: Iterable[tuple[int, list[str]]]) -> list[CaptionRow]:
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
        name = row[img_col].strip() if img_col < len(row) else ""
        text = row[txt_col] if txt_col < len(row) else ""
        if not name:
            raise MedrefError(f"{table}: row {row_no}: empty image name")
        _check_name(table, name, row_no)
        out.append(CaptionRow(image_key(name), name, text, f"{table.name}:{row_no}"))
    return out


def _decode(table: Path) -> str:
    """A text table's content: UTF-8 (with or without a BOM), UTF-16 or UTF-32 with a BOM (what spreadsheet
    programs save as "Unicode text"), else Latin-1."""
    import codecs

    raw = table.read_bytes()
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                raise MedrefError(f"{table}: starts as {encoding.upper()} but does not decode as it; save the table "
                                  "as UTF-8") from None
    head = raw[:64]
    if head and head.count(0) >= len(head) // 4:  # ASCII text in UTF-16: every other byte is NUL
        raise MedrefError(f"{table}: holds NUL bytes (UTF-16 without a byte-order mark?); save the table as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_grid(table: Path) -> list[tuple[int, list[str]]]:
    """Every row of a CSV (`,` or `;`, sniffed from the header line), TSV or xlsx (first sheet) table as
    (1-based row number, cells as strings; an empty cell is ""), header first. The one table reader of
    the caption tables, `prepare custom --table` and `predict --input TABLE`."""
    if table.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        try:
            wb = load_workbook(table, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a broken zip
            raise MedrefError(f"{table}: not a readable xlsx ({exc.__class__.__name__})") from None
        try:
            grid = [["" if v is None else str(v) for v in r] for r in wb.worksheets[0].iter_rows(values_only=True)]
        finally:
            wb.close()
    else:
        text = _decode(table)
        first = text.splitlines()[0] if text else ""
        delimiter = "\t" if table.suffix.lower() == ".tsv" or "\t" in first else \
            ";" if first.count(";") > first.count(",") else ","
        try:  # from a stream, not split lines: a quoted cell may span lines ("left\nlower" stays two words)
            grid = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        except csv.Error as exc:
            raise MedrefError(f"{table}: not a readable table ({exc})") from None
    if not grid:
        raise MedrefError(f"{table}: empty table")
    return list(enumerate(grid, start=1))


def read_table(table: Path) -> list[CaptionRow]:
    """A caption table: LViT `*_text.xlsx`, or an `Image;text` / `Image,Description` CSV."""
    grid = read_grid(table)
    return _rows_from_header(table, grid[0][1], grid[1:])


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
