"""`medref compare A B`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.options import Workdir

Side = Annotated[str, typer.Argument(help="A run (folder or name under <workdir>/runs/) or a quoted glob of the "
                                          "seeds of one configuration, e.g. 't1-cutmix-qata-2pct-s*'.")]


def compare(
    a: Side,
    b: Side,
    split: Annotated[str, typer.Option("--split", help="The evaluation both sides ran (eval-<split>/).")] = "test",
    side_gate: Annotated[str, typer.Option(
        "--side-gate", help="Read these sides' side-gated evaluations (evaluate --side-gate: eval-<split>-side-gate/): "
        "none | a | b | both.")] = "none",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", help="JSON file (default: <workdir>/comparisons/<A>--vs--<B>.json).")] = None,
    workdir: Workdir = None,
) -> None:
    """Is A better than B? Paired differences of global and per-image Dice on the same test images, 95 %
    bootstrap intervals over images (and over seeds too), Wilcoxon signed-rank p."""
    from rich.console import Console
    from rich.table import Table

    from medref_cli.stages.compare import compare as stage
    from medref_cli.workspace import Workspace, write_json_atomic

    ws = Workspace.resolve(workdir)
    cmp = stage(a, b, ws, split, resamples, seed, side_gate)
    path = out or ws.root / "comparisons" / f"{cmp.a.label}--vs--{cmp.b.label}.json"
    write_json_atomic(path, cmp.to_dict())
    seeds = len(cmp.a.seeds) > 1
    table = Table(title=f"{cmp.a.label} (A) vs {cmp.b.label} (B): {split}, {len(cmp.a.ids)} images"
                        + (f", seeds {cmp.a.seeds} paired with {cmp.b.seeds}" if seeds else ""))
    for col in ("Dice", "A", "B", "A - B", "95 % CI, images",
                *(["95 % CI, seeds + images", f"95 % CI, seeds (t, {len(cmp.a.seeds) - 1} df)", "t p"] if seeds
                  else []), "Wilcoxon p"):
        table.add_column(col, justify="left" if col == "Dice" else "right")
    fmt = lambda ci: f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"  # noqa: E731
    for key, name in (("global_dice", "global"), ("per_image_dice", "per-image")):
        s = cmp.stats[key]
        table.add_row(name, f"{s['a']:.4f}", f"{s['b']:.4f}", f"{s['diff']:+.4f}", fmt(s["ci_cases"]),
                      *([fmt(s["ci_seeds_and_cases"]), fmt(s["seeds_t"]["ci"]), f"{s['seeds_t']['p']:.2g}"]
                        if seeds else []),
                      f"{s['wilcoxon_p']:.2g}" if "wilcoxon_p" in s else "")
    console = Console()
    console.print(table)
    strata = (("per-image Dice by true lesion size (lesion pixels as A was scored; no p: where the difference lies)",
               "lesion", cmp.stats["per_image_dice_by_lesion_size"]),
              ("per-image Dice by the side the report names (no p)", "report", cmp.stats["per_image_dice_by_report_side"]))
    for title, what, rows in strata:
        if not rows:
            continue
        sub = Table(title=title)
        pixels = "lesion_pixels" in rows[0]
        for col in (what, *(["pixels"] if pixels else []), "images", "A", "B", "A - B", "95 % CI, images",
                    *(["95 % CI, seeds + images"] if seeds else [])):
            sub.add_column(col, justify="left" if col == what else "right")
        for s in rows:
            sub.add_row(s["stratum"], *(["{}-{}".format(*s["lesion_pixels"])] if pixels else []), str(s["n_images"]),
                        f"{s['a']:.4f}", f"{s['b']:.4f}", f"{s['diff']:+.4f}", fmt(s["ci_cases"]),
                        *([fmt(s["ci_seeds_and_cases"])] if seeds else []))
        console.print(sub)
    for note in cmp.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"-> {path}")
