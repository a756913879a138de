"""Reading raw images and masks into the one prepared format, and writing it.

Prepared format: `images/<id>.png` 8-bit grayscale; `masks/<id>.png` 8-bit with values {0, 255}.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medref_cli.errors import MedrefError
from medref_cli.image_limits import MAX_PIXELS, check_pixels


def _open(path: Path) -> Image.Image:
    try:
        if path.stat().st_size == 0:
            raise MedrefError(f"{path}: empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
        check_pixels(path, img.height, img.width)
        img.load()
        return img
    except MedrefError:
        raise
    except Image.DecompressionBombError:  # PIL's own limit (about 179 M pixels), met while reading the header
        raise MedrefError(f"{path}: image larger than the {MAX_PIXELS:,}-pixel limit (8192x8192); downscale it "
                          "first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MedrefError(f"{path}: unreadable or corrupt image ({exc.__class__.__name__})") from None


def load_gray(path: Path, fixes: list[str] | None = None) -> np.ndarray:
    """PNG/JPEG/TIFF, DICOM or a 2-D NIfTI -> uint8 (H, W). 16-bit and float images are min-max scaled to
    0..255; DICOM goes through `importers.dicom` (its window, MONOCHROME1 inverted)."""
    fixes = fixes if fixes is not None else []
    from medref_cli.importers.dicom import is_dicom, load_dicom

    if is_dicom(path):
        return load_dicom(path, fixes)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return load_nifti_2d(path, fixes)
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        fixes.append(f"image {img.mode} scaled to 8-bit")
        return np.round(arr).astype(np.uint8)
    if img.mode != "L":
        fixes.append(f"image {img.mode} converted to grayscale")
        img = img.convert("RGB").convert("L") if img.mode in ("RGBA", "LA", "P", "PA") else img.convert("L")
    return np.asarray(img, dtype=np.uint8).copy()


def load_nifti_2d(path: Path, fixes: list[str] | None = None) -> np.ndarray:
    """A 2-D NIfTI image (or a volume of one slice) -> uint8 (H, W), shown as the NIfTI slices of `prepare mosmed`."""
    from medref_cli.importers import nifti

    vol = nifti.load_volume(path)
    if vol.ndim == 3 and vol.shape[2] == 1:
        vol = vol[:, :, 0]
    if vol.ndim != 2:
        raise MedrefError(f"{path}: expected a 2-D NIfTI image, got shape {vol.shape}")
    if fixes is not None:
        fixes.append("NIfTI slice windowed to 8-bit")
    return nifti.window(nifti.to_display(vol))


def load_mask(path: Path, fixes: list[str] | None = None) -> np.ndarray:
    """A {0,1} or {0,255} mask, 1- or multi-channel (or a 2-D NIfTI label map, > 0 = lesion) -> uint8 (H, W)
    with values {0, 1}. A JPEG mask is read as {0,255} thresholded at 128 (its compression leaves grey values
    near the edges); other stray values are refused."""
    fixes = fixes if fixes is not None else []
    if path.name.lower().endswith((".nii", ".nii.gz")):
        from medref_cli.importers import nifti

        vol = nifti.load_volume(path)
        vol = vol[:, :, 0] if vol.ndim == 3 and vol.shape[2] == 1 else vol
        if vol.ndim != 2:
            raise MedrefError(f"{path}: expected a 2-D NIfTI mask, got shape {vol.shape}")
        return (nifti.to_display(vol) > 0).astype(np.uint8)
    img = _open(path)
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1) if arr.shape[-1] in (3, 4) else arr.max(axis=-1)
        fixes.append(f"mask {img.mode} merged to one channel")
    values = np.unique(arr)
    if set(values.tolist()) <= {0, 1}:
        return arr.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (arr > 0).astype(np.uint8)
    if img.format == "JPEG" and values[-1] >= 128:  # a {0,255} mask blurred by lossy compression near its edges
        fixes.append("JPEG mask thresholded at 128")
        return (arr >= 128).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
    hint = "; a JPEG mask with no value >= 128 cannot be told from compression noise: save it as PNG" \
        if img.format == "JPEG" else ""
    raise MedrefError(f"{path}: mask values beyond {{0,255}}/{{0,1}} ({shown}){hint}")


def resize(arr: np.ndarray, size: int, is_mask: bool) -> np.ndarray:
    """Square resize; bilinear for images, nearest for masks."""
    if arr.shape == (size, size):
        return arr
    mode = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(arr).resize((size, size), mode))


def png_bytes(arr: np.ndarray) -> bytes:
    """uint8 (H, W) -> PNG file bytes (deterministic)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def read_prepared(path: Path, is_mask: bool = False) -> np.ndarray:
    """A prepared image (uint8 0..255) or mask (uint8 {0,1}) back as an array."""
    arr = np.asarray(_open(path))
    return (arr > 127).astype(np.uint8) if is_mask else arr
