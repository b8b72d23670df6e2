"""Replay re-derives each recorded decision from its inputs and the constitution recorded with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from domain import ActionName, Cause, Proposal
from policies import Constitution, DecisionContext, decide, parse_constitution
from runtime.audit import AuditLog, Hasher
from runtime.audit.replay import replay
from runtime.cli import app
from tests.audit.conftest import Attacker
from tests.audit.helpers import T0

CONSTITUTION = """\
version: 1
default:
  verdict: approval
rules:
  - id: rollback-ok
    when:
      action: rollback_prompt_version
      confidence: {min: 0.8}
    verdict: auto
  - id: no-payments
    when:
      service: "payments-*"
    verdict: deny
"""


def _proposal(service: str, confidence: float, action: ActionName = ActionName.ROLLBACK_PROMPT_VERSION) -> Proposal:
    return Proposal(
        action=action,
        target=service,
        service=service,
        blast_radius=0.2,
        reversible=True,
        cause=Cause.BAD_PROMPT_DEPLOY,
        confidence=confidence,
    )


def _record_decisions(log: AuditLog, constitution: Constitution) -> None:
    log.append(
        "constitution_loaded",
        {"digest": constitution.digest, "source": "constitution.yaml", "text": constitution.text},
        incident_id=None,
        ts=T0,
    )
    cases = [
        _proposal("chat", 0.9),
        _proposal("chat", 0.5),
        _proposal("payments-eu", 0.95),
        _proposal("search", 0.9, ActionName.FAILOVER_PROVIDER),
    ]
    for i, proposal in enumerate(cases):
        context = DecisionContext(now=T0 + timedelta(minutes=i))
        decision = decide(proposal, context, constitution)
        log.append(
            "decision",
            {
                "proposal": proposal.model_dump(mode="json"),
                "context": context.model_dump(mode="json"),
                "decision": decision.model_dump(mode="json"),
                "constitution_digest": constitution.digest,
            },
            incident_id=f"inc-{i}",
            ts=T0 + timedelta(minutes=i),
        )


class TestReplay:
    def test_untouched_log_reproduces_every_decision(self, db_url: str) -> None:
        """Every decision written from decide() replays to the same decision."""
        with AuditLog(db_url) as log:
            _record_decisions(log, parse_constitution(CONSTITUTION))
            report = replay(log)
        assert report.ok
        assert (report.decisions, report.reproduced, report.constitutions) == (4, 4, 1)

    def test_altered_decision_in_a_reforged_chain_diverges(
        self, db_url: str, attacker: Callable[[str], Attacker]
    ) -> None:
        """A decision changed from deny to auto, with the unkeyed chain re-forged so verify passes, fails replay."""
        with AuditLog(db_url) as log:
            _record_decisions(log, parse_constitution(CONSTITUTION))
        a = attacker(db_url)
        a.drop_triggers()
        seq, payload_json = next((r[0], r[4]) for r in a.rows() if r[2] == "inc-2")
        payload = json.loads(payload_json)
        payload["decision"]["verdict"] = "auto"
        forged = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = ?", (forged, seq))
        a.rehash_from(seq, Hasher(None))
        with AuditLog(db_url, create=False) as log:
            assert log.verify().ok  # the chain alone cannot tell
            report = replay(log)
        assert not report.ok
        [divergence] = report.divergences
        assert (divergence.seq, divergence.incident_id) == (seq, "inc-2")
        assert divergence.differing_fields() == ["verdict"]

    def test_decision_without_recorded_constitution_text_diverges(self, tmp_path: Path) -> None:
        """A decision citing a digest whose text was never recorded cannot be replayed and is reported."""
        constitution = parse_constitution(CONSTITUTION)
        with AuditLog(str(tmp_path / "a.db")) as log:
            proposal, context = _proposal("chat", 0.9), DecisionContext(now=T0)
            log.append(
                "decision",
                {
                    "proposal": proposal.model_dump(mode="json"),
                    "context": context.model_dump(mode="json"),
                    "decision": decide(proposal, context, constitution).model_dump(mode="json"),
                    "constitution_digest": constitution.digest,
                },
                incident_id="inc-x",
                ts=T0,
            )
            report = replay(log)
        assert [d.reason for d in report.divergences] == [
            f"no constitution_loaded record with digest {constitution.digest[:12]}…"
        ]

    def test_each_decision_uses_the_constitution_in_force_when_it_was_made(self, tmp_path: Path) -> None:
        """Decisions under an old and a new constitution both replay, each under its own recorded text."""
        old = parse_constitution(CONSTITUTION)
        new = parse_constitution(CONSTITUTION.replace("min: 0.8", "min: 0.95"))
        with AuditLog(str(tmp_path / "a.db")) as log:
            _record_decisions(log, old)
            _record_decisions(log, new)
            report = replay(log)
        assert report.ok and report.decisions == 8 and report.constitutions == 2

    def test_cli_exits_one_and_names_the_divergent_record(
        self, tmp_path: Path, attacker: Callable[[str], Attacker]
    ) -> None:
        """`homeostat audit replay` exits 0 on a faithful log and 1 naming the record that diverges."""
        db = str(tmp_path / "a.db")
        with AuditLog(db) as log:
            _record_decisions(log, parse_constitution(CONSTITUTION))
        ok = CliRunner().invoke(app, ["audit", "replay", "--db", db])
        assert ok.exit_code == 0, ok.output
        assert "4/4 decisions reproduced" in ok.output
        a = attacker(db)
        a.drop_triggers()
        payload = json.loads(a.rows()[1][4])
        payload["decision"]["matched_rules"] = []
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = 2", (json.dumps(payload),))
        bad = CliRunner().invoke(app, ["audit", "replay", "--db", db])
        assert bad.exit_code == 1
        assert "record 2 (incident inc-0)" in bad.output
        assert "matched_rules" in bad.output
