"""Semi-supervised methods as one `Method` differing only by config (SPEC 3.5).

| method        | teacher | unlabelled loss | mixing                  | PosAug | ITCL |
|---------------|---------|-----------------|-------------------------|--------|------|
| supervised    | -       | -               | -                       | -      | -    |
| mean-teacher  | EMA     | pseudo-label    | none                    | -      | -    |
| cutmix        | EMA     | pseudo-label    | random CutMix, text kept| -      | -    |
| semi-medref   | EMA     | pseudo-label    | T-PatchMix              | yes    | yes  |

The ablations switch off `t_patchmix`, `pos_aug` or `itcl` of semi-medref.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medref_cli.errors import MedrefError
from medref_cli.semi.ema import EmaPair, ema_decay, unsup_weight
from medref_cli.semi.itc import itc_loss
from medref_cli.semi.pos_aug import pos_aug
from medref_cli.semi.t_patchmix import random_cutmix, t_patchmix
from medref_cli.training.loop import Method, RunContext
from medref_cli.zones import parse_zones

METHODS = ("supervised", "mean-teacher", "cutmix", "semi-medref")


@dataclass
class MethodConfig:
    """Every (ref) number of SPEC 3 is a field here."""

    name: str = "semi-medref"
    t_patchmix: bool = True
    pos_aug: bool = True
    itcl: bool = True
    conf_thresh: float = 0.55  # teacher confidence for a pixel to count in L_u
    unsup_weight: float = 0.3
    burn_in_epochs: int = 5
    unsup_ramp_epochs: int = 15
    ema_start: float = 0.99
    ema_end: float = 0.999
    ema_ramp_epochs: int = 20
    itc_weight_labeled: float = 0.02
    itc_weight_unlabeled: float = 0.10
    itc_tau: float = 0.07
    pos_aug_p: float = 0.5
    pos_aug_mode: str = "mix"
    mix_block: int = 16  # at 224 px; scaled with the image size
    mix_prob: float = 0.08
    mix_gate: float = 0.55
    cutmix_prob: float = 0.5  # cutmix baseline
    eval_model: str = "student"  # student | teacher


def method_config(values: dict[str, Any], where: str = "method") -> MethodConfig:
    known = {f.name for f in fields(MethodConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MedrefError(f"{where}: unknown field(s) {', '.join(unknown)}")
    cfg = MethodConfig(**values)
    if cfg.name not in METHODS:
        raise MedrefError(f"--method {cfg.name!r}: choose one of {', '.join(METHODS)}")
    if cfg.name != "semi-medref":
        cfg.t_patchmix = cfg.pos_aug = cfg.itcl = False
    if cfg.eval_model not in ("student", "teacher"):
        raise MedrefError(f"--eval-model {cfg.eval_model!r}: choose student or teacher")
    return cfg


def masked_pseudo_loss(logits: torch.Tensor, pseudo: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over confident pixels only. logits, pseudo, conf `(B, 1, H, W)`; conf float {0,1}."""
    bce = F.binary_cross_entropy_with_logits(logits, pseudo, reduction="none")
    bce = (bce * conf).sum() / conf.sum().clamp(min=1.0)
    p = torch.sigmoid(logits) * conf
    t = pseudo * conf
    dice = 1 - (2 * (p * t).sum((1, 2, 3)) + 1e-5) / (p.sum((1, 2, 3)) + t.sum((1, 2, 3)) + 1e-5)
    return bce + dice.mean()


class TeacherStudent(Method):
    uses_unlabeled = True

    def __init__(self, ctx: RunContext, cfg: MethodConfig) -> None:
        super().__init__(ctx)
        self.cfg = cfg
        self.name = cfg.name
        self.uses_unlabeled = cfg.name != "supervised"
        self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        self.block = max(2, round(cfg.mix_block * ctx.model_cfg.image_size / 224))
        self._stats: dict[str, float] = {}
        self._decay = 0.0
        self._ema = EmaPair(self.teacher, ctx.model)  # `fit` passes ctx.model to after_optimizer_step
        self.rng = random.Random(ctx.train.seed)
        self.gen = torch.Generator().manual_seed(ctx.train.seed)

    # -- the step: one screen ------------------------------------------------------------------------
    def step(self, model: nn.Module, batch_l: dict, batch_u: dict | None, epoch: int) -> tuple[torch.Tensor, dict]:
        c, dev = self.cfg, self.ctx.device
        w_u = unsup_weight(epoch, c.burn_in_epochs, c.unsup_ramp_epochs, c.unsup_weight)
        img_l, mask_l, text_l = batch_l["image"].to(dev), batch_l["label"].to(dev), batch_l["text"]
        if batch_u is None or w_u == 0.0:  # burn-in: supervised only
            out = model(img_l, *self.ctx.text(text_l, dev))
            loss_sup = self.sup_loss(out["logits"].float(), mask_l)
            loss_itc_l = self._itc(out, batch_l["zones"]) if c.itcl else torch.zeros((), device=dev)
            logs = {"loss_sup": loss_sup.item(), "loss_itc_l": loss_itc_l.item(), "w_u": 0.0}
            return loss_sup + c.itc_weight_labeled * loss_itc_l, logs
        img_u_w, img_u_s, text_u = batch_u["image"].to(dev), batch_u["image_s"].to(dev), list(batch_u["text"])
        with torch.no_grad():
            prob_u_w = torch.sigmoid(self.teacher(img_u_w, *self.ctx.text(text_u, dev))["logits"].float())
        perm = torch.randperm(img_u_s.shape[0], generator=self.gen).to(dev)
        stats = {"mix_attempted": 0.0, "mix_accepted": 0.0}
        if c.t_patchmix:
            mix = t_patchmix(img_u_s, prob_u_w, text_u, perm, self.block, c.mix_prob, c.mix_gate, self.gen)
            img_u_mix, prob_u_mix, text_u_mix = mix.image, mix.prob, mix.texts
            stats = {"mix_attempted": float(mix.attempted), "mix_accepted": float(mix.accepted)}
        elif c.name == "cutmix":
            mix = random_cutmix(img_u_s, prob_u_w, perm, c.cutmix_prob, self.gen)
            img_u_mix, prob_u_mix, text_u_mix = mix.image, mix.prob, text_u
        else:
            img_u_mix, prob_u_mix, text_u_mix = img_u_s, prob_u_w, text_u
        zones_u = torch.tensor([parse_zones(t) for t in text_u_mix], dtype=torch.long)
        text_u_student = [pos_aug(t, c.pos_aug_p, c.pos_aug_mode, self.rng) for t in text_u_mix] if c.pos_aug \
            else text_u_mix
        pseudo_u = (prob_u_mix >= 0.5).float()
        conf_u = (torch.maximum(prob_u_mix, 1 - prob_u_mix) >= c.conf_thresh).float()
        n_l = img_l.shape[0]
        feats, keep = self.ctx.text(text_l + text_u_student, dev)
        out = model(torch.cat([img_l, img_u_mix]), feats, keep)
        logits_l, logits_u = out["logits"][:n_l].float(), out["logits"][n_l:].float()
        loss_sup = self.sup_loss(logits_l, mask_l)
        loss_u = masked_pseudo_loss(logits_u, pseudo_u, conf_u)
        loss = loss_sup + w_u * loss_u
        logs = {"loss_sup": loss_sup.item(), "loss_u": loss_u.item(), "w_u": w_u,
                "conf_ratio": conf_u.mean().item(), **stats}
        if c.itcl:
            loss_itc_l = itc_loss(out["img_emb"][:n_l], out["txt_emb"][:n_l], batch_l["zones"], c.itc_tau)
            loss_itc_u = itc_loss(out["img_emb"][n_l:], out["txt_emb"][n_l:], zones_u, c.itc_tau)
            loss = loss + c.itc_weight_labeled * loss_itc_l + w_u * c.itc_weight_unlabeled * loss_itc_u
            logs.update({"loss_itc_l": loss_itc_l.item(), "loss_itc_u": loss_itc_u.item()})
        logs["loss"] = loss.item()
        return loss, logs

    def _itc(self, out: dict, zones: torch.Tensor) -> torch.Tensor:
        return itc_loss(out["img_emb"], out["txt_emb"], zones, self.cfg.itc_tau)

    # -- hooks ---------------------------------------------------------------------------------------
    def after_optimizer_step(self, model: nn.Module, epoch: int, step: int) -> None:
        c = self.cfg
        self._decay = ema_decay(epoch, c.burn_in_epochs, c.ema_ramp_epochs, c.ema_start, c.ema_end)
        self._ema.update(self._decay)

    def eval_module(self, model: nn.Module) -> nn.Module:
        return self.teacher if self.cfg.eval_model == "teacher" else model

    def epoch_logs(self, epoch: int) -> dict[str, float]:
        return {"ema_decay": self._decay}

    def reduce_logs(self, sums: dict[str, float], steps: int) -> dict[str, float]:
        out = {k: v / steps for k, v in sums.items() if not k.startswith("mix_")}
        if sums.get("mix_attempted"):
            out["t_patchmix_attempts"] = sums["mix_attempted"]
            out["t_patchmix_acceptance"] = sums["mix_accepted"] / sums["mix_attempted"]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "rng": list(self.rng.getstate()[1]),
                "rng_pos": self.rng.getstate()[2] if self.rng.getstate()[2] is not None else -1,
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.rng.setstate((3, tuple(state["rng"]), None if state["rng_pos"] == -1 else state["rng_pos"]))
        self.gen.set_state(state["gen"])
