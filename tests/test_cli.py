import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

STAGES = ["prepare", "split", "pretrain", "semi-train", "pseudo-label", "evaluate", "predict", "table1"]


def test_every_stage_is_a_command_with_its_own_help(cli):
    """Each stage answers `medref STAGE --help` with its own usage line (not the app's help sentence)."""
    for stage in STAGES:
        res = cli(stage, "--help")
        assert res.exit_code == 0, (stage, res.output)
        assert f" {stage} [OPTIONS]" in res.output, stage
    assert cli("no-such-stage").exit_code != 0


def test_method_help_lists_the_registry(cli):
    """semi-train --method lists the registry's semi-train methods (pretrain's `supervised` is its own command)."""
    from medref_cli.config import METHODS

    out = cli("semi-train", "--help").output
    assert all((name in out) is (spec.stage == "semi-train") for name, spec in METHODS.items())


def test_help_imports_nothing_heavy():
    code = "import sys; from medref_cli.cli.app import app; " \
           "print(','.join(m for m in ('torch','monai','transformers','numpy','PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_prepare_sample_then_split(cli, workdir):
    res = cli("prepare", "sample", "--n", "12", "--size", "48")
    assert res.exit_code == 0, res.output
    assert "prepared qata-mini: 12 records" in res.output and "prepared mosmed-mini: 12 records" in res.output
    res = cli("split", "-d", "mosmed-mini", "-l", "25%")
    assert res.exit_code == 0, res.output
    assert (workdir / "splits" / "mosmed-mini-25pct-s42.json").is_file()
    # issue 36: again on the same workspace: refused before anything changes (raw/sample kept whole)
    raw = sorted(p.relative_to(workdir) for p in (workdir / "raw" / "sample").rglob("*"))
    res = cli("prepare", "sample", "--n", "4", "--size", "48")
    assert res.exit_code == 2 and "qata-mini: already exists; pass --overwrite" in res.output
    assert sorted(p.relative_to(workdir) for p in (workdir / "raw" / "sample").rglob("*")) == raw
    # a second `prepare sample` while one runs (the workspace lock held by a live process) is refused
    import os

    (workdir / ".lock").write_text(str(os.getppid()))
    res = cli("prepare", "sample", "--n", "4", "--size", "48", "--overwrite")
    assert res.exit_code == 2 and "in use by process" in res.output
    assert sorted(p.relative_to(workdir) for p in (workdir / "raw" / "sample").rglob("*")) == raw


def test_workdir_option_beats_env(cli, workdir, tmp_path):
    other = tmp_path / "other"
    res = cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini", "--workdir", other)
    assert res.exit_code == 0
    assert (other / "datasets" / "qata" / "dataset.json").is_file() and not workdir.exists()


@pytest.mark.slow  # trains
def test_eval_model_comes_from_the_config_unless_the_option_says(cli, workdir, tmp_path):
    assert cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini").exit_code == 0
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method:\n  eval_model: student\n")  # the file beats the recipe's teacher
    base = ("semi-train", "-d", "qata", "-l", "25%", "--preset", "tiny", "--epochs", "1", "--config", cfg)
    assert cli(*base, "--name", "from-config").exit_code == 0
    assert cli(*base, "--name", "from-option", "--eval-model", "teacher").exit_code == 0
    runs = workdir / "runs"
    for run, who in (("from-config", "student"), ("from-option", "teacher")):  # stored once: in the run's config
        assert yaml.safe_load((runs / run / "config.yaml").read_text())["config"]["method"]["eval_model"] == who
        assert "eval_model" not in json.loads((runs / run / "run.json").read_text())
    assert cli("evaluate", "from-option", "--no-ablation", "--overlays", "0").exit_code == 0
    assert json.loads((runs / "from-option" / "eval-test" / "summary.json").read_text())["eval_model"] == "teacher"


def test_semi_train_refuses_a_pretrain_method(cli, workdir):
    res = cli("semi-train", "-d", "qata", "-l", "5%", "--method", "supervised")
    assert res.exit_code == 2 and "--method supervised: a pretrain method; run `medref pretrain`" in res.output
    assert "semi-medref" in res.output and not workdir.exists()


def test_method_interface_and_supervised_are_separate():
    from medref_cli.semi.methods import TeacherStudent
    from medref_cli.training.method import Method, Supervised

    assert issubclass(Supervised, Method) and issubclass(TeacherStudent, Method)
    assert not issubclass(TeacherStudent, Supervised) and TeacherStudent.best_state is not Method.best_state


def test_help_lists_the_commands_in_pipeline_order(cli):
    res = cli("--help")
    names = [line.split()[1] for line in res.output.splitlines() if line.startswith("│ ") and len(line.split()) > 1
             and line.split()[1] in ("prepare", "split", "pretrain", "semi-train", "pseudo-label", "evaluate",
                                     "compare", "predict", "table1")]
    assert names == ["prepare", "split", "pretrain", "semi-train", "pseudo-label", "evaluate", "compare", "predict",
                     "table1"]
