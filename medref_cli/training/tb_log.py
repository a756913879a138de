"""`--logger tensorboard`: per-epoch scalars (every loss term, w_u, EMA decay, confident ratio, T-PatchMix
acceptance, val Dice, lr, timing), the training curve and a few validation overlays as images, under
`<run>/tensorboard/` (`tensorboard --logdir <workdir>/runs`). Needs the `tensorboard` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medref_cli.errors import MedrefError

LOGGERS = ("none", "tensorboard")
INSTALL = "pip install 'medref[tensorboard]'"


def check_logger(name: str) -> None:
    """Refuse an unknown logger, or tensorboard without its package, before any training starts."""
    if name not in LOGGERS:
        raise MedrefError(f"--logger {name!r}: choose one of {', '.join(LOGGERS)}")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise MedrefError(f"--logger tensorboard needs the tensorboard package: {INSTALL}") from None


class TensorBoardLog:
    def __init__(self, run: Path) -> None:
        check_logger("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run / "tensorboard"))

    def epoch(self, row: dict[str, Any], epoch: int) -> None:
        """Every numeric field of the metrics.jsonl row, grouped: loss/..., val/..., ssl/..., time/..."""
        for key, value in row.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or key == "epoch":
                continue
            self.writer.add_scalar(f"{_group(key)}/{key}", float(value), epoch)

    def image(self, tag: str, rgb: np.ndarray, epoch: int) -> None:
        """rgb `(H, W, 3)` uint8."""
        self.writer.add_image(tag, rgb, epoch, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _group(key: str) -> str:
    if key.startswith("loss"):
        return "loss"
    if key.startswith("val_"):
        return "val"
    if key in ("lr",):
        return "optim"
    if key.endswith("_s") or key == "text_cache_hit_rate":
        return "time"
    return "ssl"


def overlay_grid(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """[(image, prediction, truth)] 2-D arrays -> `(H, W*n, 3)` uint8: gray image, truth in green, prediction in red."""
    tiles = []
    for image, pred, truth in samples:
        g = np.clip(image * 255 if image.max() <= 1.0 else image, 0, 255).astype(np.uint8)
        rgb = np.stack([g, g, g], -1).astype(np.float32)
        rgb[truth > 0.5] = 0.5 * rgb[truth > 0.5] + 0.5 * np.array([0, 255, 0])
        rgb[pred > 0.5] = 0.5 * rgb[pred > 0.5] + 0.5 * np.array([255, 0, 0])
        tiles.append(rgb.astype(np.uint8))
    return np.concatenate(tiles, axis=1)
