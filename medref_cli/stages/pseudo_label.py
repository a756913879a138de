"""`medref pseudo-label RUN`: the teacher's masks for unlabelled images, with an audit.

Writes `<run>/pseudo-labels-<split>/` (built under a temp name, then renamed):
- `masks/<id>.png` ({0,255}) and `prob/<id>.png` (foreground probability x 255), at the prepared size;
- `pseudo_labels.json`: per image the caption's zone vector, the zone vector seen in the prediction (a zone
  counts when the mask covers >= 1 % of its region), and the mean confidence max(p, 1 - p);
- `audit.json`: where ground truth exists, pseudo-label Dice (global) per confidence bucket, and how often
  caption and prediction zones agree.
`pretrain` / `semi-train --pseudo-labels DIR` then use the masks as extra labelled data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medref_cli.errors import MedrefError
from medref_cli.training.data import without_meta_tracking
from medref_cli.workspace import Workspace, read_json, staged_dir

SCHEMA = 1
BUCKETS = (0.5, 0.9, 0.95, 0.98, 0.99, 1.0001)
ZONE_MIN_SHARE = 0.01


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


def predicted_zones(mask: torch.Tensor) -> list[int]:
    """mask `(H, W)` bool -> 6-bit zones where the mask covers >= 1 % of the zone region."""
    from medref_cli.zone_masks import zone_regions

    regions = zone_regions(*mask.shape)
    share = (regions & mask[None]).flatten(1).sum(1).float() / regions.flatten(1).sum(1).float()
    return [int(s >= ZONE_MIN_SHARE) for s in share]


@without_meta_tracking
def run(cfg: PseudoLabelConfig, ws: Workspace) -> tuple[dict[str, Any], Path]:
    from medref_cli.imaging import png_bytes, read_prepared
    from medref_cli.progress import track
    from medref_cli.training.data import eval_dataset, items, loader
    from medref_cli.training.inference import predict_probs
    from medref_cli.training.metrics import confusion, summarize
    from medref_cli.training.trained_run import open_run

    if cfg.split not in ("train_unlabeled", "train_labeled", "val", "test"):
        raise MedrefError(f"--split {cfg.split!r}: choose train_unlabeled, train_labeled, val or test")
    tr = open_run(ws, cfg.run, cfg.checkpoint, cfg.device)
    run_dir, info, spec, manifest, folder, model, text, device = (
        tr.path, tr.info, tr.spec, tr.manifest, tr.folder, tr.model, tr.text, tr.device)
    used = "student"
    if cfg.model == "teacher" and "teacher" in tr.ckpt:
        model.load_state_dict(tr.ckpt["teacher"])
        used = "teacher"
    ids = list(getattr(spec, cfg.split))
    data = items(manifest, folder, ids, with_labels=False)
    by_id = manifest.by_id()
    out_dir = run_dir / f"pseudo-labels-{cfg.split}"
    entries, audit_rows = [], []
    with staged_dir(out_dir, cfg.overwrite) as tmp:
        (tmp / "masks").mkdir()
        (tmp / "prob").mkdir()
        ds = eval_dataset(data, model.cfg.image_size)
        n_batches = (len(data) + cfg.batch_size - 1) // cfg.batch_size
        for batch in track(loader(ds, cfg.batch_size, False, 0), n_batches, "pseudo-label", cfg.progress):
            probs = predict_probs(model, text, batch["image"], batch["text"], device)
            for i, rid in enumerate(batch["id"]):
                rec = by_id[rid]
                p = F.interpolate(probs[i : i + 1], size=(rec.height, rec.width), mode="bilinear",
                                  align_corners=False)[0, 0]
                mask = p >= 0.5
                (tmp / "masks" / f"{rid}.png").write_bytes(png_bytes(mask.numpy().astype(np.uint8) * np.uint8(255)))
                (tmp / "prob" / f"{rid}.png").write_bytes(png_bytes((p * 255).round().byte().numpy()))
                conf = float(torch.maximum(p, 1 - p).mean())
                seen = predicted_zones(mask)
                entry = {"id": rid, "mask": f"masks/{rid}.png", "prob": f"prob/{rid}.png",
                         "caption_zones": list(rec.zones), "predicted_zones": seen,
                         "zones_agree": seen == list(rec.zones), "mean_confidence": round(conf, 5)}
                entries.append(entry)
                if rec.mask is not None:
                    truth = torch.from_numpy(read_prepared(folder / rec.mask, is_mask=True)).bool()
                    audit_rows.append((conf, confusion(mask[None, None], truth[None, None])[0]))
        meta = {"schema_version": SCHEMA, "run": run_dir.name, "model": used, "dataset": info.dataset,
                "dataset_hash": manifest.dataset_hash, "split": cfg.split, "entries": entries}
        (tmp / "pseudo_labels.json").write_text(json.dumps(meta, indent=1) + "\n")
        audit: dict[str, Any] = {
            "n_images": len(entries), "model": used,
            "zone_agreement_exact": float(np.mean([e["zones_agree"] for e in entries])) if entries else None,
            "zone_agreement_per_bit": float(np.mean([np.mean(np.equal(e["caption_zones"], e["predicted_zones"]))
                                                     for e in entries])) if entries else None,
            "with_ground_truth": len(audit_rows),
        }
        if audit_rows:
            all_counts = torch.stack([c for _, c in audit_rows])
            audit["dice_all"] = summarize(all_counts)
            buckets = []
            for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:], strict=True):
                sel = [k for k, (conf, _) in enumerate(audit_rows) if lo <= conf < hi]
                if sel:
                    buckets.append({"confidence": [lo, min(hi, 1.0)], "n": len(sel), **summarize(all_counts[sel])})
            audit["dice_by_confidence"] = buckets
        (tmp / "audit.json").write_text(json.dumps(audit, indent=2) + "\n")
    return audit, out_dir


def extra_labeled(pl_dir: Path, manifest, folder: Path, spec) -> list[dict]:  # noqa: ANN001
    """Items of a `pseudo-label` output usable as labelled data for this split's unlabelled images.

    manifest/folder: the prepared dataset; spec: the split. Masks are read from `pl_dir` only.
    """
    meta = read_json(pl_dir / "pseudo_labels.json", "medref pseudo-label RUN")
    if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA:
        raise MedrefError(f"{pl_dir / 'pseudo_labels.json'}: unsupported pseudo-label schema")
    if meta.get("dataset_hash") != manifest.dataset_hash:
        raise MedrefError(f"{pl_dir / 'pseudo_labels.json'}: made for another dataset version than {manifest.name!r}")
    allowed = set(spec.train_unlabeled)
    by_id = manifest.by_id()
    base = pl_dir.resolve()
    out = []
    for e in meta["entries"]:
        if e["id"] not in allowed:
            continue
        mask = (pl_dir / e["mask"]).resolve()
        if not mask.is_relative_to(base) or not mask.is_file():
            raise MedrefError(f"{pl_dir / 'pseudo_labels.json'}: mask path {e['mask']!r} is missing or escapes {pl_dir}")
        rec = by_id[e["id"]]
        out.append({"id": rec.id, "image": str(folder / rec.image), "label": str(mask), "text": rec.caption,
                    "zones": list(rec.zones)})
    return out
