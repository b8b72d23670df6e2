"""After an action resolved an incident, only that action's expected costs are absorbed into it.

The fixture plays the shipped provider outage through the real loop (detectors, incident graph,
scripted approver, in-process fleet) until the approved failover has resolved the incident; each
test then hands the supervisor a new anomaly during the cooldown, on a copy of that SQLite file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain import ActionName, Anomaly, Direction, Signal, VirtualClock, bad_direction
from runtime.audit import AuditLog
from runtime.gameday import play_scenario
from runtime.journal import Journal
from runtime.loop import ControlLoop
from runtime.store import IncidentRow, IncidentStore, engine_for
from runtime.supervisor import Supervisor, SupervisorSettings
from simulations import load_scenario
from tools import CATALOG
from tools._catalog import ExpectedCost

SCENARIO = Path(__file__).resolve().parents[2] / "simulations" / "scenarios" / "provider_outage.yaml"
COOLDOWN_S = SupervisorSettings().cooldown_s


@dataclass(frozen=True)
class Resolved:
    db: Path
    incident_id: str
    closed_at: datetime
    levels: dict[tuple[str, str], tuple[float, float]]
    """(service, signal) -> (baseline, incident level) of the anomalies the incident was about."""


def _failover_resolved(loop: ControlLoop) -> bool:
    return any(r.state == "resolved" and r.action == ActionName.FAILOVER_PROVIDER for r in loop.store.list())


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> Resolved:
    db = tmp_path_factory.mktemp("outage") / "h.sqlite"
    result = play_scenario(load_scenario(SCENARIO), db=str(db), stop_when=_failover_resolved)
    (row,) = [r for r in result.incidents if r.action == ActionName.FAILOVER_PROVIDER]
    levels: dict[tuple[str, str], tuple[float, float]] = {}
    for record in AuditLog(str(db)).records(incident_id=row.id):
        if record.kind == "action_intent":
            break
        if record.kind in ("incident_opened", "observation"):
            for raw in record.payload.get("anomalies") or [record.payload["anomaly"]]:
                levels[(raw["service"], raw["signal"])] = (raw["baseline"], raw["current"])
    return Resolved(db, row.id, datetime.fromisoformat(row.updated_at), levels)


@dataclass
class Harness:
    supervisor: Supervisor
    store: IncidentStore
    audit: AuditLog
    clock: VirtualClock

    def records(self, incident_id: str, kind: str) -> list[dict[str, Any]]:
        return [r.payload for r in self.audit.records(incident_id=incident_id, kind=kind)]

    def row(self, incident_id: str) -> IncidentRow:
        row = self.store.get(incident_id)
        assert row is not None
        return row


@pytest.fixture
def harness(resolved: Resolved, tmp_path: Path) -> Harness:
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{resolved.db}{suffix}")
        if source.exists():
            shutil.copy(source, tmp_path / f"h.sqlite{suffix}")
    db = str(tmp_path / "h.sqlite")
    clock = VirtualClock(resolved.closed_at + timedelta(minutes=2))
    audit = AuditLog(db)
    store = IncidentStore(engine_for(db))
    # on_anomalies never touches the graph; only tick() runs it.
    supervisor = Supervisor(graph=None, store=store, journal=Journal(audit, clock), clock=clock)
    return Harness(supervisor, store, audit, clock)


def _anomaly(clock: VirtualClock, service: str, signal: str, baseline: float, current: float) -> Anomaly:
    direction = Direction.UP if current > baseline else Direction.DOWN
    return Anomaly(
        id=f"{service}/{signal}/robust/after",
        service=service,
        signal=signal,
        detector="robust",
        ts=clock.now(),
        direction=direction,
        baseline=baseline,
        current=current,
    )


def _part_way(resolved: Resolved, service: str, signal: str, share: float) -> tuple[float, float]:
    """A level `share` of the way from the incident's baseline to the level it reached."""
    baseline, level = resolved.levels[(service, signal)]
    return baseline, baseline + share * (level - baseline)


# -- absorbed: the failover's own price -------------------------------------------------------


@pytest.mark.parametrize("service", ["support-chat", "doc-summarizer"])
def test_a_slightly_slower_backup_is_absorbed_as_the_failovers_cost(
    resolved: Resolved, harness: Harness, service: str
) -> None:
    """A small latency rise on a moved service during the cooldown is recorded on the resolved incident."""
    baseline, current = _part_way(resolved, service, Signal.LATENCY_P95_MS, 0.2)
    anomaly = _anomaly(harness.clock, service, Signal.LATENCY_P95_MS, baseline, current)
    before = harness.row(resolved.incident_id).anomaly_count
    assert harness.supervisor.on_anomalies([anomaly]) == [resolved.incident_id]
    assert len(harness.store.list()) == 3  # the two earlier transient incidents and the failover one
    row = harness.row(resolved.incident_id)
    assert row.state == "resolved" and row.anomaly_count == before + 1
    (observation,) = [p for p in harness.records(resolved.incident_id, "observation") if "absorbed" in p]
    assert observation["anomaly"]["id"] == anomaly.id
    assert "expected cost of failover_provider" in observation["absorbed"]


def test_a_higher_price_on_the_backup_is_absorbed(resolved: Resolved, harness: Harness) -> None:
    """Cost per request rising on a moved service is a declared cost of failing over, not news."""
    anomaly = _anomaly(harness.clock, "support-chat", Signal.COST_PER_1K_REQUESTS, 1.4, 1.9)
    assert harness.supervisor.on_anomalies([anomaly]) == [resolved.incident_id]
    assert not [r for r in harness.store.list() if r.id != resolved.incident_id and not r.final]


def test_an_improvement_is_absorbed(resolved: Resolved, harness: Harness) -> None:
    """A signal moving the good way (quality up) after the action is recorded, never opened as a fault."""
    anomaly = _anomaly(harness.clock, "doc-summarizer", Signal.QUALITY_SCORE, 0.80, 0.86)
    assert harness.supervisor.on_anomalies([anomaly]) == [resolved.incident_id]


# -- news: a new incident that follows the resolved one ------------------------------------


NOT_A_COST = "not an expected cost of failover_provider"


@pytest.mark.parametrize(
    ("move", "because"),
    [
        (("support-chat", Signal.ERROR_RATE, 0.002, 0.3), "recurrence"),
        (("doc-summarizer", Signal.QUALITY_SCORE, 0.85, 0.55), NOT_A_COST),
        (("support-chat", Signal.HALLUCINATION_RATE, 0.02, 0.09), NOT_A_COST),
        (("support-chat", Signal.REQUEST_RATE, 20.0, 4.0), NOT_A_COST),
    ],
)
def test_an_anomaly_the_failover_does_not_explain_opens_a_new_incident_that_follows_it(
    resolved: Resolved, harness: Harness, move: tuple[str, str, float, float], because: str
) -> None:
    """An error surge, a quality collapse or a traffic drop during the cooldown is a new incident linked to the old."""
    service, signal, baseline, current = move
    anomaly = _anomaly(harness.clock, service, signal, baseline, current)
    (new_id,) = harness.supervisor.on_anomalies([anomaly])
    assert new_id != resolved.incident_id
    new = harness.row(new_id)
    assert new.state == "open" and new.services == [service]
    (opened,) = harness.records(new_id, "incident_opened")
    assert opened["follows"] == resolved.incident_id
    assert because in opened["follows_because"]
    shown = harness.supervisor.get_incident(new_id)  # what the API and the console show a person
    assert shown is not None and shown["follows"] == resolved.incident_id and because in shown["follows_because"]
    assert [a["id"] for a in opened["anomalies"]] == [anomaly.id]
    assert not [p for p in harness.records(resolved.incident_id, "observation") if p["anomaly"]["id"] == anomaly.id]


@pytest.mark.parametrize("signal", [Signal.LATENCY_P95_MS, Signal.LATENCY_P50_MS])
def test_latency_back_near_the_outage_level_is_a_recurrence(resolved: Resolved, harness: Harness, signal: str) -> None:
    """The incident's own signal coming back most of the way to its incident level opens a new incident."""
    baseline, current = _part_way(resolved, "support-chat", signal, 0.9)
    (new_id,) = harness.supervisor.on_anomalies([_anomaly(harness.clock, "support-chat", signal, baseline, current)])
    assert new_id != resolved.incident_id
    (opened,) = harness.records(new_id, "incident_opened")
    assert opened["follows"] == resolved.incident_id and "recurrence" in opened["follows_because"]


def test_later_symptoms_join_the_new_incident_not_the_resolved_one(resolved: Resolved, harness: Harness) -> None:
    """Once a new incident is open on the service, the next anomaly there joins it, even a failover-like cost."""
    surge = _anomaly(harness.clock, "support-chat", Signal.ERROR_RATE, 0.002, 0.3)
    (new_id,) = harness.supervisor.on_anomalies([surge])
    harness.clock.advance(20)
    baseline, current = _part_way(resolved, "support-chat", Signal.LATENCY_P95_MS, 0.2)
    slower = _anomaly(harness.clock, "support-chat", Signal.LATENCY_P95_MS, baseline, current)
    assert harness.supervisor.on_anomalies([slower]) == [new_id]
    assert harness.row(new_id).anomaly_count == 2


def test_after_the_cooldown_even_an_expected_cost_opens_a_plain_incident(resolved: Resolved, harness: Harness) -> None:
    """Past the cooldown the resolved incident takes nothing: a latency rise is a new incident following nobody."""
    harness.clock.set(resolved.closed_at + timedelta(seconds=COOLDOWN_S + 1))
    baseline, current = _part_way(resolved, "support-chat", Signal.LATENCY_P95_MS, 0.2)
    (new_id,) = harness.supervisor.on_anomalies(
        [_anomaly(harness.clock, "support-chat", Signal.LATENCY_P95_MS, baseline, current)]
    )
    assert new_id != resolved.incident_id
    (opened,) = harness.records(new_id, "incident_opened")
    assert "follows" not in opened


def test_a_service_the_action_did_not_change_is_not_its_business(resolved: Resolved, harness: Harness) -> None:
    """A latency rise on a service the failover never moved opens a plain incident."""
    anomaly = _anomaly(harness.clock, "kb-retriever", Signal.LATENCY_P95_MS, 100.0, 400.0)
    (new_id,) = harness.supervisor.on_anomalies([anomaly])
    assert new_id != resolved.incident_id
    assert "follows" not in harness.records(new_id, "incident_opened")[0]


def test_a_redelivered_anomaly_of_the_resolved_incident_is_not_news(resolved: Resolved, harness: Harness) -> None:
    """An anomaly the resolved incident already holds, seen again, neither opens an incident nor is recorded twice."""
    (opened,) = harness.records(resolved.incident_id, "incident_opened")
    again = Anomaly.model_validate(opened["anomalies"][0])
    observations = len(harness.records(resolved.incident_id, "observation"))
    assert harness.supervisor.on_anomalies([again]) == [resolved.incident_id]
    assert len(harness.records(resolved.incident_id, "observation")) == observations
    assert len(harness.store.list()) == 3


# -- the catalog's declarations ----------------------------------------------------------------


def test_no_action_declares_a_worsening_of_errors_quality_or_safety_as_its_cost() -> None:
    """Errors, quality, hallucinations, policy violations and PII alerts getting worse are never absorbed."""
    never = [
        Signal.ERROR_RATE,
        Signal.QUALITY_SCORE,
        Signal.HALLUCINATION_RATE,
        Signal.POLICY_VIOLATION_RATE,
        Signal.PII_ALERTS,
    ]
    for spec in CATALOG.values():
        for signal in never:
            assert not spec.expects(signal, bad_direction(signal)), (spec.name, signal)


def test_escalate_changes_nothing_so_expects_nothing() -> None:
    """An action that changes nothing declares no cost, and the catalog refuses one that would."""
    assert CATALOG[ActionName.ESCALATE].expected_costs == ()
    spec = CATALOG[ActionName.ESCALATE]
    with pytest.raises(ValueError, match="changes nothing"):
        type(spec)(
            name=spec.name,
            description=spec.description,
            params_model=spec.params_model,
            target_kind=spec.target_kind,
            reversible=spec.reversible,
            inverse=spec.inverse,
            recovery=spec.recovery,
            changes_nothing=True,
            expected_costs=(ExpectedCost(Signal.LATENCY_P95_MS.value, Direction.UP),),
        )


@pytest.mark.parametrize(
    ("cost", "signal", "direction", "covered"),
    [
        (ExpectedCost("latency_p95_ms", Direction.UP), "latency_p95_ms", Direction.UP, True),
        (ExpectedCost("latency_p95_ms", Direction.UP), "latency_p95_ms", Direction.DOWN, False),
        (ExpectedCost("latency_p95_ms", Direction.UP), "latency_p95_ms", Direction.BOTH, False),
        (ExpectedCost("latency_p95_ms", Direction.UP), "latency_p99_ms", Direction.UP, False),
        (ExpectedCost("tokens_per_request", Direction.BOTH), "tokens_per_request", Direction.DOWN, True),
        (ExpectedCost("tokens_per_request", Direction.BOTH), "tokens_per_request", Direction.BOTH, True),
    ],
)
def test_an_expected_cost_covers_only_its_signal_and_direction(
    cost: ExpectedCost, signal: str, direction: Direction, covered: bool
) -> None:
    """A cost declared one way never covers the other way, nor an anomaly whose direction is unknown."""
    assert cost.covers(signal, direction) is covered
