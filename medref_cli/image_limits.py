"""The largest image a reader decodes (PNG / JPEG / TIFF, DICOM, NIfTI slices), checked from the header."""

from __future__ import annotations

from pathlib import Path

from medref_cli.errors import MedrefError

# The largest image any reader decodes: 8192 x 8192 (a 4k x 5k mammogram or a 3k x 3k chest film fits). A
# 12000^2 PNG of 140 KB otherwise decodes to gigabytes; checked from the header, before the pixels are read.
MAX_PIXELS = 8192 * 8192


def check_pixels(path: Path, height: int, width: int) -> None:
    """Refuse an image of more than `MAX_PIXELS` pixels, naming the file (a MedrefError, so `prepare
    --skip-invalid` skips it)."""
    if height * width > MAX_PIXELS:
        raise MedrefError(f"{path}: image of {width}x{height} pixels is larger than the {MAX_PIXELS:,}-pixel "
                          "limit (8192x8192); downscale it first")
