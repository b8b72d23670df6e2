"""`homeostat bench detection noise`: false alarms of the unknown-signal layer on stationary noise.

NAB rewards catching anomalies and charges little for false alarms, so the NAB-chosen defaults
must also be checked where nothing happens: seeded white noise, an AR(1) series and a random
walk, as unknown signals, through the shipped defaults with `lik_tail` (the likelihood's knob)
swept. Alarms are counted per 10,000 samples; every one of them is false by construction.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

KINDS = ("white", "ar1", "walk")
UNKNOWN_SIGNAL = "noise_level"
LEVEL = 100.0


def noise_series(kind: str, length: int, seed: int, *, phi: float = 0.9) -> list[float]:
    """One seeded series: `white` N(0,1), `ar1` x_t = phi x_(t-1) + N(0,1), `walk` cumulative N(0,1); plus LEVEL."""
    if kind not in KINDS:
        raise ValueError(f"noise kind {kind!r}: expected one of {', '.join(KINDS)}")
    rng = random.Random(f"{kind}:{seed}")
    out = []
    x = 0.0
    for _ in range(length):
        e = rng.gauss(0.0, 1.0)
        if kind == "white":
            x = e
        elif kind == "ar1":
            x = phi * x + e
        else:
            x += e
        out.append(LEVEL + x)
    return out


def false_alarms(
    lik_tail: float | None = None,
    *,
    kinds: tuple[str, ...] = KINDS,
    n_series: int = 5,
    length: int = 20_000,
    seed: int = 0,
    cadence_s: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """Alarms per 10,000 samples for each noise kind, shipped defaults with `lik_tail` overridden.

    All series (kinds x n_series, seeds seed..seed+n_series-1) run in one engine as polls of one
    sample each through `observe_columns`; `likelihood` counts the likelihood detector's alarms,
    `all` every anomaly (robust shifts and `info` spikes included), `paging` warning or critical.
    """
    from runtime.detection.columnar import kernels_ready
    from runtime.detection.config import config_from_dict
    from runtime.detection.engine import DetectionEngine

    kernels_ready(wait=True)
    config = config_from_dict({"unknown_signals": {"lik_tail": lik_tail}}) if lik_tail is not None else None
    engine = DetectionEngine(config)
    engine.wait_for_kernels = True
    keys = [(f"{kind}-{i}", UNKNOWN_SIGNAL) for kind in kinds for i in range(n_series)]
    kind_of = {service: service.rsplit("-", 1)[0] for service, _signal in keys}
    data = [noise_series(kind, length, seed + i) for kind in kinds for i in range(n_series)]
    counts = {kind: {"likelihood": 0, "all": 0, "paging": 0} for kind in kinds}
    t0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    for tick in range(length):
        for anomaly in engine.observe_columns(keys, [t0 + cadence_s * tick] * len(keys), [s[tick] for s in data]):
            kind = kind_of[anomaly.service]
            counts[kind]["all"] += 1
            counts[kind]["likelihood"] += anomaly.detector == "likelihood"
            counts[kind]["paging"] += anomaly.severity.value in ("warning", "critical")
    samples = n_series * length
    return {
        kind: {name + "_per_10k": round(1e4 * n / samples, 2) for name, n in c.items()} | {"samples": samples}
        for kind, c in counts.items()
    }


def measure_noise(
    tails: tuple[float, ...] = (1e-4, 1e-5, 1e-6),
    *,
    n_series: int = 5,
    length: int = 20_000,
    seed: int = 0,
    nab: Path | None = None,
) -> list[dict[str, Any]]:
    """`false_alarms` for each `lik_tail`; with `nab`, also the NAB standard score at that tail."""
    rows = []
    for tail in tails:
        row: dict[str, Any] = {"lik_tail": tail}
        row.update(false_alarms(tail, n_series=n_series, length=length, seed=seed))
        if nab is not None:
            from runtime.detection.nab import normalised, raw_scores

            files = raw_scores(nab, {"lik_tail": tail})
            row["nab_standard"] = round(float(normalised(files, list(files)) or 0.0), 2)
        rows.append(row)
    return rows
