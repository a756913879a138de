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
    only: Annotated[str | None, typer.Option("--only", help="Run one cell (its name as --list prints it).")] = None,
    list_cells: Annotated[bool, typer.Option("--list", help="Print one command per cell and exit.")] = False,
    launcher: Annotated[str, typer.Option(
        "--launcher", help="inline (one process) | local | slurm (one submitit job per cell).")] = "inline",
    jobs: Annotated[int, typer.Option("--jobs", help="Cells running at once with --launcher local|slurm.")] = 1,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition", help="SLURM partition.")] = None,
    slurm_gpus: Annotated[int | None, typer.Option("--slurm-gpus", help="GPUs per SLURM job.")] = None,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Run the Table 1 matrix (resumable; failed cells reported) and write table1.md/.csv/.png."""
    from medref_cli.errors import MedrefError
    from medref_cli.stages.table1 import run
    from medref_cli.stages.table1_matrix import Table1Config, commands
    from medref_cli.workspace import Workspace

    if launcher not in ("inline", "local", "slurm"):
        raise MedrefError(f"--launcher {launcher!r}: choose inline, local or slurm")
    slurm = {k: v for k, v in (("slurm_partition", slurm_partition), ("gpus_per_node", slurm_gpus)) if v is not None}
    seed_list = parse_seeds(seeds) if seeds else None
    cfg = Table1Config(profile, pipeline, raw, seed_list, collect=collect, only=only, launcher=launcher, jobs=jobs,
                       slurm=slurm)
    ws = Workspace.resolve(workdir)
    if list_cells:
        typer.echo("\n".join(commands(cfg, ws)))
        return
    cells, out = run(cfg, ws)
    failed = sum(c.status == "failed" for c in cells)
    if only is None:
        typer.echo((out / "table1.md").read_text())
    typer.echo(f"{len(cells)} cells, {failed} failed -> {out}")
    if failed:
        raise typer.Exit(1)


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2]; a value that is not a seed is a one-line error naming it."""
    from medref_cli.config import check_seed
    from medref_cli.errors import MedrefError

    out = []
    for part in text.split(","):
        try:
            out.append(check_seed(int(part.strip()), "--seeds"))
        except ValueError:
            raise MedrefError(f"--seeds {text!r}: {part.strip()!r} is not a whole number; give e.g. 0,1,2") from None
    return out
