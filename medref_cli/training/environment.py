"""What a run ran on: `<run>/environment.jsonl`, one line per start and per `--resume`.

CPU training is deterministic on one machine but not across machines: the float kernels torch picks (AVX2,
AVX-512, ...) sum in different orders, so the same config and seed give figures that differ from the first step on
another CPU. The record says which machine, libraries and thread count produced a run, so two runs that differ can
be told apart from two runs of different code. It is not part of a run's experiment (config.yaml).
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ENV_FILE = "environment.jsonl"
PACKAGES = ("medref", "torch", "monai", "transformers", "numpy")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: Any, world: int) -> dict[str, Any]:  # noqa: ANN401 - torch.device
    """The record of this process: time, host, Python and library versions, the CPU and the kernel set torch uses
    on it, torch's thread count, the device (with the GPU's name on CUDA) and the number of processes."""
    import torch

    row: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {p: _version(p) for p in PACKAGES},
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "world_size": world,
    }
    if device.type == "cuda":
        row["gpu"] = torch.cuda.get_device_name(device)
        row["cuda"] = torch.version.cuda
    return row


def record_environment(run: Path, device: Any, world: int) -> dict[str, Any]:  # noqa: ANN401 - torch.device
    """Append this process's record to `<run>/environment.jsonl` (rank 0 calls it) and return it."""
    row = environment(device, world)
    with (run / ENV_FILE).open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def machine_of(run: Path) -> str | None:
    """What a run trained on, from the first line of its `environment.jsonl`: CPU kernel set or GPU, torch threads
    and version, e.g. "cpu AVX512, 1 thread, torch 2.13.0+cpu"; None without a record (runs trained before medref
    wrote one)."""
    try:
        first = json.loads((run / ENV_FILE).read_text().splitlines()[0])
        where = f"gpu {first['gpu']}" if first.get("gpu") else f"cpu {first['cpu_capability']}"
        threads = first["torch_threads"]
        return f"{where}, {threads} thread{'s' if threads != 1 else ''}, torch {first['versions']['torch']}"
    except (OSError, IndexError, ValueError, KeyError, TypeError):
        return None
