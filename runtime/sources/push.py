"""Telemetry pushed to the API (``POST /v1/push``), buffered until the loop polls.

The buffer is bounded by a number of items. When a batch would not fit, `offer` raises
`Backpressure` and the API answers 429 with Retry-After: memory stays flat under any load,
and the sender learns to slow down instead of losing data silently.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from typing import Any

from domain import ChangeEvent, Sample
from runtime.detection.intake import SampleBatch
from runtime.ports import TelemetryBatch
from runtime.sources._parse import ParsedTelemetry, parse_telemetry


class Backpressure(Exception):
    """The push buffer is full; retry after `retry_after_s` seconds."""

    def __init__(self, buffered: int, capacity: int, retry_after_s: int) -> None:
        super().__init__(f"push buffer full ({buffered}/{capacity} items buffered); retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class PushSource:
    """A `TelemetrySource` fed by the push API; `poll` drains what arrived since the last poll."""

    def __init__(self, *, name: str = "push", max_buffered: int = 10_000, retry_after_s: int = 1) -> None:
        if max_buffered < 1:
            raise ValueError(f"push source {name!r}: max_buffered must be >= 1 (got {max_buffered})")
        if retry_after_s < 1:
            raise ValueError(f"push source {name!r}: retry_after_s must be >= 1 (got {retry_after_s})")
        self.name = name
        self.capacity = max_buffered
        self.retry_after_s = retry_after_s
        self._samples: deque[SampleBatch] = deque()  # accepted pushes, each with its columns
        self._buffered_samples = 0
        self._changes: deque[ChangeEvent] = deque()
        self._lock = threading.Lock()

    @property
    def buffered(self) -> int:
        with self._lock:
            return self._buffered_samples + len(self._changes)

    def parse(self, body: Any) -> ParsedTelemetry:
        """Validate a push body ``{"samples": [...], "changes": [...]}`` item by item.

        Raises ValueError naming the problem if the body itself has the wrong shape.
        """
        if not isinstance(body, dict):
            raise ValueError(f"push body must be a JSON object, got {type(body).__name__}")
        unknown = sorted(set(body) - {"samples", "changes"})
        if unknown:
            raise ValueError(f"push body has unknown keys {unknown}; expected only 'samples' and 'changes'")
        samples = body.get("samples", [])
        changes = body.get("changes", [])
        for key, value in (("samples", samples), ("changes", changes)):
            if not isinstance(value, list):
                raise ValueError(f"push body field {key!r} must be a list, got {type(value).__name__}")
        return parse_telemetry(samples, changes)

    def offer(self, samples: list[Sample], changes: list[ChangeEvent]) -> None:
        """Buffer a validated batch, all or nothing; raises `Backpressure` if it does not fit."""
        size = len(samples) + len(changes)
        with self._lock:
            buffered = self._buffered_samples + len(self._changes)
            if buffered + size > self.capacity:
                raise Backpressure(buffered, self.capacity, self.retry_after_s)
            if samples:
                self._samples.append(samples if isinstance(samples, SampleBatch) else SampleBatch(samples))
                self._buffered_samples += len(samples)
            self._changes.extend(changes)

    async def poll(self, now: datetime) -> TelemetryBatch:
        with self._lock:
            pushed, changes = list(self._samples), list(self._changes)
            self._samples.clear()
            self._buffered_samples = 0
            self._changes.clear()
        samples = pushed[0] if len(pushed) == 1 else SampleBatch()
        if len(pushed) > 1:
            for batch in pushed:
                samples.extend_batch(batch)
        return TelemetryBatch(samples=samples, changes=changes)
