"""Game days: play a scenario from simulations/ through the real control loop in virtual time.

The simulated fleet is the telemetry source and the remediation target; everything between
(detection, supervisor, incident graph, constitution, guard, audit log) is the production
code. Scripted SREs answer approvals through the same path the API uses, so the demo shows
a named person approving, and the benchmark scores what the loop really did.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from domain import ActionName, ActionOutcome, OutcomeStatus
from domain.clock import VirtualClock
from runtime.loop import ControlLoop, LoopOptions
from runtime.ports import Identity, TelemetryBatch
from runtime.store import IncidentRow
from simulations import Fleet, Scenario
from tools import ActionRequest, CallableAdapter, GuardConfig


@dataclass(frozen=True, slots=True)
class ScriptedApprover:
    """An SRE who answers every pending approval after `delay_s` of virtual time."""

    identity: Identity
    delay_s: float = 240.0
    approve: bool = True
    comment: str = "evidence matches the provider status page; approved"


DEFAULT_APPROVERS = (
    ScriptedApprover(Identity("dana.okafor@sre", ("approver",)), delay_s=240.0),
    ScriptedApprover(
        Identity("li.wei@ml-platform", ("approver",)), delay_s=420.0, comment="retraining slot is free; approved"
    ),
)


@dataclass
class GamedayResult:
    scenario: Scenario
    db: str
    incidents: list[IncidentRow]
    actions: list[dict[str, Any]]
    pages: list[dict[str, Any]] = field(default_factory=list)
    end: datetime | None = None


class FleetAdapter:
    """The in-process fleet as a remediation target; `escalate` pages the on-call instead."""

    def __init__(self, fleet: Fleet, clock: VirtualClock) -> None:
        self._fleet = fleet
        self._clock = clock
        self.pages: list[dict[str, Any]] = []

    def call(self, request: ActionRequest) -> ActionOutcome:
        if request.action is ActionName.ESCALATE:
            page = {"incident_id": request.incident_id, "target": request.target, "ts": self._clock.now().isoformat()}
            self.pages.append(page)
            return ActionOutcome(
                status=OutcomeStatus.SUCCEEDED, idempotency_key=request.idempotency_key, detail="paged on-call"
            )
        result = self._fleet.apply_action(request.action, request.target, request.parameters, request.idempotency_key)
        return _outcome(result, request.idempotency_key)

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        result = self._fleet.action_result(idempotency_key)
        return None if result is None else _outcome(result, idempotency_key)


def _outcome(result: Any, key: str) -> ActionOutcome:
    status = OutcomeStatus.FAILED if result.status == "rejected" else OutcomeStatus.SUCCEEDED
    return ActionOutcome(status=status, idempotency_key=key, detail=result.detail, effect=dict(result.effect))


def play_scenario(
    scenario: Scenario,
    *,
    db: str | None = None,
    approvers: tuple[ScriptedApprover, ...] = DEFAULT_APPROVERS,
    options: LoopOptions | None = None,
    stop_when: Callable[[ControlLoop], bool] | None = None,
) -> GamedayResult:
    """Run `scenario` to its end (or until `stop_when`) through a fresh control loop."""
    if db is None:
        db = str(Path(tempfile.mkdtemp(prefix="homeostat-")) / f"{scenario.name}.sqlite")
    fleet = scenario.build_fleet()
    clock = VirtualClock(fleet.now)
    adapter = FleetAdapter(fleet, clock)
    loop_options = options or LoopOptions(db=db)
    loop_options.db = db
    if loop_options.guard is None:
        # The simulated fleet is the whole world of a game day: every catalog action may reach it.
        loop_options.guard = GuardConfig(allow={action: ["*"] for action in ActionName})
    loop = ControlLoop(loop_options, clock=clock, adapter=CallableAdapter(adapter.call, adapter.lookup))
    try:
        loop.telemetry.set_topology(fleet.topology())
        end = fleet.now + timedelta(seconds=scenario.duration_s)
        while fleet.now < end:
            batch = fleet.advance(fleet.interval_s)
            clock.set(fleet.now)
            if batch.changes:
                loop.telemetry.set_topology(fleet.topology())
            loop.ingest(TelemetryBatch(samples=batch.samples, changes=batch.changes))
            loop.tick()
            _answer_approvals(loop, approvers, clock)
            if stop_when is not None and stop_when(loop):
                break
        actions = [
            {"action": r.action, "target": r.target, "status": r.status, "key": r.idempotency_key}
            for r in fleet.applied_actions
        ]
        return GamedayResult(scenario, db, loop.incidents(), actions, adapter.pages, end=clock.now())
    finally:
        loop.close()


def _answer_approvals(loop: ControlLoop, approvers: tuple[ScriptedApprover, ...], clock: VirtualClock) -> None:
    now = clock.now()
    for pending in loop.supervisor.pending_approvals():
        waiting_since = datetime.fromisoformat(pending["updated_at"])
        already = set((pending.get("wait") or {}).get("approvals_so_far", []))
        for approver in approvers:
            if approver.identity.name in already or now - waiting_since < timedelta(seconds=approver.delay_s):
                continue
            queued = {a.approver for a in loop.store.undelivered_answers(pending["id"])}
            if approver.identity.name in queued:
                continue
            if approver.approve:
                loop.supervisor.approve(pending["id"], approver.identity, approver.comment)
            else:
                loop.supervisor.reject(pending["id"], approver.identity, approver.comment)
            break
