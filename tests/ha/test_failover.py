"""Two daemon processes on one PostgreSQL: SIGKILL the leader mid-incident, the follower takes over.

Drives real processes: `homeostat sim serve` (the HTTP simulator) and two `homeostat run`.
Measures the takeover time and prints it; the action runs once; the audit chain verifies.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests._daemon_harness import cli, free_port

REPO = Path(__file__).resolve().parents[2]
TTL_S, RENEW_S, POLL_S = 4.0, 1.0, 0.5
TOKEN = "approver-token-for-ha-test"
LAG_S = 5.0


def _scenario_for_wall_clock(tmp_path: Path) -> Path:
    """provider_outage starting 40 minutes ago (detector history), its fault left to the test.

    The daemons run on the system clock and the supervisor groups anomalies and judges
    staleness against it, so the test keeps virtual time a few seconds behind the wall clock
    and injects the outage itself once both replicas run.
    """
    text = (REPO / "simulations/scenarios/provider_outage.yaml").read_text()
    start = (datetime.now(UTC) - timedelta(minutes=40)).replace(microsecond=0)
    text = re.sub(r"(?m)^start: .*$", f"start: {start.isoformat().replace('+00:00', 'Z')}", text)
    text = re.sub(r"(?ms)^injections:.*?(?=^ground_truth:)", "injections: []\n", text)
    path = tmp_path / "provider_outage_now.yaml"
    path.write_text(text)
    return path


def _virtual_now(client: httpx.Client, sim: str) -> datetime:
    return datetime.fromisoformat(client.get(f"{sim}/healthz").json()["now"])


def _lag_s(client: httpx.Client, sim: str) -> float:
    return (datetime.now(UTC) - _virtual_now(client, sim)).total_seconds()


def _track_wall_clock(sim: str, stop: threading.Event) -> None:
    """Keep the simulator's virtual time LAG_S behind the wall clock until stopped."""
    with httpx.Client(timeout=30) as client:
        while True:
            try:
                behind = (datetime.now(UTC) - timedelta(seconds=LAG_S) - _virtual_now(client, sim)).total_seconds()
                if behind > 0:
                    client.post(f"{sim}/advance", json={"seconds": behind})
            except httpx.HTTPError:
                pass
            if stop.wait(0.5):
                return


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


def _has_checkpoint(pg_url: str) -> bool:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT 1 FROM state_blobs WHERE name = 'detection'").fetchone() is not None


@pytest.fixture
def stop_clock() -> Iterator[threading.Event]:
    stop = threading.Event()
    yield stop
    stop.set()


def test_follower_takes_over_a_killed_leader_and_runs_the_approved_action_once(
    pg_url: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]], stop_clock: threading.Event
) -> None:
    """SIGKILL the leader while a failover awaits approval; the survivor leads within TTL + one renewal."""
    sim_port, api_a, api_b = free_port(), free_port(), free_port()
    # Virtual time moves only when this test advances it (--speed 0): it follows the wall clock.
    procs.append(
        cli(
            "sim",
            "serve",
            "--scenario",
            str(_scenario_for_wall_clock(tmp_path)),
            "--port",
            str(sim_port),
            "--speed",
            "0",
            log=tmp_path / "sim.log",
        )
    )
    sim = f"http://127.0.0.1:{sim_port}"
    _wait("the simulator", lambda: httpx.get(f"{sim}/healthz").status_code == 200, 120)
    clock = threading.Thread(target=_track_wall_clock, args=(sim, stop_clock), daemon=True)
    clock.start()
    with httpx.Client() as client:
        _wait("virtual time to reach the wall clock", lambda: _lag_s(client, sim) < LAG_S + 5, 60)
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

    # Both replicas start together (start-up is the slow part); whichever takes the lease leads.
    replicas = {api: cli("run", "--config", str(config(api)), log=tmp_path / f"{api}.log") for api in (api_a, api_b)}
    procs.extend(replicas.values())
    holder_a = _wait("a replica to lead", lambda: _holder(pg_url), 120)
    lead_api = next(api for api, p in replicas.items() if f":{p.pid}:" in holder_a)
    leader = replicas[lead_api]
    survivor = replicas[api_b if lead_api == api_a else api_a]
    b = f"http://127.0.0.1:{api_b if lead_api == api_a else api_a}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    _wait("the follower's API", lambda: httpx.get(f"{b}/healthz").status_code == 200, 120)
    # The leader has detector state for every series once it checkpoints it; then the outage.
    _wait("the leader's first detector checkpoint", lambda: _has_checkpoint(pg_url), 60)
    fault = {"fault": "provider_outage", "provider": "llm-alpha", "severity": 1.0, "shape": "sudden"}
    assert httpx.post(f"{sim}/faults", json=fault).status_code == 200

    def pending_failover() -> dict[str, Any] | None:  # read through the follower
        rows = httpx.get(f"{b}/v1/approvals", headers=auth).json()
        return next((r for r in rows if r["action"] == "failover_provider"), None)

    incident = _wait("a failover awaiting approval", pending_failover, 180, every=0.5)

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

    survivor.send_signal(signal.SIGTERM)
    survivor.wait(20)
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
