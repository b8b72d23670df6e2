"""The leader lease: among replicas on one database, only the holder polls, detects and acts.

A lease is one row of ``leader_lease`` (name, holder, epoch, expires_at). The holder renews
it well before it expires; anyone may take it once it has expired, which bumps the epoch.
Expiry is judged by the database server's clock, so replicas' clocks never have to agree.
The holder also keeps a local, monotonic deadline (renewal start + TTL - margin) and stops
acting past it even if it cannot reach the database: a partitioned leader fences itself
before any other replica can acquire the lease. `check()` is called before every action.

Why a row and not a PostgreSQL advisory lock: an advisory lock lives as long as the session,
and a half-dead TCP session can keep it for minutes (keepalive timeouts) or lose it silently;
a lease row expires at a bounded, stated time, survives connection poolers, works the same
on SQLite, and gives a monotonically increasing epoch usable as a fencing token.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine, text
from sqlmodel import Field, SQLModel

log = structlog.get_logger("homeostat.leader")

__all__ = ["LeaderLease", "LeaderLeaseRow", "LeadershipLost", "LeaseConfig", "default_holder_id"]


class LeadershipLost(RuntimeError):
    """This replica does not (or may no longer) hold the lease, so it must not act."""


class LeaderLeaseRow(SQLModel, table=True):
    """One named lease; `epoch` grows by one each time a different holder takes it."""

    __tablename__ = "leader_lease"

    name: str = Field(primary_key=True)
    holder: str
    epoch: int
    expires_at: float  # seconds since the Unix epoch, by the database server's clock
    acquired_at: float


@dataclass(frozen=True)
class LeaseConfig:
    """How long a lease lasts and how often it is renewed."""

    ttl_s: float = 15.0
    """Seconds a lease lasts without renewal: the longest a dead leader blocks a takeover."""
    renew_s: float = 5.0
    """Seconds between renewals (and, for followers, between acquisition attempts); < ttl_s / 2."""
    margin_s: float = 2.0
    """The holder stops acting this many seconds before its lease could expire (clock drift,
    GC pauses, the time an action's request takes to leave)."""

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or self.renew_s <= 0 or self.margin_s < 0:
            raise ValueError(
                f"lease: ttl_s and renew_s must be > 0 and margin_s >= 0, got "
                f"ttl_s={self.ttl_s}, renew_s={self.renew_s}, margin_s={self.margin_s}"
            )
        if self.renew_s * 2 > self.ttl_s:
            raise ValueError(
                f"lease: renew_s ({self.renew_s}) must be at most half of ttl_s ({self.ttl_s}) "
                "so one missed renewal does not lose the lease"
            )
        if self.margin_s + self.renew_s >= self.ttl_s:
            raise ValueError(
                f"lease: margin_s ({self.margin_s}) + renew_s ({self.renew_s}) must be below ttl_s ({self.ttl_s}), "
                "or the holder would fence itself between renewals"
            )


def default_holder_id() -> str:
    """A replica identity unique per process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return "extract(epoch from clock_timestamp())"
    return "((julianday('now') - 2440587.5) * 86400.0)"


class LeaderLease:
    """Acquire, renew, check and release one named lease on a SQL database."""

    def __init__(
        self,
        engine: Engine,
        config: LeaseConfig | None = None,
        *,
        name: str = "homeostat",
        holder: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self.config = config or LeaseConfig()
        self.name = name
        self.holder = holder or default_holder_id()
        self._monotonic = monotonic
        self._epoch: int | None = None
        self._local_deadline = 0.0
        SQLModel.metadata.create_all(engine, tables=[LeaderLeaseRow.__table__])  # type: ignore[attr-defined]
        now = _now_sql(engine.dialect.name)
        self._acquire_sql = text(
            f"""
            INSERT INTO leader_lease (name, holder, epoch, expires_at, acquired_at)
            VALUES (:name, :holder, 1, {now} + :ttl, {now})
            ON CONFLICT (name) DO UPDATE SET
                epoch = CASE WHEN leader_lease.holder = :holder THEN leader_lease.epoch
                             ELSE leader_lease.epoch + 1 END,
                acquired_at = CASE WHEN leader_lease.holder = :holder THEN leader_lease.acquired_at
                                   ELSE excluded.acquired_at END,
                holder = :holder,
                expires_at = excluded.expires_at
            WHERE leader_lease.holder = :holder OR leader_lease.expires_at < {now}
            RETURNING epoch
            """
        )
        self._check_sql = text(
            f"SELECT 1 FROM leader_lease WHERE name = :name AND holder = :holder AND epoch = :epoch "
            f"AND expires_at > {now} + :margin"
        )
        self._release_sql = text(
            f"UPDATE leader_lease SET expires_at = {now} - 1 WHERE name = :name AND holder = :holder AND epoch = :epoch"
        )

    @property
    def epoch(self) -> int | None:
        """The fencing token of the lease this replica holds, or None."""
        return self._epoch if self.holds() else None

    def holds(self) -> bool:
        """True while this replica holds the lease by its own clock (no database round trip)."""
        return self._epoch is not None and self._monotonic() < self._local_deadline

    def acquire_or_renew(self) -> bool:
        """Take the lease if it is free or expired, or extend it if held; True if held afterwards."""
        started = self._monotonic()
        try:
            with self._engine.begin() as conn:
                row = conn.execute(
                    self._acquire_sql, {"name": self.name, "holder": self.holder, "ttl": self.config.ttl_s}
                ).first()
        except Exception as exc:  # the database is unreachable: keep the local deadline, which runs out
            log.warning("lease.renew_failed", holder=self.holder, error=f"{type(exc).__name__}: {exc}")
            return self.holds()
        if row is None:
            if self._epoch is not None:
                log.error("lease.lost", holder=self.holder, epoch=self._epoch)
            self._epoch = None
            return False
        epoch = int(row[0])
        if self._epoch != epoch:
            log.info("lease.acquired", holder=self.holder, epoch=epoch, ttl_s=self.config.ttl_s)
        self._epoch = epoch
        self._local_deadline = started + self.config.ttl_s - self.config.margin_s
        return True

    def check(self) -> None:
        """Raise `LeadershipLost` unless this replica holds the lease, by its clock and the database's."""
        if not self.holds():
            raise LeadershipLost(f"replica {self.holder} does not hold the lease {self.name!r}; not acting")
        try:
            with self._engine.connect() as conn:
                found = conn.execute(
                    self._check_sql,
                    {"name": self.name, "holder": self.holder, "epoch": self._epoch, "margin": self.config.margin_s},
                ).first()
        except Exception as exc:
            raise LeadershipLost(
                f"replica {self.holder} cannot confirm its lease ({type(exc).__name__}: {exc})"
            ) from exc
        if found is None:
            self._epoch = None
            raise LeadershipLost(
                f"replica {self.holder} lost the lease {self.name!r} (expired or taken by another replica)"
            )

    def release(self) -> None:
        """Give the lease up now (graceful shutdown) so a follower need not wait for it to expire."""
        if self._epoch is None:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(self._release_sql, {"name": self.name, "holder": self.holder, "epoch": self._epoch})
        except Exception as exc:
            log.warning("lease.release_failed", holder=self.holder, error=f"{type(exc).__name__}: {exc}")
        self._epoch = None
        log.info("lease.released", holder=self.holder)

    def current(self) -> LeaderLeaseRow | None:
        """The lease row as stored (who holds it, which epoch, until when)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                text("SELECT name, holder, epoch, expires_at, acquired_at FROM leader_lease WHERE name = :name"),
                {"name": self.name},
            ).first()
        if row is None:
            return None
        return LeaderLeaseRow(name=row[0], holder=row[1], epoch=row[2], expires_at=row[3], acquired_at=row[4])
