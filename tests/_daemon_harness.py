"""Helpers for tests that drive real `homeostat` processes (daemon, simulator) on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(
    *args: str, log: Path, stdout: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m runtime.cli ARGS` in the repo; stderr (and stdout unless given) go to `log`.

    `env` adds (or overrides) environment variables: the secrets a config names, for instance.
    """
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}  # output reaches the file as it happens
    command = [sys.executable, "-m", "runtime.cli", *args]
    with log.open("wb") as err:  # the child keeps its own copies of the descriptors
        if stdout is None:
            return subprocess.Popen(command, cwd=REPO, stdout=err, stderr=err, env=environment)
        with stdout.open("wb") as out:
            return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, env=environment)


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


def bearer(token: str) -> dict[str, str]:
    """The Authorization header presenting `token`."""
    return {"Authorization": f"Bearer {token}"}


# -- a simulator with history, and the daemon's config ----------------------------------------


def start_simulator(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], scenario: Path, history_s: float = 40 * 60
) -> str:
    """`homeostat sim serve` on `scenario` at speed 0, ready and `history_s` of telemetry in; returns its URL.

    The process joins `procs` (killed at the end if still running); its log is `tmp_path/sim.log`.
    """
    port = free_port()
    procs.append(
        cli("sim", "serve", "--scenario", str(scenario), "--port", str(port), "--speed", "0",
            log=tmp_path / "sim.log")
    )  # fmt: skip
    sim = f"http://127.0.0.1:{port}"
    wait_for("the simulator", lambda: httpx.get(f"{sim}/healthz").status_code == 200, 60)
    json_of(httpx.post(f"{sim}/advance", json={"seconds": history_s}, timeout=120))  # detector history
    return sim


def daemon_config(
    tmp_path: Path,
    *,
    sim: str,
    api_port: int,
    db: Path,
    constitution: Path = REPO / "constitution.yaml",
    sources: list[dict[str, Any]] | None = None,
    act_on_simulator: bool = True,
    webhook_targets: dict[str, dict[str, Any]] | None = None,
    tokens: dict[str, tuple[str, list[str]]] | None = None,
    notifications: dict[str, Any] | None = None,
    diagnoser: dict[str, Any] | None = None,
) -> Path:
    """Write `tmp_path/homeostat.yaml` for a fast `homeostat run` on SQLite `db`, serving its API on `api_port`.

    `sources` default to polling the simulator at `sim` every 0.5 s. Actions go to the simulator
    unless `act_on_simulator` is False; `webhook_targets` is the `tools.webhook_targets` section.
    `tokens` (name -> (token, roles)) become a tokens file behind `auth`; `notifications` and
    `diagnoser` are those sections as given. Secrets belong in environment variables named here
    (`${NAME}`, `*_env`), set when the daemon starts (`cli(..., env=...)`), never in this file.
    """
    tools: dict[str, Any] = {"allowed_targets": ["*"]}
    if act_on_simulator:
        tools["simulator_url"] = sim
    if webhook_targets is not None:
        tools["webhook_targets"] = webhook_targets
    config: dict[str, Any] = {
        "database_url": f"sqlite:///{db}",
        "constitution": str(constitution),
        "sources": sources if sources is not None else [{"type": "simulator", "url": sim, "interval_s": 0.5}],
        "tools": tools,
    }
    if tokens is not None:
        config["auth"] = {"tokens_file": str(tokens_file(tmp_path, tokens))}
    if notifications is not None:
        config["notifications"] = notifications
    config["api"] = {"port": api_port}
    config["intervals"] = {"poll_s": 0.5, "approval_expiry_s": 0.5, "verification_s": 0.5, "checkpoint_s": 2}
    if diagnoser is not None:
        config["diagnoser"] = diagnoser
    config["grace_period_s"] = 5
    path = tmp_path / "homeostat.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- a loopback JSON endpoint (webhook receiver, LLM, remediation target) ---------------------


@dataclass(frozen=True)
class Seen:
    """One request a `LoopbackJSONServer` received."""

    number: int  #: 1 for the server's first request, 2 for the next, ...
    method: str
    path: str
    headers: dict[str, str]  #: names lower-cased
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


#: What the server answers a request with: (HTTP status, JSON-able body).
Answer = Callable[[Seen], tuple[int, Any]]


class LoopbackJSONServer:
    """A JSON HTTP server on 127.0.0.1 that records every request and answers it with `answer(request)`.

    A context manager: it serves from `__enter__` on, and `__exit__` stops it, closes its socket and
    joins its thread. Requests are served on threads of their own; the record is kept under a lock,
    so reading `requests` (or `paths`, `headers`, `bodies`) while the daemon calls is safe.
    An `answer` that raises becomes a 500 naming the error.
    """

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, while serving."""
        if self._server is None:
            raise RuntimeError("the loopback server is not serving: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Seen]:
        """The requests received so far, in order (a copy)."""
        with self._lock:
            return list(self._seen)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    @property
    def headers(self) -> list[dict[str, str]]:
        return [r.headers for r in self.requests]

    @property
    def bodies(self) -> list[str]:
        return [r.body for r in self.requests]

    def _record(self, method: str, path: str, headers: dict[str, str], body: str) -> Seen:
        with self._lock:
            seen = Seen(len(self._seen) + 1, method, path, headers, body)
            self._seen.append(seen)
        return seen

    def __enter__(self) -> LoopbackJSONServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = owner._record(self.command, self.path, headers, body)
                try:
                    status, value = owner._answer(seen)
                except Exception as error:  # the test's answer is wrong: say so to the caller
                    status, value = 500, {"error": f"loopback answer failed: {error!r}"}
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *_args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None
