"""`homeostat run` sends a remediation to a `tools.webhook_targets` endpoint (a loopback receiver).

The simulator plays a provider outage with no `tools.simulator_url` configured, so the only way
an action leaves the daemon is the webhook target keyed `llm-*`. Its bearer token comes from an
environment variable named in the config (`headers_env`); the receiver checks it, and the
audit log records the action's result as the webhook's answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.audit import AuditLog
from runtime.simulate import SimulatorDriver
from tests._daemon_harness import REPO, cli, free_port, json_of, procs, scenario_without_injections, stop, wait_for

__all__ = ["procs"]  # the fixture, re-exported for pytest

pytestmark = pytest.mark.slow

TOKEN = "remediate-token-1f2e3d4c5b6a"
FAILOVER_ON_ITS_OWN = """\
default: {verdict: approval}
approval_defaults: {approvers: 1, roles: [approver], timeout: 10m, on_timeout: reject}
rules:
  - {id: failover-auto, when: {action: failover_provider}, verdict: auto}
  - {id: escalate-auto, when: {action: escalate}, verdict: auto}
"""


@dataclass
class Receiver:
    """The remediation endpoint: records each call and answers 200 only with the right bearer token."""

    calls: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.calls.append((self.path, headers, body))
                ok = headers.get("authorization") == f"Bearer {TOKEN}"
                data = json.dumps({"accepted": ok, "ticket": f"chg-{len(receiver.calls)}"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    recorder = Receiver()
    server = recorder.serve()
    yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    server.shutdown()
    server.server_close()


def test_a_remediation_goes_to_the_configured_webhook_target(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], receiver: tuple[str, Receiver]
) -> None:
    """A provider outage's failover is POSTed to the webhook target with its idempotency key and env-held token."""
    hook_url, seen = receiver
    sim_port, api_port = free_port(), free_port()
    procs.append(
        cli("sim", "serve", "--scenario", str(scenario_without_injections("provider_outage", tmp_path)),
            "--port", str(sim_port), "--speed", "0", log=tmp_path / "sim.log")
    )  # fmt: skip
    sim = f"http://127.0.0.1:{sim_port}"
    wait_for("the simulator", lambda: httpx.get(f"{sim}/healthz").status_code == 200, 60)
    json_of(httpx.post(f"{sim}/advance", json={"seconds": 40 * 60}, timeout=120))  # detector history
    constitution = tmp_path / "constitution.yaml"
    constitution.write_text(FAILOVER_ON_ITS_OWN)
    db = tmp_path / "homeostat.db"
    config = tmp_path / "homeostat.yaml"
    config.write_text(
        f"""database_url: sqlite:///{db}
constitution: {constitution}
sources:
  - type: simulator
    url: {sim}
    interval_s: 0.5
tools:
  allowed_targets: ["*"]
  webhook_targets:
    "llm-*":
      url: {hook_url}/remediate
      actions: [failover_provider]
      headers: {{X-Source: homeostat}}
      headers_env: {{Authorization: REMEDIATION_AUTH}}
api:
  port: {api_port}
intervals: {{poll_s: 0.5, approval_expiry_s: 0.5, verification_s: 0.5, checkpoint_s: 2}}
grace_period_s: 5
"""
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "REMEDIATION_AUTH": f"Bearer {TOKEN}"}
    log = tmp_path / "daemon.log"
    command = [sys.executable, "-m", "runtime.cli", "run", "--config", str(config), "--clock", "simulator"]
    with log.open("wb") as out:
        daemon = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=out, env=env)
    procs.append(daemon)
    driver = SimulatorDriver(sim, 10.0)
    driver.start()
    try:
        api = f"http://127.0.0.1:{api_port}"
        wait_for("the daemon's API", lambda: httpx.get(f"{api}/readyz").status_code == 200, 90)
        outage = {"fault": "provider_outage", "provider": "llm-alpha", "severity": 1.0, "shape": "sudden"}
        json_of(httpx.post(f"{sim}/faults", json=outage))
        wait_for("a remediation at the webhook target", lambda: seen.calls, 150, 0.5)
    finally:
        driver.stop()
        assert stop(daemon) == 0, log.read_text()[-3000:]
    path, headers, body = seen.calls[0]
    assert path == "/remediate"
    assert (body["action"], body["target"]) == ("failover_provider", "llm-alpha")
    assert headers["authorization"] == f"Bearer {TOKEN}" and headers["x-source"] == "homeostat"
    assert headers["idempotency-key"] == body["idempotency_key"]
    results = {
        r.payload["idempotency_key"]: r.payload["outcome"] for r in AuditLog(str(db)).records(kind="action_result")
    }
    outcome = results[body["idempotency_key"]]
    assert (outcome["status"], outcome["detail"]) == ("succeeded", "HTTP 200")
    assert outcome["effect"] == {"accepted": True, "ticket": "chg-1"}
    assert TOKEN not in log.read_text()
