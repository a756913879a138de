"""Batched inference shared by validation, `evaluate`, `predict` and `pseudo-label`."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_probs(model: torch.nn.Module, text_encoder, image: torch.Tensor, texts: list[str],  # noqa: ANN001
                  device: torch.device, amp: bool = True) -> torch.Tensor:
    """image `(B, 1, H, W)` in [0, 1] + captions -> foreground probabilities `(B, 1, H, W)` float32 (CPU)."""
    feats, keep = text_encoder(texts, device)
    with autocast(device, amp):
        logits = model(image.to(device), feats, keep)["logits"]
    return torch.sigmoid(logits.float()).cpu()
