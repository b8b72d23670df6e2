"""The gate's brain: a pure function from (proposal, context, constitution) to a Decision, with reasons.

No clock, no I/O: the context carries `now` and the recent actions, so the audit replay can
re-derive every decision from what was recorded. The most restrictive verdict among matching
rules wins (deny > approval > auto), so rule order never matters; guards (kill switch, budgets,
flap guard) can only make a verdict stricter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field

from domain import ActionName, ApprovalRequirement, Decision, OnTimeout, Proposal, Verdict
from domain.types import UtcDatetime
from policies.constitution import Constitution
from policies.schema import FlapGuard, KillSwitch, Rule, TimeWindow

HOUR = timedelta(hours=1)

POLICY_ENGINE_VERSION = "1.0.0"
"""The version of this decision logic, stamped on every Decision so the audit replay can tell an
engine change from tampering. Semver: bump MAJOR when the same inputs and constitution can give a
stricter or looser verdict, MINOR when only the reasons' wording or the approval details can
differ, PATCH for changes that never alter a Decision. Decisions recorded before stamping carry
None: they came from engines older than 1.0.0 (e.g. before the flap guard)."""

_VERDICT_RANK: dict[Verdict, int] = {Verdict.AUTO: 0, Verdict.APPROVAL: 1, Verdict.DENY: 2}
_ON_TIMEOUT_RANK: dict[OnTimeout, int] = {OnTimeout.AUTO: 0, OnTimeout.ESCALATE: 1, OnTimeout.REJECT: 2}


class RecentAction(BaseModel):
    """An action that ran (or was allowed to run) before this decision: what budgets and the flap guard count."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: ActionName
    target: str
    service: str
    ts: UtcDatetime
    automatic: bool
    services: tuple[str, ...] = Field(
        default=(), description="every service the action changed besides `service` (all that a failover moved)"
    )
    destination: str | None = Field(
        default=None, description="where the action moved traffic to (the backup provider of a failover), if known"
    )

    def changed_services(self) -> frozenset[str]:
        """The services this action changed: the one it ran for and any others it touched."""
        return frozenset((self.service, *self.services))


class DecisionContext(BaseModel):
    """Everything besides the proposal and the constitution that a decision depends on.
    Recorded with each decision so the audit replay can re-derive it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    now: UtcDatetime
    recent_actions: tuple[RecentAction, ...] = ()
    kill_switch: KillSwitch | None = None  # None: the constitution file's setting


@dataclass(frozen=True)
class RuleCheck:
    """How one rule fared against one proposal: matched or not, and each condition in words."""

    rule_id: str
    matched: bool
    verdict: Verdict
    conditions: tuple[tuple[bool, str], ...]

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(text for ok, text in self.conditions if not ok)


@dataclass(frozen=True)
class Explanation:
    """The decision plus the evidence for it: every rule's check and every guard's effect."""

    decision: Decision
    checks: tuple[RuleCheck, ...]
    kill_switch: KillSwitch


# --------------------------------------------------------------------------------------------
# Rule matching
# --------------------------------------------------------------------------------------------


def _glob_check(label: str, value: str, patterns: Sequence[str]) -> tuple[bool, str]:
    hit = next((p for p in patterns if fnmatchcase(value, p)), None)
    if hit is not None:
        return True, f"{label} {value!r} matches {hit!r}"
    return False, f"{label} {value!r} matches none of {', '.join(repr(p) for p in patterns)}"


def _window_check(now: datetime, windows: Sequence[TimeWindow], inside: bool) -> tuple[bool, str]:
    hit = next((w for w in windows if w.contains(now)), None)
    stamp = now.isoformat()
    if inside:
        if hit is not None:
            return True, f"time {stamp} is inside {hit.describe()}"
        return False, f"time {stamp} is inside none of: {'; '.join(w.describe() for w in windows)}"
    if hit is None:
        return True, f"time {stamp} is outside all of: {'; '.join(w.describe() for w in windows)}"
    return False, f"time {stamp} is inside excluded window {hit.describe()}"


def check_rule(rule: Rule, proposal: Proposal, now: datetime) -> RuleCheck:
    """Evaluate every condition of `rule` (not stopping at the first failure, so explain shows all)."""
    when = rule.when
    conditions: list[tuple[bool, str]] = []
    if when.action is not None:
        conditions.append(_glob_check("action", proposal.action.value, when.action))
    if when.service is not None:
        conditions.append(_glob_check("service", proposal.service, when.service))
    if when.target is not None:
        conditions.append(_glob_check("target", proposal.target, when.target))
    if when.cause is not None:
        ok = proposal.cause.value in when.cause
        conditions.append(
            (ok, f"cause {proposal.cause.value!r} {'is' if ok else 'is not'} one of {', '.join(when.cause)}")
        )
    if when.confidence is not None:
        ok = when.confidence.contains(proposal.confidence)
        conditions.append(
            (ok, f"confidence {proposal.confidence:g} {'is' if ok else 'is not'} {when.confidence.describe()}")
        )
    if when.blast_radius is not None:
        ok = when.blast_radius.contains(proposal.blast_radius)
        conditions.append(
            (ok, f"blast radius {proposal.blast_radius:g} {'is' if ok else 'is not'} {when.blast_radius.describe()}")
        )
    if when.reversible is not None:
        ok = proposal.reversible == when.reversible
        conditions.append((ok, f"reversible is {proposal.reversible} (rule wants {when.reversible})"))
    if when.during is not None:
        conditions.append(_window_check(now, when.during, inside=True))
    if when.outside is not None:
        conditions.append(_window_check(now, when.outside, inside=False))
    if not conditions:
        conditions.append((True, "no conditions: matches every proposal"))
    return RuleCheck(
        rule_id=rule.id,
        matched=all(ok for ok, _ in conditions),
        verdict=rule.verdict,
        conditions=tuple(conditions),
    )


# --------------------------------------------------------------------------------------------
# Combining verdicts
# --------------------------------------------------------------------------------------------


def merge_approvals(requirements: Sequence[ApprovalRequirement]) -> ApprovalRequirement:
    """The strictest combination: most approvers, union of roles, shortest timeout, strictest on_timeout."""
    if not requirements:
        raise ValueError("merge_approvals needs at least one requirement")
    return ApprovalRequirement(
        approvers=max(r.approvers for r in requirements),
        roles=tuple(sorted({role for r in requirements for role in r.roles})),
        timeout_s=min(r.timeout_s for r in requirements),
        on_timeout=max((r.on_timeout for r in requirements), key=_ON_TIMEOUT_RANK.__getitem__),
    )


def restrictiveness(decision: Decision) -> tuple[int, int, int, float, int]:
    """A sort key: larger is more restrictive (verdict, approvers, roles, -timeout, on_timeout).
    Note roles: more roles listed means more people may approve, but the brief counts the
    union as stricter; it is last-but-two in the key so it rarely decides."""
    if decision.verdict is not Verdict.APPROVAL or decision.approval is None:
        return (_VERDICT_RANK[decision.verdict], 0, 0, 0.0, 0)
    a = decision.approval
    return (_VERDICT_RANK[decision.verdict], a.approvers, len(a.roles), -a.timeout_s, _ON_TIMEOUT_RANK[a.on_timeout])


def _is_exempt(action: ActionName, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(action.value, p) for p in patterns)


def explain(proposal: Proposal, context: DecisionContext, constitution: Constitution) -> Explanation:
    """Decide, keeping every rule check and guard step for `homeostat constitution explain`."""
    now = context.now
    checks = tuple(check_rule(rule, proposal, now) for rule in constitution.rules)
    matched = [(rule, check) for rule, check in zip(constitution.rules, checks, strict=True) if check.matched]
    reasons: list[str] = []

    verdict: Verdict
    approval: ApprovalRequirement | None = None
    if not matched:
        default = constitution.default
        verdict = default.verdict
        if verdict is Verdict.APPROVAL:
            approval = constitution.approval_for(default.approval)
        reasons.append(f"no rule matched; the constitution's default is {verdict.value}")
    else:
        verdict = max((rule.verdict for rule, _ in matched), key=_VERDICT_RANK.__getitem__)
        for rule, check in matched:
            why = "; ".join(text for _, text in check.conditions)
            reasons.append(f"rule {rule.id!r} -> {rule.verdict.value}: {why}")
        if verdict is Verdict.APPROVAL:
            approval = merge_approvals(
                [constitution.approval_for(rule.approval) for rule, _ in matched if rule.verdict is Verdict.APPROVAL]
            )
        if len(matched) > 1:
            reasons.append(f"{len(matched)} rules matched; the most restrictive verdict, {verdict.value}, wins")

    kill_switch = context.kill_switch if context.kill_switch is not None else constitution.kill_switch
    source = "decision context" if context.kill_switch is not None else "constitution"

    if verdict is Verdict.AUTO:
        budget = _budget_reason(proposal, context, constitution)
        if budget is not None:
            verdict = Verdict.APPROVAL
            approval = constitution.approval_for(None)
            reasons.append(budget)

    flap_guard = constitution.flap_guard
    flap = _flap_reason(proposal, context, flap_guard) if flap_guard is not None else None
    if flap_guard is not None and flap is not None and verdict is not Verdict.DENY:
        verdict, approval = _hold_back(flap, flap_guard, approval, constitution, reasons)

    if kill_switch is KillSwitch.DENY_ALL and verdict is not Verdict.DENY:
        reasons.append(f"kill switch deny_all (from the {source}) turns {verdict.value} into deny")
        verdict, approval = Verdict.DENY, None
    elif kill_switch is KillSwitch.AUTO_TO_APPROVAL and verdict is Verdict.AUTO:
        reasons.append(f"kill switch auto_to_approval (from the {source}) turns auto into approval")
        verdict, approval = Verdict.APPROVAL, constitution.approval_for(None)

    decision = Decision(
        verdict=verdict,
        approval=approval if verdict is Verdict.APPROVAL else None,
        matched_rules=tuple(rule.id for rule, _ in matched),
        reasons=tuple(reasons),
        constitution_digest=constitution.digest,
        engine_version=POLICY_ENGINE_VERSION,
    )
    return Explanation(decision=decision, checks=checks, kill_switch=kill_switch)


def _hold_back(
    flap: str,
    flap_guard: FlapGuard,
    approval: ApprovalRequirement | None,
    constitution: Constitution,
    reasons: list[str],
) -> tuple[Verdict, ApprovalRequirement | None]:
    """The flap guard's verdict for a flapping proposal: deny, or an approval that never turns into auto."""
    if flap_guard.verdict is Verdict.DENY:
        reasons.append(f"{flap}; the flap guard denies it")
        return Verdict.DENY, None
    if approval is None:
        approval = constitution.approval_for(None)
    said = f"{flap}; it needs approval"
    if approval.on_timeout is OnTimeout.AUTO:
        approval = approval.model_copy(update={"on_timeout": OnTimeout.REJECT})
        said += " and is rejected (not run) if nobody answers in time"
    reasons.append(said)
    return Verdict.APPROVAL, approval


def _budget_reason(proposal: Proposal, context: DecisionContext, constitution: Constitution) -> str | None:
    """Why an automatic verdict must wait for approval because a budget is spent, or None."""
    now = context.now
    budgets = constitution.budgets
    if _is_exempt(proposal.action, budgets.exempt_actions):
        return None
    counted = [
        a
        for a in context.recent_actions
        if a.ts <= now and a.automatic and now - a.ts < HOUR and not _is_exempt(a.action, budgets.exempt_actions)
    ]
    limit = budgets.per_service_per_hour
    if limit is not None:
        n = sum(1 for a in counted if a.service == proposal.service)
        if n >= limit:
            return (
                f"budget: {n} automatic actions on service {proposal.service!r} in the past hour"
                f" (limit {limit}); this one needs approval"
            )
    limit = budgets.global_per_hour
    if limit is not None and len(counted) >= limit:
        return (
            f"budget: {len(counted)} automatic actions fleet-wide in the past hour (limit {limit});"
            " this one needs approval"
        )
    return None


def _string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def flap_link(proposal: Proposal, earlier: RecentAction) -> str | None:
    """How `proposal` would undo or repeat `earlier` (in words), or None if they are unrelated.

    Related means: the same target; a service both change (the service each runs for, plus the
    services a failover names or moved); or the same provider pair reversed (the proposal moves
    traffic off the provider `earlier` moved it to, or back onto the one it left). A failover
    whose destination was not recorded is assumed to be reversed by any later failover that does
    not name a destination of its own.
    """
    if earlier.target == proposal.target:
        return f"same target {proposal.target!r}"
    shared = sorted(earlier.changed_services() & {proposal.service, *_string_list(proposal.parameters.get("services"))})
    if shared:
        return f"same service {', '.join(repr(s) for s in shared)}"
    to_provider = proposal.parameters.get("to_provider")
    if earlier.destination is not None and proposal.target == earlier.destination:
        return (
            f"reverses it: {earlier.action.value} moved traffic from {earlier.target!r} to {earlier.destination!r},"
            f" this moves it off {proposal.target!r} again"
        )
    if isinstance(to_provider, str) and to_provider == earlier.target:
        return f"reverses it: traffic goes back onto {to_provider!r}, which {earlier.action.value} moved it off"
    if (
        earlier.action is ActionName.FAILOVER_PROVIDER
        and proposal.action is ActionName.FAILOVER_PROVIDER
        and earlier.destination is None
        and not earlier.services
        and not isinstance(to_provider, str)  # an explicit destination elsewhere is not the way back
    ):
        return (
            f"may reverse it: where {earlier.action.value} of {earlier.target!r} moved traffic is not recorded,"
            f" so a failover of {proposal.target!r} may move it back"
        )
    return None


def _flap_reason(proposal: Proposal, context: DecisionContext, flap: FlapGuard) -> str | None:
    """Why `proposal` would flap: the latest related state-changing action inside the window, or None."""
    if _is_exempt(proposal.action, flap.exempt_actions):
        return None
    now = context.now
    window = timedelta(seconds=flap.window)
    related = [
        (a, link)
        for a in context.recent_actions
        if a.ts <= now and now - a.ts < window and not _is_exempt(a.action, flap.exempt_actions)
        for link in (flap_link(proposal, a),)
        if link is not None
    ]
    if not related:
        return None
    last, link = max(related, key=lambda pair: pair[0].ts)
    ago = (now - last.ts).total_seconds()
    more = f" (and {len(related) - 1} more related action(s) in the window)" if len(related) > 1 else ""
    return (
        f"flap guard: {proposal.action.value} on {proposal.target!r} for service {proposal.service!r} follows"
        f" {last.action.value} on {last.target!r} for {last.service!r} {ago:g}s ago ({link}), inside the"
        f" {flap.window:g}s window{more}"
    )


def decide(proposal: Proposal, context: DecisionContext, constitution: Constitution) -> Decision:
    """What the constitution says about `proposal` right now. Pure and deterministic."""
    return explain(proposal, context, constitution).decision
