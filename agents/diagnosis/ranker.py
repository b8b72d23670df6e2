"""A learned localisation ranker: a conditional logit over generic, per-case features of each service.

One incident has one culprit among its services. The model scores each service `w . x_s` and
reads `P(s) = softmax_s(w . x_s)` within the case (McFadden's conditional logit), so only
differences between a case's services matter: a feature that is the same for every service of a
case (a system's size, its traffic level) cannot move anything. It is fitted by Newton's method
on the penalised log-likelihood (L2), in numpy.

Features (`FEATURES`) are system-agnostic: signal families come from name fragments ("cpu",
"mem", "latency" with "server" / "client", ...), never from service or system names, and every
value is relative to the other services of the same case (peer ratios, percentiles, shares of the
case maximum). `cross_validate` scores held-out folds with weights fitted on the other cases
only; `homeostat diagnose train` runs it (docs/DIAGNOSIS.md, "Learned ranker").

This module depends only on numpy and `shifts`; the diagnoser hands it its per-service symptoms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .shifts import SeriesShift, Windows, strength

if TYPE_CHECKING:  # pragma: no cover - types only; deterministic.py imports this module
    from .deterministic import ServiceRank, ServiceSymptoms

Matrix = npt.NDArray[np.float64]

#: Signal families, matched in this order on the lower-cased signal name; the first match wins.
FAMILIES: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("cpu", (("cpu",),)),
    ("mem", (("mem",),)),
    ("latency_client", (("latency", "client"),)),
    ("latency", (("latency",),)),
    ("network", (("network",), ("bytes",), ("receive",), ("transmit",))),
    ("syscall", (("syscall",), ("disk",), ("io_",))),
    ("traffic", (("workload",), ("request",), ("ops",), ("qps",), ("throughput",), ("rate",))),
)
FAMILY_NAMES: tuple[str, ...] = tuple(name for name, _ in FAMILIES)

#: The peers' typical movement of a family: this quantile of the services' |own effect| ...
PEER_QUANTILE = 0.75
#: ... floored, so that a service must move at least this much to stand out when nothing else moved.
PEER_REF_FLOOR = 0.5
#: Level ratios (idleness) are clipped to +-this many natural-log units.
LOG_RATIO_CLIP = 5.0

FEATURES: tuple[str, ...] = (
    *(f"{fam}_peer" for fam in FAMILY_NAMES),
    *(f"{fam}_pct" for fam in FAMILY_NAMES),
    *(f"{fam}_rise" for fam in FAMILY_NAMES),
    "self_time",
    "caller_credit",
    "localisation_rel",
    "localisation_log",
    "hand_rank_inv",
    "vanished_share",
    "appeared_share",
    "idle_traffic",
    "idle_cpu",
    "alerted",
)


def family_of(signal: str) -> str | None:
    """The signal family of a signal name (by name fragments), or None for other signals."""
    lower = signal.lower()
    for name, patterns in FAMILIES:
        if any(all(part in lower for part in pattern) for pattern in patterns):
            return name
    return None


@dataclass(frozen=True, slots=True)
class SeriesPresence:
    """How many of a service's series had data only before onset, only after it, and in all."""

    vanished: int = 0
    appeared: int = 0
    total: int = 0


def presence_of(windows: Windows) -> dict[str, SeriesPresence]:
    """Per service: its series that reported before onset (>= 2 points) but not after it
    (vanished), those that reported only after it (appeared), and how many series it has."""
    by_service: dict[str, list[tuple[Sequence[float], Sequence[float]]]] = {}
    for (service, _signal), pair in windows.items():
        by_service.setdefault(service, []).append(pair)
    return {
        service: SeriesPresence(
            vanished=sum(len(before) >= 2 and not after for before, after in pairs),
            appeared=sum(not before and len(after) >= 1 for before, after in pairs),
            total=sum(bool(before or after) for before, after in pairs),
        )
        for service, pairs in sorted(by_service.items())
    }


def _percentiles(values: Mapping[str, float]) -> dict[str, float]:
    """Within-case percentile in [0, 1] of each value (ties share their mean rank)."""
    if not values:
        return {}
    if len(values) == 1:
        return dict.fromkeys(values, 1.0)
    ordered = sorted(values.values())
    n = len(ordered)
    out: dict[str, float] = {}
    for key, v in values.items():
        below = sum(1 for x in ordered if x < v)
        equal = sum(1 for x in ordered if x == v)
        out[key] = (below + (equal - 1) / 2.0) / (n - 1)
    return out


def _clip_log_ratio(value: float, reference: float) -> float:
    ratio = math.log((abs(value) + 1e-9) / (abs(reference) + 1e-9))
    return max(-LOG_RATIO_CLIP, min(LOG_RATIO_CLIP, ratio))


def service_features(
    symptoms: Mapping[str, ServiceSymptoms],
    ranks: Sequence[ServiceRank],
    presence: Mapping[str, SeriesPresence],
    alerted: frozenset[str],
) -> tuple[tuple[str, ...], Matrix]:
    """The feature matrix of one case: one row per service (sorted by name), one column per FEATURES.

    `ranks` is the hand-weighted ranking in its order (its position is a feature, its localisation
    and caller credit too); `presence` counts series that vanished or appeared after onset;
    `alerted` are the services an anomaly fired on.
    """
    services = tuple(sorted(symptoms))
    index = {s: i for i, s in enumerate(services)}
    x = np.zeros((len(services), len(FEATURES)), dtype=np.float64)
    col = {name: j for j, name in enumerate(FEATURES)}

    # Per family, each service's strongest series by |own effect|.
    strongest: dict[str, dict[str, SeriesShift]] = {fam: {} for fam in FAMILY_NAMES}
    for service in services:
        for signal, shift in symptoms[service].shifts.items():
            fam = family_of(signal)
            if fam is None:
                continue
            best = strongest[fam].get(service)
            if best is None or (abs(shift.own_effect), signal) > (abs(best.own_effect), best.signal):
                strongest[fam][service] = shift
    for fam, by_service in strongest.items():
        if not by_service:
            continue
        mags = sorted(abs(sh.own_effect) for sh in by_service.values())
        reference = max(mags[int(PEER_QUANTILE * (len(mags) - 1))], PEER_REF_FLOOR)
        pct = _percentiles({s: abs(sh.own_effect) for s, sh in by_service.items()})
        for service, shift in by_service.items():
            peer = math.log1p(abs(shift.own_effect) / reference)
            row = index[service]
            x[row, col[f"{fam}_peer"]] = peer
            x[row, col[f"{fam}_pct"]] = pct[service]
            x[row, col[f"{fam}_rise"]] = peer if shift.own_effect > 0 else 0.0

    loc_max = max((r.anomaly for r in ranks), default=0.0)
    for place, r in enumerate(ranks, start=1):
        if r.service not in index:
            continue
        row = index[r.service]
        x[row, col["caller_credit"]] = r.credit
        x[row, col["localisation_rel"]] = r.anomaly / loc_max if loc_max > 0 else 0.0
        x[row, col["localisation_log"]] = math.log1p(max(0.0, r.anomaly))
        x[row, col["hand_rank_inv"]] = 1.0 / place

    for service in services:
        row = index[service]
        sym = symptoms[service]
        pairs = sym.self_time_pairs()
        if pairs is not None:
            server, client = pairs
            up_server = max((strength(sym.shifts[g].effect) for g in server), default=0.0)
            up_client = max((strength(sym.shifts[g].effect) for g in client), default=0.0)
            x[row, col["self_time"]] = max(0.0, up_server - up_client)
        seen = presence.get(service, SeriesPresence())
        if seen.total > 0:
            x[row, col["vanished_share"]] = seen.vanished / seen.total
            x[row, col["appeared_share"]] = seen.appeared / seen.total
        x[row, col["alerted"]] = 1.0 if service in alerted else 0.0

    for fam, feature in (("traffic", "idle_traffic"), ("cpu", "idle_cpu")):
        levels = {s: sh.before for s, sh in strongest[fam].items()}
        if len(levels) < 2:
            continue
        fleet = float(np.median(np.abs(np.array(list(levels.values()), dtype=np.float64))))
        for service, level in levels.items():
            x[index[service], col[feature]] = _clip_log_ratio(level, fleet)
    return services, x


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


def scores(x: Matrix, weights: Sequence[float] | Matrix) -> Matrix:
    """w . x_s for every row."""
    w = np.asarray(weights, dtype=np.float64)
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"feature matrix has {x.shape[1]} columns but the weights have {w.shape[0]}")
    return np.asarray(x @ w, dtype=np.float64)


def probabilities(x: Matrix, weights: Sequence[float] | Matrix) -> Matrix:
    """P(s) = softmax over the case's services of w . x_s."""
    z = scores(x, weights)
    z = z - z.max() if z.size else z
    e = np.exp(z)
    return np.asarray(e / e.sum(), dtype=np.float64) if z.size else e


def order(services: Sequence[str], x: Matrix, weights: Sequence[float] | Matrix) -> list[tuple[str, float]]:
    """Services best first with their model probability; ties break on the service name, so the
    order does not depend on the order the services came in."""
    p = probabilities(x, weights)
    z = scores(x, weights)
    ranked = sorted(range(len(services)), key=lambda i: (-round(float(z[i]), 12), services[i]))
    return [(services[i], float(p[i])) for i in ranked]


@dataclass(frozen=True, slots=True)
class TrainingCase:
    """One labelled case: its services, their feature rows, and the index of the true culprit."""

    case: str
    services: tuple[str, ...]
    x: Matrix
    truth: int


def _standardise(cases: Sequence[TrainingCase]) -> tuple[Matrix, Matrix]:
    rows = np.vstack([c.x for c in cases])
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    std[std < 1e-9] = 1.0
    return mean, std


def fit(cases: Sequence[TrainingCase], l2: float = 1.0, *, max_iter: int = 100, tol: float = 1e-9) -> Matrix:
    """Weights (on the raw features) maximising the conditional log-likelihood of the true culprits
    minus l2/2 * |w|^2 on standardised features. Newton's method; the objective is strictly concave
    for l2 > 0, so the result is unique and deterministic.
    """
    if not cases:
        raise ValueError("fit needs at least one labelled case")
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    mean, std = _standardise(cases)
    zs = [((c.x - mean) / std, c.truth) for c in cases]
    d = len(mean)
    w = np.zeros(d, dtype=np.float64)

    def objective(w: Matrix) -> float:
        total = 0.0
        for z, t in zs:
            s = z @ w
            m = float(s.max())
            total += float(s[t]) - (m + math.log(float(np.exp(s - m).sum())))
        return total - 0.5 * l2 * float(w @ w)

    current = objective(w)
    for _ in range(max_iter):
        grad = -l2 * w
        hess = -l2 * np.eye(d)
        for z, t in zs:
            s = z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            mu = p @ z
            grad += z[t] - mu
            centred = z - mu
            hess -= (centred * p[:, None]).T @ centred
        step = np.linalg.solve(hess, grad)
        rate = 1.0
        while True:
            candidate = w - rate * step
            value = objective(candidate)
            if value >= current - 1e-12 or rate < 1e-6:
                break
            rate /= 2.0
        improvement = value - current
        w, current = candidate, value
        if abs(improvement) < tol:
            break
    return np.asarray(w / std, dtype=np.float64)


def log_likelihood(cases: Sequence[TrainingCase], weights: Matrix) -> float:
    """Sum over cases of log P(true culprit)."""
    total = 0.0
    for c in cases:
        p = probabilities(c.x, weights)
        total += math.log(max(float(p[c.truth]), 1e-300))
    return total


#: The L2 strengths `fit_with_inner_cv` chooses from.
L2_GRID: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)


def fit_with_inner_cv(
    cases: Sequence[TrainingCase], grid: Sequence[float] = L2_GRID, folds: int = 5
) -> tuple[Matrix, float]:
    """Choose l2 by held-out log-likelihood over `folds` folds of `cases` alone, then fit on all of
    them. Returns the weights and the chosen l2."""
    ordered = sorted(cases, key=lambda c: c.case)
    if len(ordered) < folds:
        return fit(ordered, grid[len(grid) // 2]), grid[len(grid) // 2]
    best: tuple[float, float] | None = None
    for l2 in grid:
        total = 0.0
        for k in range(folds):
            train = [c for i, c in enumerate(ordered) if i % folds != k]
            held = [c for i, c in enumerate(ordered) if i % folds == k]
            total += log_likelihood(held, fit(train, l2))
        if best is None or total > best[0] + 1e-9:
            best = (total, l2)
    assert best is not None
    return fit(ordered, best[1]), best[1]


# ----------------------------------------------------------------------------------------------
# Cross-validation
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RankingCase:
    """A case as the bench sees it: services that confident hypotheses place first (`head`), the
    hand-weighted order of the rest, and the training view (features, truth)."""

    case: str
    system: str
    head: tuple[str, ...]
    hand_order: tuple[str, ...]
    training: TrainingCase

    @property
    def truth(self) -> str:
        return self.training.services[self.training.truth]

    def learned_order(self, weights: Matrix) -> tuple[str, ...]:
        rest = [s for s, _ in order(self.training.services, self.training.x, weights) if s not in self.head]
        return (*self.head, *rest)

    def hand(self) -> tuple[str, ...]:
        rest = [s for s in self.hand_order if s not in self.head]
        return (*self.head, *rest)


@dataclass(frozen=True, slots=True)
class FoldResult:
    """One held-out fold: how many of its cases the learned and the hand ranking got at 1 and 3."""

    name: str
    n: int
    learned_ac1: int
    learned_ac3: int
    hand_ac1: int
    hand_ac3: int
    l2: float
    held_out: tuple[str, ...] = field(default=())


Fitter = Callable[[Sequence[TrainingCase]], tuple[Matrix, float]]


def _hits(ordering: Sequence[str], truth: str, k: int) -> int:
    return 1 if truth in ordering[:k] else 0


def score_fold(name: str, train: Sequence[RankingCase], held: Sequence[RankingCase], fitter: Fitter) -> FoldResult:
    """Fit on `train` only (the held-out cases' truth never reaches the fitter), score on `held`."""
    weights, l2 = fitter([c.training for c in train])
    learned = [c.learned_order(weights) for c in held]
    hand = [c.hand() for c in held]
    return FoldResult(
        name=name,
        n=len(held),
        learned_ac1=sum(_hits(o, c.truth, 1) for o, c in zip(learned, held, strict=True)),
        learned_ac3=sum(_hits(o, c.truth, 3) for o, c in zip(learned, held, strict=True)),
        hand_ac1=sum(_hits(o, c.truth, 1) for o, c in zip(hand, held, strict=True)),
        hand_ac3=sum(_hits(o, c.truth, 3) for o, c in zip(hand, held, strict=True)),
        l2=l2,
        held_out=tuple(c.case for c in held),
    )


def folds(cases: Sequence[RankingCase], k: int = 5) -> list[tuple[str, list[RankingCase], list[RankingCase]]]:
    """The validation protocol: odd/even halves both ways (by position in case-name order),
    leave-one-system-out both ways (when there are several systems) and k-fold by case."""
    ordered = sorted(cases, key=lambda c: c.case)
    out: list[tuple[str, list[RankingCase], list[RankingCase]]] = []
    odd = [c for i, c in enumerate(ordered) if i % 2 == 0]  # 1st, 3rd, ... case: odd ids when they start at 1
    even = [c for i, c in enumerate(ordered) if i % 2 == 1]
    out.append(("halves: fit odd, score even", odd, even))
    out.append(("halves: fit even, score odd", even, odd))
    systems = sorted({c.system for c in ordered})
    if len(systems) > 1:
        for system in systems:
            out.append(
                (
                    f"leave-one-system-out: score {system}",
                    [c for c in ordered if c.system != system],
                    [c for c in ordered if c.system == system],
                )
            )
    for fold in range(k):
        out.append(
            (
                f"{k}-fold: fold {fold + 1}",
                [c for i, c in enumerate(ordered) if i % k != fold],
                [c for i, c in enumerate(ordered) if i % k == fold],
            )
        )
    return [(name, train, held) for name, train, held in out if train and held]


def cross_validate(cases: Sequence[RankingCase], fitter: Fitter = fit_with_inner_cv, k: int = 5) -> list[FoldResult]:
    """Every fold of `folds`, each fitted on its training cases alone."""
    return [score_fold(name, train, held, fitter) for name, train, held in folds(cases, k)]
