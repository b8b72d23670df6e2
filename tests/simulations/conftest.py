"""Shared helpers for the simulator tests: small scenarios written inline."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

import pytest

from domain import Sample
from simulations import Scenario, parse_scenario


def make_scenario(body: str, *, name: str = "t", seed: int = 7, duration: str = "1h") -> Scenario:
    """A scenario from an inline YAML body (injections / ground_truth / fleet)."""
    text = f"name: {name}\nseed: {seed}\nduration: {duration}\nstart: 2026-03-02T08:00:00Z\n{body}"
    return parse_scenario(text, source=f"<{name}>")


def mean_of(samples: list[Sample], service: str, signal: str, start: datetime, end: datetime) -> float:
    """Mean value of one series with start <= ts < end."""
    values = [s.value for s in samples if s.service == service and s.signal == signal and start <= s.ts < end]
    assert values, f"no samples for {service}/{signal} in [{start}, {end})"
    return statistics.fmean(values)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture
def scenario_factory():
    return make_scenario
