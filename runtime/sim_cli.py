"""`homeostat sim ...` commands: the simulated fleet, its scenarios and the healing benchmark."""

import typer

app = typer.Typer(help="Run the simulated LLM fleet: scenarios, HTTP server, benchmark.", no_args_is_help=True)
