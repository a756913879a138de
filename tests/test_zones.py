import csv
import json
from pathlib import Path

import pytest

from medref_cli.zones import (
    caption_from_zones,
    find_phrases,
    flip_caption,
    flip_zones,
    has_position,
    normalise_caption,
    parse_zones,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize(
    ("caption", "zones"),
    [
        ("Unilateral pulmonary infection, one infected area, lower right lung.", (0, 0, 0, 0, 0, 1)),
        ("Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
         (0, 0, 1, 0, 0, 1)),
        ("bilateral pulmonary infection, five infected areas, upper middle lower left lung and middle lower "
         "right lung.", (1, 1, 1, 0, 1, 1)),
        ("Bilateral pulmonary infection, nine infected areas, all left lung and all right lung..", (1,) * 6),
        ("Unilateral pulmonary infection, one infected areas, left lung and middle right lung.",
         (1, 1, 1, 0, 1, 0)),
        ("No pulmonary infection, zero infected areas.", (0,) * 6),
        ("Bilateral pulmonary infection, three infected areas, upper lower left lung and lower right lung.",
         (1, 0, 1, 0, 0, 1)),
        ("Some text with no position.", (0,) * 6),
    ],
)
def test_parse_zones_table(caption, zones):
    assert parse_zones(caption) == zones


@pytest.mark.parametrize(
    ("zones", "caption"),
    [
        ((0, 0, 0, 0, 0, 1), "Unilateral pulmonary infection, one infected area, lower right lung."),
        ((1, 1, 1, 1, 1, 1), "Bilateral pulmonary infection, six infected areas, upper middle lower left lung"
         " and upper middle lower right lung."),
        ((0, 0, 0, 0, 0, 0), "No pulmonary infection, zero infected areas."),
        ((1, 0, 1, 0, 0, 0), "Unilateral pulmonary infection, two infected areas, upper lower left lung."),
    ],
)
def test_caption_from_zones_table(zones, caption):
    assert caption_from_zones(zones) == caption
    assert parse_zones(caption) == zones


def test_round_trip_all_63_vectors():
    for k in range(64):
        zones = tuple((k >> (5 - i)) & 1 for i in range(6))
        assert parse_zones(caption_from_zones(zones)) == zones


def test_flip_swaps_sides():
    cap = "Unilateral pulmonary infection, one infected area, Lower left lung."
    assert flip_caption(cap) == "Unilateral pulmonary infection, one infected area, Lower right lung."
    assert parse_zones(flip_caption(cap)) == flip_zones(parse_zones(cap))


def test_phrases_and_normalise():
    cap = "Bilateral pulmonary infection, two infected areas, middle left lung and all right lung.."
    phrases = find_phrases(cap)
    assert [p.canonical for p in phrases] == ["middle left lung", "upper middle lower right lung"]
    assert cap[phrases[0].start:phrases[0].end] == "middle left lung"
    assert normalise_caption("  a  b.. ") == "a b."
    assert has_position("No pulmonary infection, zero infected areas.")
    assert not has_position("Bilateral pulmonary infection.")


@pytest.mark.skipif(not (SHARED / "qata-cov19").is_dir(), reason="../shared/data absent")
def test_every_real_qata_template_matches_sgseg_pseudo_label():
    ann = json.loads((SHARED / "qata-cov19" / "prompts" / "annotation.json").read_text())
    templates = {}
    for entry in ann["train"] + ann["valid"]:
        templates.setdefault(entry["caption"], tuple(entry["pseudo_label"]))
    assert len(templates) >= 60
    for caption, label in templates.items():
        assert parse_zones(caption) == label, caption
        assert caption_from_zones(label).lower() == caption.lower()


@pytest.mark.skipif(not (SHARED / "mosmeddata-plus-text").is_dir(), reason="../shared/data absent")
def test_every_real_mosmed_caption_parses():
    rows = []
    for path in sorted((SHARED / "mosmeddata-plus-text").glob("*.csv")):
        with path.open(newline="") as fh:
            rows += list(csv.DictReader(fh, delimiter=";"))
    assert len(rows) == 2729
    for row in rows:
        caption = row["text"]
        assert has_position(caption), caption
        zones = parse_zones(caption)
        assert any(zones) != caption.lower().startswith("no pulmonary infection"), caption
