import json

import pytest

from conftest import REPO
from medref_cli.errors import MedrefError
from medref_cli.stages.split import make_split, parse_ratio


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
    assert sum(map(len, parts)) == len(set().union(*parts)) == 60
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
