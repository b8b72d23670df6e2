"""The seams inside the runtime: what the HTTP API, the CLI and the sources see of the loop.

Sources produce `TelemetryBatch`es; the API and console talk to an `IncidentService`.
Implementations live in their own modules; these protocols keep the pieces swappable and testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain import Anomaly, ChangeEvent, Sample


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """What one poll of a source returned."""

    samples: list[Sample] = field(default_factory=list)
    changes: list[ChangeEvent] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)  # e.g. Alertmanager alerts, already anomalies


class TelemetrySource(Protocol):
    name: str

    async def poll(self, now: datetime) -> TelemetryBatch:
        """Return what arrived since the last poll. Raise on failure; the caller backs off."""
        ...


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: resolved from a bearer token."""

    name: str
    roles: tuple[str, ...]


class ApprovalError(Exception):
    """An approval or rejection that cannot be accepted, with the reason in words."""


class IncidentService(Protocol):
    """What the API, CLI and console may ask of the incident machinery."""

    def list_incidents(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def get_incident(self, incident_id: str) -> dict[str, Any] | None: ...

    def pending_approvals(self) -> list[dict[str, Any]]: ...

    def approve(self, incident_id: str, who: Identity, comment: str) -> dict[str, Any]:
        """Record an approval; raises ApprovalError (proposer approving, wrong role, not pending...)."""
        ...

    def reject(self, incident_id: str, who: Identity, reason: str) -> dict[str, Any]: ...
