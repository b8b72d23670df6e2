"""After a restart the daemon does not report its own downtime as every series going silent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain import Sample, VirtualClock
from runtime.config import load_config
from runtime.daemon import Daemon
from tests._daemon_harness import REPO

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SERIES = [("chat", "error_rate", 0.01), ("chat", "latency_p95_ms", 800.0)]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "homeostat.yaml"
    path.write_text(
        f"""database_url: sqlite:///{tmp_path / "h.db"}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: push
"""
    )
    return path


async def _push_and_poll(daemon: Daemon, samples: list[Sample]) -> None:
    assert daemon.sources.push is not None
    daemon.sources.push.offer(samples, [])
    await daemon.poll(0)


def _first_life(config: Path) -> None:
    """Ten minutes of regular samples, then a detector checkpoint (as the checkpoint job does)."""
    clock = VirtualClock(T0)
    daemon = Daemon(load_config(config), clock=clock)
    try:
        for step in range(60):
            ts = T0 + timedelta(seconds=10 * step)
            clock.set(ts)
            samples = [Sample(service=s, signal=g, ts=ts, value=v * (1 + 0.01 * (step % 3))) for s, g, v in SERIES]
            asyncio.run(_push_and_poll(daemon, samples))
            asyncio.run(daemon.tick())
        assert daemon.loop.store.list() == []  # steady telemetry: nothing to report
        asyncio.run(daemon.checkpoint())
    finally:
        daemon.loop.close()


def test_the_first_tick_after_a_restart_reports_no_series_stale_before_the_sources_answered(tmp_path: Path) -> None:
    """Restarted 15 minutes later, the daemon opens no stale incident until a source has answered without the series."""
    config = _config(tmp_path)
    _first_life(config)
    restarted_at = T0 + timedelta(minutes=25)
    clock = VirtualClock(restarted_at)
    daemon = Daemon(load_config(config), clock=clock)
    try:
        asyncio.run(daemon.tick())  # before any poll: our downtime is not the services' silence
        assert daemon.loop.store.list() == []
        asyncio.run(_push_and_poll(daemon, []))  # the source answered, and the series were not in it
        clock.set(restarted_at + timedelta(seconds=1))
        asyncio.run(daemon.tick())
        rows = daemon.loop.store.list()
        assert [r.services for r in rows] == [["chat"]]
        opened = [r for r in daemon.loop.audit.records(kind="incident_opened")]
        assert {a["kind"] for r in opened for a in r.payload["anomalies"]} == {"stale"}
    finally:
        daemon.loop.close()
