"""The incident graph: triage -> diagnose -> propose -> gate -> execute -> verify -> close.

One LangGraph thread per incident, checkpointed after every step. Two places wait with
`interrupt()`: a proposal that needs human approval, and the recovery window after an
action. The runtime resumes a thread with `Command(resume=...)` when an answer arrives or
the window has passed, so both waits survive a restart of the process.

Nodes take their effects from injected `GraphDeps` (clock, telemetry, diagnoser, policy,
guarded executor, audit writer); the state they checkpoint is plain JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Any, Literal, Protocol, TypedDict, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import interrupt

from agents.approvals import ApprovalRefused, check_answer, tally
from agents.ports import Diagnoser, IncidentContext, TelemetryReader
from agents.remedies import inverse_proposal, propose
from domain import (
    ActionName,
    ActionOutcome,
    Anomaly,
    Approval,
    Decision,
    Diagnosis,
    Direction,
    IncidentState,
    OnTimeout,
    OutcomeStatus,
    Proposal,
    Verdict,
    bad_direction,
)
from domain.clock import Clock
from policies import Constitution, DecisionContext, RecentAction, decide
from tools import CATALOG, ActionRequest, InverseAction, idempotency_key
from tools.verification import evaluate_recovery

#: How much history before onset counts as the baseline a recovery is judged against.
BASELINE_WINDOW = timedelta(minutes=30)
#: Share of an anomaly's shift that must still stand at triage for it to count as persistent.
PERSISTENCE_SHARE = 0.5
#: Fewer points than this since an anomaly fired cannot show it was transient: keep it.
MIN_POINTS_TO_DISMISS = 3
#: Anomaly kinds that are facts rather than level shifts: never dismissed as transient.
_NOT_LEVELS = frozenset({"stale", "alert", "budget", "trend", "burn_rate"})


def persists(anomaly: Anomaly, telemetry: TelemetryReader, now: datetime) -> bool:
    """Whether `anomaly`'s shift still stands: the median since it fired keeps at least
    PERSISTENCE_SHARE of the move from baseline, in the anomaly's direction (a Prometheus
    `for:` clause, judged on data instead of time)."""
    if anomaly.kind in _NOT_LEVELS:
        return True
    points = [v for _, v in telemetry.window(anomaly.service, anomaly.signal, anomaly.ts, now + timedelta(seconds=1))]
    if len(points) < MIN_POINTS_TO_DISMISS:
        return True
    shift = anomaly.current - anomaly.baseline
    if shift == 0:
        return True
    held = (median(points) - anomaly.baseline) / shift
    return held >= PERSISTENCE_SHARE


class AuditWriter(Protocol):
    def append(self, kind: str, payload: dict[str, Any], *, incident_id: str | None, ts: datetime) -> object: ...


class ActionExecutor(Protocol):
    """The containment guard: at most once per idempotency key, intent written before the call."""

    def execute(self, request: ActionRequest) -> ActionOutcome: ...


@dataclass(frozen=True, slots=True)
class GraphDeps:
    clock: Clock
    telemetry: TelemetryReader
    diagnoser: Diagnoser
    constitution: Callable[[], Constitution]
    recent_actions: Callable[[datetime], tuple[RecentAction, ...]]
    executor: ActionExecutor
    audit: AuditWriter
    on_state: Callable[[str, IncidentState, str], None] | None = None


class IncidentGraphState(TypedDict, total=False):
    incident_id: str
    onset: str
    services: list[str]
    anomalies: list[dict[str, Any]]
    diagnosis: dict[str, Any]
    proposal: dict[str, Any]
    decision: dict[str, Any]
    approvals: list[dict[str, Any]]
    outcome: dict[str, Any]
    executed_at: str
    inverse: dict[str, Any] | None  # how to undo the executed action, computed before it ran
    verification: dict[str, Any]
    attempt: int
    state: str
    close_reason: str
    final_state: str  # set when an approval wait ends in expiry or escalation
    approved_by_timeout: bool  # on_timeout: auto


def initial_state(incident_id: str, onset: datetime, anomalies: Sequence[Anomaly]) -> IncidentGraphState:
    """The input of a new incident thread."""
    return IncidentGraphState(
        incident_id=incident_id,
        onset=onset.isoformat(),
        services=sorted({a.service for a in anomalies}),
        anomalies=[a.model_dump(mode="json") for a in anomalies],
        approvals=[],
        attempt=0,
        state=IncidentState.OPEN.value,
    )


class _Nodes:
    """The graph's nodes, closed over their dependencies."""

    def __init__(self, deps: GraphDeps) -> None:
        self.deps = deps

    # -- helpers ---------------------------------------------------------------------------

    def _audit(self, s: IncidentGraphState, kind: str, payload: dict[str, Any]) -> None:
        self.deps.audit.append(kind, payload, incident_id=s["incident_id"], ts=self.deps.clock.now())

    def _move(self, s: IncidentGraphState, to: IncidentState, reason: str) -> dict[str, Any]:
        before = s.get("state", IncidentState.OPEN.value)
        if before != to.value:
            self._audit(s, "incident_state", {"from": before, "to": to.value, "reason": reason})
            if self.deps.on_state is not None:
                self.deps.on_state(s["incident_id"], to, reason)
        return {"state": to.value}

    # -- nodes -----------------------------------------------------------------------------

    def triage(self, s: IncidentGraphState) -> dict[str, Any]:
        """Keep the anomalies whose shift persisted since they fired; with none, the incident was transient."""
        now = self.deps.clock.now()
        anomalies = [Anomaly.model_validate(a) for a in s["anomalies"]]
        kept = [a for a in anomalies if persists(a, self.deps.telemetry, now)]
        dropped = sorted(a.id for a in anomalies if a not in kept)
        self._audit(s, "triage", {"persisted": sorted(a.id for a in kept), "transient": dropped})
        if not kept:
            reason = f"transient: all {len(anomalies)} anomalies returned toward baseline before diagnosis"
            return {"final_state": IncidentState.RESOLVED.value, "close_reason": reason}
        services = ", ".join(sorted({a.service for a in kept}))
        moved = self._move(s, IncidentState.DIAGNOSING, f"{len(kept)} persistent anomalies on {services}")
        return {**moved, "anomalies": [a.model_dump(mode="json") for a in kept]}

    def diagnose(self, s: IncidentGraphState) -> dict[str, Any]:
        anomalies = [Anomaly.model_validate(a) for a in s["anomalies"]]
        context = IncidentContext(
            incident_id=s["incident_id"],
            onset=datetime.fromisoformat(s["onset"]),
            now=self.deps.clock.now(),
            anomalies=anomalies,
            telemetry=self.deps.telemetry,
        )
        diagnosis = self.deps.diagnoser.diagnose(context)
        topology = self.deps.telemetry.topology()
        wiring = {
            name: {
                "model_version": info.model_version,
                "prompt_version": info.prompt_version,
                "provider": info.provider,
            }
            for name, info in topology.services.items()
            if name in s["services"] or name == diagnosis.service
        }
        self._audit(s, "diagnosis", {"diagnosis": diagnosis.model_dump(mode="json"), "services": wiring})
        return {"diagnosis": diagnosis.model_dump(mode="json")}

    def propose(self, s: IncidentGraphState) -> dict[str, Any]:
        diagnosis = Diagnosis.model_validate(s["diagnosis"])
        proposal = propose(diagnosis, self.deps.telemetry.topology())
        self._audit(s, "proposal", {"proposal": proposal.model_dump(mode="json")})
        update = self._move(s, IncidentState.PROPOSED, f"{proposal.action.value} on {proposal.target}")
        return {**update, "proposal": proposal.model_dump(mode="json"), "approvals": []}

    def gate(self, s: IncidentGraphState) -> dict[str, Any]:
        proposal = Proposal.model_validate(s["proposal"])
        now = self.deps.clock.now()
        constitution = self.deps.constitution()
        context = DecisionContext(now=now, recent_actions=self.deps.recent_actions(now))
        decision = decide(proposal, context, constitution)
        self._audit(
            s,
            "decision",
            {
                "proposal": proposal.model_dump(mode="json"),
                "context": context.model_dump(mode="json"),
                "decision": decision.model_dump(mode="json"),
                "constitution_digest": constitution.digest,
            },
        )
        update: dict[str, Any] = {"decision": decision.model_dump(mode="json")}
        rules = ", ".join(decision.matched_rules) or "default"
        if decision.verdict is Verdict.APPROVAL:
            update |= self._move(s, IncidentState.AWAITING_APPROVAL, f"approval required by {rules}")
        elif decision.verdict is Verdict.DENY:
            update |= {"close_reason": f"denied by the constitution ({rules})"}
        return update

    def await_approval(self, s: IncidentGraphState) -> dict[str, Any]:
        decision = Decision.model_validate(s["decision"])
        proposal = Proposal.model_validate(s["proposal"])
        assert decision.approval is not None, "await_approval reached without an approval requirement"
        requirement = decision.approval
        prior = [Approval.model_validate(a) for a in s.get("approvals", [])]
        answer = interrupt(
            {
                "type": "approval",
                "incident_id": s["incident_id"],
                "proposal": s["proposal"],
                "requirement": requirement.model_dump(mode="json"),
                "approvals_so_far": [a.approver for a in prior if a.approve],
            }
        )
        if answer.get("type") == "timeout":
            self._audit(s, "approval_timeout", {"on_timeout": requirement.on_timeout.value})
            if requirement.on_timeout is OnTimeout.AUTO:
                return {"approved_by_timeout": True}
            final = IncidentState.EXPIRED if requirement.on_timeout is OnTimeout.REJECT else IncidentState.ESCALATED
            return {"close_reason": f"approval timed out ({requirement.on_timeout.value})", "final_state": final.value}
        given = Approval.model_validate(answer["approval"])
        try:
            check_answer(given, proposal, requirement, prior)
        except ApprovalRefused as refused:
            self._audit(s, "approval_refused", {"approval": given.model_dump(mode="json"), "reason": str(refused)})
            return {}
        answers = [*prior, given]
        count = tally(answers, requirement)
        self._audit(
            s,
            "approval",
            {
                "approval": given.model_dump(mode="json"),
                "approvals_so_far": count.approvals,
                "required": count.required,
            },
        )
        update: dict[str, Any] = {"approvals": [a.model_dump(mode="json") for a in answers]}
        if count.rejected_by is not None:
            update["close_reason"] = f"rejected by {count.rejected_by}: {given.comment or 'no reason given'}"
        return update

    def execute(self, s: IncidentGraphState) -> dict[str, Any]:
        proposal = Proposal.model_validate(s["proposal"])
        moved = self._move(s, IncidentState.EXECUTING, f"{proposal.action.value} on {proposal.target}")
        request = ActionRequest(
            action=proposal.action,
            target=proposal.target,
            parameters=dict(proposal.parameters),
            idempotency_key=idempotency_key(s["incident_id"], proposal.action, proposal.target, s.get("attempt", 0)),
            incident_id=s["incident_id"],
        )
        spec = CATALOG[proposal.action]
        undo = spec.inverse_for(self.deps.telemetry.topology(), proposal.target, proposal.parameters)
        outcome = self.deps.executor.execute(request)
        return {
            **moved,
            "inverse": None
            if undo is None
            else {"action": undo.action.value, "target": undo.target, "parameters": undo.parameters},
            "outcome": outcome.model_dump(mode="json"),
            "executed_at": self.deps.clock.now().isoformat(),
        }

    def verify(self, s: IncidentGraphState) -> dict[str, Any]:
        """Enter the recovery window (its own step, so resuming the wait never repeats this record)."""
        spec = CATALOG[Proposal.model_validate(s["proposal"]).action]
        until = datetime.fromisoformat(s["executed_at"]) + timedelta(seconds=spec.recovery.wait_s)
        return self._move(s, IncidentState.VERIFYING, f"watching recovery until {until.isoformat()}")

    def judge_recovery(self, s: IncidentGraphState) -> dict[str, Any]:
        """Wait out the recovery window, then judge the catalog's recovery signals against baseline."""
        proposal = Proposal.model_validate(s["proposal"])
        spec = CATALOG[proposal.action]
        until = datetime.fromisoformat(s["executed_at"]) + timedelta(seconds=spec.recovery.wait_s)
        interrupt({"type": "verify_wait", "incident_id": s["incident_id"], "until": until.isoformat()})
        onset = datetime.fromisoformat(s["onset"])
        now = self.deps.clock.now()
        watch_from = max(datetime.fromisoformat(s["executed_at"]), now - timedelta(seconds=spec.recovery.wait_s))
        anomalous = {(a["service"], a["signal"]) for a in s["anomalies"] if a.get("kind") != "stale"}
        # Judge the series the catalog names as this action's recovery signals; if none of them
        # went bad, judge everything that did.
        declared = {(svc, sig) for svc, sig in anomalous if sig in spec.recovery.signals}
        series = sorted(declared or anomalous)
        baseline = {
            f"{svc}/{sig}": [v for _, v in self.deps.telemetry.window(svc, sig, onset - BASELINE_WINDOW, onset)]
            for svc, sig in series
        }
        current = {
            f"{svc}/{sig}": [v for _, v in self.deps.telemetry.window(svc, sig, watch_from, now + timedelta(seconds=1))]
            for svc, sig in series
        }
        # The level each series reached during the incident: the worst of what its anomalies saw and
        # the median from onset to the action (a detector fires early, before the level settles).
        executed_at = datetime.fromisoformat(s["executed_at"])
        peaks: dict[str, float] = {}
        for svc, sig in series:
            during = [v for _, v in self.deps.telemetry.window(svc, sig, onset, executed_at)]
            if during:
                peaks[f"{svc}/{sig}"] = median(during)
        for a in s["anomalies"]:
            key = f"{a['service']}/{a['signal']}"
            peaks[key] = a["current"] if key not in peaks else _worse(a["signal"], peaks[key], a["current"])
        verdict = evaluate_recovery(spec.recovery, baseline, current, incident_levels=peaks, expects=spec.expects)
        result = {
            "recovered": verdict.recovered,
            "improved": verdict.improved,
            "signals": verdict.detail,
            "detail": verdict.summary,
        }
        self._audit(s, "verification", result)
        return {"verification": result}

    def propose_inverse(self, s: IncidentGraphState) -> dict[str, Any]:
        proposal = Proposal.model_validate(s["proposal"])
        undo = s.get("inverse")
        assert undo is not None, "propose_inverse reached for an action without an inverse"
        step = InverseAction(action=ActionName(undo["action"]), target=undo["target"], parameters=undo["parameters"])
        inverse = inverse_proposal(proposal, step, self.deps.telemetry.topology())
        self._audit(s, "proposal", {"proposal": inverse.model_dump(mode="json"), "undoes": proposal.action.value})
        return {"proposal": inverse.model_dump(mode="json"), "approvals": [], "attempt": s.get("attempt", 0) + 1}

    def close(self, s: IncidentGraphState) -> dict[str, Any]:
        final, reason = _final_state(s)
        moved = self._move(s, final, reason)
        self._audit(s, "incident_closed", {"state": final.value, "summary": reason})
        return {**moved, "close_reason": reason}


def _worse(signal: str, a: float, b: float) -> float:
    """The worse of two levels of `signal` (for signals bad both ways, the one further out)."""
    direction = bad_direction(signal)
    if direction is Direction.DOWN:
        return min(a, b)
    if direction is Direction.UP:
        return max(a, b)
    return a if abs(a) >= abs(b) else b


def _inverse_json(undo: InverseAction) -> dict[str, Any]:
    return {"action": undo.action.value, "target": undo.target, "parameters": dict(undo.parameters)}


def _final_state(s: IncidentGraphState) -> tuple[IncidentState, str]:
    """Where an incident ends, derived from what happened to it."""
    if "final_state" in s:
        return IncidentState(s["final_state"]), s.get("close_reason", "")
    decision = s.get("decision")
    if decision and decision["verdict"] == Verdict.DENY.value and "outcome" not in s:
        return IncidentState.ESCALATED, s.get("close_reason", "denied by the constitution")
    if s.get("close_reason", "").startswith("rejected by"):
        return IncidentState.REJECTED, s["close_reason"]
    outcome = s.get("outcome")
    if outcome is None:
        return IncidentState.ESCALATED, s.get("close_reason") or "no action was taken"
    status = OutcomeStatus(outcome["status"])
    action = ActionName(s["proposal"]["action"])
    if status is OutcomeStatus.DRY_RUN:
        return IncidentState.ESCALATED, f"dry run: {action.value} was not called; a human must act"
    if status is OutcomeStatus.FAILED:
        return IncidentState.FAILED, f"{action.value} failed: {outcome.get('detail', '')}"
    if status is OutcomeStatus.UNKNOWN:
        return IncidentState.ESCALATED, f"{action.value} outcome unknown: {outcome.get('detail', '')}"
    if action is ActionName.ESCALATE:
        return IncidentState.ESCALATED, "paged a human; nothing was changed automatically"
    if s.get("attempt", 0) > 0:
        return IncidentState.ESCALATED, f"the first action did not bring recovery; {action.value} undid it"
    verification = s.get("verification") or {}
    if verification.get("recovered"):
        return IncidentState.RESOLVED, f"{action.value} on {s['proposal']['target']} brought recovery"
    if verification.get("improved"):
        return IncidentState.ESCALATED, (
            f"{action.value} on {s['proposal']['target']} helped but did not bring full recovery; "
            "kept it (undoing would make things worse), a human must look at the rest"
        )
    return IncidentState.FAILED, f"{action.value} did not bring recovery and cannot be undone automatically"


# -- routing ---------------------------------------------------------------------------------


def _after_triage(s: IncidentGraphState) -> Literal["diagnose", "close"]:
    return "close" if "final_state" in s else "diagnose"


def _after_gate(s: IncidentGraphState) -> Literal["execute", "await_approval", "close"]:
    verdict = Verdict(s["decision"]["verdict"])
    if verdict is Verdict.AUTO:
        return "execute"
    if verdict is Verdict.APPROVAL:
        return "await_approval"
    return "close"


def _after_approval(s: IncidentGraphState) -> Literal["execute", "await_approval", "close"]:
    if s.get("close_reason") or "final_state" in s:
        return "close"
    if s.get("approved_by_timeout"):
        return "execute"
    decision = Decision.model_validate(s["decision"])
    assert decision.approval is not None
    answers = [Approval.model_validate(a) for a in s.get("approvals", [])]
    return "execute" if tally(answers, decision.approval).granted else "await_approval"


def _after_execute(s: IncidentGraphState) -> Literal["verify", "close"]:
    status = OutcomeStatus(s["outcome"]["status"])
    action = ActionName(s["proposal"]["action"])
    if status in (OutcomeStatus.SUCCEEDED, OutcomeStatus.DUPLICATE) and action is not ActionName.ESCALATE:
        return "close" if s.get("attempt", 0) > 0 else "verify"
    return "close"


def _after_verify(s: IncidentGraphState) -> Literal["propose_inverse", "close"]:
    if s["verification"]["recovered"] or s["verification"].get("improved"):
        return "close"  # an action that helped is kept, even when it did not bring full recovery
    return "propose_inverse" if s.get("inverse") else "close"


def build_incident_graph(
    deps: GraphDeps, checkpointer: BaseCheckpointSaver[Any]
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the incident graph over `deps`, checkpointing every step to `checkpointer`."""
    nodes = _Nodes(deps)
    graph = StateGraph(IncidentGraphState)
    steps: dict[str, Callable[[IncidentGraphState], Any]] = {
        "triage": nodes.triage,
        "diagnose": nodes.diagnose,
        "propose": nodes.propose,
        "gate": nodes.gate,
        "await_approval": nodes.await_approval,
        "execute": nodes.execute,
        "verify": nodes.verify,
        "judge_recovery": nodes.judge_recovery,
        "propose_inverse": nodes.propose_inverse,
        "close": nodes.close,
    }
    for name, step in steps.items():
        # LangGraph's node protocols name their parameter `state`; a plain Callable cannot say so.
        graph.add_node(name, cast(Any, step))
    graph.add_edge(START, "triage")
    graph.add_conditional_edges("triage", _after_triage)
    graph.add_edge("diagnose", "propose")
    graph.add_edge("propose", "gate")
    graph.add_conditional_edges("gate", _after_gate)
    graph.add_conditional_edges("await_approval", _after_approval)
    graph.add_conditional_edges("execute", _after_execute)
    graph.add_edge("verify", "judge_recovery")
    graph.add_conditional_edges("judge_recovery", _after_verify)
    graph.add_edge("propose_inverse", "gate")
    graph.add_edge("close", END)
    return graph.compile(checkpointer=checkpointer)
