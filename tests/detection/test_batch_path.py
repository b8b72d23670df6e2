"""The columnar batch path: observe_batch gives exactly what observe() gives one sample at a time."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from domain import Anomaly, Sample
from runtime.detection import DetectionEngine
from tests.detection.fleet import HEALTHY, STEP_S, T0, healthy_value

SERVICES = ("chat", "search", "rerank")
SIGNALS = (*HEALTHY, "gpu_temperature", "queue_wait_s")  # known signals plus two unknown ones


def faulty_polls(n: int, seed: int) -> list[list[Sample]]:
    """Polls of a fleet with level shifts, recoveries, lone spikes, drifts and a silent series."""
    rng = random.Random(seed)
    polls: list[list[Sample]] = []
    for i in range(n):
        ts = T0 + timedelta(seconds=STEP_S * i)
        poll = []
        for s, service in enumerate(SERVICES):
            for signal in SIGNALS:
                if signal in HEALTHY:
                    v = healthy_value(rng, signal)
                else:
                    v = 60.0 + 5.0 * rng.gauss(0.0, 1.0) + (0.05 * i if signal == "queue_wait_s" else 0.0)
                if (i + 17 * s) % 150 in range(60, 90):  # a fault that comes and goes
                    v = v * 3.0 + 1.0
                if rng.random() < 0.01:  # a lone spike
                    v = v * 20.0 + 50.0
                if service == "rerank" and signal == "latency_p95_ms" and 200 <= i < 230:
                    continue  # a series that falls silent for a while
                poll.append(Sample(service=service, signal=signal, ts=ts, value=v))
        rng.shuffle(poll)  # a poll's order across series is arbitrary
        polls.append(poll)
    return polls


def one_by_one(polls: list[list[Sample]]) -> tuple[list[Anomaly], DetectionEngine]:
    engine = DetectionEngine()
    out = [a for poll in polls for sample in poll for a in engine.observe(sample)]
    return out, engine


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_and_one_by_one_raise_identical_anomalies(seed):
    """A whole faulty fleet fed as polls raises the same anomalies, in the same order, as sample by sample."""
    polls = faulty_polls(400, seed)
    expected, reference = one_by_one(polls)
    engine = DetectionEngine()
    got = [a for poll in polls for a in engine.observe_batch(poll)]
    assert {a.kind for a in expected} >= {"shift", "spike"}
    assert got == expected
    assert engine.accepted == reference.accepted
    assert engine.snapshot() == reference.snapshot()


def test_batch_state_survives_snapshot_and_staleness_checks_between_polls():
    """Checkpointing and staleness checks mid-stream do not change what later polls raise."""
    polls = faulty_polls(300, 3)
    expected, _ = one_by_one(polls)
    engine = DetectionEngine()
    got: list[Anomaly] = []
    for i, poll in enumerate(polls):
        got.extend(engine.observe_batch(poll))
        if i % 37 == 0:
            engine = DetectionEngine.restore(engine.snapshot())
        if i % 11 == 0:
            engine.check_staleness(poll[0].ts)
    assert [a for a in got if a.kind != "stale"] == expected


def test_bad_rows_inside_a_batch_are_dropped_like_one_by_one():
    """Duplicate, out-of-order and repeated-series rows in one poll are counted the same way."""
    polls = faulty_polls(120, 4)
    mixed: list[list[Sample]] = []
    for i, poll in enumerate(polls):
        extra = list(poll)
        if i > 50:
            extra.append(poll[0])  # duplicate timestamp
            extra.append(polls[i - 3][1])  # out of order
            first = poll[2]
            extra.append(first.model_copy(update={"ts": first.ts + timedelta(seconds=1), "value": first.value * 5}))
        mixed.append(extra)
    expected, reference = one_by_one(mixed)
    engine = DetectionEngine()
    got = [a for poll in mixed for a in engine.observe_batch(poll)]
    assert got == expected
    assert engine.dropped == reference.dropped
    assert reference.dropped["duplicate_ts"] > 0 and reference.dropped["out_of_order"] > 0


def test_trend_warnings_match_between_batch_and_one_by_one():
    """Slow slides toward an SLO raise the same trend warnings, at the same samples, through the batch path."""
    slopes = {"chat": -0.00004, "search": -0.00006, "rerank": 0.0}
    rng = random.Random(5)
    polls = [
        [
            Sample(
                service=service,
                signal=signal,
                ts=T0 + timedelta(seconds=STEP_S * i),
                value=(0.85 + rng.gauss(0, 0.01) + slope * max(i - 300, 0))
                if signal == "quality_score"
                else 0.03 + rng.gauss(0, 0.003) - 0.5 * slope * max(i - 300, 0),
            )
            for service, slope in slopes.items()
            for signal in ("quality_score", "hallucination_rate")
        ]
        for i in range(3000)
    ]
    expected, _ = one_by_one(polls)
    engine = DetectionEngine()
    got = [a for poll in polls for a in engine.observe_batch(poll)]
    assert sum(a.kind == "trend" for a in expected) >= 1
    assert got == expected
