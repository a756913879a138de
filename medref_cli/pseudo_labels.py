"""The `pseudo-label` output (`artifacts.PseudoLabelSet`) read back as training data, and the zone check it
records. Masks are `{0,255}` PNGs at the prepared size, paths relative to the output folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medref_cli.artifacts import load_pseudo_labels
from medref_cli.errors import MedrefError

ZONE_MIN_SHARE = 0.01  # a zone is seen in a mask when the mask covers at least this share of its region


def predicted_zones(mask: torch.Tensor) -> list[int]:
    """mask `(H, W)` bool -> 6-bit zones where the mask covers >= 1 % of the zone region."""
    from medref_cli.zone_masks import zone_regions

    regions = zone_regions(*mask.shape)
    share = (regions & mask[None]).flatten(1).sum(1).float() / regions.flatten(1).sum(1).float()
    return [int(s >= ZONE_MIN_SHARE) for s in share]


def checked_set(pl_dir: Path, manifest):  # noqa: ANN001, ANN201 - DatasetManifest -> PseudoLabelSet
    """The `pseudo-label` output in `pl_dir`, refused when missing, malformed or made for another dataset version
    (the training stages check it before any split or run folder exists)."""
    if not pl_dir.is_dir():
        raise MedrefError(f"--pseudo-labels {pl_dir}: not a folder; pass a `medref pseudo-label` output "
                          "(<run>/pseudo-labels-train_unlabeled)")
    meta = load_pseudo_labels(pl_dir / "pseudo_labels.json")
    if meta.dataset_hash != manifest.dataset_hash:
        raise MedrefError(f"{pl_dir / 'pseudo_labels.json'}: made for another dataset version than {manifest.name!r}")
    return meta


def extra_labeled(pl_dir: Path, manifest, folder: Path, spec) -> list[dict]:  # noqa: ANN001
    """Items of a `pseudo-label` output usable as labelled data for this split's unlabelled images.

    manifest/folder: the prepared dataset; spec: the split. Masks are read from `pl_dir` only: an entry whose
    mask path leaves `pl_dir` (`../`, an absolute path, a symlink out) is refused.
    """
    meta = checked_set(pl_dir, manifest)
    from medref_cli.training.data import items

    allowed = set(spec.train_unlabeled)
    base = pl_dir.resolve()
    masks: dict[str, Path] = {}
    for e in meta.entries:
        if e["id"] not in allowed:
            continue
        mask = (pl_dir / e["mask"]).resolve()
        if not mask.is_relative_to(base) or not mask.is_file():
            raise MedrefError(f"{pl_dir / 'pseudo_labels.json'}: mask path {e['mask']!r} is missing or escapes {pl_dir}")
        masks[e["id"]] = mask
    out = items(manifest, folder, list(masks), with_labels=False)  # the one item builder: zones_known kept
    for item in out:
        item["label"] = str(masks[item["id"]])
    return out
