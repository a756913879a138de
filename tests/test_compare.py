"""`medref compare`: paired differences, bootstrap intervals, Wilcoxon p, Holm; refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import counts_for, fake_run
from medref_cli.errors import MedrefError
from medref_cli.stages.compare import (
    ONE_SEED,
    by_lesion_size,
    by_report_side,
    compare,
    holm,
    is_better,
    paired_stats,
    read_per_case,
)
from medref_cli.workspace import Workspace


def test_a_known_shift_of_per_image_dice_lies_inside_its_interval():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.8, (3, 500))
    noise = rng.uniform(-0.1, 0.1, base.shape)
    shifted = base + 0.05 + noise - noise.mean()  # the sample shift is 0.05 exactly; values stay in (0, 1)
    s = paired_stats(counts_for(shifted), counts_for(base), resamples=2000)
    img = s["per_image_dice"]
    assert img["ci_cases"][0] < 0.05 < img["ci_cases"][1]
    assert img["ci_seeds_and_cases"][0] < 0.05 < img["ci_seeds_and_cases"][1]
    assert img["ci_cases"][0] > 0.03 and img["wilcoxon_p"] < 1e-10  # a real, clearly resolved shift
    assert s["global_dice"]["diff"] > 0 and s["global_dice"]["ci_cases"][0] > 0
    assert is_better(s, img["wilcoxon_p"])
    # the other way round: the interval flips sign, and A is not better
    r = paired_stats(counts_for(base), counts_for(shifted), resamples=2000)
    assert r["per_image_dice"]["ci_cases"][1] < 0 and not is_better(r, r["per_image_dice"]["wilcoxon_p"])


def test_no_shift_gives_an_interval_around_0_and_a_large_p():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.3, 0.8, (1, 400))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    s = paired_stats(counts_for(a), counts_for(b), resamples=2000)
    assert s["per_image_dice"]["ci_cases"][0] < 0 < s["per_image_dice"]["ci_cases"][1]
    assert s["per_image_dice"]["wilcoxon_p"] > 0.05 and s["global_dice"]["ci_seeds_and_cases"] is None


def test_the_seed_interval_is_wider_than_the_case_interval_when_seeds_disagree():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.8, (3, 400))
    a = np.clip(base + np.array([[-0.04], [0.02], [0.10]]) + rng.normal(0, 0.02, base.shape), 0, 1)
    g = paired_stats(counts_for(a), counts_for(base), resamples=2000)["per_image_dice"]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(g["ci_seeds_and_cases"]) > 3 * width(g["ci_cases"])


def test_the_seed_t_interval_is_the_t_interval_of_the_seed_differences_and_wider_than_the_bootstrap():
    """With 3 seeds the two-stage bootstrap draws its seed stage from three values; the t interval (2 df) over
    the three per-seed differences is the conservative check, and agrees with a hand computation."""
    from scipy import stats

    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.8, (3, 400))
    a = np.clip(base + np.array([[-0.01], [0.02], [0.05]]) + rng.normal(0, 0.02, base.shape), 0, 1)
    s = paired_stats(counts_for(a), counts_for(base), resamples=2000)
    img = s["per_image_dice"]
    d = np.array([p["per_image_dice_diff"] for p in s["per_seed"]])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert img["seeds_t"]["ci"] == pytest.approx([d.mean() - half, d.mean() + half], rel=1e-9)
    t = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    assert img["seeds_t"]["p"] == pytest.approx(2 * stats.t.sf(abs(t), 2), rel=1e-9)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(img["seeds_t"]["ci"]) > width(img["ci_seeds_and_cases"])
    assert img["seeds_t"]["ci"][0] < 0.02 < img["seeds_t"]["ci"][1] and img["seeds_t"]["p"] > 0.05  # 3 seeds: wide
    assert paired_stats(counts_for(a[:1]), counts_for(base[:1]), resamples=200)["global_dice"]["seeds_t"] is None


def test_a_gain_the_seeds_disagree_on_is_not_called_better():
    """Seeds that gain +0.10 / +0.01 / +0.04: the two-stage bootstrap (its seed stage draws from three values)
    stays above 0, the t interval over the three seed differences does not, so A is not called better."""
    rng = np.random.default_rng(5)
    base = rng.uniform(0.3, 0.8, (3, 600))
    a = np.clip(base + np.array([[0.10], [0.01], [0.04]]) + rng.normal(0, 0.01, base.shape), 0, 1)
    s = paired_stats(counts_for(a), counts_for(base), resamples=2000)
    g = s["global_dice"]
    assert g["ci_seeds_and_cases"][0] > 0 and g["seeds_t"]["ci"][0] < 0 < g["seeds_t"]["ci"][1]
    assert s["per_image_dice"]["wilcoxon_p"] < 1e-10 and not is_better(s, s["per_image_dice"]["wilcoxon_p"])


def test_the_blocked_two_stage_bootstrap_equals_one_resample_at_a_time(monkeypatch):
    """The seeds-and-images interval is computed on blocks of resamples; it equals the plain loop over the same
    draws (seeds, then images, one resample after another), also when a block is smaller than the resamples."""
    from medref_cli.stages import compare as cmp

    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 400, (3, 57, 3)).astype(float), rng.integers(0, 400, (3, 57, 3)).astype(float)
    a[:, :4] = 0  # empty truth and prediction: Dice 1 under the per-image protocol
    metrics = {"global": lambda c: cmp._global_dice(c[..., 0], c[..., 1], c[..., 2]),
               "per image": lambda c: cmp.per_image_dice(c).mean(-1)}
    for name, metric in metrics.items():
        draws = np.random.default_rng(7)
        diffs = []
        for _ in range(300):
            s, c = draws.integers(0, 3, 3), draws.integers(0, 57, 57)
            diffs.append((metric(a[s][:, c]) - metric(b[s][:, c])).mean())
        want = np.quantile(diffs, [0.025, 0.975])
        for block_values in (cmp.BLOCK_VALUES, 3 * 57 * 7):  # one block; blocks of 7 resamples
            monkeypatch.setattr(cmp, "BLOCK_VALUES", block_values)
            got = cmp._two_stage_ci(a, b, metric, 300, 7)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=name)


def test_a_gain_on_small_lesions_only_shows_in_the_small_stratum():
    rng = np.random.default_rng(3)
    truth = np.concatenate([np.zeros(20, np.int64), rng.integers(100, 20_000, 600)])  # 20 images without a lesion
    base = rng.uniform(0.3, 0.8, (3, truth.size))
    small = (truth > 0) & (truth <= np.quantile(truth[truth > 0], 1 / 3))
    a = np.clip(base + np.where(small, 0.1, 0.0) + rng.normal(0, 0.02, base.shape), 0, 1)
    strata = {s["stratum"]: s for s in by_lesion_size(counts_for(a, truth), counts_for(base, truth), resamples=1000)}
    assert list(strata) == ["no lesion", "small", "medium", "large"]
    assert strata["no lesion"]["n_images"] == 20 and strata["no lesion"]["lesion_pixels"] == [0, 0]
    assert sum(s["n_images"] for s in strata.values()) == truth.size
    assert strata["small"]["lesion_pixels"][1] < strata["medium"]["lesion_pixels"][0]
    for name in ("small", "medium", "large"):
        lo, hi = strata[name]["ci_seeds_and_cases"]
        assert (lo > 0.08) if name == "small" else (lo < 0 < hi), (name, lo, hi)
    # the same side twice: every stratum 0, [0, 0]
    same = by_lesion_size(counts_for(a, truth), counts_for(a, truth), resamples=200)
    assert all(s["diff"] == 0 and s["ci_cases"] == [0, 0] == s["ci_seeds_and_cases"] for s in same)


def test_too_few_lesions_for_size_terciles_give_no_size_strata():
    d = np.linspace(0.2, 0.9, 20)[None]
    assert by_lesion_size(counts_for(d), counts_for(d[:, ::-1]), resamples=200) == []


def test_a_gain_on_one_sided_reports_only_shows_in_their_stratum():
    """`by_report_side` groups the images by the side their report names (its zone vector: left zones first)."""
    rng = np.random.default_rng(4)
    zones = ["100000", "011000", "000001", "100100", "000000"] * 100  # left, left, right, bilateral, none
    base = rng.uniform(0.3, 0.8, (3, len(zones)))
    left = np.array([z[:3] != "000" and z[3:] == "000" for z in zones])
    a = np.clip(base + np.where(left, 0.1, 0.0) + rng.normal(0, 0.02, base.shape), 0, 1)
    strata = {s["stratum"]: s for s in by_report_side(counts_for(a), counts_for(base), zones, resamples=1000)}
    assert {k: s["n_images"] for k, s in strata.items()} == {"left": 200, "right": 100, "bilateral": 100, "none": 100}
    for name, s in strata.items():
        lo, hi = s["ci_seeds_and_cases"]
        assert (lo > 0.08) if name == "left" else (lo < 0 < hi), (name, lo, hi)


def test_a_per_case_table_without_zone_vectors_gives_no_report_strata(tmp_path):
    run = fake_run(tmp_path, "r", 0, np.linspace(0.2, 0.9, 10))
    assert read_per_case(run, "test")[1] == {f"img{k:04d}": "100000" for k in range(10)}
    path = run / "eval-test" / "per_case.csv"
    rows = path.read_text().splitlines()
    path.write_text("\n".join([rows[0].replace("zones", "zone")] + rows[1:]) + "\n")  # an older or edited table
    counts, zones = read_per_case(run, "test")
    assert zones is None and len(counts) == 10
    ws = Workspace.resolve(tmp_path)
    assert compare("r", "r", ws, resamples=100).stats["per_image_dice_by_report_side"] is None


def test_holm_matches_hand_computed_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([0.6, 0.6]) == [1.0, 1.0]


def test_a_run_against_itself_gives_0_an_interval_of_0_and_p_1(tmp_path, cli):
    d = np.linspace(0.2, 0.9, 50)
    for s in range(3):
        fake_run(tmp_path, f"t1-cutmix-qata-2pct-s{s}", s, d)
    out = tmp_path / "cmp.json"
    res = cli("compare", "t1-cutmix-qata-2pct-s*", "t1-cutmix-qata-2pct-s*", "--out", out, "--workdir", tmp_path,
              "--resamples", "200")
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    for key in ("global_dice", "per_image_dice"):
        assert data[key]["diff"] == 0 and data[key]["ci_cases"] == [0, 0] and data[key]["ci_seeds_and_cases"] == [0, 0]
        assert data[key]["seeds_t"] == {"ci": [0, 0], "p": 1.0}
    sides = data["per_image_dice_by_report_side"]  # fake_run's reports name the left lung
    assert [(s["stratum"], s["n_images"], s["diff"], s["ci_cases"]) for s in sides] == [("left", 50, 0, [0, 0])]
    assert "by the side the report names" in res.output
    assert data["per_image_dice"]["wilcoxon_p"] == 1.0
    assert data["a"]["seeds"] == [0, 1, 2] and data["n_images"] == 50
    assert "t1-cutmix-qata-2pct-s0+1+2" in res.output and data["notes"] == []  # 3 seeds, no records


def test_side_gate_reads_the_gated_evaluation_of_the_sides_it_names(tmp_path, cli):
    """`--side-gate a`: A's scores come from eval-test-side-gate/ (here 0.05 above its plain ones), B's from
    eval-test/; the label says which; a side without a gated evaluation is a one-line error naming the command."""
    import shutil

    d = np.linspace(0.2, 0.9, 50)
    for name in ("blind", "gated"):
        fake_run(tmp_path, name, 0, d + (0.05 if name == "gated" else 0))
    shutil.copytree(tmp_path / "runs" / "gated" / "eval-test", tmp_path / "runs" / "blind" / "eval-test-side-gate")
    cmp = compare("blind", "gated", Workspace(tmp_path), resamples=200, side_gate="a")
    assert cmp.stats["per_image_dice"]["diff"] == pytest.approx(0, abs=1e-6) and cmp.a.label == "blind+side-gate"
    plain = compare("blind", "gated", Workspace(tmp_path), resamples=200)
    assert plain.stats["per_image_dice"]["diff"] == pytest.approx(-0.05, abs=1e-5) and plain.a.label == "blind"
    res = cli("compare", "blind", "gated", "--side-gate", "both", "--workdir", tmp_path, "--resamples", "200")
    assert res.exit_code == 2 and "eval-test-side-gate/per_case.csv: not found" in res.output
    assert "medref evaluate gated --split test --side-gate" in res.output
    res = cli("compare", "blind", "gated", "--side-gate", "yes", "--workdir", tmp_path)
    assert res.exit_code == 2 and "--side-gate 'yes'" in res.output


def test_two_groups_of_seeds_are_paired_by_seed(tmp_path):
    rng = np.random.default_rng(3)
    for s in range(3):
        b = rng.uniform(0.3, 0.7, 60)
        fake_run(tmp_path, f"t1-cutmix-qata-2pct-s{s}", s, b)
        fake_run(tmp_path, f"t1-semi-medref-qata-2pct-s{s}", s, b + 0.01 * (s + 1), method="semi-medref")
    ws = Workspace.resolve(tmp_path)
    cmp = compare("t1-semi-medref-qata-2pct-s*", "t1-cutmix-qata-2pct-s*", ws, resamples=200)
    per_seed = [p["per_image_dice_diff"] for p in cmp.stats["per_seed"]]
    assert per_seed == pytest.approx([0.01, 0.02, 0.03], abs=1e-5)  # seed i against seed i, not a mixture


def test_runs_from_different_machines_get_a_note_and_the_json_names_each_runs_machine(tmp_path, cli):
    from medref_cli.training.environment import ENV_FILE

    def env(run, capability, threads=1):
        row = {"cpu_capability": capability, "torch_threads": threads, "versions": {"torch": "2.13.0+cpu"}}
        (run / ENV_FILE).write_text(json.dumps(row) + "\n" + json.dumps({**row, "cpu_capability": "other"}) + "\n")

    d = np.linspace(0.2, 0.9, 40)
    a, b = fake_run(tmp_path, "a", 0, d), fake_run(tmp_path, "b", 0, d + 0.01, method="semi-medref")
    ws = Workspace.resolve(tmp_path)
    assert compare("a", "b", ws, resamples=200).notes == [ONE_SEED]  # no records: nothing said of machines
    env(a, "AVX512")
    env(b, "AVX512")
    assert compare("a", "b", ws, resamples=200).notes == [ONE_SEED]  # the same machine (first line: its start)
    env(b, "AVX2", threads=2)
    out = tmp_path / "cmp.json"
    res = cli("compare", "a", "b", "--out", out, "--workdir", tmp_path, "--resamples", "200")
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["a"]["machines"] == ["cpu AVX512, 1 thread, torch 2.13.0+cpu"]
    assert data["b"]["machines"] == ["cpu AVX2, 2 threads, torch 2.13.0+cpu"]
    assert len(data["notes"]) == 2 and "different machines" in data["notes"][0] and data["notes"][1] == ONE_SEED
    assert "note: A and B trained on different machines" in res.stderr


def test_different_test_sets_are_refused(tmp_path):
    d = np.full(10, 0.5)
    fake_run(tmp_path, "a", 0, d)
    fake_run(tmp_path, "b", 0, d, ids=[f"other{k}" for k in range(10)])
    with pytest.raises(MedrefError, match="different test images"):
        compare("a", "b", Workspace.resolve(tmp_path), resamples=200)


def test_unpaired_seeds_and_mixed_groups_are_refused(tmp_path, cli):
    d = np.full(10, 0.5)
    for s in (0, 1):
        fake_run(tmp_path, f"x-s{s}", s, d)
    fake_run(tmp_path, "y-s0", 0, d)
    fake_run(tmp_path, "y-s5", 5, d)
    fake_run(tmp_path, "mixed-s0", 0, d)
    fake_run(tmp_path, "mixed-s1", 1, d, method="mean-teacher")
    res = cli("compare", "x-s*", "y-s*", "--workdir", tmp_path)
    assert res.exit_code == 2 and "paired by number" in res.output
    res = cli("compare", "mixed-s*", "x-s*", "--workdir", tmp_path)
    assert res.exit_code == 2 and "differ in method" in res.output
    res = cli("compare", "x-s0", "nope", "--workdir", tmp_path)
    assert res.exit_code == 2 and "nope: no run folder" in res.output
    (tmp_path / "runs" / "y-s5" / "eval-test" / "per_case.csv").unlink()
    res = cli("compare", "x-s0", "y-s5", "--workdir", tmp_path)
    assert res.exit_code == 2 and "medref evaluate y-s5" in res.output
    assert not (tmp_path / "comparisons").exists()
