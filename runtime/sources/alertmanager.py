"""Alertmanager webhook receiver: firing alerts become anomalies of kind ``alert``.

Alertmanager re-sends a group's alerts on every ``repeat_interval`` and whenever the group
changes; Homeostat wants one anomaly per firing episode. An alert is keyed by its
fingerprint: the first firing notification yields an anomaly, repeats are ignored, and a
resolved notification ends the episode so a later re-fire counts again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain import Anomaly, Direction, Severity, bad_direction, canonical_json, sha256_hex
from domain.types import UtcDatetime
from runtime.ports import TelemetryBatch
from runtime.sources._parse import Rejection

#: Annotation text kept per alert (untrusted; stored as data, never as instructions).
_MAX_ANNOTATION = 1000

_SEVERITIES = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "error": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "info": Severity.INFO,
    "none": Severity.INFO,
}


class AlertV4(BaseModel):
    """One alert in an Alertmanager webhook payload (version 4)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: UtcDatetime
    endsAt: UtcDatetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class WebhookV4(BaseModel):
    """An Alertmanager webhook payload (version 4); fields Homeostat does not use are ignored."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    alerts: list[AlertV4] = Field(max_length=10_000)


class AlertmanagerSource:
    """A `TelemetrySource` fed by ``POST /v1/alertmanager``; `poll` drains the new anomalies."""

    def __init__(
        self,
        *,
        name: str = "alertmanager",
        service_label: str = "service",
        signal_label: str = "signal",
        max_pending: int = 10_000,
        max_remembered: int = 100_000,
    ) -> None:
        self.name = name
        self._service_label = service_label
        self._signal_label = signal_label
        self._max_pending = max_pending
        self._max_remembered = max_remembered
        self._pending: list[Anomaly] = []
        self._firing: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def receive(self, payload: WebhookV4) -> tuple[list[Anomaly], list[Rejection]]:
        """Take one webhook payload; returns the new anomalies and the alerts refused, with reasons."""
        new: list[Anomaly] = []
        rejected: list[Rejection] = []
        with self._lock:
            for i, alert in enumerate(payload.alerts):
                where = f"alerts[{i}]"
                fingerprint = alert.fingerprint or sha256_hex(canonical_json(alert.labels))[:16]
                if alert.status == "resolved":
                    self._firing.pop(fingerprint, None)
                    continue
                if fingerprint in self._firing:
                    self._firing.move_to_end(fingerprint)
                    continue
                service = alert.labels.get(self._service_label)
                if not service:
                    rejected.append(Rejection(where, f"alert has no {self._service_label!r} label to name the service"))
                    continue
                if len(self._pending) >= self._max_pending:
                    rejected.append(Rejection(where, "too many alerts waiting for the loop; alert dropped"))
                    continue
                anomaly = self._to_anomaly(alert, service, fingerprint)
                self._firing[fingerprint] = None
                while len(self._firing) > self._max_remembered:
                    self._firing.popitem(last=False)
                self._pending.append(anomaly)
                new.append(anomaly)
        return new, rejected

    def _to_anomaly(self, alert: AlertV4, service: str, fingerprint: str) -> Anomaly:
        signal = alert.labels.get(self._signal_label) or alert.labels.get("alertname") or "alert"
        direction_label = alert.labels.get("direction", "")
        direction = Direction(direction_label) if direction_label in {"up", "down", "both"} else bad_direction(signal)
        severity = _SEVERITIES.get(alert.labels.get("severity", "").lower(), Severity.WARNING)
        starts = alert.startsAt
        return Anomaly(
            id=f"alert-{fingerprint}-{int(starts.timestamp())}",
            service=service,
            signal=signal,
            detector="alertmanager",
            ts=starts,
            direction=direction,
            baseline=0.0,
            current=1.0,
            severity=severity,
            kind="alert",
            detail={
                "alertname": alert.labels.get("alertname", ""),
                "fingerprint": fingerprint,
                "labels": dict(alert.labels),
                "annotations": {k: v[:_MAX_ANNOTATION] for k, v in alert.annotations.items()},
                "generator_url": alert.generatorURL[:_MAX_ANNOTATION],
            },
        )

    async def poll(self, now: datetime) -> TelemetryBatch:
        with self._lock:
            pending, self._pending = self._pending, []
        return TelemetryBatch(anomalies=pending)


def parse_webhook(body: Any) -> WebhookV4:
    """Validate an Alertmanager payload; raises pydantic's ValidationError naming the field."""
    return WebhookV4.model_validate(body)
