"""Overlay pictures people look at: image | ground truth | prediction, with the caption underneath."""

from __future__ import annotations

import io
import textwrap

import numpy as np
from PIL import Image, ImageDraw


def tint(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """uint8 (H, W) gray + {0,1} mask -> uint8 (H, W, 3) with the mask blended in `colour`."""
    rgb = np.repeat(image[..., None], 3, axis=-1).astype(np.float32)
    m = mask.astype(bool)
    rgb[m] = 0.55 * rgb[m] + 0.45 * np.asarray(colour, np.float32)
    return rgb.clip(0, 255).astype(np.uint8)


def panel(image: np.ndarray, pred: np.ndarray, caption: str, truth: np.ndarray | None = None,
          title: str = "") -> Image.Image:
    tiles = [np.repeat(image[..., None], 3, axis=-1)]
    if truth is not None:
        tiles.append(tint(image, truth, (0, 200, 0)))
    tiles.append(tint(image, pred, (230, 40, 40)))
    strip = np.concatenate(tiles, axis=1)
    h, w = strip.shape[:2]
    lines = textwrap.wrap(f"{title} {caption}".strip(), width=max(20, w // 7))
    canvas = Image.new("RGB", (w, h + 14 * len(lines) + 6), "white")
    canvas.paste(Image.fromarray(strip), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((4, h + 3 + 14 * i), line, fill="black")
    return canvas


def panel_png(image: np.ndarray, pred: np.ndarray, caption: str, truth: np.ndarray | None = None,
              title: str = "") -> bytes:
    """`panel` as PNG file bytes (what `evaluate` and `predict` write)."""
    buf = io.BytesIO()
    panel(image, pred, caption, truth, title).save(buf, format="PNG")
    return buf.getvalue()
