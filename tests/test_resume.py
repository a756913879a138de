"""`--resume` with changed options: what may change is applied and recorded, anything else is refused."""

from types import SimpleNamespace

import pytest

from medref_cli.config import TrainRequest, resolve_config, resume_config
from medref_cli.errors import MedrefError

RUN = SimpleNamespace(ratio="5%", seed=0, method="semi-medref")


def _saved():
    req = TrainRequest(stage="semi-train", method="semi-medref", labeled="5%", seed=0, preset="cpu")
    return {"preset": "cpu", "config": resolve_config(req, {}).to_dict()}


def _resume(file_cfg=None, **kw):
    req = TrainRequest(**{"stage": "semi-train", "method": "semi-medref", "labeled": "5%", "resume": True, **kw})
    return resume_config(req, "runs/x", _saved(), RUN, file_cfg or {})


@pytest.mark.parametrize(("overrides", "applied"), [
    ({}, []),
    ({"train": {"epochs": 200}}, ["train.epochs 100 -> 200"]),
    ({"train": {"max_minutes": 40.0}}, ["train.max_minutes None -> 40.0"]),
    ({"train": {"epochs": 100, "logger": "tensorboard"}}, ["train.logger 'none' -> 'tensorboard'"]),  # same epochs
    ({"method": {"recipe": "medref"}}, []),  # the run's own value is no change
])
def test_changes_that_resume_applies(overrides, applied):
    config, done = _resume(overrides=overrides)
    assert [d.replace("'", "") for d in done] == [a.replace("'", "") for a in applied]
    for section, values in overrides.items():
        for key, value in values.items():
            assert config.to_dict()[section][key] == value


@pytest.mark.parametrize(("kw", "message"), [
    ({"overrides": {"model": {"text_encoder": "some/bert"}}}, "cannot change model.text_encoder"),
    ({"overrides": {"method": {"recipe": "official"}}}, "cannot change method.recipe"),
    ({"overrides": {"method": {"itcl": False}}}, "cannot change method.itcl"),
    ({"overrides": {"train": {"lr": 1.0}}}, "cannot change train.lr"),
    ({"preset": "tiny"}, r"cannot change --preset \(cpu -> tiny\)"),
    ({"labeled": "10%"}, r"cannot change --labeled \(5% -> 10%\)"),
    ({"seed": 1}, r"cannot change --seed \(0 -> 1\)"),
    ({"method": "mean-teacher"}, "cannot change --method"),
    ({"overrides": {"train": {"no_such": 1}}}, "cannot change train.no_such"),
])
def test_changes_that_resume_refuses(kw, message):
    with pytest.raises(MedrefError, match=message):
        _resume(**kw)


def test_a_config_file_counts_like_options():
    assert _resume(file_cfg={"train": {"max_minutes": 5}})[1] == ["train.max_minutes None -> 5"]
    with pytest.raises(MedrefError, match="cannot change method.unsup_weight"):
        _resume(file_cfg={"method": {"unsup_weight": 0.1}})


@pytest.mark.slow
def test_cli_resume_applies_epochs_and_refuses_a_new_text_encoder(cli, tmp_path):
    from medref_cli.stages.prepare import PrepareConfig
    from medref_cli.stages.prepare import run as prepare
    from medref_cli.synthetic import SampleSpec, write
    from medref_cli.workspace import Workspace

    write(tmp_path / "raw", SampleSpec("qata", n=16, size=64, seed=4))
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(tmp_path / "w"))
    base = ["pretrain", "-d", "s", "-l", "100%", "--preset", "tiny", "--name", "r", "--workdir", tmp_path / "w",
            "--no-progress"]
    assert cli(*base, "--epochs", "1").exit_code == 0
    res = cli(*base[:5], "--name", "r", "--workdir", tmp_path / "w", "--resume", "--epochs", "2")  # preset: the run's
    assert res.exit_code == 0, res.output
    run = tmp_path / "w" / "runs" / "r"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2 and "epochs: 2" in (run / "config.yaml").read_text()
    assert "resume: applied train.epochs 1 -> 2" in (run / "log.txt").read_text()
    res = cli(*base, "--resume", "--text-encoder", "/nowhere")
    assert res.exit_code != 0 and "cannot change model.text_encoder" in res.output


@pytest.mark.slow
@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("lr: 0.002", "lr: 0.5"), "train.lr was edited (0.002 -> 0.5) since the run's last checkpoint"),
    (lambda t: "", "malformed"),
    (lambda t: "- a\n- b\n", "expected a mapping at the top level"),
    (lambda t: "preset: tiny\n", "malformed"),
    (lambda t: t.replace("image_size: 64", "image_size: 96"), "model.image_size was edited (64 -> 96)"),
])
def test_resume_refuses_a_hand_edited_or_malformed_config_yaml(cli, tmp_path, edit, message):
    """Issue 36: an edited config.yaml is neither ignored nor a traceback; an edit --resume may make is kept."""
    from medref_cli.stages.prepare import PrepareConfig
    from medref_cli.stages.prepare import run as prepare
    from medref_cli.synthetic import SampleSpec, write
    from medref_cli.workspace import Workspace

    write(tmp_path / "raw", SampleSpec("qata", n=16, size=64, seed=4))
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(tmp_path / "w"))
    base = ["pretrain", "-d", "s", "-l", "100%", "--preset", "tiny", "--name", "r", "--workdir", tmp_path / "w",
            "--no-progress"]
    assert cli(*base, "--epochs", "1").exit_code == 0
    config = tmp_path / "w" / "runs" / "r" / "config.yaml"
    original = config.read_text()
    assert "lr: 0.002" in original and "image_size: 64" in original
    config.write_text(edit(original))
    res = cli(*base, "--resume", "--epochs", "2")
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    config.write_text(original)
    assert cli(*base, "--resume", "--epochs", "2").exit_code == 0
