"""The `homeostat` command line: one entry point, sub-commands registered from their own modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runtime import approvals_cli, bench_cli, constitution_cli, db_cli, demo, diagnose_cli, reliability_cli, sim_cli
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
app.add_typer(reliability_cli.app, name="reliability")
detection_cli.register(app)


app.command()(demo.demo)


@app.command()
def run(  # noqa: PLR0917 - typer maps each option to a parameter
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Daemon config file (see homeostat.example.yaml).")
    ] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Run against a simulated fleet with generated tokens (try it by hand).")
    ] = False,
    port: Annotated[int, typer.Option(help="--simulate: API and console port on 127.0.0.1.")] = 8080,
    scenario: Annotated[
        str, typer.Option(help="--simulate: shipped scenario name or scenario YAML file.")
    ] = "provider_outage",
    speed: Annotated[float, typer.Option(help="--simulate: simulated seconds per real second.")] = 1.0,
    clock: Annotated[
        str,
        typer.Option(
            help="'system' (wall clock) or 'simulator': follow the virtual time of the simulator the config polls."
        ),
    ] = "system",
    log_level: Annotated[str, typer.Option(help="JSON log level on stderr.")] = "INFO",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Validate --config and every file it names (constitution, topology, tokens, detection"
            " overrides), print what the daemon would start with, and exit without starting (2 on any error).",
        ),
    ] = False,
) -> None:
    """Run the daemon: poll sources, detect, diagnose, remediate within the constitution, serve the API."""
    from runtime.config import load_config
    from runtime.daemon import SimulatorClock, SimulatorClockError, run_daemon, simulator_url_of
    from runtime.logs import configure_logging
    from runtime.simulate import SimulateError, run_simulated

    configure_logging(log_level)
    if simulate:
        if config is not None:
            typer.echo("error: --simulate builds its own config; drop --config", err=True)
            raise typer.Exit(2)
        try:
            run_simulated(port=port, scenario=scenario, speed=speed, echo=typer.echo)
        except SimulateError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from error
        return
    if config is None:
        typer.echo("error: give --config FILE (or --simulate)", err=True)
        raise typer.Exit(2)
    if clock not in {"system", "simulator"}:
        typer.echo(f"error: --clock: expected 'system' or 'simulator', got {clock!r}", err=True)
        raise typer.Exit(2)
    try:
        loaded = load_config(config)
    except Exception as error:  # config errors name file, line and key
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error
    if check:
        from runtime.config_check import CheckFailed, check_config

        try:
            for line in check_config(config, loaded):
                typer.echo(line)
        except CheckFailed as failed:
            typer.echo(str(failed), err=True)
            raise typer.Exit(2) from None
        return
    daemon_clock = None
    if clock == "simulator":
        url = simulator_url_of(loaded)
        if url is None:
            typer.echo(f"error: --clock simulator: {config} has no simulator source or tools.simulator_url", err=True)
            raise typer.Exit(2)
        try:
            daemon_clock = SimulatorClock(url)
        except SimulatorClockError as error:
            typer.echo(f"error: --clock simulator: {error}", err=True)
            raise typer.Exit(2) from error
    run_daemon(loaded, clock=daemon_clock)


@app.command()
def version() -> None:
    """Print Homeostat's version."""
    from importlib.metadata import version as pkg_version

    typer.echo(pkg_version("homeostat"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
