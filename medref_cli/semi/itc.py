"""ITCL (SPEC 3.4): image–text contrastive loss with Jaccard soft positives from the zone vectors."""

from __future__ import annotations

import torch


def soft_positives(zones: torch.Tensor) -> torch.Tensor:
    """zones `(B, 6)` {0,1} -> `(B, B)` float: |a ∧ b| / |a ∨ b|, 1 where both are empty, 1 on the diagonal."""
    z = zones.float()
    inter = z @ z.T
    union = z.sum(1, keepdim=True) + z.sum(1)[None, :] - inter
    pos = torch.where(union > 0, inter / union.clamp(min=1e-9), torch.ones_like(inter))
    pos.fill_diagonal_(1.0)
    return pos


def itc_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, zones: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """img_emb, txt_emb `(B, P)` L2-normalised, zones `(B, 6)` -> scalar loss (L_i2t + L_t2i) / 2."""
    logits = img_emb.float() @ txt_emb.float().T / tau
    pos = soft_positives(zones).to(logits.device)
    weights = pos / pos.sum(1, keepdim=True)
    i2t = -(weights * torch.log_softmax(logits, dim=1)).sum(1).mean()
    t2i = -(weights.T.contiguous() * torch.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (i2t + t2i) / 2
