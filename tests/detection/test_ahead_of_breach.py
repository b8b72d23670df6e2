"""Burn rate, trend and budget: the alarms that come before (or instead of) a plain level shift."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from domain import Sample, Severity
from runtime.detection import DetectionEngine, config_from_dict
from tests.detection.fleet import T0, series


def burn_series(burn_error_rate: float, *, before: int = 720, after: int = 720) -> list[Sample]:
    """Two hours at 0.5x burn (0.5% errors on a 99% SLO), then a constant higher error rate."""

    def value(i: int, rng: random.Random) -> float:
        return 0.005 if i < before else burn_error_rate

    return series("error_rate", before + after, value=value)


def test_fast_burn_pages_when_the_1h_window_reaches_14_4x():
    """At a 20x burn, the 1h/5m rule pages once, when the hour's mean burn crosses 14.4x (~43 min)."""
    samples = burn_series(0.20)
    found = [a for a in DetectionEngine().observe_batch(samples) if a.kind == "burn_rate"]
    pages = [a for a in found if a.severity == Severity.CRITICAL]
    assert len(pages) == 1
    minutes = (pages[0].ts - samples[720].ts).total_seconds() / 60
    # (0.005 * (60 - t) + 0.2 * t) / 60 >= 0.144  ->  t >= 42.8 min; buckets add at most 5 min.
    assert 40 <= minutes <= 48
    assert pages[0].detail["burn_rate_long"] >= 14.4
    assert pages[0].detail["burn_rate_short"] >= 14.4


def test_slow_burn_below_the_page_threshold_only_tickets():
    """A 10x burn never pages but raises one 6h/30m warning."""
    found = [a for a in DetectionEngine().observe_batch(burn_series(0.10, after=2200)) if a.kind == "burn_rate"]
    assert [a.severity for a in found] == [Severity.WARNING]
    assert found[0].detail["threshold"] == 6.0


def test_no_burn_alarm_within_budget():
    """Errors at 0.9x of the budget raise no burn-rate alarm."""
    found = DetectionEngine().observe_batch(burn_series(0.009))
    assert [a for a in found if a.kind == "burn_rate"] == []


def test_slow_degradation_warns_with_the_projected_breach_time():
    """Quality sliding slowly toward its 0.7 SLO raises a trend warning with when it will cross."""
    slope = -0.00004  # per 10 s sample: 0.85 -> 0.70 in 3750 samples (~10.4 h)

    def value(i: int, rng: random.Random) -> float:
        return 0.85 + rng.gauss(0, 0.01) + (slope * (i - 300) if i > 300 else 0.0)

    samples = series("quality_score", 4200, value=value)
    crossing = samples[300].ts + timedelta(seconds=10 * 0.15 / -slope)
    trends = [a for a in DetectionEngine().observe_batch(samples) if a.kind == "trend"]
    assert trends, "no trend warning"
    first = trends[0]
    assert first.ts < crossing
    projected = datetime.fromisoformat(first.detail["projected_breach_ts"])
    assert abs((projected - crossing).total_seconds()) < 0.35 * (crossing - first.ts).total_seconds()
    assert first.detail["threshold"] == 0.7


def test_flat_series_never_warns_of_a_trend():
    """Healthy quality noise over many hours raises no trend warning."""
    found = DetectionEngine().observe_batch(series("quality_score", 3000, seed=7))
    assert [a for a in found if a.kind == "trend"] == []


def budget_engine(limit: float) -> DetectionEngine:
    return DetectionEngine(
        config_from_dict({"budgets": [{"service": "chat", "period": "daily", "limit": limit, "unit": "tokens"}]})
    )


def spend_samples(hours: float, rate: float = 10.0, tokens: float = 1000.0) -> list[Sample]:
    out = []
    for i in range(int(hours * 360)):
        ts = T0 + timedelta(seconds=10 * i)
        out.append(Sample(service="chat", signal="tokens_per_request", ts=ts, value=tokens))
        out.append(Sample(service="chat", signal="request_rate", ts=ts, value=rate))
    return out


def test_budget_warns_before_the_overspend_and_pages_once_it_happens():
    """10k tokens/s against a 300M daily budget warns early with the projected time, then pages once."""
    engine = budget_engine(3.0e8)
    found = [a for a in engine.observe_batch(spend_samples(9)) if a.kind == "budget"]
    assert [a.severity for a in found] == [Severity.WARNING, Severity.CRITICAL]
    warn, page = found
    assert warn.ts < page.ts
    projected = datetime.fromisoformat(warn.detail["projected_overspend_ts"])
    assert abs((projected - (T0 + timedelta(seconds=30000))).total_seconds()) < 600
    assert (page.ts - T0).total_seconds() == pytest.approx(30000, abs=60)


def test_budget_within_limits_is_silent():
    """Spend projected under the budget raises nothing."""
    engine = budget_engine(1.0e9)
    assert [a for a in engine.observe_batch(spend_samples(3)) if a.kind == "budget"] == []


def test_team_budget_sums_its_services():
    """A team budget adds the spend of every service carrying the team label."""
    cfg = config_from_dict({"budgets": [{"team": "core", "period": "daily", "limit": 1.2e9, "unit": "tokens"}]})
    engine = DetectionEngine(cfg)
    samples = []
    for i in range(360):
        ts = T0 + timedelta(seconds=10 * i)
        for service in ("a", "b"):
            labels = {"team": "core"}
            samples.append(Sample(service=service, signal="tokens_per_request", ts=ts, value=1000.0, labels=labels))
            samples.append(Sample(service=service, signal="request_rate", ts=ts, value=10.0, labels=labels))
    found = [a for a in engine.observe_batch(samples) if a.kind == "budget"]
    # Each service alone projects 864M/day (< 1.2e9); together 1.73e9 (> 1.2e9).
    assert [(a.service, a.severity) for a in found] == [("team:core", Severity.WARNING)]
