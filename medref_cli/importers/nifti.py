"""NIfTI volumes -> 2-D axial slices in display orientation.

A slice is `volume[:, :, z]` transposed and flipped vertically (`np.flipud(slice.T)`), so rows run
anterior -> posterior as on a radiology screen. CT intensities are windowed to the lung window
(level -600 HU, width 1500 HU) unless the volume is already 8-bit.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from medref_cli.errors import MedrefError

LUNG_WINDOW = (-1350.0, 150.0)


@lru_cache(maxsize=2)
def load_volume(path: Path) -> np.ndarray:
    import nibabel as nib

    from medref_cli.image_limits import check_pixels

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for broken files
        raise MedrefError(f"{path}: unreadable NIfTI volume ({exc.__class__.__name__})") from None
    shape = tuple(img.shape) + (1, 1)
    check_pixels(path, int(shape[1]), int(shape[0]))  # one slice, before any voxel is read
    try:
        return np.asarray(img.dataobj)
    except Exception as exc:
        raise MedrefError(f"{path}: unreadable NIfTI volume ({exc.__class__.__name__})") from None


def to_display(slice2d: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.flipud(slice2d.T))


def from_display(image2d: np.ndarray) -> np.ndarray:
    """Inverse of `to_display`: a display-oriented 2-D array back to volume axes (x, y)."""
    return np.ascontiguousarray(np.flipud(image2d).T)


def window(arr: np.ndarray) -> np.ndarray:
    """Float slice -> uint8; 8-bit data is kept, anything else gets the lung window."""
    if arr.min() >= 0 and arr.max() <= 255 and np.allclose(arr, np.round(arr)):
        return arr.astype(np.uint8)
    lo, hi = LUNG_WINDOW
    return np.round((np.clip(arr, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)


def image_slice(path: Path, z: int) -> np.ndarray:
    vol = load_volume(path)
    if vol.ndim < 3 or z >= vol.shape[2]:
        raise MedrefError(f"{path}: no axial slice {z} in a volume of shape {vol.shape}")
    return window(to_display(vol[:, :, z].astype(np.float32)))


def mask_slice(path: Path, z: int, shape: tuple[int, int]) -> np.ndarray:
    vol = load_volume(path)
    if vol.ndim < 3 or z >= vol.shape[2]:
        raise MedrefError(f"{path}: no axial slice {z} in a mask of shape {vol.shape}")
    out = (to_display(vol[:, :, z]) > 0).astype(np.uint8)
    if out.shape != shape:
        raise MedrefError(f"{path}: mask size {out.shape} != image size {shape}")
    return out
