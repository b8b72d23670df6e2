"""The supervisor survives the crash windows the chaos harness found."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from domain import ActionName, Anomaly, Direction, IncidentState, VirtualClock
from runtime.gameday import FleetAdapter
from runtime.loop import ControlLoop, LoopOptions
from runtime.ports import TelemetryBatch
from runtime.store import IncidentRow
from simulations import load_scenario
from tools import CallableAdapter, GuardConfig

SCENARIO = Path(__file__).resolve().parents[2] / "simulations" / "scenarios" / "provider_outage.yaml"


def _loop(db: str) -> tuple[ControlLoop, VirtualClock]:
    fleet = load_scenario(SCENARIO).build_fleet()
    clock = VirtualClock(fleet.now)
    adapter = FleetAdapter(fleet, clock)
    options = LoopOptions(db=db, guard=GuardConfig(allow={a: ["*"] for a in ActionName}))
    loop = ControlLoop(options, clock=clock, adapter=CallableAdapter(adapter.call, adapter.lookup))
    loop.telemetry.set_topology(fleet.topology())
    batch = fleet.advance(1800)
    loop.telemetry.add_samples(batch.samples)
    clock.set(fleet.now)
    return loop, clock


def _anomaly(clock: VirtualClock) -> Anomaly:
    return Anomaly(
        id="support-chat/error_rate/robust/x",
        service="support-chat",
        signal="error_rate",
        detector="robust",
        ts=clock.now(),
        direction=Direction.UP,
        baseline=0.002,
        current=0.4,
    )


def test_an_incident_killed_before_its_first_checkpoint_is_started_on_recovery(tmp_path: Path) -> None:
    """Marked started but never checkpointed (killed in between): recovery starts it, not leaves it open."""
    db = str(tmp_path / "h.sqlite")
    loop, clock = _loop(db)
    anomaly = _anomaly(clock)
    loop.supervisor.on_anomalies([anomaly])
    (row,) = loop.store.list()
    loop.store.update(row.id, graph_started=True)  # the crash window: flag written, graph never ran
    loop.close()

    restarted, clock2 = _loop(db)
    clock2.set(clock.now() + timedelta(minutes=2))
    restarted.recover()
    after = restarted.store.get(row.id)
    assert after is not None and after.state != IncidentState.OPEN.value
    assert restarted.graph.get_state({"configurable": {"thread_id": row.id}}).values
    restarted.close()


def test_a_redelivered_anomaly_never_reopens_its_closed_incident(tmp_path: Path) -> None:
    """The same anomaly seen again after its incident closed is recognised, not inserted again (no crash)."""
    loop, clock = _loop(str(tmp_path / "h.sqlite"))
    anomaly = _anomaly(clock)
    (first,) = loop.supervisor.on_anomalies([anomaly])
    loop.store.update(first, state=IncidentState.RESOLVED.value)
    assert loop.supervisor.on_anomalies([anomaly]) == [first]
    rows: list[IncidentRow] = loop.store.list()
    assert [r.id for r in rows] == [first] and rows[0].state == IncidentState.RESOLVED.value
    loop.ingest(TelemetryBatch())  # the loop keeps going
    assert json.loads(rows[0].services_json) == ["support-chat"]
    loop.close()


def test_a_store_that_lags_its_checkpoint_is_resynced_on_recovery(tmp_path: Path) -> None:
    """Killed between a graph step and the store sync: recovery copies the checkpoint's state over."""
    db = str(tmp_path / "h.sqlite")
    loop, clock = _loop(db)
    (incident_id,) = loop.supervisor.on_anomalies([_anomaly(clock)])
    clock.advance(120)
    loop.supervisor.tick()  # starts the graph; it runs until it closes or waits
    done = loop.store.get(incident_id)
    assert done is not None and done.state != IncidentState.OPEN.value
    loop.store.update(incident_id, state=IncidentState.OPEN.value, waiting_for=None)  # the lost sync
    loop.close()

    restarted, _ = _loop(db)
    restarted.recover()
    after = restarted.store.get(incident_id)
    assert after is not None and (after.state, after.waiting_for) == (done.state, done.waiting_for)
    restarted.close()
