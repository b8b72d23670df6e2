"""The journal tells the flap guard which services a failover moved and where, so failbacks are linked by service.

The in-process simulator plays llm-alpha failing and, twenty minutes later, its backup llm-beta
degrading; a person approves every failover. The journal records, from the first failover's
parameters and the fleet's reported effect, the services it moved and the provider it moved them
to, so the second failover (a new incident on another service) is held back for sharing a
service with it, not by the cautious "destination not recorded" rule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain import ActionName, ActionOutcome, Cause, Decision, OutcomeStatus, Proposal, Verdict, VirtualClock
from runtime.audit import AuditLog
from runtime.gameday import DEFAULT_APPROVERS, ScriptedApprover
from runtime.journal import Journal
from tests._flap_world import (
    ALPHA_FAILS,
    BETA_DEGRADES,
    failover_decisions,
    failover_scenario,
    flap_guard_reason,
    play_in_loop,
)
from tools import ActionRequest

START = datetime(2026, 4, 1, tzinfo=UTC)

SCENARIO = failover_scenario(
    name="backup_degrades_after_approved_failover",
    description="llm-alpha fails at 40m; the approved failover to llm-beta recovers; llm-beta degrades at 60m.",
    duration="1h10m",
    injections=[ALPHA_FAILS, BETA_DEGRADES],
)

EVERY_FAILOVER_NEEDS_A_PERSON = """\
default: {verdict: approval}
approval_defaults: {approvers: 1, roles: [approver], timeout: 30m, on_timeout: reject}
flap_guard: {window: 30m}
rules:
  - {id: escalate-auto, when: {action: escalate}, verdict: auto}
"""


def test_failback_after_an_approved_failover_names_the_shared_service(tmp_path: Path) -> None:
    """The second failover's decision names a service the approved first failover moved, not an unknown destination."""
    approver = ScriptedApprover(DEFAULT_APPROVERS[0].identity, delay_s=60.0)
    result, records = play_in_loop(tmp_path, SCENARIO, EVERY_FAILOVER_NEEDS_A_PERSON, (approver,))
    failovers = failover_decisions(records)
    assert [d["proposal"]["target"] for d in failovers][:2] == ["llm-alpha", "llm-beta"], failovers
    first, back = failovers[:2]
    assert (result.actions[0]["action"], result.actions[0]["target"]) == ("failover_provider", "llm-alpha")
    moved = next(
        r.payload["outcome"]["effect"]["moved"]
        for r in records
        if r.kind == "action_result" and r.payload["outcome"]["effect"].get("moved")
    )
    assert {m["to"] for m in moved.values()} == {"llm-beta"}
    reason = flap_guard_reason(back)
    assert "same service" in reason, reason
    assert "not recorded" not in reason, reason
    shared = [s for s in moved if f"'{s}'" in reason.split("same service", 1)[1]]
    assert shared, (reason, moved)
    assert first["decision"]["verdict"] == "approval"


def _failover(journal: Journal, parameters: dict[str, Any], effect: dict[str, Any]) -> None:
    """Record an auto-approved failover of llm-alpha for `chat`, its intent and its successful result."""
    proposal = Proposal(
        action=ActionName.FAILOVER_PROVIDER,
        target="llm-alpha",
        service="chat",
        parameters=parameters,
        blast_radius=0.5,
        reversible=True,
        cause=Cause.PROVIDER_DEGRADATION,
        confidence=0.9,
    )
    decision = Decision(verdict=Verdict.AUTO, constitution_digest="d" * 64)
    payload = {"proposal": proposal.model_dump(mode="json"), "decision": decision.model_dump(mode="json")}
    journal.append("decision", payload, incident_id="inc-1", ts=START)
    request = ActionRequest(
        action=ActionName.FAILOVER_PROVIDER,
        target="llm-alpha",
        parameters=parameters,
        idempotency_key="key-0001",
        incident_id="inc-1",
    )
    journal.record_intent(request)
    outcome = ActionOutcome(status=OutcomeStatus.SUCCEEDED, idempotency_key="key-0001", effect=effect)
    journal.record_result(request, outcome)


@pytest.mark.parametrize(
    ("parameters", "effect", "services", "destination"),
    [
        pytest.param(
            {},
            {
                "moved": {
                    "chat": {"from": "llm-alpha", "to": "llm-beta"},
                    "search": {"from": "llm-alpha", "to": "llm-beta"},
                }
            },
            ("search",),
            "llm-beta",
            id="effect-says-what-moved",
        ),
        pytest.param(
            {"services": ["chat", "summaries"], "to_provider": "llm-gamma"},
            {},
            ("summaries",),
            "llm-gamma",
            id="parameters-when-no-effect",
        ),
        pytest.param(
            {"to_provider": "llm-gamma"},
            {"moved": {"chat": {"from": "llm-alpha", "to": "llm-beta"}}},
            (),
            "llm-beta",
            id="effect-wins-over-request",
        ),
        pytest.param(
            {"services": "chat", "to_provider": 7},
            {"moved": {"a": "llm-beta", "b": {"to": 3}, "c": None}},
            ("a", "b", "c"),
            None,
            id="wrong-types-ignored",
        ),
        pytest.param(
            {},
            {"moved": {"a": {"to": "llm-beta"}, "b": {"to": "llm-gamma"}}},
            ("a", "b"),
            None,
            id="two-destinations-is-no-destination",
        ),
        pytest.param({}, {"moved": ["chat"]}, (), None, id="moved-not-a-mapping"),
    ],
)
def test_recent_action_records_moved_services_and_destination(
    tmp_path: Path,
    parameters: dict[str, Any],
    effect: dict[str, Any],
    services: tuple[str, ...],
    destination: str | None,
) -> None:
    """The ledger entry lists the other services changed and one unambiguous destination, also after a restart."""
    db = str(tmp_path / "a.sqlite")
    journal = Journal(AuditLog(db), VirtualClock(START))
    _failover(journal, parameters, effect)
    (recent,) = journal.recent_actions(START)
    assert (recent.service, recent.services, recent.destination) == ("chat", services, destination)
    (rebuilt,) = Journal(AuditLog(db), VirtualClock(START)).recent_actions(START)
    assert rebuilt == recent
