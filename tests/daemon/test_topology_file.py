"""`topology:` in homeostat.yaml: the operator's picture of the fleet, for deployments without a simulator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain import Sample, VirtualClock
from runtime.config import ConfigFileError, load_config
from runtime.daemon import Daemon
from tests._daemon_harness import REPO

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

FLEET = """\
services:
  chat:
    provider: llm-alpha
    backup_provider: llm-beta
    model_version: m-2
    prompt_version: v7
    traffic_share: 0.6
  summarizer: {provider: llm-alpha, backup_provider: llm-beta, model_version: s-1,
               prompt_version: v3, traffic_share: 0.4}
edges:
  - [chat, retriever]
"""


def _config(tmp_path: Path, topology: str | None = FLEET) -> Path:
    lines = [f"database_url: sqlite:///{tmp_path / 'h.db'}", f"constitution: {REPO / 'constitution.yaml'}"]
    if topology is not None:
        (tmp_path / "fleet.yaml").write_text(topology)
        lines.append("topology: fleet.yaml")  # relative to the config file's folder
    lines += ["sources:", "  - type: push"]
    path = tmp_path / "homeostat.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_daemon_starts_with_the_files_services_providers_and_call_graph(tmp_path: Path) -> None:
    """Services, providers, backups and edges from the file are the daemon's topology before any source answers."""
    daemon = Daemon(load_config(_config(tmp_path)), clock=VirtualClock(T0))
    try:
        topology = daemon.loop.telemetry.topology()
        assert topology.on_provider("llm-alpha") == ["chat", "summarizer"]
        assert topology.services["chat"].backup_provider == "llm-beta"
        assert topology.callers_of("retriever") == ["chat"]
        assert topology.services["retriever"].provider == ""  # named by an edge only: no wiring known
    finally:
        daemon.loop.close()


def test_a_bad_topology_file_is_refused_at_start_with_its_own_file_and_line(tmp_path: Path) -> None:
    """A traffic share above 1 and a one-ended edge are both reported, each at its line in the topology file."""
    bad = FLEET.replace("traffic_share: 0.6", "traffic_share: 1.5").replace("[chat, retriever]", "[chat]")
    with pytest.raises(ConfigFileError) as info:
        load_config(_config(tmp_path, bad))
    errors = [str(e) for e in info.value.errors]
    fleet = tmp_path / "fleet.yaml"
    assert any(e.startswith(f"{fleet}:7: services.chat.traffic_share:") for e in errors), errors
    assert any(e.startswith(f"{fleet}:11: edges[0]: must be [caller, callee]") for e in errors), errors


def test_a_missing_topology_file_is_named_on_its_config_line(tmp_path: Path) -> None:
    """`topology:` naming a file that does not exist stops the start at that line of homeostat.yaml."""
    config = _config(tmp_path)
    (tmp_path / "fleet.yaml").unlink()
    with pytest.raises(ConfigFileError) as info:
        load_config(config)
    assert [str(e) for e in info.value.errors] == [f"{config}:3: topology: file not found: {tmp_path / 'fleet.yaml'}"]


async def _feed(daemon: Daemon, clock: VirtualClock, minutes: int, errors: float, latency: float) -> None:
    assert daemon.sources.push is not None
    for _ in range(minutes * 6):
        clock.advance(10)
        wobble = 1 + 0.02 * ((clock.now().second // 10) % 3)
        daemon.sources.push.offer(
            [
                Sample(service=s, signal=g, ts=clock.now(), value=v * wobble)
                for s in ("chat", "summarizer")
                for g, v in (("error_rate", errors), ("latency_p95_ms", latency))
            ],
            [],
        )
        await daemon.poll(0)
        await daemon.tick()


def _proposals_after_a_provider_outage(config: Path) -> list[tuple[str, str]]:
    """30 quiet minutes, then errors 1 % -> 30 % and p95 0.8 -> 2.5 s on both services for 5 minutes."""
    clock = VirtualClock(T0)
    daemon = Daemon(load_config(config), clock=clock)
    try:
        asyncio.run(_feed(daemon, clock, 30, errors=0.01, latency=800.0))
        asyncio.run(_feed(daemon, clock, 5, errors=0.3, latency=2500.0))
        proposals = [r.payload["proposal"] for r in daemon.loop.audit.records(kind="proposal")]
        return [(p["action"], p["target"]) for p in proposals]
    finally:
        daemon.loop.close()


def test_with_the_file_a_provider_outage_without_a_simulator_is_failed_over(tmp_path: Path) -> None:
    """Both services on llm-alpha failing together is a provider outage once the file says they share it."""
    assert _proposals_after_a_provider_outage(_config(tmp_path)) == [("failover_provider", "llm-alpha")]


def test_without_the_file_the_same_outage_can_only_be_escalated(tmp_path: Path) -> None:
    """With no topology the daemon knows no providers, so it pages a person instead of acting."""
    proposals = _proposals_after_a_provider_outage(_config(tmp_path, topology=None))
    assert proposals and all(action == "escalate" for action, _target in proposals)
