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


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _anomaly_line(a: Any) -> str:
    if not isinstance(a, dict):
        return str(a)
    return (
        f"{a.get('service', '?')}/{a.get('signal', '?')} {a.get('direction', '?')} "
        f"{_num(a.get('baseline'))} → {_num(a.get('current'))} ({a.get('detector', '?')}, {a.get('severity', '?')})"
    )


def _evidence_line(e: dict[str, Any]) -> str:
    if e.get("type") == "change":
        return (
            f"change {e.get('kind')} {e.get('from_value')} → {e.get('to_value')} on {e.get('service')}, "
            f"{_num(e.get('seconds_before_onset'))}s before onset"
        )
    return f"{e.get('service')}/{e.get('signal')}: {_num(e.get('before'))} before → {_num(e.get('after'))} after"


def _params(parameters: Any) -> str:
    items = ", ".join(f"{k}={v}" for k, v in (parameters or {}).items()) if isinstance(parameters, dict) else ""
    return f" ({items})" if items else ""


def entries(records: Iterable[Any]) -> list[TimelineEntry]:
    """The story of one incident from its records, in log order (bookkeeping kinds left out)."""
    out: list[TimelineEntry] = []
    for r in records:
        described = describe(r.kind, r.payload)
        if described is not None and described[0] not in _BOOKKEEPING:
            stage, headline, details = described
            out.append(TimelineEntry(r.ts, stage, headline, tuple(details), r.seq))
    return out


#: Stages an auditor sees in `audit show` but the incident story leaves out.
_BOOKKEEPING = frozenset({"state", "constitution", "access"})


def describe(kind: str, payload: dict[str, Any]) -> tuple[str, str, list[str]] | None:
    """One audit record in words: (stage, headline, detail lines); None for kinds it does not know.

    The single place that turns record payloads into sentences: the demo, the console and
    `homeostat audit show` all read records through it. Payloads are read defensively, so an
    odd or partial record still prints.
    """
    try:
        return _describe(kind, payload)
    except (AttributeError, TypeError, KeyError, ValueError):
        return None


Described = tuple[str, str, list[str]]


def _describe(kind: str, p: dict[str, Any]) -> Described | None:
    return _describe_finding(kind, p) or _describe_response(kind, p)


def _describe_finding(kind: str, p: dict[str, Any]) -> Described | None:
    """What was seen, concluded and decided."""
    if kind == "incident_opened":
        anomalies = p.get("anomalies") or [{}]
        return "detected", _anomaly_line(anomalies[0]), [_anomaly_line(a) for a in anomalies[1:]]
    if kind == "observation":
        return "detected", "also " + _anomaly_line(p.get("anomaly")), []
    if kind == "triage":
        dropped = p.get("transient") or []
        return "triage", f"{len(p.get('persisted') or [])} anomalies persisted, {len(dropped)} transient", []
    if kind == "diagnosis":
        d = p.get("diagnosis") or {}
        where = f"{d.get('service', '?')}" + (f" (provider {d['provider']})" if d.get("provider") else "")
        head = (
            f"{d.get('cause', '?')} on {where} (confidence {_num(d.get('confidence'))}, "
            f"{d.get('diagnoser', '?')} {d.get('diagnoser_version', '')})"
        )
        details = [_evidence_line(e) for e in d.get("evidence") or []]
        if d.get("rationale"):
            details.append(f"why: {d['rationale']}")
        details.extend(f"note: {n}" for n in d.get("notes") or [])
        for name, v in (p.get("services") or {}).items():
            if isinstance(v, dict):
                details.append(
                    f"{name}: model {v.get('model_version', '?')}, prompt {v.get('prompt_version', '?')}, "
                    f"provider {v.get('provider', '?')}"
                )
        return "diagnosis", head, details
    if kind == "proposal":
        pr = p.get("proposal") or {}
        undo = f" (undoing {p['undoes']})" if p.get("undoes") else ""
        head = f"{pr.get('action', '?')} on {pr.get('target', '?')}{_params(pr.get('parameters'))}{undo}"
        details = [
            f"blast radius {_share(pr.get('blast_radius'))} of traffic, "
            f"{'reversible' if pr.get('reversible') else 'irreversible'}"
        ]
        if pr.get("expected_effect"):
            details.append(f"expected: {pr['expected_effect']}")
        return "proposal", head, details
    if kind == "decision":
        d = p.get("decision") or {}
        rules = ", ".join(d.get("matched_rules") or []) or "none (the default verdict)"
        head = f"{str(d.get('verdict', '?')).upper()} by rule {rules}"
        approval = d.get("approval")
        if isinstance(approval, dict):
            head += (
                f": needs {approval.get('approvers')} approver(s) with role {'/'.join(approval.get('roles') or [])}, "
                f"timeout {_num(approval.get('timeout_s'))}s then {approval.get('on_timeout')}"
            )
        digest = str(p.get("constitution_digest") or d.get("constitution_digest") or "")
        return "decision", head, [*(d.get("reasons") or []), f"constitution {digest[:12]}"]
    return None


def _describe_response(kind: str, p: dict[str, Any]) -> Described | None:
    """What people and Homeostat did about it, and how it ended."""
    if kind == "approval_request":
        verb = "approve" if p.get("approve") else "reject"
        accepted = "accepted" if p.get("accepted", True) else f"refused: {p.get('reason', '')}"
        who = f"{p.get('identity', '?')} ({'/'.join(p.get('roles') or [])})"
        return "approval", f"{who} asked to {verb}: {accepted}", []
    if kind == "approval":
        a = p.get("approval") or {}
        verb = "APPROVED" if a.get("approve") else "REJECTED"
        head = f"{verb} by {a.get('approver', '?')} ({p.get('approvals_so_far', '?')}/{p.get('required', '?')})"
        return "approval", head, [f"comment: “{a['comment']}”"] if a.get("comment") else []
    if kind == "approval_refused":
        return "approval", f"not counted: {p.get('reason', '')}", []
    if kind == "approval_timeout":
        return "approval", f"approval timed out -> {p.get('on_timeout', '?')}", []
    if kind == "action_intent":
        mode = " (dry run)" if p.get("dry_run") else ""
        head = f"about to run {p.get('action', '?')} on {p.get('target', '?')}{_params(p.get('parameters'))}{mode}"
        return "action", head, [f"idempotency key {p.get('idempotency_key', '?')}"]
    if kind == "action_result":
        o = p.get("outcome") or {}
        detail = f": {o['detail']}" if o.get("detail") else ""
        return "action", f"{o.get('status', '?')} after {o.get('attempts', '?')} attempt(s){detail}", []
    if kind == "verification":
        verdict = "recovered" if p.get("recovered") else "improved" if p.get("improved") else "not recovered"
        detail = str(p.get("detail") or "")
        # The verifier's summary already opens with its verdict ("not recovered: ..."): say it once.
        return "verify", detail if detail.startswith(verdict) else f"{verdict}: {detail}" if detail else verdict, []
    if kind == "incident_state":
        reason = f": {p['reason']}" if p.get("reason") else ""
        return "state", f"{p.get('from', '?')} → {p.get('to', '?')}{reason}", []
    if kind == "incident_closed":
        summary = f": {p['summary']}" if p.get("summary") else ""
        return "outcome", f"{str(p.get('state', '?')).upper()}{summary}", []
    if kind in ("constitution_loaded", "constitution_changed"):
        digest = str(p.get("digest") or p.get("new_digest") or "?")[:12]
        return "constitution", f"constitution {digest} in force (from {p.get('source', '?')})", []
    if kind == "constitution_rejected":
        errors = [str(e) for e in p.get("errors") or []]
        head = f"constitution from {p.get('source', '?')} rejected ({len(errors)} error(s)); kept "
        return "constitution", head + str(p.get("kept_digest", "?"))[:12], errors[:5]
    if kind == "access_denied":
        return "access", f"{p.get('method')} {p.get('path')} refused ({p.get('status')}): {p.get('reason')}", []
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
    "triage": "yellow",
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
