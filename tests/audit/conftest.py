"""Fixtures for the audit log tests: one fresh database per test, on SQLite and on PostgreSQL.

`Attacker` is someone with direct write access to the database: it drops the append-only
triggers first, then edits, deletes, inserts or reorders rows behind the log's back.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.audit import HMAC_KEY_ENV, HMAC_KEY_FILE_ENV, Hasher

PG_ENV = "HOMEOSTAT_TEST_PG_URL"


@pytest.fixture(autouse=True)
def _no_ambient_hmac_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say which key they use; an operator's key in the environment must not leak in."""
    monkeypatch.delenv(HMAC_KEY_ENV, raising=False)
    monkeypatch.delenv(HMAC_KEY_FILE_ENV, raising=False)


def pg_base_url() -> str:
    """The test server's URL, or skip (fail under CI) when there is none."""
    url = os.environ.get(PG_ENV)
    in_ci = os.environ.get("CI") == "true"
    if not url:
        if in_ci:
            pytest.fail(f"{PG_ENV} is not set, and PostgreSQL tests must not skip in CI")
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server to test against")
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if in_ci:
            pytest.fail(f"PostgreSQL at {PG_ENV} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at {PG_ENV} is unreachable: {exc}")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped afterwards."""
    import psycopg

    base = pg_base_url()
    schema = f"audit_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh audit database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "audit.db")
    return str(request.getfixturevalue("pg_url"))


class Attacker:
    """Direct database access, bypassing AuditLog: what someone with write access could do."""

    def __init__(self, url: str) -> None:
        self.sqlite = "://" not in url or url.startswith("sqlite")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        cur = self.conn.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        return [tuple(r) for r in rows]

    def drop_triggers(self) -> None:
        if self.sqlite:
            for name in ("audit_records_no_update", "audit_records_no_delete", "audit_head_no_delete"):
                self.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            self.execute("DROP TRIGGER IF EXISTS audit_records_no_update_delete ON audit_records")
            self.execute("DROP TRIGGER IF EXISTS audit_records_no_truncate ON audit_records")

    def rows(self) -> list[tuple[Any, ...]]:
        return self.execute(
            "SELECT seq, ts, incident_id, kind, payload_json, prev_hash, hash FROM audit_records ORDER BY seq"
        )

    def shift_down(self, from_seq: int, by: int = 1) -> None:
        """Renumber records >= from_seq to seq + by (two steps, so the primary key never collides)."""
        self.execute("UPDATE audit_records SET seq = -(seq + ?) WHERE seq >= ?", (by, from_seq))
        self.execute("UPDATE audit_records SET seq = -seq WHERE seq < 0")

    def set_seq(self, old: int, new: int) -> None:
        self.execute("UPDATE audit_records SET seq = ? WHERE seq = ?", (new, old))

    def insert_forged(self, seq: int, prev_hash: str, hasher: Hasher, payload_json: str = '{"forged":true}') -> str:
        """Insert a forged record at `seq` (already vacated) linking to `prev_hash`, and point the
        record that used to follow `prev_hash` at it (prev_hash is UNIQUE, so it must)."""
        ts = "2026-01-01T00:00:00+00:00"
        digest = hasher.record_hash(seq, ts, "inc-forged", "decision", payload_json, prev_hash)
        self.execute("UPDATE audit_records SET prev_hash = ? WHERE prev_hash = ?", (digest, prev_hash))
        self.execute(
            "INSERT INTO audit_records (seq, ts, incident_id, kind, payload_json, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, "inc-forged", "decision", payload_json, prev_hash, digest),
        )
        return digest

    def rehash_from(self, seq: int, hasher: Hasher) -> None:
        """Re-forge the chain from `seq` on with `hasher`, as an attacker who knows the algorithm would."""
        rows = self.rows()
        prev = next((r[6] for r in rows if r[0] == seq - 1), "0" * 64)
        # hashes are UNIQUE; move the old ones out of the way first
        self.execute(
            "UPDATE audit_records SET hash = 'old-' || hash, prev_hash = 'old-' || prev_hash WHERE seq >= ?", (seq,)
        )
        for r in rows:
            if r[0] < seq:
                continue
            digest = hasher.record_hash(r[0], r[1], r[2], r[3], r[4], prev)
            self.execute("UPDATE audit_records SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, r[0]))
            prev = digest
        self.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def attacker() -> Iterator[Callable[[str], Attacker]]:
    opened: list[Attacker] = []

    def open_(url: str) -> Attacker:
        a = Attacker(url)
        opened.append(a)
        return a

    yield open_
    for a in opened:
        a.close()
