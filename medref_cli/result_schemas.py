"""Schemas of what `evaluate` and `pseudo-label` write, and their loaders.

- `eval-<split>/summary.json`: `EvalSummary` (both protocols, per-zone, per-laterality, text ablation).
- `eval-<split>/per_case.csv`: `PER_CASE_HEADER` (+ `PER_CASE_ABLATION` columns when the ablation ran).
- `pseudo-labels-<split>/audit.json`: `PseudoLabelAudit`.

A "protocols" block is `{"global": {"dice", "iou"}, "per_image": {"dice", "iou"}}` in [0, 1]
(`training.metrics.summarize`). Readers refuse another `schema_version`; a summary written before the field
existed reads as version 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.workspace import read_json, write_json_atomic

EVAL_SCHEMA = 1
AUDIT_SCHEMA = 1
PER_CASE_HEADER = ("id", "caption", "zones", "tp", "fp", "fn", "dice", "iou")
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
    per_laterality: dict[str, dict[str, Any]]  # left | right | both | none -> {"n", "global", "per_image"}
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
    schema_version: int = AUDIT_SCHEMA

    def save(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))


def _load(cls: type, path: Path, version: int, producer: str) -> Any:
    data = read_json(path, producer)
    if not isinstance(data, dict):
        raise MedrefError(f"{path}: expected a JSON object")
    data.setdefault("schema_version", 1)
    if data["schema_version"] != version:
        raise MedrefError(f"{path}: schema version {data['schema_version']!r} is not supported (expected {version}); "
                          f"re-run `{producer}`")
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise MedrefError(f"{path}: malformed ({exc})") from None


def load_summary(path: Path) -> EvalSummary:
    """`eval-<split>/summary.json`, checked."""
    summary = _load(EvalSummary, path, EVAL_SCHEMA, "medref evaluate RUN")
    try:
        float(summary.global_dice)
    except (KeyError, TypeError, ValueError):
        raise MedrefError(f"{path}: malformed (no protocols.global.dice)") from None
    return summary


def load_audit(path: Path) -> PseudoLabelAudit:
    """`pseudo-labels-<split>/audit.json`, checked."""
    return _load(PseudoLabelAudit, path, AUDIT_SCHEMA, "medref pseudo-label RUN")
