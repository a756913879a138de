"""The one training loop: pretrain and every semi-supervised method plug a `Method` into `fit`.

Per epoch: seeded shuffles (seed, epoch) so a resumed run replays exactly; AdamW + per-step cosine
schedule; AMP on CUDA; validation Dice on **val** only (early stopping, best checkpoint);
`checkpoint_latest.pt` every epoch; one `metrics.jsonl` row; the curve PNG. Under `torchrun` each rank
takes its shard of every batch list and rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.utils.data import Sampler

from medref_cli.model import checkpoint
from medref_cli.model.presets import ModelConfig, TrainConfig
from medref_cli.plots import line_plot
from medref_cli.training.data import eval_dataset, loader, train_dataset, without_meta_tracking
from medref_cli.training.inference import autocast, predict_probs
from medref_cli.training.metrics import confusion, summarize
from medref_cli.training.run_dir import RunInfo, append_metrics, read_metrics, truncate_metrics
from medref_cli.training.tb_log import TensorBoardLog, overlay_grid
from medref_cli.workspace import run_lock

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    run: Path
    config: dict[str, Any]  # resolved {"model", "train", "method"?}
    preset: str
    model_cfg: ModelConfig
    train: TrainConfig
    model: nn.Module
    text: Any  # FrozenTextEncoder
    device: torch.device
    info: RunInfo
    rank: int = 0
    world: int = 1
    progress: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def amp(self) -> bool:
        return self.train.amp and self.device.type == "cuda"


class Method:
    """Supervised training (DiceCE on labelled batches); semi-supervised methods override the hooks."""

    name = "supervised"
    uses_unlabeled = False

    def __init__(self, ctx: RunContext) -> None:
        from monai.losses import DiceCELoss

        self.ctx = ctx
        self.sup_loss = DiceCELoss(sigmoid=True)

    def step(self, model: nn.Module, batch_l: dict, batch_u: dict | None, epoch: int) -> tuple[torch.Tensor, dict]:
        dev = self.ctx.device
        feats, keep = self.ctx.text(batch_l["text"], dev)
        out = model(batch_l["image"].to(dev), feats, keep)
        loss = self.sup_loss(out["logits"].float(), batch_l["label"].to(dev))
        return loss, {"loss_sup": loss.item()}

    def after_optimizer_step(self, model: nn.Module, epoch: int, step: int) -> None:
        """Hook (EMA teacher update)."""

    def eval_module(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Hook."""

    def epoch_logs(self, epoch: int) -> dict[str, float]:
        return {}

    def reduce_logs(self, sums: dict[str, float], steps: int) -> dict[str, float]:
        """Per-epoch figures from the per-step sums (means by default)."""
        return {k: v / steps for k, v in sums.items()}


class EpochBatches(Sampler[list[int]]):
    """Exactly `steps` index batches for one epoch, reshuffled (seeded) whenever the data run out; under
    DDP rank r takes every world-th index of each global batch."""

    def __init__(self, n: int, batch: int, steps: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch, self.steps, self.seed, self.rank, self.world = n, batch, steps, seed, rank, world

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed)
        global_batch = min(self.batch * self.world, max(self.n, self.world))
        order: list[int] = []
        for _ in range(self.steps):
            if len(order) < global_batch:
                order += torch.randperm(self.n, generator=gen).tolist() * max(1, math.ceil(global_batch / self.n))
            chunk, order = order[:global_batch], order[global_batch:]
            yield chunk[self.rank :: self.world]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def validate(module: nn.Module, text: Any, ds, device: torch.device, amp: bool, batch: int,  # noqa: ANN001
             samples: list | None = None, n_samples: int = 3) -> dict:
    """Both protocols on `ds`; appends the first `n_samples` (image, probability, truth) 2-D arrays to `samples`."""
    was_training = module.training
    module.eval()
    counts = []
    for b in loader(ds, batch, shuffle=False, num_workers=0):
        probs = predict_probs(module, text, b["image"], b["text"], device, amp)
        counts.append(confusion(probs >= 0.5, b["label"] >= 0.5))
        for k in range(min(n_samples - len(samples), len(probs)) if samples is not None else 0):
            samples.append((b["image"][k, 0].numpy(), probs[k, 0].float().cpu().numpy(), b["label"][k, 0].numpy()))
    module.train(was_training)
    return summarize(torch.cat(counts)) if counts else summarize(torch.zeros(0, 3))


def adamw(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step where torch supports it on `device` (CPU and CUDA in torch 2.4+):
    4-6x less optimizer time than the default per-tensor loop (bench/RESULTS.md)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):  # older torch, or a device without a fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _cosine(total: int, warmup: int, anneal_factor: float = 1.0) -> Any:
    """LR factor per step: linear warm-up, then a cosine whose period is `anneal_factor` x the remaining steps
    (1.0 ends at 0; 2.0 ends at 0.5, as the reference's 200-epoch schedule stopped at epoch 100)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup)) / anneal_factor
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@without_meta_tracking
def fit(ctx: RunContext, method: Method, data_l: list[dict], data_u: list[dict] | None, data_val: list[dict],
        resume: bool = False) -> RunInfo:
    """Train until the epochs, the patience or the time budget run out; rank 0 holds the run folder's lock."""
    with run_lock(ctx.run) if ctx.is_main else contextlib.nullcontext():
        return _fit(ctx, method, data_l, data_u, data_val, resume)


def _fit(ctx: RunContext, method: Method, data_l: list[dict], data_u: list[dict] | None, data_val: list[dict],
         resume: bool) -> RunInfo:
    cfg = ctx.train
    size = ctx.model_cfg.image_size
    model = ctx.model
    net: nn.Module = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    ds_l = train_dataset(data_l, cfg, size, strong=False)
    ds_u = train_dataset(data_u, cfg, size, strong=True) if method.uses_unlabeled and data_u else None
    if cfg.val_max_images and len(data_val) > cfg.val_max_images:
        data_val = random.Random(cfg.seed).sample(data_val, cfg.val_max_images)
    ds_val = eval_dataset(data_val, size) if ctx.is_main else None
    if cfg.steps_per_epoch:
        steps = cfg.steps_per_epoch
    elif ds_u is not None:
        steps = math.ceil(len(ds_u) / (cfg.batch_size_unlabeled * ctx.world))
    else:
        steps = max(math.ceil(len(ds_l) / (cfg.batch_size * ctx.world)), cfg.min_steps_per_epoch)
    opt = adamw(model, cfg.lr, cfg.weight_decay, ctx.device)
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(cfg.epochs * steps, cfg.warmup_epochs * steps,
                                                                cfg.anneal_factor))
    scaler = torch.amp.GradScaler("cuda", enabled=ctx.amp() and not torch.cuda.is_bf16_supported())
    start, best, best_epoch, bad, elapsed_before = 0, -1.0, None, 0, 0.0
    latest = ctx.run / "checkpoint_latest.pt"
    if resume:
        state = checkpoint.load(latest, ctx.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        method.load_state_dict(state["method_state"])
        start, best, best_epoch, bad = state["epoch"] + 1, state["best"], state["best_epoch"], state["bad"]
        elapsed_before = state["elapsed"]
        if ctx.is_main:
            truncate_metrics(ctx.run, state["epoch"])
        log.info("resumed from %s at epoch %d", latest, start)
    tb = TensorBoardLog(ctx.run) if ctx.is_main and cfg.logger == "tensorboard" else None
    t0 = time.time() - elapsed_before
    log.info("%s: %d labelled, %d unlabelled, %d val images; %d steps/epoch, %d epochs, device %s",
             method.name, len(ds_l), len(ds_u) if ds_u else 0, len(data_val), steps, cfg.epochs, ctx.device)
    status = "finished"
    for epoch in range(start, cfg.epochs):
        epoch_seed = cfg.seed * 100_003 + epoch
        seed_everything(epoch_seed)
        ds_l.transform.set_random_state(seed=epoch_seed % 2**32)
        if ds_u is not None:
            ds_u.transform.set_random_state(seed=(epoch_seed + 1) % 2**32)
        model.train()
        gen = torch.Generator().manual_seed(epoch_seed)
        it_l = iter(loader(ds_l, 1, False, cfg.num_workers, generator=gen, batch_sampler=EpochBatches(
            len(ds_l), cfg.batch_size, steps, epoch_seed, ctx.rank, ctx.world)))
        it_u = None
        if ds_u is not None:
            it_u = iter(loader(ds_u, 1, False, cfg.num_workers, generator=gen, batch_sampler=EpochBatches(
                len(ds_u), cfg.batch_size_unlabeled, steps, epoch_seed + 1, ctx.rank, ctx.world)))
        ctx.text.reset_stats()
        sums: dict[str, float] = {}
        t_epoch = time.time()
        for step in range(steps):
            batch_l = next(it_l)
            batch_u = next(it_u) if it_u is not None else None
            with autocast(ctx.device, ctx.amp()):
                loss, logs = method.step(net, batch_l, batch_u, epoch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if budget_s:  # follow the wall-clock budget when it runs out before the epochs do
                share = (time.time() - t0) / budget_s
                if share * cfg.epochs * steps > sched.last_epoch:
                    for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
                        group["lr"] = base * sched.lr_lambdas[0](int(share * cfg.epochs * steps))
            method.after_optimizer_step(model, epoch, epoch * steps + step)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
        row: dict[str, Any] = {"epoch": epoch, "steps": steps, "lr": opt.param_groups[0]["lr"],
                               **method.reduce_logs(sums, steps), **method.epoch_logs(epoch),
                               "text_cache_hit_rate": round(ctx.text.hit_rate, 4),
                               "epoch_s": round(time.time() - t_epoch, 2)}
        stop = torch.zeros(1, device=ctx.device)  # NCCL broadcasts device tensors only
        if ctx.is_main:
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                shown: list = []
                val = validate(method.eval_module(model), ctx.text, ds_val, ctx.device, ctx.amp(), cfg.batch_size,
                               shown if tb else None)
                if tb and shown:
                    tb.image("val/overlays (red: prediction, green: truth)", overlay_grid(shown), epoch)
                dice = val["global"]["dice"]
                row.update({"val_dice_global": dice, "val_iou_global": val["global"]["iou"],
                            "val_dice_per_image": val["per_image"]["dice"]})
                if dice > best:
                    best, best_epoch, bad = dice, epoch, 0
                    _save_best(ctx, method, model, epoch, dice)
                else:
                    bad += 1
                if bad >= cfg.patience:
                    status, stop[0] = "stopped-early", 1
            elapsed = time.time() - t0
            row["elapsed_s"] = round(elapsed, 1)
            if cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60 and stop[0] == 0:
                status, stop[0] = "budget-reached", 1
            checkpoint.save(latest, {
                **_identity(ctx, method), "model": model.state_dict(), "epoch": epoch,
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "method_state": method.state_dict(), "best": best, "best_epoch": best_epoch, "bad": bad,
                "elapsed": elapsed,
            })
            append_metrics(ctx.run, row)
            plot_curve(ctx.run)
            if tb:
                tb.epoch(row, epoch)
                tb.image("curve", np.asarray(Image.open(ctx.run / "curve.png").convert("RGB")), epoch)
            ctx.info.epochs_done, ctx.info.best_epoch, ctx.info.best_val_dice = epoch + 1, best_epoch, best
            ctx.info.save(ctx.run)
            log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                      if isinstance(v, float) and k != "lr"))
        if ctx.world > 1:
            dist.broadcast(stop, src=0)
        if stop[0] > 0:
            break
    ctx.info.status = status
    if tb:
        tb.close()
    if ctx.is_main:
        ctx.info.save(ctx.run)
    return ctx.info


def _identity(ctx: RunContext, method: Method) -> dict[str, Any]:
    return {"config": ctx.config, "preset": ctx.preset, "text_dim": ctx.text.dim,
            "text_encoder": ctx.model_cfg.text_encoder, "stage": ctx.info.stage, "method": method.name}


def _save_best(ctx: RunContext, method: Method, model: nn.Module, epoch: int, dice: float) -> None:
    payload = {**_identity(ctx, method), "model": method.eval_module(model).state_dict(), "epoch": epoch,
               "val_dice_global": dice, "eval_model": ctx.info.eval_model}
    teacher = getattr(method, "teacher", None)
    if teacher is not None:
        payload["teacher"] = teacher.state_dict()
    checkpoint.save(ctx.run / "checkpoint_best.pt", payload)


def plot_curve(run: Path) -> None:
    rows = read_metrics(run)
    loss_key = "loss" if rows and "loss" in rows[0] else "loss_sup"
    series = {
        "train loss": [(r["epoch"], r.get(loss_key, float("nan")), 0.0) for r in rows],
        "val Dice (global)": [(r["epoch"], r["val_dice_global"], 0.0) for r in rows if "val_dice_global" in r],
    }
    line_plot(series, run / "curve.png", f"{run.name}", "epoch", "value")
