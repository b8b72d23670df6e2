"""From a diagnosis to one contained proposal: the cause -> remedy table of DESIGN.md.

Pure: the catalog's specs say what an action touches and whether it can run at all; the
diagnosis says where. Anything uncertain, unknown or impossible becomes `escalate`, which
pages a human and changes nothing.
"""

from __future__ import annotations

from typing import Any

from domain import ActionName, Cause, ChangeEvidence, ChangeKind, Diagnosis, Proposal, Topology
from tools import CATALOG, InverseAction

#: Below this confidence nothing but a page is proposed, whatever the cause.
MIN_CONFIDENCE_TO_ACT = 0.5

_REMEDY: dict[Cause, ActionName] = {
    Cause.BAD_MODEL_DEPLOY: ActionName.ROLLBACK_MODEL_VERSION,
    Cause.TOKENIZER_MISMATCH: ActionName.ROLLBACK_MODEL_VERSION,
    Cause.BAD_PROMPT_DEPLOY: ActionName.ROLLBACK_PROMPT_VERSION,
    Cause.PROVIDER_DEGRADATION: ActionName.FAILOVER_PROVIDER,
    Cause.CAPACITY: ActionName.THROTTLE,
    Cause.COST_MISROUTING: ActionName.REVERT_ROUTING,
    Cause.DATA_DRIFT: ActionName.TRIGGER_RETRAINING,
    Cause.PII_LEAK: ActionName.PURGE_CONTEXT_CACHE,
    Cause.UPSTREAM_DEPENDENCY: ActionName.ESCALATE,
    Cause.UNKNOWN: ActionName.ESCALATE,
}

_EXPECTED_EFFECT: dict[ActionName, str] = {
    ActionName.ROLLBACK_MODEL_VERSION: "the service returns to its previous model version; signals to baseline",
    ActionName.ROLLBACK_PROMPT_VERSION: "the service returns to its previous prompt version; signals to baseline",
    ActionName.FAILOVER_PROVIDER: "traffic moves to the backup provider; errors and latency return to baseline",
    ActionName.REVERT_ROUTING: "routing returns to its previous setting; cost per request returns to baseline",
    ActionName.TRIGGER_RETRAINING: "a retraining / re-index job starts; quality recovers when it lands",
    ActionName.THROTTLE: "load is shed; latency tail and queue depth fall",
    ActionName.PURGE_CONTEXT_CACHE: "cached contexts are dropped; PII alerts stop",
    ActionName.ESCALATE: "a human is paged; nothing is changed automatically",
}


#: Parameters an action needs that the diagnosis does not supply (typed and checked by the catalog).
_DEFAULT_PARAMETERS: dict[ActionName, dict[str, Any]] = {
    ActionName.THROTTLE: {"admit_fraction": 0.8, "duration_s": 900.0},
    ActionName.ESCALATE: {"urgency": "page"},
}


def _remedy_for(diagnosis: Diagnosis) -> ActionName:
    if diagnosis.cause is Cause.SAFETY_REGRESSION:
        # A safety regression right after a deploy is rolled back; without one, a human decides.
        kinds = {e.kind for e in diagnosis.evidence if isinstance(e, ChangeEvidence)}
        if ChangeKind.PROMPT_VERSION in kinds:
            return ActionName.ROLLBACK_PROMPT_VERSION
        if ChangeKind.MODEL_VERSION in kinds:
            return ActionName.ROLLBACK_MODEL_VERSION
        return ActionName.ESCALATE
    if diagnosis.cause is Cause.UPSTREAM_DEPENDENCY:
        # Act on the callee: undo the change that degraded it, if the diagnosis rests on one;
        # without a change to undo, a human decides.
        on_callee = {
            e.kind for e in diagnosis.evidence if isinstance(e, ChangeEvidence) and e.service == diagnosis.service
        }
        for kind, action in _UNDO_CHANGE:
            if kind in on_callee:
                return action
        return ActionName.ESCALATE
    return _REMEDY[diagnosis.cause]


#: The rollback that undoes a change of each kind (in order of preference).
_UNDO_CHANGE: tuple[tuple[ChangeKind, ActionName], ...] = (
    (ChangeKind.MODEL_VERSION, ActionName.ROLLBACK_MODEL_VERSION),
    (ChangeKind.PROMPT_VERSION, ActionName.ROLLBACK_PROMPT_VERSION),
    (ChangeKind.ROUTING, ActionName.REVERT_ROUTING),
)


def propose(diagnosis: Diagnosis, topology: Topology, *, proposer: str = "homeostat") -> Proposal:
    """The one action this diagnosis calls for, with its blast radius and reversibility.

    Falls back to `escalate` when confidence is below MIN_CONFIDENCE_TO_ACT or the action's
    preconditions do not hold (the reasons go into the proposal's parameters).
    """
    action = _remedy_for(diagnosis)
    reasons: list[str] = []
    if action is not ActionName.ESCALATE and diagnosis.confidence < MIN_CONFIDENCE_TO_ACT:
        reasons.append(f"confidence {diagnosis.confidence:.2f} is below {MIN_CONFIDENCE_TO_ACT} to act")
        action = ActionName.ESCALATE
    target = _target_for(action, diagnosis)
    if action is not ActionName.ESCALATE:
        spec = CATALOG[action]
        failures = spec.preconditions(topology, target, spec.validate_params({}))
        if failures:
            reasons.extend(failures)
            action = ActionName.ESCALATE
            target = diagnosis.service
    return _build(action, target=target, diagnosis=diagnosis, topology=topology, proposer=proposer, reasons=reasons)


def inverse_proposal(proposal: Proposal, inverse: InverseAction, topology: Topology) -> Proposal:
    """The proposal that undoes `proposal` (its inverse was computed before it ran)."""
    spec = CATALOG[inverse.action]
    return Proposal(
        action=inverse.action,
        target=inverse.target,
        service=proposal.service,
        parameters=dict(inverse.parameters),
        expected_effect=f"undo {proposal.action.value} on {proposal.target}: it did not bring recovery",
        blast_radius=spec.blast_radius(topology, inverse.target),
        reversible=spec.reversible,
        cause=proposal.cause,
        confidence=proposal.confidence,
        proposer=proposal.proposer,
    )


def _target_for(action: ActionName, diagnosis: Diagnosis) -> str:
    if action is ActionName.FAILOVER_PROVIDER and diagnosis.provider:
        return diagnosis.provider
    return diagnosis.service


def _build(
    action: ActionName,
    *,
    target: str,
    diagnosis: Diagnosis,
    topology: Topology,
    proposer: str,
    reasons: list[str],
) -> Proposal:
    spec = CATALOG[action]
    expected = _EXPECTED_EFFECT[action]
    if reasons:
        expected += " (not more, because " + "; ".join(reasons) + ")"
    if diagnosis.cause is Cause.PII_LEAK:
        expected += "; irreversible, so a person approves it first: a leak is never handled silently"
    return Proposal(
        action=action,
        target=target,
        service=diagnosis.service,
        parameters=dict(_DEFAULT_PARAMETERS.get(action, {})),
        expected_effect=expected,
        blast_radius=spec.blast_radius(topology, target),
        reversible=spec.reversible,
        cause=diagnosis.cause,
        confidence=diagnosis.confidence,
        proposer=proposer,
    )
