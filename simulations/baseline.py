"""The baseline controller the benchmark compares Homeostat with, in the style of progressive-delivery tools.

Static thresholds per signal, set from a warm-up window the way an operator would set them
after watching a dashboard; a breach that holds for three consecutive samples rolls back the
breaching service's most recent change. No diagnosis, no grouping, no constitution.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import ActionName, ChangeEvent, ChangeKind, Signal
from simulations._scenario import Scenario
from simulations.bench import ActionTaken, FaultOutcome, IncidentOutcome, PlayOutcome

WARMUP = timedelta(minutes=20)
CONSECUTIVE = 3  # Flagger-style failure threshold: this many bad samples in a row
COOLDOWN = timedelta(minutes=15)  # after acting on a service, wait before acting on it again

ROLLBACK: dict[ChangeKind, ActionName] = {
    ChangeKind.MODEL_VERSION: ActionName.ROLLBACK_MODEL_VERSION,
    ChangeKind.PROMPT_VERSION: ActionName.ROLLBACK_PROMPT_VERSION,
    ChangeKind.ROUTING: ActionName.REVERT_ROUTING,
    ChangeKind.PROVIDER: ActionName.FAILOVER_PROVIDER,
}


@dataclass(frozen=True, slots=True)
class Threshold:
    """Bad when value > baseline * ratio + delta (direction up) or < baseline * ratio - delta (down)."""

    direction: str
    ratio: float = 1.0
    delta: float = 0.0

    def limit(self, baseline: float) -> float:
        if self.direction == "up":
            return baseline * self.ratio + self.delta
        return baseline * self.ratio - self.delta

    def breached(self, value: float, limit: float) -> bool:
        return value > limit if self.direction == "up" else value < limit


#: The static rules, one per signal an operator would alert on.
THRESHOLDS: dict[str, Threshold] = {
    Signal.LATENCY_P95_MS: Threshold("up", ratio=1.5),
    Signal.ERROR_RATE: Threshold("up", delta=0.03),
    Signal.QUALITY_SCORE: Threshold("down", delta=0.08),
    Signal.HALLUCINATION_RATE: Threshold("up", delta=0.05),
    Signal.POLICY_VIOLATION_RATE: Threshold("up", delta=0.02),
    Signal.COST_PER_1K_REQUESTS: Threshold("up", ratio=1.6),
    Signal.TOKENS_PER_REQUEST: Threshold("up", ratio=1.3),
    Signal.PII_ALERTS: Threshold("up", delta=1.5),
    Signal.QUEUE_DEPTH: Threshold("up", delta=30.0),
}


def play_baseline(scenario: Scenario) -> PlayOutcome:
    """Play `scenario` under the threshold-and-rollback baseline; deterministic like the fleet."""
    fleet = scenario.build_fleet()
    end = fleet.now + timedelta(seconds=scenario.duration_s)
    warm: dict[tuple[str, str], list[float]] = {}
    limits: dict[tuple[str, str], float] = {}
    streak: dict[tuple[str, str], int] = {}
    last_change: dict[str, ChangeEvent] = {}
    last_acted: dict[str, datetime] = {}
    open_incident: dict[str, IncidentOutcome] = {}
    incidents: list[IncidentOutcome] = []
    actions: list[ActionTaken] = []
    while fleet.now < end:
        batch = fleet.advance(fleet.interval_s)
        now = fleet.now
        for change in batch.changes:
            if change.actor != "baseline":
                last_change[change.service] = change
        breached: set[str] = set()
        for sample in batch.samples:
            rule = THRESHOLDS.get(sample.signal)
            if rule is None:
                continue
            key = (sample.service, sample.signal)
            if now - scenario.start <= WARMUP:
                warm.setdefault(key, []).append(sample.value)
                continue
            if key not in limits:
                limits[key] = rule.limit(statistics.median(warm.get(key) or [sample.value]))
            streak[key] = streak.get(key, 0) + 1 if rule.breached(sample.value, limits[key]) else 0
            if streak[key] >= CONSECUTIVE:
                breached.add(sample.service)
        for service in sorted(breached):
            if service not in open_incident:
                incident = IncidentOutcome(id=f"baseline-{len(incidents) + 1}", opened_at=now, services=(service,))
                open_incident[service] = incident
                incidents.append(incident)
            acted = last_acted.get(service)
            if acted is not None and now - acted < COOLDOWN:
                continue
            latest = last_change.get(service)
            if latest is None or latest.kind not in ROLLBACK:
                continue
            action = ROLLBACK[latest.kind]
            idempotency_key = f"baseline-{service}-{len(actions) + 1}"
            result = fleet.apply_action(action, service, {}, idempotency_key)
            last_acted[service] = now
            del last_change[service]  # the service's last change has been dealt with
            actions.append(
                ActionTaken(
                    action=action.value,
                    target=service,
                    ts=now,
                    status=result.status,
                    incident_id=open_incident[service].id,
                )
            )
    return PlayOutcome(
        scenario=scenario.name,
        controller="baseline",
        incidents=tuple(incidents),
        actions=tuple(actions),
        faults=tuple(FaultOutcome.from_record(r) for r in fleet.fault_log()),
        ended_at=fleet.now,
    )
