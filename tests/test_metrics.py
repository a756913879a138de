import pytest
import torch
from monai.metrics import DiceMetric, MeanIoU

from medref_cli.training.metrics import confusion, dice_iou, summarize


def _random_masks(seed, n=7, size=16):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(n, 1, size, size, generator=g) > 0.6
    truth = torch.rand(n, 1, size, size, generator=g) > 0.7
    truth[0] = False  # empty truth, non-empty prediction -> 0
    truth[1] = False
    pred[1] = False  # both empty -> 1
    return pred, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_image_protocol_matches_monai(seed):
    pred, truth = _random_masks(seed)
    ours = summarize(confusion(pred, truth))["per_image"]
    dm = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    iou = MeanIoU(include_background=True, reduction="mean", ignore_empty=False)
    dm(pred.float(), truth.float())
    iou(pred.float(), truth.float())
    assert ours["dice"] == pytest.approx(dm.aggregate().item(), abs=1e-6)
    assert ours["iou"] == pytest.approx(iou.aggregate().item(), abs=1e-6)


def test_global_protocol_is_a_pooled_count():
    pred, truth = _random_masks(3)
    tp = (pred & truth).sum().item()
    fp = (pred & ~truth).sum().item()
    fn = (~pred & truth).sum().item()
    g = summarize(confusion(pred, truth))["global"]
    assert g["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert g["iou"] == pytest.approx(tp / (tp + fp + fn))


def test_empty_cases_are_defined():
    empty = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    full = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    d, i = dice_iou(confusion(empty, empty))
    assert d.item() == 1.0 and i.item() == 1.0
    d, i = dice_iou(confusion(full, empty))
    assert d.item() == 0.0 and i.item() == 0.0
    d, _ = dice_iou(confusion(empty, full))
    assert d.item() == 0.0


def test_at_sizes_resizes_each_map_to_its_image_and_thresholds_once():
    import torch

    from medref_cli.training.inference import THRESHOLD, at_sizes

    probs = torch.tensor([[[[0.2, 0.6], [0.5, 0.49]]], [[[0.9, 0.1], [0.1, 0.1]]]])
    (p0, m0), (p1, m1) = at_sizes(probs, [(2, 2), (4, 4)])
    assert THRESHOLD == 0.5 and torch.equal(p0, probs[0, 0])  # the model's own size: untouched
    assert m0.tolist() == [[False, True], [True, False]]  # >= 0.5 is lesion
    assert p1.shape == (4, 4) and m1.dtype == torch.bool and m1[0, 0] and not m1[3, 3]
    assert at_sizes(probs, [(2, 2)], threshold=0.15)[0][1].all()
