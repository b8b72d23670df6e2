"""Reads telemetry from the Homeostat simulator over HTTP.

Contract: ``GET {url}/telemetry?since=ISO`` answers ``{"now": ISO, "samples": [...],
"changes": [...]}``; the next poll asks for what came after the previous answer's ``now``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from domain.types import UtcDatetime
from runtime.ports import TelemetryBatch
from runtime.sources._parse import Rejection, SourceError, describe_validation_error, parse_telemetry

log = logging.getLogger(__name__)

_NOW = TypeAdapter(UtcDatetime)


class SimulatorSource:
    """A `TelemetrySource` over the simulator's HTTP server."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "simulator",
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self._url = url.rstrip("/") + "/telemetry"
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None
        self._since: datetime | None = None
        self.rejections: list[Rejection] = []

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def poll(self, now: datetime) -> TelemetryBatch:
        params = {"since": self._since.isoformat()} if self._since else {}
        try:
            response = await self._client.get(self._url, params=params)
        except httpx.HTTPError as exc:
            raise SourceError(f"{self._url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise SourceError(f"{self._url} answered {response.status_code}: {response.text[:300]}")
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise SourceError(f"{self._url}: response is not JSON") from exc
        if not isinstance(body, dict):
            raise SourceError(f"{self._url}: response must be a JSON object")
        try:
            sim_now = _NOW.validate_python(body.get("now"))
        except ValidationError as exc:
            raise SourceError(f"{self._url}: field 'now': {describe_validation_error(exc)}") from exc
        samples, changes = body.get("samples", []), body.get("changes", [])
        if not isinstance(samples, list) or not isinstance(changes, list):
            raise SourceError(f"{self._url}: 'samples' and 'changes' must be lists")
        parsed = parse_telemetry(samples, changes, where=self._url)
        self.rejections = parsed.rejections
        for rejection in parsed.rejections:
            log.warning("source %s: %s", self.name, rejection)
        self._since = sim_now
        return TelemetryBatch(samples=parsed.samples, changes=parsed.changes)
