"""Checkpoints that carry what rebuilds the model: preset, resolved config, text-encoder identity.

Saved atomically (temp file + rename); loaded only with `torch.load(..., weights_only=True)`, so a file
smuggling a pickle payload is refused without running it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from medref_cli.errors import MedrefError

FORMAT = "medref-checkpoint"
VERSION = 1


def save(path: Path, payload: dict[str, Any]) -> None:
    """Atomic, durable write: serialised in memory, then `write_bytes_atomic` (temp file, fsync, rename)."""
    import io

    from medref_cli.workspace import write_bytes_atomic

    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load(path: Path, map_location: str | torch.device = "cpu", data: bytes | None = None) -> dict[str, Any]:
    """The checkpoint in `path` (`data`: its bytes, when the caller has read them already)."""
    import io
    import warnings

    if data is None and not path.is_file():
        raise MedrefError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning would only precede the one-line error
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(path if data is None else io.BytesIO(data), map_location=map_location,
                              weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        reason = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise MedrefError(f"{path}: not a loadable medref checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise MedrefError(f"{path}: not a medref checkpoint")
    if ckpt.get("version") != VERSION:
        raise MedrefError(f"{path}: checkpoint version {ckpt.get('version')!r} is not supported (expected {VERSION})")
    return ckpt


def load_hashed(path: Path) -> tuple[dict[str, Any], str]:
    """(checkpoint on the CPU, sha256 of its file), the file read once."""
    import hashlib

    if not path.is_file():
        raise MedrefError(f"{path}: checkpoint not found")
    data = path.read_bytes()
    return load(path, "cpu", data), hashlib.sha256(data).hexdigest()


def build_model(ckpt: dict[str, Any], path: Path, text_encoder_override: str | None = None):  # noqa: ANN201
    """(model, text_encoder) rebuilt from the checkpoint alone, weights loaded, eval mode."""
    from medref_cli.config import model_config
    from medref_cli.model.network import MedRefNet
    from medref_cli.model.text_encoder import text_encoder

    cfg = model_config(dict(ckpt["config"]["model"]), f"{path}: model")
    if text_encoder_override:
        cfg = replace(cfg, text_encoder=text_encoder_override)
    text = text_encoder(cfg.text_encoder, cfg.max_tokens)
    if text.dim != ckpt["text_dim"]:
        raise MedrefError(f"{path}: trained with a {ckpt['text_dim']}-d text encoder, {cfg.text_encoder!r} gives {text.dim}")
    cfg = replace(cfg, encoder_pretrained=None)  # the weights come from the checkpoint
    model = MedRefNet(cfg, text.dim)
    state = ckpt["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise MedrefError(f"{path}: weights do not fit the model in its config ({str(exc).splitlines()[0][:120]})") from None
    return model.eval(), text
