"""Positional zones of a report: caption <-> 6-bit zone vector (SPEC 1.3).

Zone order: `[L-upper, L-middle, L-lower, R-upper, R-middle, R-lower]`. "left" is the image-left half
(columns [0, W/2)), as the LViT labels show; upper/middle/lower are row thirds. A side named with no
vertical word, or with `all`, sets all three zones of that side; `No pulmonary infection` is all zeros.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

ZONE_NAMES: tuple[str, ...] = ("L-upper", "L-middle", "L-lower", "R-upper", "R-middle", "R-lower")
SIDES: tuple[str, ...] = ("left", "right")
LEVELS: tuple[str, ...] = ("upper", "middle", "lower")
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
)

Zones = tuple[int, int, int, int, int, int]
EMPTY_ZONES: Zones = (0, 0, 0, 0, 0, 0)

_PHRASE = re.compile(r"\b((?:(?:all|upper|middle|lower)\s+)*)(left|right)\s+lung\b", re.IGNORECASE)
_NO_INFECTION = re.compile(r"^\s*no\s+pulmonary\s+infection", re.IGNORECASE)


@dataclass(frozen=True)
class ZonePhrase:
    """One zone phrase found in a caption, e.g. `middle lower left lung` at `text[start:end]`."""

    start: int
    end: int
    side: str  # "left" | "right"
    levels: tuple[str, ...]  # subset of LEVELS in canonical order; all three for a bare side / `all`

    @property
    def zones(self) -> Zones:
        bits = [0] * 6
        offset = 0 if self.side == "left" else 3
        for level in self.levels:
            bits[offset + LEVELS.index(level)] = 1
        return tuple(bits)  # type: ignore[return-value]

    @property
    def canonical(self) -> str:
        return f"{' '.join(self.levels)} {self.side} lung"


def find_phrases(caption: str) -> list[ZonePhrase]:
    """Every zone phrase in `caption`, in order of appearance."""
    phrases = []
    for m in _PHRASE.finditer(caption):
        words = m.group(1).lower().split()
        if not words or "all" in words:
            levels = LEVELS
        else:
            levels = tuple(level for level in LEVELS if level in words)
        phrases.append(ZonePhrase(m.start(), m.end(), m.group(2).lower(), levels))
    return phrases


def parse_zones(caption: str) -> Zones:
    """Caption -> 6-bit zone vector; all zeros for `No pulmonary infection` or no phrase at all."""
    if _NO_INFECTION.match(caption):
        return EMPTY_ZONES
    bits = [0] * 6
    for phrase in find_phrases(caption):
        bits = [a | b for a, b in zip(bits, phrase.zones, strict=True)]
    return tuple(bits)  # type: ignore[return-value]


def has_position(caption: str) -> bool:
    """True when the caption states where the infection is (or that there is none)."""
    return bool(_NO_INFECTION.match(caption)) or bool(find_phrases(caption))


def count_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def caption_from_zones(zones: Zones | list[int], n_areas: int | None = None) -> str:
    """Zone vector -> canonical LViT-grammar caption.

    `n_areas` defaults to the number of zones set (QaTa convention); MosMedData+ counts lesions instead.
    """
    zones = tuple(int(z) for z in zones)
    if len(zones) != 6 or any(z not in (0, 1) for z in zones):
        raise ValueError(f"zone vector must be 6 bits, got {zones}")
    if not any(zones):
        return "No pulmonary infection, zero infected areas."
    n = sum(zones) if n_areas is None else n_areas
    locs = []
    for s, side in enumerate(SIDES):
        levels = [LEVELS[i] for i in range(3) if zones[3 * s + i]]
        if levels:
            locs.append(f"{' '.join(levels)} {side} lung")
    laterality = "Bilateral" if len(locs) == 2 else "Unilateral"
    area = "area" if n == 1 else "areas"
    return f"{laterality} pulmonary infection, {count_word(n)} infected {area}, {' and '.join(locs)}."


def flip_zones(zones: Zones | list[int]) -> Zones:
    """Swap left and right halves of a zone vector (horizontal image flip)."""
    z = tuple(int(v) for v in zones)
    return z[3:] + z[:3]  # type: ignore[return-value]


def flip_caption(caption: str) -> str:
    """Swap `left` and `right` in a caption (horizontal image flip), keeping each word's case."""

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        new = "right" if word.lower() == "left" else "left"
        return new.capitalize() if word[0].isupper() else new

    return re.sub(r"\b(left|right)\b", swap, caption, flags=re.IGNORECASE)


# A terminal escape sequence, whole: CSI (ESC [ params final), OSC (ESC ] ... BEL or ESC \), or ESC + one char
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_WORD_BREAKS = "\u200b"  # zero-width space: a break between words ("right\u200blung" is two words)


def normalise_caption(caption: str) -> str:
    """One line of text: terminal escape sequences (a pasted ANSI colour) are removed whole, whitespace of any
    kind (line breaks, tabs, form feeds) and a zero-width space collapse to one space, other control and
    invisible format characters (NUL, BEL, BOM, zero-width joiners, ...) are dropped, and a doubled final `..`
    is reduced to `.`; wording otherwise untouched. A report split over lines ("left\\nlower") keeps its words
    apart ("left lower")."""
    text = _ANSI.sub("", str(caption))
    text = "".join(" " if c in _WORD_BREAKS else c for c in text)
    text = " ".join("".join(c for c in text if c.isspace() or unicodedata.category(c)[0] != "C").split())
    return re.sub(r"\.{2,}$", ".", text)
