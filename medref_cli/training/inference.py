"""Batched inference shared by validation, `evaluate`, `predict` and `pseudo-label`."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision when `enabled`: bfloat16 (float16 on CUDA without bf16) on CUDA, bfloat16 on CPU."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, text_encoder, image: torch.Tensor, texts: list[str],  # noqa: ANN001
                  device: torch.device, amp: bool | None = None) -> torch.Tensor:
    """image `(B, 1, H, W)` in [0, 1] + captions -> foreground probabilities `(B, 1, H, W)` float32 (CPU).
    `amp` None: mixed precision on CUDA only."""
    if amp is None:
        amp = device.type == "cuda"
    feats, keep = text_encoder(texts, device)
    with autocast(device, amp):
        logits = model(image.to(device), feats, keep)["logits"]
    return torch.sigmoid(logits.float()).cpu()
