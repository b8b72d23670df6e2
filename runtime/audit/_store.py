"""The audit log on a database: append under a locked head, stream records back, verify the chain.

One code path for SQLite (WAL, the default) and PostgreSQL, through a SQLAlchemy engine.
Appends serialise on a single-row head table (BEGIN IMMEDIATE on SQLite, SELECT ... FOR
UPDATE on PostgreSQL) and `prev_hash` is UNIQUE, so concurrent writers in any number of
threads or processes extend one chain and can never fork it. Triggers reject UPDATE and
DELETE on the records table.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Text, event, text
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, SQLModel

from domain.canonical import to_jsonable
from runtime.audit._chain import GENESIS_HASH, AuditRecord, Hasher, format_ts
from runtime.audit._verify import Row, VerifyReport, walk

HMAC_KEY_ENV = "HOMEOSTAT_AUDIT_HMAC_KEY"
HMAC_KEY_FILE_ENV = "HOMEOSTAT_AUDIT_HMAC_KEY_FILE"


class AuditError(Exception):
    """The audit log cannot be opened or written, with what is wrong and where."""


class AuditRecordRow(SQLModel, table=True):
    """One stored record. Never updated or deleted (triggers enforce it)."""

    __tablename__ = "audit_records"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ts: str = Field(sa_column=Column(Text, nullable=False))
    incident_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    hash: str = Field(sa_column=Column(Text, nullable=False))


class AuditHeadRow(SQLModel, table=True):
    """The single row naming the chain's last record; appends lock it to advance the chain."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="audit_head_single_row"),)

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(sa_column=Column(Text, nullable=False))
    algorithm: str = Field(sa_column=Column(Text, nullable=False))


_TABLES = [AuditRecordRow.__table__, AuditHeadRow.__table__]  # type: ignore[attr-defined]

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
       BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: UPDATE rejected'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
       BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: DELETE rejected'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head
       BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END""",
]

_PG_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION USING MESSAGE = 'audit_records is append-only: ' || TG_OP || ' rejected'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_records_no_update_delete BEFORE UPDATE OR DELETE ON audit_records
       FOR EACH ROW EXECUTE FUNCTION audit_records_append_only()""",
    """CREATE OR REPLACE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
       FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only()""",
    """CREATE OR REPLACE TRIGGER audit_head_no_delete BEFORE DELETE OR TRUNCATE ON audit_head
       FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only()""",
]

_COLUMNS = "seq, ts, incident_id, kind, payload_json, prev_hash, hash"
_SELECT_HEAD = text("SELECT seq, hash, algorithm FROM audit_head WHERE id = 1")


def engine_url(url_or_path: str) -> str:
    """A SQLAlchemy URL for a bare SQLite path, a sqlite:/// URL or a postgresql:// URL."""
    if "://" not in url_or_path:
        if url_or_path in ("", ":memory:"):
            raise AuditError("the audit log needs a file path or a database URL, not an in-memory database")
        return "sqlite:///" + str(Path(url_or_path).expanduser().resolve())
    scheme, rest = url_or_path.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + rest
    if scheme.startswith(("postgresql+", "sqlite")):
        return url_or_path
    raise AuditError(
        f"unsupported audit database URL scheme {scheme!r} in {url_or_path!r}; use a path, sqlite:/// or postgresql://"
    )


def load_hmac_key_from_env(environ: dict[str, str] | None = None) -> bytes | None:
    """The operator's HMAC key from HOMEOSTAT_AUDIT_HMAC_KEY or the file HOMEOSTAT_AUDIT_HMAC_KEY_FILE names."""
    env = os.environ if environ is None else environ
    value, path = env.get(HMAC_KEY_ENV), env.get(HMAC_KEY_FILE_ENV)
    if value and path:
        raise AuditError(f"both {HMAC_KEY_ENV} and {HMAC_KEY_FILE_ENV} are set; set only one")
    if value:
        return value.encode("utf-8")
    if path:
        try:
            key = Path(path).read_bytes().strip()
        except OSError as exc:
            raise AuditError(f"{HMAC_KEY_FILE_ENV}={path}: cannot read the HMAC key file ({exc.strerror})") from exc
        if not key:
            raise AuditError(f"{HMAC_KEY_FILE_ENV}={path}: the HMAC key file is empty")
        return key
    return None


def _row_to_record(row: Row) -> AuditRecord:
    seq, ts, incident_id, kind, payload_json, prev_hash, hash_ = row
    return AuditRecord(
        seq=seq,
        ts=datetime.fromisoformat(ts),
        incident_id=incident_id,
        kind=kind,
        payload=json.loads(payload_json),
        payload_json=payload_json,
        prev_hash=prev_hash,
        hash=hash_,
    )


class AuditLog:
    """The append-only, hash-chained decision log (SQLite file or PostgreSQL URL).

    `hmac_key` makes every hash an HMAC-SHA256, so write access to the database is not
    enough to re-forge the chain; when omitted it is read from HOMEOSTAT_AUDIT_HMAC_KEY or
    HOMEOSTAT_AUDIT_HMAC_KEY_FILE. `create=False` opens an existing log read-only (verify).
    """

    def __init__(self, url_or_path: str, *, hmac_key: bytes | None = None, create: bool = True) -> None:
        if hmac_key is None:
            hmac_key = load_hmac_key_from_env()
        self._hasher = Hasher(hmac_key)
        self.url = engine_url(url_or_path)
        self._display = make_url(self.url).render_as_string(hide_password=True)
        self._closed = False
        if self.url.startswith("sqlite"):
            self._init_sqlite_path(create)
        self._engine = self._make_engine()
        self.dialect = self._engine.dialect.name
        try:
            if create:
                self._create_schema()
            self._check_schema()
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def from_env(cls, url_or_path: str, *, create: bool = True) -> AuditLog:
        """Open a log keyed by the operator's HMAC key from the environment (if any)."""
        return cls(url_or_path, hmac_key=load_hmac_key_from_env(), create=create)

    # ------------------------------------------------------------------ set-up

    def _init_sqlite_path(self, create: bool) -> None:
        path = self.url.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise AuditError("the audit log needs a SQLite file path, not an in-memory database")
        file = Path(path)
        if not create and not file.exists():
            raise AuditError(f"no audit database at {file}")
        if create and not file.parent.is_dir():
            raise AuditError(f"cannot create the audit database {file}: directory {file.parent} does not exist")

    def _make_engine(self) -> Engine:
        if self.dialect_is_sqlite:
            engine = create_engine(
                self.url, connect_args={"timeout": 60.0}, pool_size=8, max_overflow=32, pool_reset_on_return=None
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

            return engine
        return create_engine(self.url, pool_size=8, max_overflow=32, pool_pre_ping=True)

    @property
    def dialect_is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction that holds the write lock (SQLite) for its whole duration."""
        if self._closed:
            raise AuditError("this AuditLog is closed; open a new one")
        with self._engine.connect() as plain:
            conn = plain.execution_options(sqlite_begin="BEGIN IMMEDIATE") if self.dialect_is_sqlite else plain
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction seeing one consistent snapshot."""
        if self._closed:
            raise AuditError("this AuditLog is closed; open a new one")
        with self._engine.connect() as plain:
            conn = plain if self.dialect_is_sqlite else plain.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _schema_complete(self) -> bool:
        """PostgreSQL: tables, head row and all three triggers already there (then no DDL, no DDL locks)."""
        try:
            with self._read() as conn:
                triggers = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                        "WHERE c.relnamespace = current_schema()::regnamespace AND t.tgname IN "
                        "('audit_records_no_update_delete', 'audit_records_no_truncate', 'audit_head_no_delete')"
                    )
                ).scalar_one()
                head = conn.execute(_SELECT_HEAD).first() if triggers == 3 else None
        except SQLAlchemyError:
            return False
        return head is not None

    def _create_schema(self) -> None:
        if not self.dialect_is_sqlite and self._schema_complete():
            return
        try:
            with self._write() as conn:
                if not self.dialect_is_sqlite:
                    # Two processes opening a fresh database at once must not race on CREATE TABLE.
                    conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
                SQLModel.metadata.create_all(conn, tables=_TABLES, checkfirst=True)
                for ddl in _SQLITE_TRIGGERS if self.dialect_is_sqlite else _PG_TRIGGERS:
                    conn.exec_driver_sql(ddl)
                conn.execute(
                    text(
                        "INSERT INTO audit_head (id, seq, hash, algorithm) VALUES (1, 0, :genesis, :algorithm) "
                        "ON CONFLICT (id) DO NOTHING"
                    ),
                    {"genesis": GENESIS_HASH, "algorithm": self._hasher.algorithm},
                )
        except SQLAlchemyError as exc:
            raise AuditError(
                f"cannot create the audit log in {self._display}: {exc.__class__.__name__}: {exc}"
            ) from exc

    def _check_schema(self) -> None:
        try:
            with self._read() as conn:
                head = conn.execute(_SELECT_HEAD).first()
        except SQLAlchemyError as exc:
            raise AuditError(f"no audit log in {self._display}: {exc.__class__.__name__}: {exc.args[0]}") from exc
        if head is None:
            raise AuditError(f"the audit log in {self._display} has no head row (audit_head is empty)")
        self._stored_algorithm = str(head[2])

    # ------------------------------------------------------------------ API

    @property
    def algorithm(self) -> str:
        """How this handle hashes: "sha256" or "hmac-sha256"."""
        return self._hasher.algorithm

    def append(self, kind: str, payload: dict[str, Any], *, incident_id: str | None, ts: datetime) -> AuditRecord:
        """Add one record at the head of the chain, atomically; returns it with its seq and hash."""
        if not isinstance(kind, str) or not kind:
            raise AuditError(f"audit record kind must be a non-empty string, got {kind!r}")
        if not isinstance(payload, dict):
            raise AuditError(f"audit payload for kind {kind!r} must be a dict, got {type(payload).__name__}")
        if incident_id is not None and not isinstance(incident_id, str):
            raise AuditError(f"incident_id for kind {kind!r} must be a string or None, got {incident_id!r}")
        try:
            # Exactly domain.canonical.canonical_json(payload), split in two so the JSON data can be
            # returned without parsing the text back (tests/audit/test_chain.py checks they agree).
            plain = to_jsonable(payload)
            payload_json = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            ts_text = format_ts(ts)
        except (TypeError, ValueError) as exc:
            raise AuditError(f"audit record of kind {kind!r} cannot be written: {exc}") from exc
        if self._stored_algorithm != self._hasher.algorithm:
            raise AuditError(
                f"the audit log in {self._display} is chained with {self._stored_algorithm}, but this handle "
                f"hashes with {self._hasher.algorithm}; open it with the same HMAC key it was created with"
            )
        seq, prev_hash, digest = self._append_raw(ts_text, incident_id, kind, payload_json)
        return AuditRecord(
            seq=seq,
            ts=ts.astimezone(UTC),
            incident_id=incident_id,
            kind=kind,
            payload=plain,
            payload_json=payload_json,
            prev_hash=prev_hash,
            hash=digest,
        )

    def _append_raw(self, ts_text: str, incident_id: str | None, kind: str, payload_json: str) -> tuple[int, str, str]:
        """The hot path, on the pooled DBAPI connection: lock the head, insert, advance, commit."""
        if self._closed:
            raise AuditError("this AuditLog is closed; open a new one")
        sqlite = self.dialect_is_sqlite
        mark = "?" if sqlite else "%s"
        raw = self._engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                if sqlite:
                    cur.execute("BEGIN IMMEDIATE")
                    cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
                else:
                    cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
                head = cur.fetchone()
                if head is None:
                    raise AuditError(f"the audit log in {self._display} has no head row (audit_head is empty)")
                seq = int(head[0]) + 1
                prev_hash = str(head[1])
                digest = self._hasher.record_hash(seq, ts_text, incident_id, kind, payload_json, prev_hash)
                cur.execute(
                    f"INSERT INTO audit_records ({_COLUMNS}) VALUES ({', '.join([mark] * 7)})",
                    (seq, ts_text, incident_id, kind, payload_json, prev_hash, digest),
                )
                cur.execute(f"UPDATE audit_head SET seq = {mark}, hash = {mark} WHERE id = 1", (seq, digest))
                if sqlite:
                    cur.execute("COMMIT")
                else:
                    raw.commit()
            except BaseException:
                if sqlite:
                    if raw.driver_connection.in_transaction:  # type: ignore[union-attr]
                        cur.execute("ROLLBACK")
                else:
                    raw.rollback()
                raise
            finally:
                cur.close()
        except AuditError:
            raise
        except Exception as exc:
            raise AuditError(f"cannot append {kind!r} to the audit log in {self._display}: {exc}") from exc
        finally:
            raw.close()
        return seq, prev_hash, digest

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """A raw DBAPI connection inside one read-only snapshot transaction (the fast read path)."""
        if self._closed:
            raise AuditError("this AuditLog is closed; open a new one")
        raw = self._engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            if self.dialect_is_sqlite:
                driver.execute("BEGIN")
                try:
                    yield driver
                finally:
                    driver.execute("ROLLBACK")
            else:
                import psycopg

                driver.rollback()
                driver.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                driver.read_only = True
                try:
                    yield driver
                finally:
                    driver.rollback()
                    driver.isolation_level = None
                    driver.read_only = None
        finally:
            raw.close()

    def _stream(self, driver: Any, sql: str, params: tuple[Any, ...]) -> Iterator[Row]:
        """Rows of `sql` (written with ? placeholders), fetched in batches; a server-side cursor on PostgreSQL."""
        if self.dialect_is_sqlite:
            cur = driver.execute(sql, params)
            try:
                while batch := cur.fetchmany(5000):
                    yield from batch
            finally:
                cur.close()
        else:
            with driver.cursor(name=f"audit_{uuid.uuid4().hex[:8]}") as cur:
                cur.itersize = 5000
                cur.execute(sql.replace("?", "%s"), params)
                yield from cur

    def records(
        self, *, incident_id: str | None = None, kind: str | None = None, after_seq: int = 0
    ) -> Iterator[AuditRecord]:
        """Stream records in seq order, optionally for one incident and/or one kind."""
        where = ["seq > ?"]
        params: list[Any] = [after_seq]
        if incident_id is not None:
            where.append("incident_id = ?")
            params.append(incident_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT {_COLUMNS} FROM audit_records WHERE {' AND '.join(where)} ORDER BY seq"
        with self._snapshot() as driver:
            for row in self._stream(driver, sql, tuple(params)):
                yield _row_to_record(row)

    def head(self) -> AuditRecord | None:
        """The last record of the chain, or None for an empty log."""
        with self._read() as conn:
            row = conn.execute(text(f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq DESC LIMIT 1")).first()
        if row is None:
            return None
        return _row_to_record((int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6]))

    def verify(self, *, head_hash: str | None = None) -> VerifyReport:
        """Recompute every hash and link; name the first bad record and how it was tampered with.

        `head_hash` is a head hash the auditor kept from an earlier verify: the chain must still
        contain it, which catches a truncated tail.
        """
        if head_hash is not None:
            head_hash = head_hash.strip().lower()
            if len(head_hash) != 64 or any(c not in "0123456789abcdef" for c in head_hash):
                raise AuditError(f"--head must be a 64-character hex SHA-256, got {head_hash!r}")
        with self._snapshot() as driver:
            head = next(self._stream(driver, "SELECT seq, hash, algorithm FROM audit_head WHERE id = 1", ()))
            if not self._hasher.keyed and str(head[2]) != "sha256":
                return VerifyReport(
                    ok=False,
                    checked=0,
                    problem="malformed",
                    message=(
                        f"this log is chained with {head[2]}: give the HMAC key ({HMAC_KEY_ENV} or "
                        f"{HMAC_KEY_FILE_ENV}) to verify it"
                    ),
                    algorithm=self._hasher.algorithm,
                )
            rows = self._stream(driver, f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq", ())
            return walk(rows, self._hasher, head_hash=head_hash, stored_head=(int(head[0]), str(head[1])))

    def close(self) -> None:
        """Release database connections. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
