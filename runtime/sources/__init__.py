"""Telemetry sources: each turns an outside system into `TelemetryBatch`es for the loop.

`build_sources(config)` makes one `GuardedSource` (backoff + health) per configured source,
and hands back the push and Alertmanager receivers the HTTP API feeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.config import (
    AlertmanagerSourceConfig,
    HomeostatConfig,
    JsonlSourceConfig,
    PrometheusSourceConfig,
    PushSourceConfig,
    SimulatorSourceConfig,
)
from runtime.ports import TelemetrySource
from runtime.sources._parse import ParsedTelemetry, Rejection, SourceError, parse_telemetry
from runtime.sources.alertmanager import AlertmanagerSource, WebhookV4, parse_webhook
from runtime.sources.guard import GuardedSource, SourceHealth
from runtime.sources.jsonl import JsonlTailSource
from runtime.sources.prometheus import PrometheusSource, PromQuery
from runtime.sources.push import Backpressure, PushSource
from runtime.sources.simulator import SimulatorSource

__all__ = [
    "AlertmanagerSource",
    "Backpressure",
    "BuiltSources",
    "GuardedSource",
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


def build_sources(config: HomeostatConfig) -> BuiltSources:
    """Instantiate every enabled source in `config`, each wrapped in a `GuardedSource`."""
    built = BuiltSources()
    for i, entry in enumerate(config.sources):
        name = config.source_name(i)
        interval = config.intervals.poll_s
        source: TelemetrySource
        match entry:
            case PrometheusSourceConfig():
                source = PrometheusSource(
                    entry.url,
                    [PromQuery(q.signal, q.promql, q.service, q.service_label) for q in entry.queries],
                    name=name,
                    mode=entry.mode,
                    step_s=entry.step_s,
                    lookback_s=entry.lookback_s,
                    timeout_s=entry.timeout_s,
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
