"""Every artifact stages exchange, with its schema, and the one loader that reads them (`load_artifact`).

- `datasets/<name>/dataset.json`: `DatasetManifest` (`medref prepare`)
- `splits/<dataset>-<ratio>-s<seed>.json`: `SplitSpec` (`medref split`)
- `runs/<run>/run.json`: `RunStatus`, how far the run got (`pretrain` / `semi-train`); what the run *is* (method,
  data, seed, config, inputs) is its `config.yaml`, `config.RunConfig` (`config.load_run_config`)
- `runs/<run>/eval-<split>/summary.json`: `EvalSummary`, and `per_case.csv` with `PER_CASE_HEADER` (`evaluate`)
- `runs/<run>/pseudo-labels-<split>/pseudo_labels.json` and `audit.json`: `PseudoLabelSet`, `PseudoLabelAudit`
  (`pseudo-label`)

Each is JSON (config.yaml: YAML) with a `schema_version` (a file written before the field existed reads as
version 1). One rule for all: `load_artifact` names the command that produces a missing file, brings an older
version up through the artifact's explicit migrations (one function per version step), refuses a newer one, and
names a malformed file; fields it does not know are ignored (a newer writer's additions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace, read_json, safe_load_yaml, write_json_atomic

DATASET_SCHEMA = 1
SPLIT_SCHEMA = 1
RUN_SCHEMA = 2  # 1 also held the run's identity, now in config.yaml (`migrate_run_v1`)
EVAL_SCHEMA = 1
AUDIT_SCHEMA = 1
PSEUDO_SCHEMA = 1
SPLIT_NAMES = ("train", "val", "test")


Migrations = dict[int, Callable[[dict[str, Any], Path], dict[str, Any]]]


def read_artifact(path: Path, producer: str) -> dict[str, Any]:
    """The mapping in a JSON artifact, or in a YAML one (`.yaml`, read with `workspace.safe_load_yaml`: a safe loader)."""
    if path.suffix != ".yaml":
        data = read_json(path, producer)
    else:
        import yaml

        if not path.is_file():
            raise MedrefError(f"{path}: not found; run `{producer}` first")
        try:
            data = safe_load_yaml(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise MedrefError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MedrefError(f"{path}: malformed (expected a mapping at the top level)")
    return data


def migrate(data: dict[str, Any], path: Path, version: int, migrations: Migrations | None, producer: str) \
        -> dict[str, Any]:
    """`data` brought to `version`: `migrations[v]` turns version v into v + 1, applied in turn; a version with no
    way up, or a newer one, is refused."""
    data = dict(data)
    data.setdefault("schema_version", 1)
    found = data["schema_version"]
    while isinstance(data["schema_version"], int) and data["schema_version"] < version \
            and data["schema_version"] in (migrations or {}):
        step = data["schema_version"]
        data = {**migrations[step](data, path), "schema_version": step + 1}
    if data["schema_version"] != version:
        newer = isinstance(found, int) and found > version
        raise MedrefError(f"{path}: schema version {found!r} is not supported (expected {version}); "
                          + ("a newer medref wrote it; " if newer else "") + f"re-run `{producer}`")
    return data


def load_artifact(cls: type, path: Path, version: int, producer: str, migrations: Migrations | None = None) -> Any:
    """`path` read as `cls`: a missing file names `producer`, an older `schema_version` is migrated (`migrate`),
    another is refused, a malformed file is named. A dataclass is built from the fields it knows (unknown ones
    are ignored); a class with a `from_dict(data, where)` builds itself."""
    try:
        data = migrate(read_artifact(path, producer), path, version, migrations, producer)
        if hasattr(cls, "from_dict"):
            return cls.from_dict(data, str(path))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise MedrefError(f"{path}: malformed ({exc.__class__.__name__}: {exc})") from None


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

    def masked_ids(self) -> set[str]:
        """Ids of the records that have a mask (the only ones that can be labelled, validated or tested)."""
        return {r.id for r in self.records if r.mask is not None}

    def save(self, folder: Path) -> None:
        self.dataset_hash = self.compute_hash()
        write_json_atomic(folder / "dataset.json", asdict(self))


def load_dataset(ws: Workspace, name: str) -> tuple[DatasetManifest, Path]:
    """Read and validate `<workdir>/datasets/<name>/dataset.json`."""
    from medref_cli.workspace import restore_interrupted

    folder = ws.dataset_dir(name)
    restore_interrupted(folder)
    if not (folder / "dataset.json").is_file():
        known = ", ".join(ws.prepared_datasets()) or "none"
        raise MedrefError(
            f"{folder / 'dataset.json'}: dataset {name!r} is not prepared (prepared: {known}); "
            f"run `medref prepare qata|mosmed|sample` first"
        )
    return load_manifest(folder), folder


def load_manifest(folder: Path) -> DatasetManifest:
    path = folder / "dataset.json"
    manifest = load_artifact(DatasetManifest, path, DATASET_SCHEMA, "medref prepare ... --overwrite")
    try:
        manifest.records = [r if isinstance(r, Record) else Record(**r) for r in manifest.records]
    except TypeError as exc:
        raise MedrefError(f"{path}: malformed ({exc})") from None
    root = folder.resolve()
    for r in manifest.records:
        for rel in (r.image, r.mask):
            if rel is not None and not (root / rel).resolve().is_relative_to(root):
                raise MedrefError(f"{path}: record {r.id!r} path {rel!r} escapes the dataset folder")
    if manifest.dataset_hash != manifest.compute_hash():
        raise MedrefError(f"{path}: its records no longer match its dataset_hash (edited or damaged since "
                          f"`medref prepare`); prepare the dataset again with --overwrite")
    return manifest


def verify_files(manifest: DatasetManifest, folder: Path, ids: list[str]) -> None:
    """The image and mask files of `ids` are the bytes `prepare` wrote (sha256 of dataset.json); a changed or
    swapped file is a one-line error naming it."""
    import hashlib

    by_id = manifest.by_id()
    for rid in ids:
        rec = by_id[rid]
        for rel, expected in ((rec.image, rec.image_sha256), (rec.mask, rec.mask_sha256)):
            if rel is None:
                continue
            try:
                digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
            except FileNotFoundError:
                raise MedrefError(f"{folder / rel}: missing (record {rid!r} of {folder / 'dataset.json'}); prepare "
                                  "the dataset again with --overwrite") from None
            if digest != expected:
                raise MedrefError(f"{folder / rel}: changed since `medref prepare` (its sha256 differs from "
                                  f"{folder / 'dataset.json'}); prepare the dataset again with --overwrite")


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
    spec = load_artifact(SplitSpec, path, SPLIT_SCHEMA, "medref split")
    spec.check_disjoint(str(path))
    return spec


# run.json of version 1 also held these fields; config.yaml holds the run's identity since (`config.migrate_config_v2`)
RUN_IDENTITY_V1 = ("stage", "method", "dataset", "dataset_hash", "split_file", "ratio", "seed", "preset",
                   "text_encoder", "init_from", "eval_model")


@dataclass
class RunStatus:
    """`<run>/run.json`: how far the run got, rewritten at every epoch. What the run is lives in its config.yaml
    (`config.RunConfig`), written once before training starts."""

    status: str = "running"  # running | finished | stopped-early | budget-reached | failed
    epochs_done: int = 0
    best_epoch: int | None = None
    best_val_dice: float | None = None
    schema_version: int = RUN_SCHEMA

    def save(self, run: Path) -> None:
        write_json_atomic(run / "run.json", asdict(self))


def migrate_run_v1(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """run.json 1 -> 2: the identity fields leave (config.yaml holds them; `config.migrate_config_v2` copied them
    there before a version-1 run.json is ever rewritten)."""
    return {k: v for k, v in data.items() if k not in (*RUN_IDENTITY_V1, "extra")}


def load_run(run: Path) -> RunStatus:
    """`<run>/run.json`, checked (version 1 migrated)."""
    return load_artifact(RunStatus, run / "run.json", RUN_SCHEMA, "medref pretrain` or `medref semi-train",
                         {1: migrate_run_v1})


# A "protocols" block is `{"global": {"dice", "iou"}, "per_image": {"dice", "iou"}}` in [0, 1]
# (`training.metrics.summarize`).
# pred_off_side: predicted pixels in the image half a one-lung report does not name (0 for other reports; files
# written before 2026-12-07 lack the column, which readers do not need)
PER_CASE_HEADER = ("id", "caption", "zones", "tp", "fp", "fn", "dice", "iou", "pred_off_side")
PER_CASE_ABLATION = ("dice_shuffled_text", "dice_empty_text")
PROTOCOL_NOTES = {
    "global": "tp/fp/fn pooled over all pixels of the split (Ariadne's Thread / torchmetrics style)",
    "per_image": "mean over images of per-image Dice/IoU (LViT style); empty truth and empty prediction = 1",
}


@dataclass
class EvalSummary:
    run: str
    split: str
    checkpoint: str
    n_images: int
    model_image_size: int
    eval_model: str
    protocols: dict[str, dict[str, float]]
    per_zone: dict[str, dict[str, float]]  # zone name -> {"dice", "iou"} (global protocol inside the zone)
    # left | right | bilateral | none -> {"n", "global", "per_image"}; left and right also "off_side": predicted
    # pixels, those in the half the report does not name, their share, images with any (absent before 2026-12-07)
    per_laterality: dict[str, dict[str, Any]]
    text_ablation: dict[str, Any] | None = None  # shuffled / empty protocols and the global-Dice gaps
    side_gate: bool = False
    threshold: float = 0.5
    checkpoint_epoch: int | None = None  # the epoch whose weights were scored
    run_in_progress: bool = False  # the run was still training: a later evaluation may score other weights
    protocol_notes: dict[str, str] = field(default_factory=lambda: dict(PROTOCOL_NOTES))
    schema_version: int = EVAL_SCHEMA

    @property
    def global_dice(self) -> float:
        return self.protocols["global"]["dice"]

    @property
    def shuffled_gap(self) -> float | None:
        return None if self.text_ablation is None else self.text_ablation["gap_global_dice_shuffled"]

    def save(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


@dataclass
class PseudoLabelAudit:
    n_images: int
    model: str  # teacher | student
    zone_agreement_exact: float | None  # share of images whose predicted zones equal the caption's
    zone_agreement_per_bit: float | None
    with_ground_truth: int  # images with a real mask (scored below)
    dice_all: dict[str, dict[str, float]] | None = None  # protocols against the real masks
    dice_by_confidence: list[dict[str, Any]] = field(default_factory=list)  # per mean-confidence bucket
    side_gate: bool = False  # the masks cleared the image half a one-lung report does not name
    schema_version: int = AUDIT_SCHEMA

    def save(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


def eval_dir(run: Path, split: str, side_gate: bool = False) -> Path:
    """Where `medref evaluate` writes a run's evaluation of `split`: `eval-<split>/`, `eval-<split>-side-gate/`
    with the side gate."""
    return run / f"eval-{split}{'-side-gate' if side_gate else ''}"


def load_summary(path: Path) -> EvalSummary:
    """`eval-<split>/summary.json`, checked."""
    summary = load_artifact(EvalSummary, path, EVAL_SCHEMA, "medref evaluate RUN")
    try:
        float(summary.global_dice)
    except (KeyError, TypeError, ValueError):
        raise MedrefError(f"{path}: malformed (no protocols.global.dice)") from None
    return summary


def load_audit(path: Path) -> PseudoLabelAudit:
    """`pseudo-labels-<split>/audit.json`, checked."""
    return load_artifact(PseudoLabelAudit, path, AUDIT_SCHEMA, "medref pseudo-label RUN")

@dataclass
class PseudoLabelSet:
    """`pseudo-labels-<split>/pseudo_labels.json`: one entry per image (`id`, `mask`, `prob`, `caption_zones`,
    `predicted_zones`, `zones_agree`, `mean_confidence`); mask and probability PNG paths relative to its folder."""

    run: str
    model: str  # teacher | student
    dataset: str
    dataset_hash: str
    split: str
    entries: list[dict[str, Any]]
    side_gate: bool = False  # the masks cleared the image half a one-lung report does not name
    schema_version: int = PSEUDO_SCHEMA

    def save(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


def load_pseudo_labels(path: Path) -> PseudoLabelSet:
    """`pseudo-labels-<split>/pseudo_labels.json`, checked."""
    return load_artifact(PseudoLabelSet, path, PSEUDO_SCHEMA, "medref pseudo-label RUN")
