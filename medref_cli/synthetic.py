"""Deterministic synthetic chest X-ray / CT look-alikes with zone-placed lesions, in the real raw layouts.

Each image has two lung fields; lesions (bright soft blobs, mask = blob interior) are placed in the zones
of a drawn 6-bit zone vector, and the caption is written from those zones in the LViT grammar. With
`distractors`, identical-looking opacities are added in zones the caption does not name and left out of
the mask, so only the text tells lesion from distractor.

- `qata` style: CXR look (bright body, dark lungs, ribs), GuideDecoder layout
  (`prompt/{train,test}.csv` with mask names, `{Train,Test}/{Images,GTs}`), masks {0,255}.
- `mosmed` style: axial CT look, LViT layout with `;` CSV ports (`{Train,Val,Test}_Folder/{img,labelcol}`
  + `*_text.csv`), lesion counts in the caption, `all left lung`, a few empty slices and 3-channel masks.

Same arguments -> byte-identical files (numpy PCG64 seeded per image; PNG written by Pillow).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medref_cli.zones import caption_from_zones, count_word

LUNG_CENTRES = ((0.30, 0.50), (0.70, 0.50))  # (x, y) as fractions; image-left lung first
LUNG_AXES = (0.17, 0.33)


@dataclass(frozen=True)
class SampleSpec:
    style: str = "qata"  # "qata" | "mosmed"
    n: int = 60
    size: int = 128
    seed: int = 0
    distractors: bool = True


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def _draw_zones(rng: np.random.Generator, allow_empty: bool) -> tuple[int, ...]:
    if allow_empty and rng.random() < 0.1:
        return (0,) * 6
    sides = [[0], [1], [0, 1]][rng.choice(3, p=[0.3, 0.3, 0.4])]
    bits = [0] * 6
    for s in sides:
        k = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
        for level in rng.choice(3, size=k, replace=False):
            bits[3 * s + int(level)] = 1
    return tuple(bits)


def _blob_centre(rng: np.random.Generator, zone: int, size: int, lungs: tuple) -> tuple[float, float]:
    """A point inside lung `zone // 3` and row third `zone % 3` (image coordinates, pixels); `lungs` holds
    this image's ((cx, cy), (ax, ay)) per lung as fractions."""
    (cx, cy), (ax, ay) = lungs[zone // 3]
    y_lo, y_hi = max(cy - ay, (zone % 3) / 3), min(cy + ay, (zone % 3 + 1) / 3)
    margin = 0.04
    while True:
        y = rng.uniform(y_lo + margin, y_hi - margin)
        x = rng.uniform(cx - ax, cx + ax)
        if ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 < 0.7 and (zone < 3) == (x < 0.5):
            return x * size, y * size


def _blob(yy: np.ndarray, xx: np.ndarray, centre: tuple[float, float], r: tuple[float, float]) -> np.ndarray:
    """Signed ellipse distance field: < 1 inside."""
    return ((xx - centre[0]) / r[0]) ** 2 + ((yy - centre[1]) / r[1]) ** 2


def _lungs(rng: np.random.Generator) -> tuple:
    """This image's lung fields: centres shifted by up to 3 % and axes scaled 0.9-1.1 (patients differ)."""
    scale = rng.uniform(0.9, 1.1)
    return tuple(((cx + rng.uniform(-0.03, 0.03), cy + rng.uniform(-0.03, 0.03)),
                  (LUNG_AXES[0] * scale, LUNG_AXES[1] * scale)) for cx, cy in LUNG_CENTRES)


def _opacity(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, centre: tuple[float, float],
             s: int) -> tuple[np.ndarray, np.ndarray]:
    """One opacity: 1-3 overlapping ellipses (radii 3-10 % of the image, so small and large, round and
    elongated) with a mottled texture and a contrast from faint to dense. (intensity added, interior mask)."""
    add = np.zeros_like(xx)
    inside = np.zeros(xx.shape, bool)
    strength = rng.uniform(30, 80)
    phase = rng.uniform(0, 2 * np.pi, 2)
    freq = rng.uniform(0.15, 0.4, 2) * 64 / s
    texture = 1 + 0.25 * np.sin(freq[0] * xx + phase[0]) * np.sin(freq[1] * yy + phase[1])
    for k in range(int(rng.integers(1, 4))):
        c = centre if k == 0 else (centre[0] + rng.normal(0, 0.04 * s), centre[1] + rng.normal(0, 0.04 * s))
        radii = (rng.uniform(0.03, 0.10) * s, rng.uniform(0.03, 0.10) * s)
        d = _blob(yy, xx, c, radii)
        add = np.maximum(add, strength * np.clip(1.25 - d, 0, 1) ** 0.7 * texture)
        inside |= d < 1
    return add, inside


def render(rng: np.random.Generator, zones: tuple[int, ...], spec: SampleSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """One synthetic image. Returns (uint8 image HxW, uint8 mask {0,1} HxW, number of lesions)."""
    s = spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    lung_geo = _lungs(rng)
    lungs = np.zeros((s, s), np.float32)
    for (cx, cy), (ax, ay) in lung_geo:
        d = _blob(yy, xx, (cx * s, cy * s), (ax * s, ay * s))
        lungs = np.maximum(lungs, np.clip((1.15 - d) / 0.3, 0, 1))
    if spec.style == "qata":
        img = 185 - 35 * (np.abs(xx - s / 2) / s) - 110 * lungs
        for k in range(6):  # ribs: bright arcs across both lungs
            y0 = s * (0.22 + 0.11 * k) + rng.uniform(-2, 2)
            arc = y0 + 0.0025 * (xx - s / 2) ** 2 / (s / 128)
            img += 22 * np.exp(-(((yy - arc) / (0.012 * s)) ** 2)) * lungs
    else:
        body = np.clip((1.1 - _blob(yy, xx, (s / 2, s / 2), (0.46 * s, 0.40 * s))) / 0.1, 0, 1)
        img = 15 + 95 * body - 80 * lungs
        img += 120 * (_blob(yy, xx, (s / 2, 0.8 * s), (0.06 * s, 0.06 * s)) < 1)  # spine
    mask = np.zeros((s, s), bool)
    n_lesions = 0
    placed = [(z, True) for z in range(6) if zones[z]]
    distractor_zones = [z for z in range(6) if not zones[z]]
    if spec.distractors and distractor_zones:
        k = int(rng.integers(1, min(2, len(distractor_zones)) + 1))
        placed += [(int(z), False) for z in rng.choice(distractor_zones, size=k, replace=False)]
    for zone, is_lesion in placed:
        for _ in range(int(rng.integers(1, 3)) if is_lesion else 1):
            add, inside = _opacity(rng, yy, xx, _blob_centre(rng, zone, s, lung_geo), s)
            img += add * np.clip(lungs * 1.5, 0, 1)  # opacities stay inside the lung fields
            if is_lesion:
                mask |= inside & (lungs > 0.5)
                n_lesions += 1
    img = (img - 110) * rng.uniform(0.85, 1.15) + 110 + rng.uniform(-15, 15)  # exposure differs per image
    img += rng.normal(0, rng.uniform(4, 9), (s, s))
    return np.clip(img, 0, 255).astype(np.uint8), mask.astype(np.uint8), n_lesions


def mosmed_caption(zones: tuple[int, ...], n_lesions: int) -> str:
    """MosMedData+ style: lesion count, `all <side> lung`, the corpus's own quirks."""
    if not any(zones):
        return "No pulmonary infection, zero infected areas."
    locs = []
    for s, side in enumerate(("left", "right")):
        levels = [("upper", "middle", "lower")[i] for i in range(3) if zones[3 * s + i]]
        if len(levels) == 3:
            locs.append(f"all {side} lung")
        elif levels:
            locs.append(f"{' '.join(levels)} {side} lung")
    lat = "Bilateral" if len(locs) == 2 else "Unilateral"
    end = ".." if all(zones) else "."
    return f"{lat} pulmonary infection, {count_word(n_lesions)} infected areas, {' and '.join(locs)}{end}"


def _samples(spec: SampleSpec):
    for i in range(spec.n):
        rng = np.random.default_rng([spec.seed, i, 0 if spec.style == "qata" else 1])
        zones = _draw_zones(rng, allow_empty=spec.style == "mosmed")
        image, mask, n_lesions = render(rng, zones, spec)
        if spec.style == "qata":
            caption = caption_from_zones(zones)
        else:
            caption = mosmed_caption(zones, n_lesions)
        yield i, image, mask, caption


def write_qata(out: Path, spec: SampleSpec) -> None:
    """GuideDecoder layout; 75 % train / 25 % test."""
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    n_train = round(spec.n * 0.75)
    for i, image, mask, caption in _samples(spec):
        split = "train" if i < n_train else "test"
        name = f"synth_{i:04d}.png"
        img_dir, gt_dir = out / split.capitalize() / "Images", out / split.capitalize() / "GTs"
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        (img_dir / name).write_bytes(_png(image))
        (gt_dir / f"mask_{name}").write_bytes(_png(mask * np.uint8(255)))
        rows[split].append((f"mask_{name}", caption))
    (out / "prompt").mkdir(parents=True, exist_ok=True)
    for split, entries in rows.items():
        with (out / "prompt" / f"{split}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["Image", "Description"])
            writer.writerows(entries)


def write_mosmed(out: Path, spec: SampleSpec) -> None:
    """LViT folder layout with `;` CSV ports; 70 / 15 / 15 split; every 7th mask saved as RGB."""
    rows: dict[str, list[tuple[str, str]]] = {"Train": [], "Val": [], "Test": []}
    n_train, n_val = round(spec.n * 0.7), round(spec.n * 0.15)
    for i, image, mask, caption in _samples(spec):
        split = "Train" if i < n_train else "Val" if i < n_train + n_val else "Test"
        name = f"slice_{i:04d}.png"
        img_dir, gt_dir = out / f"{split}_Folder" / "img", out / f"{split}_Folder" / "labelcol"
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        (img_dir / name).write_bytes(_png(image))
        m = mask * np.uint8(255)
        (gt_dir / name).write_bytes(_png(np.stack([m] * 3, -1) if i % 7 == 3 else m))
        rows[split].append((name, caption))
    for split, entries in rows.items():
        with (out / f"{split}_text.csv").open("w", newline="") as fh:
            fh.write("Image;text\n")
            fh.writelines(f"{name};{caption}\n" for name, caption in entries)


def write(out: Path, spec: SampleSpec) -> None:
    (write_qata if spec.style == "qata" else write_mosmed)(out, spec)


SAMPLE_N = 200  # images per sample dataset: 10 % labels leave 12-14 masks for the lesions' variety
SAMPLE_SIZE = 96


def write_sample_data(root: Path, n: int = SAMPLE_N, size: int = SAMPLE_SIZE, seed: int = 0,
                      distractors: bool = True) -> None:
    """The committed `sample_data/`: `qata-mini/` and `mosmed-mini/`."""
    write(root / "qata-mini", SampleSpec("qata", n, size, seed, distractors))
    write(root / "mosmed-mini", SampleSpec("mosmed", n, size, seed, distractors))


if __name__ == "__main__":
    import sys

    write_sample_data(Path(sys.argv[1] if len(sys.argv) > 1 else "sample_data"))
