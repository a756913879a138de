"""PosAug (SPEC 3.3): mask or fuzz the anatomical zone phrases of the student's caption."""

from __future__ import annotations

import random

from medref_cli.model.text_encoder import UNK_POS
from medref_cli.zones import find_phrases

FUZZ = "a region of the lung"
MODES = ("mask", "fuzzy", "mix")


def pos_aug(text: str, p: float, mode: str, rng: random.Random, keep_side: bool = False) -> str:
    """Each zone phrase independently, with probability `p`, becomes `[UNK_POS]` (mask) or `a region of the
    lung` (fuzzy); in `mix` mode each replaced phrase is masked or fuzzed with equal odds. `keep_side` hides the
    levels only: `[UNK_POS] left lung` / `a region of the left lung` (the same draws, so the same phrases change)."""
    if mode not in MODES:
        raise ValueError(f"pos_aug mode {mode!r}: choose one of {MODES}")
    out, last = [], 0
    for ph in find_phrases(text):
        out.append(text[last : ph.start])
        if rng.random() < p:
            use_mask = mode == "mask" or (mode == "mix" and rng.random() < 0.5)
            if keep_side:
                out.append(f"{UNK_POS} {ph.side} lung" if use_mask else f"a region of the {ph.side} lung")
            else:
                out.append(UNK_POS if use_mask else FUZZ)
        else:
            out.append(text[ph.start : ph.end])
        last = ph.end
    out.append(text[last:])
    return "".join(out)
