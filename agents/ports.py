"""What the incident graph and the diagnosers need from the outside world, as small interfaces.

The runtime injects implementations (a telemetry store, the guarded tool executor, the audit
log, a clock); tests inject the in-process simulator or plain fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain import Anomaly, ChangeEvent, Diagnosis, Topology


class TelemetryReader(Protocol):
    """Read-only access to recent telemetry, change events and topology."""

    def window(self, service: str, signal: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        """Samples of one series with start <= ts < end, oldest first."""
        ...

    def signals(self, service: str) -> list[str]:
        """Signal names this service has reported."""
        ...

    def changes(self, start: datetime, end: datetime, service: str | None = None) -> list[ChangeEvent]:
        """Change events with start <= ts < end, oldest first, optionally for one service."""
        ...

    def topology(self) -> Topology: ...


@dataclass(frozen=True, slots=True)
class IncidentContext:
    """Everything a diagnoser may look at for one incident."""

    incident_id: str
    onset: datetime
    now: datetime
    anomalies: Sequence[Anomaly]
    telemetry: TelemetryReader


class Diagnoser(Protocol):
    """Turns an incident into a Diagnosis from the fixed cause taxonomy. Never raises for weak
    evidence: it abstains with cause=unknown instead."""

    name: str
    version: str

    def diagnose(self, incident: IncidentContext) -> Diagnosis: ...
