"""`homeostat run --simulate`: the daemon against the HTTP simulator, to try the loop by hand.

Starts `homeostat sim serve --speed 0` as a child process on a free loopback port, gives it
detector history (virtual time jumps to a little before the scenario's first fault), then
moves its time at `--speed` x real time from a thread (`SimulatorDriver`); writes a config,
a fresh SQLite database and a tokens file (hashes only) into a temporary folder, prints an
approver and a viewer token, and runs the daemon with its clock following the simulator's.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from runtime.config import HomeostatConfig, load_config

REPO = Path(__file__).resolve().parents[1]
#: Virtual seconds of history the simulator plays before the daemon starts (detector warm-up).
WARMUP_S = 30 * 60.0
#: With a scripted fault, virtual time starts this long before it, so it fires soon after start.
LEAD_S = 120.0


class SimulateError(RuntimeError):
    """The simulated set-up could not start (unknown scenario, simulator did not come up)."""


def resolve_scenario(name: str) -> Path:
    """A scenario file path, or the name of a shipped one (`provider_outage`)."""
    from simulations import builtin_scenarios

    path = Path(name)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        return path
    shipped = {p.stem: p for p in builtin_scenarios()}
    if name in shipped:
        return shipped[name]
    raise SimulateError(
        f"--scenario: no shipped scenario named {name!r} and no such YAML file; shipped: {sorted(shipped)}"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def warmup_seconds(scenario: Path) -> float:
    """How far to advance the simulator before the daemon starts."""
    from simulations import load_scenario

    injections = load_scenario(scenario).injections
    if not injections:
        return WARMUP_S
    first = min(float(i.at) for i in injections)
    return max(0.0, first - LEAD_S)


def new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(24)
    return token, hashlib.sha256(token.encode()).hexdigest()


class SimulatorDriver:
    """Moves a simulator served with `--speed 0` forward at `speed` x real time via `POST /advance`.

    Driving time from outside (rather than `sim serve --speed N`) lets a warm-up jump and the
    real-time run share one timeline: the server's own clock pauses after a jump until real
    time catches up with it.
    """

    def __init__(self, url: str, speed: float, *, every_s: float = 0.25) -> None:
        self._url = url.rstrip("/") + "/advance"
        self._speed = speed
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-driver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        with httpx.Client(timeout=30) as client:
            while not self._stop.wait(self._every):
                now = time.monotonic()
                try:
                    client.post(self._url, json={"seconds": (now - last) * self._speed}).raise_for_status()
                    last = now
                except httpx.HTTPError:  # retried next turn with the time owed so far
                    continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


class SimulatedSetup:
    """The simulator child process and the files the daemon reads, in one temporary folder."""

    def __init__(self, *, port: int, scenario: str, speed: float, workdir: Path | None = None) -> None:
        if speed <= 0:
            raise SimulateError(f"--speed: must be > 0 (virtual seconds per real second), got {speed:g}")
        self.port = port
        self.speed = speed
        self.scenario = resolve_scenario(scenario)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="homeostat-simulate-"))
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.approver_token, approver_sha = new_token()
        self.viewer_token, viewer_sha = new_token()
        self.tokens_file = self.workdir / "tokens.yaml"
        self.tokens_file.write_text(
            "identities:\n"
            f"  - name: you-approver\n    roles: [approver, viewer]\n    token_sha256: {approver_sha}\n"
            f"  - name: you-viewer\n    roles: [viewer]\n    token_sha256: {viewer_sha}\n"
        )
        self.tokens_file.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None
        self.driver = SimulatorDriver(self.sim_url, speed)

    def start_simulator(self, timeout_s: float = 60.0) -> None:
        log_path = self.workdir / "simulator.log"
        args = ["sim", "serve", "--scenario", str(self.scenario), "--port", str(self.sim_port)]
        with log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runtime.cli", *args, "--speed", "0"],
                cwd=REPO,
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SimulateError(f"the simulator exited ({self.process.returncode}): {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.sim_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SimulateError(
                f"the simulator did not answer on {self.sim_url} within {timeout_s:g} s; see {log_path}"
            )
        warmup = warmup_seconds(self.scenario)
        if warmup > 0:
            httpx.post(f"{self.sim_url}/advance", json={"seconds": warmup}, timeout=120).raise_for_status()
        self.driver.start()

    def config(self) -> HomeostatConfig:
        path = self.workdir / "homeostat.yaml"
        path.write_text(
            f"""database_url: sqlite:///{self.workdir / "homeostat.db"}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: simulator
    url: {self.sim_url}
    interval_s: 1
tools:
  simulator_url: {self.sim_url}
  allowed_targets: ["*"]
auth:
  tokens_file: {self.tokens_file}
api:
  host: 127.0.0.1
  port: {self.port}
intervals: {{poll_s: 1, approval_expiry_s: 1, verification_s: 1, checkpoint_s: 10}}
grace_period_s: 5
"""
        )
        return load_config(path)

    def banner(self) -> str:
        api = f"http://127.0.0.1:{self.port}"
        fault = '{"fault": "provider_outage", "provider": "llm-alpha", "severity": 1.0}'
        return "\n".join(
            [
                f"Homeostat simulate: scenario {self.scenario.stem} at {self.speed:g}x real time",
                f"  API:            {api}   (OpenAPI: {api}/docs)",
                f"  console:        {api}/console   (sign in with a token)",
                f"  simulator:      {self.sim_url}",
                f"  approver token: {self.approver_token}",
                f"  viewer token:   {self.viewer_token}",
                f"  files:          {self.workdir}",
                "Try it:",
                f"  curl -X POST {self.sim_url}/faults -H 'content-type: application/json' -d '{fault}'",
                f"  export HOMEOSTAT_URL={api} HOMEOSTAT_TOKEN={self.approver_token}",
                "  homeostat approvals list",
                "  homeostat approvals approve INC-ID --comment 'looks right'",
                "Ctrl-C stops the daemon and the simulator.",
            ]
        )

    def stop(self) -> None:
        self.driver.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def run_simulated(*, port: int, scenario: str, speed: float, echo: Callable[[str], None]) -> None:
    """Start the simulator, print the tokens, run the daemon until SIGTERM/SIGINT, stop the simulator."""
    from runtime.daemon import SimulatorClock, run_daemon

    setup = SimulatedSetup(port=port, scenario=scenario, speed=speed)
    try:
        setup.start_simulator()
        config = setup.config()
        clock = SimulatorClock(setup.sim_url)
        echo(setup.banner())
        try:
            run_daemon(config, clock=clock)
        finally:
            clock.close()
    finally:
        setup.stop()
