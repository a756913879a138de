"""Bundled models: the card, the hash check, export to half precision, `medref models` and `predict --model`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medref_cli import bundled_models as bm
from medref_cli.config import model_config, resolve
from medref_cli.errors import MedrefError
from medref_cli.model import checkpoint
from medref_cli.model.network import MedRefNet
from medref_cli.workspace import file_sha256

SHARED_QATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "qata-cov19"
CARD = """---
name: {name}
file: {name}.pt
sha256: unset
bytes: 0
data: synthetic
labels: all
recipe: supervised, tiny preset
command: none
text_encoder: minilm
image_size: 64
test: {{data: none, dice_global: 0.5, dice_per_image: 0.5}}
intended_use: tests
data_terms: none
---

# {name}
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A run folder with a random tiny model, exported as bundled model `toy` into a folder of its own."""
    from medref_cli.model.text_encoder import text_encoder

    root = tmp_path_factory.mktemp("bundle")
    run, folder = root / "run", root / "bundled"
    run.mkdir()
    folder.mkdir()
    cfg_all = resolve("tiny")
    text = text_encoder("minilm", cfg_all["model"]["max_tokens"])
    torch.manual_seed(0)
    net = MedRefNet(model_config(cfg_all["model"]), text.dim).eval()
    checkpoint.save(run / "checkpoint_best.pt", {"config": cfg_all, "preset": "tiny", "text_dim": text.dim,
                                                  "model": net.state_dict(), "optimizer": {"big": torch.zeros(10)}})
    (folder / "toy.md").write_text(CARD.format(name="toy"))
    bm.export(run, "toy", folder)
    return net, folder


def test_export_writes_half_weights_and_fills_the_card(bundle):
    net, folder = bundle
    card = bm.find("toy", folder)
    assert card.fields["sha256"] == file_sha256(card.weights)
    assert card.fields["bytes"] == card.weights.stat().st_size
    assert card.path.read_text().rstrip().endswith("# toy")  # the prose is kept
    saved = checkpoint.load(card.weights)
    assert "optimizer" not in saved
    assert all(v.dtype == torch.float16 for v in saved["model"].values() if v.is_floating_point())
    model, _, _ = bm.open_model("toy", "cpu", folder)
    for key, value in net.state_dict().items():  # float32 again, equal to the originals rounded to half
        if value.is_floating_point():
            loaded = model.state_dict()[key]
            assert loaded.dtype == torch.float32
            assert torch.equal(loaded, value.half().float())


def test_a_changed_weights_file_is_refused(bundle, tmp_path):
    _, folder = bundle
    copy = tmp_path / "b"
    copy.mkdir()
    for p in folder.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    data = bytearray((copy / "toy.pt").read_bytes())
    data[len(data) // 2] ^= 1  # one bit
    (copy / "toy.pt").write_bytes(bytes(data))
    with pytest.raises(MedrefError, match=r"toy\.pt: sha256 .* does not match its card toy\.md"):
        bm.open_model("toy", "cpu", copy)
    (copy / "toy.pt").unlink()
    with pytest.raises(MedrefError, match="not found"):
        bm.open_model("toy", "cpu", copy)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("text_encoder: minilm\n", ""), "lacks text_encoder"),
    (lambda t: t.replace("name: toy", "name: other"), "differs from its file name"),
    (lambda t: t[4:], "front matter"),
    (lambda t: t.replace("labels: all", "labels: [unclosed"), "not valid YAML"),
])
def test_bad_cards_are_one_line_errors(tmp_path, edit, message):
    (tmp_path / "toy.md").write_text(edit(CARD.format(name="toy")))
    with pytest.raises(MedrefError, match=message):
        bm.cards(tmp_path)


def test_unknown_model_names_the_bundled_ones(bundle):
    _, folder = bundle
    with pytest.raises(MedrefError, match=r"no bundled model of that name \(bundled: toy;"):
        bm.find("nope", folder)


def test_predict_takes_a_run_or_a_model_not_both(cli, tmp_path):
    from conftest import image_array, png

    image = png(tmp_path / "x.png", image_array(0))
    res = cli("predict", "r", "--model", "m", "--image", image, "--text", "t", "--out", tmp_path / "o.png")
    assert res.exit_code == 2 and "not both" in res.output
    res = cli("predict", "--image", image, "--text", "t", "--out", tmp_path / "o.png")
    assert res.exit_code == 2 and "give a RUN or --model" in res.output
    res = cli("predict", "--model", "no-such-model", "--image", image, "--text", "t", "--out", tmp_path / "o.png")
    assert res.exit_code == 2 and "no bundled model of that name" in res.output


# --- the model shipped in the package ------------------------------------------------------------------------
SHIPPED = bm.cards()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="no bundled model in this checkout")


@needs_shipped
def test_shipped_cards_match_their_weights_and_size_limit():
    for card in SHIPPED:
        bm.verify(card)
        assert card.weights.stat().st_size <= 10_000_000
        for key in ("dice_global", "dice_per_image"):
            assert 0.0 < card.fields["test"][key] <= 1.0


@needs_shipped
def test_models_command_lists_them(cli):
    res = cli("models", "--check")
    assert res.exit_code == 0, res.output
    assert SHIPPED[0].name in res.output and "weights match their cards" in res.output


@needs_shipped
@pytest.mark.skipif(not SHARED_QATA.is_dir(), reason="../shared/data/qata-cov19 is absent")
def test_shipped_model_segments_real_qata_valid_images(cli, tmp_path):
    """`predict --model` on 24 ../shared valid images with their reports, from a table, no workspace: global
    Dice above a floor set from the card (its test Dice minus 0.10, a margin for 24 images out of 1429), and
    below it once each image gets another image's report (the model reads the text)."""
    from PIL import Image

    card = SHIPPED[0]
    notes = json.loads((SHARED_QATA / "prompts" / "annotation.json").read_text())["valid"]
    folder = SHARED_QATA / "images" / "valid"
    by_name = {p.name.lower(): p for p in (folder / "images").iterdir()}
    rows = [(by_name[n["image_path"].lower().removeprefix("mask_")], n["caption"]) for n in notes[::60][:24]]
    (tmp_path / "in").mkdir()
    for img, _ in rows:  # a table reads nothing outside its own folder
        (tmp_path / "in" / img.name).write_bytes(img.read_bytes())

    def global_dice(captions: list[str], out: Path) -> float:
        table = tmp_path / f"{out.name}.csv"
        lines = ["image,text"] + [f'in/{img.name},"{cap}"' for (img, _), cap in zip(rows, captions, strict=True)]
        table.write_text("\n".join(lines) + "\n")
        res = cli("predict", "--model", card.name, "--input", table, "--out", out, "--overlays", "0",
                  "--workdir", tmp_path / "no-workspace")
        assert res.exit_code == 0, res.output
        inter = total = 0
        for img, _ in rows:
            pred = np.asarray(Image.open(out / "masks" / f"{img.stem}.png")) > 127
            truth = np.asarray(Image.open(folder / "masks" / f"mask_{img.name}")) > 127
            inter, total = inter + (pred & truth).sum(), total + pred.sum() + truth.sum()
        return 2 * inter / total

    dice = global_dice([c for _, c in rows], tmp_path / "own")
    assert dice > card.fields["test"]["dice_global"] - 0.10
    assert not (tmp_path / "no-workspace").exists()  # a bundled model needs no workspace
    shuffled = global_dice([c for _, c in rows[1:] + rows[:1]], tmp_path / "shuffled")
    assert shuffled < dice
