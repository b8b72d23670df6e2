"""Two daemon processes on one PostgreSQL: SIGKILL the leader mid-incident, the follower takes over.

Drives real processes: `homeostat sim serve` (the HTTP simulator) and two `homeostat run`.
Measures the takeover time and prints it; the action runs once; the audit chain verifies.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
TTL_S, RENEW_S, POLL_S = 4.0, 1.0, 0.5
TOKEN = "approver-token-for-ha-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "runtime.cli", *args], cwd=REPO, stdout=out, stderr=out)


def _wait(what: str, fn: Any, timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
        except (httpx.HTTPError, psycopg.Error):
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _holder(pg_url: str) -> str | None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT holder FROM leader_lease WHERE expires_at > extract(epoch from now())").fetchone()
        return None if row is None else str(row[0])


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_follower_takes_over_a_killed_leader_and_runs_the_approved_action_once(
    pg_url: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """SIGKILL the leader while a failover awaits approval; the survivor leads within TTL + one renewal."""
    sim_port, api_a, api_b = _free_port(), _free_port(), _free_port()
    procs.append(
        _cli(
            "sim",
            "serve",
            "--scenario",
            str(REPO / "simulations/scenarios/provider_outage.yaml"),
            "--port",
            str(sim_port),
            "--speed",
            "120",
            log=tmp_path / "sim.log",
        )
    )
    sim = f"http://127.0.0.1:{sim_port}"
    _wait("the simulator", lambda: httpx.get(f"{sim}/healthz").status_code == 200, 120)
    tokens = tmp_path / "tokens.yaml"
    sha = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens.write_text(f"identities:\n  - name: ana\n    roles: [approver]\n    token_sha256: {sha}\n")

    def config(port: int) -> Path:
        path = tmp_path / f"homeostat-{port}.yaml"
        path.write_text(
            f"""database_url: {pg_url}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: simulator
    url: {sim}
    interval_s: {POLL_S}
tools:
  simulator_url: {sim}
  allowed_targets: ["*"]
auth:
  tokens_file: {tokens}
api:
  port: {port}
intervals: {{poll_s: {POLL_S}, approval_expiry_s: {POLL_S}, verification_s: 1, checkpoint_s: 1}}
ha: {{lease_ttl_s: {TTL_S}, lease_renew_s: {RENEW_S}, lease_margin_s: 1.0}}
grace_period_s: 2
"""
        )
        return path

    leader = _cli("run", "--config", str(config(api_a)), log=tmp_path / "a.log")
    procs.append(leader)
    holder_a = _wait("replica A to lead", lambda: _holder(pg_url), 120)
    assert f":{leader.pid}:" in holder_a
    procs.append(_cli("run", "--config", str(config(api_b)), log=tmp_path / "b.log"))
    b = f"http://127.0.0.1:{api_b}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    _wait("replica B's API", lambda: httpx.get(f"{b}/healthz").status_code == 200, 120)

    def pending_failover() -> dict[str, Any] | None:  # read through the follower
        rows = httpx.get(f"{b}/v1/approvals", headers=auth).json()
        return next((r for r in rows if r["action"] == "failover_provider"), None)

    incident = _wait("a failover awaiting approval", pending_failover, 60, every=0.5)

    leader.send_signal(signal.SIGKILL)
    leader.wait(10)
    killed = time.monotonic()
    holder_b = _wait("replica B to take the lease", lambda: (h := _holder(pg_url)) and h != holder_a and h, 30, 0.05)
    takeover_s = time.monotonic() - killed
    print(f"\ntakeover after SIGKILL: {takeover_s:.2f} s (lease TTL {TTL_S} s, renewal {RENEW_S} s)")
    (tmp_path / "takeover.txt").write_text(f"{takeover_s:.3f}\n")
    assert holder_b != holder_a
    assert takeover_s <= TTL_S + RENEW_S + POLL_S

    answer = httpx.post(f"{b}/v1/incidents/{incident['id']}/approve", headers=auth, json={"comment": "go"})
    assert answer.status_code == 200, answer.text

    def executed() -> list[dict[str, Any]] | None:
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(
                "SELECT payload_json FROM audit_records WHERE incident_id = %s AND kind = 'action_result'",
                (incident["id"],),
            ).fetchall()
        import json

        return [json.loads(r[0]) for r in rows] or None

    results = _wait("the approved failover to run", executed, 30, 0.3)
    keys = {r["idempotency_key"] for r in results}
    assert len(keys) == 1 and len(results) == 1, results
    key = keys.pop()
    assert results[0]["outcome"]["status"] == "succeeded"
    with psycopg.connect(pg_url) as conn:
        intents = conn.execute(
            "SELECT count(*) FROM audit_records WHERE kind = 'action_intent' AND payload_json LIKE %s",
            (f"%{key}%",),
        ).fetchone()
    assert intents is not None and intents[0] == 1
    assert httpx.get(f"{sim}/actions/{key}").status_code == 200  # the target saw it, once by key

    procs[-1].send_signal(signal.SIGTERM)
    procs[-1].wait(20)
    verify = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "audit", "verify", "--db", pg_url],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
