"""The daemon's picture of the fleet's wiring follows change events (a failover, a rollback), not just its start-up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from domain import ChangeEvent, ChangeKind, ServiceInfo, Topology, VirtualClock
from runtime.config import load_config
from runtime.daemon import Daemon
from tests._daemon_harness import REPO

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _daemon(tmp_path: Path) -> Daemon:
    config = tmp_path / "homeostat.yaml"
    config.write_text(
        f"""database_url: sqlite:///{tmp_path / "h.db"}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: push
"""
    )
    daemon = Daemon(load_config(config), clock=VirtualClock(T0))
    daemon.loop.telemetry.set_topology(
        Topology(
            services={
                "chat": ServiceInfo(
                    name="chat",
                    provider="llm-alpha",
                    backup_provider="llm-beta",
                    model_version="m-2",
                    previous_model_version="m-1",
                    prompt_version="v7",
                    traffic_share=1.0,
                )
            }
        )
    )
    return daemon


def _change(kind: ChangeKind, old: str, new: str, minute: int) -> ChangeEvent:
    return ChangeEvent(
        id=f"chg-{kind.value}-{minute}",
        service="chat",
        kind=kind,
        from_value=old,
        to_value=new,
        ts=T0.replace(minute=minute),
        actor="homeostat",
    )


async def _push(daemon: Daemon, *changes: ChangeEvent) -> None:
    assert daemon.sources.push is not None
    daemon.sources.push.offer([], list(changes))
    await daemon.poll(0)


def test_a_failover_and_a_rollback_move_the_service_in_the_daemons_topology(tmp_path: Path) -> None:
    """After a provider failover and a model rollback arrive as change events, the topology shows the new wiring."""
    daemon = _daemon(tmp_path)
    try:
        asyncio.run(_push(daemon))  # first poll: the start-up topology is in force
        asyncio.run(
            _push(
                daemon,
                _change(ChangeKind.PROVIDER, "llm-alpha", "llm-beta", 10),
                _change(ChangeKind.MODEL_VERSION, "m-2", "m-1", 11),
            )
        )
        chat = daemon.loop.telemetry.topology().services["chat"]
        assert (chat.provider, chat.backup_provider) == ("llm-beta", "llm-alpha")
        assert (chat.model_version, chat.previous_model_version) == ("m-1", "m-2")
        assert daemon.loop.telemetry.topology().on_provider("llm-beta") == ["chat"]
    finally:
        daemon.loop.close()


def test_a_change_on_a_service_the_daemon_does_not_know_leaves_the_topology_alone(tmp_path: Path) -> None:
    """A change event for an unknown service is recorded as telemetry but invents no wiring."""
    daemon = _daemon(tmp_path)
    try:
        asyncio.run(_push(daemon))
        stranger = _change(ChangeKind.PROVIDER, "llm-alpha", "llm-beta", 12).model_copy(update={"service": "other"})
        asyncio.run(_push(daemon, stranger))
        assert set(daemon.loop.telemetry.topology().services) == {"chat"}
        assert daemon.loop.telemetry.topology().services["chat"].provider == "llm-alpha"
    finally:
        daemon.loop.close()
