"""`medref table1`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.options import NoProgress, Workdir


def table1(
    profile: Annotated[str, typer.Option("--profile", help=(
        "A profile of pipelines/table1.yaml: sample, qata-cpu, qata-budget, qata-seeds, paper."))] = "sample",
    pipeline: Annotated[Path | None, typer.Option("--pipeline", help="Pipeline YAML (default: pipelines/table1.yaml).")]
    = None,
    raw: Annotated[Path | None, typer.Option("--raw", help="Raw dataset folder for profiles that need one.")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Comma-separated seeds overriding the profile.")] = None,
    collect: Annotated[bool, typer.Option(
        "--collect", help="Write the table from the cells already evaluated; train nothing.")] = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Run the Table 1 matrix (resumable; failed cells reported) and write table1.md/.csv/.png."""
    from medref_cli.stages.table1 import Table1Config, run
    from medref_cli.workspace import Workspace

    seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    cells, out = run(Table1Config(profile, pipeline, raw, seed_list, collect=collect), Workspace.resolve(workdir))
    failed = sum(c.status == "failed" for c in cells)
    typer.echo((out / "table1.md").read_text())
    typer.echo(f"{len(cells)} cells, {failed} failed -> {out}")
    if failed:
        raise typer.Exit(1)
