"""medref's own fast transforms agree with the MONAI transforms they replace."""

import pytest
import torch
from monai.transforms import Zoom

from medref_cli.training.transforms import RandCentreZoomd, centre_zoom


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.0, 1.05, 1.1])
@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 48, 80)])
def test_centre_zoom_equals_monai_zoom_keep_size_edge(factor, shape):
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(shape, generator=gen)
    label = (torch.rand(shape, generator=gen) > 0.7).float()
    ours_img, ours_label = centre_zoom(img, factor), centre_zoom(label, factor, nearest=True)
    ref_img = torch.as_tensor(Zoom(factor, mode="bilinear", keep_size=True, padding_mode="edge")(img))
    ref_label = torch.as_tensor(Zoom(factor, mode="nearest", keep_size=True, padding_mode="edge")(label))
    assert ours_img.shape == shape and torch.allclose(ours_img, ref_img, atol=1e-6)
    assert torch.equal(ours_label, ref_label)


def test_rand_centre_zoom_is_seeded_and_zooms_image_and_label_together():
    item = {"image": torch.rand(1, 32, 32), "label": (torch.rand(1, 32, 32) > 0.5).float(), "text": "x"}
    a = RandCentreZoomd(("image", "label"), prob=1.0, min_zoom=1.2, max_zoom=1.3)
    b = RandCentreZoomd(("image", "label"), prob=1.0, min_zoom=1.2, max_zoom=1.3)
    a.set_random_state(3)
    b.set_random_state(3)
    out_a, out_b = a(item), b(item)
    assert torch.equal(out_a["image"], out_b["image"]) and not torch.equal(out_a["image"], item["image"])
    assert torch.equal(out_a["label"], centre_zoom(item["label"], a.factor, nearest=True))
    assert out_a["text"] == "x" and item["image"] is not out_a["image"]


def test_meta_tracking_is_off_inside_a_stage_and_restored_after():
    from monai.data import get_track_meta

    from medref_cli.training.data import without_meta_tracking

    @without_meta_tracking
    def inside():
        return get_track_meta()

    assert get_track_meta() is True  # importing medref changes nothing
    assert inside() is False
    assert get_track_meta() is True
