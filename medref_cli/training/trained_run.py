"""Opening a finished run for inference: its record, split, dataset and rebuilt model, checked together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.workspace import Workspace, lock_holder

log = logging.getLogger(__name__)


@dataclass
class TrainedRun:
    path: Path
    config: Any  # RunConfig: what the run is (config.yaml)
    spec: Any  # SplitSpec
    manifest: Any  # DatasetManifest, None when not asked for
    folder: Path | None
    ckpt: dict[str, Any]
    model: Any  # MedRefNet in eval mode, on `device`
    text: Any  # FrozenTextEncoder, on `device`
    device: Any
    in_progress: bool = False  # a live process still trains the run: the checkpoint is that of the moment

    @property
    def epoch(self) -> int | None:
        """The epoch whose weights the checkpoint holds."""
        return self.ckpt.get("epoch")

    @property
    def eval_model(self) -> str:
        """Whose weights the run validated and evaluates: student | teacher (the config the checkpoint holds;
        a pretrain run has no teacher)."""
        return (self.ckpt.get("config", {}).get("method") or {}).get("eval_model", "student")


def open_run(ws: Workspace, run: str, which: str = "best", device: str = "auto",
             with_dataset: bool = True) -> TrainedRun:
    """`run` as a folder or a name under `<workdir>/runs/`; `which` = best | latest. With `with_dataset` the
    prepared dataset is loaded and must be the version the run was trained on."""
    from medref_cli.artifacts import load_dataset, load_split
    from medref_cli.config import load_run_config
    from medref_cli.model import checkpoint
    from medref_cli.training.device import place
    from medref_cli.training.run_dir import resolve_run

    if which not in ("best", "latest"):
        raise MedrefError(f"--checkpoint {which!r}: choose best or latest")
    path = resolve_run(run, ws.runs)
    config = load_run_config(path)
    spec = load_split(path / "split.json")
    manifest, folder = None, None
    if with_dataset:
        manifest, folder = load_dataset(ws, config.data.dataset)
        if manifest.dataset_hash != config.data.dataset_hash:
            raise MedrefError(f"{folder / 'dataset.json'}: dataset changed since run {path.name} was trained")
    ckpt_path = path / f"checkpoint_{which}.pt"
    training_pid = lock_holder(path)
    ckpt = checkpoint.load(ckpt_path)
    if training_pid is not None:
        log.warning("%s is still training (process %d): using %s of epoch %s as it is now; a later call may "
                    "use other weights", path.name, training_pid, ckpt_path.name, ckpt.get("epoch"))
    model, text = checkpoint.build_model(ckpt, ckpt_path)
    dev = place(model, text, device)
    return TrainedRun(path, config, spec, manifest, folder, ckpt, model, text, dev, training_pid is not None)
