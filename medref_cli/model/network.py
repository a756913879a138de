"""MedRefNet: an image encoder (`model.encoder`, see `encoders.py`) + frozen text features -> three guide stages ->
x4 sub-pixel -> logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import SubpixelUpsample, UnetOutBlock
from torch import nn

from medref_cli.config import ModelConfig
from medref_cli.model.encoders import build_encoder
from medref_cli.model.guide_decoder import GuideStage


class MedRefNet(nn.Module):
    """Referring segmentation network.

    forward(image `(B, 1, H, W)` float in [0, 1]-ish, text `(B, L, Dt)`, text_keep `(B, L)` bool) ->
    dict with `logits` `(B, 1, H, W)`, `img_emb` `(B, P)` and `txt_emb` `(B, P)` (both L2-normalised).
    H and W must be multiples of 32.
    """

    def __init__(self, cfg: ModelConfig, text_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_dim = text_dim
        self.encoder = build_encoder(cfg)
        w = list(cfg.encoder_widths)
        self.stages = nn.ModuleList(
            GuideStage(w[i], w[i - 1], text_dim, cfg.num_heads, cfg.guide_scale_init) for i in (3, 2, 1)
        )
        self.upsample = SubpixelUpsample(2, w[0], cfg.head_channels, scale_factor=4, apply_pad_pool=False)
        self.out = UnetOutBlock(2, cfg.head_channels, 1)
        self.img_proj = nn.Sequential(nn.Linear(w[3], cfg.proj_dim), nn.LayerNorm(cfg.proj_dim))
        self.txt_proj = nn.Sequential(
            nn.Linear(text_dim, cfg.proj_dim), nn.LayerNorm(cfg.proj_dim), nn.GELU(),
            nn.Linear(cfg.proj_dim, cfg.proj_dim),
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor, text_keep: torch.Tensor, feature_dropout: float = 0.0,
                perturb_from: int = 0, embed_only: bool = False) -> dict[str, torch.Tensor]:
        """`feature_dropout` > 0 (training only): channel dropout on every encoder feature map of the images
        from index `perturb_from` on (UniMatch's feature perturbation). `embed_only`: the ITCL embeddings alone
        (encoder and heads, no decoder)."""
        feats = self.encoder(image)  # strides 4, 8, 16, 32
        if feature_dropout > 0 and self.training:
            feats = [torch.cat([f[:perturb_from], F.dropout2d(f[perturb_from:], feature_dropout)]) for f in feats]
        keep = text_keep.unsqueeze(-1).to(text.dtype)
        txt_mean = (text * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        out = {"img_emb": F.normalize(self.img_proj(feats[3].mean(dim=(2, 3))), dim=-1),
               "txt_emb": F.normalize(self.txt_proj(txt_mean), dim=-1)}
        if embed_only:
            return out
        x = feats[3]
        for stage, skip in zip(self.stages, (feats[2], feats[1], feats[0]), strict=True):
            x = stage(x, skip, text, text_keep)
        return {"logits": self.out(self.upsample(x)), **out}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
