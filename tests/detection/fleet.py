"""A small seeded generator of fleet-like telemetry for detection tests (no simulator needed)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from domain import Sample

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP_S = 10.0

#: (baseline, noise sd) per signal, roughly what a healthy LLM service reports every 10 s.
HEALTHY: dict[str, tuple[float, float]] = {
    "latency_p50_ms": (250.0, 15.0),
    "latency_p95_ms": (600.0, 40.0),
    "latency_p99_ms": (1100.0, 90.0),
    "error_rate": (0.01, 0.002),
    "request_rate": (40.0, 3.0),
    "tokens_per_request": (900.0, 30.0),
    "cost_per_1k_requests": (2.5, 0.08),
    "quality_score": (0.85, 0.015),
    "hallucination_rate": (0.03, 0.004),
    "policy_violation_rate": (0.004, 0.001),
    "pii_alerts": (0.05, 0.0),  # Poisson mean, not sd
    "queue_depth": (4.0, 0.0),  # Poisson mean
    "cache_hit_rate": (0.6, 0.02),
}


def poisson(rng: random.Random, lam: float) -> float:
    """Knuth's method: fine for the small means used here."""
    limit, k, prod = pow(2.718281828459045, -lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return float(k)


def healthy_value(rng: random.Random, signal: str) -> float:
    base, sd = HEALTHY[signal]
    if sd == 0.0:
        return poisson(rng, base)
    return max(base + rng.gauss(0.0, sd), 0.0)


def series(
    signal: str,
    n: int,
    *,
    seed: int = 0,
    service: str = "chat",
    value: Callable[[int, random.Random], float] | None = None,
) -> list[Sample]:
    """`n` samples of one series every 10 s; `value(i, rng)` overrides the healthy generator."""
    rng = random.Random(seed)
    make = value or (lambda _i, r: healthy_value(r, signal))
    return [
        Sample(service=service, signal=signal, ts=T0 + timedelta(seconds=STEP_S * i), value=make(i, rng))
        for i in range(n)
    ]


def fleet(n: int, *, seed: int = 0, services: tuple[str, ...] = ("chat", "search")) -> Iterator[Sample]:
    """Every known signal of every service, interleaved as a poll would return them."""
    rng = random.Random(seed)
    for i in range(n):
        ts = T0 + timedelta(seconds=STEP_S * i)
        for service in services:
            for signal in HEALTHY:
                yield Sample(service=service, signal=signal, ts=ts, value=healthy_value(rng, signal))
