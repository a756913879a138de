"""What a training method plugs into the loop (`training.loop.fit`): the `Method` interface, `Supervised` (the
method of `medref pretrain`), and `build_method`, which builds a run's method from its registry entry
(`config.METHODS`: the semi-supervised methods are `semi.methods.TeacherStudent`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from medref_cli.config import MethodConfig
    from medref_cli.training.context import RunContext


class Method:
    """The interface: `step` returns the loss of one batch pair; the hooks default to doing nothing."""

    name: str = ""
    uses_unlabeled: bool = False  # the loop draws unlabelled batches for `step`
    strong_view: str = "jitter"  # the unlabelled batches' photometric strong view (config.STRONG_VIEWS)
    strong_views: int = 1  # how many strong views each unlabelled item carries (`image_s`, `image_s2`)

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def step(self, model: nn.Module, batch_l: dict, batch_u: dict | None, epoch: int) -> tuple[torch.Tensor, dict]:
        """(loss, {name: float} logged per step) of one labelled batch and, with `uses_unlabeled`, one
        unlabelled batch."""
        raise NotImplementedError

    def after_optimizer_step(self, model: nn.Module, epoch: int, step: int) -> None:
        """Hook (EMA teacher update)."""

    def eval_module(self, model: nn.Module) -> nn.Module:
        """The module validated and saved as the best model."""
        return model

    def best_state(self, model: nn.Module) -> dict[str, Any]:
        """What `checkpoint_best.pt` holds besides the run's identity: the evaluated weights, and any more."""
        return {"model": self.eval_module(model).state_dict()}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Hook."""

    def epoch_logs(self, epoch: int) -> dict[str, float]:
        return {}

    def reduce_logs(self, sums: dict[str, float], steps: int) -> dict[str, float]:
        """Per-epoch figures from the per-step sums (means by default)."""
        return {k: v / steps for k, v in sums.items()}


class Supervised(Method):
    """Supervised training on labelled batches: `cfg.sup_loss` (`supervised_loss`; MONAI DiceCE by default)."""

    name = "supervised"

    def __init__(self, ctx: RunContext, cfg: MethodConfig) -> None:
        super().__init__(ctx)
        self.sup_loss = supervised_loss(cfg.sup_loss)

    def step(self, model: nn.Module, batch_l: dict, batch_u: dict | None, epoch: int) -> tuple[torch.Tensor, dict]:
        dev = self.ctx.device
        feats, keep = self.ctx.text(batch_l["text"], dev)
        out = model(batch_l["image"].to(dev), feats, keep)
        loss = self.sup_loss(out["logits"].float(), batch_l["label"].to(dev))
        return loss, {"loss_sup": loss.item()}


def supervised_loss(name: str) -> nn.Module:
    """The loss on labelled masks (`config.SUP_LOSSES`): MONAI Dice, or DiceCE, on sigmoid logits."""
    from monai.losses import DiceCELoss, DiceLoss

    return DiceLoss(sigmoid=True) if name == "dice" else DiceCELoss(sigmoid=True)


def build_method(ctx: RunContext) -> Method:
    """The run's `Method` (its config's `method.name`), built from its registry entry (`config.METHODS[...]
    .builder`, "module:Class") with the run's method config."""
    from medref_cli.config import METHODS

    module, cls = METHODS[ctx.config.method.name].builder.split(":")
    return getattr(importlib.import_module(module), cls)(ctx, ctx.config.method)
