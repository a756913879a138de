"""Semi-supervised methods as one `Method` differing only by config (SPEC 3.5).

| method        | teacher | unlabelled loss | mixing                  | PosAug | ITCL |
|---------------|---------|-----------------|-------------------------|--------|------|
| supervised    | -       | -               | -                       | -      | -    |
| mean-teacher  | EMA     | pseudo-label    | none                    | -      | -    |
| cutmix        | EMA     | pseudo-label    | random CutMix, text kept| -      | -    |
| semi-medref   | EMA     | pseudo-label    | T-PatchMix (+ side-consistent CutMix, medref recipe) | yes | yes |

The ablations switch off `t_patchmix`, `pos_aug`, `itcl` or `cutmix` of semi-medref; `config.py` holds the
config.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medref_cli.config import MethodConfig, check_semi_method
from medref_cli.semi.cutmix import random_cutmix
from medref_cli.semi.ema import EmaPair, ema_decay, unsup_weight
from medref_cli.semi.itc import itc_floor, itc_loss
from medref_cli.semi.pos_aug import pos_aug
from medref_cli.semi.t_patchmix import first_phrase, phrases_agree, t_patchmix
from medref_cli.training.context import RunContext
from medref_cli.training.data import STRONG_KEYS
from medref_cli.training.method import Method, supervised_loss
from medref_cli.zone_masks import side_mask


def masked_pseudo_loss(logits: torch.Tensor, pseudo: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over confident pixels only. logits, pseudo, conf `(B, 1, H, W)`; conf float {0,1}."""
    bce = F.binary_cross_entropy_with_logits(logits, pseudo, reduction="none")
    bce = (bce * conf).sum() / conf.sum().clamp(min=1.0)
    return bce + soft_dice(logits, pseudo, conf)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over images of 1 - (2|p t| + 1e-5) / (|p| + |t| + 1e-5), p = sigmoid(logits), optionally
    restricted to the pixels where `weight` is 1 (MONAI `DiceLoss(sigmoid=True)` when `weight` is None).
    logits, target, weight `(B, 1, H, W)`."""
    p = torch.sigmoid(logits)
    if weight is not None:
        p, target = p * weight, target * weight
    dims = (1, 2, 3)
    return (1 - (2 * (p * target).sum(dims) + 1e-5) / (p.sum(dims) + target.sum(dims) + 1e-5)).mean()


def _known(batch: dict) -> torch.Tensor:
    """`(B,)` bool: the report names a position (batches without the key: all known)."""
    if "zones_known" in batch:
        return batch["zones_known"]
    return torch.ones(len(batch["text"]), dtype=torch.bool)


def mixed_zones(zones: torch.Tensor, texts: list[str], perm: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Zone vectors after T-PatchMix: i's zones OR the zones of j = perm(i)'s first phrase where a block was
    pasted. zones `(B, 6)` long, box `(B, 1, H, W)` -> `(B, 6)` long."""
    out = zones.clone()
    for i in torch.nonzero(box.flatten(1).amax(1) > 0).flatten().tolist():
        pb = first_phrase(texts[int(perm[i])])
        if pb is not None:
            out[i] |= torch.tensor(pb.zones, dtype=out.dtype)
    return out


def _same(texts: list[str]) -> list[str]:
    return texts


def _no_gate(prob: torch.Tensor, zones: torch.Tensor) -> torch.Tensor:
    return prob


def _side_gate(prob: torch.Tensor, zones: torch.Tensor) -> torch.Tensor:
    """prob `(B, 1, H, W)` with the image half a one-lung report (zones `(B, 6)`) does not name set to 0."""
    return prob * side_mask(zones, *prob.shape[-2:])


def _dice_all_pixels(logits: torch.Tensor, pseudo: torch.Tensor, prob: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(Dice against the hard pseudo-label over every pixel (ref), confident share 1.0)."""
    return soft_dice(logits, pseudo), 1.0


def _bce_dice_confident(conf_thresh: float):  # noqa: ANN202 - the loss function below
    def loss(logits: torch.Tensor, pseudo: torch.Tensor, prob: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(BCE + Dice over the pixels the teacher is confident about, their share)."""
        conf = (torch.maximum(prob, 1 - prob) >= conf_thresh).float()
        return masked_pseudo_loss(logits, pseudo, conf), conf.mean().item()

    return loss


@dataclass
class _View:
    """One strong view of the unlabelled batch, ready for the student."""

    image: torch.Tensor
    prob: torch.Tensor  # the teacher's probability, mixed like the image
    pseudo: torch.Tensor  # its hard pseudo-label
    texts: list[str]
    zones: torch.Tensor
    stats: dict[str, float]


def _merge_stats(views: list[_View]) -> dict[str, float]:
    """Mixing counts add up over the views; the CutMix share is their mean."""
    out: dict[str, float] = {}
    for v in views:
        for k, x in v.stats.items():
            out[k] = out.get(k, 0.0) + x
    if "cutmix_share" in out:
        out["cutmix_share"] /= len(views)
    return out


class TeacherStudent(Method):
    """Every semi-supervised method (`METHODS` entries of stage semi-train): an EMA teacher pseudo-labels the
    unlabelled batch; the config switches the mixing, PosAug and ITCL."""

    uses_unlabeled = True

    def __init__(self, ctx: RunContext, cfg: MethodConfig) -> None:
        super().__init__(ctx)
        check_semi_method(cfg.name)
        self.cfg = cfg
        self.name = cfg.name
        self.strong_view, self.strong_views = cfg.strong_view, cfg.strong_views
        self.sup_loss = supervised_loss(cfg.sup_loss)
        self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        self.block = max(2, round(cfg.mix_block * ctx.model_cfg.image_size / 224))
        self._decay = 0.0
        self._ema = EmaPair(self.teacher, ctx.model)  # `fit` passes ctx.model to after_optimizer_step
        self.rng = random.Random(ctx.train.seed)
        self.gen = torch.Generator().manual_seed(ctx.train.seed)
        # the recipe's variants, chosen once: `step` has no recipe branch
        self.thresh = cfg.pseudo_thresh if cfg.t_patchmix else cfg.pseudo_thresh_no_mix
        self._gate = _side_gate if cfg.side_gate else _no_gate
        self._aug_before_mix, self._aug_after_mix = ((self._pos_aug, _same) if cfg.pos_aug_first
                                                     else (_same, self._pos_aug))
        self._unsup = _dice_all_pixels if cfg.unsup_loss == "dice" else _bce_dice_confident(cfg.conf_thresh)
        self._itc_u = self._itc_weak_view if cfg.itc_unlabeled_view == "weak" else self._itc_mixed_view

    # -- the step: one screen ------------------------------------------------------------------------
    def step(self, model: nn.Module, batch_l: dict, batch_u: dict | None, epoch: int) -> tuple[torch.Tensor, dict]:
        c, dev = self.cfg, self.ctx.device
        w_u = unsup_weight(epoch, c.burn_in_epochs, c.unsup_ramp_epochs, c.unsup_weight)
        img_l, mask_l, text_l = batch_l["image"].to(dev), batch_l["label"].to(dev), batch_l["text"]
        if batch_u is None or w_u == 0.0:  # burn-in: supervised only
            out = model(img_l, *self.ctx.text(text_l, dev))
            loss_sup = self.sup_loss(out["logits"].float(), mask_l)
            loss_itc_l = self._itc(out, batch_l["zones"], _known(batch_l)) if c.itcl else torch.zeros((), device=dev)
            logs = {"loss_sup": loss_sup.item(), "loss_itc_l": loss_itc_l.item(), "w_u": 0.0}
            if c.itcl:
                logs["itc_floor_l"] = self._itc_floor(batch_l["zones"], _known(batch_l))
            return loss_sup + c.itc_weight_labeled * loss_itc_l, logs
        img_u_w, text_u = batch_u["image"].to(dev), list(batch_u["text"])
        zones_u, known_u = batch_u["zones"].to(dev), _known(batch_u)
        with torch.no_grad():
            prob_u_w = self._gate(torch.sigmoid(self.teacher(img_u_w, *self.ctx.text(text_u, dev))["logits"].float()),
                                  zones_u)
        views = [self._strong_view(batch_u[key].to(dev), prob_u_w, text_u, zones_u, known_u)
                 for key in STRONG_KEYS[:self.strong_views]]
        n_l, n_u = img_l.shape[0], img_u_w.shape[0]
        feats, keep = self.ctx.text(text_l + [t for v in views for t in v.texts], dev)
        out = model(torch.cat([img_l, *(v.image for v in views)]), feats, keep, feature_dropout=c.feature_dropout,
                    perturb_from=n_l)
        loss_sup = self.sup_loss(out["logits"][:n_l].float(), mask_l)
        outs_u = [{k: t[n_l + i * n_u:n_l + (i + 1) * n_u] for k, t in out.items()} for i in range(len(views))]
        unsup = [self._unsup(o["logits"].float(), v.pseudo, v.prob) for o, v in zip(outs_u, views, strict=True)]
        loss_u = sum(u for u, _ in unsup) / len(views)
        loss = loss_sup + w_u * loss_u
        logs = {"loss_sup": loss_sup.item(), "loss_u": loss_u.item(), "w_u": w_u,
                "conf_ratio": sum(r for _, r in unsup) / len(views),
                "pseudo_fg": sum(v.pseudo.mean().item() for v in views) / len(views), **_merge_stats(views)}
        if c.itcl:
            loss_itc_l = self._itc({k: v[:n_l] for k, v in out.items()}, batch_l["zones"], _known(batch_l))
            loss_itc_u = self._itc_u(model, outs_u, views, img_u_w, text_u, zones_u, known_u)
            loss = loss + c.itc_weight_labeled * loss_itc_l + w_u * c.itc_weight_unlabeled * loss_itc_u
            logs.update({"loss_itc_l": loss_itc_l.item(), "loss_itc_u": loss_itc_u.item(),
                         "itc_floor_l": self._itc_floor(batch_l["zones"], _known(batch_l)),
                         "itc_floor_u": self._itc_floor_u(views, zones_u, known_u)})
        logs["loss"] = loss.item()
        return loss, logs

    def _strong_view(self, img_s: torch.Tensor, prob_u_w: torch.Tensor, text_u: list[str], zones_u: torch.Tensor,
                     known_u: torch.Tensor) -> _View:
        """One strong view: mixed (T-PatchMix / CutMix) with its own partners, its reports PosAug-ed, and the
        hard pseudo-label of the mixed teacher probability."""
        image, prob, texts, zones, stats = self._mix(img_s, prob_u_w, self._aug_before_mix(text_u), zones_u, known_u)
        return _View(image, prob, (prob >= self.thresh).float(), self._aug_after_mix(texts), zones, stats)

    def _pos_aug(self, texts: list[str]) -> list[str]:
        c = self.cfg
        return ([pos_aug(t, c.pos_aug_p, c.pos_aug_mode, self.rng, c.pos_aug_keep_side) for t in texts] if c.pos_aug
                else texts)

    def _mix(self, img: torch.Tensor, prob: torch.Tensor, texts: list[str], zones: torch.Tensor,  # noqa: ANN202
             known: torch.Tensor):
        """T-PatchMix (only between reports with a known position), then random CutMix (clipped to the lung
        halves both reports name with `cutmix_sides`), either, or nothing -> (image, prob, texts, zones, stats)."""
        c = self.cfg
        perm = torch.randperm(img.shape[0], generator=self.gen).to(img.device)
        stats: dict[str, float] = {}
        if c.t_patchmix:
            usable = known.cpu() & phrases_agree(texts, zones.cpu())
            mix = t_patchmix(img, prob, texts, perm, self.block, c.mix_prob, c.mix_gate, self.gen, usable.tolist())
            stats = {"mix_attempted": float(mix.attempted), "mix_accepted": float(mix.accepted),
                     "t_patchmix_share": float(mix.box_mask.mean())}  # of the unlabelled pixels, per step
            img, prob, zones, texts = mix.image, mix.prob, mixed_zones(zones, texts, perm, mix.box_mask), mix.texts
        if c.cutmix:
            h, w = img.shape[-2:]
            allowed = side_mask(zones, h, w) * side_mask(zones[perm], h, w) if c.cutmix_sides else None
            mix = random_cutmix(img, prob, perm, c.cutmix_prob, self.gen, allowed=allowed)
            img, prob = mix.image, mix.prob
            stats["cutmix_share"] = float(mix.box_mask.mean())
        return img, prob, texts, zones, stats

    def _itc_weak_view(self, model: nn.Module, outs_u: list[dict], views: list[_View], img_u_w: torch.Tensor,
                       text_u: list[str], zones_u: torch.Tensor, known_u: torch.Tensor) -> torch.Tensor:
        """Unlabelled ITC on a separate pass: the student's encoder on (weak image, original text) (ref); one pass
        whatever the number of strong views."""
        out_w = model(img_u_w, *self.ctx.text(text_u, self.ctx.device), embed_only=True)
        return self._itc(out_w, zones_u, known_u)

    def _itc_mixed_view(self, model: nn.Module, outs_u: list[dict], views: list[_View], img_u_w: torch.Tensor,
                        text_u: list[str], zones_u: torch.Tensor, known_u: torch.Tensor) -> torch.Tensor:
        """Unlabelled ITC on the student's own pass over each strong view's mixed images and mixed zones, their
        mean."""
        return sum(self._itc(o, v.zones, known_u) for o, v in zip(outs_u, views, strict=True)) / len(views)

    def _itc_floor(self, zones: torch.Tensor, known: torch.Tensor) -> float:
        """The least ITC loss these zone vectors allow (logged beside the loss: the gap is what ITCL can learn)."""
        return itc_floor(zones, self.cfg.itc_empty_positive, known, self.cfg.itc_target_power).item()

    def _itc_floor_u(self, views: list[_View], zones_u: torch.Tensor, known_u: torch.Tensor) -> float:
        """The floor of the unlabelled ITC loss: of the original zones (weak view) or of each view's mixed ones."""
        if self.cfg.itc_unlabeled_view == "weak":
            return self._itc_floor(zones_u, known_u)
        return sum(self._itc_floor(v.zones, known_u) for v in views) / len(views)

    def _itc(self, out: dict, zones: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return itc_loss(out["img_emb"], out["txt_emb"], zones, c.itc_tau, c.itc_empty_positive, known,
                        c.itc_target_power)

    # -- hooks ---------------------------------------------------------------------------------------
    def after_optimizer_step(self, model: nn.Module, epoch: int, step: int) -> None:
        c = self.cfg
        self._decay = ema_decay(epoch, c.burn_in_epochs, c.ema_ramp_epochs, c.ema_start, c.ema_end,
                                c.burn_in_teacher)
        self._ema.update(self._decay)

    def eval_module(self, model: nn.Module) -> nn.Module:
        return self.teacher if self.cfg.eval_model == "teacher" else model

    def best_state(self, model: nn.Module) -> dict[str, Any]:
        return {**super().best_state(model), "teacher": self.teacher.state_dict()}

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
