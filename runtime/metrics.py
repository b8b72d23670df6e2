"""The daemon's Prometheus metrics, on a registry of their own (one per app, so tests and
replicas in one process never collide). The loop updates them; ``GET /metrics`` renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from domain import Anomaly, IncidentState
from runtime.ports import TelemetryBatch
from runtime.sources.guard import SourceHealth

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

#: Approval waits run from seconds (an SRE at the desk) to hours (overnight, then expiry).
_APPROVAL_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
#: One loop iteration should take milliseconds; the tail tells of a slow source or store.
_LOOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Every metric Homeostat exports, registered on `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.samples_ingested = Counter(
            "homeostat_samples_ingested", "Samples accepted from sources", ["source"], registry=r
        )
        self.samples_rejected = Counter(
            "homeostat_samples_rejected", "Samples and change events refused as invalid", ["source"], registry=r
        )
        self.changes_ingested = Counter(
            "homeostat_change_events_ingested", "Change events accepted from sources", ["source"], registry=r
        )
        self.push_backpressure = Counter(
            "homeostat_push_backpressure", "Push requests answered 429 because the buffer was full", registry=r
        )
        self.anomalies = Counter(
            "homeostat_anomalies", "Anomalies detected or received", ["kind", "severity"], registry=r
        )
        self.incidents = Gauge("homeostat_incidents", "Incidents by current state", ["state"], registry=r)
        self.actions = Counter("homeostat_actions", "Proposed actions by constitution verdict", ["verdict"], registry=r)
        self.action_outcomes = Counter(
            "homeostat_action_outcomes", "Executed actions by outcome status", ["status"], registry=r
        )
        self.approval_wait = Histogram(
            "homeostat_approval_wait_seconds",
            "Time from approval requested to approved, rejected or expired",
            ["result"],
            buckets=_APPROVAL_BUCKETS,
            registry=r,
        )
        self.loop_latency = Histogram(
            "homeostat_loop_latency_seconds",
            "Duration of one poll-detect-supervise iteration",
            buckets=_LOOP_BUCKETS,
            registry=r,
        )
        self.source_up = Gauge(
            "homeostat_source_up", "1 if the source's last poll succeeded and is fresh", ["source"], registry=r
        )
        self.source_staleness = Gauge(
            "homeostat_source_staleness_seconds",
            "Seconds since the source's last successful poll",
            ["source"],
            registry=r,
        )
        self.notifications = Counter(
            "homeostat_notifications", "Webhook notifications by result", ["result"], registry=r
        )
        self.api_denied = Counter(
            "homeostat_api_denied", "API calls refused by authentication or authorization", ["status"], registry=r
        )
        for state in IncidentState:
            self.incidents.labels(state=state.value).set(0)

    def set_incident_counts(self, counts: Mapping[str, int]) -> None:
        """Set the incidents-by-state gauge; states not in `counts` are set to 0."""
        for state in IncidentState:
            self.incidents.labels(state=state.value).set(counts.get(state.value, 0))
        known = {s.value for s in IncidentState}
        for name, n in counts.items():
            if name not in known:
                self.incidents.labels(state=name).set(n)

    def record_batch(self, source: str, batch: TelemetryBatch) -> None:
        """Count what one poll of `source` delivered."""
        if batch.samples:
            self.samples_ingested.labels(source=source).inc(len(batch.samples))
        if batch.changes:
            self.changes_ingested.labels(source=source).inc(len(batch.changes))

    def record_anomalies(self, anomalies: Iterable[Anomaly]) -> None:
        """Count anomalies by kind and severity."""
        for anomaly in anomalies:
            self.anomalies.labels(kind=anomaly.kind, severity=anomaly.severity.value).inc()

    def observe_sources(self, health: Iterable[SourceHealth]) -> None:
        for h in health:
            self.source_up.labels(source=h.name).set(1 if h.healthy else 0)
            if h.staleness_s is not None:
                self.source_staleness.labels(source=h.name).set(h.staleness_s)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
