"""Trained models shipped inside the package: `medref models` lists them, `medref predict --model NAME` uses one.

A bundled model is two files in `medref_cli/bundled/`: `<name>.pt`, a medref checkpoint whose float weights are
stored in half precision (loaded back into float32), and `<name>.md`, its model card: YAML front matter between
`---` lines (read with `safe_load`; the fields of `CARD_FIELDS`), then prose. The card's `sha256` must match the
weights file, or the model is refused before torch reads a byte of it.

Maintainers rebuild one from a finished run with `python -m medref_cli.bundled_models RUN NAME` (see
docs/development.md): it writes the half-precision file and fills the card's `file`, `sha256` and `bytes`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.workspace import file_sha256, safe_load_yaml

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
# What every card states; `medref models` shows name, data, recipe, test Dice, text encoder.
CARD_FIELDS = ("name", "file", "sha256", "bytes", "data", "labels", "recipe", "command", "text_encoder",
               "image_size", "test", "intended_use", "data_terms")


@dataclass(frozen=True)
class ModelCard:
    path: Path  # <name>.md
    fields: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.fields["name"])

    @property
    def weights(self) -> Path:
        return self.path.with_name(str(self.fields["file"]))


def read_card(path: Path) -> ModelCard:
    """A model card's front matter, checked for every field of `CARD_FIELDS`; one-line errors name the file."""
    import yaml

    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise MedrefError(f"{path}: a model card starts with YAML front matter between two '---' lines")
    try:
        fields = safe_load_yaml(text[4:].split("\n---\n", 1)[0])
    except yaml.YAMLError as exc:
        raise MedrefError(f"{path}: front matter is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(fields, dict):
        raise MedrefError(f"{path}: front matter is not a mapping of fields")
    missing = [k for k in CARD_FIELDS if k not in fields]
    if missing:
        raise MedrefError(f"{path}: model card lacks {', '.join(missing)}")
    if fields["name"] != path.stem:
        raise MedrefError(f"{path}: card name {fields['name']!r} differs from its file name {path.stem!r}")
    return ModelCard(path, fields)


def cards(folder: Path = BUNDLED_DIR) -> list[ModelCard]:
    """The model cards in `folder`, by name."""
    return [read_card(p) for p in sorted(folder.glob("*.md"))] if folder.is_dir() else []


def find(name: str, folder: Path = BUNDLED_DIR) -> ModelCard:
    known = cards(folder)
    for card in known:
        if card.name == name:
            return card
    names = ", ".join(c.name for c in known) or "none"
    raise MedrefError(f"--model {name!r}: no bundled model of that name (bundled: {names}; `medref models` "
                      "lists them)")


def verify(card: ModelCard) -> bytes:
    """The weights file's bytes; a file that is missing or whose sha256 is not the card's is refused."""
    import hashlib

    if not card.weights.is_file():
        raise MedrefError(f"{card.weights}: weights of bundled model {card.name!r} not found (reinstall medref)")
    data = card.weights.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.fields["sha256"]:
        raise MedrefError(f"{card.weights}: sha256 {digest[:16]}... does not match its card {card.path.name} "
                          f"({str(card.fields['sha256'])[:16]}...); the file was changed or damaged, reinstall medref")


def open_model(name: str, device: str = "auto", folder: Path = BUNDLED_DIR):  # noqa: ANN201 - (model, text, device)
    """(MedRefNet in eval mode, its frozen text encoder, torch.device) of a bundled model, hash checked first."""
    from medref_cli.model import checkpoint
    from medref_cli.training.device import place

    card = find(name, folder)
    ckpt = checkpoint.load(card.weights, data=verify(card))  # hash checked before anything is unpickled
    model, text = checkpoint.build_model(ckpt, card.weights)
    return model, text, place(model, text, device)


def export(run: Path, name: str, folder: Path = BUNDLED_DIR) -> Path:
    """Write `<folder>/<name>.pt` from `run`'s checkpoint_best.pt: the evaluated weights in half precision, the
    model config and text-encoder identity (no optimizer, no teacher copy); then set `file`, `sha256` and `bytes`
    in `<folder>/<name>.md` (which must exist, with the other fields written by hand). Returns the weights path."""
    from medref_cli.model import checkpoint

    card_path = folder / f"{name}.md"
    if not card_path.is_file():
        raise MedrefError(f"{card_path}: write the model card first (front matter with {', '.join(CARD_FIELDS)})")
    ckpt = checkpoint.load(run / "checkpoint_best.pt")
    half = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    keep = ("config", "preset", "text_dim", "text_encoder", "stage", "method", "epoch", "val_dice_global")
    out = folder / f"{name}.pt"
    checkpoint.save(out, {**{k: ckpt[k] for k in keep if k in ckpt}, "model": half, "source_run": run.name})
    _set_front_matter(card_path, {"file": out.name, "sha256": file_sha256(out), "bytes": out.stat().st_size})
    return out


def _set_front_matter(card_path: Path, values: dict[str, Any]) -> None:
    """Replace the `key: value` lines of the given keys in the card's front matter (other lines untouched)."""
    from medref_cli.workspace import write_bytes_atomic

    head, body = card_path.read_text(encoding="utf-8")[4:].split("\n---\n", 1)
    lines = head.splitlines()
    for key, value in values.items():
        idx = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), None)
        line = f"{key}: {value}"
        if idx is None:
            lines.append(line)
        else:
            lines[idx] = line
    write_bytes_atomic(card_path, ("---\n" + "\n".join(lines) + "\n---\n" + body).encode("utf-8"))


if __name__ == "__main__":  # python -m medref_cli.bundled_models RUN_FOLDER NAME
    if len(sys.argv) != 3:
        sys.exit("usage: python -m medref_cli.bundled_models RUN_FOLDER NAME")
    try:
        print(export(Path(sys.argv[1]), sys.argv[2]))
    except MedrefError as exc:
        sys.exit(f"error: {exc}")
