"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch."""

import typer


def register(app: typer.Typer) -> None:
    pass
