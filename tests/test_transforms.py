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


def test_window_view_flattens_the_dark_half_as_the_official_jitter_does():
    from medref_cli.training.transforms import RandZWindowd

    torch.manual_seed(0)
    img = torch.rand(1, 64, 64) ** 2  # skewed, like an X-ray's histogram
    t = RandZWindowd("image_s", prob=1.0)
    t.set_random_state(0)
    out = t({"image_s": img})["image_s"]
    mean, std = img.mean(), img.std()
    # at brightness = contrast = 1 the view is exactly the image clipped to [mean, mean + std]
    t.brightness, t.contrast = 1.0, 1.0
    assert torch.allclose(t.apply("image_s", img), img.clamp(mean, mean + std), atol=1e-6)
    # with drawn factors: the pixels below the mean are all one value, a large share of them, scale kept
    low = img < mean
    assert 0.4 < low.float().mean() < 0.7 and out[low].std() < 1e-5
    assert out.min() >= mean - 1e-6 and out.max() <= mean + 1.3 * std
    assert not torch.equal(out, img)


@pytest.mark.parametrize("recipe, view", [("official", "window"), ("medref", "jitter")])
def test_recipes_pick_the_strong_view_and_the_unlabelled_data_uses_it(recipe, view):
    from medref_cli.config import TrainRequest, resolve_config
    from medref_cli.training.data import strong_transforms
    from medref_cli.training.transforms import RandBrightnessContrastd, RandZWindowd

    req = TrainRequest(stage="semi-train", method="semi-medref", labeled="5%", preset="cpu",
                       overrides={"method": {"recipe": recipe}})
    assert resolve_config(req, {}).method.strong_view == view
    kinds = {type(t) for t in strong_transforms(128, view)}
    assert (RandZWindowd in kinds) == (view == "window") and (RandBrightnessContrastd in kinds) == (view == "jitter")


def test_a_saved_config_without_strong_view_keeps_the_jitter_view(tmp_path):
    import json

    import yaml

    from medref_cli.config import TrainRequest, load_run_config, resolve_config

    req = TrainRequest(stage="semi-train", method="semi-medref", labeled="5%", preset="cpu",
                       overrides={"method": {"recipe": "official"}})
    saved = {"preset": "cpu", "config": resolve_config(req, {}).to_dict()}  # version 1
    del saved["config"]["method"]["strong_view"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    (tmp_path / "run.json").write_text(json.dumps({"stage": "semi-train", "method": "semi-medref", "dataset": "d",
                                                   "dataset_hash": "h", "split_file": "s", "ratio": "5%"}))
    assert load_run_config(tmp_path).method.strong_view == "jitter"
