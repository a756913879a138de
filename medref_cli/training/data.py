"""Datasets and loaders over a prepared dataset and a split: flat MONAI Compose lists, `CacheDataset`.

Weak view (SPEC 3.1): resize, mild random zoom (+ optional caption-aware flip), intensity in [0, 1].
Strong view: the weak image copied to `image_s`, then a photometric change (p 0.8) and Gaussian blur (p 0.5):
same geometry, so a teacher's prediction on `image` aligns pixel for pixel with `image_s`. The photometric
change is `method.strong_view`: `jitter` (brightness/contrast 0.2 in [0, 1]) or `window` (the official code's:
the same jitter on the z-scored image, clipped to [0, 1], see `RandZWindowd`).

MONAI's metadata tracking is switched off while a stage runs (`without_meta_tracking`, which restores the
caller's setting after): nothing here reads `MetaTensor.meta`, tracking it made the training loader about 2x
slower, and a MetaTensor batch sent every model op through `__torch_function__` (bench/RESULTS.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from monai.data import CacheDataset, DataLoader, get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    CopyItemsd,
    RandGaussianSmoothd,
    Resized,
)

from medref_cli.artifacts import DatasetManifest
from medref_cli.config import TrainConfig
from medref_cli.training.transforms import (
    LoadPreparedd,
    RandBrightnessContrastd,
    RandCentreZoomd,
    RandFlipTextd,
    RandZWindowd,
)

KEYS = ("image", "label")
F = TypeVar("F", bound=Callable[..., Any])


def without_meta_tracking(fn: F) -> F:
    """Run `fn` with MONAI metadata tracking off (a process-wide flag), then restore the caller's setting."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = get_track_meta()
        set_track_meta(False)
        try:
            return fn(*args, **kwargs)
        finally:
            set_track_meta(before)

    return wrapper  # type: ignore[return-value]


def items(manifest: DatasetManifest, folder: Path, ids: list[str], with_labels: bool = True) -> list[dict]:
    """Split ids -> MONAI item dicts; `label` only where a mask exists and `with_labels`."""
    by_id = manifest.by_id()
    out = []
    for rid in ids:
        r = by_id[rid]
        item = {"id": rid, "image": str(folder / r.image), "text": r.caption, "zones": list(r.zones),
                "zones_known": bool(r.zones_known)}
        if with_labels and r.mask is not None:
            item["label"] = str(folder / r.mask)
        out.append(item)
    return out


def base_transforms(size: int) -> list:
    return [
        LoadPreparedd(KEYS),
        Resized(KEYS, spatial_size=(size, size), mode=("bilinear", "nearest"), allow_missing_keys=True),
    ]


def weak_transforms(cfg: TrainConfig) -> list:
    out: list = []
    if cfg.zoom_prob > 0:
        out.append(RandCentreZoomd(KEYS, prob=cfg.zoom_prob, min_zoom=cfg.zoom[0], max_zoom=cfg.zoom[1]))
    if cfg.hflip_prob > 0:
        out.append(RandFlipTextd(KEYS, prob=cfg.hflip_prob))
    return out


STRONG_KEYS = ("image_s", "image_s2")  # the first and (with `method.strong_views: 2`) second strong view


def strong_transforms(size: int, view: str = "jitter", views: int = 1) -> list:
    """Each strong view is its own copy of the weak image with its own random draws."""
    sigma = (0.1 * size / 224, 2.0 * size / 224)
    photometric = RandZWindowd if view == "window" else RandBrightnessContrastd
    out: list = []
    for key in STRONG_KEYS[:views]:
        out += [
            CopyItemsd("image", times=1, names=key),
            photometric(key, strength=0.2, prob=0.8),
            RandGaussianSmoothd(key, sigma_x=sigma, sigma_y=sigma, prob=0.5),
        ]
    return out


def train_dataset(data: list[dict], cfg: TrainConfig, size: int, strong: bool = False,
                  view: str = "jitter", views: int = 1) -> CacheDataset:
    steps = base_transforms(size) + weak_transforms(cfg) + (strong_transforms(size, view, views) if strong else [])
    return CacheDataset(data, Compose(steps), cache_rate=1.0, num_workers=0, progress=False, copy_cache=False)


def eval_dataset(data: list[dict], size: int) -> CacheDataset:
    return CacheDataset(data, Compose(base_transforms(size)), cache_rate=1.0, num_workers=0, progress=False,
                        copy_cache=False)


def collate(batch: list[dict]) -> dict:
    """Stack tensors, keep strings as lists; `zones` `(B, 6)` long, `zones_known` `(B,)` bool (False: the report
    names no position); `label` only if every item has one."""
    out: dict = {"id": [b["id"] for b in batch], "text": [b["text"] for b in batch],
                 "zones": torch.tensor([b["zones"] for b in batch], dtype=torch.long),
                 "zones_known": torch.tensor([b.get("zones_known", True) for b in batch], dtype=torch.bool)}
    for key in ("image", *STRONG_KEYS, "label"):
        if all(key in b for b in batch):
            out[key] = torch.stack([torch.as_tensor(b[key]) for b in batch])
    return out


def loader(ds: CacheDataset, batch_size: int, shuffle: bool, num_workers: int, batch_sampler=None,  # noqa: ANN001
           generator: torch.Generator | None = None) -> DataLoader:
    """A batch loader; with `batch_sampler` (lists of indices) batch_size and shuffle are ignored."""
    if batch_sampler is not None:
        return DataLoader(ds, batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate,
                          generator=generator)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, collate_fn=collate,
                      generator=generator)
