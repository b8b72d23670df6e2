"""The simulated fleet over HTTP on loopback, so the daemon can run against it as against a real system.

Telemetry as JSON (`/telemetry`) and Prometheus text (`/metrics`), change events, topology and
the remediation endpoints. Virtual time moves at `speed` x real time when a speed is given,
and by `POST /advance` always (tests drive it that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from domain import ActionName, ChangeEvent, Sample
from simulations._fleet import ActionResult, Fleet, FleetError, SimBatch
from simulations._spec import Injection, parse_duration

RETAINED_SAMPLES = 200_000  # about 8 h of the default fleet; older telemetry is dropped
RETAINED_CHANGES = 10_000
TICK_REAL_S = 0.2  # how often the server moves virtual time when running at a speed
FIRST_POLL_WINDOW = timedelta(hours=1)  # a poll without `since` gets this much recent telemetry

_INJECTION: TypeAdapter[Injection] = TypeAdapter(Injection)


class ActionBody(BaseModel):
    """POST /actions: one catalog action on one target."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class AdvanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=7 * 86400, description="virtual seconds to move forward")


class _Buffer:
    """Recent telemetry, each item stamped with the virtual instant it became visible."""

    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=RETAINED_SAMPLES)
        self.changes: deque[tuple[datetime, ChangeEvent]] = deque(maxlen=RETAINED_CHANGES)
        self.latest: dict[tuple[str, str], Sample] = {}

    def add(self, batch: SimBatch, now: datetime) -> None:
        for sample in batch.samples:
            self.samples.append(sample)
            self.latest[(sample.service, sample.signal)] = sample
        for change in batch.changes:
            self.changes.append((now, change))

    def samples_since(self, since: datetime | None, now: datetime) -> list[Sample]:
        if since is None:
            since = now - FIRST_POLL_WINDOW
        # samples are appended in time order: walk back from the newest
        out: list[Sample] = []
        for sample in reversed(self.samples):
            if sample.ts <= since:
                break
            out.append(sample)
        out.reverse()
        return out

    def changes_since(self, since: datetime | None) -> list[ChangeEvent]:
        return [change for seen, change in self.changes if since is None or seen > since]


def _parse_since(value: str | None, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{where}: 'since' must be an ISO 8601 instant, got {value!r}") from None
    if parsed.tzinfo is None:
        raise HTTPException(422, f"{where}: 'since' must carry a timezone (e.g. 2026-03-02T08:00:00Z), got {value!r}")
    return parsed.astimezone(UTC)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(latest: dict[tuple[str, str], Sample]) -> str:
    """The latest value of every series as Prometheus text exposition (one gauge per signal)."""
    by_signal: dict[str, list[Sample]] = {}
    for (_service, signal), sample in sorted(latest.items()):
        by_signal.setdefault(signal, []).append(sample)
    lines: list[str] = []
    for signal, samples in sorted(by_signal.items()):
        metric = f"llm_{signal}"
        lines.append(f"# HELP {metric} Simulated LLM service signal {signal}.")
        lines.append(f"# TYPE {metric} gauge")
        for sample in samples:
            labels = {"service": sample.service, **sample.labels}
            rendered = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            lines.append(f"{metric}{{{rendered}}} {sample.value!r}")
    return "\n".join(lines) + "\n"


def create_app(  # noqa: PLR0915 -- the routes read best side by side in one factory
    fleet: Fleet, *, speed: float | None = None, scenario_name: str | None = None
) -> FastAPI:
    """An ASGI app over `fleet`. With `speed`, a background task moves virtual time at speed x real."""
    if speed is not None and not (speed > 0):
        raise ValueError(f"speed must be a positive multiple of real time, got {speed!r}")
    buffer = _Buffer()
    lock = asyncio.Lock()

    def advance(seconds: float) -> SimBatch:
        batch = fleet.advance(seconds)
        buffer.add(batch, fleet.now)
        return batch

    async def run_clock() -> None:
        assert speed is not None
        anchor_real = time.monotonic()
        anchor_virtual = fleet.elapsed_s
        while True:
            await asyncio.sleep(TICK_REAL_S)
            async with lock:
                target = anchor_virtual + (time.monotonic() - anchor_real) * speed
                if target > fleet.elapsed_s:
                    advance(target - fleet.elapsed_s)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(run_clock()) if speed is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="Homeostat simulated fleet", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg')}")
        where = f"{request.method} {request.url.path}"
        return JSONResponse({"detail": f"{where}: " + "; ".join(problems)}, status_code=422)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "now": fleet.now.isoformat(), "scenario": scenario_name, "speed": speed}

    @app.post("/actions")
    async def post_action(
        body: ActionBody, idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
    ) -> dict[str, Any]:
        key = body.idempotency_key or idempotency_key
        if not key:
            raise HTTPException(422, "POST /actions: give idempotency_key in the body or an Idempotency-Key header")
        if body.idempotency_key and idempotency_key and body.idempotency_key != idempotency_key:
            raise HTTPException(
                422,
                f"POST /actions: body idempotency_key {body.idempotency_key!r} differs from the Idempotency-Key "
                f"header {idempotency_key!r}",
            )
        if body.action not in {a.value for a in ActionName}:
            raise HTTPException(
                422, f"POST /actions: action: unknown action {body.action!r}; known: {[a.value for a in ActionName]}"
            )
        async with lock:
            result = fleet.apply_action(ActionName(body.action), body.target, body.parameters, key)
        return result.model_dump(mode="json")

    @app.get("/actions/{idempotency_key}")
    async def get_action(idempotency_key: str) -> dict[str, Any]:
        result: ActionResult | None = fleet.action_result(idempotency_key)
        if result is None:
            raise HTTPException(404, f"GET /actions: no action was made with idempotency key {idempotency_key!r}")
        return result.model_dump(mode="json")

    @app.get("/telemetry")
    async def telemetry(since: Annotated[str | None, Query()] = None) -> dict[str, Any]:
        after = _parse_since(since, "GET /telemetry")
        async with lock:
            samples = buffer.samples_since(after, fleet.now)
            changes = buffer.changes_since(after)
            now = fleet.now
        return {
            "now": now.isoformat(),
            "samples": [s.model_dump(mode="json") for s in samples],
            "changes": [c.model_dump(mode="json") for c in changes],
        }

    @app.get("/changes")
    async def changes(since: Annotated[str | None, Query()] = None) -> dict[str, Any]:
        after = _parse_since(since, "GET /changes")
        return {
            "now": fleet.now.isoformat(),
            "changes": [c.model_dump(mode="json") for c in buffer.changes_since(after)],
        }

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(prometheus_text(buffer.latest), media_type="text/plain; version=0.0.4")

    @app.get("/topology")
    async def topology() -> dict[str, Any]:
        return fleet.topology().model_dump(mode="json")

    @app.post("/advance")
    async def post_advance(body: AdvanceBody) -> dict[str, Any]:
        async with lock:
            batch = advance(body.seconds)
        return {"now": fleet.now.isoformat(), "samples": len(batch.samples), "changes": len(batch.changes)}

    @app.post("/faults")
    async def post_fault(body: dict[str, Any]) -> dict[str, Any]:
        """Inject a fault (or deploy / load / noise) `at` seconds from now (default: now)."""
        spec = dict(body)
        spec.setdefault("type", "fault")
        try:
            delay = parse_duration(spec.get("at", 0))
        except ValueError as exc:
            raise HTTPException(422, f"POST /faults: at: {exc}") from None
        async with lock:
            spec["at"] = fleet.elapsed_s + delay
            try:
                injection = _INJECTION.validate_python(spec)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
                )
                raise HTTPException(422, f"POST /faults: {problems}") from None
            try:
                fleet.inject(injection)
            except FleetError as exc:
                raise HTTPException(422, f"POST /faults: {exc}") from None
            scheduled = fleet.start + timedelta(seconds=injection.at)
        return {"scheduled_at": scheduled.isoformat(), "injection": injection.model_dump(mode="json")}

    @app.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return {
            "now": fleet.now.isoformat(),
            "active": [_plain(f) for f in fleet.active_faults()],
            "log": [_plain(f) for f in fleet.fault_log()],
        }

    return app


def _plain(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in record.__slots__:
        value = getattr(record, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else str(value) if value is not None else None
        if isinstance(value, float):
            out[name] = value
    return out
