"""Helpers for tests that drive real `homeostat` processes (daemon, simulator) on loopback."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, log: Path, stdout: Path | None = None) -> subprocess.Popen[bytes]:
    """`python -m runtime.cli ARGS` in the repo; stderr (and stdout unless given) go to `log`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # output reaches the file as it happens
    command = [sys.executable, "-m", "runtime.cli", *args]
    with log.open("wb") as err:  # the child keeps its own copies of the descriptors
        if stdout is None:
            return subprocess.Popen(command, cwd=REPO, stdout=err, stderr=err, env=env)
        with stdout.open("wb") as out:
            return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, env=env)


def scenario_without_injections(name: str, tmp_path: Path) -> Path:
    """A shipped scenario with its scripted faults removed: the test injects faults itself."""
    text = (REPO / "simulations/scenarios" / f"{name}.yaml").read_text()
    text = re.sub(r"(?ms)^injections:.*?(?=^ground_truth:)", "injections: []\n", text)
    path = tmp_path / f"{name}_no_faults.yaml"
    path.write_text(text)
    return path


def tokens_file(tmp_path: Path, identities: dict[str, tuple[str, list[str]]]) -> Path:
    """A tokens file with `name: (token, roles)` entries, storing only the hashes."""
    lines = ["identities:"]
    for name, (token, roles) in identities.items():
        sha = hashlib.sha256(token.encode()).hexdigest()
        lines.append(f"  - name: {name}\n    roles: [{', '.join(roles)}]\n    token_sha256: {sha}")
    path = tmp_path / "tokens.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    """Poll `fn` until it returns something truthy; HTTP errors count as 'not yet'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM and wait; returns the exit code."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def json_of(response: httpx.Response) -> Any:
    assert response.status_code < 400, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()
