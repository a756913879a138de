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
            scale = 1.0 if key == "label" else 1.0 / 255.0
            d[key] = torch.from_numpy(arr.astype(np.float32) * scale)[None]
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


class RandBrightnessContrastd(RandomizableTransform, MapTransform):
    """Colour jitter for grayscale: brightness and contrast factors in [1 - s, 1 + s], output clipped to [0, 1]."""

    def __init__(self, keys: Sequence[str], strength: float = 0.2, prob: float = 0.8,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.strength = strength
        self.brightness = 1.0
        self.contrast = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.brightness = float(self.R.uniform(1 - self.strength, 1 + self.strength))
        self.contrast = float(self.R.uniform(1 - self.strength, 1 + self.strength))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = d[key] * self.brightness
            mean = img.mean()
            d[key] = ((img - mean) * self.contrast + mean).clamp(0.0, 1.0)
        return d
