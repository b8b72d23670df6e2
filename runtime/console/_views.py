"""What the console's pages show, computed from the incident, its audit records and telemetry.

Pure shaping: no HTTP here. `incident_page` turns `IncidentService.get_incident` output plus
the incident's audit records into charts (SVG), the action time and recovery window, and the
audit timeline (via `runtime.timeline.entries`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from domain import FINAL_STATES, IncidentState
from runtime.console.charts import ChartSpec, Marker, render_chart
from runtime.console.ports import SeriesQuery
from runtime.timeline import TimelineEntry, entries


@dataclass(frozen=True, slots=True)
class ChartWindow:
    before_s: float = 900.0
    """Seconds of history shown before the onset."""
    after_close_s: float = 300.0
    """Seconds shown after a closed incident's last record (then the chart stops moving)."""
    max_charts: int = 8
    """At most this many series are charted (the earliest-anomalous first)."""


@dataclass
class IncidentPage:
    charts: list[Markup] = field(default_factory=list)
    chart_names: list[str] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    action: dict[str, Any] | None = None
    recovery: dict[str, Any] | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[datetime, datetime] | None = None


def _ts(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _unit(signal: str) -> str:
    return "ms" if signal.endswith("_ms") else ""


def _anomalies(records: Sequence[Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for record in records:
        if record.kind == "incident_opened":
            found.extend(record.payload.get("anomalies", []))
        elif record.kind == "observation" and "anomaly" in record.payload:
            found.append(record.payload["anomaly"])
    return found


def incident_page(
    incident: dict[str, Any],
    records: Iterable[Any],
    series: SeriesQuery,
    *,
    now: datetime,
    window: ChartWindow,
) -> IncidentPage:
    """The incident page's derived parts: charts around the onset, action, recovery, timeline."""
    records = list(records)
    page = IncidentPage(timeline=entries(records))
    onset = _ts(incident["onset"])

    intent = next((r for r in records if r.kind == "action_intent"), None)
    result = next((r for r in records if r.kind == "action_result"), None)
    verification = next((r for r in records if r.kind == "verification"), None)
    closed = next((r for r in records if r.kind == "incident_closed"), None)
    if intent is not None:
        page.action = {
            "ts": intent.ts,
            "action": intent.payload.get("action", "action"),
            "target": intent.payload.get("target", ""),
            "result": (result.payload.get("outcome", {}) or {}).get("status") if result is not None else None,
        }
    wait = incident.get("wait") or {}
    if intent is not None:
        start = result.ts if result is not None else intent.ts
        if verification is not None:
            page.recovery = {
                "start": start,
                "end": verification.ts,
                "pending": False,
                "recovered": bool(verification.payload.get("recovered")),
            }
        elif incident.get("waiting_for") == "verify_wait" and wait.get("until"):
            page.recovery = {"start": start, "end": _ts(wait["until"]), "pending": True, "recovered": None}

    start = onset - timedelta(seconds=window.before_s)
    final = incident.get("state") in {s.value for s in FINAL_STATES}
    end = min(now, closed.ts + timedelta(seconds=window.after_close_s)) if final and closed is not None else now
    if page.recovery is not None and page.recovery["pending"]:
        end = max(end, page.recovery["end"])
    end = max(end, start + timedelta(seconds=60))
    page.window = (start, end)

    by_series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for anomaly in sorted(_anomalies(records), key=lambda a: str(a["ts"])):
        if anomaly.get("kind") == "stale":
            continue
        by_series.setdefault((anomaly["service"], anomaly["signal"]), []).append(anomaly)

    # The diagnosis may rest on series that never tripped a detector (every service of a provider):
    # chart those too, after the anomalous ones.
    for evidence in (incident.get("diagnosis") or {}).get("evidence", []):
        if evidence.get("type") == "series":
            by_series.setdefault((evidence["service"], evidence["signal"]), [])

    services = sorted({*(incident.get("services") or []), *(svc for svc, _ in by_series)})
    all_changes = []
    for service in services:
        all_changes.extend(series.changes(start, end + timedelta(seconds=1), service))
    all_changes.sort(key=lambda c: (c.ts, c.id))
    page.changes = [c.model_dump(mode="json") | {"ts_dt": c.ts} for c in all_changes]

    action_marker = (
        Marker(page.action["ts"], f"{page.action['action']} on {page.action['target']}") if page.action else None
    )
    recovery = (page.recovery["start"], page.recovery["end"]) if page.recovery else None
    for index, ((service, signal), found) in enumerate(list(by_series.items())[: window.max_charts]):
        points = series.window(service, signal, start, end + timedelta(seconds=1))
        spec = ChartSpec(
            title=f"{service} / {signal}",
            start=start,
            end=end,
            points=points,
            onset=onset,
            anomalies=[
                Marker(
                    _ts(a["ts"]),
                    f"{a['detector']} ({a.get('kind', 'shift')}, {a['severity']}): "
                    f"{a['baseline']:.4g} -> {a['current']:.4g}",
                    float(a["current"]),
                )
                for a in found
            ],
            changes=[
                Marker(c.ts, f"{c.kind.value} {c.from_value} -> {c.to_value} by {c.actor}")
                for c in all_changes
                if c.service == service
            ],
            action=action_marker,
            recovery=recovery,
            recovery_pending=bool(page.recovery and page.recovery["pending"]),
            baseline=float(found[0]["baseline"]) if found else None,
            unit=_unit(signal),
            css_id=f"chart-{index}",
        )
        page.charts.append(Markup(render_chart(spec)))  # render_chart escapes every text it embeds
        page.chart_names.append(f"{service}/{signal}")
    return page


def state_class(state: str) -> str:
    """CSS class of a state badge: attention for waits, good/bad for final states."""
    if state == IncidentState.AWAITING_APPROVAL.value:
        return "attention"
    if state == IncidentState.RESOLVED.value:
        return "good"
    if state in {IncidentState.FAILED.value, IncidentState.ESCALATED.value, IncidentState.EXPIRED.value}:
        return "bad"
    if state == IncidentState.REJECTED.value:
        return "muted"
    return "active"


def short_time(value: Any) -> str:
    """``2026-03-02 09:40:10Z`` from an ISO string or datetime; empty for None."""
    if value in (None, ""):
        return ""
    ts = _ts(value)
    return f"{ts:%Y-%m-%d %H:%M:%S}Z"


def compact_time(value: Any) -> str:
    """``03-02 09:40:10`` (UTC) for tables; empty for None."""
    if value in (None, ""):
        return ""
    return f"{_ts(value):%m-%d %H:%M:%S}"


def offset(ts: datetime, origin: datetime) -> str:
    seconds = int((ts - origin).total_seconds())
    sign = "\u2212" if seconds < 0 else "+"
    seconds = abs(seconds)
    return f"T{sign}{seconds // 60}m{seconds % 60:02d}s"
