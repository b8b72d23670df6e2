"""The `homeostat` command line: one entry point, sub-commands registered from their own modules."""

from __future__ import annotations

import typer

from runtime import bench_cli, constitution_cli, demo, diagnose_cli, sim_cli
from runtime.audit import cli as audit_cli

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


app.command()(demo.demo)


@app.command()
def version() -> None:
    """Print Homeostat's version."""
    from importlib.metadata import version as pkg_version

    typer.echo(pkg_version("homeostat"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
