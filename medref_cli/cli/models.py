"""`medref models`: the trained models bundled with medref (see `medref predict --model`)."""

from __future__ import annotations

from typing import Annotated

import typer


def models(
    check: Annotated[bool, typer.Option("--check", help="Also hash each weights file against its card.")] = False,
) -> None:
    """Trained models bundled with medref, usable without any training: `medref predict --model NAME`."""
    from rich.console import Console
    from rich.table import Table

    from medref_cli.bundled_models import cards, verify

    found = cards()
    if not found:
        typer.echo("no bundled models")
        return
    table = Table()
    table.add_column("name", no_wrap=True)  # what users type: never wrapped or cut
    for header in ("trained on", "test Dice (global / per-image)", "text encoder", "size"):
        table.add_column(header)
    for card in found:
        f = card.fields
        if check:
            verify(card)  # a mismatch is a one-line error naming the file
        table.add_row(card.name, f"{f['data']}; {f['labels']}",
                      f"{f['test']['dice_global']:.4f} / {f['test']['dice_per_image']:.4f}", str(f["text_encoder"]),
                      f"{f['bytes'] / 1e6:.1f} MB")
    Console().print(table)
    typer.echo(f"model cards: {found[0].path.parent}" + ("; weights match their cards" if check else ""))
