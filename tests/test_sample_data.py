import filecmp

import pytest

from conftest import REPO
from medref_cli.synthetic import write_sample_data


@pytest.mark.slow  # regenerates the whole sample set
def test_regenerating_sample_data_gives_identical_files(tmp_path):
    write_sample_data(tmp_path)
    committed = REPO / "sample_data"
    for name in ("qata-mini", "mosmed-mini"):
        new_files = sorted(p.relative_to(tmp_path) for p in (tmp_path / name).rglob("*") if p.is_file())
        old_files = sorted(p.relative_to(committed) for p in (committed / name).rglob("*") if p.is_file())
        assert new_files == old_files
        for rel in new_files:
            assert filecmp.cmp(tmp_path / rel, committed / rel, shallow=False), rel


def test_sample_data_is_small():
    total = sum(p.stat().st_size for p in (REPO / "sample_data").rglob("*") if p.is_file())
    assert total < 5 * 2**20
