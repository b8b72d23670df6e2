"""Recent telemetry kept in memory for diagnosis and verification: bounded per series.

Detection consumes samples as a stream; the diagnosers and the verify step need windows of
recent history. This store keeps the last `retention` of every series in a ring buffer and
implements `agents.ports.TelemetryReader`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta

from domain import ChangeEvent, Sample, ServiceInfo, Topology


class TelemetryStore:
    """A bounded, in-memory window of every series, plus change events and the topology."""

    def __init__(self, *, retention: timedelta = timedelta(hours=6), max_points: int = 4096) -> None:
        self._retention = retention
        self._max_points = max_points
        self._series: dict[tuple[str, str], deque[tuple[datetime, float]]] = {}
        self._changes: deque[ChangeEvent] = deque(maxlen=10_000)
        self._change_ids: set[str] = set()
        self._topology = Topology(services={})

    def add_samples(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            key = (sample.service, sample.signal)
            points = self._series.get(key)
            if points is None:
                points = self._series[key] = deque(maxlen=self._max_points)
            if points and sample.ts < points[-1][0]:
                continue  # late, out-of-order sample: detection already judged this instant
            points.append((sample.ts, sample.value))
            horizon = sample.ts - self._retention
            while points and points[0][0] < horizon:
                points.popleft()

    def add_changes(self, changes: Iterable[ChangeEvent]) -> None:
        for change in changes:
            if change.id in self._change_ids:
                continue
            self._change_ids.add(change.id)
            self._changes.append(change)

    def set_topology(self, topology: Topology) -> None:
        self._topology = topology

    def update_service(self, info: ServiceInfo) -> None:
        services = dict(self._topology.services)
        services[info.name] = info
        self._topology = Topology(services=services)

    # -- TelemetryReader -------------------------------------------------------------------

    def window(self, service: str, signal: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        points = self._series.get((service, signal))
        if not points:
            return []
        items = list(points)  # a copy: the loop thread may append while an API thread reads
        lo = bisect_left(items, start, key=lambda p: p[0])
        hi = bisect_left(items, end, key=lambda p: p[0])
        return items[lo:hi]

    def signals(self, service: str) -> list[str]:
        return sorted(signal for (svc, signal) in list(self._series) if svc == service)

    def services(self) -> list[str]:
        return sorted({svc for (svc, _signal) in list(self._series)} | set(self._topology.services))

    def changes(self, start: datetime, end: datetime, service: str | None = None) -> list[ChangeEvent]:
        snapshot = list(self._changes)  # the loop thread may append while an API thread reads
        return sorted(
            (c for c in snapshot if start <= c.ts < end and (service is None or c.service == service)),
            key=lambda c: (c.ts, c.id),
        )

    def topology(self) -> Topology:
        return self._topology
