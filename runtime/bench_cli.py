"""`homeostat bench ...` commands: benchmarks whose figures go in the docs."""

import typer

app = typer.Typer(help="Benchmarks (detection, audit, ...).", no_args_is_help=True)
