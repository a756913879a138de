"""The Table 1 runner on a 2-cell matrix: runs, writes the table, skips done cells, survives a failing cell."""

import csv

import pytest

from medref_cli.errors import MedrefError
from medref_cli.stages.table1 import Table1Config, load_profile, parse_method, run
from medref_cli.workspace import Workspace

PIPELINE = """
profiles:
  two:
    preset: tiny
    datasets:
      - {name: qata-mini, kind: qata, raw: sample}
    ratios: ["25%"]
    methods: [supervised, semi-medref-no-itcl]
    seeds: [0]
    train: {epochs: 2, steps_per_epoch: 2}
    method: {burn_in_epochs: 1, unsup_ramp_epochs: 1, ema_ramp_epochs: 1}
  broken:
    preset: tiny
    datasets:
      - {name: qata-mini, kind: qata, raw: sample}
    ratios: ["25%", "100%"]
    methods: [supervised, semi-medref]
    seeds: [0]
    train: {epochs: 1, steps_per_epoch: 1}
    model: {no_such_field: 1}
"""


@pytest.fixture
def pipeline(tmp_path):
    path = tmp_path / "t1.yaml"
    path.write_text(PIPELINE)
    return path


def test_two_cell_matrix(pipeline, tmp_path):
    ws = Workspace.resolve(tmp_path / "w")
    cells, out = run(Table1Config("two", pipeline), ws)
    assert [c.status for c in cells] == ["done", "done"]
    md = (out / "table1.md").read_text()
    assert "global protocol" in md and "semi-medref-no-itcl" in md and "25% Dice" in md
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert len(rows) == 2 and all(r["split_sha256"] and r["dataset_hash"] for r in rows)
    assert 0.0 <= float(rows[0]["dice_global"]) <= 1.0
    assert (out / "table1.png").is_file()
    cells, _ = run(Table1Config("two", pipeline), ws)  # resumes: nothing is trained again
    assert [c.status for c in cells] == ["done (cached)", "done (cached)"]


def test_failing_cells_are_reported_and_the_matrix_goes_on(pipeline, tmp_path):
    cells, out = run(Table1Config("broken", pipeline), Workspace.resolve(tmp_path / "w"))
    assert len(cells) == 3  # 25 %: two methods; 100 %: supervised only
    assert all(c.status == "failed" and "no_such_field" in c.error for c in cells)
    assert "failed" in (out / "table1.md").read_text()


def test_profiles_and_methods_are_checked(pipeline):
    assert parse_method("semi-medref-no-pos-aug") == ("semi-medref", {"pos_aug": False})
    with pytest.raises(MedrefError):
        parse_method("fixmatch")
    with pytest.raises(MedrefError, match="no profile"):
        load_profile(pipeline, "nope")
    from conftest import REPO

    for name in ("sample", "qata-cpu", "paper"):
        load_profile(REPO / "pipelines" / "table1.yaml", name)
