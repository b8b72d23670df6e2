"""Unknown signals on the compiled batch path: the likelihood's step gives exactly what one-by-one gives."""

from __future__ import annotations

import math
import random
from array import array
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from domain import Anomaly, Sample
from runtime.detection import DetectionEngine, config_from_dict
from runtime.detection import _kernels as k
from runtime.detection.columnar import eligible
from runtime.detection.series import LikelihoodSeriesDetector

STEP = 300.0  # five-minute samples: 288 cells a day, 2016 a week
PER_DAY = int(86400 / STEP)
T0 = 1_700_006_400.0  # a UTC midnight
SERIES = (("chat", "gpu_temperature"), ("chat", "queue_wait_s"), ("search", "gpu_temperature"))


def value(rng: random.Random, i: int, s: int) -> float:
    """A daily cycle with quieter weekends, different per series, with seeded noise."""
    phase = (i % PER_DAY) / PER_DAY
    amplitude = (3.0 + 1.0 * s) * (0.3 if (i // PER_DAY) % 7 >= 5 else 1.0)
    return 50.0 + 20.0 * s + amplitude * math.sin(2 * math.pi * phase + s) + rng.gauss(0.0, 2.0)


def polls(days: int, seed: int) -> list[list[Sample]]:
    """Polls of unknown signals with daily/weekly shape, faults, spikes and silences (seeded)."""
    rng = random.Random(seed)
    out: list[list[Sample]] = []
    for i in range(days * PER_DAY):
        ts = datetime.fromtimestamp(T0 + STEP * i + (rng.random() if seed % 2 else 0.0), UTC)
        poll = []
        for s, (service, signal) in enumerate(SERIES):
            v = value(rng, i, s)
            if (i + 500 * s) % (3 * PER_DAY) in range(2 * PER_DAY, 2 * PER_DAY + 40):
                v = 50.0 + 20.0 * s  # a flat stretch where the daily cycle should be
            if rng.random() < 0.003:
                v *= 4.0  # a lone spike
            if s == 2 and 4 * PER_DAY <= i < 5 * PER_DAY + 30:
                continue  # silent for over a day: its season cells restart
            poll.append(Sample(service=service, signal=signal, ts=ts, value=v))
        rng.shuffle(poll)
        out.append(poll)
    return out


def one_by_one(batches: list[list[Sample]], config: Any = None) -> tuple[list[Anomaly], DetectionEngine]:
    engine = DetectionEngine(config)
    return [a for poll in batches for sample in poll for a in engine.observe(sample)], engine


def counting_updates(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the steps the Python likelihood detector takes itself (the rest ran compiled)."""
    calls = [0]
    original = LikelihoodSeriesDetector.update

    def update(self: LikelihoodSeriesDetector, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LikelihoodSeriesDetector, "update", update)
    return calls


class TestIdenticalToOneByOne:
    @pytest.mark.parametrize("seed", [0, 1])
    def test_weeks_of_unknown_signals_raise_the_same_anomalies_and_state(self, seed):
        """Nine days with warm daily and weekly tables: same anomalies, same order, same snapshot bytes."""
        batches = polls(9, seed)
        expected, reference = one_by_one(batches)
        engine = DetectionEngine()
        got = [a for poll in batches for a in engine.observe_batch(poll)]
        assert {a.detector for a in expected} >= {"likelihood", "robust"}
        assert got == expected
        assert engine.snapshot() == reference.snapshot()
        regions = {name for _, name in engine._cols.lik.regions}
        assert regions == {"ring", "day", "week"}

    @pytest.mark.parametrize("seed", [0, 1])
    def test_likelihood_alarms_are_raised_from_the_compiled_path(self, seed, monkeypatch):
        """With the robust layer silenced, the compiled step takes every row but warm-up and alarms."""
        config = config_from_dict({"unknown_signals": {"cusum_h": 1e9, "spike_z": 1e9}})
        batches = polls(9, seed)
        expected, reference = one_by_one(batches, config)
        calls = counting_updates(monkeypatch)
        engine = DetectionEngine(config)
        got = [a for poll in batches for a in engine.observe_batch(poll)]
        alarms = [a for a in expected if a.detector == "likelihood"]
        assert alarms
        assert got == expected
        assert engine.snapshot() == reference.snapshot()
        window = config.policy_for("chat", "gpu_temperature").lik_window
        warmup = len(SERIES) * (window + 12)  # 10 errors before a forecaster speaks, then the window
        # Python steps: warm-up, the alarms, and one poll of back-off after each alarm's hand-back
        assert calls[0] <= warmup + 2 * len(alarms)

    def test_snapshots_and_restarts_between_polls_change_nothing(self):
        """Restoring from a snapshot every few hours (tables warm, mid-alarm too) keeps every result."""
        batches = polls(8, 2)
        expected, reference = one_by_one(batches)
        engine = DetectionEngine()
        got: list[Anomaly] = []
        for i, poll in enumerate(batches):
            got.extend(engine.observe_batch(poll))
            if i % 97 == 0:
                engine = DetectionEngine.restore(engine.snapshot())
        assert got == expected
        # a restored engine pickles its policies apart: compare both sides as restored
        settled = DetectionEngine.restore(reference.snapshot()).snapshot()
        assert DetectionEngine.restore(engine.snapshot()).snapshot() == settled

    @pytest.mark.parametrize(
        "override",
        [
            {"lik_combine": "mean", "lik_forecasters": ["last", "level", "season"]},
            {"lik_combine": "min", "lik_forecasters": ["last", "week"], "lik_min_history": 50},
            {"lik_window": 5, "lik_season_alpha": 0.3, "lik_surprise": 1.0, "lik_min_history": 100},
        ],
    )
    def test_other_forecasters_and_combinations_match(self, override):
        """Each combine rule, forecaster set, window and season weight gives identical results batched."""
        config = config_from_dict({"unknown_signals": override})
        batches = polls(8, 3)
        expected, reference = one_by_one(batches, config)
        engine = DetectionEngine(config)
        got = [a for poll in batches for a in engine.observe_batch(poll)]
        assert got == expected
        assert engine.snapshot() == reference.snapshot()

    def test_range_polls_with_several_points_per_series_match(self):
        """Polls carrying an hour of points per series go through the compiled rounds identically."""
        flat = [s for poll in polls(8, 4) for s in poll]
        hour = 12 * len(SERIES)
        batches = [flat[i : i + hour] for i in range(0, len(flat), hour)]
        expected, reference = one_by_one(batches)
        engine = DetectionEngine()
        got = [a for poll in batches for a in engine.observe_batch(poll)]
        assert got == expected
        assert engine.snapshot() == reference.snapshot()


class TestHandBack:
    def test_a_series_handed_back_again_and_again_backs_off_with_identical_results(self):
        """A strong daily cycle the robust layer hands back most rows of backs off and still matches."""
        rng = random.Random(8)
        keys = [("svc", f"unknown_{s}") for s in range(4)]
        rows = [
            [T0 + STEP * i + 0.0 for _ in keys]
            + [50.0 + 40.0 * math.sin(2 * math.pi * i / PER_DAY + s) + rng.gauss(0.0, 2.0) for s in range(4)]
            for i in range(4 * PER_DAY)
        ]
        reference = DetectionEngine()
        expected = [
            a for row in rows for (svc, sig), t, v in zip(keys, row[:4], row[4:], strict=True)
            for a in reference.observe_value(svc, sig, t, v)
        ]  # fmt: skip
        engine = DetectionEngine()
        got = [a for row in rows for a in engine.observe_columns(keys, row[:4], row[4:])]
        assert got == expected
        assert engine.snapshot() == reference.snapshot()
        assert max(engine._cols.backoff.values()) > 1  # handed back soon after adoption, repeatedly

    def test_a_series_goes_compiled_only_once_its_recent_window_is_full(self):
        """A new unknown series stays with its Python detector until its recent window has filled."""
        engine = DetectionEngine()
        rng = random.Random(5)
        for i in range(200):
            engine.observe_value("svc", "gpu_temperature", T0 + STEP * i, value(rng, i, 0))
            det = engine._series[("svc", "gpu_temperature")]
            if engine._cols.active[0]:
                engine._cols.release(0)
            assert isinstance(det, LikelihoodSeriesDetector)
            if len(det.lik.recent) < det.lik.p.window:
                assert not eligible(det)
            engine._cols.adopt(0)

    def test_adopt_then_release_gives_back_the_same_state(self):
        """Moving a warm series' likelihood into the arrays and back leaves it byte for byte unchanged."""
        engine = DetectionEngine()
        rng = random.Random(6)
        for i in range(3 * PER_DAY):
            engine.observe_value("svc", "gpu_temperature", T0 + STEP * i, value(rng, i, 0))
        before = engine.snapshot()  # releases
        engine._cols.adopt(0)
        assert engine._cols.active[0]
        assert engine.snapshot() == before


class TestCompiledArithmetic:
    @pytest.mark.parametrize("v", [0.0, 1.5, -1.5, 86399.999, 1_700_006_400.5, -1e-300, 7e15])
    @pytest.mark.parametrize("w", [86400.0, 300.0, -7.0])
    def test_the_compiled_modulo_is_pythons(self, v, w):
        """`py_mod` is Python's float `%`, sign and all."""
        got = k.py_mod(v, w)
        assert got == v % w and math.copysign(1.0, got) == math.copysign(1.0, v % w)

    def test_float32_cells_round_as_array_f_does(self):
        """A season cell stored from float64 rounds exactly as `array('f')` stores it."""
        rng = random.Random(7)
        xs = [rng.uniform(-1e6, 1e6) * rng.random() for _ in range(2000)] + [1e-40, 3.4e38, 0.1]
        cells = np.zeros(len(xs), dtype=np.float32)
        cells[:] = np.array(xs)
        assert cells.tobytes() == array("f", xs).tobytes()
