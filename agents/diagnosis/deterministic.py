"""The deterministic diagnoser: the embedded default, no network, same inputs -> same output.

It measures every series of the services in play before and after onset (robust effect sizes,
`shifts.py`), builds one hypothesis per rule of the cause taxonomy that the evidence supports
(a change shortly before onset, symptoms shared by every service of one provider, an anomalous
callee under anomalous callers, a tail-latency climb with traffic, PII alerts, policy
violations, a quality slide), scores each by evidence strength and turns scores into a
confidence with one logistic (documented in docs/DIAGNOSIS.md). When the best confidence is
below `abstain_below` it abstains: cause unknown, escalate to a human.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from agents.ports import IncidentContext
from domain import (
    Cause,
    ChangeEvent,
    ChangeEvidence,
    ChangeKind,
    Diagnosis,
    Evidence,
    SeriesEvidence,
    Signal,
    Topology,
)

from .ranker import Matrix, presence_of, service_features
from .shifts import SeriesShift, Windows, series_windows, shifts_of, strength, window_end
from .structure import fail_fast_evidence, fail_fast_scores, interleave

VERSION = "1.0.0"

#: Logistic that maps an evidence score to a confidence: conf = 1 / (1 + exp(-SLOPE * (score - MIDPOINT))).
#: A score of MIDPOINT (e.g. one change right before onset plus one clear symptom) is a coin flip;
#: each further clear symptom (~1.5-2.5 points) moves it most of the way to certainty.
CONFIDENCE_MIDPOINT = 3.0
CONFIDENCE_SLOPE = 1.3
#: Confidence is never reported as certainty from metrics alone.
CONFIDENCE_CEILING = 0.98

_LATENCY = (Signal.LATENCY_P50_MS, Signal.LATENCY_P95_MS, Signal.LATENCY_P99_MS)
#: Weight of self time (served latency rising beyond outgoing-call latency) in localisation.
SELF_TIME_WEIGHT = 0.5

# Peer comparison of signals Homeostat does not know (docs/DIAGNOSIS.md, "Localisation ranking").
#: A signal is compared across services only when at least this many services report it.
PEER_MIN_SERVICES = 3
#: The peers' typical movement: this quantile of |own effect| over the services reporting the signal.
PEER_QUANTILE = 0.75
#: ... floored, so that when nothing else moved, a service must still move this much to count.
PEER_REF_FLOOR = 0.5
#: A service's movement counts from this many times its peers' typical movement onwards.
PEER_MARGIN = 0.5
#: Peer-compared signals count as the strongest one plus this share of the others: a fault shows
#: clearly somewhere, while many mild movements on one service are mostly noise.
PEER_SHARE = 0.2
#: Weight of traffic-shaped signals (request counts, bytes, syscalls): they follow load, which a
#: fault anywhere shifts everywhere; saturation signals (CPU, memory) stay with the pod at fault.
TRAFFIC_WEIGHT = 0.3
_LOCAL_MARKERS = ("cpu", "mem")
_KNOWN_SIGNALS = frozenset(sig.value for sig in Signal)


def _is_latency(signal: str) -> bool:
    return "latency" in signal.lower()


def peer_references(shifts: Mapping[tuple[str, str], SeriesShift]) -> dict[str, float]:
    """For each signal Homeostat does not know (not a `Signal`; latency aside) that at least PEER_MIN_SERVICES
    services report: the typical |own effect| among them (PEER_QUANTILE, floored at PEER_REF_FLOOR).

    Within one incident, what a service's movement means depends on how much the same signal moved
    everywhere else: a CPU or memory jump on one pod while every other pod's stayed flat points at
    that pod; a workload dip that every service shows is the fleet following the fault.
    """
    by_signal: dict[str, list[float]] = {}
    for (_service, signal), shift in shifts.items():
        if signal in _KNOWN_SIGNALS or _is_latency(signal):
            continue
        by_signal.setdefault(signal, []).append(abs(shift.own_effect))
    refs: dict[str, float] = {}
    for signal, mags in sorted(by_signal.items()):
        if len(mags) < PEER_MIN_SERVICES:
            continue
        mags.sort()
        refs[signal] = max(mags[int(PEER_QUANTILE * (len(mags) - 1))], PEER_REF_FLOOR)
    return refs


def peer_strength(shift: SeriesShift, reference: float) -> float:
    """How far a series' own movement stands out from its peers' typical movement (0 = not at all)."""
    weight = 1.0 if any(m in shift.signal.lower() for m in _LOCAL_MARKERS) else TRAFFIC_WEIGHT
    return weight * math.log1p(max(0.0, abs(shift.own_effect) / reference - PEER_MARGIN))


def confidence_of(score: float) -> float:
    """The documented logistic calibration from evidence score to confidence in [0, CEILING]."""
    value = 1.0 / (1.0 + math.exp(-CONFIDENCE_SLOPE * (score - CONFIDENCE_MIDPOINT)))
    return round(min(CONFIDENCE_CEILING, value), 4)


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One candidate root cause on one service, with the score and evidence it rests on."""

    cause: Cause
    service: str
    score: float
    rationale: str
    evidence: tuple[Evidence, ...] = ()
    provider: str | None = None

    @property
    def confidence(self) -> float:
        return confidence_of(self.score)

    def sort_key(self) -> tuple[float, str, str]:
        return (-round(self.score, 9), self.cause.value, self.service)


@dataclass(frozen=True, slots=True)
class ServiceSymptoms:
    """The per-signal evidence strengths of one service (0 = no worsening worth counting)."""

    service: str
    shifts: Mapping[str, SeriesShift]
    anomalous_signals: frozenset[str] = frozenset()
    peer_refs: Mapping[str, float] = field(default_factory=dict)
    """Per-signal peer references (`peer_references`) for the signals compared across services."""

    def s(self, signal: str) -> float:
        shift = self.shifts.get(signal)
        boost = 1.0 if signal in self.anomalous_signals else 0.0
        if shift is None:
            return boost
        return max(strength(shift.worse), boost if shift.worse > 0 else 0.0)

    def rising(self, signal: str) -> float:
        shift = self.shifts.get(signal)
        return strength(shift.effect) if shift is not None else 0.0

    def falling(self, signal: str) -> float:
        shift = self.shifts.get(signal)
        return strength(-shift.effect) if shift is not None else 0.0

    def latency(self) -> float:
        return max(self.s(sig) for sig in _LATENCY)

    def overall(self) -> float:
        """How anomalous the service looks: the sum of its symptoms' strengths (a service whose
        CPU, latency and traffic all move outranks one with a single jumpy series)."""
        return sum(self.s(sig) for sig in set(self.shifts) | self.anomalous_signals)

    def self_time_pairs(self) -> tuple[list[str], list[str]] | None:
        """The service's server-side and client-side latency series (names containing "latency" and
        "server" / "client"), or None when it has neither. A missing side counts as no rise."""
        server = sorted(g for g in self.shifts if "latency" in g.lower() and "server" in g.lower())
        client = sorted(g for g in self.shifts if "latency" in g.lower() and "client" in g.lower())
        return (server, client) if server or client else None

    def signal_localisation(self, signal: str) -> float:
        """One signal's share of `localisation`: its standing among peers when it has a peer
        reference, otherwise its evidence strength."""
        shift = self.shifts.get(signal)
        reference = self.peer_refs.get(signal)
        if shift is None or reference is None:
            return self.s(signal)
        boost = 1.0 if signal in self.anomalous_signals and shift.own_effect != 0 else 0.0
        return max(peer_strength(shift, reference), boost)

    def localisation(self) -> float:
        """How strongly the service looks like where a fault sits, for the localisation ranking.

        Signals Homeostat does not know count by how far they stand out from the same signal on the
        other services (`peer_references`): the strongest in full, the others at PEER_SHARE. Known
        signals count by their evidence strength.
        With served (server) and outgoing-call (client) latency series, latency counts only as self
        time: how much more the served latency rose than the latency of the service's own calls
        (SELF_TIME_WEIGHT x the difference of strengths). Latency a service inherits from slow
        callees shows on both sides and cancels; a service slow by itself shows on the server
        side only.
        """
        signals = set(self.shifts) | self.anomalous_signals
        compared = sorted((self.signal_localisation(g) for g in signals & set(self.peer_refs)), reverse=True)
        peers = compared[0] + PEER_SHARE * sum(compared[1:]) if compared else 0.0
        others = signals - set(self.peer_refs)
        pairs = self.self_time_pairs()
        if pairs is None:
            return peers + sum(self.s(g) for g in others)
        server, client = pairs

        def up(signal: str) -> float:
            return strength(self.shifts[signal].effect)

        self_time = max(0.0, max((up(g) for g in server), default=0.0) - max((up(g) for g in client), default=0.0))
        rest = sum(self.s(g) for g in others if not _is_latency(g))
        return SELF_TIME_WEIGHT * self_time + peers + rest

    def evidence(
        self, signals: Iterable[str], anomaly_ids: Mapping[tuple[str, str], str], *, localised: bool = False
    ) -> list[Evidence]:
        """Series evidence for those of `signals` that count: by evidence strength, or with
        `localised` by their share of `localisation` (peer-compared signals included)."""
        out: list[Evidence] = []
        for signal in sorted(set(signals)):
            shift = self.shifts.get(signal)
            weight = self.signal_localisation(signal) if localised else self.s(signal)
            if shift is None or weight <= 0:
                continue
            out.append(
                SeriesEvidence(
                    service=self.service,
                    signal=signal,
                    before=round(shift.before, 6),
                    after=round(shift.after, 6),
                    window_s=shift.window_s,
                    anomaly_id=anomaly_ids.get((self.service, signal)),
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class ServiceRank:
    """A service's place in the localisation ranking: how anomalous, how far upstream."""

    service: str
    score: float
    anomaly: float
    upstream: bool
    evidence: tuple[Evidence, ...] = ()
    credit: float = 0.0
    """Its `caller_credit`: how much every caller of it waited longer on its outgoing calls."""


@dataclass(frozen=True, slots=True)
class RankTable:
    """One incident as the learned ranker sees it (`DeterministicDiagnoser.rank_table`)."""

    head: tuple[str, ...]
    """Services named by confident hypotheses, in their order: they stay ahead of any ranking."""
    hand_order: tuple[str, ...]
    """The hand-weighted localisation order (`rank_services`)."""
    services: tuple[str, ...]
    x: Matrix
    """One feature row per service of `services` (`ranker.FEATURES`)."""


@dataclass(slots=True)
class DeterministicDiagnoser:
    """Rule-based, topology-aware diagnoser with calibrated confidence; abstains on weak evidence."""

    before: timedelta = timedelta(minutes=30)
    """How far before onset the baseline window reaches."""
    after: timedelta = timedelta(minutes=30)
    """How far after onset the symptom window reaches (capped at the incident's `now`)."""
    change_lookback: timedelta = timedelta(hours=2)
    """Changes this long before onset may still explain it (their weight halves every 30 min)."""
    abstain_below: float = 0.5
    """Below this confidence the diagnosis is cause=unknown."""
    name: str = field(default="deterministic", init=False)
    version: str = field(default=VERSION, init=False)

    # ------------------------------------------------------------------------------------------
    def diagnose(self, incident: IncidentContext) -> Diagnosis:
        hypotheses, ranks = self.analyse(incident)
        top = hypotheses[0] if hypotheses else None
        alternatives = _alternatives(hypotheses, top)
        if top is None or top.confidence < self.abstain_below:
            service = ranks[0].service if ranks else _first_anomaly_service(incident)
            evidence = ranks[0].evidence if ranks else ()
            best = f"; best guess {top.cause.value} on {top.service} ({top.confidence:.2f})" if top else ""
            return Diagnosis(
                cause=Cause.UNKNOWN,
                service=service,
                confidence=min(top.confidence, self.abstain_below) if top else 0.0,
                evidence=evidence,
                rationale=f"evidence too weak for any cause{best}; escalate to a human",
                diagnoser=self.name,
                diagnoser_version=self.version,
                alternatives=_alternatives(hypotheses, None),
            )
        return Diagnosis(
            cause=top.cause,
            service=top.service,
            confidence=top.confidence,
            evidence=top.evidence,
            rationale=top.rationale,
            diagnoser=self.name,
            diagnoser_version=self.version,
            provider=top.provider,
            alternatives=alternatives,
        )

    def ranked(self, incident: IncidentContext) -> list[RankedCandidate]:
        """One candidate per anomalous service, best first (the offline `diagnose --json` output)."""
        hypotheses, ranks = self.analyse(incident)
        return ranked_candidates(hypotheses, ranks, abstain_below=self.abstain_below)

    def analyse(self, incident: IncidentContext) -> tuple[list[Hypothesis], list[ServiceRank]]:
        """All supported hypotheses (best first) and the service localisation ranking."""
        hypotheses, ranks, _symptoms, _windows = self._analyse(incident)
        return hypotheses, ranks

    def rank_table(self, incident: IncidentContext) -> RankTable:
        """What the learned ranker sees of one incident: the services confident hypotheses place
        first, the hand-weighted order, and each service's feature row (`ranker.FEATURES`)."""
        hypotheses, ranks, symptoms, windows = self._analyse(incident)
        head: list[str] = []
        for h in hypotheses:
            if h.confidence >= self.abstain_below and h.service not in head:
                head.append(h.service)
        presence = presence_of(windows)
        alerted = frozenset(a.service for a in incident.anomalies)
        services, x = service_features(symptoms, ranks, presence, alerted)
        return RankTable(tuple(head), tuple(r.service for r in ranks), services, x)

    def _analyse(
        self, incident: IncidentContext
    ) -> tuple[list[Hypothesis], list[ServiceRank], dict[str, ServiceSymptoms], Windows]:
        topology = incident.telemetry.topology()
        services = sorted(set(topology.services) | {a.service for a in incident.anomalies})
        changes = incident.telemetry.changes(
            incident.onset - self.change_lookback, incident.onset + timedelta(minutes=5)
        )
        services = sorted(set(services) | {c.service for c in changes})
        # One read of every series' windows serves the shifts, fail-fast and presence evidence.
        windows = series_windows(
            incident.telemetry, services, incident.onset, incident.now, before=self.before, after=self.after
        )
        shifts = shifts_of(
            windows, (window_end(incident.onset, incident.now, self.after) - incident.onset).total_seconds()
        )
        anomaly_ids = {(a.service, a.signal): a.id for a in sorted(incident.anomalies, key=lambda a: (a.ts, a.id))}
        refs = peer_references(shifts)
        symptoms: dict[str, ServiceSymptoms] = {}
        for service in services:
            own = {sig: sh for (svc, sig), sh in shifts.items() if svc == service}
            flagged = frozenset(a.signal for a in incident.anomalies if a.service == service)
            symptoms[service] = ServiceSymptoms(service, own, flagged, refs)

        ranks = rank_services(symptoms, topology, incident, anomaly_ids, windows, after=self.after)
        hypotheses: list[Hypothesis] = []
        change_hypotheses = self._change_hypotheses(incident, changes, symptoms, anomaly_ids)
        hypotheses += change_hypotheses
        hypotheses += _changed_callee_hypotheses(change_hypotheses, topology, symptoms, incident)
        hypotheses += _provider_hypotheses(topology, symptoms, anomaly_ids, changes)
        hypotheses += _upstream_hypotheses(ranks, topology, symptoms, anomaly_ids, incident)
        hypotheses += _symptom_hypotheses(incident, symptoms, anomaly_ids, changes)
        hypotheses.sort(key=Hypothesis.sort_key)
        return hypotheses, ranks, symptoms, windows

    # ------------------------------------------------------------------------------------------
    def _change_hypotheses(
        self,
        incident: IncidentContext,
        changes: Sequence[ChangeEvent],
        symptoms: Mapping[str, ServiceSymptoms],
        anomaly_ids: Mapping[tuple[str, str], str],
    ) -> list[Hypothesis]:
        out: list[Hypothesis] = []
        topology = incident.telemetry.topology()
        changed_services = {c.service for c in changes}
        # A change explains an incident only on the incident's own services or what they depend on:
        # a deploy (or an earlier failover) on an unrelated service is another incident's business.
        in_play = {a.service for a in incident.anomalies}
        for start in sorted(in_play):
            in_play = in_play | set(_dependency_paths(topology, start))
        for change in changes:
            sym = symptoms.get(change.service)
            if sym is None or change.service not in in_play:
                continue
            # If services that share this one's provider but changed nothing show the same errors
            # and latency, the change cannot explain those: something shared (the provider) can.
            # Only the errors/latency part of the evidence is discounted.
            info = topology.services.get(change.service)
            peers = [
                p
                for p in (topology.on_provider(info.provider) if info and info.provider else [])
                if p != change.service and p not in changed_services and p in symptoms
            ]
            shared = (
                sum(max(symptoms[p].s(Signal.ERROR_RATE), symptoms[p].latency()) for p in peers) / len(peers)
                if peers
                else 0.0
            )
            lead_s = (incident.onset - change.ts).total_seconds()
            # A change right before onset weighs 2; the weight halves every 30 minutes (gradual
            # rollouts surface late); a change after onset cannot have caused it (0.3, clock skew).
            proximity = 2.0 * 0.5 ** (lead_s / 1800.0) if lead_s >= 0 else 0.3
            change_ev = ChangeEvidence(
                change_id=change.id,
                service=change.service,
                kind=change.kind,
                from_value=change.from_value,
                to_value=change.to_value,
                seconds_before_onset=lead_s,
            )
            q, h, p = sym.s(Signal.QUALITY_SCORE), sym.s(Signal.HALLUCINATION_RATE), sym.s(Signal.POLICY_VIOLATION_RATE)
            t = sym.s(Signal.TOKENS_PER_REQUEST)
            t_drop = sym.falling(Signal.TOKENS_PER_REQUEST)
            e, lat, cost = sym.s(Signal.ERROR_RATE), sym.latency(), sym.s(Signal.COST_PER_1K_REQUESTS)
            what = f"{change.kind.value} change {change.from_value!r} -> {change.to_value!r} {lead_s:.0f}s before onset"
            candidates: list[tuple[Cause, float, list[str], str]] = []
            if change.kind is ChangeKind.PROMPT_VERSION:
                # A prompt that does more than loosen guardrails also moves what it produces. When
                # tokens/request (either way), cost or quality lean the deploy's way, even below the
                # symptom threshold (a gradual rollout surfaces violations first), the violations
                # are the new prompt's doing: they count for the bad deploy, not a safety regression.
                co = _prompt_lean(sym)
                candidates.append(
                    (
                        Cause.BAD_PROMPT_DEPLOY,
                        q + t + (0.3 + 0.7 * co) * p + 0.3 * h,
                        [Signal.QUALITY_SCORE, Signal.TOKENS_PER_REQUEST, Signal.POLICY_VIOLATION_RATE],
                        "quality/tokens per request moved",
                    )
                )
                candidates.append(
                    (
                        Cause.SAFETY_REGRESSION,
                        (1.0 - co) * p + 0.5 * h - 0.5 * (q + t),
                        [Signal.POLICY_VIOLATION_RATE, Signal.HALLUCINATION_RATE],
                        "policy violations rose while quality and tokens held",
                    )
                )
            elif change.kind in (ChangeKind.MODEL_VERSION, ChangeKind.CONFIG):
                weight = 1.0 if change.kind is ChangeKind.MODEL_VERSION else 0.7
                candidates.append(
                    (
                        Cause.TOKENIZER_MISMATCH,
                        weight * (1.5 * t_drop + (e + 0.5 * q if t_drop else 0.0)),
                        [Signal.ERROR_RATE, Signal.TOKENS_PER_REQUEST, Signal.QUALITY_SCORE],
                        "errors/parse failures up and tokens per request down (truncation)",
                    )
                )
                candidates.append(
                    (
                        Cause.BAD_MODEL_DEPLOY,
                        weight * (q + h + 0.5 * lat + 0.3 * e - 0.7 * t_drop),
                        [Signal.QUALITY_SCORE, Signal.HALLUCINATION_RATE, *_LATENCY],
                        "quality/hallucination or latency worsened",
                    )
                )
            elif change.kind is ChangeKind.ROUTING:
                candidates.append(
                    (
                        Cause.COST_MISROUTING,
                        cost - 0.5 * q,
                        [Signal.COST_PER_1K_REQUESTS, Signal.QUALITY_SCORE],
                        "cost per request jumped with quality flat",
                    )
                )
            elif change.kind is ChangeKind.PROVIDER:
                candidates.append(
                    (
                        Cause.PROVIDER_DEGRADATION,
                        e + lat,
                        [Signal.ERROR_RATE, *_LATENCY],
                        f"errors/latency rose after moving to provider {change.to_value!r}",
                    )
                )
            for cause, pattern, signals, why in candidates:
                if pattern <= 0:
                    continue
                evidence = [change_ev, *sym.evidence(signals, anomaly_ids)]
                out.append(
                    Hypothesis(
                        cause=cause,
                        service=change.service,
                        score=proximity + pattern - min(shared, max(e, lat)),
                        rationale=f"{what} on {change.service}; {why}",
                        evidence=tuple(evidence),
                        provider=change.to_value if cause is Cause.PROVIDER_DEGRADATION else None,
                    )
                )
        return out


#: Below-threshold co-movement: `lean` rises from 0 at LEAN_FROM spreads to 1 at LEAN_FULL.
LEAN_FROM = 1.5
LEAN_FULL = 3.0


def lean(worse: float) -> float:
    """How far a sub-threshold worsening leans towards a symptom: 0 at LEAN_FROM spreads, 1 at LEAN_FULL."""
    return max(0.0, min(1.0, (worse - LEAN_FROM) / (LEAN_FULL - LEAN_FROM)))


def _prompt_lean(sym: ServiceSymptoms) -> float:
    """How much a service's output moved the way a bad prompt moves it: tokens/request either way,
    cost per request up, quality down (0 = held, 1 = a clear symptom)."""

    def worse(signal: str, sign: float | None) -> float:
        shift = sym.shifts.get(signal)
        if shift is None:
            return 0.0
        return abs(shift.effect) if sign is None else sign * shift.effect

    return max(
        lean(worse(Signal.TOKENS_PER_REQUEST, None)),
        lean(worse(Signal.COST_PER_1K_REQUESTS, 1.0)),
        lean(worse(Signal.QUALITY_SCORE, -1.0)),
    )


# ----------------------------------------------------------------------------------------------
# Rules that need no change event
# ----------------------------------------------------------------------------------------------


def _provider_hypotheses(
    topology: Topology,
    symptoms: Mapping[str, ServiceSymptoms],
    anomaly_ids: Mapping[tuple[str, str], str],
    changes: Sequence[ChangeEvent],
) -> list[Hypothesis]:
    out: list[Hypothesis] = []
    providers = sorted({info.provider for info in topology.services.values() if info.provider})
    for provider in providers:
        members = [s for s in topology.on_provider(provider) if s in symptoms]
        if not members:
            continue
        # Errors or latency on each member; one service alone on a provider cannot tell provider
        # from service, so it must show errors and latency together.
        pick = max if len(members) >= 2 else min
        hit = {s: pick(_provider_errors(symptoms[s]), _provider_latency(symptoms[s])) for s in members}
        if min(hit.values()) <= 0:
            continue  # not every service of the provider suffers: not the provider
        # Callers of the provider's services are expected to follow them, and a service that changed
        # itself (a deploy, a failover onto a slower backup) has its own explanation; only the rest
        # count against the provider explanation.
        followers = {c for m in members for c in _transitive_callers(topology, m)}
        explained = {c.service for c in changes} - set(members)
        others = [
            max(_provider_errors(sym), sym.latency())
            for s, sym in symptoms.items()
            if s not in members and s not in followers and s not in explained
        ]
        spread_elsewhere = sum(others) / len(others) if others else 0.0
        changed = {c.service for c in changes if c.service in members}
        score = 0.5 + sum(hit.values()) / len(hit) + 0.5 * min(hit.values()) - spread_elsewhere
        if len(members) >= 2:
            score += 1.0 + 0.25 * min(len(members) - 2, 4)
        else:
            score -= 0.5
        if changed:
            score -= 0.5 * len(changed) / len(members)
        worst = sorted(members, key=lambda s: (-symptoms[s].overall(), s))[0]
        evidence: list[Evidence] = []
        for s in members:
            evidence += symptoms[s].evidence([Signal.ERROR_RATE, *_LATENCY], anomaly_ids)
        out.append(
            Hypothesis(
                cause=Cause.PROVIDER_DEGRADATION,
                service=worst,
                score=score,
                rationale=(
                    f"errors/latency rose on every service of provider {provider!r} ({', '.join(members)}); "
                    f"most affected: {worst}"
                ),
                evidence=tuple(evidence),
                provider=provider,
            )
        )
    return out


#: An error rate that rose by less than this (absolute, e.g. 0 -> 0.3 %) is not a provider
#: failing: a near-zero baseline makes any stray error look like many spreads.
MIN_PROVIDER_ERROR_RISE = 0.005


def _provider_errors(sym: ServiceSymptoms) -> float:
    """Error evidence that can speak for the provider: a material rise, not a stray error."""
    shift = sym.shifts.get(Signal.ERROR_RATE)
    if shift is not None and shift.after - shift.before < MIN_PROVIDER_ERROR_RISE:
        return 0.0
    return sym.s(Signal.ERROR_RATE)


def _provider_latency(sym: ServiceSymptoms) -> float:
    """Latency that can speak for the provider: none when the service's own request rate climbed,
    because its own load explains its latency (capacity), whatever its provider."""
    if sym.rising(Signal.REQUEST_RATE) > 0:
        return 0.0
    return sym.latency()


def _changed_callee_hypotheses(
    change_hypotheses: Sequence[Hypothesis],
    topology: Topology,
    symptoms: Mapping[str, ServiceSymptoms],
    incident: IncidentContext,
) -> list[Hypothesis]:
    """A change that hurt a service whose anomalous callers are part of the incident is an
    upstream dependency of theirs: the remedy acts on the callee (the change stays evidence)."""
    incident_services = {a.service for a in incident.anomalies}
    out: list[Hypothesis] = []
    for h in change_hypotheses:
        callers = [
            c
            for c in _transitive_callers(topology, h.service)
            if c in incident_services and symptoms.get(c, _EMPTY).overall() > 0
        ]
        if not callers or h.cause in (Cause.PROVIDER_DEGRADATION, Cause.COST_MISROUTING):
            continue
        out.append(
            Hypothesis(
                cause=Cause.UPSTREAM_DEPENDENCY,
                service=h.service,
                score=h.score + 0.5,
                rationale=f"{h.rationale}; its callers {', '.join(callers)} degraded with it: act on {h.service}",
                evidence=h.evidence,
            )
        )
    return out


def _upstream_hypotheses(
    ranks: Sequence[ServiceRank],
    topology: Topology,
    symptoms: Mapping[str, ServiceSymptoms],
    anomaly_ids: Mapping[tuple[str, str], str],
    incident: IncidentContext,
) -> list[Hypothesis]:
    """From each anomalous incident service, walk its dependencies (transitively) to the most
    anomalous callee. If that callee is at least WALK_RATIO as anomalous as the service the walk
    started from, symptoms most likely flowed up from it: it is the upstream dependency."""
    by_service = {r.service: r for r in ranks}
    out: list[Hypothesis] = []
    seen: set[str] = set()
    for start in sorted({a.service for a in incident.anomalies}):
        paths = _dependency_paths(topology, start)
        here = symptoms.get(start, _EMPTY).localisation()
        scored = sorted(((symptoms[c].localisation(), c) for c in paths if c in symptoms), key=lambda x: (-x[0], x[1]))
        if not scored or here <= 0:
            continue
        anomaly, target = scored[0]
        if anomaly <= 0 or anomaly < WALK_RATIO * here or target in seen:
            continue
        seen.add(target)
        rank = by_service.get(target)
        path = paths[target]
        out.append(
            Hypothesis(
                cause=Cause.UPSTREAM_DEPENDENCY,
                service=target,
                score=1.5 + min(anomaly, 3.0) + 0.25 * (len(path) - 1),
                rationale=(
                    f"walked the dependency graph {' -> '.join(path)}: {target} is the most anomalous service "
                    f"{start} depends on; its callers degraded with it"
                ),
                evidence=rank.evidence if rank else (),
            )
        )
    return out


def _dependency_paths(topology: Topology, start: str) -> dict[str, list[str]]:
    """Every service `start` depends on (transitively), with the shortest call path to it."""
    paths: dict[str, list[str]] = {}
    frontier = [[start]]
    while frontier:
        nxt: list[list[str]] = []
        for path in frontier:
            for callee in sorted(_callees(topology, path[-1])):
                if callee != start and callee not in paths:
                    paths[callee] = [*path, callee]
                    nxt.append(paths[callee])
        frontier = nxt
    return paths


def _symptom_hypotheses(
    incident: IncidentContext,
    symptoms: Mapping[str, ServiceSymptoms],
    anomaly_ids: Mapping[tuple[str, str], str],
    changes: Sequence[ChangeEvent],
) -> list[Hypothesis]:
    out: list[Hypothesis] = []
    changed = {c.service for c in changes if c.ts <= incident.onset}
    # Symptoms only speak for this incident on its own services and what they depend on: a
    # stray signal on an unrelated service belongs to another incident.
    topology = incident.telemetry.topology()
    own = {a.service for a in incident.anomalies}
    in_play = set(own)
    for start in sorted(own):
        in_play |= set(_dependency_paths(topology, start))
    trend_signals = {(a.service, a.signal) for a in incident.anomalies if a.kind == "trend"}
    for service, sym in sorted(symptoms.items()):
        if service not in in_play:
            continue
        lat, queue = sym.latency(), sym.s(Signal.QUEUE_DEPTH)
        traffic = sym.rising(Signal.REQUEST_RATE)
        if traffic > 0 and (lat > 0 or queue > 0):
            out.append(
                Hypothesis(
                    cause=Cause.CAPACITY,
                    service=service,
                    score=traffic + lat + queue,
                    rationale=f"latency tail and queue depth on {service} climbed with request rate",
                    evidence=tuple(
                        sym.evidence([*_LATENCY, Signal.QUEUE_DEPTH, Signal.REQUEST_RATE], anomaly_ids)
                        + _rising_evidence(sym, Signal.REQUEST_RATE)
                    ),
                )
            )
        # PII alerts and policy violations stay where they happen (a callee's do not show in its
        # callers' signals): they explain only the incident's own services.
        pii = sym.s(Signal.PII_ALERTS) if service in own else 0.0
        if pii > 0:
            out.append(
                Hypothesis(
                    cause=Cause.PII_LEAK,
                    service=service,
                    score=2.5 + pii,
                    rationale=f"PII alerts on {service}: escalate and purge context, never silent",
                    evidence=tuple(sym.evidence([Signal.PII_ALERTS], anomaly_ids)),
                )
            )
        policy = sym.s(Signal.POLICY_VIOLATION_RATE)
        if policy > 0 and service not in changed and service in own:
            out.append(
                Hypothesis(
                    cause=Cause.SAFETY_REGRESSION,
                    service=service,
                    score=1.0
                    + policy
                    + 0.5 * sym.s(Signal.HALLUCINATION_RATE)
                    - 0.7 * sym.s(Signal.QUALITY_SCORE)
                    - 0.5 * max(sym.s(Signal.ERROR_RATE), sym.latency()),
                    rationale=f"policy violations rose on {service} with no change event",
                    evidence=tuple(
                        sym.evidence([Signal.POLICY_VIOLATION_RATE, Signal.HALLUCINATION_RATE], anomaly_ids)
                    ),
                )
            )
        quality = sym.s(Signal.QUALITY_SCORE)
        if quality > 0 and service not in changed:
            trend = 1.0 if (service, Signal.QUALITY_SCORE.value) in trend_signals else 0.0
            score = 1.5 + 1.5 * quality + trend + 0.5 * sym.s(Signal.HALLUCINATION_RATE)
            score += 0.5 * sym.s(Signal.CACHE_HIT_RATE)  # the input mix shifted
            score -= sym.s(Signal.ERROR_RATE) + 0.5 * sym.latency() + 0.5 * policy
            out.append(
                Hypothesis(
                    cause=Cause.DATA_DRIFT,
                    service=service,
                    score=score,
                    rationale=f"quality slid on {service} with no change event, errors and latency flat",
                    evidence=tuple(sym.evidence([Signal.QUALITY_SCORE, Signal.HALLUCINATION_RATE], anomaly_ids)),
                )
            )
    return out


def _rising_evidence(sym: ServiceSymptoms, signal: str) -> list[Evidence]:
    shift = sym.shifts.get(signal)
    if shift is None or strength(shift.effect) <= 0 or sym.s(signal) > 0:
        return []
    return [
        SeriesEvidence(
            service=sym.service,
            signal=signal,
            before=round(shift.before, 6),
            after=round(shift.after, 6),
            window_s=shift.window_s,
        )
    ]


# ----------------------------------------------------------------------------------------------
# Localisation: which service, by anomaly strength and dependency position
# ----------------------------------------------------------------------------------------------

_EMPTY = ServiceSymptoms("", {})
#: The walk down the dependency graph steps to a callee at least this anomalous relative to
#: the service it stands on: symptoms flow from callee to caller, rarely growing on the way.
WALK_RATIO = 1.0


def _callees(topology: Topology, service: str) -> tuple[str, ...]:
    info = topology.services.get(service)
    return info.depends_on if info else ()


def _transitive_callers(topology: Topology, service: str) -> list[str]:
    seen: set[str] = set()
    stack = [service]
    while stack:
        for caller in topology.callers_of(stack.pop()):
            if caller not in seen and caller != service:
                seen.add(caller)
                stack.append(caller)
    return sorted(seen)


#: Weight of the credit a callee gets for its callers' outgoing-call latency rise.
CALLER_CREDIT_WEIGHT = 0.5
#: Places at the head of the score order that rank fusion leaves alone: only the leader, so each
#: separate family of evidence (caller credit, fail-fast) can reach the top three.
FUSE_KEEP_LEADER = 1


def caller_credit(symptoms: Mapping[str, ServiceSymptoms], topology: Topology, service: str) -> float:
    """How much the service's callers' outgoing-call (client) latency rose: the smallest rise
    (evidence strength) among the callers that report client latency, 0 without such callers.

    A delay on the way to a service (network delay) often leaves the service's own metrics flat and
    shows only as its callers waiting longer; every one of its callers should wait, so the weakest
    caller bounds the credit, and a callee whose callers do not all wait gets little.
    """
    rises: list[float] = []
    for caller in topology.callers_of(service):
        sym = symptoms.get(caller)
        pairs = sym.self_time_pairs() if sym is not None else None
        if sym is None or pairs is None or not pairs[1]:
            continue
        rises.append(max(strength(sym.shifts[g].effect) for g in pairs[1]))
    return min(rises, default=0.0)


def _waiting_callers(
    symptoms: Mapping[str, ServiceSymptoms],
    topology: Topology,
    service: str,
    anomaly_ids: Mapping[tuple[str, str], str],
) -> tuple[Evidence, ...]:
    """The evidence behind a service's caller credit: each caller's outgoing-call latency series
    that rose most, so a callee placed for its callers' waiting shows that waiting."""
    out: list[Evidence] = []
    for caller in topology.callers_of(service):
        sym = symptoms.get(caller)
        pairs = sym.self_time_pairs() if sym is not None else None
        if sym is None or pairs is None or not pairs[1]:
            continue
        best = max(pairs[1], key=lambda g: (strength(sym.shifts[g].effect), g))
        if strength(sym.shifts[best].effect) > 0:
            out += sym.evidence([best], anomaly_ids, localised=True)
    return tuple(out)


def rank_services(
    symptoms: Mapping[str, ServiceSymptoms],
    topology: Topology,
    incident: IncidentContext,
    anomaly_ids: Mapping[tuple[str, str], str],
    windows: Windows,
    *,
    after: timedelta = timedelta(minutes=30),
) -> list[ServiceRank]:
    """Services ranked as root-cause candidates, best first.

    A service's score is its localisation (`ServiceSymptoms.localisation`) plus
    CALLER_CREDIT_WEIGHT x `caller_credit`, with a faint tie-break from below-threshold movement.
    An anomalous service none of whose callees is anomalous is marked "upstream".
    The order is that score's, fused (`fuse_ranks`) with two families of evidence that a weighted
    sum drowns: fail-fast (`structure.fail_fast_scores` on `windows`: served latency falls while
    served workload drops), then caller credit. The score's leader keeps place 1; from place 2 the
    families and the score take places in turn.
    """
    anomaly = {s: sym.localisation() for s, sym in symptoms.items()}
    ranks: list[ServiceRank] = []
    for service, sym in symptoms.items():
        own = anomaly[service]
        # Below-threshold movement still orders the quiet services among themselves.
        faint = sum(math.log1p(max(0.0, sh.worse)) for sh in sym.shifts.values()) / 100.0
        callee_scores = [anomaly.get(c, 0.0) for c in _callees(topology, service)]
        strongest_callee = max(callee_scores, default=0.0)
        upstream = own > 0 and strongest_callee <= 0
        credit = caller_credit(symptoms, topology, service)
        score = own + CALLER_CREDIT_WEIGHT * credit + faint
        top_signals = sorted(sym.shifts, key=lambda g: (-sym.signal_localisation(g), g))[:3]
        ranks.append(
            ServiceRank(
                service=service,
                score=round(score, 9),
                anomaly=own,
                upstream=upstream,
                evidence=tuple(sym.evidence(top_signals, anomaly_ids, localised=True))
                + (_waiting_callers(symptoms, topology, service, anomaly_ids) if credit > 0 else ()),
                credit=credit,
            )
        )
    ranks.sort(key=lambda r: (-r.score, r.service))
    fail_fast = fail_fast_scores(windows, symptoms)
    window_s = (min(incident.now, incident.onset + after) - incident.onset).total_seconds()
    return [
        replace(r, evidence=r.evidence + tuple(fail_fast_evidence(windows, r.service, window_s)))
        if fail_fast.get(r.service, 0.0) > 0.0
        else r
        for r in fuse_ranks(ranks, [fail_fast, {r.service: r.credit for r in ranks}])
    ]


def fuse_ranks(ranks: Sequence[ServiceRank], families: Sequence[Mapping[str, float]]) -> list[ServiceRank]:
    """`structure.interleave` on ranked services: the score's leader keeps place 1, then each family
    of evidence and the score take places in turn (FUSE_KEEP_LEADER)."""
    by_service = {r.service: r for r in ranks}
    return [by_service[s] for s in interleave([r.service for r in ranks], families, keep=FUSE_KEEP_LEADER)]


def _alternatives(hypotheses: Sequence[Hypothesis], top: Hypothesis | None) -> tuple[tuple[Cause, float], ...]:
    seen: set[Cause] = {top.cause} if top else set()
    out: list[tuple[Cause, float]] = []
    for h in hypotheses:
        if h.cause in seen:
            continue
        seen.add(h.cause)
        out.append((h.cause, h.confidence))
        if len(out) == 4:
            break
    return tuple(out)


def _first_anomaly_service(incident: IncidentContext) -> str:
    ordered = sorted(incident.anomalies, key=lambda a: (a.ts, a.id))
    return ordered[0].service if ordered else "unknown"


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """One line of the ranked output: a service, its most likely cause, confidence and evidence."""

    service: str
    cause: Cause
    confidence: float
    evidence: tuple[Evidence, ...]


def ranked_candidates(
    hypotheses: Sequence[Hypothesis], ranks: Sequence[ServiceRank], *, abstain_below: float
) -> list[RankedCandidate]:
    """One candidate per service, best first: confident hypotheses, then the localisation ranking.

    Services that a confident hypothesis names come first (by confidence); every other
    anomalous service follows in localisation order with its best hypothesis' cause, or
    `unknown`, and the confidence of its localisation score, made non-increasing down the list
    (`non_increasing`) and never above the last confident hypothesis.
    """
    out: list[RankedCandidate] = []
    seen: set[str] = set()
    for h in hypotheses:
        if h.confidence < abstain_below or h.service in seen:
            continue
        seen.add(h.service)
        out.append(RankedCandidate(h.service, h.cause, h.confidence, h.evidence))
    best_cause: dict[str, Cause] = {}
    for h in hypotheses:
        best_cause.setdefault(h.service, h.cause)
    rest = [r for r in ranks if r.service not in seen]
    ceiling = out[-1].confidence if out else abstain_below
    own = [min(confidence_of(r.score), abstain_below, ceiling) for r in rest]
    for r, confidence in zip(rest, non_increasing(own), strict=True):
        out.append(RankedCandidate(r.service, best_cause.get(r.service, Cause.UNKNOWN), confidence, r.evidence))
    return out


def non_increasing(values: Sequence[float]) -> list[float]:
    """The non-increasing sequence closest to `values` in least squares (pool adjacent violators).

    Rank fusion may place a service above others that scored higher; its place is the claim, so
    the confidences down the list must not rise. A run of places that violates the order shares
    the mean of its confidences: the promoted service gains what the services it passed lose.
    """
    blocks: list[list[float]] = []  # [mean, count]
    for v in values:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            mean, count = blocks.pop()
            prev = blocks[-1]
            prev[0] = (prev[0] * prev[1] + mean * count) / (prev[1] + count)
            prev[1] += count
    out: list[float] = []
    for mean, count in blocks:
        out += [round(mean, 4)] * int(count)
    return out
