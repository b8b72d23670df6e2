"""Alembic environment: runs migrations on the connection `runtime.db_cli.upgrade` hands over.

On PostgreSQL a transaction-scoped advisory lock serialises replicas that start at once, so
two daemons never race to create the same table.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from runtime.store import engine_for

MIGRATION_LOCK_KEY = 0x486F6D656F  # "Homeo": the advisory lock taken while migrating


def _run(connection: object) -> None:
    context.configure(connection=connection)  # type: ignore[arg-type]
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":  # type: ignore[attr-defined]
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})  # type: ignore[attr-defined]
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # the plain `alembic` command line: the URL comes from alembic.ini or -x db=URL
    url = context.get_x_argument(as_dictionary=True).get("db") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: give the database as -x db=URL (or sqlalchemy.url in alembic.ini)")
    with engine_for(url).connect() as conn:
        _run(conn)
        conn.commit()
