"""`Predictor`: the one inference path of validation, `evaluate`, `pseudo-label` and `predict`.

It owns what turns images and reports into masks: the image at the model's size (`to_model_size`, the resize
the prepared-data transforms use, so an image gives the same mask whether it comes prepared or raw), batching
(`batches`), the forward pass with mixed precision on CUDA, the side gate, resizing back to each image's size
and the threshold. `open_predictor` opens one from a run (best or latest checkpoint; the evaluated weights, or
the teacher's), `from_bundled` from a model shipped in the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medref_cli.config import THRESHOLD
from medref_cli.errors import MedrefError
from medref_cli.training.transforms import image_tensor


def resize_image(size: int):  # noqa: ANN201 - a MONAI Resize
    """The image resize of `base_transforms`: `(1, H, W)` -> `(1, size, size)`, bilinear."""
    from monai.transforms import Resize

    return Resize(spatial_size=(size, size), mode="bilinear")


@dataclass
class Predictor:
    model: torch.nn.Module  # MedRefNet, eval mode, on `device`
    text: Any  # FrozenTextEncoder on `device`
    device: torch.device
    threshold: float = THRESHOLD  # a pixel is lesion when its probability is >= this
    side_gate: bool = False  # zero the probability in the image half a one-lung report does not name
    laterality: str = "image"  # which sides free-text reports name (a dataset's `laterality`), for the gate
    amp: bool | None = None  # mixed precision; None: on CUDA only
    weights: str = "evaluated"  # which of a run's weights: evaluated (what validation chose) | teacher

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    def batches(self, data: list[dict], batch_size: int) -> Iterable[dict]:
        """Prepared items (`items()` dicts) in batches at the model's size: `image` `(B, 1, s, s)`, `text`, `id`,
        `zones` and `label` `(B, 1, s, s)` where every item has a mask."""
        from medref_cli.training.data import eval_dataset, loader

        return loader(eval_dataset(data, self.image_size), batch_size, False, 0)

    def to_model_size(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8 `(H, W)` images of any sizes -> `(B, 1, s, s)` float32 in [0, 1], as `batches` would give them."""
        resize = resize_image(self.image_size)
        return torch.stack([torch.as_tensor(resize(image_tensor(im))) for im in images])

    @torch.no_grad()
    def forward(self, image: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """image `(B, 1, s, s)` in [0, 1] + reports -> (probabilities `(B, 1, s, s)` float32 on the CPU, side gate
        applied when on; the model's whole output on `device`)."""
        from medref_cli.training.inference import forward_probs

        probs, out = forward_probs(self.model, self.text, image, texts, self.device, self.amp)
        if self.side_gate:
            from medref_cli.report_zones import caption_zones
            from medref_cli.zone_masks import side_mask

            zones = torch.tensor([caption_zones(t, self.laterality)[0] for t in texts])
            probs = probs * side_mask(zones, *probs.shape[-2:])
        return probs, out

    def probs(self, image: torch.Tensor, texts: list[str]) -> torch.Tensor:
        return self.forward(image, texts)[0]

    def masks(self, probs: torch.Tensor, sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """probs `(B, 1, s, s)` -> per image (probability `(H, W)` float, mask `(H, W)` bool) at its own size."""
        from medref_cli.training.inference import at_sizes

        return at_sizes(probs, sizes, self.threshold)

    def segment(self, images: list[np.ndarray], texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """uint8 `(H, W)` images (any sizes) + reports -> per image (uint8 {0,1} mask, float32 probability) at
        its own size, in one forward pass."""
        probs = self.probs(self.to_model_size(images), texts)
        return [(mask.numpy().astype(np.uint8), p.numpy()) for p, mask in self.masks(probs, [im.shape for im in images])]


def open_predictor(ws, run: str, which: str = "best", device: str = "auto", weights: str = "evaluated",  # noqa: ANN001
                   side_gate: bool | None = False, with_dataset: bool = True):  # noqa: ANN201 - (Predictor, TrainedRun)
    """(Predictor, TrainedRun) of a run's `which` checkpoint (best | latest). `weights`: `evaluated` (the
    weights validation chose the checkpoint by: the student, or the teacher where the run evaluates it) or
    `teacher` (the EMA teacher where the run's method has one, else the evaluated weights); the method's registry
    entry (`config.METHODS[...].weights`) says which checkpoint key holds which. `side_gate` None: as the run's
    method trained (`method.side_gate`). The side gate reads reports with the run's dataset laterality (opened with
    `with_dataset`)."""
    from medref_cli.training.trained_run import open_run

    if weights not in ("evaluated", "teacher"):
        raise MedrefError(f"weights {weights!r}: choose evaluated or teacher")
    from medref_cli.config import METHODS

    tr = open_run(ws, run, which, device, with_dataset=with_dataset)
    keys = METHODS[tr.config.method.name].weights
    used = weights if keys.get(weights) in tr.ckpt else "evaluated"
    if used != "evaluated":  # the registry says which checkpoint key holds them
        tr.model.load_state_dict(tr.ckpt[keys[used]])
    laterality = tr.manifest.laterality if tr.manifest is not None else "image"
    gate = tr.config.method.side_gate if side_gate is None else side_gate
    return Predictor(tr.model, tr.text, tr.device, side_gate=gate, laterality=laterality, weights=used), tr


def from_bundled(name: str, device: str = "auto") -> Predictor:
    """The Predictor of a model shipped in the package (`medref models`), its hash checked first."""
    from medref_cli.bundled_models import open_model

    model, text, dev = open_model(name, device)
    return Predictor(model, text, dev)
