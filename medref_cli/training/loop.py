"""The one training loop: pretrain and every semi-supervised method plug a `Method` (`training/method.py`) into
`fit`.

Per epoch: seeded shuffles (seed, epoch) so a resumed run replays exactly; AdamW + per-step cosine
schedule; AMP on CUDA; validation Dice on **val** only (early stopping, best checkpoint);
`checkpoint_latest.pt` after every epoch (or at most every `train.checkpoint_every_s`, and at a new best and the
end); one `metrics.jsonl` row; the curve PNG. Under `torchrun` each rank
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

from medref_cli.artifacts import RunStatus
from medref_cli.config import TrainConfig
from medref_cli.errors import MedrefError
from medref_cli.model import checkpoint
from medref_cli.plots import line_plot
from medref_cli.training.context import RunContext
from medref_cli.training.data import eval_dataset, loader, train_dataset, without_meta_tracking
from medref_cli.training.inference import autocast
from medref_cli.training.method import Method
from medref_cli.training.metrics import confusion, summarize
from medref_cli.training.predictor import Predictor
from medref_cli.training.run_dir import append_metrics, read_metrics, restore_metrics
from medref_cli.training.tb_log import TensorBoardLog, overlay_grid
from medref_cli.workspace import run_lock

log = logging.getLogger(__name__)


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
    """Both protocols on `ds`, and `i2t_zone_top1` / `i2t_zone_chance` (`zone_retrieval` of the ITCL projections
    over the whole set); appends the first `n_samples` (image, probability, truth) 2-D arrays to `samples`."""
    from medref_cli.semi.itc import zone_retrieval

    was_training = module.training
    module.eval()
    predictor = Predictor(module, text, device, amp=amp)  # at the model's size: val labels are resized with it
    counts, img_emb, txt_emb, zones = [], [], [], []
    for b in loader(ds, batch, shuffle=False, num_workers=0):
        probs, out = predictor.forward(b["image"], b["text"])
        counts.append(confusion(probs >= predictor.threshold, b["label"] >= 0.5))  # the label is {0, 1}
        img_emb.append(out["img_emb"].float().cpu())
        txt_emb.append(out["txt_emb"].float().cpu())
        zones.append(b["zones"])
        for k in range(min(n_samples - len(samples), len(probs)) if samples is not None else 0):
            samples.append((b["image"][k, 0].numpy(), probs[k, 0].float().cpu().numpy(), b["label"][k, 0].numpy()))
    module.train(was_training)
    if not counts:
        return summarize(torch.zeros(0, 3))
    top1, chance = zone_retrieval(torch.cat(img_emb), torch.cat(txt_emb), torch.cat(zones))
    return {**summarize(torch.cat(counts)), "i2t_zone_top1": top1, "i2t_zone_chance": chance}


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
        resume: bool = False) -> RunStatus:
    """Train until the epochs, the patience or the time budget run out; rank 0 holds the run folder's lock."""
    with run_lock(ctx.run) if ctx.is_main else contextlib.nullcontext():
        try:
            return _Trainer(ctx, method, data_l, data_u, data_val).run(resume)
        except Exception:
            if ctx.is_main:  # not left "running": a crashed run says so (`--resume` continues it)
                ctx.status.status = "failed"
                ctx.status.save(ctx.run)
            raise


def _cuda_memory(device: torch.device) -> dict[str, float]:
    """On CUDA, the epoch's peak allocated memory in GiB (`cuda_peak_gib`), then the peak is reset; nothing on CPU."""
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return {"cuda_peak_gib": round(peak, 3)}


def check_finite_loss(row: dict[str, Any], run: Path) -> None:
    """Stop with a one-line error when an epoch's mean training loss is not finite (a diverged run: NaN from then
    on). The epoch's row and checkpoint are not written; `checkpoint_latest.pt` holds a good epoch (the last one
    unless `train.checkpoint_every_s` skipped some)."""
    bad = {k: v for k, v in row.items() if k.startswith("loss") and isinstance(v, float) and not math.isfinite(v)}
    if bad:
        name, value = next(iter(bad.items()))
        raise MedrefError(f"{run}: epoch {row['epoch']}: {name} is {value} (not finite): training diverged; lower "
                          f"train.lr or check the data (checkpoint_latest.pt holds a good epoch)")


def steps_per_epoch(cfg: TrainConfig, n_labeled: int, n_unlabeled: int, world: int = 1) -> int:
    """Fixed `steps_per_epoch`, else one pass over the unlabelled pool (semi), else over the labelled set."""
    if cfg.steps_per_epoch:
        return cfg.steps_per_epoch
    if n_unlabeled:
        return math.ceil(n_unlabeled / (cfg.batch_size_unlabeled * world))
    return max(math.ceil(n_labeled / (cfg.batch_size * world)), cfg.min_steps_per_epoch)


def budget_step(elapsed_s: float, budget_s: float | None, total_steps: int, done_steps: int) -> int | None:
    """The schedule step that the spent share of the wall-clock budget stands for, when it is ahead of the
    steps taken (the budget runs out before the epochs do); None while the epochs lead."""
    if not budget_s:
        return None
    at = int(elapsed_s / budget_s * total_steps)
    return at if at > done_steps else None


@dataclass
class Progress:
    """What survives a restart besides the weights: the next epoch, the best val Dice, the patience count."""

    epoch: int = 0
    best: float = -1.0
    best_epoch: int | None = None
    bad: int = 0
    elapsed: float = 0.0
    anchor: float | None = None  # the val Dice at the last patience restart (None: best; = best when min_delta is 0)

    def __post_init__(self) -> None:
        if self.anchor is None:
            self.anchor = self.best

    def record(self, epoch: int, dice: float, min_delta: float = 0.0) -> bool:
        """Account one validation; True when it is a new best (the best checkpoint follows any gain). The
        patience count restarts only on a gain of more than `min_delta` over the score of its last restart
        (`anchor`), as Lightning's EarlyStopping in the official code: small gains that add up count."""
        self.epoch = epoch + 1
        if dice > self.anchor + min_delta:  # type: ignore[operator] - set in __post_init__
            self.bad, self.anchor = 0, dice
        else:
            self.bad += 1
        if dice > self.best:
            self.best, self.best_epoch = dice, epoch
            return True
        return False


def stop_reason(cfg: TrainConfig, progress: Progress, elapsed_s: float) -> str | None:
    """"stopped-early" once `patience` validations brought no gain above `min_delta` (never before
    `min_epochs` epochs are done), "budget-reached" past the time budget."""
    if progress.bad >= cfg.patience and progress.epoch >= cfg.min_epochs:
        return "stopped-early"
    if cfg.max_minutes is not None and elapsed_s > cfg.max_minutes * 60:
        return "budget-reached"
    return None


def stop_flag(stop: bool, device: torch.device) -> torch.Tensor:
    """Rank 0's stop decision as a tensor for `dist.broadcast`, on the run's device: NCCL (CUDA) takes device
    tensors only, so a CPU flag breaks `torchrun` on GPUs after the first epoch."""
    return torch.tensor([1.0 if stop else 0.0], device=device)


class _Trainer:
    """`fit` in named pieces: build the data and optimiser, restore, one epoch, validate and checkpoint."""

    def __init__(self, ctx: RunContext, method: Method, data_l: list[dict], data_u: list[dict] | None,
                 data_val: list[dict]) -> None:
        cfg, size = ctx.train, ctx.model_cfg.image_size
        self.ctx, self.method, self.cfg = ctx, method, cfg
        self.net: nn.Module = ctx.model
        if ctx.world > 1:
            self.net = nn.parallel.DistributedDataParallel(ctx.model, find_unused_parameters=True)
        self.ds_l = train_dataset(data_l, cfg, size, strong=False)
        self.ds_u = (train_dataset(data_u, cfg, size, strong=True, view=method.strong_view, views=method.strong_views)
                     if method.uses_unlabeled and data_u else None)
        if cfg.val_max_images and len(data_val) > cfg.val_max_images:
            data_val = random.Random(cfg.seed).sample(data_val, cfg.val_max_images)
        self.n_val = len(data_val)
        self.ds_val = eval_dataset(data_val, size) if ctx.is_main else None
        self.steps = steps_per_epoch(cfg, len(self.ds_l), len(self.ds_u) if self.ds_u else 0, ctx.world)
        self.opt = adamw(ctx.model, cfg.lr, cfg.weight_decay, ctx.device)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _cosine(
            cfg.epochs * self.steps, cfg.warmup_epochs * self.steps, cfg.anneal_factor))
        fp16 = ctx.device.type == "cuda" and ctx.amp() and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)  # bfloat16 needs no loss scaling
        self.progress = Progress()
        self.latest = ctx.run / "checkpoint_latest.pt"
        self.tb = TensorBoardLog(ctx.run) if ctx.is_main and cfg.logger == "tensorboard" else None
        self.t0 = time.time()
        self.plotted = 0.0  # when curve.png was last drawn (`CURVE_EVERY_S`)
        self.saved = time.time()  # when checkpoint_latest.pt was last written (or the run (re)started)

    def restore(self) -> None:
        state = checkpoint.load(self.latest, self.ctx.device)
        self.ctx.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(state["method_state"])
        self.progress = Progress(state["epoch"] + 1, state["best"], state["best_epoch"], state["bad"],
                                 state["elapsed"], state.get("anchor"))  # older checkpoints: no anchor
        if self.ctx.is_main:
            restore_metrics(self.ctx.run, state["epoch"], state.get("row"))
        log.info("resumed from %s at epoch %d", self.latest, self.progress.epoch)

    def run(self, resume: bool) -> RunStatus:
        ctx = self.ctx
        if resume:
            self.restore()
        self.t0 = time.time() - self.progress.elapsed
        self.saved = time.time()
        log.info("%s: %d labelled, %d unlabelled, %d val images; %d steps/epoch, %d epochs, device %s",
                 self.method.name, len(self.ds_l), len(self.ds_u) if self.ds_u else 0, self.n_val, self.steps,
                 self.cfg.epochs, ctx.device)
        status = "finished"
        for epoch in range(self.progress.epoch, self.cfg.epochs):
            row = self.train_epoch(epoch)
            check_finite_loss(row, ctx.run)
            reason = self.validate_and_checkpoint(epoch, row) if ctx.is_main else None
            stop = stop_flag(reason is not None, ctx.device)
            if ctx.world > 1:
                dist.broadcast(stop, src=0)
            if stop.item() > 0:
                status = reason or status  # other ranks only learn that rank 0 stopped
                break
        ctx.status.status = status
        if self.tb:
            self.tb.close()
        if ctx.is_main:
            plot_curve(ctx.run)  # the whole run
            ctx.status.save(ctx.run)
        return ctx.status

    def _batches(self, ds, batch: int, seed: int, gen: torch.Generator) -> Iterator:  # noqa: ANN001
        sampler = EpochBatches(len(ds), batch, self.steps, seed, self.ctx.rank, self.ctx.world)
        return iter(loader(ds, 1, False, self.cfg.num_workers, generator=gen, batch_sampler=sampler))

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        ctx, cfg, method = self.ctx, self.cfg, self.method
        epoch_seed = cfg.seed * 100_003 + epoch
        seed_everything(epoch_seed)
        self.ds_l.transform.set_random_state(seed=epoch_seed % 2**32)
        if self.ds_u is not None:
            self.ds_u.transform.set_random_state(seed=(epoch_seed + 1) % 2**32)
        ctx.model.train()
        gen = torch.Generator().manual_seed(epoch_seed)
        it_l = self._batches(self.ds_l, cfg.batch_size, epoch_seed, gen)
        it_u = self._batches(self.ds_u, cfg.batch_size_unlabeled, epoch_seed + 1, gen) if self.ds_u else None
        ctx.text.reset_stats()
        sums: dict[str, float] = {}
        t_epoch = time.time()
        for step in range(self.steps):
            with autocast(ctx.device, ctx.amp()):
                loss, logs = method.step(self.net, next(it_l), next(it_u) if it_u else None, epoch)
            self._optimizer_step(loss)
            method.after_optimizer_step(ctx.model, epoch, epoch * self.steps + step)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
        return {"epoch": epoch, "steps": self.steps, "lr": self.opt.param_groups[0]["lr"],
                **method.reduce_logs(sums, self.steps), **method.epoch_logs(epoch),
                "text_cache_hit_rate": round(ctx.text.hit_rate, 4), "epoch_s": round(time.time() - t_epoch, 2),
                **_cuda_memory(ctx.device)}

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        budget_s = self.cfg.max_minutes * 60 if self.cfg.max_minutes else None
        at = budget_step(time.time() - self.t0, budget_s, self.cfg.epochs * self.steps, self.sched.last_epoch)
        if at is not None:  # the wall-clock budget runs out before the epochs: follow its share of the schedule
            for group, base in zip(self.opt.param_groups, self.sched.base_lrs, strict=True):
                group["lr"] = base * self.sched.lr_lambdas[0](at)

    def validate_and_checkpoint(self, epoch: int, row: dict[str, Any]) -> str | None:
        """Rank 0: validate when due, keep the best, write the latest checkpoint (when `train.checkpoint_every_s`
        says so) and the epoch's row; returns the stop reason, if any."""
        ctx, cfg, method, progress = self.ctx, self.cfg, self.method, self.progress
        improved, last = False, epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.val_every == 0 or last:
            shown: list = []
            val = validate(method.eval_module(ctx.model), ctx.text, self.ds_val, ctx.device, ctx.amp(),
                           cfg.val_batch_size or cfg.batch_size, shown if self.tb else None)
            if self.tb and shown:
                self.tb.image("val/overlays (red: prediction, green: truth)", overlay_grid(shown), epoch)
            dice = val["global"]["dice"]
            row.update({"val_dice_global": dice, "val_iou_global": val["global"]["iou"],
                        "val_dice_per_image": val["per_image"]["dice"],
                        "val_i2t_zone_top1": val["i2t_zone_top1"], "val_i2t_zone_chance": val["i2t_zone_chance"]})
            improved = progress.record(epoch, dice, cfg.min_delta)
            if improved:
                _save_best(ctx, method, ctx.model, epoch, dice)
        progress.elapsed = time.time() - self.t0
        row["elapsed_s"] = round(progress.elapsed, 1)
        reason = stop_reason(cfg, progress, progress.elapsed)
        # the best model's epoch is never ahead of the latest checkpoint: a resume redoes no epoch past the best
        if improved or reason or last or time.time() - self.saved >= cfg.checkpoint_every_s:
            checkpoint.save(self.latest, {
                **_identity(ctx, method), "model": ctx.model.state_dict(), "epoch": epoch,
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(), "method_state": method.state_dict(), "best": progress.best,
                "best_epoch": progress.best_epoch, "bad": progress.bad, "elapsed": progress.elapsed,
                "anchor": progress.anchor,
                "row": row,  # metrics.jsonl's row of this epoch, put back on resume if the append below is lost
            })
            self.saved = time.time()
        self._write_epoch(epoch, row)
        return reason

    def _write_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        ctx = self.ctx
        append_metrics(ctx.run, row)
        if self.tb or time.time() - self.plotted >= CURVE_EVERY_S:  # drawing costs ~0.2 s: a tiny epoch's half
            plot_curve(ctx.run)
            self.plotted = time.time()
        if self.tb:
            self.tb.epoch(row, epoch)
            self.tb.image("curve", np.asarray(Image.open(ctx.run / "curve.png").convert("RGB")), epoch)
        ctx.status.epochs_done, ctx.status.best_epoch = epoch + 1, self.progress.best_epoch
        ctx.status.best_val_dice = self.progress.best
        ctx.status.save(ctx.run)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                  if isinstance(v, float) and k != "lr"))


def _identity(ctx: RunContext, method: Method) -> dict[str, Any]:
    return {"config": ctx.config.to_dict(), "preset": ctx.config.preset, "text_dim": ctx.text.dim,
            "text_encoder": ctx.model_cfg.text_encoder, "stage": ctx.config.stage, "method": method.name}


def _save_best(ctx: RunContext, method: Method, model: nn.Module, epoch: int, dice: float) -> None:
    payload = {**_identity(ctx, method), **method.best_state(model), "epoch": epoch, "val_dice_global": dice}
    checkpoint.save(ctx.run / "checkpoint_best.pt", payload)


CURVE_EVERY_S = 30.0  # curve.png is redrawn after an epoch at most this often, and at the end of the run


def plot_curve(run: Path) -> None:
    rows = read_metrics(run)
    loss_key = "loss" if rows and "loss" in rows[0] else "loss_sup"
    series = {
        "train loss": [(r["epoch"], r.get(loss_key, float("nan")), 0.0) for r in rows],
        "val Dice (global)": [(r["epoch"], r["val_dice_global"], 0.0) for r in rows if "val_dice_global" in r],
    }
    line_plot(series, run / "curve.png", f"{run.name}", "epoch", "value")
