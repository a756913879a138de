"""Commands whose stages are not built yet: they say so and exit 2."""

from __future__ import annotations

from collections.abc import Callable

import typer


def _stub(name: str, summary: str) -> Callable[[], None]:
    def command() -> None:
        typer.echo(f"error: `medref {name}` is not implemented yet", err=True)
        raise typer.Exit(2)

    command.__doc__ = f"{summary} (not implemented yet)."
    command.__name__ = name.replace("-", "_")
    return command


COMMANDS = {
    "pretrain": _stub("pretrain", "Supervised training on the labelled split"),
    "semi-train": _stub("semi-train", "Semi-MedRef and SSL baselines"),
    "pseudo-label": _stub("pseudo-label", "Teacher masks for unlabelled images"),
    "evaluate": _stub("evaluate", "Dice/IoU under both protocols"),
    "predict": _stub("predict", "Mask for one image and report"),
}
