"""`homeostat approvals list | approve ID | reject ID`: answer pending proposals from a terminal.

Talks to a running daemon's HTTP API with a bearer token (``--url``/``--token`` or the
environment variables HOMEOSTAT_URL / HOMEOSTAT_TOKEN). A refused call exits non-zero with the
server's own message (wrong role, already answered, proposer approving their own action...).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List, approve and reject proposals waiting for a person.", no_args_is_help=True)


def _out() -> Console:
    return Console()  # made per call so COLUMNS and redirected streams are honoured


def _err() -> Console:
    return Console(stderr=True)


UrlOption = Annotated[
    str, typer.Option("--url", envvar="HOMEOSTAT_URL", help="the daemon's API base URL", show_default=True)
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="HOMEOSTAT_TOKEN", help="your API token", show_default=False)
]


def _fail(message: str, code: int = 1) -> NoReturn:
    _err().print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _call(method: str, url: str, token: str | None, path: str, body: dict[str, Any] | None = None) -> Any:
    if not token:
        _fail("no token: pass --token or set HOMEOSTAT_TOKEN", 2)
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {url}: {type(exc).__name__}: {exc}", 2)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400:
        message = payload.get("error") if isinstance(payload, dict) else None
        _fail(f"{response.status_code}: {message or response.text[:300] or response.reason_phrase}")
    return payload


def _get(item: dict[str, Any], *keys: str) -> Any:
    node: Any = item
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@app.command("list")
def list_command(
    url: UrlOption = "http://127.0.0.1:8080",
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
) -> None:
    """Show proposals waiting for approval."""
    items = _call("GET", url, token, "/v1/approvals")
    if as_json:
        typer.echo(json.dumps(items, indent=2, sort_keys=True))
        return
    if not items:
        _out().print("No proposals are waiting for approval.")
        return
    table = Table(title=f"{len(items)} proposal(s) waiting for approval", title_justify="left")
    for column in ("incident", "service", "action", "target", "blast radius", "cause", "rule", "since"):
        table.add_column(column, overflow="fold")
    for item in items:
        blast = _get(item, "proposal", "blast_radius")
        rules = _get(item, "decision", "matched_rules") or []
        table.add_row(
            str(item.get("id") or item.get("incident_id") or "?"),
            str(item.get("service") or _get(item, "proposal", "service") or ""),
            str(_get(item, "proposal", "action") or ""),
            str(_get(item, "proposal", "target") or ""),
            f"{float(blast):.0%}" if isinstance(blast, int | float) else "",
            str(_get(item, "proposal", "cause") or _get(item, "diagnosis", "cause") or ""),
            ", ".join(str(r) for r in rules),
            str(item.get("approval_requested_at") or item.get("updated_at") or ""),
        )
    _out().print(table)


def _show_result(verb: str, incident_id: str, result: Any) -> None:
    state = result.get("state") if isinstance(result, dict) else None
    _out().print(f"{verb} incident [bold]{incident_id}[/]" + (f"; it is now [bold]{state}[/]." if state else "."))


@app.command("approve")
def approve_command(
    incident_id: Annotated[str, typer.Argument(help="the incident whose proposal you approve")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="why; kept in the audit log")] = "",
    url: UrlOption = "http://127.0.0.1:8080",
    token: TokenOption = None,
) -> None:
    """Approve an incident's pending proposal."""
    result = _call("POST", url, token, f"/v1/incidents/{_quote(incident_id)}/approve", {"comment": comment})
    _show_result("Approved", incident_id, result)


@app.command("reject")
def reject_command(
    incident_id: Annotated[str, typer.Argument(help="the incident whose proposal you reject")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why; kept in the audit log")],
    url: UrlOption = "http://127.0.0.1:8080",
    token: TokenOption = None,
) -> None:
    """Reject an incident's pending proposal, with a reason."""
    result = _call("POST", url, token, f"/v1/incidents/{_quote(incident_id)}/reject", {"reason": reason})
    _show_result("Rejected", incident_id, result)


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")
