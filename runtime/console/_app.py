"""The console's routes: sign-in, incident list, incident page with approve/reject, constitution.

Server-rendered (Jinja2) with a little vanilla JavaScript for auto-refresh; everything is
served from this package (no CDN). Every request re-checks the session token with the
daemon's `TokenAuthority`; approve and reject need the approver role, a CSRF token and a
same-origin form post, checked here on the server whatever the page showed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from domain import IncidentState
from domain.clock import Clock
from policies import Constitution
from runtime.api.ports import AccessAudit, StatusProvider
from runtime.auth import TokenAuthority
from runtime.console._session import COOKIE, Session, Sessions
from runtime.console._views import ChartWindow, compact_time, incident_page, offset, short_time, state_class
from runtime.console.ports import AuditTrail, SeriesQuery
from runtime.ports import ApprovalError, IncidentService

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
_MAX_FORM_BYTES = 64_000
_MAX_COMMENT = 4000
APPROVER_ROLE = "approver"

_SECURITY_HEADERS = {
    # Nothing from elsewhere: scripts, styles, images and fetches come from this daemon only.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    path: str = "/console"
    """URL prefix the console is served under."""
    refresh_s: float = 5.0
    """Seconds between the pages' background checks for changes (list rows, incident state)."""
    chart: ChartWindow = field(default_factory=ChartWindow)
    list_limit: int = 200
    """Incidents shown on the list page."""

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or self.path.endswith("/"):
            raise ValueError(f"ConsoleSettings.path must start with '/' and not end with one, got {self.path!r}")
        if self.refresh_s <= 0:
            raise ValueError(f"ConsoleSettings.refresh_s must be > 0 seconds, got {self.refresh_s}")


@dataclass(frozen=True, slots=True)
class _Console:
    service: IncidentService
    sessions: Sessions
    series: SeriesQuery
    audit: AuditTrail
    status: StatusProvider
    constitution: Callable[[], Constitution | None] | None
    clock: Clock
    settings: ConsoleSettings
    access_audit: AccessAudit | None
    env: Environment


def mount_console(
    app: FastAPI,
    *,
    service: IncidentService,
    auth: TokenAuthority,
    series: SeriesQuery,
    audit: AuditTrail,
    status: StatusProvider,
    clock: Clock,
    constitution: Callable[[], Constitution | None] | None = None,
    access_audit: AccessAudit | None = None,
    settings: ConsoleSettings | None = None,
) -> None:
    """Serve the web console on `app` under ``settings.path`` (default ``/console``).

    `series` supplies chart data (a `TelemetryStore` will do), `audit` the incident's records
    (an `AuditLog`), `status` the constitution's digest and last reload, `constitution` the
    rules in force. `clock` decides what "now" is on the charts (inject a `VirtualClock` in
    game days). Refused console requests are written to `access_audit` when given.
    """
    settings = settings or ConsoleSettings()
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short_time"] = short_time
    env.filters["compact_time"] = compact_time
    env.filters["state_class"] = state_class
    env.filters["pct"] = lambda v: f"{float(v):.0%}"
    env.filters["num"] = lambda v: f"{float(v):.4g}"
    console = _Console(
        service=service,
        sessions=Sessions(auth, path=settings.path),
        series=series,
        audit=audit,
        status=status,
        constitution=constitution,
        clock=clock,
        settings=settings,
        access_audit=access_audit,
        env=env,
    )
    app.include_router(_router(console), include_in_schema=False)


# -- helpers ---------------------------------------------------------------------------------


def _render(c: _Console, name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    template = c.env.get_template(name)
    body = template.render(base=c.settings.path, refresh_s=c.settings.refresh_s, **context)
    return HTMLResponse(body, status_code=http_status, headers=_SECURITY_HEADERS)


def _to_login(c: _Console, request: Request, reason: str | None = None) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"{c.settings.path}/login?next={quote(target, safe='')}"
    if reason:
        url += f"&reason={quote(reason)}"
    response = RedirectResponse(url, status_code=303, headers=_SECURITY_HEADERS)
    if request.cookies.get(COOKIE):  # a token that no longer resolves: drop it
        response.delete_cookie(COOKIE, path=c.settings.path)
    return response


def _safe_next(c: _Console, value: str | None) -> str:
    """Only same-console paths (no scheme, no host, no '//'), so sign-in is not an open redirect."""
    if value and value.startswith(c.settings.path + "/") and "//" not in value and "\\" not in value:
        return value
    return f"{c.settings.path}/incidents"


async def _form(request: Request) -> dict[str, str] | None:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > _MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items()}


def _refuse(c: _Console, request: Request, session: Session | None, status: int, message: str) -> HTMLResponse:
    who = session.identity.name if session else None
    log.warning("console request refused: %s %s by %s: %s", request.method, request.url.path, who, message)
    if c.access_audit is not None:
        try:
            c.access_audit.access_denied(
                who=who, method=request.method, path=request.url.path, status=status, reason=message
            )
        except Exception:
            log.exception("could not audit a refused console request")
    return _render(c, "error.html", status, session=session, status_code=status, message=message)


# -- routes ----------------------------------------------------------------------------------


def _router(c: _Console) -> APIRouter:  # noqa: PLR0915 - one closure per route reads best here
    router = APIRouter(prefix=c.settings.path)
    sessions = c.sessions

    @router.get("")
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{c.settings.path}/incidents", status_code=303)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        body = (_HERE / "static" / name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"Cache-Control": "max-age=300"})

    @router.get("/login")
    async def login_page(request: Request, next: str | None = None, reason: str | None = None) -> HTMLResponse:
        notice = {"expired": "Your token is no longer valid; sign in again."}.get(reason or "")
        return _render(c, "login.html", next=_safe_next(c, next), error=None, notice=notice, session=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not sessions.same_origin(request):
            return _refuse(c, request, None, 403, "sign-in form posted from another site (Origin header)")
        form = await _form(request)
        if form is None:
            return _render(c, "login.html", 400, next=_safe_next(c, None), error="unreadable form", session=None)
        token = form.get("token", "").strip()
        next_url = _safe_next(c, form.get("next"))
        if not token:
            return _render(c, "login.html", 400, next=next_url, error="paste your API token", session=None)
        identity = sessions.resolve(token)
        if identity is None:
            _refuse(c, request, None, 401, "console sign-in with an unknown or revoked token")
            return _render(c, "login.html", 401, next=next_url, error="unknown or revoked token", session=None)
        response = RedirectResponse(next_url, status_code=303, headers=_SECURITY_HEADERS)
        response.set_cookie(value=token, **sessions.cookie_args(request))  # type: ignore[arg-type]
        log.info("console sign-in by %s (%s)", identity.name, ",".join(identity.roles))
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = sessions.current(request)
        form = await _form(request) or {}
        if session is not None and not sessions.csrf_ok(session, form.get("csrf")):
            return _refuse(c, request, session, 403, "missing or wrong CSRF token on sign-out")
        response = RedirectResponse(f"{c.settings.path}/login", status_code=303, headers=_SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path=c.settings.path)
        return response

    def _list_context(state: str | None) -> dict[str, Any]:
        rows = c.service.list_incidents(state=state, limit=c.settings.list_limit)
        return {"incidents": rows, "state": state, "states": [s.value for s in IncidentState]}

    @router.get("/incidents")
    async def incident_list(request: Request, state: str | None = None) -> Response:
        session = sessions.current(request)
        if session is None:
            return _to_login(c, request, "expired" if request.cookies.get(COOKIE) else None)
        if state is not None and state not in {s.value for s in IncidentState}:
            return _refuse(c, request, session, 400, f"unknown state {state!r} in ?state=")
        return _render(c, "incidents.html", session=session, **_list_context(state))

    @router.get("/incidents/rows")
    async def incident_rows(request: Request, state: str | None = None) -> Response:
        session = sessions.current(request)
        if session is None:
            return JSONResponse({"error": "signed out"}, status_code=401)
        if state is not None and state not in {s.value for s in IncidentState}:
            return JSONResponse({"error": f"unknown state {state!r}"}, status_code=400)
        return _render(c, "_incident_rows.html", session=session, **_list_context(state))

    def _incident_response(
        session: Session, incident_id: str, *, status: int = 200, error: str | None = None, done: str | None = None
    ) -> HTMLResponse | None:
        incident = c.service.get_incident(incident_id)
        if incident is None:
            return None
        page = incident_page(
            incident,
            c.audit.records(incident_id=incident_id),
            c.series,
            now=c.clock.now(),
            window=c.settings.chart,
        )
        rules = {}
        constitution = c.constitution() if c.constitution else None
        if constitution is not None:
            rules = {r.id: r.description for r in constitution.rules}
        onset = datetime.fromisoformat(incident["onset"])
        return _render(
            c,
            "incident.html",
            status,
            session=session,
            incident=incident,
            page=page,
            rules=rules,
            onset=onset,
            offset=offset,
            can_approve=session.has_role(APPROVER_ROLE),
            error=error,
            done=done,
        )

    @router.get("/incidents/{incident_id}")
    async def incident_detail(request: Request, incident_id: str, done: str | None = None) -> Response:
        session = sessions.current(request)
        if session is None:
            return _to_login(c, request, "expired" if request.cookies.get(COOKIE) else None)
        done = done if done in {"approved", "rejected"} else None
        response = _incident_response(session, incident_id, done=done)
        if response is None:
            return _refuse(c, request, session, 404, f"no incident {incident_id!r}")
        return response

    @router.get("/incidents/{incident_id}/summary")
    async def incident_summary(request: Request, incident_id: str) -> JSONResponse:
        session = sessions.current(request)
        if session is None:
            return JSONResponse({"error": "signed out"}, status_code=401)
        incident = c.service.get_incident(incident_id)
        if incident is None:
            return JSONResponse({"error": f"no incident {incident_id!r}"}, status_code=404)
        keys = ("state", "updated_at", "waiting_for")
        return JSONResponse({k: incident.get(k) for k in keys}, headers={"Cache-Control": "no-store"})

    async def _answer(request: Request, incident_id: str, *, approve: bool) -> Response:
        session = sessions.current(request)
        verb = "approve" if approve else "reject"
        if session is None:
            return _refuse(c, request, None, 401, f"sign in to {verb}")
        if not sessions.same_origin(request):
            return _refuse(c, request, session, 403, f"{verb} form posted from another site (Origin header)")
        form = await _form(request)
        if form is None:
            return _refuse(c, request, session, 400, f"unreadable {verb} form (at most {_MAX_FORM_BYTES} bytes)")
        if not sessions.csrf_ok(session, form.get("csrf")):
            return _refuse(c, request, session, 403, f"missing or wrong CSRF token on the {verb} form")
        if not session.has_role(APPROVER_ROLE):
            roles = list(session.identity.roles)
            return _refuse(
                c, request, session, 403, f"{session.identity.name} has roles {roles}; {verb} needs the approver role"
            )
        comment = form.get("comment", "").strip()
        problem = None
        if len(comment) > _MAX_COMMENT:
            problem = f"comment is {len(comment)} characters; the limit is {_MAX_COMMENT}"
        elif not approve and not comment:
            problem = "a reason is required to reject: write it in the comment box"
        if problem is None:
            if c.service.get_incident(incident_id) is None:
                return _refuse(c, request, session, 404, f"no incident {incident_id!r}")
            try:
                if approve:
                    c.service.approve(incident_id, session.identity, comment)
                else:
                    c.service.reject(incident_id, session.identity, comment)
            except ApprovalError as exc:
                problem = str(exc)
        if problem is not None:
            status = 409 if approve or comment else 422
            response = _incident_response(session, incident_id, status=status, error=problem)
            return response or _refuse(c, request, session, 404, f"no incident {incident_id!r}")
        done = "approved" if approve else "rejected"
        url = f"{c.settings.path}/incidents/{quote(incident_id, safe='')}?done={done}"
        return RedirectResponse(url, status_code=303, headers=_SECURITY_HEADERS)

    @router.post("/incidents/{incident_id}/approve")
    async def approve(request: Request, incident_id: str) -> Response:
        return await _answer(request, incident_id, approve=True)

    @router.post("/incidents/{incident_id}/reject")
    async def reject(request: Request, incident_id: str) -> Response:
        return await _answer(request, incident_id, approve=False)

    @router.get("/constitution")
    async def constitution_page(request: Request) -> Response:
        session = sessions.current(request)
        if session is None:
            return _to_login(c, request, "expired" if request.cookies.get(COOKIE) else None)
        constitution = c.constitution() if c.constitution else None
        return _render(
            c,
            "constitution.html",
            session=session,
            status=c.status.constitution(),
            constitution=constitution,
        )

    return router
