"""`make bench`: every performance figure of medref against a baseline measured in the same run.

    python -m bench.run [--out bench/RESULTS.md] [--workdir DIR] [--quick]

Sections: loop overhead (semi-train step vs a bare PyTorch step, tiny and cpu presets), the frozen text
encoder's cache, the data loader, achieved FLOP/s vs a large fp32 matmul, `prepare` of 10k images,
`evaluate` throughput, epoch-time scaling, and the GPU step where CUDA is present. Run it alone: another
torch process on the same cores distorts every figure.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import data as bdata
from bench import step as bstep
from bench.workload import captions, machine, setup, synthetic_workspace, time_per_call


class Report:
    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str], list[list[str]], str]] = []

    def table(self, title: str, header: list[str], rows: list[list[object]], note: str = "") -> None:
        self.sections.append((title, header, [[_fmt(c) for c in r] for r in rows], note))
        print(f"\n## {title}", flush=True)
        for r in rows:
            print("  " + " | ".join(_fmt(c) for c in r), flush=True)

    def markdown(self, head: str) -> str:
        out = [head]
        for title, header, rows, note in self.sections:
            out += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(r) + " |" for r in rows]
            if note:
                out += ["", note]
        return "\n".join(out) + "\n"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def loop_overhead(rep: Report, ws, quick: bool) -> dict:  # noqa: ANN001
    rows, per = [], {}
    for preset, steps in (("tiny", 10 if quick else 30), ("cpu", 4 if quick else 10)):
        s = setup(preset)
        bare = time_per_call(bstep.bare_semi_step(s), repeats=steps // 2 + 1)
        ours = bstep.medref_step_seconds(ws, preset, steps)
        per[preset] = {"bare": bare, "ours": ours, "setup": s}
        rows.append([preset, f"{s.train.batch_size}+{s.train.batch_size_unlabeled} @ {s.model_cfg.image_size} px",
                     ours, bare, ours / bare, "<= 1.10", _met(ours / bare <= 1.10)])
    rep.table("Loop overhead: `semi-train` step vs a bare PyTorch step",
              ["preset", "batch (labelled+unlabelled)", "medref s/step", "bare s/step", "ratio", "target", "met"],
              rows,
              "medref s/step: the third epoch of a real `semi-train` run (semi-medref, burn-in 0, so teacher, "
              "T-PatchMix, PosAug and ITCL all run; two epochs warm the caches), from its `epoch_s` / steps. "
              "Bare: the same teacher forward, student forward/backward, losses, AdamW and EMA on fixed in-memory "
              "tensors, written as plain PyTorch (default AdamW, a loop of `lerp_`), median step. medref's fused "
              "AdamW and one-call EMA pay for its loader, text lookups and mixing.")
    return per


def machine_limit(rep: Report, per: dict) -> None:
    s = per["cpu"]["setup"]
    flops = bstep.step_flops(s)
    peak = bstep.matmul_flops_per_s()
    rows = []
    for label, sec in (("medref step", per["cpu"]["ours"]), ("bare step", per["cpu"]["bare"])):
        achieved = flops / sec
        rows.append([label, flops / 1e9, sec, achieved / 1e9, peak / 1e9, achieved / peak, ">= 0.35",
                     _met(achieved / peak >= 0.35)])
    rep.table("Machine limit: achieved training FLOP/s vs a 2048x2048 fp32 matmul (cpu preset)",
              ["what", "GFLOP/step", "s/step", "GFLOP/s", "matmul GFLOP/s", "ratio", "target", "met"], rows,
              "FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (teacher forward + student forward "
              "and backward; convolutions, matmuls, attention).")
    ops = bstep.profile_ops(s)
    rep.table("Profile of the bare cpu-preset step (torch.profiler, self CPU time)",
              ["operator", "share", "ms per step"], [[name, f"{share:.1%}", ms] for name, share, ms in ops],
              "What bounds the FLOP/s ratio: the share of time in operators that run far below the matmul peak "
              "(depthwise 7x7 convolutions, normalisation, element-wise ops, memory copies).")


def kept_changes(rep: Report, per: dict, ws) -> None:  # noqa: ANN001
    from monai.data import set_track_meta

    rows = []
    for preset in ("tiny", "cpu"):
        s = per[preset]["setup"]
        for change, before, after in bstep.optimisations(s):
            rows.append([preset, change, before * 1000, after * 1000, before / after, "adopted"])
        base, cl = bstep.channels_last_gain(s, 5)
        rows.append([preset, "bare step: channels-last model", base * 1000, cl * 1000, base / cl,
                     "adopted" if base / cl > 1.10 else "not adopted (< 10 %, within run-to-run spread)"])
    s = per["tiny"]["setup"]
    set_track_meta(True)
    try:
        on = bdata.loader_images_per_s(ws, s, 40)["step_s"]
    finally:
        set_track_meta(False)
    off = bdata.loader_images_per_s(ws, s, 40)["step_s"]
    rows.append(["tiny", "loader batch: MONAI MetaTensor tracking on -> off", on * 1000, off * 1000, on / off, "adopted"])
    monai_zoom = bdata.loader_with_monai_zoom(ws, s, 40)["step_s"]
    rows.append(["tiny", "loader batch: MONAI RandZoomd -> RandCentreZoomd (same output)", monai_zoom * 1000,
                 off * 1000, monai_zoom / off, "adopted"])
    rep.table("Changes measured against what they replaced", ["preset", "change", "before ms", "after ms", "speed-up",
                                                              "decision"], rows,
              "MetaTensor tracking also slowed the model itself: a MetaTensor batch sends every torch op of the "
              "forward and backward through `MetaTensor.__torch_function__`, so the whole step gains, not just the "
              "loader.")


def text_cache(rep: Report, per: dict, quick: bool) -> None:
    s = per["cpu"]["setup"]
    n = 1000 if quick else 5716
    r = bstep.text_cache(s, n, 32)
    on, off = r["on"], r["off"]
    rep.table("Frozen text encoder: one QaTa-sized epoch of captions (batches of 32)",
              ["cache", "samples", "captions encoded (one pass each)", "seconds", "s per batch of 32"],
              [["on", n, on["encoded"], on["seconds"], on["per_batch_s"]],
               ["off", n, off["encoded"], off["seconds"], off["per_batch_s"]]],
              f"{r['unique']} distinct captions. Samples / captions encoded with the cache: "
              f"**{n / max(1, on['encoded']):.0f}x** (target >= 20x: {_met(n / max(1, on['encoded']) >= 20)}); "
              f"Step-time gain: "
              f"{off['per_batch_s'] - on['per_batch_s']:.4f} s per step of 32 captions.")


def loader(rep: Report, ws, per: dict, quick: bool) -> None:  # noqa: ANN001
    rows = []
    for preset in ("tiny", "cpu"):
        s = per[preset]["setup"]
        r = bdata.loader_images_per_s(ws, s, 20 if quick else 60)
        consume = (s.train.batch_size + s.train.batch_size_unlabeled) / per[preset]["ours"]
        rows.append([preset, r["images_per_s"], consume, r["images_per_s"] / consume,
                     r["step_s"] / per[preset]["ours"], r["cache_build_s"], r["cached_images"]])
    rep.table("Data pipeline: images/s the loaders deliver vs images/s the step consumes",
              ["preset", "loader img/s", "step consumes img/s", "ratio", "loader share of a step",
               "cache build s", "images cached"], rows,
              "Loader: the labelled (weak) and unlabelled (weak + strong) `CacheDataset` loaders of `semi-train`, "
              "iterated without a model, in the main process as in training (num_workers 0).")


def scale(rep: Report, root: Path, ws, quick: bool) -> None:  # noqa: ANN001
    n = 2000 if quick else 10000
    p = bdata.prepare_10k(root, n, 224)
    rep.table(f"Scale: `medref prepare` of {n} synthetic 224-px images (own process)",
              ["images", "wall s", "images/s", "peak RSS MB", "target RSS", "met"],
              [[n, p["wall_s"], p["images_per_s"], p["peak_rss_mb"], "<= 1536 MB", _met(p["peak_rss_mb"] <= 1536)]],
              f"Writing the raw synthetic set took {p['raw_write_s']:.0f} s (not counted).")
    rows = []
    for ablation in (False, True):
        e = bdata.evaluate_images_per_s(ws, bstep.run_name("cpu"), ablation)
        rows.append(["3 (caption, shuffled, empty)" if ablation else "1 (caption)", e["images"], e["seconds"],
                     e["images_per_s"]])
    rep.table("`evaluate` throughput (cpu preset, test split, 128 px)",
              ["passes per image", "images", "seconds", "images/s"], rows,
              "Includes reading the masks at full size, metrics, per-zone tables and the overlay panel.")
    sizes = (500, 2000) if quick else (1000, 3000, 10000)
    ep = [bdata.epoch_seconds(root, k, "tiny") for k in sizes]
    base = ep[0]["epoch_s"] / ep[0]["steps"]
    rows = [[e["images"], e["steps"], e["epoch_s"], e["epoch_s"] / e["steps"], (e["epoch_s"] / e["steps"]) / base]
            for e in ep]
    rep.table("Scale: one supervised epoch (tiny preset, 64 px) as the dataset grows",
              ["dataset images", "steps", "epoch s", "s/step", "s/step vs smallest"], rows,
              "Linear growth = constant s/step (the number of steps grows with the training split).")


def _gpu_row(amp: bool, quick: bool) -> list[object]:
    s = setup("paper", model={"encoder_pretrained": None, "text_encoder": "minilm"})
    dev = torch.device("cuda")
    model = s.model.to(dev)
    s.text.to_device(dev)
    b = s.train.batch_size
    img = torch.rand(b, 1, s.model_cfg.image_size, s.model_cfg.image_size, device=dev)
    feats, keep = s.text(captions(b), dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def one() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=amp):
            out = model(img, feats, keep)
        loss = out["logits"].float().sigmoid().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.cuda.synchronize()

    torch.cuda.reset_peak_memory_stats()
    sec = time_per_call(one, 5 if quick else 20, warmup=3)
    return ["on" if amp else "off", b, b / sec, torch.cuda.max_memory_allocated() / 2**30]


def compile_trial(rep: Report, enabled: bool) -> None:
    if not enabled:
        rep.table("torch.compile", ["status"], [["not measured in this run (`--with-compile` adds about 7 min)"]])
        return
    rows = []
    for preset in ("tiny", "cpu"):
        eager = time_per_call(bstep.bare_semi_step(setup(preset)), 5)
        s = setup(preset)
        s.model = torch.compile(s.model)
        step = bstep.bare_semi_step(s)
        t = time.perf_counter()
        step()
        first = time.perf_counter() - t
        compiled = time_per_call(step, 5)
        rows.append([preset, first, eager, compiled, eager / compiled, (first - eager) / max(1e-9, eager - compiled)])
    rep.table("torch.compile (inductor, CPU) on the bare step", ["preset", "first call s (compiling)", "eager s/step",
              "compiled s/step", "speed-up", "steps to repay the compile"], rows,
              "Not enabled by default: a training run of the cpu preset would spend minutes compiling for a "
              "few per cent.")


def gpu(rep: Report, quick: bool) -> None:
    if not torch.cuda.is_available():
        rep.table("GPU", ["status"], [["no CUDA device on this machine: the paper-preset GPU step was not run"]])
        return
    rows = []
    for amp in (False, True):
        rows.append(_gpu_row(amp, quick))
        torch.cuda.empty_cache()
    rep.table(f"GPU: paper-preset step ({torch.cuda.get_device_name(0)}; random-init ConvNeXt-T, MiniLM text)",
              ["AMP", "batch", "images/s", "peak memory GiB"], rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the bench data here (default: a temp dir).")
    ap.add_argument("--quick", action="store_true", help="Smaller sizes (a smoke run, not for RESULTS.md).")
    ap.add_argument("--with-compile", action="store_true", help="Also time torch.compile (about 7 more min).")
    args = ap.parse_args(argv)
    from monai.data import set_track_meta

    set_track_meta(False)  # as every medref stage runs (training.data.without_meta_tracking)
    logging.basicConfig(level=logging.WARNING)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="medref-bench-"))
    t0 = time.perf_counter()
    rep = Report()
    try:
        ws = synthetic_workspace(root / "n1k", 400 if args.quick else 1000, size=128)
        per = loop_overhead(rep, ws, args.quick)
        machine_limit(rep, per)
        kept_changes(rep, per, ws)
        text_cache(rep, per, args.quick)
        loader(rep, ws, per, args.quick)
        scale(rep, root, ws, args.quick)
        compile_trial(rep, args.with_compile)
        gpu(rep, args.quick)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - t0
    info = machine()
    head = "\n".join([
        "# medref benchmarks",
        "",
        f"Written by `{' '.join(['python -m bench.run', *(argv if argv is not None else sys.argv[1:])])}` "
        f"(`make bench`) in {wall / 60:.1f} min{' — QUICK run, not comparable' if args.quick else ''}.",
        "Every figure is measured in this run; ratios are against a baseline measured in the same run.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
    ])
    args.out.write_text(rep.markdown(head))
    print(f"\nwrote {args.out} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
