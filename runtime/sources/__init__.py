"""Telemetry sources: each turns an outside system into `TelemetryBatch`es for the loop.

`build_sources(config)` makes one `GuardedSource` (backoff + health) per configured source,
and hands back the push and Alertmanager receivers the HTTP API feeds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from runtime.config import (
    AlertmanagerSourceConfig,
    HomeostatConfig,
    JsonlSourceConfig,
    PrometheusSourceConfig,
    PushSourceConfig,
    SimulatorSourceConfig,
)
from runtime.detection.config import DetectionConfig, load_detection_config
from runtime.ports import TelemetrySource
from runtime.sources._parse import ParsedTelemetry, Rejection, SourceError, parse_telemetry
from runtime.sources.alertmanager import AlertmanagerSource, WebhookV4, parse_webhook
from runtime.sources.guard import GuardedSource, SourceHealth
from runtime.sources.jsonl import JsonlTailSource
from runtime.sources.prometheus import HistoryHint, PrometheusSource, PromQuery
from runtime.sources.push import Backpressure, PushSource
from runtime.sources.simulator import SimulatorSource

__all__ = [
    "AlertmanagerSource",
    "Backpressure",
    "BuiltSources",
    "GuardedSource",
    "HistoryHint",
    "JsonlTailSource",
    "ParsedTelemetry",
    "PromQuery",
    "PrometheusSource",
    "PushSource",
    "Rejection",
    "SimulatorSource",
    "SourceError",
    "SourceHealth",
    "WebhookV4",
    "build_sources",
    "detector_warmup_samples",
    "open_incident_history",
    "parse_telemetry",
    "parse_webhook",
]


@dataclass
class BuiltSources:
    """The configured sources, guarded, plus the receivers the API needs."""

    guarded: list[GuardedSource] = field(default_factory=list)
    intervals_s: dict[str, float] = field(default_factory=dict)
    """Per source name, seconds between polls (push/alertmanager: the global poll interval)."""
    push: PushSource | None = None
    alertmanager: AlertmanagerSource | None = None


log = logging.getLogger(__name__)


def open_incident_history(database_url: str) -> HistoryHint:
    """A history hint reading the incident store at `database_url`: the earliest onset of any open
    incident, minus the verification baseline window (`agents.graph.BASELINE_WINDOW`), or None."""

    def earliest(now: datetime) -> datetime | None:
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import Session, col, func, select

        from agents.graph import BASELINE_WINDOW
        from domain import FINAL_STATES
        from runtime.store import IncidentRow, engine_for

        url = database_url
        if url.startswith("sqlite:///") or "://" not in url:
            path = Path(url.removeprefix("sqlite:///")).expanduser()
            if not path.exists():
                return None  # a first start: no incidents yet, and not ours to create the file
            url = str(path)
        engine = engine_for(url)
        try:
            with Session(engine) as session:
                query = select(func.min(IncidentRow.onset)).where(
                    col(IncidentRow.state).not_in([s.value for s in FINAL_STATES])
                )
                onset = session.exec(query).one()
        except SQLAlchemyError as exc:
            log.info("no open incidents to read history for (%s)", type(exc).__name__)
            return None
        finally:
            engine.dispose()
        if not onset:
            return None
        return datetime.fromisoformat(onset) - BASELINE_WINDOW

    return earliest


def detector_warmup_samples(detection: DetectionConfig, signals: Iterable[str]) -> int:
    """Samples the detectors need before they judge any series of `signals` (any service): the
    robust detector's `warmup`, or the likelihood detector's window plus its minimum history."""
    services = ["", *detection.services]
    most = 0
    for signal in signals:
        for service in services:
            policy = detection.policy_for(service, signal)
            need = policy.warmup
            if "likelihood" in policy.detectors:
                need = max(need, policy.lik_window + policy.lik_min_history)
            most = max(most, need)
    return most


def build_sources(
    config: HomeostatConfig,
    *,
    history_from: HistoryHint | None = None,
    detection: DetectionConfig | None = None,
) -> BuiltSources:
    """Instantiate every enabled source in `config`, each wrapped in a `GuardedSource`.

    Prometheus sources read back on their first poll far enough for the detectors' warm-up
    (`detection`, default: the config's detection file) and for `history_from` (default: the
    open incidents in the config's database, each with its pre-onset baseline window)."""
    built = BuiltSources()
    for i, entry in enumerate(config.sources):
        name = config.source_name(i)
        interval = config.intervals.poll_s
        source: TelemetrySource
        match entry:
            case PrometheusSourceConfig():
                if detection is None:
                    detection = load_detection_config(config.detection_overrides)
                warmup = detector_warmup_samples(detection, [q.signal for q in entry.queries])
                source = PrometheusSource(
                    entry.url,
                    [PromQuery(q.signal, q.promql, q.service, q.service_label) for q in entry.queries],
                    name=name,
                    mode=entry.mode,
                    step_s=entry.step_s,
                    lookback_s=entry.lookback_s,
                    timeout_s=entry.timeout_s,
                    warmup_s=warmup * entry.step_s,
                    history_from=history_from or open_incident_history(config.database_url),
                    max_history_s=entry.max_history_s,
                    max_points_per_query=entry.max_points_per_query,
                )
                interval = entry.interval_s
            case PushSourceConfig(enabled=True):
                source = built.push = PushSource(
                    name=name, max_buffered=entry.max_buffered, retry_after_s=entry.retry_after_s
                )
            case AlertmanagerSourceConfig(enabled=True):
                source = built.alertmanager = AlertmanagerSource(name=name, service_label=entry.service_label)
            case JsonlSourceConfig():
                source = JsonlTailSource(entry.path, name=name, from_end=entry.from_end)
                interval = entry.interval_s
            case SimulatorSourceConfig():
                source = SimulatorSource(entry.url, name=name, timeout_s=entry.timeout_s)
                interval = entry.interval_s
            case _:
                continue  # a disabled receiver
        built.guarded.append(
            GuardedSource(
                source,
                base_delay_s=min(1.0, entry.max_backoff_s),
                max_delay_s=entry.max_backoff_s,
                stale_after_s=entry.stale_after_s,
            )
        )
        built.intervals_s[name] = interval
    return built
