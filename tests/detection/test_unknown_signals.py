"""Signals Homeostat does not know: the robust ensemble plus the forecast-error likelihood."""

from __future__ import annotations

import math
import random
from itertools import pairwise
from pathlib import Path

import pytest

from domain import Anomaly, Direction
from runtime.detection import DetectionConfigError, DetectionEngine, load_detection_config
from runtime.detection.likelihood import ForecastLikelihood, LikelihoodParams
from runtime.detection.series import LikelihoodSeriesDetector, SeriesDetector, likelihood_params

DAY = 86400.0
STEP = 300.0  # five-minute samples, as in most NAB files
PER_DAY = int(DAY / STEP)
T0 = 1_700_006_400.0  # a UTC midnight


def daily(
    days: int, seed: int, *, override: dict[int, float] | None = None, weekend: float = 1.0
) -> list[tuple[float, float]]:
    """A daily cycle (busy days, quiet nights) with seeded noise; `override` replaces values by row.

    `weekend` scales the cycle's amplitude on the last two days of every week.
    """
    rng = random.Random(seed)
    out = []
    for i in range(days * PER_DAY):
        phase = (i % PER_DAY) / PER_DAY
        amplitude = 30.0 * (weekend if (i // PER_DAY) % 7 >= 5 else 1.0)
        value = 50.0 + amplitude * math.sin(2 * math.pi * phase) + rng.gauss(0.0, 2.0)
        out.append((T0 + i * STEP, (override or {}).get(i, value)))
    return out


def run(rows: list[tuple[float, float]], engine: DetectionEngine | None = None) -> list[Anomaly]:
    engine = engine or DetectionEngine()
    return [a for ts, v in rows for a in engine.observe_value("svc", "gpu_temperature", ts, v)]


def row_of(anomaly: Anomaly) -> int:
    return round((anomaly.ts.timestamp() - T0) / STEP)


# -- what is caught ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_missing_daily_peak_raises_an_alarm_inside_the_break(seed):
    """A day whose busy hours stay flat at the daily mean is caught while it happens."""
    start = 6 * PER_DAY + PER_DAY // 8
    flat = {i: 50.0 + random.Random(i).gauss(0.0, 2.0) for i in range(start, start + PER_DAY // 4)}
    found = run(daily(8, seed=seed, override=flat))
    assert any(start <= row_of(a) < start + PER_DAY // 4 for a in found), [row_of(a) for a in found]


@pytest.mark.parametrize("seed", [5, 6])
def test_a_noise_burst_without_a_level_change_raises_one_anomaly(seed):
    """Ten times the usual noise around an unchanged level raises one anomaly, not one per wild sample."""
    rng = random.Random(seed)
    rows = [(T0 + i * 60.0, 100.0 + rng.gauss(0.0, 20.0 if 3000 <= i < 3100 else 2.0)) for i in range(4000)]
    found = [a for a in run(rows) if 3000 <= round((a.ts.timestamp() - T0) / 60.0) < 3100]
    assert len(found) == 1


def test_false_alarm_rate_on_stationary_noise_stays_low():
    """White noise alarms about once per 10,000 samples at the shipped `lik_tail` (1e-4), never in bursts."""
    policy = load_detection_config().policy_for("svc", "gpu_temperature")
    per_series = []
    for seed in range(4):
        rng = random.Random(seed)
        model = ForecastLikelihood(likelihood_params(policy))
        per_series.append([i for i in range(20_000) if model.update(T0 + 60.0 * i, 100.0 + rng.gauss(0.0, 2.0))])
    assert sum(map(len, per_series)) <= 16  # at most 2 per 10,000 samples (measured: about 1)
    assert all(b - a > policy.lik_cooldown for alarms in per_series for a, b in pairwise(alarms))


@pytest.mark.parametrize("factor", [1.6, 0.4])
def test_one_level_shift_raises_one_anomaly_across_the_ensemble(factor):
    """Robust CUSUM and likelihood both see a shift; the series still raises exactly one anomaly."""
    rng = random.Random(2)
    rows = [(T0 + i * 60.0, (100.0 if i < 2000 else 100.0 * factor) + rng.gauss(0.0, 2.0)) for i in range(2300)]
    found = [a for a in run(rows) if a.kind == "shift"]
    assert len(found) == 1
    assert found[0].direction == (Direction.UP if factor > 1 else Direction.DOWN)


# -- what is not -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_steady_daily_cycle_stays_quiet_once_learned(seed):
    """The same daily cycle day after day raises nothing after its first two days."""
    found = run(daily(8, seed=seed))
    assert [row_of(a) for a in found if row_of(a) >= 2 * PER_DAY] == []


@pytest.mark.parametrize("seed", [1, 2])
def test_a_steady_weekly_pattern_stays_quiet_once_learned(seed):
    """Quiet weekends (a tenth of the weekday swing) stop alarming once two weeks have been seen."""
    found = run(daily(35, seed=seed, weekend=0.1))
    assert [row_of(a) for a in found if row_of(a) >= 14 * PER_DAY] == []


def test_known_signals_do_not_get_the_likelihood_layer():
    """Only signals Homeostat does not know get the likelihood detector; known ones keep the columnar path."""
    engine = DetectionEngine()
    engine.observe_value("svc", "latency_p95_ms", T0, 100.0)
    engine.observe_value("svc", "gpu_temperature", T0, 100.0)
    kinds = {det.signal: type(det) for det in engine.iter_series()}
    assert kinds == {"latency_p95_ms": SeriesDetector, "gpu_temperature": LikelihoodSeriesDetector}


# -- state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [PER_DAY, 6 * PER_DAY + 40, 6 * PER_DAY + 80])
def test_restart_mid_stream_resumes_the_likelihood_without_a_burst(cut):
    """A restore from a snapshot (even inside an anomaly) raises exactly what an uninterrupted run raises."""
    start = 6 * PER_DAY + PER_DAY // 8
    flat = {i: 50.0 for i in range(start, start + PER_DAY // 4)}
    rows = daily(8, seed=4, override=flat)
    reference = run(rows)
    engine = DetectionEngine()
    before = run(rows[:cut], engine)
    after = run(rows[cut:], DetectionEngine.restore(engine.snapshot()))
    assert before + after == reference
    assert reference


def test_seasonal_memory_is_bounded_whatever_the_cadence():
    """One-second samples still keep at most `season_bins` / `week_bins` bins, and state stops growing."""
    model = ForecastLikelihood(LikelihoodParams(season_bins=288, week_bins=2016))
    for i in range(5000):
        model.update(T0 + i, float(i % 7))
    assert model.day is not None and model.week is not None
    assert (len(model.day.value), len(model.week.value)) == (288, 2016)
    engine = DetectionEngine()
    rows = [(T0 + i, float(i % 7)) for i in range(3000)]
    run(rows, engine)
    small = len(engine.snapshot())
    run([(T0 + i, float(i % 7)) for i in range(3000, 30000)], engine)
    assert len(engine.snapshot()) < small + 4000


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("unknown_signals:\n  lik_tail: 0.7\n", r"detection.yaml:2: unknown_signals.lik_tail"),
        ("unknown_signals:\n  lik_forecasters: [weekly]\n", r"detection.yaml:2: unknown_signals.lik_forecasters"),
        ("defaults:\n  detectors: [robust, likelyhood]\n", r"detection.yaml:2: defaults.detectors"),
    ],
)
def test_bad_likelihood_settings_name_file_line_and_field(tmp_path: Path, text: str, needle: str):
    """A bad likelihood setting is refused with the file, line and field in the message."""
    path = tmp_path / "detection.yaml"
    path.write_text(text)
    with pytest.raises(DetectionConfigError, match=needle):
        load_detection_config(path)


def test_the_likelihood_can_be_switched_off_for_unknown_signals(tmp_path: Path):
    """`unknown_signals.detectors` without likelihood falls back to the robust ensemble alone."""
    path = tmp_path / "detection.yaml"
    path.write_text("unknown_signals:\n  detectors: [robust, adwin]\n")
    engine = DetectionEngine(load_detection_config(path))
    rng = random.Random(5)
    rows = [(T0 + i * 60.0, 100.0 + rng.gauss(0.0, 20.0 if 3000 <= i < 3100 else 2.0)) for i in range(4000)]
    assert all(a.detector != "likelihood" for a in run(rows, engine))
    assert all(type(det) is SeriesDetector for det in engine.iter_series())
