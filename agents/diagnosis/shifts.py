"""Window statistics for diagnosis: how far each series moved from before onset to after it.

Pure functions over `(timestamp, value)` lists. The effect size is robust: the level before
onset is a median, its spread a scaled median absolute deviation floored relative to the level
(short, flat before-windows would otherwise make any wiggle look infinite), and the level after
onset is the most extreme rolling median of three consecutive points, so one stray point does
not count but a fault that lasts a few samples and then recovers still does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from agents.ports import TelemetryReader
from domain import Direction, bad_direction

#: Spread floor as a share of |level before|: below 5 % a change is not telling us much.
RELATIVE_SCALE_FLOOR = 0.05
#: The finer floor of `own_effect`: 1 % of |level before|. A steady series (memory, a pool size)
#: moving a few percent is news for that series, even though 5 % would hide it.
OWN_SCALE_FLOOR = 0.01
#: Points in the rolling median that defines the level after onset.
ROLLING_POINTS = 3
#: Effect sizes beyond this are capped: a near-idle series jumping 10^6 spreads is no more
#: informative than one jumping 50 spreads, and uncapped values would drown everything else.
EFFECT_CAP = 50.0


@dataclass(frozen=True, slots=True)
class SeriesShift:
    """One series' level before and after onset, and the robust effect size between them."""

    service: str
    signal: str
    before: float
    after: float
    scale: float
    effect: float
    """(after - before) / scale, signed, capped at +-EFFECT_CAP."""
    worse: float
    """The effect in the signal's bad direction (positive = worse); |effect| for unknown signals."""
    n_before: int
    n_after: int
    window_s: float
    own_effect: float = 0.0
    """(after - before) / the series' own spread floored at only OWN_SCALE_FLOOR of the level, signed,
    capped at +-EFFECT_CAP: how unusual the move is for this series itself (used to compare peers)."""

    @property
    def relative_change(self) -> float:
        """(after - before) / |before|, or the raw difference when before is 0."""
        if self.before == 0:
            return self.after - self.before
        return (self.after - self.before) / abs(self.before)


def robust_scale(values: Sequence[float], relative_floor: float = RELATIVE_SCALE_FLOOR) -> float:
    """1.4826 * MAD, floored at `relative_floor` * |median| and a tiny absolute floor."""
    level = median(values)
    mad = median(abs(v - level) for v in values)
    floor = max(relative_floor * abs(level), 1e-6)
    return max(1.4826 * mad, floor)


def after_level(values: Sequence[float], before: float, direction: Direction) -> float:
    """The most extreme rolling median (of ROLLING_POINTS) after onset in the given direction."""
    if len(values) <= ROLLING_POINTS:
        return median(values)
    medians = [median(values[i : i + ROLLING_POINTS]) for i in range(len(values) - ROLLING_POINTS + 1)]
    if direction is Direction.UP:
        return max(medians)
    if direction is Direction.DOWN:
        return min(medians)
    return max(medians, key=lambda m: (abs(m - before), m))


def shift_between(
    service: str,
    signal: str,
    before_points: Sequence[float],
    after_points: Sequence[float],
    window_s: float,
) -> SeriesShift | None:
    """The shift of one series, or None when either window is too thin to judge (< 2 points)."""
    if len(before_points) < 2 or len(after_points) < 1:
        return None
    level = median(before_points)
    scale = robust_scale(before_points)
    direction = bad_direction(signal)
    after = after_level(after_points, level, direction)
    effect = max(-EFFECT_CAP, min(EFFECT_CAP, (after - level) / scale))
    own_effect = max(-EFFECT_CAP, min(EFFECT_CAP, (after - level) / robust_scale(before_points, OWN_SCALE_FLOOR)))
    if direction is Direction.UP:
        worse = effect
    elif direction is Direction.DOWN:
        worse = -effect
    else:
        worse = abs(effect)
    return SeriesShift(
        service=service,
        signal=signal,
        before=level,
        after=after,
        scale=scale,
        effect=effect,
        worse=worse,
        n_before=len(before_points),
        n_after=len(after_points),
        window_s=window_s,
        own_effect=own_effect,
    )


Windows = Mapping[tuple[str, str], tuple[Sequence[float], Sequence[float]]]
"""(service, signal) -> (values before onset, values after onset), oldest first."""


def window_end(onset: datetime, now: datetime, after: timedelta) -> datetime:
    """The (inclusive) end of the after-window: `onset + after`, capped at `now`."""
    return min(now, onset + after) + timedelta(microseconds=1)


def series_windows(
    telemetry: TelemetryReader,
    services: Sequence[str],
    onset: datetime,
    now: datetime,
    *,
    before: timedelta,
    after: timedelta,
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """The raw before/after values of every series of `services`: before is [onset - before,
    onset); after is [onset, min(now, onset + after)]. Every evidence family reads these."""
    end = window_end(onset, now, after)
    out: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for service in sorted(set(services)):
        for signal in sorted(telemetry.signals(service)):
            pre = [v for _, v in telemetry.window(service, signal, onset - before, onset)]
            post = [v for _, v in telemetry.window(service, signal, onset, end)]
            out[(service, signal)] = (pre, post)
    return out


def shifts_of(windows: Windows, window_s: float) -> dict[tuple[str, str], SeriesShift]:
    """The shift of every series in `windows` that has enough points to judge."""
    out: dict[tuple[str, str], SeriesShift] = {}
    for (service, signal), (pre, post) in windows.items():
        shift = shift_between(service, signal, pre, post, window_s)
        if shift is not None:
            out[(service, signal)] = shift
    return out


def measure_shifts(
    telemetry: TelemetryReader,
    services: Sequence[str],
    onset: datetime,
    now: datetime,
    *,
    before: timedelta,
    after: timedelta,
) -> dict[tuple[str, str], SeriesShift]:
    """Shifts of every series of `services` around `onset`, keyed by (service, signal)."""
    windows = series_windows(telemetry, services, onset, now, before=before, after=after)
    return shifts_of(windows, (window_end(onset, now, after) - onset).total_seconds())


def strength(worse: float, threshold: float = 3.0) -> float:
    """How much a worsening counts as evidence: 0 below `threshold` spreads, then logarithmic."""
    if worse < threshold:
        return 0.0
    return min(4.0, math.log1p(worse - threshold + 1.0))
