"""`medref split`: labelled / unlabelled / val / test id lists for one dataset, ratio and seed.

Rules (documented in the README):
- test = the dataset's own `test` split; if it has none, its `val` split becomes test (QaTa in
  ../shared ships train+valid only, and `valid` is the held-out set); if it has neither, `test_fraction`
  of the train pool is carved.
- val = the dataset's own `val` split when test came from `test`; otherwise `val_fraction` of the
  train pool is carved (LViT carves 20 %).
- labelled count = max(1, round(fraction * n_train)) for a ratio, or exactly N for a count; the first N
  of a seeded permutation of the train pool, so a smaller ratio with the same seed is a subset of a
  larger one. Only labelled images (with a mask) can be drawn as labelled.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from medref_cli.artifacts import DatasetManifest, SplitSpec, load_dataset, load_split
from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


@dataclass
class SplitConfig:
    dataset: str
    labeled: str
    seed: int = 42
    val_fraction: float = VAL_FRACTION
    test_fraction: float = TEST_FRACTION
    overwrite: bool = False


@dataclass(frozen=True)
class Ratio:
    text: str
    fraction: float | None  # None when a count was given
    count: int | None
    slug: str  # used in file names: 5pct, n50

    def labeled_count(self, n_train: int) -> int:
        if self.count is not None:
            if self.count > n_train:
                raise MedrefError(f"--labeled {self.text}: only {n_train} training images have masks")
            return self.count
        assert self.fraction is not None
        return min(n_train, max(1, round(self.fraction * n_train)))


def parse_ratio(text: str) -> Ratio:
    """`10%`, `0.1` or a count `50` (an integer > 1)."""
    t = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", t)
    try:
        if m:
            frac = float(m.group(1)) / 100.0
        elif re.fullmatch(r"\d+", t) and int(t) > 1:
            return Ratio(t, None, int(t), f"n{int(t)}")
        else:
            frac = float(t)
    except ValueError:
        raise MedrefError(f"--labeled {text!r}: expected a percentage (10%), a fraction (0.1) or a count (50)") from None
    if not 0.0 < frac <= 1.0:
        raise MedrefError(f"--labeled {text!r}: the ratio must be > 0 and <= 100%")
    pct = frac * 100.0
    slug = f"{pct:g}pct".replace(".", "p")
    return Ratio(t, frac, None, slug)


def split_path(ws: Workspace, dataset: str, ratio: Ratio, seed: int) -> Path:
    return ws.splits / f"{dataset}-{ratio.slug}-s{seed}.json"


def make_split(manifest: DatasetManifest, ratio: Ratio, seed: int,
               val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION) -> SplitSpec:
    """Pure: the split for a manifest. Same inputs -> same lists."""
    by_split: dict[str, list[str]] = {}
    for r in sorted(manifest.records, key=lambda r: r.id):
        by_split.setdefault(r.split if r.split in ("train", "val", "test") else "train", []).append(r.id)
    rng = random.Random(seed)
    pool = by_split.get("train", [])
    rule = []
    if by_split.get("test"):
        test = by_split["test"]
        rule.append("test = original test split")
        if by_split.get("val"):
            val = by_split["val"]
            rule.append("val = original val split")
        else:
            pool, val = _carve(pool, val_fraction, random.Random(seed + 1))
            rule.append(f"val = {val_fraction:g} of train carved")
    elif by_split.get("val"):
        test = by_split["val"]
        pool, val = _carve(pool, val_fraction, random.Random(seed + 1))
        rule.append(f"test = original val split (no test split); val = {val_fraction:g} of train carved")
    else:
        pool, test = _carve(pool, test_fraction, random.Random(seed + 2))
        pool, val = _carve(pool, val_fraction, random.Random(seed + 1))
        rule.append(f"test = {test_fraction:g} and val = {val_fraction:g} of train carved")
    has_mask = {r.id for r in manifest.records if r.mask is not None}
    maskable = [i for i in pool if i in has_mask]
    if not maskable:
        raise MedrefError(f"dataset {manifest.name!r}: no training image has a mask")
    order = maskable[:]
    rng.shuffle(order)
    k = ratio.labeled_count(len(maskable))
    labeled = set(order[:k])
    rule.append(f"labelled = max(1, round(ratio x {len(maskable)})) = {k}, seeded permutation")
    return SplitSpec(
        dataset=manifest.name, dataset_hash=manifest.dataset_hash, ratio=ratio.text,
        labeled_fraction=k / len(maskable), seed=seed,
        train_labeled=sorted(labeled), train_unlabeled=sorted(i for i in pool if i not in labeled),
        val=sorted(val), test=sorted(test), rule="; ".join(rule),
    )


def _carve(ids: list[str], fraction: float, rng: random.Random) -> tuple[list[str], list[str]]:
    if not 0.0 < fraction < 1.0:
        raise MedrefError(f"carve fraction {fraction} must be in (0, 1)")
    order = ids[:]
    rng.shuffle(order)
    n = max(1, round(fraction * len(order))) if len(order) > 1 else 0
    return sorted(order[n:]), sorted(order[:n])


def run(cfg: SplitConfig, ws: Workspace) -> tuple[SplitSpec, Path]:
    ratio = parse_ratio(cfg.labeled)
    manifest, _ = load_dataset(ws, cfg.dataset)
    path = split_path(ws, cfg.dataset, ratio, cfg.seed)
    if path.exists() and not cfg.overwrite:
        raise MedrefError(f"{path}: already exists; pass --overwrite to replace it")
    spec = make_split(manifest, ratio, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    spec.save(path)
    return spec, path


def ensure(ws: Workspace, dataset: str, labeled: str, seed: int) -> tuple[SplitSpec, Path, bool]:
    """The split file for (dataset, ratio, seed), made if missing; checked against the dataset hash."""
    ratio = parse_ratio(labeled)
    manifest, _ = load_dataset(ws, dataset)
    path = split_path(ws, dataset, ratio, seed)
    if path.exists():
        spec = load_split(path)
        if spec.dataset_hash != manifest.dataset_hash:
            raise MedrefError(
                f"{path}: made for another version of dataset {dataset!r}; re-run `medref split --overwrite`"
            )
        return spec, path, False
    spec = make_split(manifest, ratio, seed)
    spec.save(path)
    return spec, path, True
