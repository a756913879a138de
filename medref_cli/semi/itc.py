"""ITCL (SPEC 3.4): image–text contrastive loss with Jaccard soft positives from the zone vectors; its floor
(the soft targets' entropy, which no embedding can go below) and a zone-level image-to-text retrieval figure."""

from __future__ import annotations

import torch


def soft_positives(zones: torch.Tensor, empty_positive: bool = True, known: torch.Tensor | None = None,
                   power: float = 1.0) -> torch.Tensor:
    """zones `(B, 6)` {0,1} -> `(B, B)` float: (|a ∧ b| / |a ∨ b|) ** power, 1 on the diagonal.

    `power` 1 is SPEC 3.4's Jaccard; a larger power sharpens the targets towards "same zones only" (QaTa's reports
    name 62 distinct zone vectors, mostly bilateral, so plain Jaccard targets are 93 % of uniform entropy).
    Two empty vectors ("no infection") count as positives (1) when `empty_positive` (SPEC 3.4) and as 0
    otherwise (the official code). `known` `(B,)` bool: a report with an unknown position is a positive of
    itself only.
    """
    z = zones.float()
    inter = z @ z.T
    union = z.sum(1, keepdim=True) + z.sum(1)[None, :] - inter
    both_empty = torch.full_like(inter, 1.0 if empty_positive else 0.0)
    pos = torch.where(union > 0, inter / union.clamp(min=1e-9), both_empty)
    if power != 1.0:
        pos = pos**power
    if known is not None:
        k = known.to(pos.device).bool()
        pos = pos * (k[:, None] & k[None, :]).to(pos.dtype)
    pos.fill_diagonal_(1.0)
    return pos


def _soft_ce(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """-mean_a sum_b w_ab log softmax_b(logits_ab), w = each row of `pos` normalised to sum 1."""
    weights = pos / pos.sum(1, keepdim=True)
    return -(weights * torch.log_softmax(logits, dim=1)).sum(1).mean()


def itc_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, zones: torch.Tensor, tau: float = 0.07,
             empty_positive: bool = True, known: torch.Tensor | None = None, power: float = 1.0) -> torch.Tensor:
    """img_emb, txt_emb `(B, P)` L2-normalised, zones `(B, 6)` -> scalar loss (L_i2t + L_t2i) / 2 against the
    `soft_positives(zones, empty_positive, known, power)`.

    t2i uses the transposed logits and the rows of P^T, each normalised on its own (P is symmetric for Jaccard
    positives, so this equals normalising the columns of P)."""
    logits = img_emb.float() @ txt_emb.float().T / tau
    pos = soft_positives(zones, empty_positive, known, power).to(logits.device)
    return (_soft_ce(logits, pos) + _soft_ce(logits.T, pos.T)) / 2


def itc_floor(zones: torch.Tensor, empty_positive: bool = True, known: torch.Tensor | None = None,
              power: float = 1.0) -> torch.Tensor:
    """zones `(B, 6)` -> scalar: the least value `itc_loss` can take on this batch, the mean entropy of the row-
    normalised soft positives (the soft cross-entropy is smallest when softmax = target). A batch whose
    reports all name the same zones has floor ln B: ITCL can then teach nothing; the loss minus this floor is
    what ITCL can still reduce. P is symmetric, so i2t and t2i share it."""
    pos = soft_positives(zones, empty_positive, known, power)
    weights = pos / pos.sum(1, keepdim=True)
    return -(weights * torch.log(weights.clamp(min=1e-12))).sum(1).mean()


def zone_retrieval(img_emb: torch.Tensor, txt_emb: torch.Tensor, zones: torch.Tensor) -> tuple[float, float]:
    """img_emb, txt_emb `(N, P)`, zones `(N, 6)` -> (top-1, chance): the share of images whose most similar
    report (cosine of the ITCL projections) names the same zone vector as the image's own report, and the
    share a report drawn at random would reach. Top-1 well above chance: the projections carry position."""
    sim = img_emb.float() @ txt_emb.float().T
    same = (zones[:, None, :] == zones[None, :, :]).all(-1)
    top1 = same[torch.arange(len(zones)), sim.argmax(1)].float().mean()
    return float(top1), float(same.float().mean())
