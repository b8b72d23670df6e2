"""The flap guard: a second state-changing action on the same service, target or provider pair
inside the window never runs on its own, whatever the action and target."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ActionName, Cause, OnTimeout, Proposal, Verdict
from policies import (
    ConstitutionError,
    DecisionContext,
    RecentAction,
    decide,
    flap_link,
    parse_constitution,
    restrictiveness,
)
from tests.policies.helpers import SHIPPED, T0, proposal
from tests.policies.test_properties import PROFILE, build, constitutions, proposals, recent

# Everything automatic, so only the flap guard can hold an action back.
ALL_AUTO = """\
default: {verdict: auto}
approval_defaults: {approvers: 1, roles: [approver], timeout: 1h, on_timeout: reject}
flap_guard: {window: 30m}
"""


def ran(
    action: ActionName,
    service: str,
    minutes_ago: float,
    *,
    target: str | None = None,
    services: tuple[str, ...] = (),
    destination: str | None = None,
    automatic: bool = True,
) -> RecentAction:
    return RecentAction(
        action=action,
        target=target or service,
        service=service,
        ts=T0 - timedelta(minutes=minutes_ago),
        automatic=automatic,
        services=services,
        destination=destination,
    )


def failover(service: str, provider: str, **parameters: Any) -> Proposal:
    return proposal(
        ActionName.FAILOVER_PROVIDER,
        service,
        target=provider,
        cause=Cause.PROVIDER_DEGRADATION,
        parameters=parameters,
    )


def ctx(*actions: RecentAction) -> DecisionContext:
    return DecisionContext(now=T0, recent_actions=actions)


def flap_reasons(reasons: tuple[str, ...]) -> list[str]:
    return [r for r in reasons if r.startswith("flap guard:")]


C = parse_constitution(ALL_AUTO)

# The failover of llm-alpha moved support-chat and doc-summarizer to llm-beta 10 minutes ago.
FAILED_OVER = ran(
    ActionName.FAILOVER_PROVIDER,
    "support-chat",
    10,
    target="llm-alpha",
    services=("support-chat", "doc-summarizer"),
    destination="llm-beta",
)


class TestWhatCountsAsAFlap:
    @pytest.mark.parametrize(
        ("earlier", "now", "link"),
        [
            # the old key: same action, same target
            (ran(ActionName.THROTTLE, "support-chat", 5), proposal(ActionName.THROTTLE), "same target"),
            # another action on the same service
            (ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", 5), proposal(), "same target"),
            # the backup is slow too: failing the moved services over again (back) from the backup
            (FAILED_OVER, failover("doc-summarizer", "llm-beta"), "same service"),
            # the provider pair reversed, for a service the first failover did not run for
            (FAILED_OVER, failover("kb-writer", "llm-beta"), "reverses it"),
            # moving traffic back onto the provider just left
            (FAILED_OVER, failover("kb-writer", "llm-gamma", to_provider="llm-alpha"), "reverses it"),
            # a service named in the proposal's parameters was moved by the earlier failover
            (FAILED_OVER, failover("kb-writer", "llm-gamma", services=["doc-summarizer"]), "same service"),
            # a rollback on a service the failover moved
            (FAILED_OVER, proposal(ActionName.ROLLBACK_MODEL_VERSION, "doc-summarizer"), "same service"),
            # where the earlier failover went is not recorded: any failover may reverse it
            (
                ran(ActionName.FAILOVER_PROVIDER, "support-chat", 10, target="llm-alpha"),
                failover("kb-writer", "llm-beta"),
                "may reverse it",
            ),
        ],
    )
    def test_related_action_inside_the_window_is_held_back(
        self, earlier: RecentAction, now: Proposal, link: str
    ) -> None:
        """A related state-changing action inside the window needs approval and the reason names the link."""
        assert link in (flap_link(now, earlier) or "")
        d = decide(now, ctx(earlier), C)
        assert d.verdict is Verdict.APPROVAL
        (reason,) = flap_reasons(d.reasons)
        assert link in reason and earlier.action.value in reason and "needs approval" in reason

    @pytest.mark.parametrize(
        ("earlier", "now"),
        [
            (FAILED_OVER, failover("kb-writer", "llm-gamma")),  # another provider, destination known
            (FAILED_OVER, proposal(ActionName.ROLLBACK_MODEL_VERSION, "kb-writer")),  # a service it did not move
            (  # destination not recorded, but this failover names where it goes: not the way back
                ran(ActionName.FAILOVER_PROVIDER, "support-chat", 10, target="llm-alpha"),
                failover("kb-writer", "llm-beta", to_provider="llm-gamma"),
            ),
            (ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", 30), proposal()),  # window is [now-30m, now)
            (ran(ActionName.ESCALATE, "support-chat", 1), proposal()),  # escalate changes nothing
            (ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", -1), proposal()),  # stamped after now
        ],
    )
    def test_unrelated_old_exempt_or_future_actions_are_not_a_flap(self, earlier: RecentAction, now: Proposal) -> None:
        """Actions on other services and providers, outside the window, exempt or from the future do not count."""
        d = decide(now, ctx(earlier), C)
        assert d.verdict is Verdict.AUTO
        assert flap_reasons(d.reasons) == []

    def test_escalate_is_never_held_back(self) -> None:
        """Paging a human right after a failover on the same service still runs on its own."""
        d = decide(proposal(ActionName.ESCALATE, "support-chat"), ctx(FAILED_OVER), C)
        assert d.verdict is Verdict.AUTO


class TestWhatTheGuardDoes:
    def test_an_approval_verdict_keeps_its_terms_and_gains_the_reason(self) -> None:
        """A failover that needs approval anyway keeps the rule's terms; the approver is told it would flap."""
        c = parse_constitution(SHIPPED.read_text())
        d = decide(failover("support-chat", "llm-beta"), ctx(FAILED_OVER), c)
        assert d.verdict is Verdict.APPROVAL and d.approval is not None
        assert d.approval.on_timeout is OnTimeout.ESCALATE  # the failover rule's own term
        assert "failover-needs-one-approver" in d.matched_rules
        assert len(flap_reasons(d.reasons)) == 1

    def test_a_flapping_action_never_runs_when_an_approval_times_out(self) -> None:
        """An approval that would run the action on timeout is turned into one that rejects it."""
        c = parse_constitution(
            ALL_AUTO + "rules:\n  - id: failover-auto-on-timeout\n    when: {action: failover_provider}\n"
            "    verdict: approval\n    approval: {timeout: 5m, on_timeout: auto}\n"
        )
        fresh = decide(failover("support-chat", "llm-beta"), ctx(), c)
        assert fresh.approval is not None and fresh.approval.on_timeout is OnTimeout.AUTO
        d = decide(failover("support-chat", "llm-beta"), ctx(FAILED_OVER), c)
        assert d.approval is not None and d.approval.on_timeout is OnTimeout.REJECT
        assert d.approval.timeout_s == 300.0
        assert "rejected (not run) if nobody answers" in flap_reasons(d.reasons)[0]

    def test_verdict_deny_denies_the_flap(self) -> None:
        """With `verdict: deny` the flapping action is denied outright, and the reason says the guard did it."""
        c = parse_constitution(ALL_AUTO.replace("{window: 30m}", "{window: 30m, verdict: deny}"))
        d = decide(failover("support-chat", "llm-beta"), ctx(FAILED_OVER), c)
        assert d.verdict is Verdict.DENY and d.approval is None
        assert flap_reasons(d.reasons)[0].endswith("the flap guard denies it")
        assert decide(failover("kb-writer", "llm-gamma"), ctx(FAILED_OVER), c).verdict is Verdict.AUTO

    def test_the_latest_related_action_is_cited(self) -> None:
        """With several related actions in the window the reason cites the latest and counts the others."""
        older = ran(ActionName.THROTTLE, "support-chat", 20)
        d = decide(proposal(), ctx(older, ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", 3)), C)
        (reason,) = flap_reasons(d.reasons)
        assert "rollback_model_version" in reason and "180s ago" in reason and "1 more related" in reason

    def test_verdict_auto_is_refused_with_its_line(self) -> None:
        """`flap_guard.verdict: auto` would defeat the guard: validation fails naming the line and key."""
        text = ALL_AUTO.replace("flap_guard: {window: 30m}", "flap_guard:\n  window: 30m\n  verdict: auto")
        with pytest.raises(ConstitutionError) as err:
            parse_constitution(text, source="c.yaml")
        assert "c.yaml:5: flap_guard.verdict" in str(err.value) and "not 'auto'" in str(err.value)

    def test_recorded_contexts_without_the_new_fields_still_load(self) -> None:
        """Decision contexts recorded before `services`/`destination` existed replay unchanged."""
        old = {
            "now": T0.isoformat(),
            "recent_actions": [
                {"action": "throttle", "target": "a", "service": "a", "ts": T0.isoformat(), "automatic": True}
            ],
        }
        action = DecisionContext.model_validate(old).recent_actions[0]
        assert action.services == () and action.destination is None


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

SERVICES = ["support-chat", "doc-summarizer", "kb-writer"]
PROVIDERS = ["llm-alpha", "llm-beta", "llm-gamma"]


@st.composite
def steps(draw: st.DrawFn) -> tuple[Proposal, int, tuple[str, ...], str | None]:
    """A proposal, the seconds since the previous one, and what it changes if it runs."""
    action = draw(st.sampled_from([a for a in ActionName]))
    service = draw(st.sampled_from(SERVICES))
    gap = draw(st.integers(1, 1200))
    if action is ActionName.FAILOVER_PROVIDER:
        source, destination = draw(st.permutations(PROVIDERS))[:2]
        moved = tuple(draw(st.lists(st.sampled_from(SERVICES), max_size=3, unique=True)))
        params: dict[str, Any] = {}
        if draw(st.booleans()):
            params["to_provider"] = destination
        p = proposal(action, service, target=source, cause=Cause.PROVIDER_DEGRADATION, parameters=params)
        return p, gap, moved, destination if draw(st.booleans()) else None
    return proposal(action, service, cause=Cause.UNKNOWN), gap, (), None


@PROFILE
@given(st.lists(steps(), max_size=40), st.sampled_from([60.0, 600.0, 1800.0]))
def test_no_two_related_actions_run_automatically_inside_the_window(sequence, window) -> None:
    """Over any sequence, recording what ran on its own, no related pair ever ran automatically inside the window."""
    c = parse_constitution(ALL_AUTO.replace("{window: 30m}", f"{{window: {window:g}}}"))
    now = T0
    done: list[tuple[Proposal, RecentAction]] = []
    for p, gap, moved, destination in sequence:
        now += timedelta(seconds=gap)
        ran_before = tuple(a for _, a in done)
        if decide(p, DecisionContext(now=now, recent_actions=ran_before), c).verdict is Verdict.AUTO:
            record = RecentAction(
                action=p.action,
                target=p.target,
                service=p.service,
                ts=now,
                automatic=True,
                services=moved,
                destination=destination,
            )
            done.append((p, record))
    for i, (later, at) in enumerate(done):
        if later.action is ActionName.ESCALATE:
            continue
        for _, earlier in done[:i]:
            if earlier.action is ActionName.ESCALATE or (at.ts - earlier.ts).total_seconds() >= window:
                continue
            assert flap_link(later, earlier) is None, f"{later.action} ran automatically after {earlier.action}"


@PROFILE
@given(constitutions(), proposals, recent)
def test_the_flap_guard_never_loosens_a_decision(text, p, actions) -> None:
    """Adding a flap guard (any verdict) to any constitution makes no decision less restrictive."""
    head, rule_list = text
    without = {k: v for k, v in head.items() if k != "flap_guard"}
    ctx_ = DecisionContext(now=T0, recent_actions=actions)
    base = decide(p, ctx_, build(without, rule_list))
    for guard in ({"window": "20m"}, {"window": "20m", "verdict": "deny"}):
        guarded = decide(p, ctx_, build({**without, "flap_guard": guard}, rule_list))
        assert restrictiveness(guarded) >= restrictiveness(base)


@PROFILE
@given(constitutions(), proposals, recent)
def test_a_flapping_decision_never_runs_on_its_own(text, p, actions) -> None:
    """Whenever the guard cites a flap, the verdict is approval (never auto on timeout) or deny."""
    head, rule_list = text
    d = decide(p, DecisionContext(now=T0, recent_actions=actions), build(head, rule_list))
    if flap_reasons(d.reasons):
        assert d.verdict is not Verdict.AUTO
        assert d.approval is None or d.approval.on_timeout is not OnTimeout.AUTO


@PROFILE
@given(st.permutations(PROVIDERS), st.sampled_from(SERVICES), st.sampled_from(SERVICES), st.integers(0, 1799))
def test_failing_back_is_a_flap_for_any_provider_pair(providers, first, second, seconds_ago) -> None:
    """Failing over A to B then failing over B (any services, any time inside the window) is always held back."""
    a, b, _ = providers
    earlier = RecentAction(
        action=ActionName.FAILOVER_PROVIDER,
        target=a,
        service=first,
        ts=T0 - timedelta(seconds=seconds_ago),
        automatic=False,
        destination=b,
    )
    d = decide(failover(second, b), ctx(earlier), C)
    assert d.verdict is Verdict.APPROVAL and flap_reasons(d.reasons)
