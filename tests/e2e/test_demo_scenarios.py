"""The whole loop on the simulated fleet: the demo's three scenarios end as they must."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from runtime.audit import AuditLog
from runtime.gameday import GamedayResult, play_scenario
from simulations import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "simulations" / "scenarios"


def _play(name: str, tmp_path: Path, **kwargs: object) -> GamedayResult:
    return play_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), db=str(tmp_path / "h.sqlite"), **kwargs)  # type: ignore[arg-type]


def _kinds(db: str, incident_id: str) -> list[str]:
    log = AuditLog(db)
    try:
        return [r.kind for r in log.records(incident_id=incident_id)]
    finally:
        log.close()


def test_bad_prompt_deploy_is_rolled_back_automatically(tmp_path: Path) -> None:
    """A bad prompt deploy is diagnosed, rolled back without waiting for anyone, and recovers."""
    result = _play("bad_prompt_deploy", tmp_path)
    assert [(a["action"], a["target"]) for a in result.actions] == [("rollback_prompt_version", "support-chat")]
    (incident,) = result.incidents
    assert incident.state == "resolved" and incident.cause == "bad_prompt_deploy"
    kinds = _kinds(result.db, incident.id)
    assert "approval" not in kinds
    assert kinds.index("decision") < kinds.index("action_intent") < kinds.index("action_result")


def test_provider_outage_fails_over_only_after_a_named_approval(tmp_path: Path) -> None:
    """A provider outage on both services proposes failover, waits, and acts after an SRE approves."""
    result = _play("provider_outage", tmp_path)
    assert [(a["action"], a["target"]) for a in result.actions] == [("failover_provider", "llm-alpha")]
    (incident,) = [i for i in result.incidents if i.action == "failover_provider"]
    assert set(incident.services) == {"support-chat", "doc-summarizer"}
    assert incident.state == "resolved"
    fault_at = result.scenario.start + timedelta(minutes=40)  # the outage starts at 40m
    assert datetime.fromisoformat(incident.onset) - fault_at < timedelta(minutes=2), "outage detected late"
    log = AuditLog(result.db)
    try:
        records = list(log.records(incident_id=incident.id))
    finally:
        log.close()
    approval = next(r for r in records if r.kind == "approval")
    intent = next(r for r in records if r.kind == "action_intent")
    assert approval.payload["approval"]["approver"] == "dana.okafor@sre"
    assert approval.seq < intent.seq


def test_a_failover_onto_a_slower_backup_that_helped_is_kept_not_undone(tmp_path: Path) -> None:
    """A failover that undoes most of an outage but leaves the backup's latency cost is kept and handed to a person."""
    result = _play("provider_outage_after_benign_deploy", tmp_path)
    assert [(a["action"], a["target"]) for a in result.actions] == [("failover_provider", "llm-alpha")]
    (incident,) = [i for i in result.incidents if i.action == "failover_provider"]
    assert incident.state in {"resolved", "escalated"}
    log = AuditLog(result.db)
    try:
        (verification,) = [r for r in log.records(incident_id=incident.id) if r.kind == "verification"]
    finally:
        log.close()
    assert verification.payload["recovered"] or verification.payload["improved"], verification.payload["detail"]


def test_benign_deploy_opens_no_incident(tmp_path: Path) -> None:
    """A deploy that changes nothing for the worse leads to no incident and no action."""
    result = _play("benign_deploy", tmp_path)
    assert result.incidents == [] and result.actions == []


def test_same_scenario_and_seed_give_the_same_log(tmp_path: Path) -> None:
    """Invariant 8: replaying a scenario yields a byte-identical audit chain."""
    heads = []
    for run in ("a", "b"):
        result = play_scenario(load_scenario(SCENARIOS / "bad_prompt_deploy.yaml"), db=str(tmp_path / f"{run}.sqlite"))
        log = AuditLog(result.db)
        head = log.head()
        log.close()
        assert head is not None
        heads.append(head.hash)
    assert heads[0] == heads[1]


def test_pending_approval_survives_a_restart(tmp_path: Path) -> None:
    """A second process opening the same SQLite checkpoint resumes the pending failover after approval."""
    db = str(tmp_path / "h.sqlite")
    scenario = SCENARIOS / "provider_outage.yaml"
    first = play_scenario(
        load_scenario(scenario),
        db=db,
        approvers=(),
        stop_when=lambda loop: bool(loop.supervisor.pending_approvals()),
    )
    assert first.actions == []
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("resume_worker.py")), str(scenario), db, "sam.rivera@sre"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["actions"] == [["failover_provider", "llm-alpha"]]
    kinds = _kinds(db, report["incident"])
    assert kinds.count("action_intent") == 1 and "approval" in kinds
    log = AuditLog(db)
    try:
        assert log.verify().ok
    finally:
        log.close()


def test_demo_database_verifies_and_a_tampered_payload_is_named(tmp_path: Path) -> None:
    """`homeostat demo --db` leaves a chain that verifies; editing one payload fails naming that record."""
    db = tmp_path / "demo.sqlite"
    demo = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "demo", "--db", str(db), "-s", "bad_prompt_deploy"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "rollback_prompt_version" in demo.stdout and "RESOLVED" in demo.stdout
    verify = [sys.executable, "-m", "runtime.cli", "audit", "verify", "--db", str(db)]
    assert subprocess.run(verify, capture_output=True, text=True, check=False, cwd=ROOT).returncode == 0

    conn = sqlite3.connect(db)
    table, column = _payload_column(conn)
    triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for trigger in triggers:  # an attacker with write access drops the guard first
        conn.execute(f'DROP TRIGGER "{trigger}"')
    seq = conn.execute(f"SELECT seq FROM {table} WHERE kind='decision' LIMIT 1").fetchone()[0]
    conn.execute(f"UPDATE {table} SET {column} = replace({column}, 'auto', 'deny') WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()
    tampered = subprocess.run(verify, capture_output=True, text=True, check=False, cwd=ROOT)
    assert tampered.returncode != 0
    assert str(seq) in tampered.stdout + tampered.stderr


def _payload_column(conn: sqlite3.Connection) -> tuple[str, str]:
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
        if "kind" in columns and "prev_hash" in columns:
            payload = next(c for c in columns if "payload" in c)
            return table, payload
    pytest.fail("no audit table found")


def test_demo_reads_a_fault_scenario_without_expect_incident_as_expecting_one() -> None:
    """A scenario whose ground truth names a cause but not `expect_incident` is scored as a fault, not a control."""
    from runtime.demo import _matches

    truth = load_scenario(SCENARIOS / "provider_outage_after_benign_deploy.yaml").ground_truth
    assert truth.expect_incident is None and truth.incident_expected
    assert not _matches(truth, [], []), "no incident on a fault scenario is not as expected"
