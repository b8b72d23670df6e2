"""Did the action work? Compare each watched series after the action with its pre-onset baseline.

Pure: the verify node of the incident graph reads the windows and calls `evaluate_recovery`;
if the verdict is "not recovered" and the action is reversible, the graph proposes the inverse
(and the constitution decides whether it runs).

A series counts as recovered when the median of its latest window is no worse than the
baseline median plus a margin, in the direction that is bad for that signal
(`domain.bad_direction`). The margin is the larger of the spec's relative tolerance and three
robust standard deviations of the baseline, so a noisy signal is not failed for its own noise.

When the level the series reached during the incident is known (`incident_levels`), a series
that has come back at least `RECOVERED_SHARE` of the way from that level to its baseline also
counts as recovered: a remedy such as failover legitimately leaves a small, accepted cost
(the backup provider is a little slower) and must not be undone for it.

A verdict that is not "recovered" may still be "improved": every failing series has come back at
least `HELPED_SHARE` of the way from its incident level. The action helped, so undoing it would
return the service to a worse state; the graph keeps it and hands the rest to a person.

**Accepted costs** (`expects`, the action's catalog `expected_costs`). A failover onto a slower
backup fixes the errors and leaves latency above where it was even during the outage, if the outage
failed requests fast. Judged alone, that latency says "not recovered", and the graph would fail back
onto the broken provider. So a failing series whose bad move is one the action declares as its cost
is *accepted*, not failed, when the action demonstrably fixed something else: at least one judged
series that is not such a cost recovered or improved. The verdict is then "improved" (kept, and a
person looks at the cost), never "recovered". When every watched series is a declared cost (a
latency-only incident that failover made worse) there is nothing to set against the cost, and it is
judged like any other series.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from domain import Direction, bad_direction
from tools._catalog import RecoverySpec

#: Robust spread multiplier: 1.4826 * MAD estimates a standard deviation for normal data.
_MAD_TO_SD = 1.4826
#: How many robust standard deviations of baseline noise still count as "back to baseline".
NOISE_SIGMAS = 3.0
#: Share of the incident's excursion that must be undone for a series to count as recovered.
RECOVERED_SHARE = 0.8
#: Share of the incident's excursion undone above which a not-recovered action still helped.
HELPED_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class SeriesCheck:
    """The verdict on one series."""

    series: str
    signal: str
    direction: Direction
    baseline: float | None
    current: float | None
    margin: float | None
    recovered: bool | None
    """None when it could not be judged (no baseline)."""
    reason: str
    improved: bool = False
    """Not recovered, but back at least `HELPED_SHARE` of the way from the incident level."""
    accepted_cost: bool = False
    """Not recovered, but its bad move is a declared cost of the action, which fixed something else."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "bad_direction": self.direction.value,
            "baseline": self.baseline,
            "current": self.current,
            "margin": self.margin,
            "recovered": self.recovered,
            "improved": self.improved,
            "accepted_cost": self.accepted_cost,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class RecoveryVerdict:
    """Recovered or not, with one check per series and a one-line summary for the audit log."""

    recovered: bool
    summary: str
    checks: tuple[SeriesCheck, ...]
    improved: bool = False
    """Not recovered, yet every failing series came back at least `HELPED_SHARE` of the way:
    the action helped and must not be undone."""

    @property
    def detail(self) -> dict[str, dict[str, Any]]:
        """Per-series detail as plain JSON data (keyed by series)."""
        return {check.series: check.as_dict() for check in self.checks}


def evaluate_recovery(
    spec: RecoverySpec,
    baseline: Mapping[str, Sequence[float] | float],
    latest: Mapping[str, Sequence[float]],
    incident_levels: Mapping[str, float] | None = None,
    expects: CostTest | None = None,
) -> RecoveryVerdict:
    """Judge recovery of every series in `baseline` against its window in `latest`.

    Keys are series keys ("service/signal") or bare signal names; the signal is the part after
    the last '/'. Every supplied series must recover — the caller passes the series that went
    bad (or `spec.signals` for the service). A series with no baseline cannot be judged and is
    reported as such; one with a baseline but no recent data counts as not recovered. If no
    series can be judged at all, the verdict is "not recovered": silence is not health.
    `expects(signal, bad direction)` names the action's declared costs (see "Accepted costs").
    """
    levels = incident_levels or {}
    checks = tuple(
        _check(key, spec.tolerance, baseline[key], latest.get(key, ()), levels.get(key)) for key in sorted(baseline)
    )
    if expects is not None:
        checks = _accept_costs(checks, expects)
    judged = [c for c in checks if c.recovered is not None]
    if not judged:
        return RecoveryVerdict(False, "not recovered: no watched series had a baseline to judge against", checks)
    failing = [c for c in judged if not c.recovered]
    if failing:
        names = ", ".join(f"{c.series} ({c.reason})" for c in failing)
        if all(c.improved or c.accepted_cost for c in failing):
            return RecoveryVerdict(False, f"improved, not recovered: {names}", checks, improved=True)
        return RecoveryVerdict(False, f"not recovered: {names}", checks)
    return RecoveryVerdict(True, f"recovered: {len(judged)} series back within tolerance of baseline", checks)


CostTest = Callable[[str, Direction], bool]
"""Whether a signal moving in a direction is a declared cost of the action (`ActionSpec.expects`)."""


def _accept_costs(checks: tuple[SeriesCheck, ...], expects: CostTest) -> tuple[SeriesCheck, ...]:
    """Mark failing series whose bad move is a declared cost as accepted, if the action fixed
    something else: a judged series that is not a declared cost recovered or improved."""
    fixed = [
        c
        for c in checks
        if c.recovered is not None and not expects(c.signal, c.direction) and (c.recovered or c.improved)
    ]
    if not fixed:
        return checks
    because = ", ".join(c.series for c in fixed)
    return tuple(
        replace(c, accepted_cost=True, reason=f"{c.reason}; an expected cost of the action, which fixed {because}")
        if c.recovered is False and not c.improved and expects(c.signal, c.direction)
        else c
        for c in checks
    )


def _check(
    key: str, tolerance: float, base: Sequence[float] | float, window: Sequence[float], peak: float | None = None
) -> SeriesCheck:
    signal = key.rsplit("/", 1)[-1]
    direction = bad_direction(signal)
    base_values = [float(base)] if isinstance(base, (int, float)) else [float(v) for v in base]
    base_values = [v for v in base_values if math.isfinite(v)]
    now_values = [float(v) for v in window if math.isfinite(float(v))]
    if not base_values:
        return SeriesCheck(key, signal, direction, None, _median(now_values), None, None, "no baseline data")
    center = statistics.median(base_values)
    spread = _MAD_TO_SD * statistics.median(abs(v - center) for v in base_values)
    margin = max(tolerance * abs(center), NOISE_SIGMAS * spread, 1e-9)
    if not now_values:
        return SeriesCheck(key, signal, direction, center, None, margin, False, "no data since the action")
    current = statistics.median(now_values)
    excess = _excess(direction, current - center)
    ok = excess <= margin
    reason = f"within {margin:.4g} of baseline {center:.4g}"
    peak_excess = _excess(direction, peak - center) if peak is not None and math.isfinite(peak) else 0.0
    undone = 1.0 - excess / peak_excess if peak_excess > margin else 0.0
    improved = False
    if not ok and undone >= RECOVERED_SHARE:
        ok = True
        reason = f"{current:.4g} has come back {undone:.0%} of the way from {peak:.4g} to baseline {center:.4g}"
    elif not ok:
        reason = f"{current:.4g} is {excess:.4g} worse than baseline {center:.4g} (allowed {margin:.4g})"
        if undone >= HELPED_SHARE:
            improved = True
            reason += f"; back {undone:.0%} of the way from {peak:.4g}"
    return SeriesCheck(key, signal, direction, center, current, margin, ok, reason, improved)


def _excess(direction: Direction, delta: float) -> float:
    """How far the current level sits on the bad side of the baseline (0 or less means fine)."""
    if direction is Direction.UP:
        return delta
    if direction is Direction.DOWN:
        return -delta
    return abs(delta)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
