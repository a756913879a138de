"""The training loop's pieces: epoch length, the wall-clock LR rule, early stopping, the DDP stop flag, and the
CPU autocast path."""

import pytest
import torch

from medref_cli.config import TrainConfig
from medref_cli.synthetic import SampleSpec, write
from medref_cli.training.device import flush_denormals
from medref_cli.training.inference import autocast
from medref_cli.training.loop import Progress, _cosine, budget_step, steps_per_epoch, stop_flag, stop_reason


@pytest.mark.parametrize(
    ("fields", "n_l", "n_u", "world", "steps"),
    [
        ({"steps_per_epoch": 7}, 100, 900, 1, 7),  # fixed length wins
        ({"batch_size_unlabeled": 16}, 100, 900, 1, 57),  # one pass over the unlabelled pool
        ({"batch_size_unlabeled": 16}, 100, 900, 2, 29),  # ... shared by two ranks
        ({"batch_size": 16}, 100, 0, 1, 7),  # supervised: one pass over the labelled set
        ({"batch_size": 16, "min_steps_per_epoch": 10}, 20, 0, 1, 10),  # tiny labelled set: a floor
    ],
)
def test_steps_per_epoch(fields, n_l, n_u, world, steps):
    assert steps_per_epoch(TrainConfig(**fields), n_l, n_u, world) == steps


@pytest.mark.parametrize(
    ("elapsed", "budget", "done", "expected"),
    [
        (30.0, None, 10, None),  # no budget: the step schedule alone
        (30.0, 600.0, 10, None),  # 5 % of the time, 10 % of the steps: the epochs lead
        (300.0, 600.0, 10, 50),  # half the time, 10 % of the steps: jump to step 50 of 100
        (900.0, 600.0, 10, 150),  # past the budget: beyond the end (the cosine clamps to its last value)
    ],
)
def test_budget_step_follows_the_time_share_when_it_leads(elapsed, budget, done, expected):
    assert budget_step(elapsed, budget, 100, done) == expected


def test_budget_rule_ends_a_short_budget_annealed():
    factor = _cosine(100, 0)
    at = budget_step(600.0, 600.0, 100, 20)
    assert at == 100 and factor(at) == pytest.approx(0.0, abs=1e-9) and factor(20) > 0.9


def test_early_stopping_counts_validations_without_a_new_best():
    cfg, p = TrainConfig(patience=2), Progress()
    seen = [
        (epoch, p.record(epoch, dice), stop_reason(cfg, p, 0.0))
        for epoch, dice in enumerate([0.5, 0.6, 0.6, 0.55, 0.7, 0.69, 0.68])
    ]
    assert [s[1] for s in seen] == [True, True, False, False, True, False, False]
    assert [s[2] for s in seen] == [None, None, None, "stopped-early", None, None, "stopped-early"]
    assert (p.best, p.best_epoch) == (0.7, 4)


def test_min_epochs_and_min_delta_as_the_official_code():
    """`min_epochs`: no early stop before that many epochs; `min_delta`: a smaller gain still makes a new best
    checkpoint but does not restart the patience count."""
    cfg, p = TrainConfig(patience=2, min_epochs=5, min_delta=1e-3), Progress()
    seen = [
        (p.record(epoch, dice, cfg.min_delta), stop_reason(cfg, p, 0.0))
        for epoch, dice in enumerate([0.5, 0.4, 0.4, 0.4, 0.5005, 0.5008, 0.6])
    ]
    assert [s[0] for s in seen] == [True, False, False, False, True, True, True]
    assert [s[1] for s in seen] == [None, None, None, None, "stopped-early", "stopped-early", None]
    assert (p.best, p.best_epoch, p.bad) == (0.6, 6, 0)
    # gains under min_delta that add up to more restart the count, as Lightning's EarlyStopping does
    steps = Progress()
    for epoch, dice in enumerate([0.5, 0.5006, 0.5012]):
        steps.record(epoch, dice, 1e-3)
    assert (steps.bad, steps.anchor, steps.best) == (0, 0.5012, 0.5012)
    plain = Progress()  # the defaults (0, 0.0) stop as before
    for epoch, dice in enumerate([0.5, 0.4, 0.4]):
        plain.record(epoch, dice)
    assert stop_reason(TrainConfig(patience=2), plain, 0.0) == "stopped-early"


def test_budget_stop_and_patience_precedence():
    cfg = TrainConfig(patience=1, max_minutes=1.0)
    p = Progress(best=0.9, bad=0)
    assert stop_reason(cfg, p, 59.0) is None and stop_reason(cfg, p, 61.0) == "budget-reached"
    p.record(5, 0.1)
    assert stop_reason(cfg, p, 61.0) == "stopped-early"


def test_stop_flag_lives_on_the_runs_device():
    """A CPU flag in `dist.broadcast` breaks NCCL: the flag must be created on the run's device (meta stands
    in for CUDA here; a `torch.zeros(1)` without a device fails this test)."""
    assert stop_flag(True, torch.device("meta")).device.type == "meta"
    assert stop_flag(False, torch.device("cpu")).item() == 0 and stop_flag(True, torch.device("cpu")).item() == 1


@pytest.mark.parametrize("enabled", [False, True])
def test_cpu_autocast_is_bfloat16(enabled):
    lin = torch.nn.Linear(8, 4)
    with autocast(torch.device("cpu"), enabled):
        out = lin(torch.randn(2, 8))
    assert out.dtype == (torch.bfloat16 if enabled else torch.float32)


@pytest.mark.slow
def test_training_under_cpu_bfloat16_autocast_and_a_broadcast_per_epoch(tmp_path, monkeypatch):
    """`train.amp_cpu` trains through the bf16 autocast path; a 2-rank world (DDP wrapper and collective
    faked) sends one stop flag per epoch, on the run's device."""
    import torch.distributed as dist

    from medref_cli.config import TrainRequest
    from medref_cli.stages import pretrain
    from medref_cli.stages.prepare import PrepareConfig
    from medref_cli.stages.prepare import run as prepare
    from medref_cli.training import loop
    from medref_cli.workspace import Workspace

    write(tmp_path / "raw", SampleSpec("qata", n=16, size=64, seed=3))
    ws = Workspace.resolve(tmp_path / "w")
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), ws)
    sent = []
    monkeypatch.setattr(dist, "broadcast", lambda t, src: sent.append((t.device, src)))
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda m, **kw: m)
    real_trainer = loop._Trainer

    def two_ranks(ctx, *args):
        ctx.world = 2
        return real_trainer(ctx, *args)

    monkeypatch.setattr(loop, "_Trainer", two_ranks)
    info, run = pretrain.run(
        TrainRequest(
            stage="pretrain",
            method="supervised",
            labeled="100%",
            dataset="s",
            preset="tiny",
            name="bf16",
            overrides={"train": {"epochs": 2, "amp_cpu": True}},
        ),
        ws,
    )
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert info.status == "finished" and len(rows) == 2 and '"loss_sup": NaN' not in rows[-1]
    assert sent == [(torch.device("cpu"), 0)] * 2


def test_flush_denormals_computes_denormals_as_zero(denormals_kept):
    assert denormals_kept()
    flush_denormals()
    assert not denormals_kept()
    assert (torch.tensor([1e-30]) * 1.0).item() > 0.0  # normal small values are kept


def test_building_a_model_for_training_flushes_denormals(denormals_kept):
    from medref_cli.config import TrainRequest, resolve_config
    from medref_cli.training.setup import _model

    req = TrainRequest(stage="pretrain", method="supervised", labeled="100%", dataset="s", preset="tiny")
    _model(resolve_config(req, {}), "cpu", 1, 0)  # what pretrain / semi-train build their model with
    assert not denormals_kept()
