"""Reads signals from a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir).

Each configured query maps one PromQL expression to one Homeostat signal; the result's
series label (``service`` by default) names the service. Range mode fetches every step
since the last poll (no gaps, no repeats); instant mode asks for the value at ``now``.

The first range poll reads history: at least ``lookback_s``, and further back when the
detectors' warm-up needs more samples or an open incident needs its pre-onset baseline (the
``history_from`` hint: after a restart the in-memory telemetry is empty, and verification
judges recovery against the window before the incident's onset). Every range read is split
into ``query_range`` calls of at most ``max_points_per_query`` points per series (Prometheus
refuses more than 11,000), and no read goes back further than ``max_history_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from domain import Sample
from runtime.detection.intake import SampleBatch
from runtime.ports import TelemetryBatch
from runtime.sources._parse import Rejection, SourceError, describe_validation_error
from runtime.sources.guard import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PromQuery:
    """One PromQL expression read as one Homeostat signal."""

    signal: str
    promql: str
    service: str | None = None
    """Fixed service name; when None the service comes from `service_label` of each series."""
    service_label: str = "service"


#: Prometheus refuses a query_range whose result would hold more points than this per series.
PROMETHEUS_MAX_POINTS = 11_000

HistoryHint = Callable[[datetime], datetime | None]
"""Given the time of the first poll, the earliest instant the loop needs telemetry from (or None)."""


@dataclass(slots=True)
class _QueryState:
    last_end: datetime | None = None
    last_ts: dict[str, datetime] = field(default_factory=dict)


class PrometheusSource:
    """A `TelemetrySource` over the Prometheus HTTP API (``/api/v1/query`` and ``/api/v1/query_range``)."""

    def __init__(
        self,
        url: str,
        queries: Sequence[PromQuery],
        *,
        name: str = "prometheus",
        mode: Literal["range", "instant"] = "range",
        step_s: float = 15.0,
        lookback_s: float = 300.0,
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
        warmup_s: float = 0.0,
        history_from: HistoryHint | None = None,
        max_history_s: float = 6 * 3600.0,
        max_points_per_query: int = PROMETHEUS_MAX_POINTS,
    ) -> None:
        if not queries:
            raise ValueError(f"source {name!r}: at least one query is needed")
        if step_s <= 0 or lookback_s <= 0:
            raise ValueError(f"source {name!r}: step_s and lookback_s must be > 0")
        if warmup_s < 0 or max_history_s <= 0:
            raise ValueError(f"source {name!r}: warmup_s must be >= 0 and max_history_s > 0")
        if max_points_per_query < 2:
            raise ValueError(f"source {name!r}: max_points_per_query must be >= 2, got {max_points_per_query}")
        self.name = name
        self._base = url.rstrip("/")
        self._queries = list(queries)
        self._mode = mode
        self._step = step_s
        self._lookback = lookback_s
        self._warmup = warmup_s
        self._history_from = history_from
        self._max_history = max(max_history_s, lookback_s)  # lookback_s is the floor
        self._max_points = max_points_per_query
        self._first_start: datetime | None = None
        self.first_poll_from: datetime | None = None
        """Where the first range poll started reading, and why (`first_poll_reason`)."""
        self.first_poll_reason = ""
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None
        self._state = [_QueryState() for _ in self._queries]
        self.rejections: list[Rejection] = []
        """Series points refused during the last poll, with reasons."""
        self.poll_warnings: list[str] = []
        """Queries that failed during the last poll while others succeeded."""

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def poll(self, now: datetime) -> TelemetryBatch:
        """Run every query; a failing query is reported in `poll_warnings` while the others' data
        flows (its series go stale downstream). Raises `SourceError` only if every query failed."""
        samples = SampleBatch()  # samples plus the columns the detection stage reads
        self.rejections = []
        self.poll_warnings = []
        failed = 0
        if self._mode == "range" and self._first_start is None:
            self._first_start = await self._first_poll_start(now)
        for query, state in zip(self._queries, self._state, strict=True):
            try:
                samples.extend_batch(await self._run(query, state, now))
            except SourceError as exc:
                failed += 1
                self.poll_warnings.append(str(exc))
        for rejection in self.rejections:
            log.warning("source %s: %s", self.name, rejection)
        if failed == len(self._queries):
            raise SourceError("; ".join(self.poll_warnings))
        for warning in self.poll_warnings:
            log.warning("source %s: %s", self.name, redact(warning))
        return TelemetryBatch(samples=samples)

    async def _first_poll_start(self, now: datetime) -> datetime:
        """How far back the first range poll reads: lookback, detector warm-up, open incidents' baselines, capped."""
        reasons = {f"lookback_s {self._lookback:g}": now - timedelta(seconds=self._lookback)}
        if self._warmup > 0:
            reasons[f"detector warm-up {self._warmup:g}s"] = now - timedelta(seconds=self._warmup)
        if self._history_from is not None:
            try:
                needed = await asyncio.to_thread(self._history_from, now)
            except Exception as exc:  # a hint that fails must not stop telemetry
                log.warning("source %s: cannot tell how much history open incidents need: %s", self.name, exc)
                needed = None
            if needed is not None:
                reasons["open incidents' pre-onset baseline"] = needed
        why, start = min(reasons.items(), key=lambda item: item[1])
        floor = now - timedelta(seconds=self._max_history)
        if start < floor:
            why, start = f"{why}, capped by max_history_s {self._max_history:g}", floor
        self.first_poll_from, self.first_poll_reason = start, why
        if start < now - timedelta(seconds=self._lookback):
            log.info("source %s: first poll reads back to %s (%s)", self.name, start.isoformat(), why)
        return start

    async def _run(self, query: PromQuery, state: _QueryState, now: datetime) -> SampleBatch:
        if self._mode == "instant":
            data = await self._get("/api/v1/query", {"query": query.promql, "time": _ts(now)}, query)
            return self._to_samples(query, state, data)
        step = timedelta(seconds=self._step)
        if state.last_end is None:
            start = self._first_start or now - timedelta(seconds=self._lookback)
        else:  # since the last poll; after a long outage no further back than max_history_s (on the grid)
            start = state.last_end + step
            floor = now - timedelta(seconds=self._max_history)
            if start < floor:
                start += step * math.ceil((floor - start) / step)
        if start > now:
            return SampleBatch()
        end = start + step * int((now - start) / step)  # stay on the step grid: no gaps, no drift
        pages = []  # every chunk first: a failed chunk delivers nothing and the next poll retries all
        chunk = step * (self._max_points - 1)
        lo = start
        while lo <= end:
            hi = min(end, lo + chunk)
            params = {"query": query.promql, "start": _ts(lo), "end": _ts(hi), "step": f"{self._step:g}"}
            pages.append(await self._get("/api/v1/query_range", params, query))
            lo = hi + step
        state.last_end = end
        samples = SampleBatch()
        for data in pages:
            samples.extend_batch(self._to_samples(query, state, data))
        return samples

    async def _get(self, path: str, params: dict[str, str], query: PromQuery) -> dict[str, Any]:
        try:
            response = await self._client.get(self._base + path, params=params)
        except httpx.HTTPError as exc:
            raise SourceError(f"{self._base}{path}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceError(
                f"{self._base}{path} answered {response.status_code} with a body that is not JSON"
            ) from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise SourceError(
                f"{self._base}{path} query {query.promql!r} for signal {query.signal!r} failed "
                f"({response.status_code}): {error or 'response status is not success'}"
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise SourceError(f"{self._base}{path}: response has no 'data' object")
        return data

    def _to_samples(self, query: PromQuery, state: _QueryState, data: dict[str, Any]) -> SampleBatch:
        kind = data.get("resultType")
        result = data.get("result")
        if kind not in ("vector", "matrix") or not isinstance(result, list):
            raise SourceError(f"query {query.promql!r}: expected a vector or matrix result, got resultType={kind!r}")
        samples = SampleBatch()
        for i, series in enumerate(result):
            where = f"{query.signal}: result[{i}]"
            if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
                self.rejections.append(Rejection(where, "series has no 'metric' labels object"))
                continue
            metric: dict[str, Any] = series["metric"]
            service = query.service or metric.get(query.service_label)
            if not isinstance(service, str) or not service:
                self.rejections.append(
                    Rejection(where, f"series {metric!r} has no {query.service_label!r} label to name the service")
                )
                continue
            labels = {str(k): str(v) for k, v in metric.items() if k not in ("__name__", query.service_label)}
            points = series.get("values") if kind == "matrix" else [series.get("value")]
            if not isinstance(points, list):
                self.rejections.append(Rejection(where, "series has no values"))
                continue
            series_id = f"{service}|{sorted(labels.items())}"
            for point in points:
                sample = self._point(query, service, labels, point, where)
                if sample is None:
                    continue
                last = state.last_ts.get(series_id)
                if last is not None and sample.ts <= last:
                    continue  # already delivered by an earlier poll
                state.last_ts[series_id] = sample.ts
                samples.add(sample)
        return samples

    def _point(self, query: PromQuery, service: str, labels: dict[str, str], point: Any, where: str) -> Sample | None:
        if not isinstance(point, list) or len(point) != 2:
            self.rejections.append(Rejection(where, f"point {point!r} is not [timestamp, value]"))
            return None
        raw_ts, raw_value = point
        try:
            ts = datetime.fromtimestamp(float(raw_ts), tz=UTC)
            value = float(raw_value)
        except (TypeError, ValueError, OverflowError):
            self.rejections.append(Rejection(where, f"point {point!r} has a non-numeric timestamp or value"))
            return None
        if not math.isfinite(value):
            self.rejections.append(Rejection(f"{where} @ {ts.isoformat()}", f"value {raw_value!r} is not finite"))
            return None
        try:
            return Sample(service=service, signal=query.signal, ts=ts, value=value, labels=labels)
        except ValidationError as exc:
            self.rejections.append(Rejection(where, describe_validation_error(exc)))
            return None


def _ts(instant: datetime) -> str:
    return f"{instant.timestamp():.3f}"
