"""The daemon end to end: `homeostat run` (SQLite) against `homeostat sim serve` on loopback.

The primary LLM provider fails; its failover is approved over the API and the services recover.
Then the backup they moved to fails too; while failing back awaits approval the daemon is
SIGTERMed and restarted; the fail-back is approved and the services recover again. Each action runs
once by key, metrics show the verdicts and approval waits, and the audit chain verifies.
The daemon's clock follows the simulator's virtual time (`--clock simulator`), which the test
moves at SPEED x real time, so a 60 s settle and a 120 s recovery window take seconds.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from runtime.simulate import SimulatorDriver
from runtime.supervisor import SupervisorSettings
from tests._daemon_harness import (
    REPO,
    bearer,
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

SPEED = 10.0
FAST_SPEED = 60.0
COOLDOWN = timedelta(seconds=SupervisorSettings().cooldown_s)
#: A bystander on a provider pair of its own: neither outage touches it, and neither failover may.
FOURTH_SERVICE = """fleet:
  providers:
    llm-omega: {latency_factor: 1.0, error_rate: 0.002}
    llm-sigma: {latency_factor: 1.0, error_rate: 0.002}
  services:
    support-chat: {traffic_share: 0.4}
    kb-retriever: {traffic_share: 0.25}
    doc-summarizer: {traffic_share: 0.15}
    code-assistant:
      provider: llm-omega
      backup_provider: llm-sigma
      model_version: code-m-7
      previous_model_version: code-m-6
      prompt_version: v3
      previous_prompt_version: v2
      traffic_share: 0.2
      latency_p50_ms: 900
      tokens_per_request: 1300
      quality: 0.8
"""
APPROVER, VIEWER, AUDITOR = "approver-token-must-show", "viewer-token-must-show", "auditor-token-must-show"


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
        if metric == name and got == want:
            return float(value)
    return 0.0


def test_an_approved_fault_recovers_then_a_pending_approval_survives_sigterm_and_restart(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Fault, approve over the API, recovery; second fault, SIGTERM while pending, restart, approve, recovery."""
    scenario = scenario_without_injections("provider_outage", tmp_path)
    scenario.write_text(scenario.read_text().replace("injections: []", FOURTH_SERVICE + "injections: []"))
    sim = start_simulator(tmp_path, procs, scenario)
    driver = SimulatorDriver(sim, SPEED)  # then virtual time runs at SPEED x real time
    driver.start()

    def fast_forward(until: datetime) -> None:
        """Run virtual time FAST_SPEED x faster until `until` (a jump would hand the daemon minutes of
        telemetry in one poll, judged against a clock that already moved past it)."""
        faster = SimulatorDriver(sim, FAST_SPEED - SPEED)
        faster.start()
        try:
            wait_for(f"virtual time to reach {until}", lambda: _sim_now(sim) >= until, 120, 0.2)
        finally:
            faster.stop()

    try:
        _play(tmp_path, sim, procs, fast_forward)
    finally:
        driver.stop()


def _sim_now(sim: str) -> datetime:
    return datetime.fromisoformat(json_of(httpx.get(f"{sim}/healthz"))["now"])


def _play(
    tmp_path: Path, sim: str, procs: list[subprocess.Popen[bytes]], fast_forward: Callable[[datetime], None]
) -> None:
    api_port = free_port()
    db = tmp_path / "homeostat.db"
    tokens = {"ana": (APPROVER, ["approver"]), "vic": (VIEWER, ["viewer"]), "aud": (AUDITOR, ["auditor"])}
    config = daemon_config(tmp_path, sim=sim, api_port=api_port, db=db, tokens=tokens)
    api = f"http://127.0.0.1:{api_port}"

    def start_daemon(n: int) -> subprocess.Popen[bytes]:
        daemon = cli("run", "--config", str(config), "--clock", "simulator", log=tmp_path / f"daemon{n}.log")
        procs.append(daemon)
        wait_for("the daemon's API", lambda: httpx.get(f"{api}/readyz").status_code == 200, 90)
        return daemon

    def pending(exclude: set[str]) -> dict[str, Any] | None:
        rows = json_of(httpx.get(f"{api}/v1/approvals", headers=bearer(VIEWER)))
        return next((r for r in rows if r["id"] not in exclude), None)

    def resolved(incident_id: str) -> dict[str, Any] | None:
        row = json_of(httpx.get(f"{api}/v1/incidents/{incident_id}", headers=bearer(VIEWER)))
        assert row["state"] not in {"failed", "escalated", "expired", "rejected"}, row
        return row if row["state"] == "resolved" else None

    def second_pending(first_id: str) -> dict[str, Any] | None:
        """The second incident's pending approval; fails at once if the second incident closed instead."""
        rows = json_of(httpx.get(f"{api}/v1/incidents", headers=bearer(VIEWER)))
        others = [r for r in rows if r["id"] != first_id]
        closed = [r for r in others if r["state"] in {"failed", "escalated", "expired", "rejected"}]
        assert not closed, f"the second outage was not proposed for approval: {others}"
        return pending({first_id})

    daemon = start_daemon(1)

    # -- incident 1: the primary LLM provider fails; failing over needs an approver ----------
    outage = {"fault": "provider_outage", "provider": "llm-alpha", "severity": 1.0, "shape": "sudden"}
    json_of(httpx.post(f"{sim}/faults", json=outage))
    first = wait_for("a proposal awaiting approval", lambda: pending(set()), 120, 0.5)
    assert first["action"] == "failover_provider", first
    refused = httpx.post(f"{api}/v1/incidents/{first['id']}/approve", headers=bearer(VIEWER), json={"comment": "x"})
    assert refused.status_code == 403  # a viewer cannot approve
    json_of(httpx.post(f"{api}/v1/incidents/{first['id']}/approve", headers=bearer(APPROVER), json={"comment": "go"}))
    first_done = wait_for("incident 1 to resolve", lambda: resolved(first["id"]), 120, 0.5)
    faults = json_of(httpx.get(f"{sim}/faults"))
    assert not faults["active"], faults  # the failover cleared the outage in the simulator
    metrics = httpx.get(f"{api}/metrics").text
    assert _metric(metrics, "homeostat_actions_total", verdict="approval") >= 1
    assert _metric(metrics, "homeostat_approval_wait_seconds_count", result="approved") == 1
    assert _metric(metrics, "homeostat_approval_wait_seconds_sum", result="approved") > 0
    assert _metric(metrics, "homeostat_action_outcomes_total", status="succeeded") >= 1

    # -- incident 2: the backup provider the first failover moved them to fails as well -------
    # Anomalies on a resolved incident's services within its 15-minute cooldown are recorded as the
    # action's side effects, so the second fault comes after it (virtual time runs faster meanwhile).
    fast_forward(datetime.fromisoformat(first_done["updated_at"]) + COOLDOWN + timedelta(minutes=1))
    json_of(httpx.post(f"{sim}/faults", json={**outage, "provider": "llm-beta"}))
    second = wait_for("a second proposal awaiting approval", lambda: second_pending(first["id"]), 120, 0.5)
    assert second["action"] == "failover_provider" and second["target"] == "llm-beta", second
    # SIGTERM while the second approval is pending; the restarted daemon still lists it.
    assert stop(daemon) == 0
    assert "daemon.stopped" in (tmp_path / "daemon1.log").read_text()

    start_daemon(2)
    still = wait_for("the restarted daemon to list the pending approval", lambda: pending({first["id"]}), 30)
    assert still["id"] == second["id"] and still["action"] == "failover_provider", still
    json_of(httpx.post(f"{api}/v1/incidents/{second['id']}/approve", headers=bearer(APPROVER), json={"comment": "ok"}))
    wait_for("incident 2 to resolve", lambda: resolved(second["id"]), 120, 0.5)
    assert not json_of(httpx.get(f"{sim}/faults"))["active"]  # failing back cleared the second outage
    topology = json_of(httpx.get(f"{sim}/topology"))["services"]
    assert topology["support-chat"]["provider"] == "llm-alpha" and topology["code-assistant"]["provider"] == "llm-omega"
    metrics = httpx.get(f"{api}/metrics").text  # the wait began before the restart and is still measured
    assert _metric(metrics, "homeostat_approval_wait_seconds_count", result="approved") == 1
    assert _metric(metrics, "homeostat_approval_wait_seconds_sum", result="approved") > 0

    # -- every action ran exactly once by key, and the audit chain verifies -----------------
    def audit(kind: str) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {"kind": kind, "limit": 1000}
        return list(json_of(httpx.get(f"{api}/v1/audit", params=params, headers=bearer(AUDITOR))))

    intent_records = audit("action_intent")
    intents = Counter(r["payload"]["idempotency_key"] for r in intent_records)
    results = Counter(r["payload"]["idempotency_key"] for r in audit("action_result"))
    assert intents and set(intents.values()) == {1} and intents == results, (intents, results)
    for record in intent_records:
        if record["payload"]["action"] != "escalate":
            assert httpx.get(f"{sim}/actions/{record['payload']['idempotency_key']}").status_code == 200
    assert {r["incident_id"] for r in audit("approval")} >= {first["id"], second["id"]}
    assert stop(procs[-1]) == 0
    verify = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "audit", "verify", "--db", str(db)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
