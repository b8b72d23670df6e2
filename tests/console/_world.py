"""A console under test: the real control loop over the in-process simulated fleet, the real
API app with the console mounted, served by uvicorn on a free loopback port in a thread.

The test thread advances the fleet in virtual time (`step`, `run_until`); the server thread
answers the browser. A lock serialises loop steps against page reads, as the daemon's single
worker does for its jobs.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from domain import ActionName
from domain.clock import VirtualClock
from runtime.api import create_app
from runtime.api.ports import DaemonStatus
from runtime.auth import TokenAuthority
from runtime.console import ConsoleSettings, mount_console
from runtime.gameday import FleetAdapter
from runtime.loop import ControlLoop, LoopOptions
from runtime.metrics import Metrics
from runtime.ports import TelemetryBatch
from simulations import Scenario, load_scenario
from tools import CallableAdapter, GuardConfig

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "simulations" / "scenarios"

TOKENS = {
    "dana.okafor@sre": ("tok-approver-dana", ("approver",)),
    "vic.viewer@sre": ("tok-viewer-vic", ("viewer",)),
    "aud.itor@risk": ("tok-auditor-aud", ("auditor",)),
}
APPROVER_TOKEN = TOKENS["dana.okafor@sre"][0]
VIEWER_TOKEN = TOKENS["vic.viewer@sre"][0]
AUDITOR_TOKEN = TOKENS["aud.itor@risk"][0]


class _Locked:
    """Forwards calls to `target` under `lock`, so page reads never interleave with a loop step."""

    def __init__(self, target: Any, lock: threading.RLock) -> None:
        self._target, self._lock = target, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                result = attr(*args, **kwargs)
                return list(result) if name == "records" else result

        return call


@dataclass
class World:
    loop: ControlLoop
    scenario: Scenario
    fleet: Any
    clock: VirtualClock
    status: DaemonStatus
    app: FastAPI
    lock: threading.RLock
    url: str = ""

    def step(self) -> None:
        with self.lock:
            batch = self.fleet.advance(self.fleet.interval_s)
            self.clock.set(self.fleet.now)
            if batch.changes:
                self.loop.telemetry.set_topology(self.fleet.topology())
            self.loop.ingest(TelemetryBatch(samples=batch.samples, changes=batch.changes))
            self.loop.tick()

    def run_until(self, done: Callable[[], bool], *, max_steps: int = 1000) -> None:
        for _ in range(max_steps):
            if done():
                return
            self.step()
        raise AssertionError(f"condition not reached in {max_steps} steps (virtual time {self.clock.now()})")

    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.loop.supervisor.pending_approvals()

    def incident(self, incident_id: str) -> dict[str, Any]:
        with self.lock:
            found = self.loop.supervisor.get_incident(incident_id)
        assert found is not None
        return found


def build_world(db: Path, scenario: str = "provider_outage", *, refresh_s: float = 0.5) -> World:
    """The loop on `scenario`, the API app and the console, not yet serving."""
    loaded = load_scenario(SCENARIOS / f"{scenario}.yaml")
    fleet = loaded.build_fleet()
    clock = VirtualClock(fleet.now)
    adapter = FleetAdapter(fleet, clock)
    options = LoopOptions(db=str(db), guard=GuardConfig(allow={a: ["*"] for a in ActionName}))
    loop = ControlLoop(options, clock=clock, adapter=CallableAdapter(adapter.call, adapter.lookup))
    loop.telemetry.set_topology(fleet.topology())
    lock = threading.RLock()
    status = DaemonStatus(clock, [], lambda: None)
    status.constitution_loaded(digest=loop.constitution.digest, path=loop.constitution.source, at=clock.now())
    auth = TokenAuthority.from_tokens(TOKENS)
    service = _Locked(loop.supervisor, lock)
    app = create_app(service, auth=auth, push=None, alertmanager=None, status=status, metrics=Metrics())
    mount_console(
        app,
        service=service,
        auth=auth,
        series=_Locked(loop.telemetry, lock),
        audit=_Locked(loop.audit, lock),
        status=status,
        clock=clock,
        constitution=lambda: loop.constitution,
        settings=ConsoleSettings(refresh_s=refresh_s),
    )
    return World(loop=loop, scenario=loaded, fleet=fleet, clock=clock, status=status, app=app, lock=lock)


@contextmanager
def serving(world: World) -> Iterator[World]:
    """Serve the world's app on a free loopback port; `world.url` is the console's base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(world.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("console test server did not start")
        time.sleep(0.01)
    world.url = f"http://127.0.0.1:{port}/console"
    try:
        yield world
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        world.loop.close()
