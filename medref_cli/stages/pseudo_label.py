"""`medref pseudo-label RUN`: the teacher's masks for unlabelled images, with an audit.

Writes `<run>/pseudo-labels-<split>/` (built under a temp name, then renamed):
- `masks/<id>.png` ({0,255}) and `prob/<id>.png` (foreground probability x 255), at the prepared size;
- `pseudo_labels.json`: whether the side gate was on (by default as the run's teacher trained: on for the medref
  recipe, which zeroes the image half a one-lung report does not name), and per image the caption's zone vector,
  the zone vector seen in the prediction (a zone counts when the mask covers >= 1 % of its region), and the mean
  confidence max(p, 1 - p);
- `audit.json`: where ground truth exists, pseudo-label Dice (global) per confidence bucket, and how often
  caption and prediction zones agree.
`pretrain` / `semi-train --pseudo-labels DIR` then use the masks as extra labelled data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medref_cli.artifacts import PseudoLabelAudit, PseudoLabelSet
from medref_cli.errors import MedrefError
from medref_cli.pseudo_labels import predicted_zones
from medref_cli.training.data import without_meta_tracking
from medref_cli.workspace import Workspace, staged_dir

BUCKETS = (0.5, 0.9, 0.95, 0.98, 0.99, 1.0001)  # mean-confidence buckets of the audit


@dataclass
class PseudoLabelConfig:
    run: str
    split: str = "train_unlabeled"
    checkpoint: str = "best"
    model: str = "teacher"  # teacher | student
    batch_size: int = 16
    overwrite: bool = False
    device: str = "auto"
    progress: bool = False
    side_gate: bool | None = None  # clear the half a one-lung report does not name; None: as the run's method trained


@without_meta_tracking
def run(cfg: PseudoLabelConfig, ws: Workspace) -> tuple[PseudoLabelAudit, Path]:
    from medref_cli.training.data import items
    from medref_cli.training.predictor import open_predictor

    if cfg.split not in ("train_unlabeled", "train_labeled", "val", "test"):
        raise MedrefError(f"--split {cfg.split!r}: choose train_unlabeled, train_labeled, val or test")
    if cfg.batch_size < 1:
        raise MedrefError(f"--batch-size {cfg.batch_size}: must be at least 1")
    predictor, tr = open_predictor(ws, cfg.run, cfg.checkpoint, cfg.device, side_gate=cfg.side_gate,
                                   weights="teacher" if cfg.model == "teacher" else "evaluated")
    if not getattr(tr.spec, cfg.split):
        what = "unlabelled" if cfg.split == "train_unlabeled" else cfg.split
        data = tr.config.data
        raise MedrefError(f"{tr.path}: no {what} images in this run's split ({data.split_file}, labelled share "
                          f"{data.ratio}); nothing to pseudo-label")
    gate = predictor.side_gate
    used = "teacher" if predictor.weights == "teacher" else tr.eval_model  # the evaluated weights' owner
    data = items(tr.manifest, tr.folder, list(getattr(tr.spec, cfg.split)), with_labels=False)
    out_dir = tr.path / f"pseudo-labels-{cfg.split}"
    with staged_dir(out_dir, cfg.overwrite) as tmp:
        entries, scored = _label(cfg, tr, predictor, data, tmp)
        PseudoLabelSet(run=tr.path.name, model=used, dataset=tr.config.data.dataset,
                       dataset_hash=tr.manifest.dataset_hash, split=cfg.split, side_gate=gate,
                       entries=entries).save(tmp / "pseudo_labels.json")
        audit = make_audit(entries, scored, used, gate)
        audit.save(tmp / "audit.json")
    return audit, out_dir


def _label(cfg: PseudoLabelConfig, tr, predictor, data: list[dict], tmp: Path) -> tuple[list[dict], list]:  # noqa: ANN001
    """Write each image's mask and probability PNG under `tmp`; (entries, [(mean confidence, confusion)] of
    the images that have a real mask)."""
    from medref_cli.imaging import png_bytes, read_prepared
    from medref_cli.progress import track
    from medref_cli.training.metrics import confusion

    (tmp / "masks").mkdir()
    (tmp / "prob").mkdir()
    by_id = tr.manifest.by_id()
    entries, scored = [], []
    n_batches = (len(data) + cfg.batch_size - 1) // cfg.batch_size
    for batch in track(predictor.batches(data, cfg.batch_size), n_batches, "pseudo-label", cfg.progress):
        probs = predictor.probs(batch["image"], batch["text"])
        recs = [by_id[rid] for rid in batch["id"]]
        for rid, rec, (p, mask) in zip(batch["id"], recs, predictor.masks(probs, [(r.height, r.width) for r in recs]),
                                       strict=True):
            (tmp / "masks" / f"{rid}.png").write_bytes(png_bytes(mask.numpy().astype(np.uint8) * np.uint8(255)))
            (tmp / "prob" / f"{rid}.png").write_bytes(png_bytes((p * 255).round().byte().numpy()))
            conf = float(torch.maximum(p, 1 - p).mean())
            seen = predicted_zones(mask)
            entries.append({"id": rid, "mask": f"masks/{rid}.png", "prob": f"prob/{rid}.png",
                            "caption_zones": list(rec.zones), "predicted_zones": seen,
                            "zones_agree": seen == list(rec.zones), "mean_confidence": round(conf, 5)})
            if rec.mask is not None:
                truth = torch.from_numpy(read_prepared(tr.folder / rec.mask, is_mask=True)).bool()
                scored.append((conf, confusion(mask[None, None], truth[None, None])[0]))
    return entries, scored


def make_audit(entries: list[dict], scored: list[tuple[float, torch.Tensor]], model: str,
               side_gate: bool = False) -> PseudoLabelAudit:
    """Zone agreement over `entries`; against real masks (`scored`: mean confidence, (tp, fp, fn)) the Dice
    overall and per confidence bucket."""
    from medref_cli.training.metrics import summarize

    audit = PseudoLabelAudit(
        n_images=len(entries), model=model, side_gate=side_gate,
        zone_agreement_exact=float(np.mean([e["zones_agree"] for e in entries])) if entries else None,
        zone_agreement_per_bit=float(np.mean([np.mean(np.equal(e["caption_zones"], e["predicted_zones"]))
                                              for e in entries])) if entries else None,
        with_ground_truth=len(scored),
    )
    if scored:
        audit.dice_all = summarize(torch.stack([c for _, c in scored]))
        for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:], strict=True):
            sel = [k for k, (conf, _) in enumerate(scored) if lo <= conf < hi]
            if sel:
                audit.dice_by_confidence.append({"confidence": [lo, min(hi, 1.0)], "n": len(sel),
                                                 **summarize(torch.stack([scored[k][1] for k in sel]))})
    return audit
