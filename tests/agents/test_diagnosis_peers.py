"""Localisation on signals Homeostat does not know: a service counts by how far its movement stands
out from the same signal on its peers, and a callee whose every caller waits on it gets credit."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from agents.diagnosis import DeterministicDiagnoser
from agents.diagnosis.deterministic import PEER_MIN_SERVICES, ServiceSymptoms, peer_references
from agents.diagnosis.shifts import SeriesShift, shift_between
from agents.ports import IncidentContext
from domain import Anomaly, Direction, Sample, SeriesEvidence, ServiceInfo, Signal, Topology
from runtime.telemetry import TelemetryStore

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ONSET = T0 + timedelta(minutes=6)
CPU, MEM, NET, OPS = "CpuUsageRate(%)", "MemoryUsageRate(%)", "NetworkReceiveBytes", "PodWorkload(Ops)"
SERVER, CLIENT = "PodServerLatencyP90(s)", "PodClientLatencyP90(s)"

#: Healthy level and relative noise of each signal.
LEVELS: dict[str, tuple[float, float]] = {
    CPU: (20.0, 0.03),
    MEM: (30.0, 0.001),
    NET: (5000.0, 0.05),
    OPS: (8.0, 0.05),
    SERVER: (0.05, 0.02),
    CLIENT: (0.03, 0.02),
}


def incident(
    services: list[str],
    *,
    after: Mapping[tuple[str, str], float],
    edges: list[tuple[str, str]] | None = None,
    seed: int = 5,
) -> IncidentContext:
    """Minute samples, 6 before onset and 6 after; after onset each (service, signal) in `after` is
    multiplied by its factor. The anomaly is the first service's served latency."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    for minute in range(12):
        ts = T0 + timedelta(minutes=minute)
        for service in services:
            for signal, (level, noise) in LEVELS.items():
                value = level * (1.0 + rng.gauss(0.0, noise))
                if ts >= ONSET:
                    value *= after.get((service, signal), 1.0)
                samples.append(Sample(service=service, signal=signal, ts=ts, value=value))
    store = TelemetryStore()
    store.add_samples(samples)
    edges = edges or []
    store.set_topology(
        Topology(
            services={
                s: ServiceInfo(
                    name=s,
                    provider="",
                    model_version="",
                    prompt_version="",
                    traffic_share=0.0,
                    depends_on=tuple(b for a, b in edges if a == s),
                )
                for s in services
            }
        )
    )
    anomaly = Anomaly(
        id="a-1",
        service=services[0],
        signal=SERVER,
        detector="test",
        ts=ONSET,
        direction=Direction.UP,
        baseline=0.05,
        current=0.1,
    )
    return IncidentContext(
        incident_id="inc-peers", onset=ONSET, now=ONSET + timedelta(minutes=6), anomalies=[anomaly], telemetry=store
    )


def ranked(ctx: IncidentContext) -> list[str]:
    return [r.service for r in DeterministicDiagnoser().ranked(ctx)]


def scores(ctx: IncidentContext) -> dict[str, float]:
    return {r.service: r.score for r in DeterministicDiagnoser().analyse(ctx)[1]}


PODS = ["front", "ads", "cart", "mail", "pay", "ship"]


class TestPeerComparison:
    def test_a_steady_series_moving_a_few_percent_on_one_pod_points_at_it(self) -> None:
        """cart's memory rising 4 % while every other pod's stays flat outranks ads, whose traffic
        dips hardest in a fleet-wide dip."""
        after: dict[tuple[str, str], float] = {(s, g): 0.7 for s in PODS for g in (NET, OPS)}
        after[("ads", NET)] = 0.55
        after[("ads", OPS)] = 0.55
        after[("cart", MEM)] = 1.04
        assert ranked(incident(PODS, after=after))[0] == "cart"

    def test_a_pod_whose_cpu_jumps_alone_ranks_first_whatever_the_fleet_does(self) -> None:
        """pay's CPU quadrupling ranks it first while every pod's traffic and latency jump together."""
        after: dict[tuple[str, str], float] = {(s, g): 1.8 for s in PODS for g in (NET, OPS, SERVER, CLIENT)}
        after[("pay", CPU)] = 4.0
        assert ranked(incident(PODS, after=after))[0] == "pay"

    def test_a_movement_every_pod_shares_singles_out_no_pod(self) -> None:
        """When every pod's memory rises alike, it adds little to any pod's score (same noise, no rise, as baseline)."""
        shared = scores(incident(PODS, after={(s, MEM): 1.04 for s in PODS}))
        quiet = scores(incident(PODS, after={}))
        assert all(shared[s] - quiet[s] < 0.5 for s in PODS), (shared, quiet)


def _shift(service: str, signal: str, move: float) -> SeriesShift:
    shift = shift_between(service, signal, [10.0, 10.01, 9.99, 10.0], [10.0 + move] * 3, 180.0)
    assert shift is not None
    return shift


def test_the_evidence_shown_for_a_service_is_what_put_it_there() -> None:
    """cart's ranked entry cites its memory series, the peer-compared signal that ranked it first,
    even though 4 % is below the 5 % floor of the hypothesis evidence."""
    ctx = incident(PODS, after={("cart", MEM): 1.04})
    top = DeterministicDiagnoser().ranked(ctx)[0]
    assert top.service == "cart"
    assert any(isinstance(e, SeriesEvidence) and e.signal == MEM for e in top.evidence), top.evidence


class TestPeerReferences:
    def test_known_signals_and_latency_are_not_compared_across_services(self) -> None:
        """Signals Homeostat knows keep their own meaning, and latency counts only as self time."""
        shifts = {
            (s, g): _shift(s, g, 1.0)
            for s in ("a", "b", "c", "d")
            for g in (Signal.REQUEST_RATE.value, SERVER, "pool_size")
        }
        assert set(peer_references(shifts)) == {"pool_size"}

    def test_a_signal_too_few_services_report_is_not_compared(self) -> None:
        """Below PEER_MIN_SERVICES reporting services there is no peer group to compare with."""
        shifts = {(s, "pool_size"): _shift(s, "pool_size", 1.0) for s in ("a", "b", "c", "d")[: PEER_MIN_SERVICES - 1]}
        assert peer_references(shifts) == {}

    def test_the_reference_is_the_peers_typical_movement_with_a_floor(self) -> None:
        """The reference grows with how much the signal moved on most services, and never drops below the floor."""
        quiet = {(s, "pool_size"): _shift(s, "pool_size", 0.0) for s in "abcd"}
        loud = {(s, "pool_size"): _shift(s, "pool_size", 2.0) for s in "abcd"}
        assert peer_references(quiet)["pool_size"] == 0.5
        assert peer_references(loud)["pool_size"] > 10.0


def _moved(service: str, signal: str, own_effect: float) -> SeriesShift:
    return SeriesShift(service, signal, 10.0, 11.0, 1.0, 1.0, 1.0, 5, 5, 300.0, own_effect=own_effect)


def test_one_clear_movement_outranks_many_mild_ones() -> None:
    """One signal standing out 20x from its peers outranks five that each stand out 4x: a fault shows
    clearly somewhere, while many mild movements on one service are mostly noise."""
    mild = {f"mem_{i}": _moved("b", f"mem_{i}", 4.0) for i in range(5)}
    refs = {signal: 1.0 for signal in [*mild, "mem_x"]}
    clear = ServiceSymptoms("a", {"mem_x": _moved("a", "mem_x", 20.0)}, peer_refs=refs)
    many = ServiceSymptoms("b", mild, peer_refs=refs)
    assert clear.localisation() > many.localisation()


class TestCallerCredit:
    # web and batch both call pay; ads and mail each have one caller that does not wait.
    EDGES = [("web", "pay"), ("web", "ads"), ("batch", "pay"), ("batch", "mail"), ("cron", "ads"), ("cron", "mail")]
    SERVICES = ["web", "ads", "batch", "cron", "mail", "pay"]

    def test_a_callee_every_caller_waits_on_ranks_first_even_when_its_own_metrics_are_flat(self) -> None:
        """A delay on the way to pay shows only in web's and batch's calls; pay ranks first."""
        after = {(s, g): 3.0 for s in ("web", "batch") for g in (SERVER, CLIENT)}
        ctx = incident(self.SERVICES, after=after, edges=self.EDGES)
        assert ranked(ctx)[0] == "pay"

    def test_without_the_call_graph_the_waiting_callers_give_no_credit(self) -> None:
        """Caller credit needs topology: with no edges, pay is not singled out."""
        after = {(s, g): 3.0 for s in ("web", "batch") for g in (SERVER, CLIENT)}
        with_graph = scores(incident(self.SERVICES, after=after, edges=self.EDGES))
        without = scores(incident(self.SERVICES, after=after))
        assert without["pay"] < with_graph["pay"] - 1.0, (without, with_graph)
        assert ranked(incident(self.SERVICES, after=after))[0] != "pay"
