"""Image encoders, one builder each in `ENCODERS` (segment-anything style): `model.encoder` names one.

Every encoder maps an image `(B, C, H, W)` (H, W multiples of 32) to four feature maps at strides 4, 8, 16 and 32
with `model.encoder_widths` channels, which the language-guided decoder consumes. Adding a backbone is one
builder here and one entry in `ENCODERS`.

- `convnext` (default): transformers `ConvNextModel`, random init or a local checkpoint (`encoder_pretrained`).
- `unet`: MONAI `BasicUNet`'s encoder blocks (`TwoConv`, then max-pool `Down` blocks; LeakyReLU, instance
  norm), the usual image-only baseline's backbone, here with the same text guidance in the decoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medref_cli.config import ModelConfig
from medref_cli.errors import MedrefError


class ConvNextEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.model = _convnext(cfg)
        self.in_channels = int(self.model.config.num_channels)
        self._register_load_state_dict_pre_hook(_older_layout)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.shape[1] != self.in_channels:
            image = image.expand(-1, self.in_channels, -1, -1)
        return list(self.model(pixel_values=image, output_hidden_states=True).hidden_states[1:])


def _older_layout(state: dict, prefix: str, *args) -> None:  # noqa: ANN002
    """Checkpoints written before the encoder registry hold the ConvNeXt weights one level up."""
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(prefix + "model.")]:
        state[prefix + "model." + key[len(prefix):]] = state.pop(key)


def _convnext(cfg: ModelConfig) -> nn.Module:
    """transformers `ConvNextModel`: config-built (random init) or loaded from a local dir / hub id."""
    from transformers import ConvNextConfig, ConvNextModel

    if cfg.encoder_pretrained:
        try:
            model = ConvNextModel.from_pretrained(cfg.encoder_pretrained, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise MedrefError(
                f"image encoder {cfg.encoder_pretrained!r}: neither a local folder nor in the Hugging Face cache "
                f"({exc.__class__.__name__}; medref runs offline); set model.encoder_pretrained in --config to a "
                "local ConvNeXt folder, or null for random init (--text-encoder DIR sets the text encoder)"
            ) from None
        widths = list(model.config.hidden_sizes)
        if widths != list(cfg.encoder_widths):
            raise MedrefError(
                f"image encoder {cfg.encoder_pretrained!r}: widths {widths} != model.encoder_widths {cfg.encoder_widths}"
            )
        return model
    config = ConvNextConfig(num_channels=cfg.in_channels, hidden_sizes=list(cfg.encoder_widths),
                            depths=list(cfg.encoder_depths), image_size=cfg.image_size)
    return ConvNextModel(config)


class UNetEncoder(nn.Module):
    """BasicUNet-style: `TwoConv` at full resolution (w0 / 2 channels), then five `Down` blocks to stride 32;
    returns the stride 4, 8, 16 and 32 maps."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from monai.networks.nets.basic_unet import Down, TwoConv

        if cfg.encoder_pretrained:
            raise MedrefError("model.encoder unet: no pretrained weights (set model.encoder_pretrained to null)")
        act, norm = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), ("instance", {"affine": True})
        w = list(cfg.encoder_widths)
        stem = max(8, w[0] // 2)
        self.stem = TwoConv(2, cfg.in_channels, stem, act, norm, True)
        chans = [stem, stem, *w]
        self.downs = nn.ModuleList(Down(2, a, b, act, norm, True) for a, b in zip(chans[:-1], chans[1:], strict=True))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(image[:, :1] if image.shape[1] != 1 else image)
        feats = []
        for down in self.downs:
            x = down(x)
            feats.append(x)
        return feats[1:]  # strides 4, 8, 16, 32


ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "convnext": ConvNextEncoder,
    "unet": UNetEncoder,
}


def build_encoder(cfg: ModelConfig) -> nn.Module:
    if cfg.encoder not in ENCODERS:
        raise MedrefError(f"model.encoder {cfg.encoder!r}: choose one of {', '.join(ENCODERS)}")
    return ENCODERS[cfg.encoder](cfg)
