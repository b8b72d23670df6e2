"""decide(): verdict combination, budgets, flap guard, kill switch and time windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import ActionName, Cause, Decision, OnTimeout, Verdict
from policies import DecisionContext, KillSwitch, RecentAction, decide, parse_constitution
from tests.policies.helpers import T0, proposal

AUTO_ROLLBACK = """\
default: {verdict: approval}
approval_defaults: {approvers: 1, roles: [approver], timeout: 1h, on_timeout: reject}
budgets: {per_service_per_hour: 2, global_per_hour: 3}
flap_guard: {window: 30m}
rules:
  - id: rollback-auto
    when: {action: "rollback_*"}
    verdict: auto
  - id: escalate-auto
    when: {action: escalate}
    verdict: auto
"""


def ran(action: ActionName, service: str, minutes_ago: float, *, automatic: bool = True, target: str | None = None):
    return RecentAction(
        action=action,
        target=target or service,
        service=service,
        ts=T0 - timedelta(minutes=minutes_ago),
        automatic=automatic,
    )


def ctx(*recent: RecentAction, kill_switch: KillSwitch | None = None, now: datetime = T0) -> DecisionContext:
    return DecisionContext(now=now, recent_actions=recent, kill_switch=kill_switch)


C = parse_constitution(AUTO_ROLLBACK)
NO_FLAP_GUARD = parse_constitution(AUTO_ROLLBACK.replace("flap_guard: {window: 30m}\n", ""))


class TestCombination:
    def test_most_restrictive_matching_verdict_wins(self) -> None:
        """When auto, approval and deny rules all match, the decision is deny and cites all three."""
        c = parse_constitution(
            "rules:\n"
            "  - {id: a, verdict: auto}\n"
            "  - {id: b, verdict: approval}\n"
            "  - {id: c, when: {service: 'support-*'}, verdict: deny}\n"
        )
        d = decide(proposal(), ctx(), c)
        assert d.verdict is Verdict.DENY and d.approval is None
        assert d.matched_rules == ("a", "b", "c")

    def test_approvals_merge_to_the_strictest_terms(self) -> None:
        """Matching approval rules combine: most approvers, union of roles, shortest timeout, strictest on_timeout."""
        c = parse_constitution(
            "rules:\n"
            "  - id: a\n    verdict: approval\n"
            "    approval: {approvers: 1, roles: [sre], timeout: 2h, on_timeout: auto}\n"
            "  - id: b\n    verdict: approval\n"
            "    approval: {approvers: 2, roles: [ml-lead], timeout: 45m, on_timeout: escalate}\n"
        )
        d = decide(proposal(), ctx(), c)
        assert d.approval is not None
        assert (d.approval.approvers, d.approval.roles, d.approval.timeout_s, d.approval.on_timeout) == (
            2,
            ("ml-lead", "sre"),
            2700.0,
            OnTimeout.ESCALATE,
        )

    @pytest.mark.parametrize("default", ["auto", "approval", "deny"])
    def test_no_match_falls_to_the_stated_default(self, default: str) -> None:
        """A proposal no rule matches gets the file's default verdict, with no rule cited."""
        c = parse_constitution(
            f"default: {{verdict: {default}}}\nrules:\n  - {{id: x, when: {{service: other}}, verdict: deny}}\n"
        )
        d = decide(proposal(), ctx(), c)
        assert d.verdict is Verdict(default)
        assert d.matched_rules == ()
        assert "no rule matched" in d.reasons[0]

    def test_decision_carries_digest_of_the_exact_text(self) -> None:
        """Two constitutions differing only in a comment have different digests, and decisions cite theirs."""
        a = parse_constitution(AUTO_ROLLBACK)
        b = parse_constitution(AUTO_ROLLBACK + "# tweak\n")
        assert decide(proposal(), ctx(), a).constitution_digest == a.digest != b.digest


class TestConditions:
    @pytest.mark.parametrize(
        ("when", "matches"),
        [
            ("{confidence: {min: 0.9}}", False),
            ("{confidence: {min: 0.8, max: 0.9}}", True),
            ("{confidence: {max: 0.5}}", False),
            ("{blast_radius: {max: 0.3}}", True),
            ("{blast_radius: {max: 0.29}}", False),
            ("{reversible: true}", True),
            ("{reversible: false}", False),
            ("{cause: [bad_model_deploy, bad_prompt_deploy]}", True),
            ("{cause: capacity}", False),
            ("{service: ['doc-*', 'support-?hat']}", True),
            ("{target: 'llm-*'}", False),
            ("{action: 'rollback_*_version'}", True),
            ("{action: [failover_provider, throttle]}", False),
        ],
    )
    def test_condition_table(self, when: str, matches: bool) -> None:
        """Each condition matches the standard proposal (rollback, support-chat, 0.85, blast 0.3) or not."""
        c = parse_constitution(f"default: {{verdict: auto}}\nrules:\n  - {{id: r, when: {when}, verdict: deny}}\n")
        d = decide(proposal(confidence=0.85), ctx(), c)
        assert (d.verdict is Verdict.DENY) is matches


class TestTimeWindows:
    FREEZE = (
        "default: {verdict: auto}\n"
        "rules:\n"
        "  - id: holiday-freeze\n"
        "    when:\n"
        "      during:\n"
        "        - {start: 2026-12-24T00:00:00Z, end: 2026-12-27T00:00:00Z, name: holidays}\n"
        "    verdict: deny\n"
        "  - id: nights-and-weekends\n"
        "    when:\n"
        "      outside:\n"
        "        - {days: mon-fri, from: '09:00', until: '18:00', tz: Europe/Paris}\n"
        "    verdict: approval\n"
        "  - id: deploy-hour\n"
        "    when:\n"
        "      during:\n"
        "        - cron: '0-14 10 * * wed'\n"
        "    verdict: approval\n"
        "    approval: {approvers: 2}\n"
    )

    @pytest.mark.parametrize(
        ("now", "verdict", "rules"),
        [
            (datetime(2026, 12, 24, 10, 0, tzinfo=UTC), Verdict.DENY, ("holiday-freeze",)),  # Thursday, in freeze
            (datetime(2026, 12, 26, 23, 59, tzinfo=UTC), Verdict.DENY, ("holiday-freeze", "nights-and-weekends")),
            (datetime(2026, 12, 27, 0, 0, tzinfo=UTC), Verdict.APPROVAL, ("nights-and-weekends",)),  # end exclusive
            (datetime(2026, 3, 4, 8, 30, tzinfo=UTC), Verdict.AUTO, ()),  # Wed 09:30 Paris
            (datetime(2026, 3, 4, 7, 30, tzinfo=UTC), Verdict.APPROVAL, ("nights-and-weekends",)),  # 08:30 Paris
            (datetime(2026, 3, 4, 17, 0, tzinfo=UTC), Verdict.APPROVAL, ("nights-and-weekends",)),  # 18:00 Paris
            (datetime(2026, 3, 7, 12, 0, tzinfo=UTC), Verdict.APPROVAL, ("nights-and-weekends",)),  # Saturday
            (datetime(2026, 3, 4, 10, 14, 59, tzinfo=UTC), Verdict.APPROVAL, ("deploy-hour",)),
            (datetime(2026, 3, 4, 10, 15, tzinfo=UTC), Verdict.AUTO, ()),
        ],
    )
    def test_window_table(self, now: datetime, verdict: Verdict, rules: tuple[str, ...]) -> None:
        """Freeze periods, weekly hours in a time zone, and cron windows match exactly the instants they name."""
        d = decide(proposal(), ctx(now=now), parse_constitution(self.FREEZE))
        assert (d.verdict, d.matched_rules) == (verdict, rules)

    def test_weekly_window_wrapping_midnight(self) -> None:
        """A 22:00-06:00 window on Friday covers Friday night and early Saturday, not early Friday."""
        c = parse_constitution(
            "default: {verdict: auto}\nrules:\n"
            "  - {id: night, when: {during: [{days: fri, from: '22:00', until: '06:00'}]}, verdict: deny}\n"
        )

        def verdict(now: datetime) -> Verdict:
            return decide(proposal(), ctx(now=now), c).verdict

        assert verdict(datetime(2026, 3, 6, 23, 0, tzinfo=UTC)) is Verdict.DENY  # Fri 23:00
        assert verdict(datetime(2026, 3, 7, 5, 59, tzinfo=UTC)) is Verdict.DENY  # Sat 05:59
        assert verdict(datetime(2026, 3, 6, 5, 0, tzinfo=UTC)) is Verdict.AUTO  # Fri 05:00
        assert verdict(datetime(2026, 3, 7, 6, 0, tzinfo=UTC)) is Verdict.AUTO  # Sat 06:00


class TestBudgets:
    def test_per_service_budget_turns_auto_into_approval(self) -> None:
        """The third automatic action on one service within an hour needs approval, and says why."""
        recent = (
            ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", 50),
            ran(ActionName.THROTTLE, "support-chat", 10),
        )
        d = decide(proposal(), ctx(*recent), C)
        assert d.verdict is Verdict.APPROVAL
        assert d.approval is not None and d.approval.timeout_s == 3600.0
        assert any("budget" in r and "support-chat" in r and "limit 2" in r for r in d.reasons)

    def test_budget_counts_a_sliding_hour_and_only_automatic_actions(self) -> None:
        """Actions older than an hour, approved by people, or exempt (escalate) do not count."""
        recent = (
            ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", 61),
            ran(ActionName.THROTTLE, "support-chat", 5, automatic=False),
            ran(ActionName.ESCALATE, "support-chat", 5),
            ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", 30),
        )
        assert decide(proposal(), ctx(*recent), NO_FLAP_GUARD).verdict is Verdict.AUTO

    def test_global_budget(self) -> None:
        """Three automatic actions across the fleet in the past hour stop a fourth on any service."""
        recent = tuple(ran(ActionName.ROLLBACK_MODEL_VERSION, s, 20) for s in ("a", "b", "c"))
        d = decide(proposal(service="d"), ctx(*recent), C)
        assert d.verdict is Verdict.APPROVAL
        assert any("fleet-wide" in r for r in d.reasons)

    def test_escalate_is_never_limited(self) -> None:
        """Escalate stays automatic however many actions ran: paging a human is always allowed."""
        recent = tuple(ran(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", m) for m in (1, 2, 3, 4))
        recent += (ran(ActionName.ESCALATE, "support-chat", 1),)
        assert decide(proposal(ActionName.ESCALATE), ctx(*recent), C).verdict is Verdict.AUTO

    def test_future_actions_are_ignored(self) -> None:
        """A recorded action stamped after `now` (clock skew) is not counted against the budget."""
        recent = tuple(ran(ActionName.THROTTLE, "support-chat", -5) for _ in range(3))
        assert decide(proposal(), ctx(*recent), C).verdict is Verdict.AUTO


class TestFlapGuard:
    def test_same_action_same_target_within_window_needs_approval(self) -> None:
        """Rolling back the same target twice within 30 minutes waits for a person."""
        recent = (ran(ActionName.ROLLBACK_PROMPT_VERSION, "support-chat", 29, automatic=False),)
        d = decide(proposal(), ctx(*recent), C)
        assert d.verdict is Verdict.APPROVAL
        assert any(r.startswith("flap guard") for r in d.reasons)

    @pytest.mark.parametrize(
        "recent",
        [
            ran(ActionName.ROLLBACK_PROMPT_VERSION, "support-chat", 30),  # window is [now-30m, now): expired
            ran(ActionName.ROLLBACK_PROMPT_VERSION, "doc-summarizer", 5),  # other service and target
            ran(ActionName.ESCALATE, "support-chat", 5),  # escalate changes nothing: exempt
        ],
    )
    def test_unrelated_exempt_or_old_actions_do_not_flap(self, recent: RecentAction) -> None:
        """An action on another service, an exempt one, or one outside the window does not trip the guard."""
        assert decide(proposal(), ctx(recent), C).verdict is Verdict.AUTO


class TestKillSwitch:
    @pytest.mark.parametrize(
        ("switch", "action", "verdict", "switch_cited"),
        [
            (KillSwitch.AUTO_TO_APPROVAL, ActionName.ROLLBACK_PROMPT_VERSION, Verdict.APPROVAL, True),
            (KillSwitch.AUTO_TO_APPROVAL, ActionName.FAILOVER_PROVIDER, Verdict.APPROVAL, False),  # approval anyway
            (KillSwitch.DENY_ALL, ActionName.ROLLBACK_PROMPT_VERSION, Verdict.DENY, True),
            (KillSwitch.DENY_ALL, ActionName.FAILOVER_PROVIDER, Verdict.DENY, True),
            (KillSwitch.OFF, ActionName.ROLLBACK_PROMPT_VERSION, Verdict.AUTO, False),
        ],
    )
    def test_context_override(
        self, switch: KillSwitch, action: ActionName, verdict: Verdict, switch_cited: bool
    ) -> None:
        """A context kill switch overrides the file: auto_to_approval stops automation, deny_all stops everything."""
        d = decide(proposal(action), ctx(kill_switch=switch), C)
        assert d.verdict is verdict
        assert any("kill switch" in r for r in d.reasons) is switch_cited

    def test_file_kill_switch_applies_when_context_has_none(self) -> None:
        """kill_switch: deny_all in the file denies everything when the context does not override it."""
        c = parse_constitution(AUTO_ROLLBACK + "kill_switch: deny_all\n")
        d = decide(proposal(), ctx(), c)
        assert d.verdict is Verdict.DENY
        assert any("from the constitution" in r for r in d.reasons)
        assert decide(proposal(), ctx(kill_switch=KillSwitch.OFF), c).verdict is Verdict.AUTO


class TestContextRoundTrip:
    def test_context_and_decision_survive_json(self) -> None:
        """A context and decision dumped to JSON and read back re-derive the same decision (audit replay)."""
        context = ctx(ran(ActionName.THROTTLE, "support-chat", 3), kill_switch=KillSwitch.AUTO_TO_APPROVAL)
        decision = decide(proposal(), context, C)
        again = DecisionContext.model_validate(context.model_dump(mode="json"))
        assert again == context
        assert decide(proposal(), again, C) == Decision.model_validate(decision.model_dump(mode="json"))

    def test_naive_now_is_rejected(self) -> None:
        """A context without a time zone is refused rather than guessed."""
        with pytest.raises(ValueError, match="timezone-aware"):
            DecisionContext(now=datetime(2026, 1, 1))


def test_cause_enum_values_are_accepted_as_strings() -> None:
    """Rules name causes by their taxonomy strings, and proposals with that cause match."""
    c = parse_constitution("rules:\n  - {id: r, when: {cause: pii_leak}, verdict: deny}\n")
    assert decide(proposal(cause=Cause.PII_LEAK), ctx(), c).verdict is Verdict.DENY
