"""Verification tells whether the watched signals came back to their pre-onset baseline."""

from __future__ import annotations

from domain import Direction, canonical_json
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


FAILOVER = RecoverySpec(signals=("error_rate", "latency_p95_ms"), wait_s=120.0, tolerance=0.25)
ERRORS_BASE = [0.01, 0.011, 0.009, 0.01]


def _latency_is_a_cost(signal: str, direction: Direction) -> bool:
    return signal == "latency_p95_ms" and direction is Direction.UP


#: Errors back from 30 % to 1 %; p95 at 5,100-5,200 ms on the backup, above even its 4,000-ms outage level.
ERRORS_FIXED_ON_A_SLOWER_BACKUP = (
    {"chat/error_rate": ERRORS_BASE, "chat/latency_p95_ms": LATENCY_BASE},
    {"chat/error_rate": [0.01, 0.012], "chat/latency_p95_ms": [5200.0, 5100.0]},
    {"chat/error_rate": 0.3, "chat/latency_p95_ms": 4000.0},
)


def test_a_declared_cost_is_accepted_when_the_action_fixed_something_else() -> None:
    """Errors recovered and p95 above even its outage level: improved, the latency marked as an accepted cost."""
    verdict = evaluate_recovery(FAILOVER, *ERRORS_FIXED_ON_A_SLOWER_BACKUP, expects=_latency_is_a_cost)
    assert (verdict.recovered, verdict.improved) == (False, True)
    assert verdict.detail["chat/latency_p95_ms"]["accepted_cost"] is True
    assert verdict.detail["chat/error_rate"]["accepted_cost"] is False
    assert "expected cost of the action, which fixed chat/error_rate" in verdict.summary


def test_without_the_action_costs_the_same_windows_fail() -> None:
    """The same windows judged without declared costs are a plain failure, as before."""
    verdict = evaluate_recovery(FAILOVER, *ERRORS_FIXED_ON_A_SLOWER_BACKUP)
    assert (verdict.recovered, verdict.improved) == (False, False)


def test_a_cost_is_not_accepted_when_nothing_else_was_fixed() -> None:
    """Errors still high: the slower latency is no price paid for a fix, and the verdict is a failure."""
    verdict = evaluate_recovery(
        FAILOVER,
        {"chat/error_rate": ERRORS_BASE, "chat/latency_p95_ms": LATENCY_BASE},
        {"chat/error_rate": [0.3, 0.31], "chat/latency_p95_ms": [5200.0]},
        {"chat/error_rate": 0.3, "chat/latency_p95_ms": 4000.0},
        expects=_latency_is_a_cost,
    )
    assert (verdict.recovered, verdict.improved) == (False, False)
    assert verdict.detail["chat/latency_p95_ms"]["accepted_cost"] is False


def test_when_every_watched_series_is_a_cost_it_is_judged_as_usual() -> None:
    """A latency-only incident that the failover made worse is not excused by the declared latency cost."""
    verdict = evaluate_recovery(
        LATENCY,
        {"chat/latency_p95_ms": LATENCY_BASE},
        {"chat/latency_p95_ms": [9000.0]},
        {"chat/latency_p95_ms": 7700.0},
        expects=_latency_is_a_cost,
    )
    assert (verdict.recovered, verdict.improved) == (False, False)
