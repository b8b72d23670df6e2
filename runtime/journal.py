"""The journal: every write to the audit log goes through here, and the indexes the loop needs
(unresolved action intents, results by idempotency key, recent actions for budgets) are kept
in step with it.

It also guards invariant 1 at the last possible moment: an action intent is refused unless
the audit log already holds a decision that permits that action for that incident.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from domain import ActionOutcome, Approval, Decision, OnTimeout, OutcomeStatus, Proposal, Verdict
from domain.clock import Clock
from policies import RecentAction
from tools import ActionRequest


class AuditBackend(Protocol):
    def append(self, kind: str, payload: dict[str, Any], *, incident_id: str | None, ts: datetime) -> Any: ...

    def records(self, *, incident_id: str | None = None, kind: str | None = None, after_seq: int = 0) -> Any: ...


class UnrecordedDecision(RuntimeError):
    """An action intent arrived without a recorded decision permitting it (invariant 1)."""


@dataclass
class _IncidentPermit:
    proposal: Proposal | None = None
    decision: Decision | None = None
    approvers: set[str] = field(default_factory=set)
    rejected: bool = False
    timed_out_auto: bool = False

    def permits(self, request: ActionRequest) -> bool:
        if self.proposal is None or self.decision is None or self.rejected:
            return False
        if (self.proposal.action, self.proposal.target) != (request.action, request.target):
            return False
        if self.decision.verdict is Verdict.AUTO:
            return True
        if self.decision.verdict is Verdict.APPROVAL and self.decision.approval is not None:
            return self.timed_out_auto or len(self.approvers) >= self.decision.approval.approvers
        return False


class Journal:
    """Audit writer + tools.IntentLog + the recent-actions ledger, over one audit backend."""

    def __init__(self, audit: AuditBackend, clock: Clock, *, ledger_horizon: timedelta = timedelta(hours=24)) -> None:
        self._audit = audit
        self._clock = clock
        self._ledger_horizon = ledger_horizon
        self._permits: dict[str, _IncidentPermit] = {}
        self._intents: dict[str, ActionRequest] = {}
        self._results: dict[str, ActionOutcome] = {}
        self._recent: deque[RecentAction] = deque()
        for record in audit.records():
            self._index(record.kind, record.payload, record.incident_id, record.ts)

    # -- AuditWriter -----------------------------------------------------------------------

    def append(self, kind: str, payload: dict[str, Any], *, incident_id: str | None, ts: datetime) -> Any:
        record = self._audit.append(kind, payload, incident_id=incident_id, ts=ts)
        self._index(kind, payload, incident_id, ts)
        return record

    def records(self, *, incident_id: str | None = None, kind: str | None = None) -> Any:
        return self._audit.records(incident_id=incident_id, kind=kind)

    # -- tools.IntentLog -------------------------------------------------------------------

    def record_intent(self, request: ActionRequest) -> None:
        permit = self._permits.get(request.incident_id)
        if permit is None or not permit.permits(request):
            raise UnrecordedDecision(
                f"no recorded decision permits {request.action.value} on {request.target} "
                f"for incident {request.incident_id}"
            )
        payload = {
            "idempotency_key": request.idempotency_key,
            "action": request.action.value,
            "target": request.target,
            "parameters": request.parameters,
            "dry_run": request.dry_run,
        }
        self.append("action_intent", payload, incident_id=request.incident_id, ts=self._clock.now())

    def record_result(self, request: ActionRequest, outcome: ActionOutcome) -> None:
        payload = {"idempotency_key": request.idempotency_key, "outcome": outcome.model_dump(mode="json")}
        self.append("action_result", payload, incident_id=request.incident_id, ts=self._clock.now())

    def result_for(self, idempotency_key: str) -> ActionOutcome | None:
        return self._results.get(idempotency_key)

    def unresolved(self) -> list[ActionRequest]:
        return [req for key, req in self._intents.items() if key not in self._results]

    # -- ledger ----------------------------------------------------------------------------

    def recent_actions(self, now: datetime) -> tuple[RecentAction, ...]:
        horizon = now - self._ledger_horizon
        while self._recent and self._recent[0].ts < horizon:
            self._recent.popleft()
        return tuple(self._recent)

    # -- indexing --------------------------------------------------------------------------

    def _index(self, kind: str, payload: dict[str, Any], incident_id: str | None, ts: datetime) -> None:
        if incident_id is None:
            return
        permit = self._permits.setdefault(incident_id, _IncidentPermit())
        if kind == "decision":
            permit.proposal = Proposal.model_validate(payload["proposal"])
            permit.decision = Decision.model_validate(payload["decision"])
            permit.approvers, permit.rejected, permit.timed_out_auto = set(), False, False
        elif kind == "approval":
            approval = Approval.model_validate(payload["approval"])
            if approval.approve:
                permit.approvers.add(approval.approver)
            else:
                permit.rejected = True
        elif kind == "approval_timeout":
            permit.timed_out_auto = payload.get("on_timeout") == OnTimeout.AUTO.value
        elif kind == "action_intent":
            previous = self._results.get(payload["idempotency_key"])
            if previous is not None and previous.status is OutcomeStatus.DRY_RUN:
                del self._results[payload["idempotency_key"]]  # a real run after a dry run is unresolved again
            self._intents[payload["idempotency_key"]] = ActionRequest(
                action=payload["action"],
                target=payload["target"],
                parameters=payload.get("parameters", {}),
                idempotency_key=payload["idempotency_key"],
                incident_id=incident_id,
                dry_run=payload.get("dry_run", False),
            )
        elif kind == "action_result":
            outcome = ActionOutcome.model_validate(payload["outcome"])
            key = payload["idempotency_key"]
            self._results[key] = outcome
            request = self._intents.get(key)
            if request is not None and outcome.status is OutcomeStatus.SUCCEEDED and permit.proposal is not None:
                automatic = permit.decision is not None and permit.decision.verdict is Verdict.AUTO
                self._recent.append(
                    RecentAction(
                        action=request.action,
                        target=request.target,
                        service=permit.proposal.service,
                        ts=ts,
                        automatic=automatic,
                        **_where_it_moved(request, outcome, permit.proposal.service),
                    )
                )


def _where_it_moved(request: ActionRequest, outcome: ActionOutcome, service: str) -> dict[str, Any]:
    """The services an action changed besides `service`, and where it moved their traffic.

    Read from the request's parameters (`services`, `to_provider`) and the outcome's
    ``effect["moved"]`` (``{service: {"from": .., "to": ..}}``), which says what really happened
    and so wins over what was asked. Values of the wrong type are ignored rather than trusted: an
    adapter's effect is data from outside. A destination is recorded only when it is unambiguous.
    """
    changed: set[str] = set()
    asked = request.parameters.get("services")
    if isinstance(asked, (list, tuple)):
        changed.update(s for s in asked if isinstance(s, str) and s)
    destinations: set[str] = set()
    moved = outcome.effect.get("moved")
    if isinstance(moved, dict):
        for name, move in moved.items():
            if isinstance(name, str) and name:
                changed.add(name)
            if isinstance(move, dict) and isinstance(move.get("to"), str) and move["to"]:
                destinations.add(move["to"])
    to_provider = request.parameters.get("to_provider")
    if not destinations and isinstance(to_provider, str) and to_provider:
        destinations.add(to_provider)
    changed.discard(service)
    fields: dict[str, Any] = {"services": tuple(sorted(changed))}
    if len(destinations) == 1:
        fields["destination"] = next(iter(destinations))
    return fields
