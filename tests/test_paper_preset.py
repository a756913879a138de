"""The `paper` preset built from configs alone (no download): ConvNeXt-Tiny widths and depths at 224, random
init, and a BERT-shaped text encoder folder written on the fly; one training step and one predict on CPU."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medref_cli.config import model_config, resolve
from medref_cli.errors import MedrefError

CAPTION = "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
CONVNEXT_TINY_BACKBONE = 27.82e6  # ConvNeXt-T (Liu et al. 2022): 28.59 M with its 1000-class head, 0.77 M of it


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A BERT-shaped encoder (CXR-BERT's hidden size 768, 2 layers) with a small word-piece vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    d = tmp_path_factory.mktemp("cxr-bert-shaped")
    words = sorted({w.strip(".,").lower() for w in CAPTION.split()} | {"upper", "middle", "right", "left", "no"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz", ".", ","]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(vocab_size=len(vocab), hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                        intermediate_size=1024, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(d)
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    tok = AutoTokenizer.from_pretrained(d)
    assert tok.convert_tokens_to_ids("lung") != tok.unk_token_id  # the vocabulary file was read
    return d


def _paper_model(text_dir):
    from medref_cli.model.network import MedRefNet, count_parameters
    from medref_cli.model.text_encoder import FrozenTextEncoder

    values = resolve("paper", {"model": {"encoder_pretrained": None, "text_encoder": str(text_dir)}})["model"]
    cfg = model_config(values)
    text = FrozenTextEncoder(cfg.text_encoder, cfg.max_tokens)
    torch.manual_seed(0)
    model = MedRefNet(cfg, text.dim)
    return cfg, text, model, count_parameters


@pytest.mark.slow  # a 224-px ConvNeXt-T forward and step
def test_paper_preset_shape_parameters_step_and_predict(bert_dir):
    from monai.losses import DiceCELoss

    from medref_cli.training.predictor import Predictor

    cfg, text, model, count = _paper_model(bert_dir)
    assert cfg.image_size == 224 and list(cfg.encoder_widths) == [96, 192, 384, 768]
    assert list(cfg.encoder_depths) == [3, 3, 9, 3] and text.dim == 768
    encoder = count(model.encoder)
    assert abs(encoder - CONVNEXT_TINY_BACKBONE) / CONVNEXT_TINY_BACKBONE < 0.01  # 1-channel stem: 3 k fewer
    total = count(model)
    # backbone + three guide stages at widths 768/384/192 (measured 15.6 M) + heads = 43.4 M trainable; the frozen
    # text encoder is not counted
    assert 40e6 < total < 47e6
    assert count(text) == 0
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    image = torch.rand(2, 1, 224, 224)
    label = (image > 0.8).float()
    out = model(image, *text([CAPTION] * 2))
    assert out["logits"].shape == (2, 1, 224, 224) and out["img_emb"].shape == (2, cfg.proj_dim)
    loss = DiceCELoss(sigmoid=True)(out["logits"], label)
    loss.backward()
    before = model.out.conv.conv.weight.detach().clone()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.out.conv.conv.weight)
    probs = Predictor(model.eval(), text, torch.device("cpu"), amp=False).probs(image[:1], [CAPTION])
    assert probs.shape == (1, 1, 224, 224) and 0 <= float(probs.min()) <= float(probs.max()) <= 1


@pytest.mark.slow
def test_paper_preset_through_the_cli(bert_dir, tmp_path, cli):
    """prepare -> pretrain (1 step) -> predict with `--preset paper` and only local files."""
    from medref_cli.synthetic import SampleSpec, write

    write(tmp_path / "raw", SampleSpec("qata", n=12, size=224, seed=0, distractors=False))
    w = tmp_path / "w"
    assert cli("prepare", "qata", "--raw", tmp_path / "raw", "--name", "s", "--workdir", w).exit_code == 0
    (tmp_path / "paper.yaml").write_text(
        "model: {encoder_pretrained: null}\n"
        "train: {epochs: 1, steps_per_epoch: 1, batch_size: 2, val_max_images: 2}\n")
    res = cli("pretrain", "-d", "s", "-l", "50%", "--preset", "paper", "--config", tmp_path / "paper.yaml",
              "--text-encoder", bert_dir, "--name", "paper1", "--workdir", w)
    assert res.exit_code == 0, res.output
    assert "1 epochs" in (w / "runs" / "paper1" / "log.txt").read_text()
    src = next((w / "datasets" / "s" / "images").glob("*.png"))
    res = cli("predict", "paper1", "--image", src, "--text", CAPTION, "--out", tmp_path / "m.png", "--workdir", w)
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "m.png")).shape == (224, 224)


def test_missing_pretrained_models_name_the_fix():
    from medref_cli.model.encoders import build_encoder
    from medref_cli.model.text_encoder import FrozenTextEncoder

    cfg = model_config(resolve("paper")["model"])
    with pytest.raises(MedrefError, match=r"convnext-tiny-224.*model\.encoder_pretrained"):
        build_encoder(cfg)
    with pytest.raises(MedrefError, match=r"CXR-BERT.*--text-encoder DIR.*model\.text_encoder"):
        FrozenTextEncoder(cfg.text_encoder)
