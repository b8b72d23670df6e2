"""Staleness, bad samples, batch vs single, checkpoint/restore, config errors."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.detection import DetectionConfigError, DetectionEngine, SnapshotError, load_detection_config
from tests.detection.fleet import T0, fleet, healthy_value, series


def test_a_silent_series_is_stale_once_per_silence():
    """A series that stops reporting raises one stale anomaly, and another only after it resumes and stops again."""
    engine = DetectionEngine()
    engine.observe_batch(series("error_rate", 50))
    last = T0 + timedelta(seconds=490)
    assert engine.check_staleness(last + timedelta(seconds=30)) == []
    first = engine.check_staleness(last + timedelta(seconds=120))
    assert [(a.kind, a.signal) for a in first] == [("stale", "error_rate")]
    assert engine.check_staleness(last + timedelta(seconds=600)) == []
    engine.observe_value("chat", "error_rate", (last + timedelta(seconds=700)).timestamp(), 0.01)
    assert len(engine.check_staleness(last + timedelta(seconds=900))) == 1


@pytest.mark.parametrize(
    ("value", "ts_offset", "reason"),
    [
        (math.nan, 1000, "not_finite"),
        (math.inf, 1000, "not_finite"),
        ("12", 1000, "not_a_number"),
        (None, 1000, "not_a_number"),
        (1.0, 0, "duplicate_ts"),
        (1.0, -50, "out_of_order"),
    ],
)
def test_bad_samples_are_counted_and_dropped_and_the_stream_goes_on(value, ts_offset, reason):
    """NaN, inf, strings, duplicate or out-of-order timestamps are dropped with a reason, not raised."""
    engine = DetectionEngine()
    engine.observe_batch(series("latency_p95_ms", 40))
    last_ts = (T0 + timedelta(seconds=390)).timestamp()
    assert engine.observe_value("chat", "latency_p95_ms", last_ts + ts_offset, value) == []
    assert engine.dropped[reason] == 1
    assert engine.observe_value("chat", "latency_p95_ms", last_ts + 2000, 600.0) == []
    assert engine.accepted == 41


def test_unknown_series_is_dropped():
    """A sample without a service or signal name is dropped as an unknown series."""
    engine = DetectionEngine()
    engine.observe_value("", "error_rate", 1.0, 0.1)
    engine.observe_value("svc", None, 1.0, 0.1)  # type: ignore[arg-type]
    assert engine.dropped["unknown_series"] == 2
    assert engine.series_count == 0


def faulty_fleet(n: int, seed: int = 3) -> list:
    rng = random.Random(seed)
    out = []
    for sample in fleet(n, seed=seed):
        if sample.service == "chat" and sample.signal == "latency_p95_ms" and sample.ts >= T0 + timedelta(seconds=2000):
            out.append(sample.model_copy(update={"value": healthy_value(rng, sample.signal) * 3}))
        else:
            out.append(sample)
    return out


def test_batch_path_gives_the_same_anomalies_as_one_by_one():
    """observe_batch over a poll equals observe on each sample in turn."""
    samples = faulty_fleet(400)
    one = DetectionEngine()
    single = [a for s in samples for a in one.observe(s)]
    assert DetectionEngine().observe_batch(samples) == single
    assert single


@pytest.mark.parametrize("cut", [150, 201, 203, 260])
def test_restore_mid_stream_continues_identically_without_a_burst(cut):
    """A restart from a snapshot raises exactly the anomalies an uninterrupted engine raises."""
    samples = faulty_fleet(400)
    per_tick = 2 * 13
    reference = DetectionEngine().observe_batch(samples)
    engine = DetectionEngine()
    before = engine.observe_batch(samples[: cut * per_tick])
    restored = DetectionEngine.restore(engine.snapshot())
    after = restored.observe_batch(samples[cut * per_tick :])
    assert before + after == reference
    assert restored.series_count == 26


def test_restore_refuses_foreign_bytes():
    """Bytes that are not a detection snapshot are refused with a clear error."""
    with pytest.raises(SnapshotError, match="magic"):
        DetectionEngine.restore(b"hello")


def test_memory_per_series_is_bounded():
    """A long-running series' snapshot stays small: state does not grow with history."""
    engine = DetectionEngine()
    engine.observe_batch(series("latency_p95_ms", 500))
    small = len(engine.snapshot())
    engine.observe_batch(series("latency_p95_ms", 20000)[500:])
    assert len(engine.snapshot()) < small + 4000


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detection.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("defaults:\n  warmup: 2\n", r"detection.yaml:2: .*warmup"),
        ("signals:\n  error_rate:\n    cusum_hh: 3\n", r"detection.yaml:3: .*signals.error_rate.cusum_hh"),
        ("budgets:\n  - {period: daily, limit: 10}\n", r"detection.yaml:2: .*exactly one of"),
        ("services:\n  chat:\n    signals:\n      quality_score: {slo_min: 2, slo_max: 1}\n", r"detection.yaml:4"),
        ("defaults: [1, 2\n", r"not valid YAML"),
        ("- 1\n", r"top level must be a mapping"),
    ],
)
def test_bad_config_names_file_line_and_field(tmp_path, text, needle):
    """A bad detection config fails at load with the file, line and field in the message."""
    with pytest.raises(DetectionConfigError, match=needle):
        load_detection_config(write(tmp_path, text))


def test_config_overrides_apply_per_service(tmp_path):
    """A service-level override changes that series' policy and leaves the others on defaults."""
    cfg = load_detection_config(write(tmp_path, "services:\n  chat:\n    signals:\n      error_rate: {warmup: 50}\n"))
    assert cfg.policy_for("chat", "error_rate").warmup == 50
    assert cfg.policy_for("chat", "error_rate").min_abs_change == 0.01  # shipped per-signal default kept
    assert cfg.policy_for("search", "error_rate").warmup == 30
