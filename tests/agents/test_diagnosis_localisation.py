"""Localisation on microservice metrics: a service slow by itself outranks the callers that
inherit its latency (self time = served latency rising beyond outgoing-call latency)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agents.diagnosis import DeterministicDiagnoser
from agents.ports import IncidentContext
from domain import Anomaly, Direction, Sample, ServiceInfo, Topology
from runtime.telemetry import TelemetryStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
ONSET = T0 + timedelta(minutes=10)
SERVER, CLIENT, CPU = "PodServerLatencyP90(s)", "PodClientLatencyP90(s)", "CpuUsageRate(%)"


def chain_incident(*, slow: str, edges: list[tuple[str, str]], seed: int = 3) -> IncidentContext:
    """web -> api -> db (or `edges`); after onset `slow` serves 4x slower and every caller on the
    way up waits for it: their outgoing-call and served latency both rise."""
    services = sorted({s for edge in edges for s in edge})
    callers: dict[str, list[str]] = {s: [a for a, b in edges if b == s] for s in services}
    inherits: set[str] = set()
    stack = [slow]
    while stack:
        for caller in callers[stack.pop()]:
            if caller not in inherits:
                inherits.add(caller)
                stack.append(caller)
    rng = random.Random(seed)
    samples: list[Sample] = []
    ts = T0
    while ts < ONSET + timedelta(minutes=8):
        after = ts >= ONSET
        for s in services:
            server, client = 0.05, 0.03
            if after and s == slow:
                server *= 4.0
            if after and s in inherits:
                server, client = server * 3.0, client * 4.0
            for signal, value in ((SERVER, server), (CLIENT, client), (CPU, 20.0)):
                noisy = value * (1.0 + rng.gauss(0.0, 0.02))
                samples.append(Sample(service=s, signal=signal, ts=ts, value=noisy))
        ts += timedelta(minutes=1)
    store = TelemetryStore()
    store.add_samples(samples)
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
    entry = next(s for s in services if not callers[s])
    anomaly = Anomaly(
        id="a-1",
        service=entry,
        signal=SERVER,
        detector="test",
        ts=ONSET + timedelta(seconds=30),
        direction=Direction.UP,
        baseline=0.05,
        current=0.15,
    )
    return IncidentContext(
        incident_id="inc-1", onset=ONSET, now=ONSET + timedelta(minutes=8), anomalies=[anomaly], telemetry=store
    )


CHAIN = [("web", "api"), ("api", "db")]


def test_the_service_slow_by_itself_ranks_first_at_the_bottom_of_a_chain() -> None:
    """When db is slow, api and web (which only wait for it) rank below db."""
    ranked = DeterministicDiagnoser().ranked(chain_incident(slow="db", edges=CHAIN))
    assert ranked[0].service == "db"


def test_the_service_slow_by_itself_ranks_first_in_the_middle_of_a_chain() -> None:
    """When api is slow, it ranks above its caller web, which only waits for it, and its healthy callee db."""
    ranked = [r.service for r in DeterministicDiagnoser().ranked(chain_incident(slow="api", edges=CHAIN))]
    assert ranked[0] == "api"


def test_without_topology_self_time_still_localises() -> None:
    """With no call graph at all, the service whose served latency rose alone still ranks first."""
    ctx = chain_incident(slow="db", edges=CHAIN)
    store = ctx.telemetry
    assert isinstance(store, TelemetryStore)
    store.set_topology(
        Topology(
            services={
                s: ServiceInfo(name=s, provider="", model_version="", prompt_version="", traffic_share=0.0)
                for s in ("web", "api", "db")
            }
        )
    )
    assert DeterministicDiagnoser().ranked(ctx)[0].service == "db"
