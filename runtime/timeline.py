"""An incident's story in words, derived from its audit records alone.

Used by `homeostat demo`, `homeostat audit show` and the console: what was detected, what the
diagnoser concluded and on what evidence, what was proposed, what the constitution said and
which rule, who approved, what ran, and whether it worked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    ts: datetime
    stage: str
    headline: str
    details: tuple[str, ...] = ()
    seq: int | None = None


def _anomaly_line(a: dict[str, Any]) -> str:
    return (
        f"{a['signal']} on {a['service']} went {a['direction']}: "
        f"{_num(a['baseline'])} -> {_num(a['current'])} ({a['detector']}, {a['severity']})"
    )


def _num(value: float) -> str:
    return f"{value:.4g}"


def _evidence_line(e: dict[str, Any]) -> str:
    if e.get("type") == "change":
        return (
            f"change {e['change_id']}: {e['kind']} {e['from_value']} -> {e['to_value']} on {e['service']}, "
            f"{e['seconds_before_onset']:.0f}s before onset"
        )
    return f"series {e['service']}/{e['signal']}: {_num(e['before'])} before -> {_num(e['after'])} after"


def entries(records: Iterable[Any]) -> list[TimelineEntry]:
    """Timeline entries for the records of one incident, in log order."""
    out: list[TimelineEntry] = []
    for r in records:
        p = r.payload
        add = _entry_for(r.kind, p)
        if add is not None:
            stage, headline, details = add
            out.append(TimelineEntry(r.ts, stage, headline, tuple(details), r.seq))
    return out


def _entry_for(kind: str, p: dict[str, Any]) -> tuple[str, str, list[str]] | None:
    if kind == "incident_opened":
        return "detected", _anomaly_line(p["anomalies"][0]), [_anomaly_line(a) for a in p["anomalies"][1:]]
    if kind == "observation":
        return "detected", "also " + _anomaly_line(p["anomaly"]), []
    if kind == "diagnosis":
        d = p["diagnosis"]
        where = d["service"] + (f" (provider {d['provider']})" if d.get("provider") else "")
        details = [_evidence_line(e) for e in d.get("evidence", [])]
        details.append(f"why: {d['rationale']}")
        details.extend(f"note: {n}" for n in d.get("notes", []))
        head = f"{d['cause']} on {where}, confidence {d['confidence']:.2f} ({d['diagnoser']} {d['diagnoser_version']})"
        return "diagnosis", head, details
    if kind == "proposal":
        pr = p["proposal"]
        undo = f" (undoing {p['undoes']})" if p.get("undoes") else ""
        head = f"{pr['action']} on {pr['target']}{undo}"
        details = [
            f"blast radius {pr['blast_radius']:.0%} of traffic, {'reversible' if pr['reversible'] else 'irreversible'}",
            f"expected: {pr['expected_effect']}",
        ]
        return "proposal", head, details
    if kind == "decision":
        d = p["decision"]
        rules = ", ".join(d.get("matched_rules", [])) or "no rule matched (default)"
        head = f"{d['verdict'].upper()} by rule {rules}"
        if d.get("approval"):
            a = d["approval"]
            head += f": needs {a['approvers']} approver(s) with role {'/'.join(a['roles'])}"
        details = [*d.get("reasons", []), f"constitution {d['constitution_digest'][:12]}"]
        return "decision", head, details
    if kind == "approval_request" and not p.get("accepted", True):
        return "approval", f"refused answer from {p['identity']}: {p.get('reason', '')}", []
    if kind == "approval":
        a = p["approval"]
        verb = "APPROVED" if a["approve"] else "REJECTED"
        head = f"{verb} by {a['approver']} ({p['approvals_so_far']}/{p['required']})"
        return "approval", head, [f'comment: "{a["comment"]}"'] if a.get("comment") else []
    if kind == "approval_refused":
        return "approval", f"not counted: {p['reason']}", []
    if kind == "approval_timeout":
        return "approval", f"approval timed out -> {p['on_timeout']}", []
    if kind == "action_intent":
        mode = " (dry run)" if p.get("dry_run") else ""
        return "action", f"{p['action']} on {p['target']}{mode}", [f"idempotency key {p['idempotency_key']}"]
    if kind == "action_result":
        o = p["outcome"]
        return "action", f"result: {o['status']}" + (f" ({o['detail']})" if o.get("detail") else ""), []
    if kind == "verification":
        verdict = "recovered" if p["recovered"] else "NOT recovered"
        return "verify", f"{verdict}: {p.get('detail', '')}", []
    if kind == "incident_closed":
        return "outcome", f"{p['state'].upper()}: {p['summary']}", []
    return None


_STAGE_STYLE = {
    "detected": "yellow",
    "diagnosis": "cyan",
    "proposal": "magenta",
    "decision": "bold blue",
    "approval": "bold green",
    "action": "bold",
    "verify": "green",
    "outcome": "bold white on blue",
}


def render(console: Console, title: str, timeline: list[TimelineEntry], *, start: datetime | None = None) -> None:
    """Print one incident's timeline as a table: offset, stage, what happened."""
    table = Table(title=title, title_justify="left", show_lines=False, expand=False, pad_edge=False)
    table.add_column("time", style="dim", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("what happened")
    origin = start or (timeline[0].ts if timeline else None)
    for entry in timeline:
        offset = _offset(entry.ts, origin)
        body = Text(entry.headline)
        for line in entry.details:
            body.append("\n  " + line, style="dim")
        table.add_row(offset, Text(entry.stage, style=_STAGE_STYLE.get(entry.stage, "")), body)
    console.print(table)


def _offset(ts: datetime, origin: datetime | None) -> str:
    if origin is None:
        return ts.isoformat()
    seconds = int((ts - origin).total_seconds())
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    return f"{ts:%H:%M:%S} ({sign}{seconds // 60}m{seconds % 60:02d}s)"
