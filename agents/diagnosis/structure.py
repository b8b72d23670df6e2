"""Fail-fast evidence: a service whose served latency falls while its served traffic drops.

A code fault that makes a service fail fast (an injected exception or early return) leaves its
CPU and memory flat, and its callers' waiting hides among everything else that moves. What does
show is the service itself: the requests it serves end sooner (its server-side latency falls)
and fewer of them arrive or complete (its workload drops). Neither movement is "worse" in the
usual sense, so the shift evidence of `shifts.py`, which looks in a signal's bad direction,
does not see it.

This module scores that signature per service from raw before/after windows
(`shifts.series_windows`), using generic signal families only (names containing "latency" and
"server"; names containing "workload"), and gives each family of evidence its own places in a
ranking (`interleave`): a separate family drowns in a weighted sum with louder, unrelated movement.

A fall counts only when it is marked, not noise: a served-latency series must fall by a log ratio
of at least MIN_LATENCY_FALL (about 18 %), a workload series by at least MIN_FALL_SPREADS of its own
spreads and by that same ratio. In practice the workload term decides: a steady, small served
workload that drops to zero for two of three consecutive minutes is a capped 50-spread fall (10
points at the default weight), and the served-latency fall (a log ratio, typically 0.5-3) orders
the services whose workload collapsed. Interleaved with the score and caller credit after the
score's leader (`deterministic.rank_services`), this moves Nezha AC@3 from 61 to 67 of 101 (no
case-id half worse; docs/DIAGNOSIS.md). Signals Homeostat knows
(`domain.Signal`) match neither family, so the simulator's scenarios are not reordered. All
functions are pure and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import median

from agents.diagnosis.shifts import EFFECT_CAP, OWN_SCALE_FLOOR, Windows, after_level, robust_scale
from domain import Direction, SeriesEvidence

#: Weight of the workload fall (in own spreads, capped at EFFECT_CAP) against the served-latency
#: fall (a natural log ratio). Chosen on the odd case-id half, where 0.1-0.5 tie; 0.2 is the middle.
FAIL_FAST_TRAFFIC_WEIGHT = 0.2
#: The log ratio of a latency fall adds this share of the level before to both sides, so a
#: level that falls to zero gives a finite, unit-free ratio.
LOG_RATIO_EPSILON = 0.01
#: A series counts only when it fell by at least this many of its own spreads (the threshold at
#: which `shifts.strength` starts counting a movement as evidence).
MIN_FALL_SPREADS = 3.0
#: A served-latency series counts only when it fell by at least this log ratio (about 18 %): a
#: fail-fast is a marked drop, not noise. 0.1-0.3 give the same Nezha ranks (checked, not tuned).
MIN_LATENCY_FALL = 0.2


def is_served_latency(signal: str) -> bool:
    """True for a server-side latency series (the requests a service serves)."""
    name = signal.lower()
    return "latency" in name and "server" in name


def is_workload(signal: str) -> bool:
    """True for a served-workload series (requests or operations per second)."""
    return "workload" in signal.lower()


def latency_fall(before: Sequence[float], after: Sequence[float]) -> float:
    """How far a latency series fell, as ln(level before / lowest level after), 0 if it did not.

    The level before is the median; the level after is the lowest rolling median of three
    points (`shifts.after_level`), so one stray fast sample does not count. Both levels get
    LOG_RATIO_EPSILON x |level before| added. Needs two points before and one after, else 0.
    """
    if len(before) < 2 or not after:
        return 0.0
    level = median(before)
    low = after_level(after, level, Direction.DOWN)
    eps = LOG_RATIO_EPSILON * abs(level)
    if eps <= 0.0:
        return 0.0
    return max(0.0, math.log((abs(level) + eps) / (abs(low) + eps)))


def spread_fall(before: Sequence[float], after: Sequence[float]) -> float:
    """How far a series fell in its own spreads (1 % floor, as `SeriesShift.own_effect`), capped.

    0 when it did not fall, or with fewer than two points before or none after.
    """
    if len(before) < 2 or not after:
        return 0.0
    level = median(before)
    low = after_level(after, level, Direction.DOWN)
    scale = robust_scale(before, OWN_SCALE_FLOOR)
    return max(0.0, min(EFFECT_CAP, (level - low) / scale))


def fell_clearly(before: Sequence[float], after: Sequence[float]) -> bool:
    """Whether a series fell by at least MIN_FALL_SPREADS of its own spreads: a noise-level dip is
    not a signature, as a rise below 3 spreads is not evidence elsewhere (`shifts.strength`)."""
    fall = spread_fall(before, after)
    return fall > 0.0 and fall >= MIN_FALL_SPREADS and latency_fall(before, after) >= MIN_LATENCY_FALL


def fail_fast_scores(
    windows: Windows,
    services: Iterable[str],
    *,
    traffic_weight: float = FAIL_FAST_TRAFFIC_WEIGHT,
) -> dict[str, float]:
    """Per service: the largest served-latency fall plus `traffic_weight` x the largest workload fall.

    Every service in `services` gets a score (0 without the signals or without a fall). Other
    signal families are ignored.
    """
    latency: dict[str, float] = {}
    traffic: dict[str, float] = {}
    for (service, signal), (before, after) in windows.items():
        if is_served_latency(signal) and latency_fall(before, after) >= MIN_LATENCY_FALL:
            latency[service] = max(latency.get(service, 0.0), latency_fall(before, after))
        elif is_workload(signal) and fell_clearly(before, after):
            traffic[service] = max(traffic.get(service, 0.0), spread_fall(before, after))
    return {s: latency.get(s, 0.0) + traffic_weight * traffic.get(s, 0.0) for s in sorted(set(services))}


def interleave(order: Sequence[str], families: Sequence[Mapping[str, float]], *, keep: int) -> list[str]:
    """Round-robin the places after the first `keep` of `order` over the families, then `order`.

    Each family's list holds the services of `order` with a positive score in it, by score, ties in
    `order`'s order; a family without positive scores takes no turn. After `order[:keep]`, the
    places go in turn to the best unplaced service of each family and then to the next unplaced
    service of `order`, and round again, until every service of `order` is placed once.
    """
    base = list(order)
    position = {s: i for i, s in enumerate(base)}
    queues = [
        ranked
        for family in families
        if (ranked := sorted((s for s in base if family.get(s, 0.0) > 0.0), key=lambda s: (-family[s], position[s])))
    ]
    if not queues or len(base) <= keep:
        return base
    queues.append(base[keep:])
    out = base[:keep]
    placed = set(out)
    heads = [0] * len(queues)
    turn = 0
    while len(out) < len(base):
        q = turn % len(queues)
        turn += 1
        queue = queues[q]
        while heads[q] < len(queue) and queue[heads[q]] in placed:
            heads[q] += 1
        if heads[q] < len(queue):
            placed.add(queue[heads[q]])
            out.append(queue[heads[q]])
            heads[q] += 1
    return out


def fail_fast_evidence(windows: Windows, service: str, window_s: float) -> list[SeriesEvidence]:
    """The series behind `service`'s fail-fast score: each served-latency or workload series that
    fell, with its level before (median) and its lowest level after (as the score reads them)."""
    out: list[SeriesEvidence] = []
    for (svc, signal), (before, after) in sorted(windows.items()):
        if svc != service or not (is_served_latency(signal) or is_workload(signal)):
            continue
        if not fell_clearly(before, after):
            continue
        level = median(before)
        low = after_level(after, level, Direction.DOWN)
        out.append(
            SeriesEvidence(
                service=service, signal=signal, before=round(level, 6), after=round(low, 6), window_s=window_s
            )
        )
    return out
