"""`homeostat bench detection`."""

import typer


def register(app: typer.Typer) -> None:
    """Add the detection benchmark command to `homeostat bench`."""
