"""Schemas of the artifacts stages exchange: the dataset manifest and the split file.

Each artifact is JSON with a `schema_version`; readers refuse other versions and name the command
that produces a missing artifact.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace, read_json, write_json_atomic

DATASET_SCHEMA = 1
SPLIT_SCHEMA = 1
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Record:
    """One image of a prepared dataset; paths are relative to the dataset folder."""

    id: str
    split: str  # the original split: train | val | test
    image: str
    mask: str | None
    caption: str
    zones: list[int]
    height: int
    width: int
    source_image: str  # relative to the raw root
    source_mask: str | None
    image_sha256: str
    mask_sha256: str | None
    zones_known: bool = True  # False: the report names no position (no positional constraint in training)


@dataclass
class DatasetManifest:
    name: str
    kind: str  # qata | mosmed | custom
    source: str
    layout: str
    records: list[Record]
    dataset_hash: str = ""
    schema_version: int = DATASET_SCHEMA
    format: str = "images/<id>.png uint8 grayscale; masks/<id>.png uint8 {0,255}"
    created_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # The sides free-text reports name: `patient` (radiology convention; on a frontal chest X-ray the patient's
    # right is the image left) or `image`. Template captions (QaTa / MosMed) always name image sides. Record
    # zone vectors are image space either way (left = columns [0, W/2)).
    laterality: str = "image"

    def compute_hash(self) -> str:
        h = hashlib.sha256()
        for r in sorted(self.records, key=lambda r: r.id):
            h.update(f"{r.id}\0{r.split}\0{r.image_sha256}\0{r.mask_sha256}\0{r.caption}\n".encode())
        if self.laterality != "image":  # the zones differ; datasets prepared before the field keep their hash
            h.update(f"laterality={self.laterality}".encode())
        return h.hexdigest()

    def by_id(self) -> dict[str, Record]:
        return {r.id: r for r in self.records}

    def save(self, folder: Path) -> None:
        self.dataset_hash = self.compute_hash()
        write_json_atomic(folder / "dataset.json", asdict(self))


def load_dataset(ws: Workspace, name: str) -> tuple[DatasetManifest, Path]:
    """Read and validate `<workdir>/datasets/<name>/dataset.json`."""
    folder = ws.dataset_dir(name)
    if not (folder / "dataset.json").is_file():
        known = ", ".join(ws.prepared_datasets()) or "none"
        raise MedrefError(
            f"{folder / 'dataset.json'}: dataset {name!r} is not prepared (prepared: {known}); "
            f"run `medref prepare qata|mosmed|sample` first"
        )
    return load_manifest(folder), folder


def load_manifest(folder: Path) -> DatasetManifest:
    path = folder / "dataset.json"
    data = read_json(path, "medref prepare")
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != DATASET_SCHEMA:
        raise MedrefError(
            f"{path}: schema version {version!r} is not supported (expected {DATASET_SCHEMA}); "
            f"re-run `medref prepare ... --overwrite`"
        )
    try:
        records = [Record(**r) for r in data.pop("records")]
        manifest = DatasetManifest(records=records, **data)
    except (TypeError, KeyError) as exc:
        raise MedrefError(f"{path}: malformed manifest ({exc})") from None
    root = folder.resolve()
    for r in manifest.records:
        for rel in (r.image, r.mask):
            if rel is not None and not (root / rel).resolve().is_relative_to(root):
                raise MedrefError(f"{path}: record {r.id!r} path {rel!r} escapes the dataset folder")
    return manifest


@dataclass
class SplitSpec:
    dataset: str
    dataset_hash: str
    ratio: str  # as the user wrote it, e.g. "5%"
    labeled_fraction: float
    seed: int
    train_labeled: list[str]
    train_unlabeled: list[str]
    val: list[str]
    test: list[str]
    rule: str = ""
    schema_version: int = SPLIT_SCHEMA

    def check_disjoint(self, source: str = "split") -> None:
        seen: dict[str, str] = {}
        for part in ("train_labeled", "train_unlabeled", "val", "test"):
            for rid in getattr(self, part):
                if rid in seen:
                    raise MedrefError(f"{source}: id {rid!r} is in both {seen[rid]} and {part}")
                seen[rid] = part

    def save(self, path: Path) -> None:
        self.check_disjoint(str(path))
        write_json_atomic(path, asdict(self))


def load_split(path: Path) -> SplitSpec:
    data = read_json(path, "medref split")
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SPLIT_SCHEMA:
        raise MedrefError(f"{path}: split schema version {version!r} is not supported (expected {SPLIT_SCHEMA})")
    try:
        spec = SplitSpec(**data)
    except TypeError as exc:
        raise MedrefError(f"{path}: malformed split file ({exc})") from None
    spec.check_disjoint(str(path))
    return spec
