"""`homeostat bench audit`."""

import typer


def register(app: typer.Typer) -> None:
    """Add the audit benchmark command to `homeostat bench`."""
