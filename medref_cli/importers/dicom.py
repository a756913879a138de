"""DICOM images (pydicom) -> the prepared 8-bit grayscale format.

Modality LUT (rescale slope / intercept) first, then the file's own window (the first WindowCenter /
WindowWidth pair) when it has one, else the min-max range; MONOCHROME1 (bright = low values) is inverted
so that every image shows air dark. Single-frame grayscale only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medref_cli.errors import MedrefError


def is_dicom(path: Path) -> bool:
    """`.dcm` / `.dicom`, or the `DICM` magic at byte 128 (files saved without an extension)."""
    if path.name.lower().endswith((".dcm", ".dicom")):
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _first(value) -> float | None:  # noqa: ANN001 - a DICOM value, possibly multi-valued
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def load_dicom(path: Path, fixes: list[str] | None = None) -> np.ndarray:
    """A DICOM file -> uint8 (H, W)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    fixes = fixes if fixes is not None else []
    from medref_cli.image_limits import check_pixels

    try:
        ds = pydicom.dcmread(path)
        check_pixels(path, int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0))
        arr = ds.pixel_array
    except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise MedrefError(f"{path}: unreadable DICOM ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") \
            from None
    except RuntimeError as exc:  # a compressed transfer syntax without its decoder
        raise MedrefError(f"{path}: DICOM pixel data cannot be decoded here ({str(exc).splitlines()[0][:120]})") \
            from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim != 2 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise MedrefError(f"{path}: expected a single-frame grayscale DICOM, got shape {arr.shape} {photometric}")
    values = arr.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1)
    values += float(getattr(ds, "RescaleIntercept", 0) or 0)
    centre, width = _first(getattr(ds, "WindowCenter", None)), _first(getattr(ds, "WindowWidth", None))
    if centre is not None and width is not None and width > 0:
        lo, hi = centre - width / 2, centre + width / 2
        fixes.append(f"DICOM window {centre:g}/{width:g} applied")
    else:
        lo, hi = float(values.min()), float(values.max())
        fixes.append("DICOM min-max scaled to 8-bit")
    scaled = np.clip((values - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
        fixes.append("DICOM MONOCHROME1 inverted")
    return np.round(scaled * 255).astype(np.uint8)
