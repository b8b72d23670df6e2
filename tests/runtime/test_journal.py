"""The journal guards invariant 1 and keeps the intent index honest across dry runs and restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain import ActionName, ActionOutcome, Cause, Decision, OutcomeStatus, Proposal, Verdict, VirtualClock
from runtime.audit import AuditLog
from runtime.journal import Journal, UnrecordedDecision
from tools import ActionRequest

START = datetime(2026, 4, 1, tzinfo=UTC)


def _request(key: str = "key-0001", *, dry_run: bool = False) -> ActionRequest:
    return ActionRequest(
        action=ActionName.ROLLBACK_PROMPT_VERSION,
        target="chat",
        parameters={},
        idempotency_key=key,
        incident_id="inc-1",
        dry_run=dry_run,
    )


def _decide(journal: Journal, verdict: Verdict) -> None:
    proposal = Proposal(
        action=ActionName.ROLLBACK_PROMPT_VERSION,
        target="chat",
        service="chat",
        blast_radius=0.3,
        reversible=True,
        cause=Cause.BAD_PROMPT_DEPLOY,
        confidence=0.9,
    )
    decision = Decision(verdict=verdict, constitution_digest="d" * 64)
    payload = {"proposal": proposal.model_dump(mode="json"), "decision": decision.model_dump(mode="json")}
    journal.append("decision", payload, incident_id="inc-1", ts=START)


def test_an_intent_without_a_permitting_decision_is_refused(tmp_path: Path) -> None:
    """Invariant 1: no intent (so no call) unless a decision permitting it is already in the log."""
    journal = Journal(AuditLog(str(tmp_path / "a.sqlite")), VirtualClock(START))
    with pytest.raises(UnrecordedDecision):
        journal.record_intent(_request())
    _decide(journal, Verdict.DENY)
    with pytest.raises(UnrecordedDecision):
        journal.record_intent(_request())
    _decide(journal, Verdict.AUTO)
    journal.record_intent(_request())
    assert [r.idempotency_key for r in journal.unresolved()] == ["key-0001"]


def test_a_real_run_after_a_dry_run_is_unresolved_until_its_result(tmp_path: Path) -> None:
    """A dry-run result must not hide the real run's intent from reconciliation after a crash."""
    db = str(tmp_path / "a.sqlite")
    journal = Journal(AuditLog(db), VirtualClock(START))
    _decide(journal, Verdict.AUTO)
    journal.record_intent(_request(dry_run=True))
    journal.record_result(
        _request(dry_run=True), ActionOutcome(status=OutcomeStatus.DRY_RUN, idempotency_key="key-0001")
    )
    journal.record_intent(_request())
    assert [r.idempotency_key for r in journal.unresolved()] == ["key-0001"]
    reopened = Journal(AuditLog(db), VirtualClock(START))  # after a restart, rebuilt from the log
    assert [r.idempotency_key for r in reopened.unresolved()] == ["key-0001"]
