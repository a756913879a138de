"""Semi-train recipes (official | medref): config layering, each recipe field's pure piece, and one step."""

import math
import zlib
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from medref_cli.config import METHODS, RECIPES, TrainRequest, method_config, model_config, resolve, resolve_config
from medref_cli.errors import MedrefError
from medref_cli.semi.methods import TeacherStudent, masked_pseudo_loss, mixed_zones, soft_dice
from medref_cli.training.loop import _cosine
from medref_cli.zone_masks import laterality, side_mask, zone_regions

LEFT = "Unilateral pulmonary infection, one infected area, lower left lung."
RIGHT = "Unilateral pulmonary infection, one infected area, upper right lung."
BI = "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."


def _req(**kw):
    return TrainRequest(**{"stage": "semi-train", "method": "semi-medref", "labeled": "5%", "preset": "cpu", **kw})


# --- config layering -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_sets_every_one_of_its_fields(recipe):
    cfg = resolve_config(_req(overrides={"method": {"recipe": recipe}}), {}).to_dict()
    for section, values in RECIPES[recipe].items():
        for key, value in values.items():
            assert cfg[section][key] == value, (section, key)
    assert cfg["method"]["recipe"] == recipe


def test_default_recipe_is_medref_and_options_beat_the_recipe_and_the_file():
    assert resolve_config(_req(), {}).method.recipe == "medref"
    file_cfg = {"method": {"recipe": "official", "side_gate": True, "unsup_weight": 0.7}}
    cfg = resolve_config(_req(overrides={"method": {"unsup_weight": 0.9}}), file_cfg)
    assert cfg.method.recipe == "official" and cfg.method.sup_loss == "dice"  # the file picks the recipe
    assert cfg.method.side_gate is True  # one field switched alone over the recipe
    assert cfg.method.unsup_weight == 0.9  # the command line wins
    assert cfg.train.anneal_factor == 2.0


def test_the_recipes_cutmix_reaches_semi_medref_only():
    def method(name, recipe="medref", **ov):
        return resolve_config(_req(method=name, overrides={"method": {"recipe": recipe, **ov}}), {}).method

    assert method("semi-medref").cutmix and method("semi-medref").cutmix_sides
    assert not method("semi-medref", "official").cutmix
    assert not method("semi-medref", cutmix=False).cutmix  # --no-cutmix
    assert not method("mean-teacher").cutmix  # the baselines keep their own mixing
    assert method("cutmix").cutmix and not method("cutmix").cutmix_sides


@pytest.mark.parametrize(("stage", "method", "recipe"), [
    (spec.stage, m, r) for m, spec in METHODS.items()
    for r in (sorted(RECIPES) if spec.stage == "semi-train" else [None])])
def test_config_yaml_reloads_to_the_identical_run_config(stage, method, recipe):
    """What `config.yaml` holds is the whole config that ran: reloading it gives the same RunConfig, field for
    field, for every method and recipe (a method's own fields included: mean-teacher records cutmix false)."""
    import yaml

    from medref_cli.config import RunConfig

    overrides = {"method": {"recipe": recipe}} if recipe else {}
    cfg = resolve_config(_req(stage=stage, method=method, overrides=overrides), {})
    saved = yaml.safe_load(cfg.to_yaml())
    assert RunConfig.from_dict(saved) == cfg and cfg.stage == stage and cfg.method.name == method
    if stage == "semi-train":
        assert saved["config"]["method"]["name"] == method and "pseudo_thresh" in saved["config"]["method"]
        assert saved["config"]["method"]["cutmix"] is (method == "cutmix" or (method == "semi-medref"
                                                                             and recipe == "medref"))
        assert all(saved["config"]["method"][k] == v for k, v in METHODS[method].fixed.items())


def _old_run(run, config: dict, method: str = "semi-medref", stage: str = "semi-train", version: int | None = None):
    """A run folder as medref wrote it before config.yaml 3: the identity in a version-1 run.json."""
    import json

    import yaml

    run.mkdir(parents=True, exist_ok=True)
    saved = {"preset": "cpu", "config": config} if version is None else \
        {"schema_version": version, "preset": "cpu", "inputs": {}, "config": config}
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    (run / "run.json").write_text(json.dumps({
        "stage": stage, "method": method, "dataset": "qata", "dataset_hash": "h" * 64, "split_file": "qata-5pct-s7.json",
        "ratio": "5%", "seed": 7, "preset": "cpu", "text_encoder": "minilm", "status": "finished", "epochs_done": 3,
        "best_epoch": 2, "best_val_dice": 0.5, "init_from": "pre", "extra": {}}))
    return run


def test_a_config_yaml_from_before_the_whole_config_was_saved_reads_as_it_ran(tmp_path):
    """Older config.yaml files hold the preset's and the recipe's method fields only; the rest were the
    defaults of their time (DiceCE, masked BCE-Dice, 0.5 without T-PatchMix)."""
    from medref_cli.config import load_run_config

    base = resolve_config(_req(stage="pretrain", method="supervised"), {}).to_dict()
    run = _old_run(tmp_path / "r", {"model": base["model"], "train": base["train"],
                                    "method": {"recipe": "medref", "side_gate": True}})
    method = load_run_config(run).method
    assert (method.sup_loss, method.unsup_loss, method.pseudo_thresh_no_mix) == ("dice_ce", "masked_bce_dice", 0.5)
    assert method.side_gate and not method.cutmix


@pytest.mark.parametrize("method", ["mean-teacher", "cutmix"])
def test_the_generic_baselines_take_no_training_signal_from_the_report(method):
    """Under the default recipe (whose side gate reads the report's lung halves) the generic SSL baselines
    still switch off every text-driven part: no T-PatchMix, PosAug, ITCL, side gate or side-clipped CutMix."""
    cfg = resolve_config(_req(stage="semi-train", method=method), {}).method
    assert cfg.recipe == "medref"
    assert not (cfg.t_patchmix or cfg.pos_aug or cfg.itcl or cfg.side_gate or cfg.cutmix_sides)
    assert cfg.cutmix is (method == "cutmix")
    assert resolve_config(_req(stage="semi-train", method="semi-medref"), {}).method.side_gate


def test_pretrain_takes_no_recipe_and_its_method_config_holds_its_loss():
    cfg = resolve_config(_req(stage="pretrain", method="supervised"), {})
    assert cfg.method.name == "supervised" and cfg.method.recipe is None and cfg.train.anneal_factor == 1.0
    assert cfg.method.sup_loss == "dice_ce" and not (cfg.method.t_patchmix or cfg.method.itcl)
    dice = resolve_config(_req(stage="pretrain", method="supervised"), {"method": {"sup_loss": "dice"}})
    assert dice.method.sup_loss == "dice"  # a default the user may change
    fixed = resolve_config(_req(stage="pretrain", method="supervised"), {"method": {"recipe": "medref"}})
    assert fixed.method.recipe is None and fixed.train.anneal_factor == 1.0  # no recipe layer for pretrain
    # it reads sup_loss only: another method field from a layer (a table1 profile's schedules) is not recorded,
    # so its config equals the one an old run.json-era pretrain migrates to
    noisy = resolve_config(_req(stage="pretrain", method="supervised"), {"method": {"burn_in_epochs": 3}})
    assert noisy.method == cfg.method and noisy.method.burn_in_epochs == 5


@pytest.mark.parametrize(("values", "message"), [
    ({"recipe": "unofficial"}, "--recipe"),
    ({"unsup_loss": "mse"}, "unsup_loss"),
    ({"sup_loss": "bce"}, "sup_loss"),
    ({"itc_unlabeled_view": "strong"}, "itc_unlabeled_view"),
    ({"burn_in_teacher": "freeze"}, "burn_in_teacher"),
    ({"feature_dropout": 1.0}, "feature_dropout"),
    ({"nope": 1}, "unknown field"),
])
def test_bad_method_fields_are_named(values, message):
    with pytest.raises(MedrefError, match=message):
        method_config(values)


def test_unknown_recipe_on_the_command_line_is_refused():
    with pytest.raises(MedrefError, match="--recipe 'x'"):
        resolve_config(_req(overrides={"method": {"recipe": "x"}}), {})


# --- pure pieces -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("zones", "left_kept", "right_kept"), [
    ([1, 0, 0, 0, 0, 0], 1, 0),
    ([0, 1, 1, 0, 0, 0], 1, 0),
    ([0, 0, 0, 1, 0, 0], 0, 1),
    ([0, 0, 1, 0, 0, 1], 1, 1),
    ([0, 0, 0, 0, 0, 0], 1, 1),  # no position (or no infection): no constraint
])
def test_side_mask_keeps_the_named_halves(zones, left_kept, right_kept):
    m = side_mask(torch.tensor([zones]), 6, 10)
    assert m.shape == (1, 1, 6, 10)
    assert torch.all(m[0, 0, :, :5] == left_kept) and torch.all(m[0, 0, :, 5:] == right_kept)


def test_zone_regions_tile_the_image_and_match_laterality():
    regions = zone_regions(9, 8)
    assert torch.equal(regions.sum(0), torch.ones(9, 8, dtype=torch.long))
    assert regions[0, :3, :4].all() and regions[5, 6:, 4:].all()
    assert [laterality(z) for z in ([1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1], [0] * 6)] == [
        "left", "right", "bilateral", "none"]


def test_mixed_zones_add_the_donor_phrase_only_where_a_block_was_pasted():
    texts = [LEFT, "Unilateral pulmonary infection, one infected area, upper left lung.", RIGHT]
    zones = torch.tensor([[0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]])
    box = torch.zeros(3, 1, 4, 4)
    box[0, :, :2, :2] = 1  # 0 took a block from perm[0] = 1
    out = mixed_zones(zones, texts, torch.tensor([1, 2, 0]), box)
    assert out.tolist() == [[1, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]]


def test_soft_dice_equals_monai_dice_loss():
    from monai.losses import DiceLoss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=gen)
    target = (torch.rand(3, 1, 8, 8, generator=gen) > 0.6).float()
    assert soft_dice(logits, target).item() == pytest.approx(DiceLoss(sigmoid=True)(logits, target).item(), rel=1e-5)


def test_confidence_mask_ignores_unconfident_pixels():
    logits = torch.full((1, 1, 2, 2), 3.0)
    pseudo = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    conf_all, conf_top = torch.ones_like(pseudo), pseudo.clone()
    assert masked_pseudo_loss(logits, pseudo, conf_top) < masked_pseudo_loss(logits, pseudo, conf_all)


@pytest.mark.parametrize(("factor", "end"), [(1.0, 0.0), (2.0, 0.5)])
def test_cosine_anneal_factor(factor, end):
    f = _cosine(100, 0, factor)
    assert f(0) == 1.0 and f(100) == pytest.approx(end, abs=1e-9)
    assert f(50) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5 / factor)))


# --- one real step per recipe ----------------------------------------------------------------------------------
class _Text:
    """Frozen-encoder stand-in: a fixed random feature sequence per distinct string."""

    dim = 8

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts, device):
        self.seen += list(texts)
        feats = torch.stack([torch.randn(4, self.dim, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                             for t in texts])
        return feats, torch.ones(len(texts), 4, dtype=torch.bool)


def _method(recipe: str, **fields):
    from medref_cli.model.network import MedRefNet

    torch.manual_seed(0)
    mcfg = model_config(resolve("tiny")["model"], "model")
    model = MedRefNet(mcfg, _Text.dim)
    ctx = SimpleNamespace(model=model, model_cfg=mcfg, train=SimpleNamespace(seed=0), text=_Text(),
                          device=torch.device("cpu"))
    values = {**RECIPES[recipe]["method"], "recipe": recipe, "burn_in_epochs": 0, "unsup_ramp_epochs": 0,
              "mix_prob": 1.0, "pos_aug_p": 1.0, **fields}
    return TeacherStudent(ctx, method_config(values)), model


def _batches(b=4, size=64):
    gen = torch.Generator().manual_seed(1)
    texts = [LEFT, RIGHT, BI, LEFT][:b]
    from medref_cli.zones import parse_zones

    zones = torch.tensor([parse_zones(t) for t in texts])
    img = torch.rand(b, 1, size, size, generator=gen)
    batch_l = {"image": img, "label": (img > 0.7).float(), "text": texts, "zones": zones}
    batch_u = {"image": img.flip(0), "image_s": img.flip(0) * 0.9, "text": texts, "zones": zones}
    return batch_l, batch_u


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_step_runs_and_backpropagates(recipe):
    method, model = _method(recipe)
    batch_l, batch_u = _batches()
    loss, logs = method.step(model, batch_l, batch_u, epoch=3)
    loss.backward()
    assert math.isfinite(loss.item())
    assert logs["w_u"] == method.cfg.unsup_weight == (1.0 if recipe == "medref" else 0.3)
    assert {"loss_sup", "loss_u", "loss_itc_l", "loss_itc_u", "pseudo_fg", "itc_floor_l", "itc_floor_u"} <= set(logs)
    assert logs["loss_itc_l"] >= logs["itc_floor_l"] - 1e-5 and logs["loss_itc_u"] >= logs["itc_floor_u"] - 1e-5
    assert all(p.grad is not None for p in model.img_proj.parameters())


def test_pos_aug_first_hides_the_phrases_from_t_patchmix():
    for first, expect_attempts in ((True, False), (False, True)):
        method, model = _method("medref", pos_aug_first=first, pos_aug_mode="mask", mix_gate=0.0)
        _, logs = method.step(model, *_batches(), epoch=3)
        assert (logs.get("mix_attempted", 0) > 0) is expect_attempts


def test_pos_aug_keep_side_reaches_the_student():
    """`pos_aug_keep_side`: every phrase the student's captions lost keeps its side ("[UNK_POS] left lung")."""
    for keep in (False, True):
        method, model = _method("medref", pos_aug_mode="mask", pos_aug_p=1.0, pos_aug_keep_side=keep)
        method.step(model, *_batches(), epoch=3)
        masked = [t for t in method.ctx.text.seen if "[UNK_POS]" in t]
        sided = [t.count("[UNK_POS]") == t.count("[UNK_POS] left lung") + t.count("[UNK_POS] right lung")
                 for t in masked]
        assert masked and all(sided) is keep


def test_weak_view_itc_sees_the_original_text():
    method, model = _method("official", pos_aug_mode="mask")
    batch_l, batch_u = _batches()
    method.step(model, batch_l, batch_u, epoch=3)
    seen = method.ctx.text.seen
    assert seen[-4:] == batch_u["text"]  # the last call: the separate weak-view ITC pass, original captions
    assert any("[UNK_POS]" in t for t in seen)  # the student's segmentation pass had PosAug'd captions


def test_side_gate_clears_the_unnamed_half_of_the_pseudo_label():
    rows = {}
    for gate in (False, True):
        method, model = _method("medref", side_gate=gate, t_patchmix=False, feature_dropout=0.0, pseudo_thresh_no_mix=1e-6)
        _, logs = method.step(model, *_batches(), epoch=3)
        rows[gate] = logs["pseudo_fg"]
    # threshold ~0: every pixel is foreground without the gate; with it, the 3 one-lung captions lose a half each
    assert rows[False] == 1.0 and rows[True] == pytest.approx(1 - 3 * 0.5 / 4)


def test_feature_dropout_only_touches_the_perturbed_images():
    method, model = _method("medref")
    model.train()
    img = torch.rand(4, 1, 64, 64)
    feats, keep = _Text()([LEFT] * 4, "cpu")
    torch.manual_seed(0)
    a = model(img, feats, keep, feature_dropout=0.9, perturb_from=2)["logits"]
    torch.manual_seed(1)
    b = model(img, feats, keep, feature_dropout=0.9, perturb_from=2)["logits"]
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2:], b[2:])


def test_burn_in_teacher_mode_is_applied():
    for mode, moved in (("copy", True), ("ema", False)):
        method, model = _method("medref", burn_in_teacher=mode, burn_in_epochs=5)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        method.after_optimizer_step(model, epoch=0, step=0)
        t, s = next(method.teacher.parameters()), next(model.parameters())
        assert torch.allclose(t, s) is moved



# --- reports with no position (free-text datasets) ---------------------------------------------------------------
def test_unknown_position_is_only_its_own_positive():
    from medref_cli.semi.itc import soft_positives

    zones = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    known = torch.tensor([False, True, True])
    pos = soft_positives(zones, True, known)
    assert pos.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert soft_positives(zones, True)[0, 1] == 1  # without the flag two empty vectors are positives


def test_t_patchmix_skips_unknown_positions():
    from medref_cli.semi.t_patchmix import t_patchmix

    texts = [LEFT, "Unilateral pulmonary infection, one infected area, upper left lung."]
    image, prob = torch.rand(2, 1, 48, 48), torch.ones(2, 1, 48, 48)
    gen = torch.Generator().manual_seed(0)
    assert t_patchmix(image, prob, texts, torch.tensor([1, 0]), 6, 1.0, 0.0, gen).accepted == 2
    res = t_patchmix(image, prob, texts, torch.tensor([1, 0]), 6, 1.0, 0.0, gen, known=[True, False])
    assert res.attempted == 0 and res.texts == texts


# --- the method registry ----------------------------------------------------------------------------------------
def test_registry_fixes_each_methods_parts():
    from medref_cli.config import METHODS

    for name, spec in METHODS.items():
        cfg = method_config({"name": name, "cutmix_prob": 0.3})
        for key, value in spec.fixed.items():
            assert getattr(cfg, key) == value, (name, key)
    assert method_config({"name": "semi-medref"}).t_patchmix and not method_config({"name": "semi-medref"}).cutmix
    with pytest.raises(MedrefError, match="--method 'fixmatch'"):
        method_config({"name": "fixmatch"})


def test_one_registry_entry_adds_a_method_to_table1_and_run_names(monkeypatch):
    from medref_cli import config as recipes
    from medref_cli.config import default_run_name
    from medref_cli.stages.table1_matrix import _stage, parse_method

    spec = recipes.MethodSpec("mean teacher, PosAug only", "semi-train", "medref_cli.semi.methods:TeacherStudent",
                              {"t_patchmix": False, "itcl": False}, ablations=("pos-aug",))
    monkeypatch.setitem(recipes.METHODS, "posaug-teacher", spec)
    assert parse_method("posaug-teacher-no-pos-aug") == ("posaug-teacher", {"pos_aug": False})
    assert _stage("posaug-teacher") == "semi-train"
    cfg = method_config({"name": "posaug-teacher"})
    assert (cfg.t_patchmix, cfg.pos_aug, cfg.itcl) == (False, True, False)
    req = _req(method="posaug-teacher", seed=3, overrides={"method": {"pos_aug": False}})
    assert default_run_name(req, "qata", "5pct") == "posaug-teacher-no-pos-aug-qata-5pct-s3"
    with pytest.raises(MedrefError, match="unknown method"):
        parse_method("posaug-teacher-official")  # takes no recipe


def test_cutmix_branch_pastes_a_box_and_keeps_the_captions():
    method, model = _method("medref", name="cutmix", cutmix_prob=1.0, pos_aug_p=0.0)
    assert method.cfg.cutmix and not method.cfg.t_patchmix
    img = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 64, 64).contiguous()
    prob = img / 4
    texts = [LEFT, RIGHT, BI, LEFT]
    zones = torch.zeros(4, 6, dtype=torch.long)
    out_img, out_prob, out_texts, out_zones, stats = method._mix(img, prob, texts, zones, torch.ones(4, dtype=torch.bool))
    changed = (out_img != img).flatten(1).any(1)
    assert changed.any() and out_texts == texts and torch.equal(out_zones, zones) and set(stats) == {"cutmix_share"}
    assert torch.equal(out_prob * 4, out_img)  # image and pseudo-label moved together
    _, logs = method.step(model, *_batches(), epoch=3)
    assert math.isfinite(logs["loss"]) and "loss_itc_u" not in logs  # cutmix: no ITCL


def test_side_consistent_cutmix_pastes_only_where_both_reports_name_the_side():
    from medref_cli.zone_masks import side_mask
    from medref_cli.zones import parse_zones

    method, _ = _method("medref", cutmix=True, cutmix_sides=True, cutmix_prob=1.0, t_patchmix=False)
    texts = [LEFT, RIGHT, BI, LEFT] * 4
    zones = torch.tensor([parse_zones(t) for t in texts])
    img = torch.arange(16, dtype=torch.float32).view(16, 1, 1, 1).expand(16, 1, 64, 64).contiguous()
    pasted = 0
    for _ in range(5):
        out_img, out_prob, *_ = method._mix(img, img / 16, texts, zones, torch.ones(16, dtype=torch.bool))
        assert torch.equal(out_prob * 16, out_img)
        for i in range(16):
            moved = out_img[i, 0] != img[i, 0]
            if not moved.any():
                continue
            j = int(out_img[i, 0][moved][0])  # each image is its own index: the source of the box
            both = (side_mask(zones[i : i + 1], 64, 64) * side_mask(zones[j : j + 1], 64, 64))[0, 0].bool()
            assert both[moved].all(), (texts[i], texts[j])
            pasted += 1
    assert pasted > 10  # same-side and bilateral pairs do mix


def test_the_step_has_no_recipe_branch():
    """Recipe variants (side gate, PosAug order, unlabelled loss, ITC view, threshold) are chosen once in
    `__init__`; the step reads none of those fields."""
    import inspect

    from medref_cli.config import RECIPES
    from medref_cli.semi.methods import TeacherStudent

    step = inspect.getsource(TeacherStudent.step)
    fields = {k for r in RECIPES.values() for k in r["method"]} | {"pseudo_thresh", "pseudo_thresh_no_mix",
                                                                    "itc_unlabeled_view", "pos_aug_first"}
    parts = {"unsup_weight", "feature_dropout", "mix_prob", "cutmix", "cutmix_sides", "eval_model"}  # used as values
    assert not [f for f in fields - parts if f"c.{f}" in step]


def test_dual_strong_views_each_get_their_own_mix_and_loss():
    from monai.transforms import Compose

    from medref_cli.training.data import collate, strong_transforms

    # the data side: two copies of the weak image with independent photometric draws, same geometry
    t = Compose(strong_transforms(64, "window", views=2))
    t.set_random_state(3)
    img = torch.rand(1, 64, 64) ** 2
    items = [t({"id": str(i), "image": img, "text": LEFT, "zones": [1, 0, 0, 0, 0, 0]}) for i in range(6)]
    batch = collate(items)
    assert batch["image_s"].shape == batch["image_s2"].shape == (6, 1, 64, 64)
    assert not torch.equal(batch["image_s"], batch["image_s2"])
    # the method side: the student sees labelled + 2 x unlabelled images, one PosAug'd report list per view
    method, model = _method("medref", strong_views=2)
    batch_l, batch_u = _batches()
    batch_u["image_s2"] = batch_u["image_s"].flip(-1)
    seen_before = len(method.ctx.text.seen)
    loss, logs = method.step(model, batch_l, batch_u, epoch=3)
    loss.backward()
    # teacher pass (4 reports), then the student's one pass over 4 labelled + 2 x 4 unlabelled reports
    assert len(method.ctx.text.seen) - seen_before == 4 + 12
    assert math.isfinite(loss.item()) and 0 <= logs["pseudo_fg"] <= 1
    assert all(p.grad is not None for p in model.img_proj.parameters())


def test_strong_views_out_of_range_is_refused():
    with pytest.raises(MedrefError, match="strong_views"):
        method_config({"strong_views": 3})


def test_weak_view_itc_is_one_pass_with_two_strong_views():
    method, model = _method("official", strong_views=2)
    batch_l, batch_u = _batches()
    batch_u["image_s2"] = batch_u["image_s"].flip(-1)
    before = len(method.ctx.text.seen)  # the fake text encoder records what each pass reads
    method.step(model, batch_l, batch_u, epoch=3)
    calls = method.ctx.text.seen[before:]
    # teacher (4), the student's pass over 4 labelled + 2 x 4 unlabelled, then one weak-view ITC pass (4)
    assert len(calls) == 4 + 12 + 4 and calls[-4:] == batch_u["text"]


def test_a_registry_entry_builds_its_method_with_defaults_under_the_options_and_fixed_fields_over_them(monkeypatch):
    """A method is one `METHODS` line: its class built lazily from "module:Class"; its `defaults` lie under every
    layer (a user may change them), its `fixed` fields over every layer."""
    from dataclasses import replace

    import medref_cli.config as c
    from medref_cli.training.method import Method, build_method

    spec = replace(c.METHODS["mean-teacher"], defaults={"unsup_weight": 0.7, "mix_prob": 0.2},
                   fixed={**c.METHODS["mean-teacher"].fixed, "pseudo_thresh": 0.6})
    monkeypatch.setitem(c.METHODS, "toy", spec)
    cfg = c.method_config({"name": "toy", "unsup_weight": 0.9, "pseudo_thresh": 0.5})
    assert (cfg.unsup_weight, cfg.mix_prob, cfg.pseudo_thresh) == (0.9, 0.2, 0.6)

    class Ctx:  # what build_method reads of a RunContext
        info = type("Info", (), {"method": "toy"})()
        config = type("Config", (), {"method": cfg})()

    built = []
    monkeypatch.setitem(c.METHODS, "toy", replace(spec, builder="medref_cli.training.method:Method"))
    monkeypatch.setattr(Method, "__init__", lambda self, ctx, method_cfg=None: built.append(method_cfg))
    assert isinstance(build_method(Ctx()), Method) and built == [cfg]


def test_every_method_names_a_class_and_its_checkpoint_weights():
    import importlib

    from medref_cli.training.method import Method

    for name, spec in METHODS.items():
        module, cls = spec.builder.split(":")
        assert issubclass(getattr(importlib.import_module(module), cls), Method), name
        assert spec.weights["evaluated"] == "model"
        assert ("teacher" in spec.weights) is (spec.stage == "semi-train")


def test_config_yaml_is_the_versioned_run_spec_and_a_newer_version_is_refused(tmp_path):
    import yaml

    from medref_cli.artifacts import load_run
    from medref_cli.config import CONFIG_VERSION, RunData, RunInputs, load_run_config

    cfg = resolve_config(_req(stage="semi-train", method="cutmix"), {})
    spec = replace(cfg, inputs=RunInputs(pseudo_labels="/p", pseudo_labels_sha256="ab"),
                   data=RunData("qata", "h" * 64, "5%", "qata-5pct-s7.json"))
    run = tmp_path / "new"
    run.mkdir()
    (run / "config.yaml").write_bytes(spec.to_yaml())
    saved = yaml.safe_load(spec.to_yaml())
    assert saved["schema_version"] == CONFIG_VERSION == 3
    assert load_run_config(run) == spec  # data and inputs round-trip too
    for bad, message in (({**saved, "schema_version": 4}, r"schema version 4 is not supported \(expected 3\); a newer"),
                         ({**saved, "inputs": {"teacher_from": "x"}}, "inputs: unknown field"),
                         ({**saved, "data": {"labels": "x"}}, "data: unknown field"),
                         ({**saved, "config": "x"}, "malformed")):
        (run / "config.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(MedrefError, match=message):
            load_run_config(run)
    # versions 1 and 2 held no identity: it came from a version-1 run.json beside them, which reads as a status
    for version in (None, 2):
        old = _old_run(tmp_path / f"v{version}", saved["config"], method="cutmix", version=version)
        was = load_run_config(old)
        assert was == replace(cfg, data=RunData("qata", "h" * 64, "5%", "qata-5pct-s7.json"),
                              inputs=RunInputs(init_run="pre"))
        assert was.stage == "semi-train" and load_run(old).epochs_done == 3
        (old / "run.json").write_text('{"schema_version": 2, "status": "finished"}')  # the identity is gone
        with pytest.raises(MedrefError, match="needs the version-1 run.json beside it"):
            load_run_config(old)


def test_an_old_pretrain_config_yaml_gets_the_supervised_method_it_ran(tmp_path):
    from medref_cli.config import load_run_config

    base = resolve_config(_req(stage="pretrain", method="supervised"), {}).to_dict()
    run = _old_run(tmp_path / "p", {"model": base["model"], "train": base["train"]}, "supervised", "pretrain")
    cfg = load_run_config(run)
    assert cfg.stage == "pretrain" and cfg.method.name == "supervised" and cfg.method.sup_loss == "dice_ce"


def test_the_official_recipe_changes_no_method_field():
    """MethodConfig's defaults are the official values (its recipe says so); the official recipe is empty."""
    from medref_cli.config import MethodConfig

    assert RECIPES["official"]["method"] == {} and MethodConfig().recipe == "official"
    from medref_cli.config import PRESETS

    cfg = resolve_config(_req(stage="semi-train", method="semi-medref", overrides={"method": {"recipe": "official"}}),
                         {})
    assert cfg.method == replace(MethodConfig(), name="semi-medref", **PRESETS[cfg.preset].get("method", {}))


def test_config_sections_are_frozen_with_tuples():
    from dataclasses import FrozenInstanceError

    cfg = resolve_config(_req(stage="semi-train", method="semi-medref"), {})
    for section in (cfg.model, cfg.train, cfg.method):
        with pytest.raises(FrozenInstanceError):
            section.seed = 1
    assert cfg.model.encoder_widths == (32, 64, 128, 256) and isinstance(cfg.train.zoom, tuple)
    assert cfg.to_dict()["model"]["encoder_widths"] == [32, 64, 128, 256]  # YAML-plain lists in config.yaml


def test_init_is_a_layer_of_the_one_resolve_function_and_recorded_in_the_spec():
    """`--init RUN`'s preset and model win over the defaults, skip the burn-in, and are recorded as inputs; an
    option or a config file that asks for another model is refused, not silently overridden."""
    from medref_cli.config import InitRun

    pre = resolve_config(_req(stage="pretrain", method="supervised", preset="tiny"), {})
    init = InitRun("pre", "ab" * 32, "tiny", {**dict(pre.to_dict()["model"]), "encoder_pretrained": "x"})
    req = TrainRequest(stage="semi-train", method="cutmix", labeled="5%")  # no --preset: the run's
    cfg = resolve_config(req, {"train": {"epochs": 3}}, init, ("/p", "cd" * 32))
    assert cfg.preset == "tiny" and cfg.model == replace(pre.model, encoder_pretrained=None)
    assert cfg.method.burn_in_epochs == 0 and cfg.train.epochs == 3
    assert (cfg.inputs.init_run, cfg.inputs.init_sha256) == ("pre", "ab" * 32)
    assert (cfg.inputs.pseudo_labels, cfg.inputs.pseudo_labels_sha256) == ("/p", "cd" * 32)
    for request, file_cfg, message in (
            (replace(req, preset="cpu"), {}, "--preset cpu: --init pre was trained with preset tiny"),
            (req, {"model": {"encoder": "unet"}}, "model.encoder 'unet': --init pre has"),
            (replace(req, overrides={"model": {"text_encoder": "none"}}), {}, "model.text_encoder 'none'")):
        with pytest.raises(MedrefError, match=message):
            resolve_config(request, file_cfg, init)
