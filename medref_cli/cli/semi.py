"""`medref semi-train` and `medref pseudo-label`."""

from __future__ import annotations

from typing import Annotated

import typer

from medref_cli.cli.options import Device, Labeled, NoProgress, Overwrite, PseudoLabels, Run, Workdir
from medref_cli.cli.train import (
    ConfigFile,
    DatasetOpt,
    Encoder,
    Epochs,
    Logger,
    MaxMinutes,
    Name,
    Preset,
    Resume,
    TextEncoder,
    TrainSeed,
    overrides,
    report,
)
from medref_cli.config import DEFAULT_RECIPE, METHODS, RECIPES  # pure (no torch): --help stays instant


def semi_train(
    labeled: Labeled,
    dataset: DatasetOpt = None,
    method: Annotated[str, typer.Option("--method", help=" | ".join(METHODS))] = "semi-medref",
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
    pseudo_labels: PseudoLabels = None,
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
    resume: Resume = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Semi-MedRef (T-PatchMix, PosAug, ITCL) and SSL baselines on labelled + unlabelled data."""
    from medref_cli.config import TrainRequest
    from medref_cli.progress import progress_enabled
    from medref_cli.stages import semi_train as stage
    from medref_cli.workspace import Workspace

    ov = overrides(epochs, max_minutes, text_encoder, logger, encoder)
    ov["method"] = {"eval_model": eval_model} if eval_model else {}
    if recipe:
        ov["method"]["recipe"] = recipe
    for flag, key in ((no_t_patchmix, "t_patchmix"), (no_pos_aug, "pos_aug"), (no_itcl, "itcl"),
                      (no_cutmix, "cutmix")):
        if flag:
            ov["method"][key] = False
    req = TrainRequest(stage="semi-train", method=method, labeled=labeled, dataset=dataset, seed=seed,
                       preset=preset, config_file=config, overrides=ov, name=name, resume=resume,
                       overwrite=overwrite, progress=progress_enabled(not no_progress), device=device,
                       init_from=init)
    status, run = stage.run(req, Workspace.resolve(workdir), pseudo_labels)
    report(f"semi-train {method}", status, run)


def pseudo_label(
    run: Run,
    split: Annotated[str, typer.Option("--split", help="Which ids to label.")] = "train_unlabeled",
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best | latest.")] = "best",
    model: Annotated[str, typer.Option("--model", help="teacher | student.")] = "teacher",
    device: Device = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Teacher masks, confidence maps and zone checks for unlabelled images, with an audit."""
    from medref_cli.progress import progress_enabled
    from medref_cli.stages.pseudo_label import PseudoLabelConfig
    from medref_cli.stages.pseudo_label import run as stage
    from medref_cli.workspace import Workspace

    cfg = PseudoLabelConfig(run, split, checkpoint, model, overwrite=overwrite, device=device,
                            progress=progress_enabled(not no_progress))
    audit, out = stage(cfg, Workspace.resolve(workdir))
    line = (f"pseudo-labelled {audit.n_images} images ({audit.model}); "
            f"zone agreement {audit.zone_agreement_exact:.3f}")
    if audit.dice_all is not None:
        line += f"; Dice vs ground truth (global) {audit.dice_all['global']['dice']:.4f}"
    typer.echo(f"{line} -> {out}")
