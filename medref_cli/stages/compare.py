"""`medref compare A B`: is A better than B on the same test images? Paired statistics (SPEC 4, the challengeR /
Metrics Reloaded convention).

A side is one run or a group of runs that differ only by seed (the seeds of one table1 cell). On the images both
sides were evaluated on (`eval-<split>/per_case.csv`; any other id set is refused):

- the difference A - B of global Dice (pixels pooled over the split) and of per-image Dice, averaged over the
  seeds, each with a 95 % **case** interval: a paired percentile bootstrap over images (`scipy.stats.bootstrap`,
  the same images drawn for both sides and every seed);
- with several seeds per side (paired by seed number), also a **seeds-and-cases** interval: a two-stage
  bootstrap that draws the seeds, then the images (Davison & Hinkley 1997, 3.8; scipy has no two-stage
  bootstrap), since at low label ratios the seed-to-seed spread is larger than the case-level interval;
- with several seeds, beside it a **seed-level t** interval and p: a paired t-test of the per-seed differences
  (`scipy.stats.ttest_rel`, k - 1 degrees of freedom). With 3 seeds the bootstrap's seed stage draws from three
  values, which understates the spread between training runs; the t interval is the conservative check;
- a Wilcoxon signed-rank p on per-image Dice (each image's Dice averaged over the seeds), `scipy.stats.wilcoxon`;
- per-image Dice A - B by true lesion size (`by_lesion_size`: the images without a lesion, then the terciles of
  lesion area) and by the side the report names (`by_report_side`: left only, right only, both, none; from the
  `zones` column of per_case.csv), with the same intervals and no p: a description of where a difference lies,
  not a test;
- `holm` adjusts the p-values of the comparisons of one table (Holm 1979).

Writes nothing itself; the command writes the JSON of `Comparison.to_dict`.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medref_cli.artifacts import eval_dir
from medref_cli.config import load_run_config
from medref_cli.errors import MedrefError
from medref_cli.training.environment import machine_of
from medref_cli.workspace import Workspace

CONFIDENCE = 0.95
RESAMPLES = 5000
MIN_SIZED_IMAGES = 30  # images with a lesion needed for the size terciles (10 a stratum)
BLOCK_VALUES = 1 << 21  # (seed, image) pairs per block of the two-stage bootstrap: ~50 MB of counts a side
# what the runs of one side share (their config.yaml): all but the seed
SAME_DEFINITION = {"stage": lambda c: c.stage, "method": lambda c: c.method.name, "dataset": lambda c: c.data.dataset,
                   "dataset_hash": lambda c: c.data.dataset_hash, "ratio": lambda c: c.data.ratio,
                   "preset": lambda c: c.preset}


@dataclass
class Side:
    """One side of a comparison: its runs (one per seed, ordered by seed) and their per-case confusion counts
    `counts` `(k seeds, n images, 3)` int64 (tp, fp, fn), images in the order of `ids`."""

    label: str
    runs: list[Path]
    seeds: list[int]
    ids: list[str]
    counts: np.ndarray
    machines: list[str | None]  # per run, where it trained (`machine_of`; None: not recorded)
    zones: list[str] | None = None  # per image, the report's 6-bit zone vector (None: per_case.csv without it)


@dataclass
class Comparison:
    a: Side
    b: Side
    split: str
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # caveats the figures do not show (`machine_note`)

    def to_dict(self) -> dict[str, Any]:
        side = lambda s: {"label": s.label, "runs": [str(r) for r in s.runs], "seeds": s.seeds,  # noqa: E731
                          "machines": s.machines}
        return {"a": side(self.a), "b": side(self.b), "split": self.split, "n_images": len(self.a.ids),
                "confidence": CONFIDENCE, **self.stats, "notes": self.notes}


ONE_SEED = ("one run a side: the intervals and p cover the test images, not the spread between training runs "
            "(seeds), which at low label ratios is larger; compare the seeds of two table1 cells for a claim")


def machine_note(a: Side, b: Side) -> str | None:
    """A line when the runs of A and B trained on different machines or thread counts (all records known): on
    CPU such runs drift apart from the first step by float noise, so the difference mixes the methods and the
    machines, and only an interval over several seeds speaks for the methods."""
    machines = {side.label: set(side.machines) for side in (a, b)}
    if None in machines[a.label] | machines[b.label] or machines[a.label] == machines[b.label]:
        return None
    listed = "; ".join(f"{label}: {', '.join(sorted(m))}" for label, m in machines.items())
    return (f"A and B trained on different machines or thread counts ({listed}): float sums differ from the first "
            "step there, so part of the difference is machine noise; trust the interval over several seeds")


def resolve_runs(spec: str, ws: Workspace) -> list[Path]:
    """A side's run folders: a folder, a run name under `<workdir>/runs/`, or a glob of either
    (`t1-cutmix-qata-2pct-s*`, `results/qata-ssl/runs/t1-cutmix-qata-2pct-s*`)."""
    import glob

    for candidate in (spec, str(ws.runs / spec)):
        found = sorted(Path(p) for p in glob.glob(candidate) if Path(p).is_dir())
        if found:
            return found
    raise MedrefError(f"{spec}: no run folder of that name or pattern (nor under {ws.runs})")


def read_per_case(run: Path, split: str, side_gate: bool = False) \
        -> tuple[dict[str, tuple[int, int, int]], dict[str, str] | None]:
    """`<run>/eval-<split>/per_case.csv` (`eval-<split>-side-gate/` with `side_gate`) -> ({image id: (tp, fp, fn)},
    {image id: zone vector} or None when the table has no valid `zones` column)."""
    path = eval_dir(run, split, side_gate) / "per_case.csv"
    if not path.is_file():
        gate = " --side-gate" if side_gate else ""
        raise MedrefError(f"{path}: not found; run `medref evaluate {run.name} --split {split}{gate}` first")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        counts = {r["id"]: (int(r["tp"]), int(r["fp"]), int(r["fn"])) for r in rows}
    except (KeyError, TypeError, ValueError):
        raise MedrefError(f"{path}: not a per_case.csv of `medref evaluate` (columns id, tp, fp, fn)") from None
    zones = {r["id"]: r.get("zones") or "" for r in rows}
    return counts, zones if all(re.fullmatch(r"[01]{6}", z) for z in zones.values()) else None


def _label(runs: list[Path], seeds: list[int]) -> str:
    if len(runs) == 1:
        return runs[0].name
    return re.sub(r"-s\d+$", "", runs[0].name) + "-s" + "+".join(map(str, seeds))


def load_side(spec: str, ws: Workspace, split: str = "test", side_gate: bool = False) -> Side:
    """The runs of `spec` (`resolve_runs`) as one side (`side_of`)."""
    return side_of(resolve_runs(spec, ws), split, spec, side_gate)


def side_of(runs: list[Path], split: str = "test", source: str = "", side_gate: bool = False) -> Side:
    """Run folders as one side, checked to differ only by seed, with their per-case counts (of their side-gated
    evaluations with `side_gate`; the side's label then ends in `+side-gate`)."""
    configs = [load_run_config(r) for r in runs]
    source = source or str(runs[0])
    for field_name, value_of in SAME_DEFINITION.items():
        values = {value_of(c) for c in configs}
        if len(values) > 1:
            raise MedrefError(f"{source}: its runs differ in {field_name} ({', '.join(map(str, sorted(values)))}); "
                              f"a side groups the seeds of one configuration")
    order = sorted(range(len(runs)), key=lambda k: configs[k].seed)
    runs, run_seeds = [runs[k] for k in order], [configs[k].seed for k in order]
    if len(set(run_seeds)) < len(run_seeds):
        raise MedrefError(f"{source}: two runs with the same seed; a side holds one run per seed")
    read = [read_per_case(r, split, side_gate) for r in runs]
    cases = [c for c, _ in read]
    ids = sorted(cases[0])
    for r, c in zip(runs, cases, strict=True):
        if set(c) != set(ids):
            raise MedrefError(f"{r}: evaluated on other {split} images than {runs[0].name}; compare runs of one test set")
    counts = np.array([[c[i] for i in ids] for c in cases], dtype=np.int64)
    zones = read[0][1]
    label = _label(runs, run_seeds) + ("+side-gate" if side_gate else "")
    return Side(label, runs, run_seeds, ids, counts, [machine_of(r) for r in runs],
                None if zones is None else [zones[i] for i in ids])


def per_image_dice(counts: np.ndarray) -> np.ndarray:
    """`(..., 3)` counts -> `(...)` Dice, 1 where truth and prediction are both empty (the per-image protocol)."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def _global_dice(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, axis: int = -1) -> np.ndarray:
    """The Dice of the counts pooled along `axis` (the global protocol)."""
    return per_image_dice(np.stack([tp.sum(axis), fp.sum(axis), fn.sum(axis)], axis=-1))


def _mean_per_image_dice(counts: np.ndarray) -> np.ndarray:
    """`(..., k, n, 3)` counts -> `(..., k)` per-image Dice averaged over the images (the per-image protocol)."""
    return per_image_dice(counts).mean(-1)


def _image_diff(da: np.ndarray, db: np.ndarray, axis: int = -1) -> np.ndarray:
    """Paired per-image Dice `(k, ..., n)` -> the mean difference over images, then seeds (scipy's vectorized form)."""
    return (da - db).mean(axis).mean(0)


def _ci(data: tuple[np.ndarray, ...], statistic: Any, resamples: int, seed: int) -> list[float]:
    from scipy import stats

    res = stats.bootstrap(data, statistic, paired=True, vectorized=True, axis=-1, n_resamples=resamples,
                          confidence_level=CONFIDENCE, method="percentile", random_state=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def _two_stage_ci(a: np.ndarray, b: np.ndarray, metric: Any, resamples: int, seed: int) -> list[float]:
    """Seeds (paired by number), then images, drawn with replacement: the percentile interval of the mean
    difference `metric(a) - metric(b)`; `a`, `b` `(k, n, 3)`, `metric` `(..., k', n', 3) -> (..., k')`. The draws
    come one resample after another (seeds, then images); the metric runs on blocks of resamples at once."""
    rng = np.random.default_rng(seed)
    k, n = a.shape[:2]
    draws = [(rng.integers(0, k, k), rng.integers(0, n, n)) for _ in range(resamples)]
    block = max(1, BLOCK_VALUES // (k * n))
    diffs = np.empty(resamples)
    for start in range(0, resamples, block):
        part = draws[start:start + block]
        s, c = np.stack([d[0] for d in part])[:, :, None], np.stack([d[1] for d in part])[:, None, :]
        diffs[start:start + len(part)] = (metric(a[s, c]) - metric(b[s, c])).mean(-1)
    lo, hi = np.quantile(diffs, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return [float(lo), float(hi)]


def wilcoxon_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired samples; 1 when every difference is 0."""
    from scipy import stats

    if np.all(x == y):
        return 1.0
    return float(stats.wilcoxon(x, y).pvalue)


def seed_t(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Paired t-test of per-seed values `a`, `b` `(k,)`, k >= 2: {"ci": the 95 % interval of the mean difference,
    "p": two-sided p}. Differences that do not vary give the interval [d, d] and p 1 (d = 0) or 0."""
    from scipy import stats

    d = a - b
    if np.all(d == d[0]):
        return {"ci": [float(d[0]), float(d[0])], "p": 1.0 if d[0] == 0 else 0.0}
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(CONFIDENCE)
    return {"ci": [float(ci.low), float(ci.high)], "p": float(res.pvalue)}


def paired_stats(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """a, b `(k seeds, n images, 3)` counts of the same images (seed i of a paired with seed i of b) -> the
    differences, their intervals and the Wilcoxon p (module docstring)."""
    if a.shape != b.shape:
        raise MedrefError(f"paired statistics need the same seeds and images on both sides ({a.shape[:2]} vs "
                          f"{b.shape[:2]})")
    k = a.shape[0]
    glob = lambda c: _global_dice(c[..., 0], c[..., 1], c[..., 2])  # noqa: E731 - (k, n, 3) -> (k,)
    pimg = _mean_per_image_dice
    ga, gb, pa, pb = glob(a), glob(b), pimg(a), pimg(b)

    def global_diff(tpa, fpa, fna, tpb, fpb, fnb, axis=-1):  # noqa: ANN001, ANN202 - scipy's vectorized form
        return (_global_dice(tpa, fpa, fna, axis) - _global_dice(tpb, fpb, fnb, axis)).mean(0)

    da, db = per_image_dice(a), per_image_dice(b)
    same = np.array_equal(a, b)  # identical sides: every resample differs by exactly 0
    zero = [0.0, 0.0]
    out = {
        "global_dice": {"a": float(ga.mean()), "b": float(gb.mean()), "diff": float((ga - gb).mean()),
                        "ci_cases": zero if same else _ci(tuple(np.moveaxis(a, -1, 0)) + tuple(np.moveaxis(b, -1, 0)),
                                                          global_diff, resamples, seed)},
        "per_image_dice": {"a": float(pa.mean()), "b": float(pb.mean()), "diff": float((pa - pb).mean()),
                           "ci_cases": zero if same else _ci((da, db), _image_diff, resamples, seed),
                           "wilcoxon_p": wilcoxon_p(da.mean(0), db.mean(0))},
        "per_seed": [{"global_dice_diff": float(ga[i] - gb[i]), "per_image_dice_diff": float(pa[i] - pb[i])}
                     for i in range(k)],
        "resamples": resamples,
        "bootstrap_seed": seed,
    }
    for key, metric, va, vb in (("global_dice", glob, ga, gb), ("per_image_dice", pimg, pa, pb)):
        out[key]["ci_seeds_and_cases"] = None if k == 1 else zero if same else _two_stage_ci(a, b, metric, resamples,
                                                                                            seed + 1)
        out[key]["seeds_t"] = None if k == 1 else seed_t(va, vb)
    return out


def by_lesion_size(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> list[dict[str, Any]]:
    """Per-image Dice A - B within strata of the true lesion area (tp + fn of A's first run, in the pixels it was
    scored at): the images without a lesion, then the small / medium / large terciles of the others (with at
    least `MIN_SIZED_IMAGES` of them; a tercile that ties leave empty is left out). Each stratum: its area range,
    image count, means, difference and the intervals of `paired_stats`; no p (a description of where a difference
    lies, not a family of tests)."""
    area = a[0, :, 0] + a[0, :, 2]
    strata = [("no lesion", area == 0)] if (area == 0).any() else []
    sized = area[area > 0]
    if len(sized) >= MIN_SIZED_IMAGES:
        low, high = np.quantile(sized, [1 / 3, 2 / 3])
        strata += [("small", (area > 0) & (area <= low)), ("medium", (area > low) & (area <= high)),
                   ("large", area > high)]
    return [{"stratum": name, "lesion_pixels": [int(area[keep].min()), int(area[keep].max())],
             **_stratum(a, b, keep, resamples, seed)}
            for name, keep in strata if keep.any()]  # tied areas can leave a tercile empty


REPORT_SIDES = ("left", "right", "bilateral", "none")  # zone_masks.laterality's groups


def by_report_side(a: np.ndarray, b: np.ndarray, zones: list[str], resamples: int = RESAMPLES,
                   seed: int = 0) -> list[dict[str, Any]]:
    """Per-image Dice A - B within the groups of images whose report names the left lung only, the right only,
    both, or no side (`zones`: each image's 6-bit zone vector, as per_case.csv writes it); the intervals of
    `paired_stats`, no p. Where a part that reads the report's position (PosAug, ITCL, the side gate) acts."""
    from medref_cli.zone_masks import laterality

    side = np.array([laterality([int(c) for c in z]) for z in zones])
    return [{"stratum": name, **_stratum(a, b, side == name, resamples, seed)}
            for name in REPORT_SIDES if (side == name).any()]


def _stratum(a: np.ndarray, b: np.ndarray, keep: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """The images `keep` of a, b `(k, n, 3)`: their count, mean per-image Dice of each side, the difference and
    its intervals (over images; over seeds and images with several seeds)."""
    sa, sb = a[:, keep], b[:, keep]
    da, db = per_image_dice(sa), per_image_dice(sb)
    same, zero = np.array_equal(sa, sb), [0.0, 0.0]
    return {"n_images": int(keep.sum()), "a": float(da.mean()), "b": float(db.mean()), "diff": float((da - db).mean()),
            "ci_cases": zero if same else _ci((da, db), _image_diff, resamples, seed),
            "ci_seeds_and_cases": None if len(a) == 1 else zero if same else _two_stage_ci(
                sa, sb, _mean_per_image_dice, resamples, seed + 1)}


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of the p-values of one family of comparisons (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


SIDE_GATE = ("none", "a", "b", "both")  # whose side-gated evaluation `compare` reads


def compare(spec_a: str, spec_b: str, ws: Workspace, split: str = "test", resamples: int = RESAMPLES,
            seed: int = 0, side_gate: str = "none") -> Comparison:
    """A vs B (module docstring). With several seeds on either side, both must hold the same seeds. `side_gate`:
    which sides are read from their side-gated evaluation (`evaluate --side-gate`): none | a | b | both (e.g.
    a text-blind method with the gate at inference against one trained with the report)."""
    if resamples < 100:
        raise MedrefError(f"--resamples {resamples}: use at least 100 (a 95 % interval from fewer is noise)")
    if side_gate not in SIDE_GATE:
        raise MedrefError(f"--side-gate {side_gate!r}: choose {', '.join(SIDE_GATE)}")
    a = load_side(spec_a, ws, split, side_gate in ("a", "both"))
    b = load_side(spec_b, ws, split, side_gate in ("b", "both"))
    if (len(a.seeds) > 1 or len(b.seeds) > 1) and a.seeds != b.seeds:
        raise MedrefError(f"{spec_a} has seeds {a.seeds}, {spec_b} has {b.seeds}: seeds are paired by number, "
                          f"so both sides need the same ones")
    if a.ids != b.ids:
        only = sorted(set(a.ids) ^ set(b.ids))
        raise MedrefError(f"{a.runs[0]} and {b.runs[0]} were evaluated on different {split} images "
                          f"({len(only)} differ, e.g. {only[0]!r}); compare runs of one test set")
    notes = [n for n in (machine_note(a, b), ONE_SEED if len(a.seeds) == 1 else None) if n]
    stats = paired_stats(a.counts, b.counts, resamples, seed)
    stats["per_image_dice_by_lesion_size"] = by_lesion_size(a.counts, b.counts, resamples, seed)
    stats["per_image_dice_by_report_side"] = (None if a.zones is None else
                                              by_report_side(a.counts, b.counts, a.zones, resamples, seed))
    return Comparison(a, b, split, stats, notes)


def is_better(stats: dict[str, Any], p_adjusted: float, alpha: float = 1 - CONFIDENCE) -> bool:
    """A beats B: the global-Dice interval (seeds and cases where there are several seeds) lies above 0, so does
    the t interval over the per-seed differences (several seeds), and the (adjusted) Wilcoxon p is below
    `alpha`."""
    g = stats["global_dice"]
    lo = (g["ci_seeds_and_cases"] or g["ci_cases"])[0]
    seeds_agree = g.get("seeds_t") is None or g["seeds_t"]["ci"][0] > 0
    return lo > 0 and seeds_agree and p_adjusted < alpha and not math.isnan(p_adjusted)
