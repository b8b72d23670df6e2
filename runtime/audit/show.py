"""An incident's audit trail as a timeline a person can read: what was seen, decided and done."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from runtime.audit._chain import AuditRecord


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _anomaly(a: Any) -> str:
    if not isinstance(a, dict):
        return str(a)
    return (
        f"{a.get('service')}/{a.get('signal')} {a.get('direction', '?')} "
        f"{_num(a.get('baseline'))} → {_num(a.get('current'))} ({a.get('detector', '?')}, {a.get('severity', '?')})"
    )


def _incident_opened(p: dict[str, Any]) -> str:
    anomalies = p.get("anomalies") or []
    lines = [f"incident opened on {', '.join(p.get('services') or []) or '?'}"]
    lines += [f"  • {_anomaly(a)}" for a in anomalies]
    return "\n".join(lines)


def _diagnosis(p: dict[str, Any]) -> str:
    d = p.get("diagnosis") or {}
    lines = [
        f"[bold]{d.get('cause', '?')}[/] on {d.get('service', '?')} "
        f"(confidence {_num(d.get('confidence'))}, {d.get('diagnoser', '?')} {d.get('diagnoser_version', '')})",
    ]
    if d.get("rationale"):
        lines.append(f"  {d['rationale']}")
    for e in d.get("evidence") or []:
        if e.get("type") == "change":
            lines.append(
                f"  • change {e.get('kind')} {e.get('from_value')} → {e.get('to_value')} on {e.get('service')}, "
                f"{_num(e.get('seconds_before_onset'))}s before onset"
            )
        else:
            lines.append(f"  • {e.get('service')}/{e.get('signal')} {_num(e.get('before'))} → {_num(e.get('after'))}")
    for name, versions in (p.get("services") or {}).items():
        if isinstance(versions, dict):
            lines.append(
                f"  {name}: model {versions.get('model_version', '?')}, prompt {versions.get('prompt_version', '?')}, "
                f"provider {versions.get('provider', '?')}"
            )
    return "\n".join(lines)


def _proposal_text(pr: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in (pr.get("parameters") or {}).items())
    return (
        f"{pr.get('action', '?')} on {pr.get('target', '?')}"
        + (f" ({params})" if params else "")
        + f", blast radius {_num(pr.get('blast_radius'))}, {'reversible' if pr.get('reversible') else 'irreversible'}"
    )


def _decision(p: dict[str, Any]) -> str:
    d = p.get("decision") or {}
    verdict = str(d.get("verdict", "?"))
    colour = {"auto": "green", "approval": "yellow", "deny": "red"}.get(verdict, "white")
    rules = ", ".join(d.get("matched_rules") or []) or "no rule (default)"
    text = f"[bold {colour}]{verdict}[/] by {rules}"
    approval = d.get("approval")
    if isinstance(approval, dict):
        text += (
            f"; needs {approval.get('approvers')} approver(s) with role {'/'.join(approval.get('roles') or [])}, "
            f"timeout {_num(approval.get('timeout_s'))}s then {approval.get('on_timeout')}"
        )
    digest = p.get("constitution_digest") or d.get("constitution_digest") or ""
    return text + f" [dim](constitution {str(digest)[:12]})[/]"


def _approval(p: dict[str, Any]) -> str:
    a = p.get("approval") or {}
    verb = "[green]approved[/]" if a.get("approve") else "[red]rejected[/]"
    comment = f": “{a['comment']}”" if a.get("comment") else ""
    return (
        f"{a.get('approver', '?')} ({'/'.join(a.get('roles') or [])}) {verb}{comment} "
        f"— {p.get('approvals_so_far', '?')}/{p.get('required', '?')}"
    )


def _approval_request(p: dict[str, Any]) -> str:
    verb = "approve" if p.get("approve") else "reject"
    accepted = "accepted" if p.get("accepted") else "[red]refused[/]"
    reason = f" ({p['reason']})" if p.get("reason") else ""
    return f"{p.get('identity', '?')} ({'/'.join(p.get('roles') or [])}) asked to {verb}: {accepted}{reason}"


def _action_intent(p: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in (p.get("parameters") or {}).items())
    dry = " [dim](dry run)[/]" if p.get("dry_run") else ""
    return f"about to run {p.get('action', '?')} on {p.get('target', '?')}" + (f" ({params})" if params else "") + dry


def _action_result(p: dict[str, Any]) -> str:
    o = p.get("outcome") or {}
    status = str(o.get("status", "?"))
    colour = "green" if status == "succeeded" else "red" if status == "failed" else "yellow"
    detail = f": {o['detail']}" if o.get("detail") else ""
    return f"[{colour}]{status}[/] after {o.get('attempts', '?')} attempt(s){detail}"


def _verification(p: dict[str, Any]) -> str:
    ok = "[green]recovered[/]" if p.get("recovered") else "[red]not recovered[/]"
    return ok + (f": {p['detail']}" if p.get("detail") else "")


def _constitution_loaded(p: dict[str, Any]) -> str:
    return f"constitution {str(p.get('digest', '?'))[:12]} loaded from {p.get('source', '?')}"


def _constitution_rejected(p: dict[str, Any]) -> str:
    errors = p.get("errors") or []
    return (
        f"[red]constitution from {p.get('source', '?')} rejected[/] ({len(errors)} error(s)); kept "
        + str(p.get("kept_digest", "?"))[:12]
        + "".join(f"\n  • {e}" for e in errors[:5])
    )


_SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "incident_opened": _incident_opened,
    "constitution_loaded": _constitution_loaded,
    "constitution_rejected": _constitution_rejected,
    "observation": lambda p: f"observed {_anomaly(p.get('anomaly'))}",
    "diagnosis": _diagnosis,
    "proposal": lambda p: "proposed " + _proposal_text(p.get("proposal") or {}),
    "decision": _decision,
    "approval": _approval,
    "approval_request": _approval_request,
    "action_intent": _action_intent,
    "action_result": _action_result,
    "verification": _verification,
    "incident_state": lambda p: (
        f"{p.get('from', '?')} → [bold]{p.get('to', '?')}[/]" + (f": {p['reason']}" if p.get("reason") else "")
    ),
    "incident_closed": lambda p: (
        f"closed [bold]{p.get('state', '?')}[/]" + (f": {p['summary']}" if p.get("summary") else "")
    ),
}


def summarize(record: AuditRecord) -> str:
    """One record in words (rich markup). Unknown kinds and odd payloads fall back to compact JSON."""
    fn = _SUMMARIES.get(record.kind)
    if fn is not None:
        try:
            return fn(record.payload)
        except (AttributeError, TypeError, KeyError):
            pass
    text = record.payload_json
    return text if len(text) <= 200 else text[:199] + "…"


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
