"""Split rules: labelled / unlabelled / val / test id lists for one dataset, ratio and seed.

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
    """Pure: the split for a manifest. Same inputs -> same lists. Val and test hold only images with a mask
    (carved from the masked train images; a val/test image without one is left out)."""
    where = f"dataset {manifest.name!r}"
    by_split: dict[str, list[str]] = {}
    has_mask = manifest.masked_ids()
    for r in sorted(manifest.records, key=lambda r: r.id):
        part = r.split if r.split in ("train", "val", "test") else "train"
        if part != "train" and r.id not in has_mask:
            part = "held-out without mask"  # nothing to score against: in no part of the split
        by_split.setdefault(part, []).append(r.id)
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
            pool, val = _carve(pool, val_fraction, random.Random(seed + 1), has_mask, where)
            rule.append(f"val = {val_fraction:g} of train carved")
    elif by_split.get("val"):
        test = by_split["val"]
        pool, val = _carve(pool, val_fraction, random.Random(seed + 1), has_mask, where)
        rule.append(f"test = original val split (no test split); val = {val_fraction:g} of train carved")
    else:
        pool, test = _carve(pool, test_fraction, random.Random(seed + 2), has_mask, where)
        pool, val = _carve(pool, val_fraction, random.Random(seed + 1), has_mask, where)
        rule.append(f"test = {test_fraction:g} and val = {val_fraction:g} of train carved")
    if by_split.get("held-out without mask"):
        rule.append(f"{len(by_split['held-out without mask'])} val/test images without a mask left out")
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


def _carve(ids: list[str], fraction: float, rng: random.Random, has_mask: set[str] | None = None,
           what: str = "") -> tuple[list[str], list[str]]:
    """(rest, carved): `fraction` of `ids` drawn with `rng`. With `has_mask`, only images with a mask are drawn
    (val and test are scored against masks; an unlabelled image stays in the rest), and none is an error."""
    if not 0.0 < fraction < 1.0:
        raise MedrefError(f"carve fraction {fraction} must be in (0, 1)")
    eligible = ids if has_mask is None else [i for i in ids if i in has_mask]
    order = eligible[:]
    rng.shuffle(order)
    n = max(1, round(fraction * len(order))) if len(order) > 1 else 0
    if has_mask is not None and ids and not eligible:
        raise MedrefError(f"{what}: no training image left has a mask, none can be set aside for validation or "
                          "test (scored against masks); add masks or give val/test rows in the table's split column")
    carved = set(order[:n])
    return sorted(i for i in ids if i not in carved), sorted(carved)


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


def check_trainable(spec: SplitSpec, manifest: DatasetManifest, source: Path) -> None:
    """A split a training run can use: labelled and val images all have masks, and val is not empty (a split
    file written before val/test were limited to masked images, or edited by hand, is refused here rather than
    at the first validation)."""
    has_mask = manifest.masked_ids()
    for part in ("train_labeled", "val"):
        missing = [i for i in getattr(spec, part) if i not in has_mask]
        if missing:
            raise MedrefError(f"{source}: {len(missing)} {part} image(s) have no mask (e.g. {missing[0]!r}); "
                              "re-run `medref split --overwrite`")
    if not spec.val:
        raise MedrefError(f"{source}: the val part is empty; training selects its model on val: give images with "
                          "masks a val split or add masks to more training images")


def read_id_file(path: Path) -> list[str]:
    """Ids named by a split file: the official Semi-MedRef / SGSeg JSON (`{"train": [{"image_path": ...}]}`, every
    list of the object), a JSON list of names, or a text file with one name per line (`#` comments)."""
    import json

    if not path.is_file():
        raise MedrefError(f"{path}: split file not found")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MedrefError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        entries = [e for v in data.values() if isinstance(v, list) for e in v] if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise MedrefError(f"{path}: expected a list of names or an object of lists")
        names = []
        for i, e in enumerate(entries):
            name = e.get("image_path") or e.get("image") if isinstance(e, dict) else e
            if not isinstance(name, str) or not name.strip():
                raise MedrefError(f"{path}: entry {i} has no image name (expected a string or an 'image_path')")
            names.append(name)
    else:
        names = [line.split("#")[0].strip() for line in text.splitlines()]
        names = [n for n in names if n]
    if not names:
        raise MedrefError(f"{path}: names no image")
    return names


def _match(manifest: DatasetManifest, names: list[str], source: Path) -> list[str]:
    """File / mask names or ids -> manifest ids (case-insensitive, `mask_` prefix and extension ignored)."""
    from medref_cli.importers.tables import image_key

    by_key = {image_key(r.id): r.id for r in manifest.records}
    ids, missing = [], []
    for name in names:
        rid = by_key.get(image_key(name))
        (ids if rid else missing).append(rid or name)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MedrefError(f"{source}: {len(missing)} id(s) not in dataset {manifest.name!r}: {shown}")
    return sorted(set(ids))


def import_split(manifest: DatasetManifest, ratio: Ratio, seed: int, labeled_file: Path,
                 unlabeled_file: Path | None = None, val_fraction: float = VAL_FRACTION) -> SplitSpec:
    """A split whose labelled ids (and, optionally, unlabelled ids) come from files. Test follows `make_split`'s
    rule; val = the train images neither file names (an official manifest pair leaves out its val), else
    `val_fraction` of the unlabelled pool, carved with `seed`."""
    base = make_split(manifest, ratio, seed, val_fraction)
    test = set(base.test)
    train = sorted(set(base.train_labeled) | set(base.train_unlabeled) | set(base.val))
    labeled = _match(manifest, read_id_file(labeled_file), labeled_file)
    has_mask = manifest.masked_ids()
    for rid in labeled:
        if rid in test:
            raise MedrefError(f"{labeled_file}: id {rid!r} is in the test split; it cannot be labelled")
        if rid not in has_mask:
            raise MedrefError(f"{labeled_file}: id {rid!r} has no mask; it cannot be labelled")
    rest = [i for i in train if i not in set(labeled)]
    if unlabeled_file is not None:
        unlabeled = _match(manifest, read_id_file(unlabeled_file), unlabeled_file)
        clash = sorted((set(unlabeled) & set(labeled)) | (set(unlabeled) & test))
        if clash:
            raise MedrefError(f"{unlabeled_file}: id {clash[0]!r} is also labelled or in the test split")
        val = [i for i in rest if i not in set(unlabeled) and i in has_mask]
        unlabeled = sorted(set(unlabeled) | {i for i in rest if i not in has_mask})
        rule = "labelled and unlabelled from files; val = train images with a mask neither file names"
        if not val:
            unlabeled, val = _carve(unlabeled, val_fraction, random.Random(seed + 1), has_mask, str(unlabeled_file))
            rule = f"labelled and unlabelled from files; val = {val_fraction:g} of the unlabelled carved"
    else:
        unlabeled, val = _carve(rest, val_fraction, random.Random(seed + 1), has_mask, str(labeled_file))
        rule = f"labelled from a file; val = {val_fraction:g} of the other train images carved"
    pool = len([i for i in train if i in has_mask and i not in set(val)])
    return SplitSpec(
        dataset=manifest.name, dataset_hash=manifest.dataset_hash, ratio=ratio.text,
        labeled_fraction=len(labeled) / max(1, pool), seed=seed, train_labeled=labeled,
        train_unlabeled=sorted(unlabeled), val=sorted(val), test=sorted(test),
        rule=f"{rule}; test as `medref split` ({base.rule.split(';')[0]}); imported from {labeled_file.name}",
    )
