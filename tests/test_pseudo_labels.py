"""Reading a pseudo-label output back as labelled data: only its own masks, only this split's unlabelled ids;
and the audit's buckets."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from medref_cli.artifacts import PSEUDO_SCHEMA, load_audit
from medref_cli.errors import MedrefError
from medref_cli.pseudo_labels import extra_labeled, predicted_zones
from medref_cli.stages.pseudo_label import make_audit


def _record(rid, known=True):
    return SimpleNamespace(id=rid, image=f"images/{rid}.png", caption="lower left lung.", zones=[0, 0, 1, 0, 0, 0],
                           zones_known=known, mask=None)


def _setup(tmp_path, mask_path, ids=("a", "b")):
    pl = tmp_path / "pl"
    (pl / "masks").mkdir(parents=True)
    for rid in ids:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(pl / "masks" / f"{rid}.png")
    entries = [{"id": rid, "mask": mask_path.format(rid=rid)} for rid in ids]
    (pl / "pseudo_labels.json").write_text(json.dumps({"schema_version": PSEUDO_SCHEMA, "run": "r", "model": "teacher",
                                                       "dataset": "d", "dataset_hash": "h", "split": "train_unlabeled",
                                                       "entries": entries}))
    manifest = SimpleNamespace(dataset_hash="h", name="d", by_id=lambda: {r: _record(r) for r in ids})
    spec = SimpleNamespace(train_unlabeled=["a"])
    return pl, manifest, spec


def test_only_the_splits_unlabelled_ids_are_used(tmp_path):
    pl, manifest, spec = _setup(tmp_path, "masks/{rid}.png")
    out = extra_labeled(pl, manifest, tmp_path / "ds", spec)
    assert [d["id"] for d in out] == ["a"] and out[0]["label"] == str((pl / "masks" / "a.png").resolve())


def test_pseudo_labelled_items_keep_an_unknown_position(tmp_path):
    """A report without a position stays `zones_known: False` as pseudo-labelled data (ITCL puts no positives on
    it); the items are the training data's own (`training.data.items`)."""
    pl, manifest, spec = _setup(tmp_path, "masks/{rid}.png")
    manifest.by_id = lambda: {"a": _record("a", known=False), "b": _record("b")}
    out = extra_labeled(pl, manifest, tmp_path / "ds", spec)
    assert out[0]["zones_known"] is False and out[0]["zones"] == [0, 0, 1, 0, 0, 0]


@pytest.mark.parametrize("escape", ["../outside.png", "/etc/passwd", "masks/../../outside.png", "masks/missing.png"])
def test_a_mask_path_leaving_the_folder_is_refused(tmp_path, escape):
    (tmp_path / "outside.png").write_bytes(b"x")
    pl, manifest, spec = _setup(tmp_path, escape)
    with pytest.raises(MedrefError, match="missing or escapes"):
        extra_labeled(pl, manifest, tmp_path / "ds", spec)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "outside.png").write_bytes(b"x")
    pl, manifest, spec = _setup(tmp_path, "masks/link.png")
    (pl / "masks" / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(MedrefError, match="missing or escapes"):
        extra_labeled(pl, manifest, tmp_path / "ds", spec)


def test_other_dataset_version_is_refused(tmp_path):
    pl, manifest, spec = _setup(tmp_path, "masks/{rid}.png")
    manifest.dataset_hash = "other"
    with pytest.raises(MedrefError, match="another dataset version"):
        extra_labeled(pl, manifest, tmp_path / "ds", spec)


def test_predicted_zones_need_one_percent_of_a_region():
    mask = torch.zeros(60, 60, dtype=torch.bool)
    mask[45:55, 5:15] = True  # lower third, image-left half
    zones = predicted_zones(mask)
    assert sum(zones) == 1
    mask2 = torch.zeros(60, 60, dtype=torch.bool)
    mask2[0, 0] = True  # 1 pixel of a 600-pixel region: under 1 %
    assert sum(predicted_zones(mask2)) == 0


def test_audit_buckets_and_round_trip(tmp_path):
    entries = [{"zones_agree": True, "caption_zones": [1, 0], "predicted_zones": [1, 0]},
               {"zones_agree": False, "caption_zones": [1, 0], "predicted_zones": [1, 1]}]
    scored = [(0.97, torch.tensor([10, 0, 0])), (0.6, torch.tensor([5, 5, 0]))]
    audit = make_audit(entries, scored, "teacher")
    assert audit.zone_agreement_exact == 0.5 and audit.zone_agreement_per_bit == 0.75
    assert [b["n"] for b in audit.dice_by_confidence] == [1, 1]
    assert audit.dice_by_confidence[1]["global"]["dice"] == 1.0  # the 0.95-0.98 bucket holds the perfect mask
    audit.save(tmp_path / "audit.json")
    assert load_audit(tmp_path / "audit.json") == audit
