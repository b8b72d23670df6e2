"""PostgreSQL for the HA tests: a fresh database per test, dropped afterwards.

Skips when HOMEOSTAT_TEST_PG_URL is unset; fails (never skips) when CI=true and the server
cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest


def _admin_url() -> str | None:
    return os.environ.get("HOMEOSTAT_TEST_PG_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = _admin_url()
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but HOMEOSTAT_TEST_PG_URL is not set")
        pytest.skip("HOMEOSTAT_TEST_PG_URL is not set")
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL at HOMEOSTAT_TEST_PG_URL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    name = f"hs_ha_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


from tests._daemon_harness import procs  # noqa: E402, F401 (a fixture, shared with tests/daemon)
