"""What the HTTP API reads besides the `IncidentService`: status, audit queries, access audit.

Small protocols in the style of `runtime.ports`, so the API can be tested with fakes and the
daemon can implement them wherever it likes. `DaemonStatus` is a ready-made `StatusProvider`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from domain import Clock
from runtime.sources.guard import GuardedSource


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)
    """Per check, ``"ok"`` or what is wrong."""


class StatusProvider(Protocol):
    def constitution(self) -> dict[str, Any]:
        """Digest of the constitution in force, when it was last (re)loaded and with what result."""
        ...

    def readiness(self) -> Readiness: ...

    def sources(self) -> list[dict[str, Any]]:
        """Health of every telemetry source (see `SourceHealth.as_dict`)."""
        ...


@runtime_checkable
class AuditQuery(Protocol):
    def query_audit(
        self, *, incident: str | None, kind: str | None, after_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Audit records in sequence order, filtered; each a JSON-able dict."""
        ...


@runtime_checkable
class AccessAudit(Protocol):
    def access_denied(self, *, who: str | None, method: str, path: str, status: int, reason: str) -> None:
        """Record a refused API call (401/403) in the audit log."""
        ...


class DaemonStatus:
    """A `StatusProvider` for the daemon: sources' health, a database probe, the constitution.

    Ready when every source has been polled at least once and `db_check` returns without raising.
    """

    def __init__(self, clock: Clock, sources: Sequence[GuardedSource], db_check: Callable[[], None]) -> None:
        self._clock = clock
        self._sources = list(sources)
        self._db_check = db_check
        self._lock = threading.Lock()
        self._constitution: dict[str, Any] = {
            "digest": None,
            "path": None,
            "loaded_at": None,
            "last_reload_at": None,
            "last_reload_ok": None,
            "last_reload_error": None,
        }

    def constitution_loaded(self, *, digest: str, path: str, at: datetime) -> None:
        """A constitution was loaded and is now in force."""
        with self._lock:
            self._constitution.update(
                digest=digest,
                path=path,
                loaded_at=at.isoformat(),
                last_reload_at=at.isoformat(),
                last_reload_ok=True,
                last_reload_error=None,
            )

    def constitution_reload_failed(self, *, error: str, at: datetime) -> None:
        """A reload was refused; the previous constitution stays in force."""
        with self._lock:
            self._constitution.update(last_reload_at=at.isoformat(), last_reload_ok=False, last_reload_error=error)

    def constitution(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._constitution)

    def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        now = self._clock.now()
        for source in self._sources:
            health = source.health(now)
            checks[f"source:{source.name}"] = "ok" if health.polled_once else "not polled yet"
        try:
            self._db_check()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}: {exc}"[:300]
        with self._lock:
            checks["constitution"] = "ok" if self._constitution["digest"] else "not loaded"
        return Readiness(ready=all(v == "ok" for v in checks.values()), checks=checks)

    def sources(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        return [s.health(now).as_dict() for s in self._sources]
