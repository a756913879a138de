"""Dice and IoU at threshold 0.5 under both protocols, from per-image confusion counts.

- **global**: tp, fp, fn pooled over every pixel of the split, then Dice = 2tp / (2tp + fp + fn)
  (Ariadne's Thread / torchmetrics style).
- **per-image mean**: Dice per image, then the mean over images (LViT style). An image whose ground truth
  and prediction are both empty scores 1 (Dice and IoU); an empty ground truth with any predicted pixel
  scores 0 — the same as MONAI `DiceMetric(ignore_empty=False)`.
"""

from __future__ import annotations

import torch


def confusion(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred, target `(B, 1, H, W)` bool -> `(B, 3)` int64 counts (tp, fp, fn)."""
    p = pred.flatten(1).bool()
    t = target.flatten(1).bool()
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    return torch.stack([tp, fp, fn], dim=1).long()


def dice_iou(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, 3)` counts -> per-row Dice and IoU `(N,)` float64, 1 where both masks are empty."""
    tp, fp, fn = counts.double().unbind(-1)
    denom_d = 2 * tp + fp + fn
    denom_i = tp + fp + fn
    dice = torch.where(denom_d > 0, 2 * tp / denom_d.clamp(min=1), torch.ones_like(tp))
    iou = torch.where(denom_i > 0, tp / denom_i.clamp(min=1), torch.ones_like(tp))
    return dice, iou


def summarize(counts: torch.Tensor) -> dict[str, dict[str, float]]:
    """`(N, 3)` per-image counts -> {"global": {dice, iou}, "per_image": {dice, iou}}."""
    if counts.numel() == 0:
        return {"global": {"dice": float("nan"), "iou": float("nan")},
                "per_image": {"dice": float("nan"), "iou": float("nan")}}
    g_dice, g_iou = dice_iou(counts.sum(0, keepdim=True))
    dice, iou = dice_iou(counts)
    return {"global": {"dice": float(g_dice[0]), "iou": float(g_iou[0])},
            "per_image": {"dice": float(dice.mean()), "iou": float(iou.mean())}}
