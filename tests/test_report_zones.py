"""Zone parsing of real radiology phrasing (IU / Open-i reports) against a hand-written table."""

import csv
from pathlib import Path

import pytest

from medref_cli.report_zones import mentions_position, parse_report, sentences

# Expected zone vectors, written by hand from the anatomy table in report_zones.py, as "L-up L-mid L-low R-up
# R-mid R-low" bits; None = no (non-negated) position. Phrases 1-93 are sentences of IU-Xray reports as they
# are (lower-cased, "xxxx" is the collection's de-identification mark); 94-120 are written in the same phrasing.
TABLE = [
    ("small nodular opacity left upper lobe may represent early infiltrate", "110000"),
    ("small nodular opacity in left upper lung may be secondary to superimposed structures or early infiltrate",
     "100000"),
    ("calcified left lung and left hilar granulomas", "111000"),
    ("left shoulder", None),
    ("there is a calcified granuloma in the right lung base and calcified right hilar lymph xxxx", "000011"),
    ("stable scarring in the right lung apex", "000100"),
    ("there is eventration of the right hemidiaphragm", None),
    ("the lungs are clear bilaterally", None),
    ("stable postsurgical changes of the left shoulder and marked degenerative changes of the right shoulder", None),
    ("calcified left hilar lymph node", "010000"),
    ("lungs are clear bilaterally with no focal infiltrate, pleural effusion, or pneumothoraces", None),
    ("there is a left subphrenic crescentic lucency, this is concerning for pneumoperitoneum", None),
    ("there are low lung volumes and bilateral moderate to large pleural effusions with bibasilar "
     "atelectasis/airspace disease that are larger in size in comparison to the prior exam", "001001"),
    ("the left central venous catheter tip overlies the lower svc", None),
    ("the right costophrenic sulcus is blunted", "000001"),
    ("the left lung is clear", None),
    ("right-sided small pleural effusion", "000001"),
    ("right base xxxx/fluid level", "000001"),
    ("cannot exclude a right lower lobe cavity", "000001"),
    ("right lower lobe patchy opacities noted", "000001"),
    ("both lungs are clear and expanded", None),
    ("minimal blunting of the left costophrenic xxxx", "001000"),
    ("fractures of the posterior left 4th, 5th, and 6th ribs, age-indeterminate", None),
    ("left hemithorax volume loss with leftward shift of the heart and mediastinum", "111000"),
    ("xxxx right costophrenic xxxx, right lung free of focal consolidation", "000001"),
    ("5 mm right apical granuloma unchanged", "000100"),
    ("multiple calcified granulomas identified bilaterally", "111111"),
    ("right lung base granuloma", "000001"),
    ("contrast within the bilateral renal collecting systems", None),
    ("there is a small calcified granuloma in the right midlung", "000010"),
    ("bony overlap in the lung apices could obscure a small pulmonary nodule", "100100"),
    ("low lung volumes with elevated right hemidiaphragm", None),
    ("normal mediastinal and hilar contours", None),
    ("the left costophrenic xxxx is clear", None),
    ("right lung is clear", None),
    ("stable blunting of the left costophrenic xxxx which may represent persistent left pleural effusion versus "
     "pleural scarring", "001000"),
    ("multiple healed bilateral rib fractures", None),
    ("calcification in the right upper quadrant of the abdomen xxxx consistent with gallstone", None),
    ("there is right upper lobe airspace disease", "000100"),
    ("right upper lobe pneumonia", "000100"),
    ("small bilateral pleural effusions", "001001"),
    ("increased interstitial markings and patchy opacities through the bases", "001001"),
    ("minimal left base and perihilar minimal infiltrate", "011000"),
    ("xxxx xxxx right-sided chest tube tip projects outside the thoracic cavity", None),
    ("there is blunting of the right costophrenic xxxx xxxx old pleural scar", "000001"),
    ("a left upper lobe granuloma appears unchanged", "110000"),
    ("17 mm nodular opacity in the left lung and 10 mm nodular opacity in the right lung", "111111"),
    ("a calcified small granuloma is present in the left lower lobe", "001000"),
    ("the opacity at the left lung base appears stable from prior exam", "001000"),
    ("left basilar opacity xxxx represents atelectasis/scarring with associated elevated hemidiaphragm", "001000"),
    ("left anterior chest wall pacemaker/defibrillator", None),
    ("right apical cavitary lesion consistent with history of tuberculosis without active infectious process "
     "identified", "000100"),
    ("3 cm right upper lobe anterior segment mass", "000100"),
    ("left upper extremity pic catheter tip xxxx within left subclavian vein", None),
    ("minimal subsegmental atelectasis at the left base otherwise negative for focal confluent airspace disease",
     "001000"),
    ("there is mild biapical pleural thickening which is smooth", "100100"),
    ("calcified granuloma is present in the right base", "000001"),
    ("ill-defined oblong opacity in the lateral right base", "000001"),
    ("right hilar calcifications xxxx sequela of prior granulomatous disease", "000010"),
    ("small left basilar parenchymal scarring and/or effusion", "001000"),
    ("stable calcified granuloma within the right upper lung", "000100"),
    ("redemonstration of the left basilar patchy atelectasis, unchanged from last exam", "001000"),
    ("there is streaky xxxx opacity within the left lung base xxxx representing atelectasis", "001000"),
    ("left basilar atelectasis otherwise clear lungs", "001000"),
    ("xxxx opacities in the lingula may be compatible scarring or subsegmental atelectasis", "010000"),
    ("minimal atelectasis versus scarring seen in the left lung base", "001000"),
    ("right hemidiaphragm remains elevated", None),
    ("consolidation and atelectasis are present in the right lung base", "000001"),
    ("continued right hemidiaphragm elevation with right lower lobe airspace disease", "000001"),
    ("there are small bilateral pleural effusions", "001001"),
    ("there is bilateral acromioclavicular degenerative joint disease, right greater than left", None),
    ("there is streaky airspace opacities in the left suprahilar and lingular regions", "010000"),
    ("mild bilateral costophrenic xxxx blunting xxxx represents pleural thickening and scarring", "001001"),
    ("bilateral glenohumeral degenerative joint disease", None),
    ("focal opacity in the left upper lobe xxxx represents scarring or related to overlying rib opacity", "110000"),
    ("opacity within the right middle and lower lobes", "000011"),
    ("lungs demonstrate segmental air space disease within the left lower lobe", "001000"),
    ("there is minimal xxxx scarring or atelectasis in the right lung base", "000001"),
    ("lung volumes are low with central bronchovascular crowding and patchy basilar atelectasis", None),
    ("the right lung is clear", None),
    ("left basilar atelectasis and/or infiltrate, with no radiographic evidence of tuberculosis", "001000"),
    ("calcified bilateral hilar lymph xxxx, greater on the left", "010010"),
    ("there are extensive fibrotic changes in the right lung with rightward shift of the trachea, similar to the "
     "previous exam", "000111"),
    ("the left lung is well-aerated without focal airspace consolidation, pleural effusions or pneumothorax", None),
    ("there is left apical pleural-parenchymal scarring", "100000"),
    ("patchy bibasilar air airspace opacities right greater than left", "001001"),
    ("bilateral lower lung airspace disease right greater than left, most xxxx representing acute infectious "
     "process", "001001"),
    ("there is right greater than left biapical bullous emphysema", "100100"),
    ("no change in the small calcified right upper lobe nodule", "000100"),
    ("mediport catheter seen on the right with the tip in the mid svc", None),
    ("minimal right basilar subsegmental atelectasis noted", "000001"),
    ("there is vague opacity in the right upper lung near the anterior right first rib on pa view", "000100"),
    ("surgical clips are seen the right upper quadrant", None),
    ("No consolidation in the left lung.", None),
    ("No focal consolidation, pneumothorax or effusion in the right lung.", None),
    ("RLL pneumonia.", "000001"),
    ("RML opacity.", "000010"),
    ("LLL atelectasis.", "001000"),
    ("LUL nodule.", "110000"),
    ("RUL mass.", "000100"),
    ("Opacity in the right middle lobe.", "000010"),
    ("Bibasilar atelectasis.", "001001"),
    ("Bibasal opacities.", "001001"),
    ("Bilateral upper lobe scarring.", "100100"),
    ("Diffuse bilateral interstitial opacities.", "111111"),
    ("Bilateral perihilar opacities.", "010010"),
    ("Opacity in the left mid zone.", "010000"),
    ("Right lower zone consolidation.", "000001"),
    ("Left upper zone opacity.", "100000"),
    ("Interval clearing of the right lower lobe opacity.", None),
    ("Right lower lobe opacity, no effusion.", "000001"),
    ("Normal heart size, right lower lobe opacity.", "000001"),
    ("Left lung is clear. Right apical scarring.", "000100"),
    ("Opacity on the right.", "000111"),
    ("Right upper and middle lobe consolidation.", "000110"),
    ("Lingular atelectasis.", "010000"),
    ("Small left pleural effusion.", "001000"),
    ("There is no pneumothorax but there is right lower lobe consolidation.", "000001"),
    ("Streaky opacities at the lung bases.", "001001"),
    ("Apical pleural thickening.", None),
    ("persistent partial middle lobe atelectasis and infiltrate seen xxxx on the lateral", "000010"),
    ("streaky left retrocardiac densities", "001000"),
    ("Left midzone opacity.", "010000"),  # the British "midzone", one word or hyphenated
    ("Patchy shadowing in the right mid-zone.", "000010"),
    ("Opacities in both midzones.", "010010"),
]


def test_table_is_large_enough():
    assert len(TABLE) >= 100


@pytest.mark.parametrize(("phrase", "expected"), TABLE)
def test_hand_written_table(phrase, expected):
    got = parse_report(phrase)
    assert (None if got is None else "".join(map(str, got))) == expected


REPORTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "iu-xray-reports" / "reports.csv"


@pytest.mark.skipif(not REPORTS.is_file(), reason="../shared/data/iu-xray-reports not present")
def test_share_of_position_sentences_parsed_on_iu_xray():
    """Over every distinct sentence of the 3955 reports that holds a position word (side, lobe, base, apex,
    hilum...), the share whose position the parser resolves (a zone set, or a negated mention)."""
    from medref_cli.report_zones import parse_sentence

    with REPORTS.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3955
    found = {s for r in rows for s in sentences(f"{r['findings']}. {r['impression']}") if mentions_position(s)}
    resolved = sum(parse_sentence(s) is not None for s in found)
    share = resolved / len(found)
    print(f"IU-Xray: {len(found)} position sentences, {resolved} resolved ({share:.1%})")
    assert len(found) > 2500 and share > 0.6
