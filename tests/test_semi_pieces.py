"""Table tests of Semi-MedRef's pure pieces (SPEC 3.1-3.4)."""

import math
import random

import pytest
import torch
from torch import nn

from medref_cli.model.text_encoder import UNK_POS
from medref_cli.semi.cutmix import random_cutmix
from medref_cli.semi.ema import EmaPair, ema_decay, unsup_weight
from medref_cli.semi.itc import itc_floor, itc_loss, soft_positives, zone_retrieval
from medref_cli.semi.pos_aug import FUZZ, pos_aug
from medref_cli.semi.t_patchmix import first_phrase, rewrite, t_patchmix
from medref_cli.zones import parse_zones

BI = "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
LEFT_MID = "Unilateral pulmonary infection, one infected area, middle left lung."
RIGHT_UP = "Unilateral pulmonary infection, one infected area, upper right lung."
NONE = "No pulmonary infection, zero infected areas."


# --- PosAug ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "expected"), [
    ("mask", f"Bilateral pulmonary infection, two infected areas, {UNK_POS} and {UNK_POS}."),
    ("fuzzy", f"Bilateral pulmonary infection, two infected areas, {FUZZ} and {FUZZ}."),
])
def test_pos_aug_p1_replaces_every_phrase(mode, expected):
    assert pos_aug(BI, 1.0, mode, random.Random(0)) == expected


def test_pos_aug_p0_and_no_phrase_are_identity():
    assert pos_aug(BI, 0.0, "mix", random.Random(0)) == BI
    assert pos_aug(NONE, 1.0, "mix", random.Random(0)) == NONE


def test_pos_aug_frequencies_within_binomial_bounds():
    rng = random.Random(1)
    n = 4000
    masked = fuzzed = kept = 0
    for _ in range(n):
        out = pos_aug(LEFT_MID, 0.5, "mix", rng)
        masked += UNK_POS in out
        fuzzed += FUZZ in out
        kept += "middle left lung" in out
    sd = math.sqrt(n * 0.25 * 0.75)
    assert abs(masked - n * 0.25) < 4 * sd and abs(fuzzed - n * 0.25) < 4 * sd
    assert abs(kept - n * 0.5) < 4 * math.sqrt(n * 0.25)


@pytest.mark.parametrize(("mode", "expected"), [
    ("mask", f"Bilateral pulmonary infection, two infected areas, {UNK_POS} left lung and {UNK_POS} right lung."),
    ("fuzzy", "Bilateral pulmonary infection, two infected areas, a region of the left lung and a region of the "
              "right lung."),
])
def test_pos_aug_keep_side_hides_the_levels_and_keeps_each_side(mode, expected):
    out = pos_aug(BI, 1.0, mode, random.Random(0), keep_side=True)
    assert out == expected
    assert parse_zones(out) == (1, 1, 1, 1, 1, 1)  # the side survives, the level does not


def test_pos_aug_keep_side_changes_the_same_phrases():
    """The same draws: with a seed, keep_side rewrites exactly the phrases the plain PosAug rewrites."""
    for seed in range(20):
        plain = pos_aug(BI, 0.5, "mix", random.Random(seed))
        kept = pos_aug(BI, 0.5, "mix", random.Random(seed), keep_side=True)
        assert [p in plain for p in ("lower left lung", "lower right lung")] == \
            [p in kept for p in ("lower left lung", "lower right lung")]
        assert (UNK_POS in plain) == (UNK_POS in kept)


def test_pos_aug_rejects_unknown_mode():
    with pytest.raises(ValueError):
        pos_aug(BI, 0.5, "drop", random.Random(0))


# --- T-PatchMix ----------------------------------------------------------------------------------------
def _batch(texts, h=96, w=96, prob_value=0.9):
    b = len(texts)
    image = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, h, w).clone()
    prob = torch.full((b, 1, h, w), prob_value)
    return image, prob


def test_opposite_sides_never_mix():
    texts = [LEFT_MID, RIGHT_UP]
    image, prob = _batch(texts)
    for seed in range(50):
        res = t_patchmix(image, prob, texts, torch.tensor([1, 0]), 8, 1.0, 0.55, torch.Generator().manual_seed(seed))
        assert res.attempted == 0 and res.box_mask.sum() == 0 and res.texts == texts
        assert torch.equal(res.image, image)


def test_no_phrase_never_mixes():
    texts = [NONE, LEFT_MID]
    image, prob = _batch(texts)
    res = t_patchmix(image, prob, texts, torch.tensor([1, 0]), 8, 1.0, 0.0, torch.Generator().manual_seed(0))
    assert res.box_mask[0].sum() == 0  # i = 0 has no phrase
    assert res.box_mask[1].sum() > 0  # i = 1 (left) may take from j = 0 (no phrase: no side conflict)


@pytest.mark.parametrize("text", [LEFT_MID, RIGHT_UP, BI,
                                  "Unilateral pulmonary infection, two infected areas, upper lower right lung."])
def test_blocks_always_lie_inside_the_zone(text):
    h = w = 90
    texts = [text, BI]
    image, prob = _batch(texts, h, w)
    phrase = first_phrase(text)
    c0, c1 = (0, w // 2) if phrase.side == "left" else (w // 2, w)
    rows = [0, h // 3, 2 * h // 3, h]
    allowed = torch.zeros(h, w, dtype=torch.bool)
    for level in phrase.levels:
        k = ("upper", "middle", "lower").index(level)
        allowed[rows[k]:rows[k + 1], c0:c1] = True
    for seed in range(40):
        res = t_patchmix(image, prob, texts, torch.tensor([1, 0]), 10, 1.0, 0.5, torch.Generator().manual_seed(seed))
        box = res.box_mask[0, 0].bool()
        if res.box_mask[0].sum() == 0:  # opposite sides (RIGHT vs BI's left first phrase)
            assert phrase.side == "right"
            continue
        assert box.sum() == 100 and not (box & ~allowed).any()


def test_gate_below_threshold_leaves_everything_untouched():
    texts = [LEFT_MID, "Unilateral pulmonary infection, one infected area, lower left lung."]
    image, prob = _batch(texts, prob_value=0.3)
    res = t_patchmix(image, prob, texts, torch.tensor([1, 0]), 8, 1.0, 0.55, torch.Generator().manual_seed(0))
    assert res.attempted == 2 and res.accepted == 0 and res.acceptance == 0.0
    assert torch.equal(res.image, image) and torch.equal(res.prob, prob) and res.texts == texts
    assert torch.equal(res.pseudo, (prob >= 0.5).float())


def test_accepted_block_mixes_image_label_and_text():
    lower = "Unilateral pulmonary infection, one infected area, lower left lung."
    texts = [LEFT_MID, lower]
    image, prob = _batch(texts)
    prob[1] = 1.0
    prob[0] = 0.0
    res = t_patchmix(image, prob, texts, torch.tensor([1, 0]), 8, 1.0, 0.55, torch.Generator().manual_seed(3))
    box = res.box_mask[0].bool()
    assert res.accepted >= 1 and box.sum() == 64
    assert torch.all(res.image[0][box] == 1.0) and torch.all(res.image[0][~box] == 0.0)
    assert torch.all(res.pseudo[0][box] == 1) and torch.all(res.pseudo[0][~box] == 0)
    assert res.texts[0] == "Unilateral pulmonary infection, one infected area, middle left lung and lower left lung."
    assert parse_zones(res.texts[0]) == (0, 1, 1, 0, 0, 0)


@pytest.mark.parametrize(("a", "b", "expected"), [
    (LEFT_MID, LEFT_MID, LEFT_MID),
    (LEFT_MID, NONE, LEFT_MID),
    (BI, LEFT_MID, "Bilateral pulmonary infection, two infected areas, lower left lung and middle left lung and "
                   "lower right lung."),
    ("x, all left lung.", LEFT_MID, "x, all left lung and middle left lung."),
])
def test_text_rewrite(a, b, expected):
    assert rewrite(a, first_phrase(a), first_phrase(b)) == expected


def test_mix_probability_controls_attempts():
    texts = [LEFT_MID] * 200
    image, prob = _batch(texts, 48, 48)
    perm = torch.roll(torch.arange(200), 1)
    res = t_patchmix(image, prob, texts, perm, 4, 0.08, 0.55, torch.Generator().manual_seed(0))
    assert 4 <= res.attempted <= 32  # binomial(200, 0.08): mean 16


def test_random_cutmix_keeps_text_and_mixes_labels_consistently():
    image, prob = _batch([BI, BI], 64, 64)
    prob[1] = 0.0
    res = random_cutmix(image, prob, torch.tensor([1, 0]), 1.0, torch.Generator().manual_seed(0))
    assert res.attempted == 2 and res.box_mask.sum() > 0
    assert torch.equal(res.pseudo[0].bool(), ~res.box_mask[0].bool())



def test_random_cutmix_clipped_to_allowed_pixels():
    image, prob = _batch([BI, BI], 64, 64)
    allowed = torch.zeros(2, 1, 64, 64)
    allowed[0, :, :, :32] = 1.0  # image 0: left half only; image 1: nowhere
    res = random_cutmix(image, prob, torch.tensor([1, 0]), 1.0, torch.Generator().manual_seed(0), allowed=allowed)
    assert res.box_mask[0].sum() > 0 and res.box_mask[0, :, :, 32:].sum() == 0
    assert res.box_mask[1].sum() == 0 and torch.equal(res.image[1], image[1]) and res.attempted == 1


# --- ITCL ---------------------------------------------------------------------------------------------
def test_soft_positives_jaccard():
    zones = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    pos = soft_positives(zones)
    assert pos[0, 1] == pytest.approx(1 / 3) and pos[0, 2] == 0 and pos[2, 3] == 1 and pos[1, 1] == 1


def test_itc_hand_computed_3x3():
    img = torch.eye(3)
    txt = torch.eye(3)
    zones = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]])
    tau = 0.5
    # P: row0 [1, 1/2, 0], row1 [1/2, 1, 0], row2 [0, 0, 1]; logits = I / tau
    e = math.e ** (1 / tau)
    log_p_diag = math.log(e / (e + 2))
    log_p_off = math.log(1 / (e + 2))
    row01 = -((1 * log_p_diag + 0.5 * log_p_off) / 1.5)
    row2 = -log_p_diag
    expected = (2 * row01 + row2) / 3  # i2t == t2i here (symmetric)
    assert itc_loss(img, txt, zones, tau).item() == pytest.approx(expected, rel=1e-6)


def _itc_reference(img, txt, zones, tau, empty_positive):
    """Plain-Python SPEC 3.4: L_i2t over rows of P, L_t2i over rows of P^T, each row normalised on its own."""
    b = len(img)
    dot = [[sum(x * y for x, y in zip(img[a], txt[c], strict=True)) / tau for c in range(b)] for a in range(b)]

    def pos(a, c):
        if a == c:
            return 1.0
        inter = sum(x & y for x, y in zip(zones[a], zones[c], strict=True))
        union = sum(x | y for x, y in zip(zones[a], zones[c], strict=True))
        return inter / union if union else (1.0 if empty_positive else 0.0)

    def direction(logit, p):
        total = 0.0
        for a in range(b):
            lse = math.log(sum(math.exp(v) for v in logit[a]))
            total -= sum(p(a, c) * (logit[a][c] - lse) for c in range(b)) / sum(p(a, c) for c in range(b))
        return total / b

    transposed = [[dot[c][a] for c in range(b)] for a in range(b)]
    return (direction(dot, pos) + direction(transposed, lambda a, c: pos(c, a))) / 2


@pytest.mark.parametrize(("zones", "empty_positive"), [
    ([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0]], True),  # unequal row sums
    ([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], True),
    ([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], False),  # official
    ([[0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0]], True),
])
def test_itc_matches_the_plain_python_reference(zones, empty_positive):
    gen = torch.Generator().manual_seed(len(zones) + int(empty_positive))
    img = torch.nn.functional.normalize(torch.randn(4, 5, generator=gen), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(4, 5, generator=gen), dim=1)
    expected = _itc_reference(img.tolist(), txt.tolist(), zones, 0.07, empty_positive)
    got = itc_loss(img, txt, torch.tensor(zones), 0.07, empty_positive).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_soft_positives_empty_pair_field():
    zones = torch.zeros(2, 6, dtype=torch.long)
    assert soft_positives(zones, True)[0, 1] == 1 and soft_positives(zones, False)[0, 1] == 0
    assert soft_positives(zones, False)[0, 0] == 1


def test_itc_floor_is_ln_b_when_every_report_names_the_same_zones_and_0_when_all_differ():
    same = torch.tensor([[1, 1, 1, 1, 1, 1]] * 16)
    assert itc_floor(same).item() == pytest.approx(math.log(16), rel=1e-6)
    distinct = torch.eye(6, dtype=torch.long)  # no two reports share a zone: each row's target is one-hot
    assert itc_floor(distinct).item() == pytest.approx(0.0, abs=1e-6)


def test_itc_target_power_sharpens_the_positives_and_lowers_the_floor():
    """`method.itc_target_power`: Jaccard ** power; 1 is the plain Jaccard, a large power leaves the pairs with the
    very same zones, and the floor falls as the power grows (QaTa-like bilateral reports: near ln B at power 1)."""
    zones = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1], [1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1],
                          [0, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0]])
    jac = soft_positives(zones)
    assert torch.equal(soft_positives(zones, power=1.0), jac)
    assert torch.allclose(soft_positives(zones, power=2.0), jac**2)
    same = (zones[:, None] == zones[None]).all(-1).float()
    assert torch.allclose(soft_positives(zones, power=200.0), same, atol=1e-9)
    floors = [itc_floor(zones, power=p).item() for p in (1.0, 2.0, 4.0, 200.0)]
    assert floors == sorted(floors, reverse=True) and floors[0] - floors[-1] > 0.5
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 16, generator=g), dim=-1)
    assert itc_loss(img, txt, zones, power=1.0).item() == itc_loss(img, txt, zones).item()
    assert itc_loss(img, txt, zones, power=4.0).item() >= itc_floor(zones, power=4.0).item() - 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_itc_never_goes_below_its_floor_and_reaches_it_when_softmax_equals_the_target(seed):
    g = torch.Generator().manual_seed(seed)
    zones = torch.randint(0, 2, (8, 6), generator=g)
    floor = itc_floor(zones, empty_positive=True).item()
    for tau in (0.07, 0.5, 5.0):
        img = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
        txt = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
        assert itc_loss(img, txt, zones, tau).item() >= floor - 1e-6
    # logits = log(target) (tau 1) make softmax equal the row-normalised target: the loss is then its floor
    pos = soft_positives(zones)
    w = pos / pos.sum(1, keepdim=True)
    logits = torch.log(w.clamp(min=1e-30))
    loss = -(w * torch.log_softmax(logits, 1)).sum(1).mean()
    assert loss.item() == pytest.approx(floor, abs=1e-5)


def test_zone_retrieval_top1_is_1_for_aligned_projections_and_chance_is_the_share_of_same_zone_pairs():
    zones = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1]])
    emb = torch.nn.functional.normalize(zones.float() + 0.01 * torch.arange(4.0)[:, None], dim=-1)
    top1, chance = zone_retrieval(emb, emb, zones)
    assert top1 == 1.0 and chance == pytest.approx(6 / 16)
    opposite = torch.nn.functional.normalize(1 - zones.float(), dim=-1)  # each image nearest a report elsewhere
    assert zone_retrieval(emb, opposite, zones)[0] < 1.0


def test_itc_prefers_aligned_embeddings():
    zones = torch.eye(6, dtype=torch.long)[:4]
    aligned = torch.nn.functional.normalize(torch.eye(4, 8), dim=1)
    shuffled = aligned[[1, 2, 3, 0]]
    assert itc_loss(aligned, aligned, zones) < itc_loss(aligned, shuffled, zones)


# --- EMA and ramps ------------------------------------------------------------------------------------
def _net():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_ema_decay_zero_copies_and_one_keeps():
    torch.manual_seed(0)
    teacher, student = _net(), _net()
    student[1].running_mean.fill_(3.0)
    student[1].num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    pair = EmaPair(teacher, student)  # one pair, two updates: its cached tensor lists stay live
    pair.update(1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items() if v.is_floating_point())
    pair.update(0.0)
    assert all(torch.equal(student.state_dict()[k], v) for k, v in teacher.state_dict().items())


def test_ema_mid_decay_is_the_convex_mix():
    teacher, student = _net(), _net()
    t0 = teacher[0].weight.detach().clone()
    EmaPair(teacher, student).update(0.9)
    assert torch.allclose(teacher[0].weight, 0.9 * t0 + 0.1 * student[0].weight)


@pytest.mark.parametrize(("epoch", "w"), [(0, 0.0), (5, 0.0), (12.5, 0.15), (20, 0.3), (80, 0.3)])
def test_unsup_weight_ramp_ref(epoch, w):
    assert unsup_weight(epoch, 5, 15, 0.3) == pytest.approx(w)


@pytest.mark.parametrize(("epoch", "mode", "d"), [
    (0, "ema", 0.99), (4, "ema", 0.99), (0, "copy", 0.0), (4, "copy", 0.0),  # burn-in: ref keeps averaging
    (5, "ema", 0.99), (15, "ema", 0.9945), (25, "copy", 0.999), (90, "ema", 0.999),
])
def test_ema_decay_ramp_ref(epoch, mode, d):
    assert ema_decay(epoch, 5, 20, burn_in_teacher=mode) == pytest.approx(d)
