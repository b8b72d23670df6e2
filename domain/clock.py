"""Injected time: the loop never reads the wall clock itself, so a scenario replays identically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from domain.types import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock, for the daemon."""

    def now(self) -> datetime:
        return utcnow()


class VirtualClock:
    """A clock that moves only when told to: simulations and tests."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("VirtualClock start must be timezone-aware")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (asked to advance {seconds}s)")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, instant: datetime) -> None:
        if instant < self._now:
            raise ValueError(f"a clock cannot go backwards ({instant} < {self._now})")
        self._now = instant
