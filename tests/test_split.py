import json

import pytest

from conftest import REPO
from medref_cli.errors import MedrefError
from medref_cli.splits import make_split, parse_ratio
from medref_cli.synthetic import SAMPLE_N


@pytest.fixture
def sample_ws(cli, workdir):
    assert cli("prepare", "qata", "--raw", REPO / "sample_data" / "qata-mini", "--name", "mini").exit_code == 0
    return workdir


@pytest.mark.parametrize(("text", "frac", "count", "slug"), [
    ("10%", 0.1, None, "10pct"), ("0.05", 0.05, None, "5pct"), ("2.5%", 0.025, None, "2p5pct"),
    ("100%", 1.0, None, "100pct"), ("50", None, 50, "n50"), ("1", 1.0, None, "100pct"),
])
def test_parse_ratio(text, frac, count, slug):
    r = parse_ratio(text)
    assert (r.fraction, r.count, r.slug) == (frac, count, slug)


@pytest.mark.parametrize("bad", ["0%", "0", "-5%", "101%", "1.5", "abc"])
def test_bad_ratios_refused(bad):
    with pytest.raises(MedrefError):
        parse_ratio(bad)


def test_split_file_disjoint_deterministic(cli, sample_ws):
    res = cli("split", "--dataset", "mini", "--labeled", "10%", "--seed", "3")
    assert res.exit_code == 0, res.output
    path = sample_ws / "splits" / "mini-10pct-s3.json"
    first = path.read_text()
    spec = json.loads(first)
    parts = [set(spec[k]) for k in ("train_labeled", "train_unlabeled", "val", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts)) == SAMPLE_N
    assert len(spec["train_labeled"]) >= 1 and spec["test"] and spec["val"]
    assert all(i.startswith("synth_") for i in spec["test"])
    assert cli("split", "--dataset", "mini", "--labeled", "10%", "--seed", "3", "--overwrite").exit_code == 0
    assert path.read_text() == first


def test_smaller_ratio_is_subset(sample_ws):
    from medref_cli.artifacts import load_manifest

    m = load_manifest(sample_ws / "datasets" / "mini")
    small = make_split(m, parse_ratio("10%"), 0)
    big = make_split(m, parse_ratio("50%"), 0)
    assert set(small.train_labeled) < set(big.train_labeled)
    assert small.val == big.val and small.test == big.test
    assert len(make_split(m, parse_ratio("1%"), 0).train_labeled) == 1


def test_split_refusals(cli, sample_ws):
    res = cli("split", "--dataset", "nope", "--labeled", "10%")
    assert res.exit_code == 2 and "not prepared" in res.output and "mini" in res.output
    res = cli("split", "--dataset", "mini", "--labeled", "0%")
    assert res.exit_code == 2 and "> 0" in res.output
    res = cli("split", "--dataset", "mini", "--labeled", "5000")
    assert res.exit_code == 2


def _official(path, names):
    path.write_text(json.dumps({"train": [{"image_path": f"mask_{n}.png", "caption": "x", "pseudo_label": [0] * 6}
                                          for n in names]}))
    return path


def test_import_official_manifest_pair(sample_ws, cli, tmp_path):
    lab = _official(tmp_path / "split_labeled_0.05.json", ["synth_0000", "synth_0003", "synth_0007"])
    unl = _official(tmp_path / "split_unlabeled_0.05.json", [f"synth_{i:04d}" for i in range(10, 40)])
    res = cli("split", "-d", "mini", "-l", "5%", "--seed", "0", "--from", lab, "--unlabeled-from", unl)
    assert res.exit_code == 0, res.output
    spec = json.loads((sample_ws / "splits" / "mini-5pct-s0.json").read_text())
    assert spec["train_labeled"] == ["synth_0000", "synth_0003", "synth_0007"]
    n_test = SAMPLE_N // 4  # the qata layout's own test split
    assert len(spec["train_unlabeled"]) == 30 and len(spec["test"]) == n_test
    assert len(spec["val"]) == SAMPLE_N - n_test - 3 - 30 and "synth_0001" in spec["val"]  # named by neither file
    from medref_cli.splits import ensure
    from medref_cli.workspace import Workspace

    loaded, _, created = ensure(Workspace.resolve(sample_ws), "mini", "5%", 0)  # what training then uses
    assert not created and loaded.train_labeled == spec["train_labeled"]


def test_import_plain_id_list_matches_names_loosely(sample_ws, cli, tmp_path):
    (tmp_path / "ids.txt").write_text("# labelled\nSYNTH_0001\nsynth_0002.png\nmask_synth_0004.png\n")
    res = cli("split", "-d", "mini", "-l", "3", "--from", tmp_path / "ids.txt")
    assert res.exit_code == 0, res.output
    spec = json.loads((sample_ws / "splits" / "mini-n3-s42.json").read_text())
    assert spec["train_labeled"] == ["synth_0001", "synth_0002", "synth_0004"]
    assert not set(spec["train_labeled"]) & set(spec["val"] + spec["train_unlabeled"] + spec["test"])


@pytest.mark.parametrize(("names", "message"), [
    (["synth_0001", "covid_9999", "nope"], "2 id(s) not in dataset 'mini': 'mask_covid_9999.png', 'mask_nope.png'"),
    ([f"synth_{SAMPLE_N - 1:04d}"], "is in the test split"),
])
def test_import_names_bad_ids(sample_ws, cli, tmp_path, names, message):
    lab = _official(tmp_path / "lab.json", names)
    res = cli("split", "-d", "mini", "-l", "5%", "--from", lab)
    assert res.exit_code == 2 and "lab.json" in res.output and message in res.output, res.output
    assert not (sample_ws / "splits" / "mini-5pct-s42.json").exists()
