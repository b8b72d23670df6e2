"""The daemon's HTTP API (FastAPI): incidents, approvals, constitution status, audit queries,
telemetry push, the Alertmanager webhook, health, readiness and metrics.

Every error is a JSON object ``{"error": "...", "detail": [...]}`` with a 4xx status that
says what was wrong with the request; bad input never produces a 500. Endpoints run on the
event loop and call the `IncidentService` synchronously: its methods must be quick.
The parts an app serves (service, tokens, sources, status, metrics) live in `app.state.homeostat`.
"""

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import IncidentState
from runtime.api.ports import AccessAudit, AuditQuery, StatusProvider
from runtime.auth import ROLES, TokenAuthority
from runtime.metrics import CONTENT_TYPE_LATEST, Metrics
from runtime.ports import ApprovalError, Identity, IncidentService
from runtime.sources._parse import describe_validation_error
from runtime.sources.alertmanager import AlertmanagerSource, parse_webhook
from runtime.sources.push import Backpressure, PushSource

log = logging.getLogger(__name__)


# -- request and error bodies ----------------------------------------------------------------


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=4000, description="why you approve; kept in the audit log")


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000, description="why you reject; kept in the audit log")


class ApiError(BaseModel):
    error: str
    detail: list[dict[str, Any]] = Field(default_factory=list)


def _error(
    status: int,
    message: str,
    detail: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail or []}, status_code=status, headers=dict(headers or {}))


T = TypeVar("T")


class ServiceCall(Protocol):
    """How the API runs a synchronous service or audit method (e.g. in a worker thread, behind
    the loop's lock, so API calls and loop work never interleave)."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


# -- what one app serves ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    service: IncidentService
    auth: TokenAuthority
    push: PushSource | None
    alertmanager: AlertmanagerSource | None
    status: StatusProvider
    metrics: Metrics
    audit: AuditQuery | None
    access_audit: AccessAudit | None
    max_body_bytes: int
    call: ServiceCall


async def call_inline(fn: Callable[[], T]) -> T:
    """Default `ServiceCall`: run the service method right here, on the event loop."""
    return fn()


def _parts(request: Request) -> _Parts:
    parts: _Parts = request.app.state.homeostat
    return parts


Parts = Annotated[_Parts, Depends(_parts)]


# -- authentication and roles ----------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="a token from the tokens file")


class _Refused(Exception):
    """A 401/403, turned into a JSON answer (and an access-denied audit record) by `_on_refused`."""

    def __init__(self, status: int, message: str, who: str | None) -> None:
        self.status, self.message, self.who = status, message, who


def _require(*roles: str) -> Any:
    async def dependency(
        parts: Parts, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Identity:
        if credentials is None:
            raise _Refused(401, "missing bearer token: send 'Authorization: Bearer <token>'", None)
        identity = parts.auth.resolve(credentials.credentials)
        if identity is None:
            raise _Refused(401, "unknown or revoked token", None)
        if not set(identity.roles) & set(roles):
            raise _Refused(
                403,
                f"{identity.name} has roles {list(identity.roles)}; this call needs one of {list(roles)}",
                identity.name,
            )
        return identity

    return Depends(dependency)


Viewer = Annotated[Identity, _require(*ROLES)]
Approver = Annotated[Identity, _require("approver")]
Auditor = Annotated[Identity, _require("auditor")]
Operator = Annotated[Identity, _require("operator")]
IncidentId = Annotated[str, Path(min_length=1, max_length=200, description="incident id")]


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from exc


# -- incidents and approvals -----------------------------------------------------------------

incidents = APIRouter(prefix="/v1", responses={401: {"model": ApiError}, 403: {"model": ApiError}})


@incidents.get("/incidents", tags=["incidents"])
async def list_incidents(
    parts: Parts,
    who: Viewer,
    state: Annotated[IncidentState | None, Query(description="only incidents in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Incidents, newest first."""
    return await parts.call(lambda: parts.service.list_incidents(state=state.value if state else None, limit=limit))


@incidents.get("/incidents/{incident_id}", tags=["incidents"], responses={404: {"model": ApiError}})
async def get_incident(parts: Parts, incident_id: IncidentId, who: Viewer) -> dict[str, Any]:
    """One incident with its anomalies, diagnosis, proposal, decision and approvals."""
    incident = await parts.call(lambda: parts.service.get_incident(incident_id))
    if incident is None:
        raise HTTPException(404, f"no incident {incident_id!r}")
    return incident


@incidents.get("/approvals", tags=["approvals"])
async def pending_approvals(parts: Parts, who: Viewer) -> list[dict[str, Any]]:
    """Proposals waiting for a person's approval."""
    return await parts.call(parts.service.pending_approvals)


@incidents.post(
    "/incidents/{incident_id}/approve",
    tags=["approvals"],
    responses={404: {"model": ApiError}, 409: {"model": ApiError}},
)
async def approve(
    parts: Parts, incident_id: IncidentId, who: Approver, body: ApproveRequest | None = None
) -> dict[str, Any]:
    """Approve the incident's pending proposal (approver role). Audited with your identity."""
    comment = (body or ApproveRequest()).comment
    if await parts.call(lambda: parts.service.get_incident(incident_id)) is None:
        raise HTTPException(404, f"no incident {incident_id!r}")
    try:
        return await parts.call(lambda: parts.service.approve(incident_id, who, comment))
    except ApprovalError as exc:
        raise HTTPException(409, str(exc)) from exc


@incidents.post(
    "/incidents/{incident_id}/reject",
    tags=["approvals"],
    responses={404: {"model": ApiError}, 409: {"model": ApiError}},
)
async def reject(parts: Parts, incident_id: IncidentId, who: Approver, body: RejectRequest) -> dict[str, Any]:
    """Reject the incident's pending proposal with a reason (approver role). Audited."""
    if await parts.call(lambda: parts.service.get_incident(incident_id)) is None:
        raise HTTPException(404, f"no incident {incident_id!r}")
    try:
        return await parts.call(lambda: parts.service.reject(incident_id, who, body.reason))
    except ApprovalError as exc:
        raise HTTPException(409, str(exc)) from exc


@incidents.get("/constitution", tags=["status"])
async def constitution(parts: Parts, who: Viewer) -> dict[str, Any]:
    """Digest of the constitution in force and the result of the last reload."""
    return parts.status.constitution()


@incidents.get("/sources", tags=["status"])
async def sources(parts: Parts, who: Viewer) -> list[dict[str, Any]]:
    """Health and staleness of every telemetry source."""
    return parts.status.sources()


@incidents.get("/audit", tags=["audit"], responses={501: {"model": ApiError}})
async def audit_records(
    *,
    parts: Parts,
    who: Auditor,
    incident: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="only records with a larger sequence number (a 64-bit cursor)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Audit records in sequence order (auditor role)."""
    if parts.audit is None:
        raise HTTPException(501, "this daemon serves no audit queries")
    audit = parts.audit
    return await parts.call(lambda: audit.query_audit(incident=incident, kind=kind, after_seq=after, limit=limit))


# -- telemetry in ----------------------------------------------------------------------------

telemetry = APIRouter(prefix="/v1", tags=["telemetry"], responses={401: {"model": ApiError}, 403: {"model": ApiError}})

_PUSH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "samples": {"type": "array", "items": {"type": "object"}},
                        "changes": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    }
}


@telemetry.post(
    "/push",
    status_code=202,
    responses={400: {"model": ApiError}, 413: {"model": ApiError}, 429: {"model": ApiError}},
    openapi_extra=_PUSH_BODY,
)
async def push_telemetry(parts: Parts, request: Request, who: Operator) -> JSONResponse:
    """Push samples and change events (operator role). Bad items are refused one by one with a
    reason; the rest are accepted. A full buffer answers 429 with Retry-After."""
    push = parts.push
    if push is None:
        raise HTTPException(404, "the push source is not enabled in this daemon's config")
    body = await _read_json(request, parts.max_body_bytes)
    try:
        parsed = push.parse(body)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    rejected = [{"where": r.where, "message": r.reason} for r in parsed.rejections]
    if rejected:
        parts.metrics.samples_rejected.labels(source=push.name).inc(len(rejected))
    if rejected and not parsed.samples and not parsed.changes:
        return _error(422, f"all {len(rejected)} items were refused", rejected)
    try:
        push.offer(parsed.samples, parsed.changes)
    except Backpressure as exc:
        parts.metrics.push_backpressure.inc()
        return _error(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})
    return JSONResponse(
        {"accepted": {"samples": len(parsed.samples), "changes": len(parsed.changes)}, "rejected": rejected},
        status_code=202,
    )


@telemetry.post("/alertmanager", responses={400: {"model": ApiError}, 413: {"model": ApiError}})
async def alertmanager_webhook(parts: Parts, request: Request, who: Operator) -> dict[str, Any]:
    """Alertmanager webhook receiver (payload version 4; operator role): firing alerts become
    anomalies, once per firing episode."""
    receiver = parts.alertmanager
    if receiver is None:
        raise HTTPException(404, "the Alertmanager receiver is not enabled in this daemon's config")
    body = await _read_json(request, parts.max_body_bytes)
    try:
        payload = parse_webhook(body)
    except ValidationError as exc:
        raise HTTPException(422, f"not an Alertmanager v4 payload: {describe_validation_error(exc)}") from exc
    new, rejected = receiver.receive(payload)  # counted in homeostat_anomalies_total when the loop ingests them
    return {"anomalies": [a.id for a in new], "rejected": [{"where": r.where, "message": r.reason} for r in rejected]}


# -- health, readiness, metrics --------------------------------------------------------------

probes = APIRouter(tags=["status"])


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@probes.get("/readyz", responses={503: {"model": ApiError}})
async def readyz(parts: Parts) -> JSONResponse:
    """Ready when every source has been polled once, the database answers and a constitution is loaded."""
    readiness = parts.status.readiness()
    return JSONResponse(
        {"ready": readiness.ready, "checks": readiness.checks}, status_code=200 if readiness.ready else 503
    )


@probes.get("/metrics", response_class=Response)
async def prometheus_metrics(parts: Parts) -> Response:
    """Prometheus text exposition."""
    return Response(parts.metrics.render(), media_type=CONTENT_TYPE_LATEST)


# -- errors ----------------------------------------------------------------------------------


async def _on_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, _Refused)
    parts = _parts(request)
    parts.metrics.api_denied.labels(status=str(exc.status)).inc()
    if parts.access_audit is not None:
        try:
            access_audit = parts.access_audit
            await parts.call(
                lambda: access_audit.access_denied(
                    who=exc.who, method=request.method, path=request.url.path, status=exc.status, reason=exc.message
                )
            )
        except Exception:
            log.exception("could not audit a refused API call")
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return _error(exc.status, exc.message, headers=headers)


async def _on_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = []
    bad_json = False
    for err in exc.errors():
        bad_json = bad_json or err.get("type") == "json_invalid"
        where = ".".join(str(p) for p in err.get("loc", ()))
        detail.append({"where": where, "message": str(err.get("msg", "invalid"))})
    if bad_json:
        return _error(400, "request body is not valid JSON", detail)
    return _error(422, "invalid request: " + "; ".join(f"{d['where']}: {d['message']}" for d in detail), detail)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, str(exc.detail), headers=exc.headers)


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error serving %s %s", request.method, request.url.path)
    return _error(500, "internal error; see the daemon's log")


# -- the app ---------------------------------------------------------------------------------


def create_app(
    service: IncidentService,
    *,
    auth: TokenAuthority,
    push: PushSource | None,
    alertmanager: AlertmanagerSource | None,
    status: StatusProvider,
    metrics: Metrics,
    audit: AuditQuery | None = None,
    access_audit: AccessAudit | None = None,
    max_body_bytes: int = 5_000_000,
    call: ServiceCall = call_inline,
) -> FastAPI:
    """Build the API over `service`. `audit` defaults to `service` if it implements `AuditQuery`;
    `access_audit` (where refused calls are recorded) likewise. Every call into the service,
    audit and access audit goes through `call` (default: inline on the event loop)."""
    if audit is None and isinstance(service, AuditQuery):
        audit = service
    if access_audit is None and isinstance(service, AccessAudit):
        access_audit = service
    app = FastAPI(
        title="Homeostat",
        version="1",
        description="Incidents, approvals, constitution status and audit of a Homeostat daemon.",
    )
    app.state.homeostat = _Parts(
        service, auth, push, alertmanager, status, metrics, audit, access_audit, max_body_bytes, call
    )
    app.add_exception_handler(_Refused, _on_refused)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_crash)
    app.include_router(incidents)
    app.include_router(telemetry)
    app.include_router(probes)
    return app
