"""The benchmark's building blocks do what RESULTS.md says they do (the timings themselves are not tested)."""

import pytest
import torch

from bench.step import bare_semi_step, step_flops
from bench.workload import setup


@pytest.mark.slow
def test_bare_step_trains_the_model_and_flops_scale_with_the_batch():
    s = setup("tiny")
    before = [p.detach().clone() for p in s.model.parameters()]
    bare_semi_step(s)()
    changed = sum(not torch.equal(a, p) for a, p in zip(before, s.model.parameters(), strict=True))
    assert changed > 0.9 * len(before)
    small = step_flops(setup("tiny", batch_size=4, batch_size_unlabeled=4))
    large = step_flops(setup("tiny", batch_size=8, batch_size_unlabeled=8))
    assert small > 0 and 1.9 < large / small < 2.1
