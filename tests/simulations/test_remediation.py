"""The remediation endpoint: matching actions remove faults, wrong ones cost, one effect per key."""

from __future__ import annotations

import pytest

from domain import ActionName, ChangeKind, Signal
from simulations import Fleet
from tests.simulations.conftest import make_scenario, mean_of, minutes


def _broken(line: str) -> Fleet:
    """A fleet 40 minutes in, with the given fault injected at 30m."""
    fleet = make_scenario(f"injections:\n  - {{type: fault, at: 30m, {line}}}\n", duration="2h").build_fleet()
    fleet.advance(40 * 60)
    assert fleet.active_faults(), "the fault should be active before remediation"
    return fleet


# (fault, right action, target)
MATCHING = [
    ("fault: bad_prompt_deploy, service: support-chat", ActionName.ROLLBACK_PROMPT_VERSION, "support-chat"),
    ("fault: bad_model_deploy, service: doc-summarizer", ActionName.ROLLBACK_MODEL_VERSION, "doc-summarizer"),
    ("fault: tokenizer_mismatch, service: doc-summarizer", ActionName.ROLLBACK_MODEL_VERSION, "doc-summarizer"),
    ("fault: safety_regression, service: support-chat", ActionName.ROLLBACK_PROMPT_VERSION, "support-chat"),
    (
        "fault: safety_regression, service: support-chat, via: model_version",
        ActionName.ROLLBACK_MODEL_VERSION,
        "support-chat",
    ),
    ("fault: provider_outage, provider: llm-alpha", ActionName.FAILOVER_PROVIDER, "llm-alpha"),
    ("fault: provider_degradation, provider: embed-gamma", ActionName.FAILOVER_PROVIDER, "embed-gamma"),
    ("fault: capacity, service: doc-summarizer", ActionName.THROTTLE, "doc-summarizer"),
    ("fault: cost_misrouting, service: support-chat", ActionName.REVERT_ROUTING, "support-chat"),
    ("fault: pii_leak, service: support-chat", ActionName.PURGE_CONTEXT_CACHE, "support-chat"),
    (
        "fault: upstream_dependency, service: kb-retriever, via: bad_model_deploy",
        ActionName.ROLLBACK_MODEL_VERSION,
        "kb-retriever",
    ),
]


@pytest.mark.parametrize(("line", "action", "target"), MATCHING, ids=[m[0] for m in MATCHING])
def test_matching_action_removes_the_fault(line: str, action: ActionName, target: str) -> None:
    """The action that matches the fault's cause, on the right target, clears it at once."""
    fleet = _broken(line)
    result = fleet.apply_action(action, target, {}, "k1")
    assert result.status == "applied", result.detail
    assert result.effect["cleared_faults"]
    assert fleet.active_faults() == []
    assert fleet.fault_log()[0].cleared_by == "k1"


def test_retraining_removes_drift_only_when_the_job_lands() -> None:
    """trigger_retraining fixes data drift after the retraining time, not instantly."""
    fleet = _broken("fault: data_drift, service: support-chat, shape: gradual, ramp: 20m")
    result = fleet.apply_action(ActionName.TRIGGER_RETRAINING, "support-chat", {"duration_s": 300}, "k1")
    assert result.status == "applied"
    fleet.advance(290)
    assert fleet.active_faults()
    fleet.advance(20)
    assert fleet.active_faults() == []


def test_quality_recovers_after_the_right_rollback() -> None:
    """After rolling the bad prompt back, support-chat's quality returns to its healthy level."""
    fleet = _broken("fault: bad_prompt_deploy, service: support-chat")
    start = fleet.start
    broken = fleet.advance(10 * 60).samples
    fleet.apply_action(ActionName.ROLLBACK_PROMPT_VERSION, "support-chat", {}, "k1")
    healed = fleet.advance(20 * 60).samples
    bad = mean_of(broken, "support-chat", Signal.QUALITY_SCORE, start, start + minutes(60))
    good = mean_of(healed, "support-chat", Signal.QUALITY_SCORE, start + minutes(51), start + minutes(71))
    assert good - bad > 0.1 and good > 0.84


WRONG = [
    ("fault: bad_prompt_deploy, service: support-chat", ActionName.ROLLBACK_MODEL_VERSION, "support-chat"),
    ("fault: bad_prompt_deploy, service: support-chat", ActionName.FAILOVER_PROVIDER, "llm-alpha"),
    ("fault: bad_prompt_deploy, service: support-chat", ActionName.ROLLBACK_PROMPT_VERSION, "doc-summarizer"),
    ("fault: provider_outage, provider: llm-alpha", ActionName.ROLLBACK_MODEL_VERSION, "support-chat"),
    ("fault: provider_outage, provider: llm-alpha", ActionName.THROTTLE, "support-chat"),
    ("fault: capacity, service: doc-summarizer", ActionName.ROLLBACK_PROMPT_VERSION, "doc-summarizer"),
    ("fault: pii_leak, service: support-chat", ActionName.ESCALATE, "support-chat"),
    ("fault: data_drift, service: support-chat", ActionName.ROLLBACK_MODEL_VERSION, "support-chat"),
    ("fault: upstream_dependency, service: kb-retriever", ActionName.ROLLBACK_MODEL_VERSION, "support-chat"),
]


@pytest.mark.parametrize(("line", "action", "target"), WRONG, ids=[f"{w[0]}:{w[1]}@{w[2]}" for w in WRONG])
def test_wrong_action_leaves_the_fault(line: str, action: ActionName, target: str) -> None:
    """An action that does not match the cause (or hits the wrong target) removes nothing."""
    fleet = _broken(line)
    before = [f.id for f in fleet.active_faults()]
    fleet.apply_action(action, target, {}, "k1")
    fleet.advance(15 * 60)
    assert [f.id for f in fleet.active_faults()] == before


class TestWrongActionsCost:
    def test_needless_failover_raises_latency_and_cost(self) -> None:
        """Failing over a healthy provider moves traffic to a slower, dearer backup."""
        fleet = make_scenario("", duration="2h").build_fleet()
        start = fleet.start
        before = fleet.advance(30 * 60).samples
        result = fleet.apply_action(ActionName.FAILOVER_PROVIDER, "llm-alpha", {}, "k1")
        assert result.status == "applied"
        assert result.effect["moved"]["support-chat"] == {"from": "llm-alpha", "to": "llm-beta"}
        after = fleet.advance(30 * 60).samples
        for signal in (Signal.LATENCY_P50_MS, Signal.COST_PER_1K_REQUESTS):
            old = mean_of(before, "support-chat", signal, start + minutes(10), start + minutes(30))
            new = mean_of(after, "support-chat", signal, start + minutes(40), start + minutes(60))
            assert new > old * 1.15, signal
        assert fleet.topology().services["support-chat"].provider == "llm-beta"

    def test_needless_rollback_loses_the_new_version(self) -> None:
        """Rolling back a healthy version reports the version lost and leaves no previous version."""
        fleet = make_scenario("", duration="2h").build_fleet()
        fleet.advance(600)
        result = fleet.apply_action(ActionName.ROLLBACK_PROMPT_VERSION, "support-chat", {}, "k1")
        assert result.status == "applied"
        assert result.effect["lost_version"] == "v7"
        info = fleet.topology().services["support-chat"]
        assert (info.prompt_version, info.previous_prompt_version) == ("v6", None)
        again = fleet.apply_action(ActionName.ROLLBACK_PROMPT_VERSION, "support-chat", {}, "k2")
        assert again.status == "rejected" and "no previous prompt_version" in again.detail

    def test_needless_throttle_sheds_real_traffic(self) -> None:
        """Throttling a healthy service caps what it serves below its demand."""
        fleet = make_scenario("", duration="2h", seed=3).build_fleet()
        start = fleet.start
        before = fleet.advance(30 * 60).samples
        fleet.apply_action(ActionName.THROTTLE, "support-chat", {"max_rps": 40}, "k1")
        after = fleet.advance(30 * 60).samples
        old = mean_of(before, "support-chat", Signal.REQUEST_RATE, start + minutes(10), start + minutes(30))
        new = mean_of(after, "support-chat", Signal.REQUEST_RATE, start + minutes(40), start + minutes(60))
        assert old > 50 and new < 41

    def test_needless_cache_purge_costs_hit_rate(self) -> None:
        """Purging a healthy cache drops its hit rate until it refills."""
        fleet = make_scenario("", duration="2h").build_fleet()
        start = fleet.start
        before = fleet.advance(30 * 60).samples
        fleet.apply_action(ActionName.PURGE_CONTEXT_CACHE, "support-chat", {}, "k1")
        after = fleet.advance(5 * 60).samples
        old = mean_of(before, "support-chat", Signal.CACHE_HIT_RATE, start + minutes(10), start + minutes(30))
        new = mean_of(after, "support-chat", Signal.CACHE_HIT_RATE, start + minutes(30), start + minutes(33))
        assert new < old * 0.6


class TestIdempotency:
    def test_repeat_key_returns_first_result_as_duplicate_and_changes_nothing(self) -> None:
        """A second call with the same key has no effect and returns the first result marked duplicate."""
        fleet = _broken("fault: provider_outage, provider: llm-alpha")
        first = fleet.apply_action(ActionName.FAILOVER_PROVIDER, "llm-alpha", {}, "same")
        topology = fleet.topology()
        second = fleet.apply_action(ActionName.FAILOVER_PROVIDER, "llm-beta", {}, "same")
        assert second.status == "duplicate"
        assert second.model_dump(exclude={"status"}) == first.model_dump(exclude={"status"})
        assert fleet.topology() == topology
        assert len(fleet.applied_actions) == 1
        assert fleet.action_result("same") == first
        assert fleet.action_result("other") is None

    def test_every_effect_is_listed_once_in_order(self) -> None:
        """applied_actions lists each applied effect once, in order; rejected calls are not effects."""
        fleet = make_scenario("", duration="2h").build_fleet()
        fleet.advance(60)
        fleet.apply_action(ActionName.ESCALATE, "support-chat", {}, "a")
        fleet.apply_action(ActionName.ESCALATE, "support-chat", {}, "a")
        fleet.apply_action(ActionName.ROLLBACK_MODEL_VERSION, "no-such-service", {}, "b")
        fleet.apply_action(ActionName.REVERT_ROUTING, "support-chat", {}, "c")  # no previous routing
        fleet.apply_action(ActionName.ROLLBACK_MODEL_VERSION, "support-chat", {}, "d")
        assert [r.idempotency_key for r in fleet.applied_actions] == ["a", "d"]
        assert fleet.action_result("b").status == "rejected"  # type: ignore[union-attr]
        assert "unknown service 'no-such-service'" in fleet.action_result("b").detail  # type: ignore[union-attr]

    def test_remediation_change_event_arrives_in_the_next_advance(self) -> None:
        """A rollback by Homeostat is reported as a ChangeEvent with actor homeostat in the next batch."""
        fleet = _broken("fault: bad_prompt_deploy, service: support-chat")
        fleet.apply_action(ActionName.ROLLBACK_PROMPT_VERSION, "support-chat", {}, "k1")
        changes = fleet.advance(10).changes
        assert [(c.kind, c.from_value, c.to_value, c.actor) for c in changes] == [
            (ChangeKind.PROMPT_VERSION, "v8", "v7", "homeostat")
        ]

    def test_unknown_action_is_rejected_with_the_catalog(self) -> None:
        """An action name outside the catalog is rejected and says which names exist."""
        fleet = make_scenario("", duration="2h").build_fleet()
        result = fleet.apply_action("reboot_everything", "support-chat", {}, "k")
        assert result.status == "rejected" and "rollback_model_version" in result.detail
