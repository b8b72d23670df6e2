"""Incidents and queued approval answers, in SQL (SQLite by default, PostgreSQL for replicas).

The LangGraph checkpointer holds each incident's full state; this store holds what the API,
the console and the scheduler need to find quickly: state, what the thread waits for and
until when, and approval answers given on any replica that the leader has yet to deliver.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Field, Session, SQLModel, create_engine, select

from domain import FINAL_STATES, IncidentState


class IncidentRow(SQLModel, table=True):
    __tablename__ = "incidents"

    id: str = Field(primary_key=True)
    state: str = Field(index=True)
    services_json: str = "[]"
    onset: str
    opened_at: str
    updated_at: str
    settle_until: str
    graph_started: bool = False
    waiting_for: str | None = None  # "approval" | "verify_wait" | None
    wait_payload_json: str | None = None
    deadline: str | None = None  # approval timeout or end of the recovery window (ISO, UTC)
    cause: str | None = None
    action: str | None = None
    target: str | None = None
    summary: str = ""
    anomaly_count: int = 0

    @property
    def services(self) -> list[str]:
        return list(json.loads(self.services_json))

    @property
    def final(self) -> bool:
        return IncidentState(self.state) in FINAL_STATES

    def as_dict(self) -> dict[str, Any]:
        data = self.model_dump()
        data["services"] = self.services
        data["wait"] = json.loads(self.wait_payload_json) if self.wait_payload_json else None
        del data["services_json"], data["wait_payload_json"]
        return data


class ApprovalAnswerRow(SQLModel, table=True):
    __tablename__ = "approval_answers"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(index=True)
    approver: str
    roles_json: str
    approve: bool
    comment: str = ""
    ts: str
    delivered: bool = Field(default=False, index=True)


class StateBlobRow(SQLModel, table=True):
    """Opaque state kept across restarts (detector checkpoints)."""

    __tablename__ = "state_blobs"

    name: str = Field(primary_key=True)
    data: bytes
    updated_at: str


class StateBlobStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        SQLModel.metadata.create_all(engine, tables=[StateBlobRow.__table__])  # type: ignore[attr-defined]

    def get(self, name: str) -> bytes | None:
        with Session(self._engine) as session:
            row = session.get(StateBlobRow, name)
            return None if row is None else row.data

    def put(self, name: str, data: bytes, at: datetime) -> None:
        with Session(self._engine) as session:
            row = session.get(StateBlobRow, name) or StateBlobRow(name=name, data=data, updated_at=at.isoformat())
            row.data, row.updated_at = data, at.isoformat()
            session.add(row)
            session.commit()


def engine_for(url: str) -> Engine:
    """An engine for a bare SQLite path or a SQLAlchemy URL; SQLite runs in WAL mode."""
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class IncidentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[IncidentRow.__table__, ApprovalAnswerRow.__table__])  # type: ignore[attr-defined]

    def add(self, row: IncidentRow) -> None:
        with Session(self._engine) as session:
            session.add(row)
            session.commit()

    def get(self, incident_id: str) -> IncidentRow | None:
        with Session(self._engine) as session:
            return session.get(IncidentRow, incident_id)

    def update(self, incident_id: str, **fields: Any) -> IncidentRow:
        with Session(self._engine) as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise KeyError(f"no incident {incident_id!r}")
            for name, value in fields.items():
                setattr(row, name, value)
            session.add(row)
            session.commit()
            session.refresh(row)
            return row

    def list(
        self, *, state: str | None = None, open_only: bool = False, prefix: str | None = None, limit: int = 1000
    ) -> list[IncidentRow]:
        with Session(self._engine) as session:
            query = select(IncidentRow).order_by(IncidentRow.opened_at.desc())  # type: ignore[attr-defined]
            if prefix is not None:
                query = query.where(IncidentRow.id.startswith(prefix + "-"))
            if state is not None:
                query = query.where(IncidentRow.state == state)
            if open_only:
                query = query.where(IncidentRow.state.not_in([s.value for s in FINAL_STATES]))  # type: ignore[attr-defined]
            return list(session.exec(query.limit(limit)))

    def queue_answer(self, answer: ApprovalAnswerRow) -> None:
        with Session(self._engine) as session:
            session.add(answer)
            session.commit()

    def undelivered_answers(self, incident_id: str | None = None) -> Sequence[ApprovalAnswerRow]:
        with Session(self._engine) as session:
            query = select(ApprovalAnswerRow).where(ApprovalAnswerRow.delivered == False)  # noqa: E712
            if incident_id is not None:
                query = query.where(ApprovalAnswerRow.incident_id == incident_id)
            return list(session.exec(query.order_by(ApprovalAnswerRow.id)))  # type: ignore[arg-type]

    def mark_delivered(self, answer_id: int) -> None:
        with Session(self._engine) as session:
            row = session.get(ApprovalAnswerRow, answer_id)
            if row is not None:
                row.delivered = True
                session.add(row)
                session.commit()


def iso(ts: datetime) -> str:
    return ts.isoformat()
