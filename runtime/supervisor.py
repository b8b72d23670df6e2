"""The supervisor: groups anomalies into incidents and drives one incident-graph thread each.

An anomaly on a service that already has an open incident joins it; one whose timestamp lies close
to an anomaly of a settling incident joins that one, so a cascade whose symptoms arrive in a chain
stays one incident. A new incident waits a short settle period (extended while symptoms keep
arriving, up to a cap) so that correlated symptoms (every service on one provider, say) reach the
diagnoser together. For a cooldown after an action resolved an incident, only the moves that action
is expected to cause (its catalog entry's `expected_costs`) are absorbed into it; anything else on
its services, and any recurrence of what the incident was about, opens a new incident that records
which one it follows. The supervisor resumes threads that wait for approval answers or for the end
of a recovery window, and expires approvals whose timeout passed. It is also the `IncidentService`
the API and CLI talk to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from langgraph.types import Command

from agents.approvals import ApprovalRefused, check_answer
from agents.graph import initial_state
from domain import (
    Anomaly,
    Approval,
    ApprovalRequirement,
    Direction,
    IncidentState,
    Proposal,
    Severity,
    bad_direction,
)
from domain.clock import Clock
from runtime.journal import Journal
from runtime.ports import ApprovalError, Identity
from runtime.store import ApprovalAnswerRow, IncidentRow, IncidentStore
from tools import spec_for

log = structlog.get_logger("homeostat.supervisor")


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    settle_s: float = 60.0
    """Seconds a new incident waits for correlated anomalies before diagnosis starts; each anomaly
    that joins it while it settles restarts the wait, up to `settle_max_s`."""
    settle_max_s: float = 60.0
    """Hard cap on the settle period, in seconds after the incident opened, so a steady trickle of
    anomalies cannot keep an incident from being diagnosed. Wall clock. The default, equal to
    settle_s, keeps the deadline fixed: a 180-s cap scored worse on the sim bench (a failback in
    provider_degradation_gradual; docs/DAEMON.md, "Grouping and cooldown")."""
    group_window_s: float = 180.0
    """Anomalies on other services whose timestamps lie within this many seconds of the nearest
    anomaly of a settling incident join it, so a chained cascade stays one incident. Data time."""
    group_span_s: float = 900.0
    """An incident's anomalies span at most this many seconds of data time: past it, a chain of
    anomalies (a backlog delivered at once, say) opens a new incident instead of joining."""
    cooldown_s: float = 900.0
    """After an action resolved an incident, the moves that action is expected to cause on the
    services it changed (its catalog `expected_costs`) this soon are recorded on it, not opened as
    new incidents. Any other anomaly there opens a new incident that follows the resolved one."""
    id_prefix: str = "inc"
    """Incident ids are `<prefix>-<onset>-<service>`, and a supervisor only groups into and drives
    incidents with its own prefix (game days sharing one database use the scenario name)."""

    def __post_init__(self) -> None:
        for name in ("settle_s", "settle_max_s", "group_window_s", "group_span_s", "cooldown_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"SupervisorSettings.{name} must be >= 0 seconds, got {getattr(self, name)}")
        if self.settle_max_s < self.settle_s:
            raise ValueError(
                f"SupervisorSettings.settle_max_s ({self.settle_max_s}) must be >= settle_s ({self.settle_s}): "
                "it caps how far joining anomalies may extend the settle period"
            )
        if self.group_span_s < self.group_window_s:
            raise ValueError(
                f"SupervisorSettings.group_span_s ({self.group_span_s}) must be >= group_window_s "
                f"({self.group_window_s})"
            )


class Supervisor:
    def __init__(
        self,
        *,
        graph: Any,
        store: IncidentStore,
        journal: Journal,
        clock: Clock,
        settings: SupervisorSettings | None = None,
        on_change: Callable[[IncidentRow], None] | None = None,
    ) -> None:
        self._graph = graph
        self._store = store
        self._journal = journal
        self._clock = clock
        self._settings = settings or SupervisorSettings()
        self._on_change = on_change

    # -- anomalies -> incidents ------------------------------------------------------------

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> list[str]:
        """Attach each anomaly to an incident, opening one if needed. Returns touched incident ids."""
        touched: list[str] = []
        for anomaly in anomalies:
            if anomaly.kind == "spike" and anomaly.severity is Severity.INFO:
                log.debug("anomaly.ignored", reason="lone low-severity spike", anomaly=anomaly.id)
                continue
            incident_id = self._attach(anomaly)
            if incident_id not in touched:
                touched.append(incident_id)
        return touched

    def _attach(self, anomaly: Anomaly) -> str:
        now = self._clock.now()
        existing = self._store.get(self._incident_id(anomaly))
        if existing is not None and existing.final and anomaly.id in {a.id for a in self._members(existing.id)}:
            # The same anomaly seen again (telemetry re-delivered after a restart): it belongs to the
            # incident it opened, which is not reopened, nor is the anomaly news for anyone else.
            log.info("anomaly.already_recorded", anomaly=anomaly.id, incident_id=existing.id)
            return existing.id
        rows = self._store.list(prefix=self._settings.id_prefix, limit=200)
        follows: Aftermath | None = None
        for row in rows:  # newest first
            if not row.final:
                if anomaly.service in row.services:
                    self._join(row, anomaly, new_service=False)
                    return row.id
            elif follows is None and self._in_cooldown(row, now):
                judged = self._aftermath(row, anomaly)
                if judged is None:
                    continue
                if judged.absorbed:
                    self._join(row, anomaly, new_service=False, absorbed=judged.reason)
                    return row.id
                follows = judged  # a new incident, after the most recent action on this service
        for row in rows:
            if not row.graph_started and not row.final and self._groups_with(row, anomaly):
                self._join(row, anomaly, new_service=True)
                return row.id
        if existing is not None and not existing.final:
            self._join(existing, anomaly, new_service=False)
            return existing.id
        return self._open(anomaly, follows=follows)

    def _incident_id(self, anomaly: Anomaly, attempt: int = 1) -> str:
        base = f"{self._settings.id_prefix}-{anomaly.ts:%Y%m%dT%H%M%S}-{anomaly.service}"
        return base if attempt == 1 else f"{base}-{attempt}"

    def _free_incident_id(self, anomaly: Anomaly) -> str:
        """The anomaly's incident id; if a closed incident holds it (a different anomaly with the
        same timestamp and service), the first free `-2`, `-3`, ... variant. Never a closed one."""
        attempt = 1
        while self._store.get(self._incident_id(anomaly, attempt)) is not None:
            attempt += 1
        return self._incident_id(anomaly, attempt)

    def _groups_with(self, row: IncidentRow, anomaly: Anomaly) -> bool:
        """Whether `anomaly` lies within the group window of the nearest anomaly of settling `row`,
        without stretching the incident past `group_span_s` of data time.

        Data time against data time (the anomalies' own timestamps), so telemetry whose clock runs
        ahead of or behind ours still groups. The members span [onset, latest]; an anomaly inside
        that span is next to a member, one outside it is nearest to an end.
        """
        onset = datetime.fromisoformat(row.onset)
        latest = max((a.ts for a in self._members(row.id)), default=onset)
        earliest, last = min(onset, anomaly.ts), max(latest, anomaly.ts)
        if (last - earliest).total_seconds() > self._settings.group_span_s:
            return False
        gap_s = max((onset - anomaly.ts).total_seconds(), (anomaly.ts - latest).total_seconds(), 0.0)
        return gap_s < self._settings.group_window_s

    def _members(self, incident_id: str) -> list[Anomaly]:
        """The anomalies recorded on an incident, from the journal (the record of truth)."""
        anomalies: list[Anomaly] = []
        for record in self._journal.records(incident_id=incident_id):
            if record.kind == "incident_opened":
                anomalies.extend(Anomaly.model_validate(a) for a in record.payload["anomalies"])
            elif record.kind == "observation":
                anomalies.append(Anomaly.model_validate(record.payload["anomaly"]))
        return anomalies

    def _in_cooldown(self, row: IncidentRow, now: datetime) -> bool:
        """A closed incident whose action changed something, closed less than `cooldown_s` ago.
        Incidents closed without changing anything (transient, escalated, denied) have no aftermath."""
        if row.state != IncidentState.RESOLVED.value or row.action is None:
            return False
        try:
            changes_nothing = spec_for(row.action).changes_nothing
        except KeyError:
            log.warning("incident.unknown_action", incident_id=row.id, action=row.action)
            return False
        return not changes_nothing and _seconds_between(row.updated_at, now) < self._settings.cooldown_s

    def _aftermath(self, row: IncidentRow, anomaly: Anomaly) -> Aftermath | None:
        """How an anomaly soon after `row`'s action relates to it; None if not on a service it changed.

        Not absorbed, in this order: a recurrence (see `_recurs`), then anything the action did not
        declare as an expected cost (an error surge after a failover). Absorbed: a declared expected
        cost, or a move in the direction that is good for the signal (quality up).
        """
        assert row.action is not None
        spec = spec_for(row.action)
        about, changed = self._before_and_changed(row)
        if anomaly.service not in changed:
            return None
        what = f"{anomaly.signal} {anomaly.direction.value} on {anomaly.service}"
        if _recurs(anomaly, about):
            return Aftermath(row.id, False, f"{what}: a recurrence of what {row.id} was about")
        if spec.expects(anomaly.signal, anomaly.direction):
            return Aftermath(row.id, True, f"{what}: an expected cost of {spec.name.value}")
        if _improves(anomaly):
            return Aftermath(row.id, True, f"{what}: an improvement, not a fault")
        return Aftermath(row.id, False, f"{what}: not an expected cost of {spec.name.value}")

    def _before_and_changed(self, row: IncidentRow) -> tuple[list[Anomaly], frozenset[str]]:
        """What the incident was about (its anomalies recorded before its first action intent) and
        which services it changed: its own and every one its actions reported moving (all that a
        failover moved), from the journal's action intents and results."""
        about: list[Anomaly] = []
        changed = set(row.services)
        acted = False
        for record in self._journal.records(incident_id=row.id):
            payload = record.payload
            if record.kind == "incident_opened" and not acted:
                about.extend(Anomaly.model_validate(a) for a in payload["anomalies"])
            elif record.kind == "observation" and not acted:
                about.append(Anomaly.model_validate(payload["anomaly"]))
            elif record.kind == "action_intent":
                acted = True
                asked = (payload.get("parameters") or {}).get("services")
                if isinstance(asked, list):
                    changed.update(s for s in asked if isinstance(s, str))
            elif record.kind == "action_result":
                moved = ((payload.get("outcome") or {}).get("effect") or {}).get("moved")
                if isinstance(moved, dict):
                    changed.update(s for s in moved if isinstance(s, str))
        return about, frozenset(changed)

    def _open(self, anomaly: Anomaly, *, follows: Aftermath | None = None) -> str:
        now = self._clock.now()
        incident_id = self._free_incident_id(anomaly)
        row = IncidentRow(
            id=incident_id,
            state=IncidentState.OPEN.value,
            services_json=json.dumps([anomaly.service]),
            onset=anomaly.ts.isoformat(),
            opened_at=now.isoformat(),
            updated_at=now.isoformat(),
            settle_until=(now + timedelta(seconds=self._settings.settle_s)).isoformat(),
            anomaly_count=1,
        )
        self._store.add(row)
        payload: dict[str, Any] = {"services": [anomaly.service], "anomalies": [anomaly.model_dump(mode="json")]}
        if follows is not None:
            # The flap guard and a human should see that this came right after an action resolved
            # another incident on the same service, and why it was not taken as that action's cost.
            payload |= {"follows": follows.incident_id, "follows_because": follows.reason}
        self._journal.append("incident_opened", payload, incident_id=incident_id, ts=now)
        log.info(
            "incident.opened",
            incident_id=incident_id,
            service=anomaly.service,
            signal=anomaly.signal,
            follows=follows.incident_id if follows else None,
        )
        self._changed(incident_id)
        return incident_id

    def _join(self, row: IncidentRow, anomaly: Anomaly, *, new_service: bool, absorbed: str | None = None) -> None:
        services = sorted({*row.services, anomaly.service})
        fields: dict[str, Any] = {"anomaly_count": row.anomaly_count + 1, "services_json": json.dumps(services)}
        onset = datetime.fromisoformat(row.onset)
        if anomaly.ts < onset:
            fields["onset"] = anomaly.ts.isoformat()
        now = self._clock.now()
        if not row.graph_started and not row.final:
            # Symptoms are still arriving: wait settle_s more, but never past the cap.
            current = datetime.fromisoformat(row.settle_until)
            cap = datetime.fromisoformat(row.opened_at) + timedelta(seconds=self._settings.settle_max_s)
            wanted = now + timedelta(seconds=self._settings.settle_s)
            fields["settle_until"] = max(current, min(wanted, cap)).isoformat()
        self._store.update(row.id, **fields)
        payload: dict[str, Any] = {"anomaly": anomaly.model_dump(mode="json")}
        if absorbed is not None:
            payload["absorbed"] = absorbed
        self._journal.append("observation", payload, incident_id=row.id, ts=now)
        log.info(
            "incident.joined",
            incident_id=row.id,
            service=anomaly.service,
            signal=anomaly.signal,
            new_service=new_service,
            absorbed=absorbed,
        )

    # -- driving the graph -----------------------------------------------------------------

    def tick(self) -> None:
        """Start settled incidents, deliver approval answers, resume due waits, expire approvals."""
        now = self._clock.now()
        for row in self._store.list(open_only=True, prefix=self._settings.id_prefix):
            if not row.graph_started:
                if now >= datetime.fromisoformat(row.settle_until):
                    self._start(row)
                continue
            if row.waiting_for == "approval":
                self._deliver_answers(row)
                fresh = self._store.get(row.id) or row
                if fresh.waiting_for == "approval" and fresh.deadline and now >= datetime.fromisoformat(fresh.deadline):
                    self._resume(fresh.id, {"type": "timeout"})
            elif row.waiting_for == "verify_wait" and row.deadline and now >= datetime.fromisoformat(row.deadline):
                self._resume(row.id, {"type": "verify_now"})

    def recover(self) -> None:
        """After a restart: start, resume or re-sync every incident whose thread was in flight."""
        for row in self._store.list(open_only=True, prefix=self._settings.id_prefix):
            if not row.graph_started:
                continue
            snapshot = self._graph.get_state(_config(row.id))
            if not snapshot.values:
                # Killed after marking the incident started but before the graph's first checkpoint:
                # there is no thread to resume, so start it (its first step is triage: nothing acted yet).
                log.warning("incident.start_after_crash", incident_id=row.id)
                self._start(row)
            elif _in_flight(snapshot):
                # Killed mid-step. This includes a step whose writes were saved but whose checkpoint
                # was not: LangGraph then reports `next == ()` (the task has its result) although the
                # thread has not moved on; resuming applies the saved writes without re-running the step.
                log.warning("incident.resume_after_crash", incident_id=row.id, next=[t.name for t in snapshot.tasks])
                self._run(row.id, None)
            else:
                # Finished, or waiting at an interrupt: the store may lag the checkpoint when the
                # process died between a graph step and its sync (a closed incident shown open, or
                # a pending approval nobody can see). The checkpoint is the truth; copy it over.
                self._sync(row.id)

    def _start(self, row: IncidentRow) -> None:
        anomalies = self._members(row.id)
        self._store.update(row.id, graph_started=True)
        self._run(row.id, initial_state(row.id, datetime.fromisoformat(row.onset), anomalies))

    def _resume(self, incident_id: str, value: dict[str, Any]) -> None:
        self._run(incident_id, Command(resume=value))

    def _run(self, incident_id: str, graph_input: Any) -> None:
        row = self._store.get(incident_id)
        service = ",".join(row.services) if row else ""
        with structlog.contextvars.bound_contextvars(incident_id=incident_id, service=service):
            # "sync": each step's checkpoint is on disk before the next step starts, so a kill never
            # leaves a later step's effects (an audit record, an action) ahead of an unsaved checkpoint.
            self._graph.invoke(graph_input, _config(incident_id), durability="sync")
            self._sync(incident_id)

    def _sync(self, incident_id: str) -> None:
        """Copy what the thread now waits for (and its headline facts) into the store."""
        snapshot = self._graph.get_state(_config(incident_id))
        values = snapshot.values
        now = self._clock.now()
        fields: dict[str, Any] = {"updated_at": now.isoformat(), "state": values.get("state", IncidentState.OPEN.value)}
        if "diagnosis" in values:
            fields["cause"] = values["diagnosis"]["cause"]
        if "proposal" in values:
            fields["action"] = values["proposal"]["action"]
            fields["target"] = values["proposal"]["target"]
        if values.get("close_reason"):
            fields["summary"] = values["close_reason"]
        row = self._store.get(incident_id)
        wait = snapshot.interrupts[0].value if snapshot.interrupts else None
        if wait is None:
            fields |= {"waiting_for": None, "wait_payload_json": None, "deadline": None}
        elif wait["type"] == "approval":
            same_wait = row is not None and row.waiting_for == "approval" and row.deadline
            timeout = ApprovalRequirement.model_validate(wait["requirement"]).timeout_s
            deadline = row.deadline if same_wait and row else (now + timedelta(seconds=timeout)).isoformat()
            fields |= {"waiting_for": "approval", "wait_payload_json": json.dumps(wait), "deadline": deadline}
        else:
            fields |= {"waiting_for": wait["type"], "wait_payload_json": json.dumps(wait), "deadline": wait["until"]}
        self._store.update(incident_id, **fields)
        self._changed(incident_id)

    def _deliver_answers(self, row: IncidentRow) -> None:
        for answer in self._store.undelivered_answers(row.id):
            approval = Approval(
                approver=answer.approver,
                roles=tuple(json.loads(answer.roles_json)),
                approve=answer.approve,
                comment=answer.comment,
                ts=datetime.fromisoformat(answer.ts),
            )
            assert answer.id is not None
            current = self._store.get(row.id)
            if current is not None and current.waiting_for == "approval":
                self._resume(row.id, {"type": "answer", "approval": approval.model_dump(mode="json")})
            # Only now is the answer in the graph's checkpoint (or moot: the wait is over). Marking it
            # earlier lost it to a crash in between; a repeat delivery after a crash is harmless, as
            # the graph refuses a second answer from the same person.
            self._store.mark_delivered(answer.id)

    def _changed(self, incident_id: str) -> None:
        if self._on_change is None:
            return
        row = self._store.get(incident_id)
        if row is not None:
            self._on_change(row)

    # -- IncidentService -------------------------------------------------------------------

    def list_incidents(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self._store.list(state=state, limit=limit)]

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self._store.get(incident_id)
        if row is None:
            return None
        data = row.as_dict()
        for record in self._journal.records(incident_id=incident_id, kind="incident_opened"):
            if "follows" in record.payload:  # opened right after an action resolved another incident
                data["follows"] = record.payload["follows"]
                data["follows_because"] = record.payload.get("follows_because", "")
        if row.graph_started:
            values = self._graph.get_state(_config(incident_id)).values
            for key in ("diagnosis", "proposal", "decision", "approvals", "outcome", "verification", "anomalies"):
                if key in values:
                    data[key] = values[key]
        return data

    def pending_approvals(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self._store.list(open_only=True) if row.waiting_for == "approval"]

    def approve(self, incident_id: str, who: Identity, comment: str) -> dict[str, Any]:
        return self._answer(incident_id, who, approve=True, comment=comment)

    def reject(self, incident_id: str, who: Identity, reason: str) -> dict[str, Any]:
        return self._answer(incident_id, who, approve=False, comment=reason)

    def _answer(self, incident_id: str, who: Identity, *, approve: bool, comment: str) -> dict[str, Any]:
        now = self._clock.now()
        row = self._store.get(incident_id)
        request = {"identity": who.name, "roles": list(who.roles), "approve": approve, "comment": comment}
        try:
            if row is None:
                raise ApprovalError(f"no incident {incident_id!r}")
            if row.waiting_for != "approval" or not row.wait_payload_json:
                raise ApprovalError(f"incident {incident_id} is {row.state}, not awaiting approval")
            wait = json.loads(row.wait_payload_json)
            proposal = Proposal.model_validate(wait["proposal"])
            requirement = ApprovalRequirement.model_validate(wait["requirement"])
            prior = [
                Approval(approver=name, roles=(), approve=True, ts=now) for name in wait.get("approvals_so_far", [])
            ]
            queued = [
                Approval(approver=a.approver, roles=(), approve=a.approve, ts=now)
                for a in self._store.undelivered_answers(incident_id)
            ]
            answer = Approval(approver=who.name, roles=who.roles, approve=approve, comment=comment, ts=now)
            try:
                check_answer(answer, proposal, requirement, [*prior, *queued])
            except ApprovalRefused as refused:
                raise ApprovalError(str(refused)) from refused
        except ApprovalError as error:
            self._journal.append(
                "approval_request",
                {**request, "accepted": False, "reason": str(error)},
                incident_id=incident_id,
                ts=now,
            )
            raise
        self._journal.append("approval_request", {**request, "accepted": True}, incident_id=incident_id, ts=now)
        self._store.queue_answer(
            ApprovalAnswerRow(
                incident_id=incident_id,
                approver=who.name,
                roles_json=json.dumps(list(who.roles)),
                approve=approve,
                comment=comment,
                ts=now.isoformat(),
            )
        )
        log.info("approval.queued", incident_id=incident_id, approver=who.name, approve=approve)
        return {"incident_id": incident_id, "queued": True, "approve": approve, "by": who.name}


@dataclass(frozen=True, slots=True)
class Aftermath:
    """How an anomaly right after an action relates to the incident that action resolved."""

    incident_id: str
    absorbed: bool
    """True: the action's expected cost, recorded on that incident. False: news, a new incident."""
    reason: str


#: Share of an incident's excursion on a series that a later anomaly on it must reach (in the same
#: direction) to count as the incident coming back rather than a small, accepted residual cost.
RECURRENCE_SHARE = 0.5


def _same_way(a: Direction, b: Direction) -> bool:
    return a is b or Direction.BOTH in (a, b)


def _recurs(anomaly: Anomaly, about: Sequence[Anomaly]) -> bool:
    """Whether `anomaly` is what the incident was about coming back.

    It is when the incident had an anomaly on the same signal moving the same way, and either the
    series itself was not among them (no level to compare with: assume the worst) or the new level
    reaches `RECURRENCE_SHARE` of the incident's excursion on that series. A backup provider that is
    a little slower than the failed one is a cost; latency back near the outage's level is not.
    """
    same = [a for a in about if a.signal == anomaly.signal and _same_way(a.direction, anomaly.direction)]
    if not same:
        return False
    series = [a for a in same if a.service == anomaly.service]
    if not series:
        return True
    for earlier in series:
        excursion = earlier.current - earlier.baseline
        if excursion == 0 or (anomaly.current - earlier.baseline) / excursion >= RECURRENCE_SHARE:
            return True
    return False


def _improves(anomaly: Anomaly) -> bool:
    """Whether the anomaly moved its signal the way that is good for it (quality up, errors down).
    Signals that are bad both ways (or unknown) never improve by moving."""
    bad = bad_direction(anomaly.signal)
    good = {Direction.UP: Direction.DOWN, Direction.DOWN: Direction.UP}.get(bad)
    return good is not None and anomaly.direction is good


def _in_flight(snapshot: Any) -> bool:
    """Whether a thread stopped mid-run (to be resumed) rather than finished or waiting at an interrupt.

    A task that was interrupted and has no result yet is a wait; any other pending task (not yet run,
    failed, or run with its writes saved but no checkpoint after them) means the run was cut short.
    """
    tasks = snapshot.tasks
    waiting = any(task.interrupts and task.result is None for task in tasks)
    return bool(tasks) and not waiting


def _config(incident_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": incident_id}}


def _seconds_between(earlier_iso: str, later: datetime) -> float:
    return (later - datetime.fromisoformat(earlier_iso)).total_seconds()
