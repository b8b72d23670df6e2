"""A settling incident takes anomalies close to its nearest member, within a span and a settle cap.

A cascade whose symptoms arrive in a chain (each within the group window of the previous) stays one
incident; a steady trickle can neither stretch one incident over unbounded data time nor keep it
from being diagnosed past `settle_max_s`. Real supervisor, store and journal on SQLite; the graph is
a recorder of which incident threads were started and when.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from domain import Anomaly, Direction, VirtualClock
from runtime.audit import AuditLog
from runtime.journal import Journal
from runtime.store import IncidentRow, IncidentStore, engine_for
from runtime.supervisor import Supervisor, SupervisorSettings

WALL = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
DEFAULTS = SupervisorSettings()


class RecordingGraph:
    """Stands in for the incident graph: notes when each incident's thread is started."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.started: dict[str, datetime] = {}

    def invoke(self, graph_input: Any, config: dict[str, Any], **_: Any) -> None:
        self.started.setdefault(config["configurable"]["thread_id"], self._clock.now())

    def get_state(self, config: dict[str, Any]) -> Any:
        return SimpleNamespace(values={"state": "diagnosing"}, interrupts=(), tasks=())


def _world(
    tmp_path: Path, settings: SupervisorSettings = DEFAULTS
) -> tuple[Supervisor, IncidentStore, RecordingGraph, VirtualClock]:
    clock = VirtualClock(WALL)
    store = IncidentStore(engine_for(str(tmp_path / "h.sqlite")))
    journal = Journal(AuditLog(str(tmp_path / "h.sqlite")), clock)
    graph = RecordingGraph(clock)
    supervisor = Supervisor(graph=graph, store=store, journal=journal, clock=clock, settings=settings)
    return supervisor, store, graph, clock


def _anomaly(service: str, ts: datetime) -> Anomaly:
    return Anomaly(
        id=f"{service}/error_rate/robust/{ts:%H%M%S}",
        service=service,
        signal="error_rate",
        detector="robust",
        ts=ts,
        direction=Direction.UP,
        baseline=0.01,
        current=0.3,
    )


def _chain(start: datetime, step_s: float, n: int) -> list[Anomaly]:
    return [_anomaly(f"svc-{i:02d}", start + timedelta(seconds=i * step_s)) for i in range(n)]


def _only(store: IncidentStore) -> IncidentRow:
    (row,) = store.list(limit=100)
    return row


# -- a chain stays one incident ----------------------------------------------------------------


def test_a_chained_cascade_delivered_at_once_stays_one_incident(tmp_path: Path) -> None:
    """Six services failing 150 s apart (750 s end to end, past the 180 s window of the first) are one incident."""
    supervisor, store, _, _ = _world(tmp_path)
    chain = _chain(WALL - timedelta(minutes=20), 150, 6)
    touched = supervisor.on_anomalies(chain)
    assert len(touched) == 1
    row = _only(store)
    assert row.services == sorted(a.service for a in chain) and row.anomaly_count == 6
    assert datetime.fromisoformat(row.onset) == chain[0].ts


def test_a_chain_arriving_newest_first_stays_one_incident(tmp_path: Path) -> None:
    """Symptoms reported in reverse order chain backwards from the nearest member, moving the onset."""
    supervisor, store, _, clock = _world(tmp_path)
    chain = _chain(WALL, 150, 4)
    for anomaly in reversed(chain):
        supervisor.on_anomalies([anomaly])
        clock.advance(5)
    row = _only(store)
    assert row.anomaly_count == 4 and datetime.fromisoformat(row.onset) == chain[0].ts


def test_a_chain_arriving_poll_by_poll_while_settling_stays_one_incident(tmp_path: Path) -> None:
    """A cascade seen over several polls inside the settle period is diagnosed as one incident with every service."""
    supervisor, store, graph, clock = _world(tmp_path)
    for anomaly in _chain(WALL - timedelta(minutes=10), 170, 5):
        supervisor.on_anomalies([anomaly])
        clock.advance(10)
        supervisor.tick()
    row = _only(store)
    assert len(row.services) == 5 and not graph.started
    clock.advance(DEFAULTS.settle_s)
    supervisor.tick()
    assert list(graph.started) == [row.id]


def test_a_gap_wider_than_the_window_splits_even_inside_a_chain(tmp_path: Path) -> None:
    """The window is measured to the nearest member: one window past the chain's end opens an incident of its own."""
    supervisor, store, _, _ = _world(tmp_path)
    chain = _chain(WALL, 150, 3)
    late = _anomaly("late", chain[-1].ts + timedelta(seconds=DEFAULTS.group_window_s))
    supervisor.on_anomalies([*chain, late])
    rows = sorted(store.list(limit=100), key=lambda r: r.onset)
    assert [r.anomaly_count for r in rows] == [3, 1] and rows[1].services == ["late"]


def test_a_started_incident_no_longer_takes_other_services(tmp_path: Path) -> None:
    """Grouping across services happens only while an incident settles; after diagnosis starts, news is new."""
    supervisor, store, _, clock = _world(tmp_path)
    supervisor.on_anomalies([_anomaly("first", WALL)])
    clock.advance(DEFAULTS.settle_s)
    supervisor.tick()
    supervisor.on_anomalies([_anomaly("second", WALL + timedelta(seconds=30))])
    assert len(store.list(limit=100)) == 2


# -- a trickle cannot hold an incident forever -------------------------------------------------


def test_a_steady_trickle_cannot_stretch_one_incident_past_its_span(tmp_path: Path) -> None:
    """A backlog of symptoms 120 s apart over an hour splits into incidents none spanning more than group_span_s."""
    supervisor, store, _, _ = _world(tmp_path)
    trickle = _chain(WALL - timedelta(hours=2), 120, 30)
    supervisor.on_anomalies(trickle)
    rows = store.list(limit=100)
    assert len(rows) > 1 and sum(r.anomaly_count for r in rows) == len(trickle)
    by_service = {a.service: a.ts for a in trickle}
    for row in rows:
        times = [by_service[s] for s in row.services]
        assert (max(times) - min(times)).total_seconds() <= DEFAULTS.group_span_s


@pytest.mark.parametrize("settle_max_s", [DEFAULTS.settle_max_s, 180.0, 300.0])
def test_a_steady_trickle_cannot_delay_diagnosis_past_the_settle_cap(tmp_path: Path, settle_max_s: float) -> None:
    """New symptoms every 15 s may extend the settle period, but diagnosis starts by settle_max_s after opening."""
    settings = replace(DEFAULTS, settle_max_s=settle_max_s)
    supervisor, store, graph, clock = _world(tmp_path, settings)
    for i in range(60):  # 15 minutes of trickle, far past any cap
        supervisor.on_anomalies([_anomaly(f"svc-{i:02d}", clock.now())])
        supervisor.tick()
        clock.advance(15)
    first = min(store.list(limit=100), key=lambda r: r.opened_at)
    started_after_s = (graph.started[first.id] - datetime.fromisoformat(first.opened_at)).total_seconds()
    assert settings.settle_s <= started_after_s <= settle_max_s
    assert datetime.fromisoformat(first.settle_until) <= datetime.fromisoformat(first.opened_at) + timedelta(
        seconds=settle_max_s
    )


def test_a_late_symptom_extends_the_settle_period_when_allowed(tmp_path: Path) -> None:
    """With room under the cap, a symptom joining near the end of the settle period buys the cascade settle_s more."""
    supervisor, store, graph, clock = _world(tmp_path, replace(DEFAULTS, settle_max_s=180.0))
    supervisor.on_anomalies([_anomaly("first", WALL)])
    clock.advance(50)
    supervisor.on_anomalies([_anomaly("second", WALL + timedelta(seconds=50))])
    clock.advance(20)  # 70 s after opening: past settle_s, but the second symptom came 20 s ago
    supervisor.tick()
    assert not graph.started
    clock.advance(40)
    supervisor.tick()
    assert list(graph.started) == [_only(store).id]


def test_by_default_the_settle_deadline_is_fixed(tmp_path: Path) -> None:
    """With the default cap (settle_max_s == settle_s), joining symptoms never postpone diagnosis."""
    supervisor, store, graph, clock = _world(tmp_path)
    supervisor.on_anomalies([_anomaly("first", WALL)])
    clock.advance(50)
    supervisor.on_anomalies([_anomaly("second", WALL + timedelta(seconds=50))])
    clock.advance(10)
    supervisor.tick()
    assert list(graph.started) == [_only(store).id]


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"settle_max_s": 30.0}, "settle_max_s (30.0) must be >= settle_s (60.0)"),
        ({"group_span_s": 60.0}, "group_span_s (60.0) must be >= group_window_s (180.0)"),
        ({"cooldown_s": -1.0}, "cooldown_s must be >= 0"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_field_named(changes: dict[str, float], message: str) -> None:
    """A cap below what it caps, or a negative duration, is an error naming the setting."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        replace(DEFAULTS, **changes)
