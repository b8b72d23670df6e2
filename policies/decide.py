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

from pydantic import BaseModel, ConfigDict

from domain import ActionName, ApprovalRequirement, Decision, OnTimeout, Proposal, Verdict
from domain.types import UtcDatetime
from policies.constitution import Constitution
from policies.schema import KillSwitch, Rule, TimeWindow

HOUR = timedelta(hours=1)

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
        guard = _guard_reason(proposal, context, constitution)
        if guard is not None:
            verdict = Verdict.APPROVAL
            approval = constitution.approval_for(None)
            reasons.append(guard)

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
    )
    return Explanation(decision=decision, checks=checks, kill_switch=kill_switch)


def _guard_reason(proposal: Proposal, context: DecisionContext, constitution: Constitution) -> str | None:
    """Why an automatic verdict must wait for approval (budget or flap guard), or None."""
    now = context.now
    past = [a for a in context.recent_actions if a.ts <= now]
    budgets = constitution.budgets
    if not _is_exempt(proposal.action, budgets.exempt_actions):
        counted = [
            a for a in past if a.automatic and now - a.ts < HOUR and not _is_exempt(a.action, budgets.exempt_actions)
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
    flap = constitution.flap_guard
    if flap is not None and not _is_exempt(proposal.action, flap.exempt_actions):
        window = timedelta(seconds=flap.window)
        earlier = [
            a for a in past if a.action is proposal.action and a.target == proposal.target and now - a.ts < window
        ]
        if earlier:
            last = max(earlier, key=lambda a: a.ts)
            ago = (now - last.ts).total_seconds()
            return (
                f"flap guard: {proposal.action.value} on {proposal.target!r} already ran {ago:g}s ago"
                f" (window {flap.window:g}s); this one needs approval"
            )
    return None


def decide(proposal: Proposal, context: DecisionContext, constitution: Constitution) -> Decision:
    """What the constitution says about `proposal` right now. Pure and deterministic."""
    return explain(proposal, context, constitution).decision
