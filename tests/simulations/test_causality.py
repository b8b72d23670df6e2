"""Faults are causes: each moves the right signals of the right services, and only those."""

from __future__ import annotations

import statistics
from datetime import datetime

import pytest

from domain import Signal
from simulations import Scenario
from tests.simulations.conftest import make_scenario, mean_of, minutes

ALL = ("support-chat", "doc-summarizer", "kb-retriever")


def _shift(scenario: Scenario, service: str, signal: str) -> float:
    """Relative change of a series' mean: 20 min before the fault at 30m vs 10-30 min after."""
    fleet = scenario.build_fleet()
    samples = fleet.advance(scenario.duration_s).samples
    t0: datetime = scenario.start
    before = mean_of(samples, service, signal, t0 + minutes(10), t0 + minutes(30))
    after = mean_of(samples, service, signal, t0 + minutes(40), t0 + minutes(60))
    return (after - before) / max(abs(before), 1e-3)


def _fault(line: str) -> Scenario:
    return make_scenario(f"injections:\n  - {{type: fault, at: 30m, {line}}}\n")


# (fault line, service, signal, minimum relative move with sign)
MOVES = [
    ("fault: bad_prompt_deploy, service: support-chat", "support-chat", Signal.QUALITY_SCORE, -0.1),
    ("fault: bad_prompt_deploy, service: support-chat", "support-chat", Signal.TOKENS_PER_REQUEST, 0.3),
    ("fault: bad_prompt_deploy, service: support-chat", "support-chat", Signal.POLICY_VIOLATION_RATE, 3.0),
    ("fault: bad_model_deploy, service: doc-summarizer", "doc-summarizer", Signal.HALLUCINATION_RATE, 1.0),
    ("fault: bad_model_deploy, service: doc-summarizer", "doc-summarizer", Signal.QUALITY_SCORE, -0.1),
    ("fault: provider_outage, provider: llm-alpha", "support-chat", Signal.ERROR_RATE, 20.0),
    ("fault: provider_outage, provider: llm-alpha", "doc-summarizer", Signal.LATENCY_P95_MS, 0.8),
    ("fault: provider_degradation, provider: llm-alpha, severity: 0.5", "doc-summarizer", Signal.LATENCY_P50_MS, 0.3),
    ("fault: capacity, service: doc-summarizer", "doc-summarizer", Signal.QUEUE_DEPTH, 5.0),
    ("fault: capacity, service: doc-summarizer", "doc-summarizer", Signal.LATENCY_P99_MS, 1.0),
    ("fault: cost_misrouting, service: support-chat", "support-chat", Signal.COST_PER_1K_REQUESTS, 1.5),
    (
        "fault: data_drift, service: support-chat, shape: gradual, ramp: 20m",
        "support-chat",
        Signal.QUALITY_SCORE,
        -0.05,
    ),
    ("fault: safety_regression, service: support-chat", "support-chat", Signal.POLICY_VIOLATION_RATE, 5.0),
    ("fault: pii_leak, service: doc-summarizer", "doc-summarizer", Signal.PII_ALERTS, 20.0),
    ("fault: tokenizer_mismatch, service: doc-summarizer", "doc-summarizer", Signal.TOKENS_PER_REQUEST, -0.3),
    ("fault: tokenizer_mismatch, service: doc-summarizer", "doc-summarizer", Signal.ERROR_RATE, 10.0),
    (
        "fault: upstream_dependency, service: kb-retriever, via: bad_model_deploy",
        "support-chat",
        Signal.QUALITY_SCORE,
        -0.05,
    ),
]


@pytest.mark.parametrize(("line", "service", "signal", "move"), MOVES, ids=[f"{m[0]}->{m[2]}" for m in MOVES])
def test_fault_moves_its_signals(line: str, service: str, signal: str, move: float) -> None:
    """A fault moves the signals its cause is known for, in the bad direction, by a clear margin."""
    shift = _shift(_fault(line), service, signal)
    assert shift <= move if move < 0 else shift >= move, f"{service}/{signal} moved {shift:+.2f}"


UNTOUCHED = [
    ("fault: bad_prompt_deploy, service: support-chat", ["doc-summarizer", "kb-retriever"]),
    ("fault: provider_outage, provider: llm-alpha", ["kb-retriever"]),
    ("fault: pii_leak, service: doc-summarizer", ["support-chat", "kb-retriever"]),
    ("fault: capacity, service: kb-retriever", ["doc-summarizer"]),
]
WATCHED = (
    Signal.QUALITY_SCORE,
    Signal.ERROR_RATE,
    Signal.LATENCY_P95_MS,
    Signal.TOKENS_PER_REQUEST,
    Signal.COST_PER_1K_REQUESTS,
    Signal.POLICY_VIOLATION_RATE,
)


@pytest.mark.parametrize(("line", "bystanders"), UNTOUCHED)
def test_fault_leaves_unrelated_services_alone(line: str, bystanders: list[str]) -> None:
    """Services the fault does not reach (not on the provider, not a caller) keep their levels."""
    scenario = _fault(line)
    samples = scenario.build_fleet().advance(scenario.duration_s).samples
    t0 = scenario.start
    for service in bystanders:
        for signal in WATCHED:
            before = [
                s.value
                for s in samples
                if s.service == service and s.signal == signal and t0 + minutes(10) <= s.ts < t0 + minutes(30)
            ]
            after = [
                s.value
                for s in samples
                if s.service == service and s.signal == signal and t0 + minutes(40) <= s.ts < t0 + minutes(60)
            ]
            moved = abs(statistics.fmean(after) - statistics.fmean(before))
            # within half the sample-to-sample jitter: no shift a detector should call
            assert moved < 0.5 * statistics.pstdev(before), f"{service}/{signal} moved {moved:g}"


def test_upstream_fault_reaches_callers_but_not_other_services() -> None:
    """A degraded callee drags its caller (support-chat) and leaves doc-summarizer alone."""
    scenario = _fault("fault: upstream_dependency, service: kb-retriever, via: bad_model_deploy")
    assert _shift(scenario, "kb-retriever", Signal.QUALITY_SCORE) < -0.1
    assert _shift(scenario, "support-chat", Signal.HALLUCINATION_RATE) > 0.5
    assert abs(_shift(scenario, "doc-summarizer", Signal.QUALITY_SCORE)) < 0.02


def test_deploy_borne_fault_comes_with_its_change_event() -> None:
    """A bad prompt deploy is announced by a prompt_version change at the moment it starts."""
    scenario = _fault("fault: bad_prompt_deploy, service: support-chat, to: v8")
    fleet = scenario.build_fleet()
    changes = fleet.advance(scenario.duration_s).changes
    assert [(c.service, c.kind.value, c.from_value, c.to_value) for c in changes] == [
        ("support-chat", "prompt_version", "v7", "v8")
    ]
    assert changes[0].ts == scenario.start + minutes(30)


def test_provider_fault_has_no_change_event() -> None:
    """A provider outage happens without anyone changing anything."""
    scenario = _fault("fault: provider_outage, provider: llm-alpha")
    assert scenario.build_fleet().advance(scenario.duration_s).changes == []


class TestShapes:
    def test_gradual_fault_ramps(self) -> None:
        """A gradual fault grows over its ramp instead of stepping."""
        scenario = _fault("fault: bad_model_deploy, service: doc-summarizer, shape: gradual, ramp: 30m")
        samples = scenario.build_fleet().advance(scenario.duration_s).samples
        t0 = scenario.start
        early = mean_of(samples, "doc-summarizer", Signal.QUALITY_SCORE, t0 + minutes(30), t0 + minutes(36))
        late = mean_of(samples, "doc-summarizer", Signal.QUALITY_SCORE, t0 + minutes(54), t0 + minutes(60))
        assert early - late > 0.1

    def test_intermittent_fault_comes_and_goes(self) -> None:
        """An intermittent fault alternates bad bursts and healthy gaps."""
        scenario = _fault("fault: provider_outage, provider: llm-alpha, shape: intermittent, period: 10m, duty: 0.5")
        samples = scenario.build_fleet().advance(scenario.duration_s).samples
        t0 = scenario.start
        on = mean_of(samples, "support-chat", Signal.ERROR_RATE, t0 + minutes(31), t0 + minutes(35))
        off = mean_of(samples, "support-chat", Signal.ERROR_RATE, t0 + minutes(36), t0 + minutes(40))
        again = mean_of(samples, "support-chat", Signal.ERROR_RATE, t0 + minutes(41), t0 + minutes(45))
        assert on > 0.2 and again > 0.2 and off < 0.02

    def test_fault_with_duration_ends_by_itself(self) -> None:
        """A fault given a duration stops acting and leaves active_faults when it expires."""
        scenario = _fault("fault: provider_outage, provider: llm-alpha, duration: 10m")
        fleet = scenario.build_fleet()
        fleet.advance(35 * 60)
        assert [f.fault for f in fleet.active_faults()] == ["provider_outage"]
        fleet.advance(10 * 60)
        assert fleet.active_faults() == []
        record = fleet.fault_log()[0]
        assert record.cleared_by == "expired" and record.cleared_at == scenario.start + minutes(40)
