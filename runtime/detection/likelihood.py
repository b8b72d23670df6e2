"""Forecast-error anomaly likelihood for series whose shape Homeostat does not know.

The idea (as in Numenta's "anomaly likelihood"): forecast each sample, turn the forecast error
into a scale-free raw score, average the last `window` raw scores, and compare that average
with the long-run distribution of such averages on the same series (an exponentially weighted
mean and variance, so memory is bounded and old regimes fade). An alarm is raised only when
the recent average is in a very unlikely upper tail (`tail` probability under a normal fit),
and at most once per `cooldown` samples.

Forecasters, each scored by its own long-run mean absolute error (so the raw score is unitless):

- `last`: the previous value (random-walk series);
- `level`: an exponentially weighted level (noisy, level-shifting series);
- `season`: the same time of day one period (`season_s`, a day) ago, a per-bin EWMA over the
  previous periods (daily cycles); a bin speaks once it was filled in an earlier period;
- `week`: the same, one week ago (weekday/weekend patterns).

`combine` says how the forecasters' scaled errors make the raw score: `mean` (a sample is
unusual in proportion to how surprising it is to all of them), `min` (unusual only if no
forecaster explains it) or `best` (the error of the forecaster with the lowest long-run error).

Everything is causal and streaming: O(1) work per sample; memory is 12 bytes per seasonal bin
(`season_bins` + `week_bins`, fixed at the second sample from the cadence, never more).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Literal

Combine = Literal["mean", "min", "best"]
FORECASTERS = ("last", "level", "season", "week")
WEEK_S = 7 * 86400.0
_SQRT2 = math.sqrt(2.0)
_SCALE_WARMUP = 10  # errors a forecaster makes before its scaled error counts


def upper_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / _SQRT2)


@dataclass(frozen=True, slots=True)
class LikelihoodParams:
    """Parameters of `ForecastLikelihood` (see `SignalPolicy.lik_*` for their meaning)."""

    forecasters: tuple[str, ...] = ("level", "season", "week")
    combine: Combine = "best"
    level_alpha: float = 0.02
    error_alpha: float = 0.003
    window: int = 20
    history_alpha: float = 0.001
    min_history: int = 400
    tail: float = 1e-4
    cooldown: int = 500
    season_s: float = 86400.0
    season_alpha: float = 1.0
    season_bins: int = 288
    week_bins: int = 2016
    surprise: float = 0.0
    surprise_halflife: float = 500.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """An alarm: the direction of the recent errors, its tail probability and the forecast."""

    up: bool
    tail: float
    z: float
    forecast: float


class SeasonTable:
    """The value at the same phase one period ago: `bins` cells per period (UTC-aligned), each an
    EWMA (`alpha`; 1 = the last value) of the samples that fell in it. A cell forecasts only if it
    was first filled in an earlier period and updated in this or the previous one. 12 bytes a cell.
    """

    __slots__ = ("alpha", "first", "last", "max_bins", "period", "value", "width")

    def __init__(self, period: float, max_bins: int, alpha: float) -> None:
        self.period = period
        self.max_bins = max_bins
        self.alpha = alpha
        self.width = 0.0  # fixed at the first positive gap between samples
        self.value = array("f")
        self.first = array("i")  # period number of the first fill (-1 = empty)
        self.last = array("i")  # period number of the last update

    def _cell(self, ts: float) -> tuple[int, int]:
        return int((ts % self.period) // self.width) % len(self.value), int(ts // self.period)

    def forecast(self, ts: float) -> float | None:
        if not self.width:
            return None
        i, k = self._cell(ts)
        first = self.first[i]
        if 0 <= first < k and self.last[i] >= k - 1:
            return float(self.value[i])
        return None

    def learn(self, ts: float, x: float, gap: float) -> None:
        if not self.width:
            if gap <= 0.0 or gap >= self.period:
                return
            count = max(1, round(self.period / max(gap, self.period / self.max_bins)))
            self.width = self.period / count
            self.value = array("f", bytes(4 * count))
            self.first = array("i", [-1]) * count
            self.last = array("i", [-1]) * count
        i, k = self._cell(ts)
        if self.first[i] < 0 or self.last[i] < k - 1:  # empty, or skipped a whole period: restart
            self.first[i] = k
            self.value[i] = x
        else:
            self.value[i] += self.alpha * (x - self.value[i])
        self.last[i] = k


class ForecastLikelihood:
    """Streaming forecast-error likelihood for one series; `update(ts, x)` -> Verdict | None."""

    __slots__ = (
        "avg_mu",
        "avg_var",
        "cool",
        "day",
        "err",
        "level",
        "n",
        "n_avg",
        "p",
        "peak",
        "peak_decay",
        "prev",
        "prev_ts",
        "recent",
        "recent_signed",
        "recent_sum",
        "seen",
        "signed_sum",
        "use",
        "week",
    )

    def __init__(self, params: LikelihoodParams) -> None:
        unknown = set(params.forecasters) - set(FORECASTERS)
        if unknown or not params.forecasters:
            raise ValueError(f"forecasters must be a non-empty subset of {FORECASTERS}, got {params.forecasters}")
        self.p = params
        self.use = tuple(name in params.forecasters for name in FORECASTERS)
        self.n = 0
        self.prev = 0.0
        self.prev_ts = 0.0
        self.level = 0.0
        self.err = [0.0, 0.0, 0.0, 0.0]  # long-run mean |error| per forecaster (FORECASTERS order)
        self.seen = [0, 0, 0, 0]  # errors each forecaster has made so far
        self.recent: list[float] = []  # last `window` raw scores (ring, oldest first)
        self.recent_signed: list[float] = []
        self.recent_sum = 0.0
        self.signed_sum = 0.0
        self.n_avg = 0
        self.avg_mu = 0.0
        self.avg_var = 0.0
        self.peak = 0.0
        self.peak_decay = 0.5 ** (1.0 / params.surprise_halflife)
        self.cool = 0
        self.day = SeasonTable(params.season_s, params.season_bins, params.season_alpha) if self.use[2] else None
        self.week = SeasonTable(WEEK_S, params.week_bins, params.season_alpha) if self.use[3] else None

    # -- the step -------------------------------------------------------------------------------

    def update(self, ts: float, x: float) -> Verdict | None:  # noqa: PLR0915 - one streaming step, kept inline
        p = self.p
        self.n += 1
        if self.n == 1:
            self.prev = self.level = x
            self.prev_ts = ts
            return None
        day, week = self.day, self.week
        forecasts = (
            self.prev if self.use[0] else None,
            self.level if self.use[1] else None,
            day.forecast(ts) if day is not None else None,
            week.forecast(ts) if week is not None else None,
        )
        # scaled errors of the forecasters available now; each against its own long-run error
        err = self.err
        scores: list[float] = []
        signed: list[float] = []
        best = -1
        for i, f in enumerate(forecasts):
            if f is None:
                continue
            e = x - f
            ae = -e if e < 0 else e
            seen = self.seen[i]
            if seen >= _SCALE_WARMUP:  # a forecaster speaks once its error scale means something
                scale = err[i]
                scores.append(ae / scale if scale > 0.0 else (0.0 if ae == 0.0 else 10.0))
                signed.append(e)
                if best < 0 or err[i] < err[best]:
                    best = i
            seen += 1
            self.seen[i] = seen
            # plain mean of the first errors, then an EWMA (a new forecaster starts at its own scale)
            w = 1.0 / seen if seen * p.error_alpha < 1.0 else p.error_alpha
            err[i] += w * (ae - err[i])
        self.prev = x
        self.level += p.level_alpha * (x - self.level)
        gap = ts - self.prev_ts
        if day is not None:
            day.learn(ts, x, gap)
        if week is not None:
            week.learn(ts, x, gap)
        self.prev_ts = ts
        if not scores:
            return None
        if p.combine == "mean":
            raw = sum(scores) / len(scores)
        elif p.combine == "min":
            raw = min(scores)
        else:
            fc = forecasts[best]
            assert fc is not None
            scale = err[best]
            raw = abs(x - fc) / scale if scale > 0.0 else 0.0
        direction = sum(signed)
        # the recent average of raw scores
        recent = self.recent
        recent.append(raw)
        self.recent_signed.append(direction)
        self.recent_sum += raw
        self.signed_sum += direction
        if len(recent) > p.window:
            self.recent_sum -= recent.pop(0)
            self.signed_sum -= self.recent_signed.pop(0)
        if len(recent) < p.window:
            return None
        avg = self.recent_sum / p.window
        stat = avg
        verdict = None
        self.n_avg += 1
        if self.n_avg > p.min_history:
            sd = math.sqrt(self.avg_var) if self.avg_var > 0.0 else 1e-12
            z = (stat - self.avg_mu) / sd
            tail = upper_tail(z)
            beats_peak = avg > p.surprise * self.peak
            peak = self.peak * self.peak_decay
            self.peak = avg if avg > peak else peak
            if self.cool > 0:
                self.cool -= 1
            elif tail < p.tail and beats_peak:
                self.cool = p.cooldown
                fc = next((f for f in forecasts if f is not None), x)
                verdict = Verdict(up=self.signed_sum >= 0.0, tail=tail, z=z, forecast=fc)
        b = 1.0 / self.n_avg if self.n_avg * p.history_alpha < 1.0 else p.history_alpha
        d = stat - self.avg_mu
        self.avg_mu += b * d
        self.avg_var = (1.0 - b) * (self.avg_var + b * d * d)
        return verdict
