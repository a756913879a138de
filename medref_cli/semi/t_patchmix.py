"""T-PatchMix (SPEC 3.2): text-synchronised, position-constrained, probability-gated CutMix.

For each unlabelled pair (i, j = perm(i)):
1. Position constraint: no mix if i's caption has no zone phrase, or i and j name opposite sides.
   Otherwise, with probability `mix_prob`, a square block of side `block` is placed uniformly inside the
   zone region of i's first phrase (union of its zones; left = columns [0, W/2), thirds of rows).
2. Probability gate: keep the block only if the teacher's mean foreground probability of j inside it is
   >= `gate`. A rejected block is not pasted (unlike the reference code).
3. `x = x_i (1 - M) + x_j M`, pseudo-label `1[p_i (1 - M) + p_j M >= 0.5]`, and i's first phrase rewritten
   to "<pa> and <pb>" when the two phrases differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medref_cli.zone_masks import row_bounds, side_columns
from medref_cli.zones import LEVELS, ZonePhrase, find_phrases


@dataclass
class MixResult:
    image: torch.Tensor  # (B, C, H, W) mixed student input
    prob: torch.Tensor  # (B, 1, H, W) mixed teacher probability
    pseudo: torch.Tensor  # (B, 1, H, W) float {0, 1}
    texts: list[str]
    box_mask: torch.Tensor  # (B, 1, H, W) float {0, 1}: the pasted blocks
    attempted: int
    accepted: int

    @property
    def acceptance(self) -> float:
        return self.accepted / self.attempted if self.attempted else 0.0


def first_phrase(text: str) -> ZonePhrase | None:
    phrases = find_phrases(text)
    return phrases[0] if phrases else None


def phrases_agree(texts: list[str], zones: torch.Tensor) -> torch.Tensor:
    """`(B,)` bool: the first zone phrase of each text (if any) names only zones of its record's vector `(B, 6)`.
    A free-text report under the patient's laterality (its "right lung" is the image-left half) disagrees, so
    T-PatchMix does not place a block on the side its words would mean in the image."""
    out = torch.ones(len(texts), dtype=torch.bool)
    for i, text in enumerate(texts):
        phrase = first_phrase(text)
        if phrase is not None:
            out[i] = bool(all(int(z) <= int(v) for z, v in zip(phrase.zones, zones[i].tolist(), strict=True)))
    return out


def place_block(phrase: ZonePhrase, h: int, w: int, block: int, gen: torch.Generator) -> tuple[int, int]:
    """Top-left (row, col) of a `block` square lying inside one of the phrase's zones, uniform over the
    union (the zones of one side have equal area up to rounding, so a uniform zone then a uniform position)."""
    rows = row_bounds(h)
    c0, c1 = side_columns(phrase.side, w)
    level = LEVELS.index(phrase.levels[int(torch.randint(len(phrase.levels), (1,), generator=gen))])
    r0, r1 = rows[level], rows[level + 1]
    top = r0 + int(torch.randint(max(1, r1 - r0 - block + 1), (1,), generator=gen))
    left = c0 + int(torch.randint(max(1, c1 - c0 - block + 1), (1,), generator=gen))
    return top, left


def rewrite(text: str, pa: ZonePhrase, pb: ZonePhrase | None) -> str:
    """i's first phrase -> "<pa> and <pb>" when the phrases differ; else unchanged."""
    if pb is None or pb.canonical == pa.canonical:
        return text
    return f"{text[: pa.start]}{text[pa.start : pa.end]} and {pb.canonical}{text[pa.end :]}"


def t_patchmix(image: torch.Tensor, prob: torch.Tensor, texts: list[str], perm: torch.Tensor, block: int,
               mix_prob: float, gate: float, gen: torch.Generator, known: list[bool] | None = None) -> MixResult:
    """image `(B, C, H, W)` (student's strong view), prob `(B, 1, H, W)` teacher foreground probability on the
    weak view, texts (original captions), perm `(B,)` long -> MixResult. `known[i]` False (a report with no
    position): no block for i and none taken from i."""
    b, _, h, w = image.shape
    box = torch.zeros(b, 1, h, w, dtype=image.dtype, device=image.device)
    out_texts = list(texts)
    attempted = accepted = 0
    for i in range(b):
        j = int(perm[i])
        if j == i or (known is not None and not (known[i] and known[j])):
            continue
        pa, pb = first_phrase(texts[i]), first_phrase(texts[j])
        if pa is None or (pb is not None and pb.side != pa.side):
            continue
        if float(torch.rand((1,), generator=gen)) >= mix_prob:
            continue
        attempted += 1
        top, left = place_block(pa, h, w, block, gen)
        inside = prob[j, 0, top : top + block, left : left + block]
        if float(inside.mean()) < gate:
            continue
        accepted += 1
        box[i, :, top : top + block, left : left + block] = 1.0
        out_texts[i] = rewrite(texts[i], pa, pb)
    mixed_img = image * (1 - box) + image[perm] * box
    mixed_prob = prob * (1 - box) + prob[perm] * box
    pseudo = (mixed_prob >= 0.5).to(prob.dtype)
    return MixResult(mixed_img, mixed_prob, pseudo, out_texts, box, attempted, accepted)
