"""MONAI dictionary transforms specific to referring segmentation.

Keys: `image` `(1, H, W)` float in [0, 1], `label` `(1, H, W)` float {0, 1} (absent when unlabelled),
`text` caption string, `zones` 6-int list. Randomness is drawn in `randomize()` apart from the apply step.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform

from medref_cli.imaging import read_prepared
from medref_cli.zones import flip_caption, flip_zones


def image_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 `(H, W)` 0..255 -> float32 `(1, H, W)` in [0, 1]: the one scaling of every image medref reads."""
    return torch.from_numpy(arr.astype(np.float32) * (1.0 / 255.0))[None]


class LoadPreparedd(MapTransform):
    """Prepared PNG paths -> `(1, H, W)` float32 tensors: image scaled to [0, 1], label {0, 1}.

    Reads with Pillow in (row, column) order, so image-left stays image-left (MONAI's PILReader
    would transpose the axes).
    """

    def __init__(self, keys: Sequence[str] = ("image", "label"), allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            arr = read_prepared(Path(d[key]), is_mask=key == "label")
            d[key] = torch.from_numpy(arr.astype(np.float32))[None] if key == "label" else image_tensor(arr)
        return d


class RandFlipTextd(RandomizableTransform, MapTransform):
    """Horizontal flip of image and label that also swaps left/right in the caption and zone vector."""

    def __init__(self, keys: Sequence[str] = ("image", "label"), prob: float = 0.5,
                 allow_missing_keys: bool = True) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = torch.flip(d[key], dims=(-1,))
        if "text" in d:
            d["text"] = flip_caption(d["text"])
        if "zones" in d:
            d["zones"] = list(flip_zones(d["zones"]))
        return d


class _RandPerKeyd(RandomizableTransform, MapTransform):
    """One random draw per item (`randomize`), then `apply(key, value)` to each key when it fires."""

    def __init__(self, keys: Sequence[str], prob: float, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def apply(self, key: Hashable, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if self._do_transform:
            for key in self.key_iterator(d):
                d[key] = self.apply(key, d[key])
        return d


class RandBrightnessContrastd(_RandPerKeyd):
    """Colour jitter for grayscale: brightness and contrast factors in [1 - s, 1 + s], output clipped to [0, 1]."""

    def __init__(self, keys: Sequence[str], strength: float = 0.2, prob: float = 0.8,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.strength = strength
        self.brightness = 1.0
        self.contrast = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.brightness = float(self.R.uniform(1 - self.strength, 1 + self.strength))
        self.contrast = float(self.R.uniform(1 - self.strength, 1 + self.strength))

    def apply(self, key: Hashable, value: torch.Tensor) -> torch.Tensor:
        img = value * self.brightness
        mean = img.mean()
        return ((img - mean) * self.contrast + mean).clamp(0.0, 1.0)


class RandZWindowd(_RandPerKeyd):
    """The official code's photometric strong view, on medref's [0, 1] images. There the student's image is
    z-scored, then torchvision's ColorJitter(brightness, contrast) clips it to [0, 1] at each of its two steps
    (random order): every pixel darker than the image mean, and every one brighter than mean + 1 std, is
    flattened, about half of a chest X-ray. Here the same two clipped steps run on the z-scored image, which is
    then mapped back with the image's own mean and std, so the strong view keeps the weak view's scale."""

    def __init__(self, keys: Sequence[str], strength: float = 0.2, prob: float = 0.8,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.strength = strength
        self.brightness, self.contrast, self.brightness_first = 1.0, 1.0, True

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.brightness = float(self.R.uniform(1 - self.strength, 1 + self.strength))
        self.contrast = float(self.R.uniform(1 - self.strength, 1 + self.strength))
        self.brightness_first = bool(self.R.rand() < 0.5)

    def apply(self, key: Hashable, value: torch.Tensor) -> torch.Tensor:
        mean, std = value.mean(), value.std().clamp(min=1e-6)
        z = (value - mean) / std
        for brightness in ((True, False) if self.brightness_first else (False, True)):
            if brightness:
                z = (z * self.brightness).clamp(0.0, 1.0)
            else:
                z = ((z - z.mean()) * self.contrast + z.mean()).clamp(0.0, 1.0)
        return z * std + mean


class RandCentreZoomd(_RandPerKeyd):
    """Zoom about the centre by one factor drawn from [min_zoom, max_zoom], keeping the size: resize, then
    centre-crop (zoom in) or edge-pad (zoom out). Images bilinear, `label` nearest. Same output as MONAI's
    `RandZoomd(keep_size=True, padding_mode="edge")` (tested) with one `interpolate` and one slice or `pad`:
    MONAI's general version took half of the training loader's time (bench/RESULTS.md)."""

    def __init__(self, keys: Sequence[str], prob: float, min_zoom: float, max_zoom: float,
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.min_zoom, self.max_zoom = min_zoom, max_zoom
        self.factor = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.factor = float(self.R.uniform(self.min_zoom, self.max_zoom))

    def apply(self, key: Hashable, value: torch.Tensor) -> torch.Tensor:
        return centre_zoom(value, self.factor, nearest=key == "label")


def centre_zoom(img: torch.Tensor, factor: float, nearest: bool = False) -> torch.Tensor:
    """`(C, H, W)` -> zoomed by `factor` about the centre, same `(C, H, W)`."""
    import torch.nn.functional as F

    h, w = img.shape[-2:]
    zh, zw = max(1, int(h * factor)), max(1, int(w * factor))  # floor, as MONAI
    if (zh, zw) == (h, w):
        return img
    mode = {"mode": "nearest"} if nearest else {"mode": "bilinear", "align_corners": False}
    out = F.interpolate(img[None], size=(zh, zw), **mode)[0]
    if zh >= h and zw >= w:
        top, left = (zh - h) // 2, (zw - w) // 2
        return out[:, top : top + h, left : left + w].contiguous()
    ph, pw = h - zh, w - zw
    out = F.pad(out[None], (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")[0]
    return out
