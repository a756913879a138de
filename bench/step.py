"""The training step: medref's loop against a bare PyTorch loop, achieved FLOP/s, the text cache."""

from __future__ import annotations

import copy
import json
import time

import torch
from monai.losses import DiceCELoss

from bench.workload import Setup, captions, time_per_call
from medref_cli.semi.itc import itc_loss
from medref_cli.semi.methods import masked_pseudo_loss
from medref_cli.zones import parse_zones


def bare_semi_step(s: Setup, seed: int = 0):  # noqa: ANN201 - () -> None
    """The semi-medref step's model work on fixed tensors, written as plain PyTorch: teacher forward on the
    unlabelled batch, one student forward/backward on labelled + unlabelled, default AdamW, a loop of `lerp_`
    for the EMA. No loader, no text lookups, no mixing, none of medref's optimisations."""
    gen = torch.Generator().manual_seed(seed)
    size, b_l, b_u = s.model_cfg.image_size, s.train.batch_size, s.train.batch_size_unlabeled
    img_l = torch.rand(b_l, 1, size, size, generator=gen)
    mask_l = (torch.rand(b_l, 1, size, size, generator=gen) > 0.8).float()
    img_u = torch.rand(b_u, 1, size, size, generator=gen)
    caps = captions(b_l + b_u, seed)
    with torch.no_grad():
        feats, keep = s.text(caps)
    zones = torch.tensor([parse_zones(c) for c in caps], dtype=torch.long)
    model = s.model.train()
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=s.train.lr, weight_decay=s.train.weight_decay)
    dicece = DiceCELoss(sigmoid=True)

    def step() -> None:
        with torch.no_grad():
            prob_u = torch.sigmoid(teacher(img_u, feats[b_l:], keep[b_l:])["logits"])
        out = model(torch.cat([img_l, img_u]), feats, keep)
        pseudo, conf = (prob_u >= 0.5).float(), (torch.maximum(prob_u, 1 - prob_u) >= 0.55).float()
        loss = (dicece(out["logits"][:b_l], mask_l) + 0.3 * masked_pseudo_loss(out["logits"][b_l:], pseudo, conf)
                + 0.02 * itc_loss(out["img_emb"][:b_l], out["txt_emb"][:b_l], zones[:b_l])
                + 0.03 * itc_loss(out["img_emb"][b_l:], out["txt_emb"][b_l:], zones[b_l:]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for t, p in zip(teacher.parameters(), model.parameters(), strict=True):
                t.lerp_(p, 0.01)

    return step


def step_flops(s: Setup) -> int:
    """FLOPs of one semi step (teacher forward + student forward and backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    size, b_l, b_u = s.model_cfg.image_size, s.train.batch_size, s.train.batch_size_unlabeled
    model = copy.deepcopy(s.model).train()
    caps = captions(b_l + b_u)
    with torch.no_grad():
        feats, keep = s.text(caps)
    img = torch.rand(b_l + b_u, 1, size, size)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(img[b_l:], feats[b_l:], keep[b_l:])
        out = model(img, feats, keep)
        out["logits"].float().mean().backward()
    return int(counter.get_total_flops())


def matmul_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    sec = time_per_call(lambda: a @ b, repeats)
    return 2 * n**3 / sec


def run_name(preset: str) -> str:
    """The run folder `medref_step_seconds` trains (and `evaluate` throughput is measured on)."""
    return f"bench-{preset}-semi-medref"


def medref_step_seconds(ws, preset: str, steps: int) -> float:  # noqa: ANN001
    """Seconds per step of `semi-train` itself (the third epoch: the first two warm the caches), from its
    metrics.jsonl."""
    from medref_cli.config import TrainRequest
    from medref_cli.stages import semi_train

    name = run_name(preset)
    req = TrainRequest(stage="semi-train", method="semi-medref", labeled="25%", dataset="syn", seed=0, preset=preset,
                       name=name, overwrite=True, overrides={
                           "train": {"epochs": 3, "steps_per_epoch": steps, "val_max_images": 8, "patience": 99},
                           "method": {"burn_in_epochs": 0, "unsup_ramp_epochs": 1}})
    semi_train.run(req, ws)
    last = json.loads((ws.runs / name / "metrics.jsonl").read_text().splitlines()[-1])
    return last["epoch_s"] / steps


def text_cache(s: Setup, n_samples: int, batch: int) -> dict:
    """Encoder calls and captions encoded over one epoch's caption stream, cache on and off."""
    from medref_cli.model.text_encoder import FrozenTextEncoder

    stream = captions(n_samples, seed=1)
    out = {}
    for label, size in (("on", s.train.text_cache_size), ("off", 0)):
        enc = FrozenTextEncoder(s.model_cfg.text_encoder, s.model_cfg.max_tokens, size)
        starts = range(0, n_samples, batch)
        t = time.perf_counter()
        for i in starts:
            enc(stream[i : i + batch])
        sec = time.perf_counter() - t
        out[label] = {"seconds": sec, "encoded": enc.encoded,
                      "per_batch_s": sec / len(starts)}
    out["samples"] = n_samples
    out["unique"] = len(set(stream))
    return out


def channels_last_gain(s: Setup, repeats: int) -> tuple[float, float]:
    """Bare step seconds in the default memory format and in channels-last."""
    base = time_per_call(bare_semi_step(s), repeats)
    s2 = copy.copy(s)
    s2.model = copy.deepcopy(s.model).to(memory_format=torch.channels_last)
    cl = time_per_call(bare_semi_step(s2), repeats)
    return base, cl


def profile_ops(s: Setup, steps: int = 3, top: int = 12) -> list[tuple[str, float, float]]:
    """(op, share of self CPU time, self CPU ms per step) for the bare step's most expensive operators."""
    from torch.profiler import ProfilerActivity, profile

    step = bare_semi_step(s)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / total, e.self_cpu_time_total / 1000 / steps) for e in events[:top]]


def optimisations(s: Setup, repeats: int = 20) -> list[tuple[str, float, float]]:
    """(change, seconds before, seconds after) for the step-level changes medref keeps."""
    from medref_cli.semi.ema import EmaPair
    from medref_cli.training.loop import adamw

    model = copy.deepcopy(s.model)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    teacher = copy.deepcopy(model)
    pair = EmaPair(teacher, model)
    plain = torch.optim.AdamW(model.parameters(), lr=1e-4)
    fused = adamw(model, 1e-4, 0.01, torch.device("cpu"))

    def loop_ema() -> None:
        with torch.no_grad():
            for t, p in zip(teacher.parameters(), model.parameters(), strict=True):
                t.lerp_(p, 0.01)

    return [
        ("AdamW step: default -> fused", time_per_call(plain.step, repeats), time_per_call(fused.step, repeats)),
        ("EMA update: lerp_ loop -> one _foreach_lerp_", time_per_call(loop_ema, repeats),
         time_per_call(lambda: pair.update(0.99), repeats)),
    ]
