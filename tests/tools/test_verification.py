"""Verification tells whether the watched signals came back to their pre-onset baseline."""

from __future__ import annotations

from domain import canonical_json
from tools import RecoverySpec
from tools.verification import evaluate_recovery

SPEC = RecoverySpec(signals=("quality_score", "error_rate"), wait_s=60.0, tolerance=0.1)
QUALITY_BASE = [0.90, 0.91, 0.89, 0.90, 0.92, 0.90]


def test_signals_back_at_baseline_are_recovered() -> None:
    """Quality back near its baseline and errors back down count as recovered."""
    verdict = evaluate_recovery(
        SPEC,
        {"chat/quality_score": QUALITY_BASE, "chat/error_rate": [0.01, 0.012, 0.011]},
        {"chat/quality_score": [0.89, 0.90, 0.91], "chat/error_rate": [0.011, 0.010]},
    )
    assert verdict.recovered, verdict.summary
    assert set(verdict.detail) == {"chat/quality_score", "chat/error_rate"}


def test_signal_still_bad_is_not_recovered_and_named() -> None:
    """A quality score still well below baseline fails verification, naming the series."""
    verdict = evaluate_recovery(SPEC, {"chat/quality_score": QUALITY_BASE}, {"chat/quality_score": [0.6, 0.62, 0.61]})
    assert not verdict.recovered
    assert "chat/quality_score" in verdict.summary
    assert verdict.detail["chat/quality_score"]["recovered"] is False


def test_moving_in_the_good_direction_is_recovery() -> None:
    """Errors falling below their baseline are not a failure: only the bad direction counts."""
    verdict = evaluate_recovery(SPEC, {"error_rate": [0.05, 0.05]}, {"error_rate": [0.0, 0.0]})
    assert verdict.recovered


def test_baseline_noise_widens_the_margin() -> None:
    """A noisy baseline tolerates a level inside its own noise, even beyond the relative tolerance."""
    noisy = [100.0, 140.0, 80.0, 130.0, 70.0, 120.0, 90.0]
    assert evaluate_recovery(SPEC, {"svc/latency_p95_ms": noisy}, {"svc/latency_p95_ms": [135.0]}).recovered
    steady = [100.0, 101.0, 99.0, 100.0, 100.0]
    assert not evaluate_recovery(SPEC, {"svc/latency_p95_ms": steady}, {"svc/latency_p95_ms": [135.0]}).recovered


def test_no_recent_data_is_not_recovery() -> None:
    """A series with a baseline but no samples since the action is not recovered."""
    verdict = evaluate_recovery(SPEC, {"chat/quality_score": QUALITY_BASE}, {})
    assert not verdict.recovered
    assert verdict.detail["chat/quality_score"]["reason"] == "no data since the action"


def test_nothing_to_judge_is_not_recovery() -> None:
    """With no baseline for any series, the verdict is 'not recovered' rather than a silent pass."""
    verdict = evaluate_recovery(SPEC, {"chat/quality_score": []}, {"chat/quality_score": [0.9]})
    assert not verdict.recovered
    assert "no watched series had a baseline" in verdict.summary


def test_detail_is_plain_json_for_the_audit_log() -> None:
    """The per-series detail serialises to canonical JSON (the audit log refuses anything else)."""
    verdict = evaluate_recovery(SPEC, {"a/quality_score": QUALITY_BASE, "b/error_rate": []}, {"a/quality_score": []})
    assert canonical_json(verdict.detail)


LATENCY = RecoverySpec(signals=("latency_p95_ms",), wait_s=60.0, tolerance=0.25)
LATENCY_BASE = [3400.0, 3420.0, 3390.0, 3410.0]


def test_an_action_that_undid_most_of_the_excursion_is_improved_not_failed() -> None:
    """Latency back from 7,700 to 4,400 ms (baseline 3,400) is not recovery, but the action helped."""
    verdict = evaluate_recovery(
        LATENCY,
        {"chat/latency_p95_ms": LATENCY_BASE},
        {"chat/latency_p95_ms": [4390.0, 4380.0]},
        {"chat/latency_p95_ms": 7700.0},
    )
    assert not verdict.recovered
    assert verdict.improved, verdict.summary
    assert verdict.detail["chat/latency_p95_ms"]["improved"] is True
    assert "77% of the way" in verdict.summary


def test_an_action_that_barely_helped_is_neither_recovered_nor_improved() -> None:
    """Latency down from 7,700 only to 6,500 ms: the action did not help enough to keep on that ground."""
    verdict = evaluate_recovery(
        LATENCY,
        {"chat/latency_p95_ms": LATENCY_BASE},
        {"chat/latency_p95_ms": [6500.0]},
        {"chat/latency_p95_ms": 7700.0},
    )
    assert not verdict.recovered
    assert not verdict.improved


def test_improved_needs_every_failing_series_to_have_improved() -> None:
    """One series most of the way back and another not at all is a plain failure."""
    verdict = evaluate_recovery(
        LATENCY,
        {"a/latency_p95_ms": LATENCY_BASE, "b/latency_p95_ms": LATENCY_BASE},
        {"a/latency_p95_ms": [4390.0], "b/latency_p95_ms": [7600.0]},
        {"a/latency_p95_ms": 7700.0, "b/latency_p95_ms": 7700.0},
    )
    assert not verdict.recovered
    assert not verdict.improved
