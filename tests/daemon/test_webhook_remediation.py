"""`homeostat run` sends a remediation to a `tools.webhook_targets` endpoint (a loopback receiver).

The simulator plays a provider outage with no `tools.simulator_url` configured, so the only way
an action leaves the daemon is the webhook target keyed `llm-*`. Its bearer token comes from an
environment variable named in the config (`headers_env`); the receiver checks it, and the
audit log records the action's result as the webhook's answer.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.audit import AuditLog
from runtime.simulate import SimulatorDriver
from tests._daemon_harness import (
    LoopbackJSONServer,
    Seen,
    cli,
    daemon_config,
    free_port,
    json_of,
    procs,
    scenario_without_injections,
    start_simulator,
    stop,
    wait_for,
)

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


def _remediate(request: Seen) -> tuple[int, Any]:
    """The remediation endpoint's answer: 200 only with the right bearer token, and a ticket per call."""
    ok = request.headers.get("authorization") == f"Bearer {TOKEN}"
    return (200 if ok else 401), {"accepted": ok, "ticket": f"chg-{request.number}"}


@pytest.fixture
def receiver() -> Iterator[LoopbackJSONServer]:
    with LoopbackJSONServer(_remediate) as server:
        yield server


def test_a_remediation_goes_to_the_configured_webhook_target(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], receiver: LoopbackJSONServer
) -> None:
    """A provider outage's failover is POSTed to the webhook target with its idempotency key and env-held token."""
    sim = start_simulator(tmp_path, procs, scenario_without_injections("provider_outage", tmp_path))
    constitution = tmp_path / "constitution.yaml"
    constitution.write_text(FAILOVER_ON_ITS_OWN)
    db = tmp_path / "homeostat.db"
    api_port = free_port()
    target = {
        "url": f"{receiver.url}/remediate",
        "actions": ["failover_provider"],
        "headers": {"X-Source": "homeostat"},
        "headers_env": {"Authorization": "REMEDIATION_AUTH"},
    }
    config = daemon_config(
        tmp_path,
        sim=sim,
        api_port=api_port,
        db=db,
        constitution=constitution,
        act_on_simulator=False,
        webhook_targets={"llm-*": target},
    )
    log = tmp_path / "daemon.log"
    daemon = cli(
        "run", "--config", str(config), "--clock", "simulator", log=log, env={"REMEDIATION_AUTH": f"Bearer {TOKEN}"}
    )
    procs.append(daemon)
    driver = SimulatorDriver(sim, 10.0)
    driver.start()
    try:
        api = f"http://127.0.0.1:{api_port}"
        wait_for("the daemon's API", lambda: httpx.get(f"{api}/readyz").status_code == 200, 90)
        outage = {"fault": "provider_outage", "provider": "llm-alpha", "severity": 1.0, "shape": "sudden"}
        json_of(httpx.post(f"{sim}/faults", json=outage))
        wait_for("a remediation at the webhook target", lambda: receiver.requests, 150, 0.5)
    finally:
        driver.stop()
        assert stop(daemon) == 0, log.read_text()[-3000:]
    call = receiver.requests[0]
    path, headers, body = call.path, call.headers, call.json()
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
