"""Replay tells tampering from a policy engine change by the engine version stamped on each decision."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from domain import ActionName, Cause, Decision, Proposal, Verdict
from policies import Constitution, DecisionContext, RecentAction, decide, parse_constitution
from policies.decide import POLICY_ENGINE_VERSION
from runtime.audit import AuditLog, Hasher
from runtime.audit.replay import replay
from runtime.cli import app
from tests.audit.conftest import Attacker
from tests.audit.helpers import T0

# Failovers run on their own, but the flap guard holds a related second action for a person:
# an engine from before the flap guard decided the second failover `auto`.
CONSTITUTION = """\
version: 1
default:
  verdict: approval
flap_guard:
  window: 30m
rules:
  - id: failover-ok
    when:
      action: failover_provider
    verdict: auto
"""


def _failover(target: str, to: str) -> Proposal:
    return Proposal(
        action=ActionName.FAILOVER_PROVIDER,
        target=target,
        service="chat",
        parameters={"to_provider": to},
        blast_radius=0.3,
        reversible=True,
        cause=Cause.PROVIDER_DEGRADATION,
        confidence=0.9,
    )


def _first_and_undo() -> tuple[tuple[Proposal, DecisionContext], tuple[Proposal, DecisionContext]]:
    """A failover alpha -> beta, then five minutes later the undo beta -> alpha (a flap)."""
    first = (_failover("llm-alpha", "llm-beta"), DecisionContext(now=T0))
    done = RecentAction(
        action=ActionName.FAILOVER_PROVIDER,
        target="llm-alpha",
        service="chat",
        ts=T0,
        automatic=True,
        destination="llm-beta",
    )
    undo = (_failover("llm-beta", "llm-alpha"), DecisionContext(now=T0 + timedelta(minutes=5), recent_actions=(done,)))
    return first, undo


def _decision_json(decision: Decision, version: str | None) -> dict[str, Any]:
    """`decision` as a log written by engine `version` holds it (None: before decisions were stamped)."""
    out = decision.model_dump(mode="json")
    if version is None:
        out.pop("engine_version")
    else:
        out["engine_version"] = version
    return out


def _write(
    log: AuditLog, constitution: Constitution, decisions: list[tuple[Proposal, DecisionContext, dict[str, Any]]]
) -> None:
    log.append(
        "constitution_loaded",
        {"digest": constitution.digest, "source": "constitution.yaml", "text": constitution.text},
        incident_id=None,
        ts=T0,
    )
    for i, (proposal, context, decision) in enumerate(decisions):
        log.append(
            "decision",
            {
                "proposal": proposal.model_dump(mode="json"),
                "context": context.model_dump(mode="json"),
                "decision": decision,
                "constitution_digest": constitution.digest,
            },
            incident_id=f"inc-{i}",
            ts=context.now,
        )


def _pre_flap_guard_log(log: AuditLog, version: str | None) -> Constitution:
    """A log written by an engine without the flap guard: the undo was decided `auto` like the first failover."""
    constitution = parse_constitution(CONSTITUTION)
    (p1, c1), (p2, c2) = _first_and_undo()
    first = decide(p1, c1, constitution)
    old_undo = decide(p2, DecisionContext(now=c2.now), constitution)  # the old engine ignored what ran before
    assert first.verdict is Verdict.AUTO and old_undo.verdict is Verdict.AUTO
    _write(log, constitution, [(p1, c1, _decision_json(first, version)), (p2, c2, _decision_json(old_undo, version))])
    return constitution


def _replay_cli(db: str, *extra: str) -> Any:
    return CliRunner().invoke(app, ["audit", "replay", "--db", db, *extra])


class TestDecisionsCarryTheEngineVersion:
    def test_every_decision_is_stamped_with_the_engine_that_made_it(self) -> None:
        """decide() stamps POLICY_ENGINE_VERSION, a semver string, on every decision it returns."""
        constitution = parse_constitution(CONSTITUTION)
        (p1, c1), (p2, c2) = _first_and_undo()
        parts = POLICY_ENGINE_VERSION.split(".")
        assert len(parts) == 3 and all(p.isdigit() for p in parts)
        assert {decide(p1, c1, constitution).engine_version, decide(p2, c2, constitution).engine_version} == {
            POLICY_ENGINE_VERSION
        }

    def test_a_pre_stamp_decision_parses_with_no_version(self) -> None:
        """A decision dict without engine_version (an old log) still parses, its version read as None."""
        constitution = parse_constitution(CONSTITUTION)
        (p1, c1), _ = _first_and_undo()
        old = _decision_json(decide(p1, c1, constitution), None)
        assert "engine_version" not in old
        assert Decision.model_validate(old).engine_version is None


class TestSameEngineDivergences:
    def test_untouched_stamped_log_reproduces(self, db_url: str) -> None:
        """A log written by this engine replays exactly: no divergence, no engine change."""
        constitution = parse_constitution(CONSTITUTION)
        (p1, c1), (p2, c2) = _first_and_undo()
        with AuditLog(db_url) as log:
            _write(
                log,
                constitution,
                [(p, c, decide(p, c, constitution).model_dump(mode="json")) for p, c in ((p1, c1), (p2, c2))],
            )
            report = replay(log)
        assert report.strict_ok and (report.decisions, report.reproduced) == (2, 2)
        assert report.recorded_versions == {POLICY_ENGINE_VERSION: 2}

    def test_tampered_decision_by_this_engine_is_a_divergence(
        self, db_url: str, attacker: Callable[[str], Attacker]
    ) -> None:
        """The flap guard's approval edited to auto under a re-forged chain is a divergence, and the CLI exits 1."""
        constitution = parse_constitution(CONSTITUTION)
        (p1, c1), (p2, c2) = _first_and_undo()
        with AuditLog(db_url) as log:
            _write(
                log,
                constitution,
                [(p, c, decide(p, c, constitution).model_dump(mode="json")) for p, c in ((p1, c1), (p2, c2))],
            )
        a = attacker(db_url)
        a.drop_triggers()
        seq, payload_json = next((r[0], r[4]) for r in a.rows() if r[2] == "inc-1")
        payload = json.loads(payload_json)
        assert payload["decision"]["verdict"] == "approval"
        payload["decision"].update(verdict="auto", approval=None)
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = ?", (json.dumps(payload, sort_keys=True), seq))
        a.rehash_from(seq, Hasher(None))
        with AuditLog(db_url, create=False) as log:
            assert log.verify().ok  # an unkeyed chain re-forged: only replay can tell
            report = replay(log)
        [divergence] = report.divergences
        assert (divergence.seq, divergence.incident_id) == (seq, "inc-1")
        assert divergence.differing_fields() == ["approval", "verdict"]
        assert POLICY_ENGINE_VERSION in divergence.reason
        assert report.engine_changes == []
        if "://" not in db_url:
            result = _replay_cli(db_url)
            assert result.exit_code == 1, result.output
            assert f"DIVERGES record {seq} (incident inc-1)" in result.output
            assert "ENGINE CHANGED" not in result.output


class TestEngineChanges:
    @pytest.mark.parametrize("version", ["0.9.0", None], ids=["older-version", "unstamped"])
    def test_old_engine_decision_whose_outcome_changed_is_an_engine_change(
        self, db_url: str, version: str | None
    ) -> None:
        """A pre-flap-guard auto the flap guard now holds is an engine change (with its fields), not a divergence."""
        with AuditLog(db_url) as log:
            _pre_flap_guard_log(log, version)
            assert log.verify().ok
            report = replay(log)
        assert report.ok and not report.strict_ok
        assert (report.decisions, report.reproduced, len(report.engine_changes)) == (2, 1, 1)
        [change] = report.engine_changes
        assert change.incident_id == "inc-1"
        assert (change.recorded_version, change.replayed_version) == (version, POLICY_ENGINE_VERSION)
        assert {"verdict", "approval", "reasons"} <= set(change.differing_fields())
        assert "engine_version" not in change.differing_fields()
        assert report.recorded_versions == {version or "unstamped": 2}

    def test_cli_reports_engine_changes_and_fails_only_when_strict(self, tmp_path: Path) -> None:
        """`audit replay` exits 0 listing the engine change and its fields; with --strict it exits 1."""
        db = str(tmp_path / "old.db")
        with AuditLog(db) as log:
            _pre_flap_guard_log(log, "0.9.0")
        lenient = _replay_cli(db)
        assert lenient.exit_code == 0, lenient.output
        assert "ENGINE CHANGED record 3 (incident inc-1): recorded by engine 0.9.0" in lenient.output
        assert "verdict: recorded 'auto', replayed 'approval'" in lenient.output
        assert "1 engine change(s)" in lenient.output and "DIVERGES" not in lenient.output
        strict = _replay_cli(db, "--strict")
        assert strict.exit_code == 1, strict.output
        assert "ENGINE CHANGED record 3" in strict.output

    def test_unchanged_outcome_under_an_old_version_reproduces(self, db_url: str) -> None:
        """An old-engine or unstamped decision that today's engine still gives reproduces; only the stamp differs."""
        constitution = parse_constitution(CONSTITUTION)
        (p1, c1), (p2, c2) = _first_and_undo()
        with AuditLog(db_url) as log:
            _write(
                log,
                constitution,
                [
                    (p1, c1, _decision_json(decide(p1, c1, constitution), None)),
                    (p2, c2, _decision_json(decide(p2, c2, constitution), "0.9.0")),
                ],
            )
            report = replay(log)
        assert report.strict_ok and report.reproduced == 2
        assert report.recorded_versions == {"0.9.0": 1, "unstamped": 1}

    def test_a_mixed_log_separates_divergences_from_engine_changes(
        self, tmp_path: Path, attacker: Callable[[str], Attacker]
    ) -> None:
        """A tampered current-engine record in a log with an old-engine change exits 1; the two are listed apart."""
        constitution = parse_constitution(CONSTITUTION)
        db = str(tmp_path / "mixed.db")
        (p1, _), (_, c2) = _first_and_undo()
        with AuditLog(db) as log:
            _pre_flap_guard_log(log, None)
            later = DecisionContext(now=c2.now + timedelta(hours=2))
            _write(log, constitution, [(p1, later, decide(p1, later, constitution).model_dump(mode="json"))])
        a = attacker(db)
        a.drop_triggers()
        last = a.rows()[-1]
        payload = json.loads(last[4])
        payload["decision"]["reasons"] = ["looks fine"]
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = ?", (json.dumps(payload), last[0]))
        with AuditLog(db, create=False) as log:
            assert not log.verify().ok  # the chain itself is untouched by versioning
            report = replay(log)
        assert [d.seq for d in report.divergences] == [last[0]]
        assert [c.seq for c in report.engine_changes] == [3]
        result = _replay_cli(db)
        assert result.exit_code == 1
        assert "1 divergence(s), 1 engine change(s)" in result.output


class TestVerifyIsUnchanged:
    def test_pre_stamp_log_verifies_and_a_forged_stamp_breaks_the_chain(
        self, db_url: str, attacker: Callable[[str], Attacker]
    ) -> None:
        """A pre-stamp log verifies; stamping an old version onto a record afterwards breaks `audit verify`."""
        with AuditLog(db_url) as log:
            _pre_flap_guard_log(log, None)
            assert log.verify().ok
        a = attacker(db_url)
        a.drop_triggers()
        seq, payload_json = next((r[0], r[4]) for r in a.rows() if r[2] == "inc-1")
        payload = json.loads(payload_json)
        payload["decision"]["engine_version"] = "0.1.0"
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = ?", (json.dumps(payload), seq))
        with AuditLog(db_url, create=False) as log:
            checked = log.verify()
        assert not checked.ok and checked.first_bad_seq == seq
