"""Bounded time-window statistics for the SLO burn-rate detector: fixed memory per window."""

from __future__ import annotations

from collections import deque

#: Buckets per window: the window's mean is exact to within one bucket (1/12 of its span).
BUCKETS_PER_WINDOW = 12


class WindowMean:
    """Mean of the values seen in the last `span_s` seconds, kept as 12 time buckets."""

    __slots__ = ("_buckets", "count", "span_s", "total", "width_s")

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.width_s = span_s / BUCKETS_PER_WINDOW
        self._buckets: deque[list[float]] = deque()
        self.total = 0.0
        self.count = 0

    def add(self, ts: float, value: float) -> None:
        idx = float(ts // self.width_s)
        buckets = self._buckets
        if buckets and buckets[-1][0] == idx:
            last = buckets[-1]
            last[1] += value
            last[2] += 1
        else:
            buckets.append([idx, value, 1])
        self.total += value
        self.count += 1
        oldest_kept = idx - BUCKETS_PER_WINDOW + 1
        while buckets[0][0] < oldest_kept:
            _, total, count = buckets.popleft()
            self.total -= total
            self.count -= int(count)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


class BurnRate:
    """Multi-window, multi-burn-rate SLO alerting on a ratio signal (e.g. error_rate).

    Burn rate = observed bad ratio / error budget (1 - objective). A rule fires when both its
    long and its short window burn at or above its factor; it re-arms once the short window
    falls below the factor. Rules (SRE workbook): 1h & 5m at 14.4x -> critical (2% of a
    30-day budget in an hour), 6h & 30m at 6x -> warning (5% in six hours).
    """

    RULES: tuple[tuple[float, float, float, str], ...] = (
        (3600.0, 300.0, 14.4, "critical"),
        (21600.0, 1800.0, 6.0, "warning"),
    )

    __slots__ = ("active", "budget", "first_ts", "windows")

    def __init__(self, objective: float) -> None:
        self.budget = 1.0 - objective
        self.windows = [(WindowMean(long), WindowMean(short)) for long, short, _, _ in self.RULES]
        self.active = [False] * len(self.RULES)
        self.first_ts: float | None = None

    def update(self, ts: float, value: float) -> list[tuple[str, float, float, float, float, float]] | None:
        """Feed one value; returns fired rules as (severity, factor, burn_long, burn_short, long_s, short_s)."""
        if self.first_ts is None:
            self.first_ts = ts
        fired = None
        for i, (long_w, short_w) in enumerate(self.windows):
            long_w.add(ts, value)
            short_w.add(ts, value)
            long_s, short_s, factor, severity = self.RULES[i]
            burn_long = long_w.mean / self.budget
            burn_short = short_w.mean / self.budget
            if self.active[i]:
                if burn_short < factor:
                    self.active[i] = False
                continue
            covered = ts - self.first_ts >= short_s
            if covered and burn_long >= factor and burn_short >= factor:
                self.active[i] = True
                # A page already covers the slower ticket: do not raise both for one burn.
                if severity == "warning" and self.active[0]:
                    continue
                fired = fired or []
                fired.append((severity, factor, burn_long, burn_short, long_s, short_s))
        return fired
