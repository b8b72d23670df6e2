"""`homeostat db`: schema migrations (alembic) for the store tables, also run at daemon start."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from runtime.config import database_shown
from runtime.store import engine_for

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

app = typer.Typer(help="Database schema: upgrade to the latest migration, show the current revision.")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _bare(url: str) -> str:
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url


def upgrade(url: str, revision: str = "head") -> str | None:
    """Bring the database at `url` (path, sqlite:/// or postgresql://) to `revision`; return the new revision."""
    engine = engine_for(_bare(url))
    try:
        with engine.begin() as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        return current_revision(url)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database is at (None before any migration)."""
    engine = engine_for(_bare(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@app.command("upgrade")
def upgrade_cmd(
    db: Annotated[str, typer.Option("--db", help="database: a SQLite path, sqlite:///PATH or postgresql://...")],
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Migrate the store tables to the latest schema, keeping existing rows."""
    try:
        now = upgrade(db, revision)
    except Exception as error:
        typer.echo(f"error: cannot upgrade {database_shown(db)}: {type(error).__name__}: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"{database_shown(db)}: at revision {now}")


@app.command("current")
def current_cmd(db: Annotated[str, typer.Option("--db", help="database URL or SQLite path")]) -> None:
    """Print the database's schema revision and the latest one."""
    typer.echo(f"current: {current_revision(db)}  head: {head_revision()}")
