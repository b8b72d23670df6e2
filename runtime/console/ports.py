"""What the console reads besides the `IncidentService`: telemetry windows and the audit trail.

Small read-only protocols the daemon passes to `mount_console`. `runtime.telemetry.TelemetryStore`
satisfies `SeriesQuery`; `runtime.audit.AuditLog` satisfies `AuditTrail`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from domain import ChangeEvent


class SeriesQuery(Protocol):
    def window(self, service: str, signal: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        """The (time, value) points of one series with start <= time < end, in time order."""
        ...

    def changes(self, start: datetime, end: datetime, service: str | None = None) -> list[ChangeEvent]:
        """Change events with start <= time < end, optionally on one service, in time order."""
        ...


class AuditTrail(Protocol):
    def records(self, *, incident_id: str | None = None, kind: str | None = None, after_seq: int = 0) -> Iterable[Any]:
        """Audit records (with seq, ts, kind, payload) in sequence order."""
        ...
