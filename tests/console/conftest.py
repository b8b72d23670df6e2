"""Fixtures for the console tests: a served console over the real loop on the simulated fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulations import load_scenario
from tests.console._world import SCENARIOS, World, build_world, serving


def failover_pending(world: World) -> dict | None:
    """The pending approval for the scenario's ground-truth failover, if it is waiting."""
    truth = load_scenario(SCENARIOS / "provider_outage.yaml").ground_truth
    for row in world.pending():
        if row.get("action") == "failover_provider" and row.get("target") == truth.provider:
            return row
    return None


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[World, str]]:
    """provider_outage advanced until the failover of its provider awaits approval; yields (world, incident id)."""
    world = build_world(tmp_path / "console.sqlite")
    with serving(world):
        world.run_until(lambda: failover_pending(world) is not None)
        pending = failover_pending(world)
        assert pending is not None
        yield world, pending["id"]
