"""`medref split`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.options import Dataset, Labeled, Overwrite, Seed, Workdir


def split(
    dataset: Dataset,
    labeled: Labeled,
    seed: Seed = 42,
    val_fraction: Annotated[float, typer.Option(help="Share of train carved as val when needed.")] = 0.2,
    test_fraction: Annotated[float, typer.Option(help="Share of train carved as test when needed.")] = 0.2,
    from_file: Annotated[Path | None, typer.Option(
        "--from", help="Labelled ids from a file: the official split_labeled_*.json, an SGSeg-style JSON, "
        "a JSON list or one name per line.")] = None,
    unlabeled_from: Annotated[Path | None, typer.Option(
        "--unlabeled-from", help="Unlabelled ids from a file (with --from), e.g. split_unlabeled_*.json.")] = None,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Write splits/<dataset>-<ratio>-s<seed>.json: train_labeled / train_unlabeled / val / test."""
    from medref_cli.stages.split import SplitConfig, run
    from medref_cli.workspace import Workspace

    cfg = SplitConfig(dataset, labeled, seed, val_fraction, test_fraction, overwrite, from_file, unlabeled_from)
    spec, path = run(cfg, Workspace.resolve(workdir))
    typer.echo(
        f"split {spec.dataset} {spec.ratio} seed {spec.seed}: labelled {len(spec.train_labeled)}, "
        f"unlabelled {len(spec.train_unlabeled)}, val {len(spec.val)}, test {len(spec.test)} -> {path}\n"
        f"  rule: {spec.rule}"
    )
