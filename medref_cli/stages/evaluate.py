"""`medref evaluate RUN`: Dice and IoU at 0.5 on a held-out split, under both protocols.

Writes `<run>/eval-<split>/` (`eval-<split>-side-gate/` with `side_gate`): `summary.json` (global and
per-image protocols, per-zone and per-laterality breakdowns, text-ablation gap), `per_case.csv`, and overlay
PNGs. Predictions are upsampled to each image's prepared size and compared with its original mask.

- per-zone: global Dice/IoU over the pixels of one zone region (image-left/right half x row third),
  pooled over the split.
- per-laterality: global and per-image Dice over the images whose caption names the left lung only,
  the right lung only, both, or neither.
- text ablation: the same model with captions shuffled across images (seeded permutation) and with an
  empty report; the gap is normal minus ablated global Dice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medref_cli.errors import MedrefError
from medref_cli.report_zones import caption_zones
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


@without_meta_tracking
def run(cfg: EvaluateConfig, ws: Workspace) -> tuple[dict[str, Any], Path]:
    from medref_cli.imaging import read_prepared
    from medref_cli.overlays import panel
    from medref_cli.progress import track
    from medref_cli.training.data import eval_dataset, items, loader
    from medref_cli.training.inference import predict_probs
    from medref_cli.training.metrics import confusion, dice_iou, summarize
    from medref_cli.training.trained_run import open_run

    tr = open_run(ws, cfg.run, cfg.checkpoint, cfg.device)
    run_dir, info, manifest, folder, model, text, device = (
        tr.path, tr.info, tr.manifest, tr.folder, tr.model, tr.text, tr.device)
    ids = check_held_out(tr.spec, cfg.split, str(run_dir / "split.json"))
    size = model.cfg.image_size
    data = [d for d in items(manifest, folder, ids) if "label" in d]
    if not data:
        raise MedrefError(f"{run_dir}: no {cfg.split} image has a mask to evaluate against")
    captions = [d["text"] for d in data]
    shuffled = captions[:]
    random.Random(0).shuffle(shuffled)
    variants = {"normal": captions}
    if cfg.ablation:
        variants.update({"shuffled": shuffled, "empty": [""] * len(data)})
    by_id = manifest.by_id()
    counts = {k: [] for k in variants}
    zone_counts = torch.zeros(6, 3, dtype=torch.long)
    preds_for_overlay: dict[int, np.ndarray] = {}
    overlay_idx = set(np.linspace(0, len(data) - 1, min(cfg.overlays, len(data))).round().astype(int).tolist())
    ds = eval_dataset(data, size)
    pos = 0
    batches = track(loader(ds, cfg.batch_size, False, 0), (len(data) + cfg.batch_size - 1) // cfg.batch_size,
                    f"evaluate {run_dir.name}", cfg.progress)
    for batch in batches:
        n = batch["image"].shape[0]
        truths = [torch.from_numpy(read_prepared(folder / by_id[rid].mask, is_mask=True)).bool()[None, None]
                  for rid in batch["id"]]  # read once, scored under every caption variant
        for name, texts in variants.items():
            probs = predict_probs(model, text, batch["image"], texts[pos : pos + n], device)
            if cfg.side_gate:
                zones = torch.tensor([caption_zones(t)[0] for t in texts[pos : pos + n]])
                probs = probs * side_mask(zones, *probs.shape[-2:])
            for i in range(n):
                truth = truths[i]
                p = F.interpolate(probs[i : i + 1], size=truth.shape[-2:], mode="bilinear", align_corners=False) >= 0.5
                counts[name].append(confusion(p, truth))
                if name == "normal":
                    regions = zone_regions(*truth.shape[-2:])
                    zone_counts += confusion(p.expand(6, 1, -1, -1) & regions[:, None],
                                             truth.expand(6, 1, -1, -1) & regions[:, None])
                    if pos + i in overlay_idx:
                        preds_for_overlay[pos + i] = p[0, 0].numpy()
        pos += n
    per_case = {k: torch.cat(v) for k, v in counts.items()}
    summary: dict[str, Any] = {
        "run": run_dir.name, "split": cfg.split, "checkpoint": cfg.checkpoint, "n_images": len(data),
        "threshold": 0.5, "model_image_size": size, "eval_model": info.eval_model, "side_gate": cfg.side_gate,
        "protocols": summarize(per_case["normal"]),
        "protocol_notes": {
            "global": "tp/fp/fn pooled over all pixels of the split (Ariadne's Thread / torchmetrics style)",
            "per_image": "mean over images of per-image Dice/IoU (LViT style); empty truth and empty prediction = 1",
        },
    }
    zd, zi = dice_iou(zone_counts)
    from medref_cli.zones import ZONE_NAMES

    summary["per_zone"] = {z: {"dice": float(zd[k]), "iou": float(zi[k])} for k, z in enumerate(ZONE_NAMES)}
    groups: dict[str, list[int]] = {}
    for k, d in enumerate(data):
        groups.setdefault(laterality(d["zones"]), []).append(k)
    summary["per_laterality"] = {
        g: {"n": len(idx), **summarize(per_case["normal"][idx])} for g, idx in sorted(groups.items())
    }
    if cfg.ablation:
        base = summary["protocols"]["global"]["dice"]
        abl = {k: summarize(per_case[k]) for k in ("shuffled", "empty")}
        summary["text_ablation"] = {
            **abl,
            "gap_global_dice_shuffled": base - abl["shuffled"]["global"]["dice"],
            "gap_global_dice_empty": base - abl["empty"]["global"]["dice"],
        }
    out_dir = run_dir / f"eval-{cfg.split}{'-side-gate' if cfg.side_gate else ''}"
    with staged_dir(out_dir, overwrite=True) as tmp:
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        dice, iou = dice_iou(per_case["normal"])
        with (tmp / "per_case.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            header = ["id", "caption", "zones", "tp", "fp", "fn", "dice", "iou"]
            if cfg.ablation:
                header += ["dice_shuffled_text", "dice_empty_text"]
            w.writerow(header)
            d_sh = dice_iou(per_case["shuffled"])[0] if cfg.ablation else None
            d_em = dice_iou(per_case["empty"])[0] if cfg.ablation else None
            for k, d in enumerate(data):
                tp, fp, fn = per_case["normal"][k].tolist()
                row = [d["id"], d["text"], "".join(map(str, d["zones"])), tp, fp, fn,
                       f"{float(dice[k]):.5f}", f"{float(iou[k]):.5f}"]
                if cfg.ablation:
                    row += [f"{float(d_sh[k]):.5f}", f"{float(d_em[k]):.5f}"]
                w.writerow(row)
        (tmp / "overlays").mkdir()
        for k, pred in preds_for_overlay.items():
            rec = by_id[data[k]["id"]]
            img = read_prepared(folder / rec.image)
            truth = read_prepared(folder / rec.mask, is_mask=True)
            pic = panel(img, pred.astype(np.uint8), rec.caption, truth, f"{rec.id} Dice {float(dice[k]):.3f}:")
            buf = io.BytesIO()
            pic.save(buf, format="PNG")
            (tmp / "overlays" / f"{rec.id}.png").write_bytes(buf.getvalue())
    return summary, out_dir
