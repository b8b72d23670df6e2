"""Fixtures for the console tests: a served console over the real loop on the simulated fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console._world import World, build_world, serving


def failover_pending(world: World) -> dict | None:
    """The pending approval for the scenario's ground-truth failover, if it is waiting."""
    truth = world.scenario.ground_truth
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


@pytest.fixture(scope="session")
def paused_outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    """One served world shared by tests that only read or are refused: the failover stays pending.

    Tests using it must not answer the approval (use `outage` for that).
    """
    world = build_world(tmp_path_factory.mktemp("console") / "console.sqlite")
    with serving(world):
        world.run_until(lambda: failover_pending(world) is not None)
        pending = failover_pending(world)
        assert pending is not None
        yield world, pending["id"]
