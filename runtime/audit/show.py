"""`homeostat audit show`: every record of one incident, with its sequence number, in words.

The words come from `runtime.timeline.describe`, the one summarizer the demo and console share.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runtime.audit._chain import AuditRecord
from runtime.timeline import describe


def summarize(record: AuditRecord) -> str:
    """One record in words; kinds the timeline does not know fall back to compact JSON."""
    described = describe(record.kind, record.payload)
    if described is None:
        text = record.payload_json
        return escape(text if len(text) <= 200 else text[:199] + "…")
    _stage, headline, details = described
    return escape("\n".join([headline, *(f"  • {line}" for line in details)]))


def render_timeline(incident_id: str, records: Iterable[AuditRecord], console: Console) -> int:
    """Print the incident's timeline (seq, time, what happened, details); returns how many records it had."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", style="dim", no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold", ratio=1)
    first: AuditRecord | None = None
    last: AuditRecord | None = None
    count = 0
    for rec in records:
        first = first or rec
        last = rec
        offset = int((rec.ts - first.ts).total_seconds())
        when = rec.ts.strftime("%H:%M:%S") + f" [dim]+{offset // 60}m{offset % 60:02d}s[/]"
        grid.add_row(f"#{rec.seq}", when, rec.kind.replace("_", " "), summarize(rec))
        count += 1
    if first is None or last is None:
        return 0
    console.print(
        f"[bold]incident {incident_id}[/]: {count} records, {first.ts:%Y-%m-%d %H:%M:%S} → {last.ts:%H:%M:%S} UTC"
    )
    console.print(grid)
    return count
