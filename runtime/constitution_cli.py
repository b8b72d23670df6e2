"""`homeostat constitution ...` commands."""

import typer

app = typer.Typer(help="Validate, explain, backtest and export the schema of constitution.yaml.", no_args_is_help=True)
