"""Small line plots drawn with Pillow (training curves, Dice vs label ratio) — no plotting dependency."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]

Series = dict[str, list[tuple[float, float, float]]]  # name -> [(x, y, error)]


def line_plot(series: Series, path: Path, title: str, xlabel: str, ylabel: str,
              size: tuple[int, int] = (720, 440), x_labels: list[str] | None = None) -> None:
    """Lines with optional error bars; writes a PNG atomically (temp name, then rename)."""
    w, h = size
    left, right, top, bottom = 60, 170, 34, 46
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    points = [(x, y, e) for pts in series.values() for x, y, e in pts if math.isfinite(y)]
    draw.text((left, 10), title, fill="black")
    if not points:
        draw.text((left, h // 2), "no data", fill="black")
        _save(img, path)
        return
    xs = [p[0] for p in points]
    lo = min(p[1] - p[2] for p in points)
    hi = max(p[1] + p[2] for p in points)
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right), top + (hi - y) / (hi - lo) * (h - top - bottom))

    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(5):
        y = lo + (hi - lo) * k / 4
        _, py = px(x0, y)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((4, py - 6), f"{y:.3g}", fill="black")
    ticks = sorted(set(xs))
    if len(ticks) > 10:
        ticks = [x0 + (x1 - x0) * k / 5 for k in range(6)]
    for i, x in enumerate(ticks):
        qx, _ = px(x, lo)
        draw.line([qx, h - bottom, qx, h - bottom + 4], fill="black")
        label = x_labels[i] if x_labels and i < len(x_labels) else f"{x:g}"
        draw.text((qx - 10, h - bottom + 6), label, fill="black")
    draw.text(((w - right + left) // 2 - 20, h - 18), xlabel, fill="black")
    draw.text((4, top - 16), ylabel, fill="black")
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        pts = [p for p in sorted(pts) if math.isfinite(p[1])]
        coords = [px(x, y) for x, y, _ in pts]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for (x, y, e), (cx, cy) in zip(pts, coords, strict=True):
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
            if e > 0:
                _, ya = px(x, y - e)
                _, yb = px(x, y + e)
                draw.line([cx, ya, cx, yb], fill=colour)
        ly = top + 6 + 16 * i
        draw.line([w - right + 10, ly + 6, w - right + 30, ly + 6], fill=colour, width=3)
        draw.text((w - right + 35, ly), name[:20], fill="black")
    _save(img, path)


def _save(img: Image.Image, path: Path) -> None:
    import io

    from medref_cli.workspace import write_bytes_atomic

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())
