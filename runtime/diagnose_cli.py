"""`homeostat diagnose ...` commands: run a diagnoser on a case folder, measure on a labelled set."""

import typer

app = typer.Typer(help="Diagnose incident cases and measure diagnosers on labelled sets.", no_args_is_help=True)
