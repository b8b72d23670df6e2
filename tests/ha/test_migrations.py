"""Schema migrations: `homeostat db upgrade` creates the store tables and keeps existing rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from runtime.cli import app
from runtime.db_cli import current_revision, head_revision, upgrade
from runtime.store import ApprovalAnswerRow, IncidentRow, IncidentStore, StateBlobStore, engine_for


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _bare(url: str) -> str:
    return url.removeprefix("sqlite:///")


def test_upgrade_creates_the_schema_on_an_empty_database(db_url: str) -> None:
    """A fresh database reaches the head revision with every store table present."""
    assert current_revision(db_url) is None
    assert upgrade(db_url) == head_revision()
    engine = engine_for(_bare(db_url))
    with engine.connect() as conn:
        for table in ("incidents", "approval_answers", "state_blobs", "leader_lease"):
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()


def test_upgrade_keeps_rows_written_before_migrations_existed(db_url: str) -> None:
    """A database made by an older release (tables, no revision) keeps its incidents, answers and blobs."""
    engine = engine_for(_bare(db_url))
    store, blobs = IncidentStore(engine), StateBlobStore(engine)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    store.add(
        IncidentRow(
            id="i-1",
            state="awaiting_approval",
            onset=now.isoformat(),
            opened_at=now.isoformat(),
            updated_at=now.isoformat(),
            settle_until=now.isoformat(),
        )
    )
    store.queue_answer(
        ApprovalAnswerRow(incident_id="i-1", approver="ana", roles_json="[]", approve=True, ts=now.isoformat())
    )
    blobs.put("detection", b"\x00state", now)
    engine.dispose()

    upgrade(db_url)
    upgrade(db_url)  # running it again is a no-op

    engine = engine_for(_bare(db_url))
    store, blobs = IncidentStore(engine), StateBlobStore(engine)
    row = store.get("i-1")
    assert row is not None and row.state == "awaiting_approval"
    assert [a.approver for a in store.undelivered_answers("i-1")] == ["ana"]
    assert blobs.get("detection") == b"\x00state"
    assert current_revision(db_url) == head_revision()
    engine.dispose()


def test_db_upgrade_command_reports_the_revision_and_errors_name_the_database(tmp_path: Path) -> None:
    """The CLI prints the revision reached, and an unreachable database exits 1 with its address."""
    runner = CliRunner()
    ok = runner.invoke(app, ["db", "upgrade", "--db", str(tmp_path / "x.db")])
    assert ok.exit_code == 0, ok.output
    assert f"at revision {head_revision()}" in ok.output
    bad = runner.invoke(app, ["db", "upgrade", "--db", "postgresql://u:secret@127.0.0.1:1/nowhere"])
    assert bad.exit_code == 1
    assert "127.0.0.1:1/nowhere" in bad.output and "secret" not in bad.output
