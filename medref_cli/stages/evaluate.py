"""`medref evaluate RUN`: Dice and IoU at 0.5 on a held-out split, under both protocols.

Writes `<run>/eval-<split>/` (`eval-<split>-side-gate/` with `side_gate`): `summary.json` (global and
per-image protocols, per-zone and per-laterality breakdowns, text-ablation gap), `per_case.csv`, and overlay
PNGs. Predictions are upsampled to each image's prepared size and compared with its original mask.

- per-zone: global Dice/IoU over the pixels of one zone region (image-left/right half x row third),
  pooled over the split.
- per-laterality: global and per-image Dice over the images whose caption names the left lung only,
  the right lung only, both, or neither; for the one-lung groups also the predicted pixels that lie in the image
  half the report does not name (`off_side`: how well the masks keep to the report's side; per image in
  per_case.csv's `pred_off_side`).
- text ablation: the same model with captions shuffled across images (seeded permutation) and with an
  empty report; the gap is normal minus ablated global Dice.
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medref_cli.artifacts import PER_CASE_ABLATION, PER_CASE_HEADER, EvalSummary, eval_dir, verify_files
from medref_cli.errors import MedrefError
from medref_cli.training.data import without_meta_tracking
from medref_cli.workspace import Workspace, staged_dir
from medref_cli.zone_masks import laterality, side_mask, zone_regions

log = logging.getLogger(__name__)

TRAINED_PARTS = ("train_labeled", "train_unlabeled")


@dataclass
class EvaluateConfig:
    run: str
    split: str = "test"
    checkpoint: str = "best"  # best | latest
    batch_size: int = 16
    overlays: int = 6
    ablation: bool = True
    device: str = "auto"
    progress: bool = False
    side_gate: bool = False  # zero the probability in the image half a one-lung report does not name
    overwrite: bool = False  # replace an existing eval-<split>/ folder


def check_held_out(spec, split: str, source: str) -> list[str]:  # noqa: ANN001 - SplitSpec
    """Ids of `split`, refusing any the run trained on."""
    if split in TRAINED_PARTS:
        raise MedrefError(f"{source}: refusing to evaluate on {split!r}: the run trained on those ids")
    if split not in ("val", "test"):
        raise MedrefError(f"--split {split!r}: choose test or val")
    ids = list(getattr(spec, split))
    trained = set(spec.train_labeled) | set(spec.train_unlabeled)
    leaked = [i for i in ids if i in trained]
    if leaked:
        raise MedrefError(f"{source}: {len(leaked)} {split} id(s) were trained on (e.g. {leaked[0]!r}); refusing")
    return ids


@dataclass
class _Scores:
    """Confusion counts of one evaluation: per image and caption variant `(N, 3)` (tp, fp, fn), per zone
    `(6, 3)` under the real captions, the predicted pixels off the named side per image `(N,)` (real captions),
    and the thresholded predictions kept for overlays."""

    per_case: dict[str, torch.Tensor]
    zones: torch.Tensor
    off_side: list[int]
    overlays: dict[int, np.ndarray]


@without_meta_tracking
def run(cfg: EvaluateConfig, ws: Workspace) -> tuple[EvalSummary, Path]:
    from medref_cli.training.data import items
    from medref_cli.training.predictor import open_predictor

    predictor, tr = open_predictor(ws, cfg.run, cfg.checkpoint, cfg.device, side_gate=cfg.side_gate)
    ids = check_held_out(tr.spec, cfg.split, str(tr.path / "split.json"))
    out_dir = eval_dir(tr.path, cfg.split, cfg.side_gate)
    if out_dir.exists() and not cfg.overwrite:
        raise MedrefError(f"{out_dir}: already exists; pass --overwrite to replace it")
    verify_files(tr.manifest, tr.folder, ids)
    data = [d for d in items(tr.manifest, tr.folder, ids) if "label" in d]
    if not data:
        raise MedrefError(f"{tr.path}: no {cfg.split} image has a mask to evaluate against")
    scores = _score(cfg, tr, predictor, data, caption_variants([d["text"] for d in data], cfg.ablation))
    summary = _summarize(cfg, tr, data, scores, predictor.threshold)
    with staged_dir(out_dir, cfg.overwrite) as tmp:
        summary.save(tmp / "summary.json")
        _write_per_case(tmp / "per_case.csv", data, scores, cfg.ablation)
        _write_overlays(tmp / "overlays", tr, data, scores)
    return summary, out_dir


def caption_variants(captions: list[str], ablation: bool) -> dict[str, list[str]]:
    """The real captions; with `ablation` also the captions shuffled across images (seeded) and empty ones."""
    variants = {"normal": captions}
    if ablation:
        shuffled = captions[:]
        random.Random(0).shuffle(shuffled)
        variants.update({"shuffled": shuffled, "empty": [""] * len(captions)})
    return variants


def _score(cfg: EvaluateConfig, tr, predictor, data: list[dict], variants: dict[str, list[str]]) -> _Scores:  # noqa: ANN001
    from medref_cli.imaging import read_prepared
    from medref_cli.progress import track
    from medref_cli.training.metrics import confusion

    by_id = tr.manifest.by_id()
    scores = _Scores({k: [] for k in variants}, torch.zeros(6, 3, dtype=torch.long), [], {})
    keep = set(np.linspace(0, len(data) - 1, min(cfg.overlays, len(data))).round().astype(int).tolist())
    batches = track(predictor.batches(data, cfg.batch_size), (len(data) + cfg.batch_size - 1) // cfg.batch_size,
                    f"evaluate {tr.path.name}", cfg.progress)
    pos = 0
    for batch in batches:
        n = batch["image"].shape[0]
        truths = [torch.from_numpy(read_prepared(tr.folder / by_id[rid].mask, is_mask=True)).bool()[None, None]
                  for rid in batch["id"]]  # read once, scored under every caption variant
        for name, texts in variants.items():
            probs = predictor.probs(batch["image"], texts[pos : pos + n])
            for i, (truth, (_, mask)) in enumerate(zip(truths, predictor.masks(probs, [t.shape[-2:] for t in truths]),
                                                       strict=True)):
                pred = mask[None, None]
                scores.per_case[name].append(confusion(pred, truth))
                if name == "normal":
                    regions = zone_regions(*truth.shape[-2:])[:, None]
                    scores.zones += confusion(pred.expand(6, 1, -1, -1) & regions, truth.expand(6, 1, -1, -1) & regions)
                    named = side_mask(torch.tensor([data[pos + i]["zones"]]), *truth.shape[-2:]).bool()
                    scores.off_side.append(int((pred & ~named).sum()))
                    if pos + i in keep:
                        scores.overlays[pos + i] = pred[0, 0].numpy()
        pos += n
    scores.per_case = {k: torch.cat(v) for k, v in scores.per_case.items()}
    return scores


def _summarize(cfg: EvaluateConfig, tr, data: list[dict], scores: _Scores, threshold: float) -> EvalSummary:  # noqa: ANN001
    from medref_cli.training.metrics import dice_iou, summarize
    from medref_cli.zones import ZONE_NAMES

    normal = scores.per_case["normal"]
    zd, zi = dice_iou(scores.zones)
    groups: dict[str, list[int]] = {}
    for k, d in enumerate(data):
        groups.setdefault(laterality(d["zones"]), []).append(k)
    summary = EvalSummary(
        run=tr.path.name, split=cfg.split, checkpoint=cfg.checkpoint, n_images=len(data),
        model_image_size=tr.model.cfg.image_size, eval_model=tr.eval_model, side_gate=cfg.side_gate,
        checkpoint_epoch=tr.epoch, run_in_progress=tr.in_progress, threshold=threshold,
        protocols=summarize(normal),
        per_zone={z: {"dice": float(zd[k]), "iou": float(zi[k])} for k, z in enumerate(ZONE_NAMES)},
        per_laterality={g: {"n": len(idx), **summarize(normal[idx]), **_off_side(g, scores, idx)}
                        for g, idx in sorted(groups.items())},
    )
    if cfg.ablation:
        abl = {k: summarize(scores.per_case[k]) for k in ("shuffled", "empty")}
        summary.text_ablation = {
            **abl,
            "gap_global_dice_shuffled": summary.global_dice - abl["shuffled"]["global"]["dice"],
            "gap_global_dice_empty": summary.global_dice - abl["empty"]["global"]["dice"],
        }
    return summary


def _off_side(group: str, scores: _Scores, idx: list[int]) -> dict:
    """For a one-lung group: the predicted pixels (tp + fp) pooled over its images, those in the image half the
    report does not name, their share, and the images with any. Other groups: nothing (no half is excluded)."""
    if group not in ("left", "right"):
        return {}
    predicted = int(scores.per_case["normal"][idx, :2].sum())
    off = [scores.off_side[k] for k in idx]
    return {"off_side": {"pred_pixels": predicted, "off_side_pixels": sum(off),
                         "share": sum(off) / predicted if predicted else 0.0,
                         "images_with_any": sum(o > 0 for o in off)}}


def _write_per_case(path: Path, data: list[dict], scores: _Scores, ablation: bool) -> None:
    from medref_cli.training.metrics import dice_iou

    dice, iou = dice_iou(scores.per_case["normal"])
    extra = [dice_iou(scores.per_case[k])[0] for k in ("shuffled", "empty")] if ablation else []
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PER_CASE_HEADER + (PER_CASE_ABLATION if ablation else ()))
        for k, d in enumerate(data):
            tp, fp, fn = scores.per_case["normal"][k].tolist()
            w.writerow([d["id"], d["text"], "".join(map(str, d["zones"])), tp, fp, fn,
                        f"{float(dice[k]):.5f}", f"{float(iou[k]):.5f}", scores.off_side[k],
                        *(f"{float(e[k]):.5f}" for e in extra)])


def _write_overlays(folder: Path, tr, data: list[dict], scores: _Scores) -> None:  # noqa: ANN001
    from medref_cli.imaging import read_prepared
    from medref_cli.overlays import panel_png
    from medref_cli.training.metrics import dice_iou

    dice = dice_iou(scores.per_case["normal"])[0]
    by_id = tr.manifest.by_id()
    folder.mkdir()
    for k, pred in scores.overlays.items():
        rec = by_id[data[k]["id"]]
        img = read_prepared(tr.folder / rec.image)
        truth = read_prepared(tr.folder / rec.mask, is_mask=True)
        (folder / f"{rec.id}.png").write_bytes(
            panel_png(img, pred.astype(np.uint8), rec.caption, truth, f"{rec.id} Dice {float(dice[k]):.3f}:"))
