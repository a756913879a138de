"""Typer CLI: one module per command, thin adapters over `medref_cli.stages`."""
