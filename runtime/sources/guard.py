"""Backoff and health for any telemetry source.

A source that fails is retried later (exponential, capped) and reported unhealthy and stale;
its silence is never mistaken for a quiet, healthy service. The loop polls `GuardedSource`
instead of the raw source: `poll` never raises, and `health(now)` says how fresh the data is.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from runtime.ports import TelemetryBatch, TelemetrySource

log = logging.getLogger(__name__)

_MAX_ERROR_TEXT = 500
_USERINFO = re.compile(r"(://)[^/@\s]+@")


def redact(text: str) -> str:
    """Hide credentials written into URLs (``https://user:password@host``) before text is logged or served."""
    return _USERINFO.sub(r"\1***@", text)


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """What the daemon knows about one source at one instant."""

    name: str
    healthy: bool
    polled_once: bool
    last_success: datetime | None
    last_error: str | None
    consecutive_failures: int
    staleness_s: float | None
    """Seconds since the last successful poll; None if it never succeeded."""
    next_attempt: datetime | None
    warnings: tuple[str, ...] = ()
    """Partial failures of the last poll (e.g. one PromQL query of several); data still flowed."""

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "healthy": self.healthy,
            "polled_once": self.polled_once,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "staleness_s": self.staleness_s,
            "next_attempt": self.next_attempt.isoformat() if self.next_attempt else None,
            "warnings": list(self.warnings),
        }


class GuardedSource:
    """Wraps a `TelemetrySource` with capped exponential backoff and a health status.

    `poll(now)` returns the source's batch, or an empty batch while the source is failing or
    backing off. The source is healthy only if its last attempt succeeded in full (no partial
    `poll_warnings` from the source) and that success is younger than `stale_after_s`.
    """

    def __init__(
        self,
        source: TelemetrySource,
        *,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        stale_after_s: float = 60.0,
    ) -> None:
        if base_delay_s <= 0 or max_delay_s < base_delay_s:
            raise ValueError(
                f"source {source.name!r}: backoff needs 0 < base_delay_s <= max_delay_s "
                f"(got base={base_delay_s}, max={max_delay_s})"
            )
        if stale_after_s <= 0:
            raise ValueError(f"source {source.name!r}: stale_after_s must be > 0 (got {stale_after_s})")
        self.source = source
        self.name = source.name
        self._base = base_delay_s
        self._max = max_delay_s
        self._stale_after = stale_after_s
        self._failures = 0
        self._last_success: datetime | None = None
        self._last_error: str | None = None
        self._next_attempt: datetime | None = None
        self._polled_once = False
        self._warnings: tuple[str, ...] = ()

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures (failures >= 1)."""
        return min(self._max, self._base * 2.0 ** min(failures - 1, 62))

    async def poll(self, now: datetime) -> TelemetryBatch:
        """Poll the source unless it is backing off; never raises."""
        if self._next_attempt is not None and now < self._next_attempt:
            return TelemetryBatch()
        try:
            batch = await self.source.poll(now)
        except Exception as exc:
            self._failures += 1
            delay = self.backoff_delay(self._failures)
            self._next_attempt = now + timedelta(seconds=delay)
            self._last_error = redact(f"{type(exc).__name__}: {exc}")[:_MAX_ERROR_TEXT]
            self._polled_once = True
            log.warning(
                "source %s failed (%d in a row), next attempt in %.1fs: %s",
                self.name,
                self._failures,
                delay,
                self._last_error,
            )
            return TelemetryBatch()
        if self._failures:
            log.info("source %s recovered after %d failures", self.name, self._failures)
        self._failures = 0
        self._next_attempt = None
        self._last_error = None
        self._last_success = now
        self._polled_once = True
        self._warnings = tuple(redact(str(w)) for w in getattr(self.source, "poll_warnings", ()) or ())
        return batch

    def health(self, now: datetime) -> SourceHealth:
        staleness = (now - self._last_success).total_seconds() if self._last_success else None
        healthy = (
            self._failures == 0 and not self._warnings and staleness is not None and staleness <= self._stale_after
        )
        return SourceHealth(
            name=self.name,
            healthy=healthy,
            polled_once=self._polled_once,
            last_success=self._last_success,
            last_error=self._last_error,
            consecutive_failures=self._failures,
            staleness_s=staleness,
            next_attempt=self._next_attempt,
            warnings=self._warnings,
        )
