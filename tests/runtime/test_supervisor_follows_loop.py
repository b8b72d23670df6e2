"""A real fault during an action's cooldown is handled, not swallowed as that action's side effect.

The in-process simulator plays llm-alpha failing and, about five minutes after the approved
failover resolved that incident (well inside the 15-minute cooldown), the backup llm-beta failing
too. The error surge on the moved services is no expected cost of a failover: the full loop opens
a second incident that records which one it follows, diagnoses it and fails back, past the flap
guard (a person approves every failover).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from runtime.gameday import DEFAULT_APPROVERS, ScriptedApprover
from runtime.supervisor import SupervisorSettings
from tests._flap_world import failover_decisions, flap_guard_reason, play_in_loop

SCENARIO = """\
name: backup_fails_during_cooldown
description: llm-alpha fails at 40m; the approved failover to llm-beta recovers; llm-beta fails at 53m.
seed: 2202
duration: 1h15m
start: 2026-03-02T09:00:00Z
injections:
  - {type: fault, at: 40m, fault: provider_outage, provider: llm-alpha, severity: 1.0, shape: sudden}
  - {type: fault, at: 53m, fault: provider_outage, provider: llm-beta, severity: 1.0, shape: sudden}
ground_truth:
  cause: provider_degradation
  service: support-chat
  provider: llm-alpha
"""

EVERY_FAILOVER_NEEDS_A_PERSON = """\
default: {verdict: approval}
approval_defaults: {approvers: 1, roles: [approver], timeout: 30m, on_timeout: reject}
flap_guard: {window: 30m}
rules:
  - {id: escalate-auto, when: {action: escalate}, verdict: auto}
"""


def test_a_backup_failing_during_the_cooldown_opens_a_new_incident_that_fails_back(tmp_path: Path) -> None:
    """The second outage, inside the first incident's cooldown, is an incident of its own that follows the first."""
    approver = ScriptedApprover(DEFAULT_APPROVERS[0].identity, delay_s=60.0)
    result, records = play_in_loop(tmp_path, SCENARIO, EVERY_FAILOVER_NEEDS_A_PERSON, (approver,))
    first, back = failover_decisions(records)[:2]
    assert (first["proposal"]["target"], back["proposal"]["target"]) == ("llm-alpha", "llm-beta")
    first_id = next(r.incident_id for r in records if r.kind == "decision" and r.payload == first)
    back_id = next(r.incident_id for r in records if r.kind == "decision" and r.payload == back)
    assert first_id != back_id

    closed = next(r.ts for r in records if r.kind == "incident_closed" and r.incident_id == first_id)
    (opened,) = [r for r in records if r.kind == "incident_opened" and r.incident_id == back_id]
    assert opened.ts - closed < timedelta(seconds=SupervisorSettings().cooldown_s)  # inside the cooldown
    assert opened.payload["follows"] == first_id, opened.payload
    because = opened.payload["follows_because"]
    assert "recurrence" in because or "not an expected cost" in because, because

    assert "flap guard" in flap_guard_reason(back)
    rows = {row.id: row for row in result.incidents}
    assert rows[first_id].state == "resolved" and rows[back_id].state == "resolved"
    assert [(a["action"], a["target"]) for a in result.actions] == [
        ("failover_provider", "llm-alpha"),
        ("failover_provider", "llm-beta"),
    ]
