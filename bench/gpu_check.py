"""The GPU path in one prepared run: the `paper` preset (224 px, ConvNeXt-Tiny widths, AMP) trained by
`semi-train` for two epochs under `torchrun` (NCCL on CUDA), then images/s and peak memory per epoch.

    python -m bench.gpu_check --out gpu-check                  # on a CUDA machine: synthetic 224-px data
    python -m bench.gpu_check --raw ../shared/data/qata-cov19  # a QaTa subset instead (--n images)
    python -m bench.gpu_check --device cpu --small             # the same path on CPU (gloo; what the test runs)

Weights are random-init (`encoder_pretrained: null`) and the text encoder is the offline MiniLM, so nothing is
downloaded: the figures measure the path and its speed, not accuracy. Writes `<out>/gpu_check.json` and
`<out>/gpu_check.md` (the machine, the command, one row per epoch); the run itself is in `<out>/work/runs/`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path


def _medref(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "medref_cli", "-q", *args], check=True, env=env)


def _subset(raw: Path, n: int, dest: Path) -> Path:
    """A QaTa SGSeg-layout copy of the first `n` train and `n // 4` valid images (with their masks and captions)."""
    ann = json.loads((raw / "prompts" / "annotation.json").read_text())
    keep = {"train": ann["train"][:n], "valid": ann["valid"][: max(1, n // 4)]}
    for part, entries in keep.items():
        for sub in ("images", "masks"):
            (dest / "images" / part / sub).mkdir(parents=True, exist_ok=True)
        names = {p.name.lower(): p for p in (raw / "images" / part / "masks").iterdir()}
        for e in entries:
            mask = names[e["image_path"].lower()]
            shutil.copy(mask, dest / "images" / part / "masks" / mask.name)
            image = mask.name[len("mask_"):]
            src = next(p for p in (raw / "images" / part / "images").iterdir() if p.name.lower() == image.lower())
            shutil.copy(src, dest / "images" / part / "images" / src.name)
    (dest / "prompts").mkdir(parents=True, exist_ok=True)
    (dest / "prompts" / "annotation.json").write_text(json.dumps(keep))
    return dest


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-check"))
    ap.add_argument("--raw", type=Path, help="QaTa-COV19 in the SGSeg layout (default: synthetic data)")
    ap.add_argument("--n", type=int, default=400, help="train images (QaTa subset or synthetic)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="64 px, tiny widths, batch 4: a CPU check of the path")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEDREF_WORKDIR": str(work), "PYTHONUNBUFFERED": "1"}
    size = 64 if args.small else 224
    if args.raw:
        raw = _subset(args.raw, args.n, out / "raw-subset")
        _medref("prepare", "qata", "--raw", str(raw), "--name", "gpu", "--size", str(size), env=env)
        dataset = "gpu"
    else:
        _medref("prepare", "sample", "--n", str(args.n), "--size", str(size), env=env)
        dataset = "qata-mini"
    config = {"model": {"encoder_pretrained": None, "text_encoder": "minilm"},
              "train": {"epochs": args.epochs, "amp": True, "steps_per_epoch": 4 if args.small else 20,
                        "patience": 100},
              "method": {"burn_in_epochs": 0, "unsup_ramp_epochs": 1}}  # epoch 1 runs the whole semi step
    if args.small:
        config["model"].update({"image_size": 64, "encoder_widths": [16, 32, 48, 64], "encoder_depths": [1, 1, 1, 1],
                                "num_heads": 2, "proj_dim": 32})
        config["train"].update({"batch_size": 4, "batch_size_unlabeled": 4})
    cfg_file = out / "gpu_check.yaml"
    cfg_file.write_text(json.dumps(config))  # JSON is YAML
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
           "-m", "medref_cli", "semi-train", "-d", dataset, "-l", "25%", "--preset", "paper", "--config",
           str(cfg_file), "--device", args.device, "--no-progress", "--name", "gpu-check"]
    subprocess.run(cmd, check=True, env=env)
    rows = [json.loads(line) for line in (work / "runs" / "gpu-check" / "metrics.jsonl").read_text().splitlines()]
    per_step = config["train"].get("batch_size", 32) + config["train"].get("batch_size_unlabeled", 32)
    import torch

    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "device": args.device,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "cpu_count": os.cpu_count()},
        "command": "torchrun " + " ".join(cmd[3:]),  # python -m torch.distributed.run = torchrun
        "data": str(args.raw) if args.raw else f"synthetic, {args.n} images at {size} px",
        "epochs": [{"epoch": r["epoch"], "epoch_s": r["epoch_s"], "steps": r["steps"],
                    "images_per_s": round(r["steps"] * per_step * args.nproc / r["epoch_s"], 1),
                    "cuda_peak_gib": r.get("cuda_peak_gib"), "loss": r.get("loss", r.get("loss_sup")),
                    "val_dice_global": r.get("val_dice_global")} for r in rows],
    }
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# GPU check ({result['machine']['gpu'] or args.device})", "", f"`{result['command']}`", "",
          f"data: {result['data']}; torch {result['machine']['torch']}", "",
          "| epoch | s | images/s | peak GiB | loss | val Dice |", "|---|---|---|---|---|---|"]
    md += [f"| {e['epoch']} | {e['epoch_s']} | {e['images_per_s']} | {e['cuda_peak_gib']} | {e['loss']} | "
           f"{e['val_dice_global']} |" for e in result["epochs"]]
    (out / "gpu_check.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
