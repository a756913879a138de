"""`--resume` with changed options: what may change is applied and recorded, anything else is refused."""

from dataclasses import replace

import pytest

from medref_cli.config import RunData, TrainRequest, resolve_config, resume_config
from medref_cli.errors import MedrefError


def _saved():
    req = TrainRequest(stage="semi-train", method="semi-medref", labeled="5%", seed=0, preset="cpu")
    return replace(resolve_config(req, {}), data=RunData("qata", "h" * 64, "5%", "qata-5pct-s0.json"))


def _resume(file_cfg=None, **kw):
    req = TrainRequest(**{"stage": "semi-train", "method": "semi-medref", "labeled": "5%", "resume": True, **kw})
    config, applied = resume_config(req, "runs/x", _saved(), file_cfg or {})
    assert config.data == _saved().data  # the spec's data stays
    return config, applied


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


@pytest.mark.slow
def test_run_json_holds_the_status_only_and_resume_upgrades_an_old_run_spec_first(cli, tmp_path):
    """A new run's identity lives in config.yaml (its spec), run.json says how far it got. A run written before
    (identity in a version-1 run.json, config.yaml 2) resumes with its spec moved into config.yaml 3 before
    run.json is rewritten without it: nothing of the run is lost."""
    import json
    from dataclasses import asdict, fields

    import yaml

    from medref_cli.artifacts import RunStatus, load_run
    from medref_cli.config import load_run_config
    from medref_cli.stages.prepare import PrepareConfig
    from medref_cli.stages.prepare import run as prepare
    from medref_cli.synthetic import SampleSpec, write
    from medref_cli.workspace import Workspace

    write(tmp_path / "raw", SampleSpec("qata", n=16, size=64, seed=4))
    prepare(PrepareConfig("qata", tmp_path / "raw", "s"), Workspace.resolve(tmp_path / "w"))
    base = ["pretrain", "-d", "s", "-l", "50%", "--preset", "tiny", "--name", "r", "--workdir", tmp_path / "w",
            "--no-progress"]
    assert cli(*base, "--epochs", "1").exit_code == 0
    run = tmp_path / "w" / "runs" / "r"
    assert set(json.loads((run / "run.json").read_text())) == {f.name for f in fields(RunStatus)}
    spec = load_run_config(run)
    assert (spec.stage, spec.method.name, spec.data.dataset, spec.data.ratio, spec.seed) == \
        ("pretrain", "supervised", "s", "50%", 42)
    assert spec.data.split_file == "s-50pct-s42.json" and (tmp_path / "w" / "splits" / spec.data.split_file).is_file()
    old_config = {"schema_version": 2, "preset": "tiny", "inputs": asdict(spec.inputs),
                  "config": {k: v for k, v in spec.to_dict().items() if k != "method"}}  # pretrain had none
    (run / "config.yaml").write_text(yaml.safe_dump(old_config))
    status = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({
        "stage": "pretrain", "method": "supervised", "dataset": "s", "dataset_hash": spec.data.dataset_hash,
        "split_file": spec.data.split_file, "ratio": "50%", "seed": 42, "preset": "tiny", "text_encoder": "minilm",
        **{k: v for k, v in status.items() if k != "schema_version"}, "init_from": None, "extra": {}}))
    assert load_run_config(run) == spec  # the old pair reads as the same spec
    res = cli(*base, "--resume", "--epochs", "2")
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((run / "config.yaml").read_text())["schema_version"] == 3
    assert load_run_config(run) == replace(spec, train=replace(spec.train, epochs=2))
    assert load_run(run).epochs_done == 2 and "stage" not in json.loads((run / "run.json").read_text())
