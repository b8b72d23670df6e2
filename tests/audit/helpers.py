"""Building small realistic chains for the audit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runtime.audit import AuditLog, AuditRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def fill(log: AuditLog, n: int, *, incidents: int = 3) -> list[AuditRecord]:
    """Append `n` records spread over a few incidents, one simulated second apart."""
    kinds = ["observation", "diagnosis", "proposal", "decision", "action_intent", "action_result"]
    out = []
    for i in range(n):
        out.append(
            log.append(
                kinds[i % len(kinds)],
                {"i": i, "service": f"svc-{i % 2}", "note": "ünïcode ok", "value": i / 7},
                incident_id=f"inc-{i % incidents}",
                ts=T0 + timedelta(seconds=i),
            )
        )
    return out
