"""`medref prepare qata|mosmed|custom|sample`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.options import Laterality, NoProgress, Overwrite, Workdir

app = typer.Typer(help="Import a raw dataset (any known layout) into the workspace.", no_args_is_help=True)

Raw = Annotated[Path | None, typer.Option("--raw", help="Raw dataset folder (layout is detected).")]
Name = Annotated[str | None, typer.Option("--name", help="Dataset name in the workspace (default: the kind).")]
Size = Annotated[int | None, typer.Option("--size", help="Resize to SIZE x SIZE (default: keep).")]
SkipInvalid = Annotated[
    bool, typer.Option("--skip-invalid", help="Skip (and report) unreadable or inconsistent records instead of failing.")
]


def _prepare(kind: str, raw: Path | None, name: str | None, size: int | None, overwrite: bool,
             skip_invalid: bool, no_progress: bool, workdir: Path | None, laterality: str | None = None) -> None:
    from medref_cli.progress import progress_enabled
    from medref_cli.stages.prepare import PrepareConfig, run
    from medref_cli.workspace import Workspace

    ws = Workspace.resolve(workdir)
    cfg = PrepareConfig(kind, raw, name, size, overwrite, skip_invalid, progress_enabled(not no_progress),
                        laterality)
    manifest = run(cfg, ws)
    _report(manifest, ws)


def _report(manifest, ws) -> None:  # noqa: ANN001 - DatasetManifest, Workspace (imported lazily)
    import json

    folder = ws.dataset_dir(manifest.name)
    counts = json.loads((folder / "prepare_report.json").read_text())["counts"]
    splits = ", ".join(f"{k} {v}" for k, v in manifest.extra["splits"].items())
    typer.echo(
        f"prepared {manifest.name}: {counts['records']} records ({splits}) from {manifest.layout} layout; "
        f"fixed {counts['fixed']}, skipped {counts['skipped']} -> {folder}"
    )


@app.command("qata")
def qata(raw: Raw = None, name: Name = None, size: Size = None, overwrite: Overwrite = False,
         skip_invalid: SkipInvalid = False, no_progress: NoProgress = False, workdir: Workdir = None) -> None:
    """QaTa-COV19 from LViT, GuideDecoder or SGSeg layout (--raw or $MEDREF_QATA_RAW)."""
    _prepare("qata", raw, name, size, overwrite, skip_invalid, no_progress, workdir)


@app.command("mosmed")
def mosmed(raw: Raw = None, name: Name = None, size: Size = None, overwrite: Overwrite = False,
           skip_invalid: SkipInvalid = False, no_progress: NoProgress = False, workdir: Workdir = None) -> None:
    """MosMedData+ from LViT layout, CSV ports, or NIfTI volumes (--raw or $MEDREF_MOSMED_RAW)."""
    _prepare("mosmed", raw, name, size, overwrite, skip_invalid, no_progress, workdir)


@app.command("custom")
def custom(
    table: Annotated[Path, typer.Option("--table", help="csv / tsv / xlsx: image, text[, mask][, split] columns; "
                                        "paths relative to the table.")],
    name: Annotated[str | None, typer.Option("--name", help="Dataset name (default: the table's file stem).")] = None,
    laterality: Laterality = "patient",
    size: Size = None, overwrite: Overwrite = False, skip_invalid: SkipInvalid = False,
    no_progress: NoProgress = False, workdir: Workdir = None,
) -> None:
    """Your own images (PNG, JPEG, TIFF, 16-bit PNG, DICOM, 2-D NIfTI) and reports from one table."""
    stem = table.name.split(".")[0]
    _prepare("custom", table, name or stem, size, overwrite, skip_invalid, no_progress, workdir, laterality)


@app.command("sample")
def sample(
    n: Annotated[int, typer.Option("--n", help="Images per dataset.")] = 200,
    size: Annotated[int, typer.Option("--size", help="Image size in pixels.")] = 96,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    distractors: Annotated[bool, typer.Option(help="Add look-alike opacities the caption does not name.")] = True,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    workdir: Workdir = None,
) -> None:
    """Synthetic offline data: writes raw qata-mini/mosmed-mini layouts and prepares both."""
    from medref_cli.errors import MedrefError
    from medref_cli.progress import progress_enabled
    from medref_cli.stages.prepare import PrepareConfig, run
    from medref_cli.synthetic import write_sample_data
    from medref_cli.workspace import Workspace, run_lock, staged_dir

    ws = Workspace.resolve(workdir)
    raw_root = ws.root / "raw" / "sample"
    datasets = (("qata", "qata-mini"), ("mosmed", "mosmed-mini"))
    with run_lock(ws.root):  # the whole command: two at once cannot mix one's raw files with the other's datasets
        existing = [ws.dataset_dir(name) for _, name in datasets if ws.dataset_dir(name).exists()]
        if existing and not overwrite:  # every target checked before anything is written
            raise MedrefError(f"{existing[0]}: already exists; pass --overwrite to replace it (nothing was changed)")
        with staged_dir(raw_root, overwrite=True) as tmp:
            write_sample_data(tmp, n=n, size=size, seed=seed, distractors=distractors)
        for kind, name in datasets:
            cfg = PrepareConfig(kind, raw_root / name, name, None, overwrite, False, progress_enabled(not no_progress))
            _report(run(cfg, ws), ws)
