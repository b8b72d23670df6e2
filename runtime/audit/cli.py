"""`homeostat audit ...` commands."""

import typer

app = typer.Typer(help="Verify, replay, show and export the hash-chained audit log.", no_args_is_help=True)
