"""FixMatch / UniMatch-style CutMix of unlabelled images (the `cutmix` baseline, and the medref recipe's
side-consistent CutMix after T-PatchMix): a random box, no text, no gate."""

from __future__ import annotations

import torch

from medref_cli.semi.t_patchmix import MixResult


def random_cutmix(image: torch.Tensor, prob: torch.Tensor, perm: torch.Tensor, mix_prob: float,
                  gen: torch.Generator, ratio: tuple[float, float] = (0.02, 0.4),
                  allowed: torch.Tensor | None = None) -> MixResult:
    """FixMatch/UniMatch-style CutMix: a random box (area share in `ratio`) anywhere, no text, no gate.
    `allowed` `(B, 1, H, W)` {0,1}: the box is clipped to it (e.g. the lung halves both reports name), and a
    box clipped to nothing counts as not attempted. Same output type; texts are returned empty (the caller
    keeps its own)."""
    b, _, h, w = image.shape
    box = torch.zeros(b, 1, h, w, dtype=image.dtype, device=image.device)
    attempted = 0
    for i in range(b):
        if int(perm[i]) == i or float(torch.rand((1,), generator=gen)) >= mix_prob:
            continue
        attempted += 1
        area = float(torch.empty(1).uniform_(*ratio, generator=gen)) * h * w
        aspect = float(torch.empty(1).uniform_(0.3, 1 / 0.3, generator=gen))
        bh = max(1, min(h, int(round((area * aspect) ** 0.5))))
        bw = max(1, min(w, int(round((area / aspect) ** 0.5))))
        top = int(torch.randint(h - bh + 1, (1,), generator=gen))
        left = int(torch.randint(w - bw + 1, (1,), generator=gen))
        box[i, :, top : top + bh, left : left + bw] = 1.0
    if allowed is not None:
        box = box * allowed
        attempted = int((box.flatten(1).amax(1) > 0).sum())
    mixed_prob = prob * (1 - box) + prob[perm] * box
    return MixResult(image * (1 - box) + image[perm] * box, mixed_prob, (mixed_prob >= 0.5).to(prob.dtype), [],
                     box, attempted, attempted)
