"""A small seeded fleet of LLM services for diagnoser tests: telemetry with injected faults.

Not a test module itself (no tests); shared by test_diagnosis*.py and test_llm*.py. Each
builder returns an IncidentContext over a real `runtime.telemetry.TelemetryStore`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.diagnosis import DeterministicDiagnoser
from agents.ports import IncidentContext
from domain import Anomaly, ChangeEvent, ChangeKind, Diagnosis, Direction, Sample, ServiceInfo, Signal, Topology
from runtime.telemetry import TelemetryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)

BASE: dict[str, float] = {
    Signal.LATENCY_P50_MS: 400.0,
    Signal.LATENCY_P95_MS: 900.0,
    Signal.LATENCY_P99_MS: 1400.0,
    Signal.ERROR_RATE: 0.01,
    Signal.REQUEST_RATE: 50.0,
    Signal.TOKENS_PER_REQUEST: 800.0,
    Signal.COST_PER_1K_REQUESTS: 2.0,
    Signal.QUALITY_SCORE: 0.85,
    Signal.HALLUCINATION_RATE: 0.03,
    Signal.POLICY_VIOLATION_RATE: 0.005,
    Signal.PII_ALERTS: 0.0,
    Signal.QUEUE_DEPTH: 5.0,
}

#: A fault: per (service, signal), a multiplier (or, with "+", an added amount) after onset.
Effect = Mapping[tuple[str, str], float]


def topology() -> Topology:
    """support-chat and doc-summarizer on llm-alpha; kb-retriever on llm-beta; chat calls kb."""

    def info(name: str, provider: str, depends: tuple[str, ...] = ()) -> ServiceInfo:
        return ServiceInfo(
            name=name,
            provider=provider,
            backup_provider="llm-gamma",
            model_version="m-2",
            previous_model_version="m-1",
            prompt_version="p-7",
            previous_prompt_version="p-6",
            traffic_share=0.3,
            depends_on=depends,
        )

    return Topology(
        services={
            "support-chat": info("support-chat", "llm-alpha", ("kb-retriever",)),
            "doc-summarizer": info("doc-summarizer", "llm-alpha"),
            "kb-retriever": info("kb-retriever", "llm-beta"),
        }
    )


@dataclass
class Scenario:
    """Telemetry for 40 min before and 10 min after onset, with `effects` ramping in after onset."""

    effects: dict[tuple[str, str], float] = field(default_factory=dict)
    additive: dict[tuple[str, str], float] = field(default_factory=dict)
    changes: list[ChangeEvent] = field(default_factory=list)
    anomalies: list[tuple[str, str, Direction]] = field(default_factory=list)
    seed: int = 7
    onset: datetime = T0 + timedelta(minutes=40)
    label: Callable[[str, str], dict[str, str]] | None = None
    alert_detail: dict[str, Any] = field(default_factory=dict)

    def build(self) -> tuple[IncidentContext, TelemetryStore]:
        rng = random.Random(self.seed)
        store = TelemetryStore()
        topo = topology()
        store.set_topology(topo)
        samples: list[Sample] = []
        ts = T0
        end = self.onset + timedelta(minutes=10)
        while ts < end:
            for service in sorted(topo.services):
                for signal, base in BASE.items():
                    value = base * (1.0 + rng.gauss(0.0, 0.03)) if base else 0.0
                    if ts >= self.onset:
                        value *= self.effects.get((service, signal), 1.0)
                        value += self.additive.get((service, signal), 0.0)
                    labels = self.label(service, signal) if self.label else {}
                    samples.append(Sample(service=service, signal=signal, ts=ts, value=value, labels=labels))
            ts += STEP
        store.add_samples(samples)
        store.add_changes(self.changes)
        anomalies = [
            Anomaly(
                id=f"a-{i}",
                service=service,
                signal=signal,
                detector="test",
                ts=self.onset + timedelta(seconds=60 + 30 * i),
                direction=direction,
                baseline=BASE[signal],
                current=BASE[signal] * self.effects.get((service, signal), 1.0),
                detail=self.alert_detail,
            )
            for i, (service, signal, direction) in enumerate(self.anomalies)
        ]
        ctx = IncidentContext(
            incident_id="inc-1",
            onset=self.onset,
            now=end,
            anomalies=anomalies,
            telemetry=store,
        )
        return ctx, store


def change(
    service: str,
    kind: ChangeKind,
    minutes_before: float,
    *,
    actor: str = "deployer",
    cid: str = "chg-1",
    onset: datetime = T0 + timedelta(minutes=40),
) -> ChangeEvent:
    return ChangeEvent(
        id=cid,
        service=service,
        kind=kind,
        from_value="v1",
        to_value="v2",
        ts=onset - timedelta(minutes=minutes_before),
        actor=actor,
    )


UP, DOWN = Direction.UP, Direction.DOWN
SC, DS, KB = "support-chat", "doc-summarizer", "kb-retriever"


def bad_prompt_deploy() -> Scenario:
    return Scenario(
        effects={
            (SC, Signal.QUALITY_SCORE): 0.7,
            (SC, Signal.POLICY_VIOLATION_RATE): 6.0,
            (SC, Signal.TOKENS_PER_REQUEST): 1.6,
        },
        changes=[change(SC, ChangeKind.PROMPT_VERSION, 3)],
        anomalies=[(SC, Signal.QUALITY_SCORE, DOWN), (SC, Signal.POLICY_VIOLATION_RATE, UP)],
    )


def provider_outage() -> Scenario:
    effects: dict[tuple[str, str], float] = {}
    for svc, sev in ((SC, 1.0), (DS, 0.8)):
        effects[(svc, Signal.ERROR_RATE)] = 1 + 20 * sev
        effects[(svc, Signal.LATENCY_P95_MS)] = 1 + 2 * sev
        effects[(svc, Signal.LATENCY_P99_MS)] = 1 + 2.5 * sev
    return Scenario(effects=effects, anomalies=[(SC, Signal.ERROR_RATE, UP), (DS, Signal.ERROR_RATE, UP)])


def upstream_dependency() -> Scenario:
    return Scenario(
        effects={
            (KB, Signal.LATENCY_P50_MS): 3.0,
            (KB, Signal.LATENCY_P95_MS): 4.0,
            (KB, Signal.LATENCY_P99_MS): 4.0,
            (SC, Signal.LATENCY_P95_MS): 2.0,
            (SC, Signal.LATENCY_P99_MS): 2.0,
        },
        anomalies=[(SC, Signal.LATENCY_P95_MS, UP), (KB, Signal.LATENCY_P95_MS, UP)],
    )


def capacity() -> Scenario:
    return Scenario(
        effects={
            (DS, Signal.REQUEST_RATE): 2.5,
            (DS, Signal.QUEUE_DEPTH): 8.0,
            (DS, Signal.LATENCY_P99_MS): 2.5,
            (DS, Signal.LATENCY_P95_MS): 2.0,
        },
        anomalies=[(DS, Signal.LATENCY_P99_MS, UP)],
    )


def cost_misrouting() -> Scenario:
    return Scenario(
        effects={(DS, Signal.COST_PER_1K_REQUESTS): 3.0},
        changes=[change(DS, ChangeKind.ROUTING, 4)],
        anomalies=[(DS, Signal.COST_PER_1K_REQUESTS, UP)],
    )


def tokenizer_mismatch() -> Scenario:
    return Scenario(
        effects={(SC, Signal.ERROR_RATE): 10.0, (SC, Signal.TOKENS_PER_REQUEST): 0.5, (SC, Signal.QUALITY_SCORE): 0.9},
        changes=[change(SC, ChangeKind.MODEL_VERSION, 5)],
        anomalies=[(SC, Signal.ERROR_RATE, UP)],
    )


def bad_model_deploy() -> Scenario:
    return Scenario(
        effects={(SC, Signal.QUALITY_SCORE): 0.75, (SC, Signal.HALLUCINATION_RATE): 4.0},
        changes=[change(SC, ChangeKind.MODEL_VERSION, 6)],
        anomalies=[(SC, Signal.QUALITY_SCORE, DOWN)],
    )


def safety_regression_after_prompt() -> Scenario:
    return Scenario(
        effects={(SC, Signal.POLICY_VIOLATION_RATE): 8.0},
        changes=[change(SC, ChangeKind.PROMPT_VERSION, 4)],
        anomalies=[(SC, Signal.POLICY_VIOLATION_RATE, UP)],
    )


def safety_regression_without_change() -> Scenario:
    return Scenario(
        effects={(KB, Signal.POLICY_VIOLATION_RATE): 8.0, (KB, Signal.HALLUCINATION_RATE): 2.0},
        anomalies=[(KB, Signal.POLICY_VIOLATION_RATE, UP)],
    )


def upstream_model_regression() -> Scenario:
    """A model change hurts kb-retriever; its caller support-chat follows."""
    return Scenario(
        effects={
            (KB, Signal.QUALITY_SCORE): 0.7,
            (KB, Signal.HALLUCINATION_RATE): 4.0,
            (SC, Signal.QUALITY_SCORE): 0.8,
            (SC, Signal.HALLUCINATION_RATE): 3.0,
        },
        changes=[change(KB, ChangeKind.MODEL_VERSION, 4)],
        anomalies=[(SC, Signal.QUALITY_SCORE, DOWN)],
    )


def diagnose(scenario: Scenario) -> Diagnosis:
    """The deterministic diagnosis of a seeded scenario."""
    ctx, _store = scenario.build()
    return DeterministicDiagnoser().diagnose(ctx)


def pii_leak() -> Scenario:
    return Scenario(additive={(DS, Signal.PII_ALERTS): 3.0}, anomalies=[(DS, Signal.PII_ALERTS, UP)])


def data_drift() -> Scenario:
    return Scenario(effects={(KB, Signal.QUALITY_SCORE): 0.8}, anomalies=[(KB, Signal.QUALITY_SCORE, DOWN)])


def weak_blip() -> Scenario:
    """Nothing really moved: the anomaly is a false alarm."""
    return Scenario(effects={(KB, Signal.LATENCY_P50_MS): 1.04}, anomalies=[(KB, Signal.LATENCY_P50_MS, UP)])
