"""The `medref` command: stages as sub-commands; errors as one line on stderr and exit code 2."""

from __future__ import annotations

import errno
import logging
import os
import sys

import typer
from typer.core import TyperGroup

from medref_cli.cli import compare, evaluate, models, prepare, semi, split, table1, train
from medref_cli.errors import MedrefError


def os_error_line(exc: OSError) -> str:
    """`<path>: <reason>` of a file-system error (permission denied, no space left, read-only file system)."""
    path = exc.filename if exc.filename is not None else "?"
    reason = exc.strerror or exc.__class__.__name__
    hint = {errno.ENOSPC: "; free some space and re-run", errno.EROFS: "; choose a writable --workdir / --out",
            errno.EACCES: "; choose a writable --workdir / --out"}.get(exc.errno or 0, "")
    return f"{path}: {reason}{hint}"


class MedrefGroup(TyperGroup):
    """Turns a `MedrefError` from any sub-command into `error: <message>` on stderr and its exit code."""

    def list_commands(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        """`medref --help` lists the commands in pipeline order (registration order, the group `prepare` first)."""
        names = list(self.commands)
        return sorted(names, key=lambda n: (n != "prepare", names.index(n)))

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except MedrefError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a read-only folder, a full disk, a path that is a file: the stage wrote nothing
            typer.echo(f"error: {os_error_line(exc)}", err=True)  # under its real name (temp name, then rename)
            raise typer.Exit(MedrefError.exit_code) from None


app = typer.Typer(
    name="medref",
    cls=MedrefGroup,
    help="Semi-supervised medical referring image segmentation (Semi-MedRef): prepare, split, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(prepare.app, name="prepare")  # in pipeline order, which `medref --help` keeps
app.command("split")(split.split)
app.command("pretrain")(train.pretrain)
app.command("semi-train")(train.semi_train)
app.command("pseudo-label")(semi.pseudo_label)
app.command("evaluate")(evaluate.evaluate)
app.command("compare")(compare.compare)
app.command("predict")(evaluate.predict)
app.command("models")(models.models)
app.command("table1")(table1.table1)


@app.callback()
def root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only."),
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


def main() -> None:
    app()
