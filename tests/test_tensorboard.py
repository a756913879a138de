"""`--logger tensorboard`: scalars and images written per epoch and read back from the event file."""

import builtins

import pytest

from conftest import REPO
from medref_cli.errors import MedrefError
from medref_cli.training.tb_log import check_logger


@pytest.mark.slow
def test_event_file_holds_scalars_curve_and_overlays(cli, workdir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini").exit_code == 0
    (tmp_path / "c.yaml").write_text("method: {burn_in_epochs: 1, unsup_ramp_epochs: 1}\n")
    res = cli("semi-train", "-d", "qata", "-l", "25%", "--preset", "tiny", "--epochs", "4", "--logger", "tensorboard",
              "--config", tmp_path / "c.yaml", "--name", "tb")
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(workdir / "runs" / "tb" / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("loss/loss_sup", "loss/loss_u", "ssl/w_u", "ssl/ema_decay", "ssl/conf_ratio",
                "val/val_dice_global", "optim/lr"):
        assert tag in scalars, sorted(scalars)
    dice = acc.Scalars("val/val_dice_global")
    assert [e.step for e in dice] == [0, 1, 2, 3] and all(0 <= e.value <= 1 for e in dice)
    images = acc.Tags()["images"]
    assert "curve" in images and any(t.startswith("val/overlays") for t in images)
    assert acc.Images("curve")[-1].width > 100


def test_missing_tensorboard_names_the_extra(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "tensorboard":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MedrefError, match=r"pip install 'medref\[tensorboard\]'"):
        check_logger("tensorboard")
    with pytest.raises(MedrefError, match="--logger 'wandb'"):
        check_logger("wandb")
