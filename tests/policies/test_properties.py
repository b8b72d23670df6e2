"""Properties of decide() over generated constitutions and proposals (hypothesis)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import ActionName, Cause, Proposal, Verdict, canonical_json
from policies import Constitution, ConstitutionFile, DecisionContext, RecentAction, decide, restrictiveness
from tests.policies.helpers import T0

SERVICES = ["support-chat", "doc-summarizer", "kb-retriever", "payments-api"]
PROFILE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rules(draw: st.DrawFn, rule_id: str) -> dict[str, Any]:
    when: dict[str, Any] = {}
    if draw(st.booleans()):
        when["action"] = draw(
            st.lists(st.sampled_from([*(a.value for a in ActionName), "rollback_*"]), min_size=1, max_size=3)
        )
    if draw(st.booleans()):
        when["service"] = draw(st.lists(st.sampled_from([*SERVICES, "payments-*", "*-chat"]), min_size=1, max_size=2))
    if draw(st.booleans()):
        when["cause"] = draw(st.lists(st.sampled_from([c.value for c in Cause]), min_size=1, max_size=3))
    if draw(st.booleans()):
        when["confidence"] = {"min": draw(st.sampled_from([0.0, 0.5, 0.8, 0.9]))}
    if draw(st.booleans()):
        when["blast_radius"] = {"max": draw(st.sampled_from([0.1, 0.3, 0.7]))}
    if draw(st.booleans()):
        when["reversible"] = draw(st.booleans())
    rule: dict[str, Any] = {"id": rule_id, "when": when, "verdict": draw(st.sampled_from(["auto", "approval", "deny"]))}
    if rule["verdict"] == "approval" and draw(st.booleans()):
        rule["approval"] = {
            "approvers": draw(st.integers(1, 3)),
            "roles": [draw(st.sampled_from(["approver", "operator", "ml-lead"]))],
            "timeout": draw(st.sampled_from(["10m", "30m", "2h"])),
            "on_timeout": draw(st.sampled_from(["reject", "escalate", "auto"])),
        }
    return rule


@st.composite
def constitutions(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    head: dict[str, Any] = {"default": {"verdict": draw(st.sampled_from(["auto", "approval", "deny"]))}}
    if draw(st.booleans()):
        head["budgets"] = {"per_service_per_hour": draw(st.integers(0, 3)), "global_per_hour": draw(st.integers(0, 5))}
    if draw(st.booleans()):
        head["flap_guard"] = {"window": "20m"}
    return head, [draw(rules(f"r{i}")) for i in range(draw(st.integers(0, 6)))]


def build(head: dict[str, Any], rule_list: list[dict[str, Any]]) -> Constitution:
    """A Constitution straight from data (the YAML parser is tested elsewhere and is slow under hypothesis)."""
    data = {**head, "rules": rule_list}
    return Constitution(spec=ConstitutionFile.model_validate(data), text=canonical_json(data), source="<generated>")


proposals = st.builds(
    Proposal,
    action=st.sampled_from(list(ActionName)),
    target=st.sampled_from([*SERVICES, "llm-alpha"]),
    service=st.sampled_from(SERVICES),
    blast_radius=st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0]),
    reversible=st.booleans(),
    cause=st.sampled_from(list(Cause)),
    confidence=st.sampled_from([0.0, 0.5, 0.79, 0.8, 0.9, 1.0]),
)

recent = st.lists(
    st.builds(
        RecentAction,
        action=st.sampled_from(list(ActionName)),
        target=st.sampled_from(SERVICES),
        service=st.sampled_from(SERVICES),
        ts=st.integers(0, 7200).map(lambda s: T0 - timedelta(seconds=s)),
        automatic=st.booleans(),
    ),
    max_size=6,
).map(tuple)


@PROFILE
@given(constitutions(), proposals, recent, rules("added-deny"), st.integers(0, 6))
def test_adding_a_deny_rule_never_loosens_anything(text, p, actions, extra, position) -> None:
    """Inserting any rule with verdict deny, anywhere, never makes a decision less restrictive."""
    head, rule_list = text
    deny_rule = {"id": "added-deny", "when": extra["when"], "verdict": "deny"}
    ctx = DecisionContext(now=T0, recent_actions=actions)
    before = decide(p, ctx, build(head, rule_list))
    after = decide(p, ctx, build(head, [*rule_list[:position], deny_rule, *rule_list[position:]]))
    assert restrictiveness(after) >= restrictiveness(before)
    if "added-deny" in after.matched_rules:
        assert after.verdict is Verdict.DENY


@PROFILE
@given(constitutions(), proposals, recent, st.randoms(use_true_random=False))
def test_verdict_does_not_depend_on_rule_order(text, p, actions, rnd) -> None:
    """Shuffling the rules changes neither the verdict, the approval terms nor the set of matched rules."""
    head, rule_list = text
    shuffled = list(rule_list)
    rnd.shuffle(shuffled)
    ctx = DecisionContext(now=T0, recent_actions=actions)
    a = decide(p, ctx, build(head, rule_list))
    b = decide(p, ctx, build(head, shuffled))
    assert (a.verdict, a.approval, set(a.matched_rules)) == (b.verdict, b.approval, set(b.matched_rules))


@PROFILE
@given(constitutions(), proposals, recent)
def test_decide_is_deterministic_and_no_match_gives_default(text, p, actions) -> None:
    """Same inputs, same decision; with no rule matched it is the stated default (or stricter by a guard)."""
    head, rule_list = text
    c = build(head, rule_list)
    ctx = DecisionContext(now=T0, recent_actions=actions)
    d = decide(p, ctx, c)
    assert d == decide(p, ctx, c)
    if not d.matched_rules:
        default = c.default.verdict
        assert d.verdict is default or (default is Verdict.AUTO and d.verdict is Verdict.APPROVAL)


@PROFILE
@given(
    st.integers(0, 4),
    st.integers(0, 8),
    st.lists(
        st.tuples(st.sampled_from(SERVICES[:3]), st.sampled_from(list(ActionName)), st.integers(1, 900)),
        max_size=60,
    ),
)
def test_budgets_hold_under_any_sequence(per_service, global_limit, sequence) -> None:
    """Feeding any sequence of proposals and recording the automatic ones, no sliding hour ever exceeds a budget."""
    c = build(
        {
            "default": {"verdict": "auto"},
            "budgets": {"per_service_per_hour": per_service, "global_per_hour": global_limit},
        },
        [],
    )
    now = T0
    done: list[RecentAction] = []
    for service, action, gap in sequence:
        now += timedelta(seconds=gap)
        p = Proposal(
            action=action,
            target=service,
            service=service,
            blast_radius=0.1,
            reversible=True,
            cause=Cause.UNKNOWN,
            confidence=0.5,
        )
        d = decide(p, DecisionContext(now=now, recent_actions=tuple(done)), c)
        if d.verdict is Verdict.AUTO:
            done.append(RecentAction(action=action, target=service, service=service, ts=now, automatic=True))
    counted = [a for a in done if a.action is not ActionName.ESCALATE]
    for end in counted:
        window = [a for a in counted if end.ts - timedelta(hours=1) < a.ts <= end.ts]
        assert len(window) <= global_limit
        assert sum(1 for a in window if a.service == end.service) <= per_service
