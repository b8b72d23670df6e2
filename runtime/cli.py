"""The `homeostat` command line: one entry point, sub-commands registered from their own modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runtime import approvals_cli, bench_cli, constitution_cli, db_cli, demo, diagnose_cli, sim_cli
from runtime.audit import cli as audit_cli
from runtime.auth import token_app
from runtime.detection import cli as detection_cli

app = typer.Typer(
    name="homeostat",
    help="Homeostat: a self-healing control plane for LLM services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(audit_cli.app, name="audit")
app.add_typer(constitution_cli.app, name="constitution")
app.add_typer(sim_cli.app, name="sim")
app.add_typer(bench_cli.app, name="bench")
app.add_typer(diagnose_cli.app, name="diagnose")
app.add_typer(db_cli.app, name="db")
app.add_typer(approvals_cli.app, name="approvals")
app.add_typer(token_app, name="token")
detection_cli.register(app)


app.command()(demo.demo)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Daemon config file (see homeostat.example.yaml).")],
    log_level: Annotated[str, typer.Option(help="JSON log level on stderr.")] = "INFO",
) -> None:
    """Run the daemon: poll sources, detect, diagnose, remediate within the constitution, serve the API."""
    from runtime.config import load_config
    from runtime.daemon import run_daemon
    from runtime.logs import configure_logging

    configure_logging(log_level)
    try:
        loaded = load_config(config)
    except Exception as error:  # config errors name file, line and key
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error
    run_daemon(loaded)


@app.command()
def version() -> None:
    """Print Homeostat's version."""
    from importlib.metadata import version as pkg_version

    typer.echo(pkg_version("homeostat"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
