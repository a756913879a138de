"""Teacher = EMA of the student over parameters and float buffers; the ramps of SPEC 3.1."""

from __future__ import annotations

import torch
from torch import nn


class EmaPair:
    """teacher <- decay * teacher + (1 - decay) * student over parameters and floating-point buffers;
    integer buffers (BatchNorm's num_batches_tracked) are copied.

    The tensor lists are gathered once, so an update is one fused `_foreach_lerp_` (bench/RESULTS.md: about
    5x faster than a Python loop of `lerp_` on the tiny preset). Valid while neither module swaps its tensors
    for new ones (`load_state_dict` copies in place, so it keeps them).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module) -> None:
        pairs = list(zip(teacher.parameters(), student.parameters(), strict=True))
        pairs += list(zip(teacher.buffers(), student.buffers(), strict=True))
        self.t_float = [t for t, _ in pairs if t.dtype.is_floating_point]
        self.s_float = [s.detach() for t, s in pairs if t.dtype.is_floating_point]
        self.ints = [(t, s) for t, s in pairs if not t.dtype.is_floating_point]

    @torch.no_grad()
    def update(self, decay: float) -> None:
        if self.t_float:
            torch._foreach_lerp_(self.t_float, self.s_float, 1.0 - decay)
        for t, s in self.ints:
            t.copy_(s)


def ema_decay(epoch: float, burn_in: int, ramp: int, start: float = 0.99, end: float = 0.999,
              burn_in_teacher: str = "ema") -> float:
    """During burn-in: `start` (the teacher keeps averaging, ref) or 0 (`copy`: it copies the student); then
    start -> end linearly over `ramp` epochs."""
    if epoch < burn_in:
        return start if burn_in_teacher == "ema" else 0.0
    if ramp <= 0:
        return end
    return start + (end - start) * min(1.0, (epoch - burn_in) / ramp)


def unsup_weight(epoch: float, burn_in: int, ramp: int, weight: float = 0.3) -> float:
    """w_u(e) = weight * clip((e - burn_in) / ramp, 0, 1)  (SPEC 3.1: 0.3, 5, 15)."""
    if ramp <= 0:
        return weight if epoch >= burn_in else 0.0
    return weight * min(1.0, max(0.0, (epoch - burn_in) / ramp))
