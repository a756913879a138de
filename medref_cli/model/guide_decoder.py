"""Language-guided decoder stage (after Ariadne's Thread's GuideDecoder, MICCAI 2023).

One stage: visual self-attention with 2-D sinusoidal positions, cross-attention from visual tokens to the
projected text tokens added through a learnable scale (init 0.01), then MONAI `UnetrUpBlock` to the next
resolution with the encoder skip feature.
"""

from __future__ import annotations

import functools
import math

import torch
from monai.networks.blocks import UnetrUpBlock
from torch import nn


@functools.lru_cache(maxsize=64)
def sincos_positions(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """2-D sinusoidal position codes, `(h*w, dim)` float32; half the channels encode y, half x. Computed once
    per shape and device (every forward of every stage asks); callers must not change the tensor in place."""
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, even when first asked under inference
        quarter = dim // 4
        freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1))
        ys = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freq[None]
        xs = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freq[None]
        pos_y = torch.cat([ys.sin(), ys.cos()], dim=1)[:, None, :].expand(h, w, 2 * quarter)
        pos_x = torch.cat([xs.sin(), xs.cos()], dim=1)[None, :, :].expand(h, w, 2 * quarter)
        pos = torch.cat([pos_y, pos_x], dim=-1).reshape(h * w, 4 * quarter)
        if pos.shape[1] < dim:
            pos = torch.cat([pos, pos.new_zeros(h * w, dim - pos.shape[1])], dim=1)
    return pos


class GuideLayer(nn.Module):
    """Visual tokens attend to themselves, then to the text; shapes `(B, N, C)` in and out."""

    def __init__(self, dim: int, text_dim: int, num_heads: int, scale_init: float = 0.01) -> None:
        super().__init__()
        heads = max(1, min(num_heads, dim // 8))
        while dim % heads:
            heads -= 1
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_self_out = nn.LayerNorm(dim)
        self.text_proj = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_cross_out = nn.LayerNorm(dim)
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    def forward(self, vis: torch.Tensor, pos: torch.Tensor, txt: torch.Tensor, txt_keep: torch.Tensor) -> torch.Tensor:
        """vis `(B, N, C)`, pos `(N, C)`, txt `(B, L, Dt)`, txt_keep `(B, L)` bool -> `(B, N, C)`."""
        q = self.norm_self(vis)
        attn, _ = self.self_attn(q + pos, q + pos, q, need_weights=False)
        vis = vis + self.norm_self_out(attn)
        t = self.text_proj(txt)
        q = self.norm_cross(vis)
        # a caption with no token left (all padding) would give NaN softmax: keep the first token
        keep = txt_keep.clone()
        keep[:, 0] = True
        attn, _ = self.cross_attn(q + pos, t, t, key_padding_mask=~keep, need_weights=False)
        return vis + self.scale * self.norm_cross_out(attn)


class GuideStage(nn.Module):
    """GuideLayer at the input resolution, then UnetrUpBlock(x2) fused with the skip feature."""

    def __init__(self, in_ch: int, out_ch: int, text_dim: int, num_heads: int, scale_init: float) -> None:
        super().__init__()
        self.guide = GuideLayer(in_ch, text_dim, num_heads, scale_init)
        self.up = UnetrUpBlock(2, in_ch, out_ch, kernel_size=3, upsample_kernel_size=2, norm_name="INSTANCE")

    def forward(self, x: torch.Tensor, skip: torch.Tensor, txt: torch.Tensor, txt_keep: torch.Tensor) -> torch.Tensor:
        """x `(B, Cin, h, w)`, skip `(B, Cout, 2h, 2w)` -> `(B, Cout, 2h, 2w)`."""
        b, c, h, w = x.shape
        pos = sincos_positions(h, w, c, x.device).to(x.dtype)
        tokens = x.flatten(2).transpose(1, 2) + pos  # absolute position in the residual stream (ViT-style)
        tokens = self.guide(tokens, pos, txt, txt_keep)
        x = tokens.transpose(1, 2).reshape(b, c, h, w)
        return self.up(x, skip)
