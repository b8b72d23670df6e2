"""`homeostat bench detection seasonal`: what the compiled likelihood costs on seasonal unknown series.

Unknown signals carry the forecast-error likelihood; on the batch path its step is compiled, but
a row the robust layer hands back goes through Python with its state copied out and in. How
often that happens depends on how seasonal the series is (the robust CUSUM is not seasonal), so
this bench sweeps the amplitude of a daily cycle and times the same polls two ways in one
process: `observe_columns` (compiled, what the daemon runs) and `observe_value` row by row (the
one-sample path). Both must raise identical anomalies; the bench fails loudly if they do not.
"""

from __future__ import annotations

import gc
import math
import random
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

#: a signal name outside `domain.Signal` and the shipped `signals:` (so the unknown-signal layer applies)
UNKNOWN_SIGNAL = "widget_temperature"
LEVEL = 50.0
DAY_S = 86_400.0


def seasonal_polls(
    n_series: int, days: float, amplitude: float, *, noise_sd: float = 2.0, cadence_s: float = 300.0, seed: int = 0
) -> tuple[list[tuple[str, str]], list[tuple[float, list[float]]]]:
    """Series keys and polls (ts, one value per series): LEVEL + amplitude x sin(daily phase) + N(0, noise_sd)."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday, midnight UTC
    keys = [(f"svc{i}", UNKNOWN_SIGNAL) for i in range(n_series)]
    phases = [rng.uniform(0.0, 2.0 * math.pi) for _ in keys]
    polls = []
    for tick in range(int(days * DAY_S / cadence_s)):
        ts = t0 + cadence_s * tick
        angle = 2.0 * math.pi * (ts % DAY_S) / DAY_S
        polls.append((ts, [LEVEL + amplitude * math.sin(angle + p) + rng.gauss(0.0, noise_sd) for p in phases]))
    return keys, polls


def _anomaly_key(anomaly: Any) -> tuple[Any, ...]:
    return (anomaly.id, anomaly.kind, anomaly.direction, anomaly.severity)


def measure_amplitude(
    n_series: int, days: float, amplitude: float, *, noise_sd: float = 2.0, seed: int = 0, chunks: int = 8
) -> dict[str, Any]:
    """us/row of the compiled batch path and of the one-sample path on the same seasonal polls.

    The two engines are fed in alternating chunks of polls so both see the same machine load.
    Raises AssertionError if they raise different anomalies (they must be identical).
    """
    from runtime.detection.columnar import kernels_ready
    from runtime.detection.engine import DetectionEngine

    kernels_ready(wait=True)
    keys, polls = seasonal_polls(n_series, days, amplitude, noise_sd=noise_sd, seed=seed)
    compiled = DetectionEngine()
    compiled.wait_for_kernels = True
    single = DetectionEngine()
    found_c: list[Any] = []
    found_s: list[Any] = []
    compiled_s = single_s = 0.0
    size = max(1, -(-len(polls) // chunks))
    gc.collect()
    for start in range(0, len(polls), size):
        part = polls[start : start + size]
        started = time.perf_counter()
        for ts, values in part:
            found_c.extend(compiled.observe_columns(keys, [ts] * len(keys), values))
        compiled_s += time.perf_counter() - started
        started = time.perf_counter()
        for ts, values in part:
            for (service, signal), value in zip(keys, values, strict=True):
                found_s.extend(single.observe_value(service, signal, ts, value))
        single_s += time.perf_counter() - started
    if [_anomaly_key(a) for a in found_c] != [_anomaly_key(a) for a in found_s]:
        raise AssertionError(f"amplitude {amplitude}: the batch and one-sample paths raised different anomalies")
    rows = len(keys) * len(polls)
    return {
        "amplitude": amplitude,
        "rows": rows,
        "compiled_us_per_row": round(1e6 * compiled_s / rows, 2),
        "one_by_one_us_per_row": round(1e6 * single_s / rows, 2),
        "ratio_one_by_one_over_compiled": round(single_s / compiled_s, 3) if compiled_s > 0 else None,
        "anomalies": len(found_c),
        "identical": True,
    }


def measure_seasonal(
    n_series: int = 100,
    days: float = 4.0,
    amplitudes: tuple[float, ...] = (0.0, 3.0, 20.0),
    *,
    noise_sd: float = 2.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """`measure_amplitude` for each amplitude (same seed, so the noise is the same draw)."""
    return [measure_amplitude(n_series, days, a, noise_sd=noise_sd, seed=seed) for a in amplitudes]


def measure_unknown_memory(n_series: int = 10_000, n_polls: int = 60, *, seed: int = 0) -> dict[str, Any]:
    """tracemalloc bytes held by an engine of `n_series` unknown series (5-minute cadence), two ways.

    `batched`: every poll through `observe_columns` (compiled: season cells in shared pools);
    `one_by_one`: every row through `observe_value` (the detectors keep their own tables).
    """
    from runtime.detection.columnar import kernels_ready
    from runtime.detection.engine import DetectionEngine

    kernels_ready(wait=True)
    keys, polls = seasonal_polls(n_series, n_polls * 300.0 / DAY_S, 3.0, seed=seed)
    out: dict[str, Any] = {"series": n_series, "polls": len(polls)}
    for mode in ("batched", "one_by_one"):
        gc.collect()
        tracemalloc.start()
        engine = DetectionEngine()
        engine.wait_for_kernels = True
        for ts, values in polls:
            if mode == "batched":
                engine.observe_columns(keys, [ts] * len(keys), values)
            else:
                for (service, signal), value in zip(keys, values, strict=True):
                    engine.observe_value(service, signal, ts, value)
        gc.collect()
        traced, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[f"{mode}_mb"] = round(traced / 1e6, 2)
        out[f"{mode}_bytes_per_series"] = round(traced / n_series)
        del engine
    return out


def measure_adopt_release(days: float = 8.0, cycles: int = 200, *, seed: int = 0) -> dict[str, Any]:
    """us per release-and-adopt of one warm likelihood series (its season tables copied out and in).

    One unknown series is fed `days` of 5-minute samples (8 days: daily and weekly tables warm),
    then moved out of the compiled arrays and back `cycles` times, as a hand-back does.
    """
    from runtime.detection.columnar import kernels_ready
    from runtime.detection.engine import DetectionEngine

    kernels_ready(wait=True)
    keys, polls = seasonal_polls(1, days, 0.0, seed=seed)  # flat: ends armed, so adoptable
    engine = DetectionEngine()
    engine.wait_for_kernels = True
    for ts, values in polls:
        engine.observe_columns(keys, [ts], values)
    cols = engine._cols  # the bench times exactly the engine's own copy in and out
    slot = engine._slots[keys[0]]
    cols.adopt(slot)
    if not cols.active[slot]:
        raise AssertionError("the warm series could not be adopted by the compiled path")
    started = time.perf_counter()
    for _ in range(cycles):
        cols.release(slot)
        cols.adopt(slot)
    seconds = time.perf_counter() - started
    return {"days": days, "cycles": cycles, "us_per_release_and_adopt": round(1e6 * seconds / cycles, 2)}
