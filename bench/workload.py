"""Shared workload of the benchmarks: a synthetic prepared dataset, a run context, fixed batches, timers."""

from __future__ import annotations

import copy
import functools
import json
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from medref_cli.config import ModelConfig, TrainConfig, model_config, resolve, train_config
from medref_cli.model.network import MedRefNet
from medref_cli.model.text_encoder import FrozenTextEncoder
from medref_cli.stages.prepare import PrepareConfig
from medref_cli.stages.prepare import run as prepare
from medref_cli.synthetic import SampleSpec, write
from medref_cli.workspace import Workspace


def machine() -> dict[str, str]:
    import monai
    import transformers

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu, "torch threads": str(torch.get_num_threads()), "python": platform.python_version(),
        "torch": torch.__version__, "monai": monai.__version__, "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def synthetic_workspace(root: Path, n: int, size: int = 128, seed: int = 0) -> Workspace:
    """Raw synthetic QaTa-layout images -> a prepared dataset `syn` in a workspace under `root`."""
    ws = Workspace.resolve(root / "ws")
    if not (ws.datasets / "syn" / "dataset.json").is_file():
        write(root / "raw", SampleSpec("qata", n=n, size=size, seed=seed))
        prepare(PrepareConfig("qata", root / "raw", "syn"), ws)
    return ws


@dataclass
class Setup:
    model_cfg: ModelConfig
    train: TrainConfig
    model: MedRefNet
    text: FrozenTextEncoder


def setup(preset: str, seed: int = 0, model: dict | None = None, **train_overrides) -> Setup:  # noqa: ANN003
    config = resolve(preset, {"model": model or {}, "train": train_overrides}, "bench")
    mcfg = model_config(copy.deepcopy(config["model"]), "model")
    tcfg = train_config(copy.deepcopy(config["train"]), "train")
    torch.manual_seed(seed)
    text = FrozenTextEncoder(mcfg.text_encoder, mcfg.max_tokens, tcfg.text_cache_size)
    return Setup(mcfg, tcfg, MedRefNet(mcfg, text.dim), text)


@functools.lru_cache(maxsize=1)
def _caption_pool() -> tuple[str, ...]:
    """Real QaTa train captions when ../shared/data is there, else 5716 synthetic ones in the same grammar."""
    ann = Path(__file__).resolve().parents[2] / "shared" / "data" / "qata-cov19" / "prompts" / "annotation.json"
    if ann.is_file():
        return tuple(e["caption"] for e in json.loads(ann.read_text())["train"])
    from medref_cli.zones import caption_from_zones

    rnd = random.Random(0)
    return tuple(caption_from_zones([rnd.random() < 0.3 for _ in range(5)] + [True]) for _ in range(5716))


def captions(n: int, seed: int = 0) -> list[str]:
    """`n` captions drawn (seeded) from the QaTa caption pool."""
    pool = _caption_pool()
    rnd = random.Random(seed)
    return [rnd.choice(pool) for _ in range(n)]


def time_per_call(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]
