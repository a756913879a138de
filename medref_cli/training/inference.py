"""The tensor steps of inference that `Predictor` (training/predictor.py) composes: mixed precision
(`autocast`), probabilities at the model's size (`forward_probs`), each map resized to its image and
thresholded (`at_sizes`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medref_cli.config import THRESHOLD


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision when `enabled`: bfloat16 (float16 on CUDA without bf16) on CUDA, bfloat16 on CPU."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def forward_probs(model: torch.nn.Module, text_encoder, image: torch.Tensor, texts: list[str],  # noqa: ANN001
                  device: torch.device, amp: bool | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """image `(B, 1, H, W)` in [0, 1] + captions -> (foreground probabilities `(B, 1, H, W)` float32 on the CPU,
    the model's whole output: `logits`, `img_emb`, `txt_emb`, on `device`). `amp` None: mixed precision on CUDA
    only."""
    if amp is None:
        amp = device.type == "cuda"
    feats, keep = text_encoder(texts, device)
    with autocast(device, amp):
        out = model(image.to(device), feats, keep)
    return torch.sigmoid(out["logits"].float()).cpu(), out


def at_sizes(probs: torch.Tensor, sizes: Sequence[tuple[int, int]], threshold: float = THRESHOLD
             ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """probs `(B, 1, h, w)` float -> per image (probability `(H, W)` float, mask `(H, W)` bool = probability
    >= `threshold`), each bilinearly resized to its own `sizes[i]` = (H, W)."""
    out = []
    for i, size in enumerate(sizes):
        p = probs[i : i + 1]
        if tuple(p.shape[-2:]) != tuple(size):
            p = F.interpolate(p, size=tuple(size), mode="bilinear", align_corners=False)
        out.append((p[0, 0], p[0, 0] >= threshold))
    return out
