"""Grouping anomalies into incidents uses the anomalies' own timestamps, never the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain import Anomaly, Direction
from domain.clock import VirtualClock
from runtime.audit import AuditLog
from runtime.journal import Journal
from runtime.store import IncidentStore, engine_for
from runtime.supervisor import Supervisor, SupervisorSettings

WALL = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _anomaly(service: str, ts: datetime) -> Anomaly:
    return Anomaly(
        id=f"a-{service}-{ts:%H%M%S}",
        service=service,
        signal="error_rate",
        detector="test",
        ts=ts,
        direction=Direction.UP,
        baseline=0.01,
        current=0.4,
    )


def _supervisor(tmp_path: Path, clock: VirtualClock) -> tuple[Supervisor, IncidentStore]:
    store = IncidentStore(engine_for(str(tmp_path / "incidents.db")))
    journal = Journal(AuditLog(str(tmp_path / "audit.db")), clock)
    # on_anomalies never touches the graph; the graph only runs from tick().
    return Supervisor(graph=None, store=store, journal=journal, clock=clock, settings=SupervisorSettings()), store


@pytest.mark.parametrize("skew", [timedelta(hours=-3), timedelta(minutes=-10), timedelta(hours=2)])
def test_correlated_anomalies_group_whatever_the_data_clock_skew(tmp_path: Path, skew: timedelta) -> None:
    """Two services failing 30 s apart in data time join one incident even when data time is far from the wall clock."""
    clock = VirtualClock(WALL)
    supervisor, store = _supervisor(tmp_path, clock)
    first = supervisor.on_anomalies([_anomaly("chat", WALL + skew)])
    clock.advance(5)
    second = supervisor.on_anomalies([_anomaly("search", WALL + skew + timedelta(seconds=30))])
    assert first == second
    rows = store.list(limit=10)
    assert len(rows) == 1 and rows[0].services == ["chat", "search"]


def test_anomaly_just_before_the_onset_joins_and_moves_the_onset(tmp_path: Path) -> None:
    """A symptom stamped shortly before the incident's onset joins it and becomes the new onset."""
    clock = VirtualClock(WALL)
    supervisor, store = _supervisor(tmp_path, clock)
    data = WALL - timedelta(hours=1)
    supervisor.on_anomalies([_anomaly("chat", data)])
    supervisor.on_anomalies([_anomaly("search", data - timedelta(seconds=20))])
    [row] = store.list(limit=10)
    assert datetime.fromisoformat(row.onset) == data - timedelta(seconds=20)


def test_anomalies_far_apart_in_data_time_open_separate_incidents(tmp_path: Path) -> None:
    """Anomalies arriving in the same wall-clock second but hours apart in data time are not grouped."""
    clock = VirtualClock(WALL)
    supervisor, store = _supervisor(tmp_path, clock)
    supervisor.on_anomalies([_anomaly("chat", WALL - timedelta(hours=2))])
    supervisor.on_anomalies([_anomaly("search", WALL)])
    assert len(store.list(limit=10)) == 2
