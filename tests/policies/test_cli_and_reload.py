"""`homeostat constitution` commands, hot reload, and the backtest over a real audit log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from domain import ActionName, Cause, Verdict
from policies import ConstitutionError, DecisionContext, decide, load_constitution
from policies.backtest import RecordedDecision, backtest
from runtime.cli import app
from runtime.constitution_watch import ConstitutionWatcher
from tests.policies.helpers import SHIPPED, T0, proposal
from tests.policies.test_errors import THREE_MISTAKES

runner = CliRunner()


class TestValidate:
    def test_valid_file_exits_zero(self) -> None:
        """The shipped constitution validates and the summary names its rule count."""
        result = runner.invoke(app, ["constitution", "validate", str(SHIPPED)])
        assert result.exit_code == 0, result.output
        assert "ok" in result.output and "7 rules" in result.output

    def test_three_mistakes_print_three_lines_and_exit_one(self, tmp_path: Path) -> None:
        """A file with three mistakes prints all three with their line numbers and exits 1."""
        path = tmp_path / "constitution.yaml"
        path.write_text(THREE_MISTAKES, encoding="utf-8")
        result = runner.invoke(app, ["constitution", "validate", str(path)])
        assert result.exit_code == 1
        errors = [line for line in result.output.splitlines() if line.startswith(f"{path}:")]
        assert [e.split(":")[1] for e in errors] == ["11", "15", "20"], result.output
        assert "3 errors" in result.output


def test_schema_is_json_schema_that_accepts_the_shipped_file() -> None:
    """`schema` prints a JSON Schema document against which the shipped file (as data) validates."""
    import jsonschema

    result = runner.invoke(app, ["constitution", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    from policies import load_yaml_with_lines

    data, _ = load_yaml_with_lines(SHIPPED.read_text(encoding="utf-8"), "constitution.yaml")
    jsonschema.validate(data, schema)
    bad = {**data, "rules": [{"id": "x", "verdict": "maybe"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


class TestExplain:
    def test_explain_by_options_shows_every_rule_and_the_verdict(self) -> None:
        """explain lists each rule with matched yes/no and the final decision with its reasons."""
        result = runner.invoke(
            app,
            [
                "constitution", "explain", str(SHIPPED), "--action", "rollback_prompt_version",
                "--service", "support-chat", "--cause", "bad_prompt_deploy", "--confidence", "0.7",
                "--at", "2026-03-04T12:00:00Z",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "confidence 0.7 is not >= 0.8" in result.output
        assert "decision: approval" in result.output
        assert "no rule matched" in result.output

    def test_explain_reads_a_proposal_file(self, tmp_path: Path) -> None:
        """A proposal JSON file is explained the same way (here: a protected service is denied)."""
        p = proposal(ActionName.ROLLBACK_PROMPT_VERSION, "payments-api")
        path = tmp_path / "p.json"
        path.write_text(p.model_dump_json(), encoding="utf-8")
        result = runner.invoke(app, ["constitution", "explain", str(SHIPPED), "--proposal", str(path)])
        assert result.exit_code == 0, result.output
        assert "decision: deny" in result.output and "protected-services-denied" in result.output

    def test_explain_rejects_an_unknown_action(self) -> None:
        """An action outside the catalog is a usage error naming the field."""
        result = runner.invoke(
            app, ["constitution", "explain", str(SHIPPED), "--action", "reboot", "--service", "x", "--cause", "unknown",
                  "--confidence", "0.5"],
        )  # fmt: skip
        assert result.exit_code == 2
        assert "action" in result.output


class TestHotReload:
    def _watcher(self, path: Path) -> tuple[ConstitutionWatcher, list, list]:
        changes: list = []
        errors: list = []
        watcher = ConstitutionWatcher(path, lambda old, new: changes.append((old, new)), errors.append)
        return watcher, changes, errors

    def test_valid_change_takes_effect_with_old_and_new(self, tmp_path: Path) -> None:
        """Editing the file to a valid constitution swaps it and reports old and new digests."""
        path = tmp_path / "c.yaml"
        path.write_text("default: {verdict: approval}\n", encoding="utf-8")
        watcher, changes, errors = self._watcher(path)
        first = watcher.current
        assert watcher.check() is False  # unchanged
        path.write_text("default: {verdict: deny}\n", encoding="utf-8")
        assert watcher.check() is True
        assert watcher.current.default.verdict is Verdict.DENY
        assert [(o.digest, n.digest) for o, n in changes] == [(first.digest, watcher.current.digest)]
        assert errors == []

    def test_invalid_change_keeps_the_old_constitution(self, tmp_path: Path) -> None:
        """A broken edit is reported once, the old constitution stays in force, and a later fix takes effect."""
        path = tmp_path / "c.yaml"
        path.write_text("default: {verdict: approval}\n", encoding="utf-8")
        watcher, changes, errors = self._watcher(path)
        good = watcher.current
        path.write_text("default: {verdict: sometimes}\n", encoding="utf-8")
        assert watcher.check() is False
        assert watcher.check() is False  # same bad text: not reported twice
        assert watcher.current is good
        assert len(errors) == 1 and isinstance(errors[0], ConstitutionError)
        assert f"{path}:1: default.verdict" in str(errors[0])
        path.unlink()
        assert watcher.check() is False and watcher.current is good and len(errors) == 2
        path.write_text("default: {verdict: auto}\n", encoding="utf-8")
        assert watcher.check() is True and watcher.current.default.verdict is Verdict.AUTO
        assert changes[0][0] is good

    def test_same_size_same_mtime_edit_is_seen(self, tmp_path: Path) -> None:
        """A rewrite that keeps size and mtime is still noticed, because content is compared."""
        path = tmp_path / "c.yaml"
        path.write_text("default: {verdict: auto}\n", encoding="utf-8")
        stat = path.stat()
        watcher, _, _ = self._watcher(path)
        path.write_text("default: {verdict: deny}\n", encoding="utf-8")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert watcher.check() is True

    def test_invalid_file_at_start_refuses_to_start(self, tmp_path: Path) -> None:
        """The watcher will not start on a bad file: there is no good constitution to fall back to."""
        path = tmp_path / "c.yaml"
        path.write_text("rules: 3\n", encoding="utf-8")
        with pytest.raises(ConstitutionError):
            self._watcher(path)


def _recorded(ref: str, p, constitution, context: DecisionContext | None = None) -> RecordedDecision:
    context = context or DecisionContext(now=T0)
    d = decide(p, context, constitution)
    payload = {
        "proposal": p.model_dump(mode="json"),
        "context": context.model_dump(mode="json"),
        "decision": d.model_dump(mode="json"),
        "constitution_digest": constitution.digest,
    }
    return RecordedDecision.from_payload(json.loads(json.dumps(payload)), ref)


class TestBacktest:
    HISTORY = [
        (ActionName.ROLLBACK_PROMPT_VERSION, "support-chat", Cause.BAD_PROMPT_DEPLOY, 0.9),
        (ActionName.ROLLBACK_MODEL_VERSION, "doc-summarizer", Cause.BAD_MODEL_DEPLOY, 0.85),
        (ActionName.ROLLBACK_PROMPT_VERSION, "kb-retriever", Cause.BAD_PROMPT_DEPLOY, 0.95),
        (ActionName.FAILOVER_PROVIDER, "support-chat", Cause.PROVIDER_DEGRADATION, 0.9),
        (ActionName.ESCALATE, "doc-summarizer", Cause.UNKNOWN, 0.2),
    ]

    def _history(self):
        shipped = load_constitution(SHIPPED)
        return [
            _recorded(f"seq {i}", proposal(a, s, cause=c, confidence=x), shipped)
            for i, (a, s, c, x) in enumerate(self.HISTORY, start=1)
        ]

    def test_same_constitution_changes_nothing(self) -> None:
        """Backtesting the constitution that made the decisions reproduces every one of them."""
        report = backtest(self._history(), load_constitution(SHIPPED))
        assert report.total == 5 and report.changes == ()

    def test_one_rule_changed_lists_exactly_the_affected_decisions(self, tmp_path: Path) -> None:
        """Raising the rollback confidence bar to 0.9 changes exactly the 0.85 rollback, and counts move per rule."""
        candidate = tmp_path / "candidate.yaml"
        text = SHIPPED.read_text(encoding="utf-8")
        old = "confidence: {min: 0.8}\n      reversible: true\n    verdict: auto\n\n  - id: failover"
        assert text.count(old) == 1
        candidate.write_text(text.replace(old, old.replace("0.8", "0.9")), encoding="utf-8")
        report = backtest(self._history(), load_constitution(candidate))
        assert [c.record.ref for c in report.changes] == ["seq 2"]
        change = report.changes[0]
        assert (change.old.verdict, change.new.verdict) == (Verdict.AUTO, Verdict.APPROVAL)
        rows = {rule: (before, after) for rule, before, after in report.rule_rows()}
        assert rows["rollback-after-bad-deploy"] == (3, 2)
        assert rows["(default)"] == (0, 1)
        assert "seq 2: rollback_model_version on doc-summarizer" in change.describe()

    def test_malformed_payload_names_the_record(self) -> None:
        """A decision payload missing its context is refused with the record's reference."""
        with pytest.raises(ValueError, match="seq 9: decision payload lacks context"):
            RecordedDecision.from_payload({"proposal": {}, "decision": {}}, "seq 9")


def test_backtest_command_reads_the_audit_log(tmp_path: Path) -> None:
    """`backtest --db` re-decides the decisions stored in a real SQLite audit log and prints only the changed one."""
    from runtime.audit import AuditLog

    shipped = load_constitution(SHIPPED)
    db = tmp_path / "audit.db"
    log = AuditLog(str(db), hmac_key=None)
    try:
        log.append("observation", {"note": "not a decision"}, incident_id=None, ts=T0)
        for i, (a, s, c, x) in enumerate(TestBacktest.HISTORY, start=1):
            rec = _recorded(f"seq {i}", proposal(a, s, cause=c, confidence=x), shipped)
            payload = {
                "proposal": rec.proposal.model_dump(mode="json"),
                "context": rec.context.model_dump(mode="json"),
                "decision": rec.decision.model_dump(mode="json"),
                "constitution_digest": rec.constitution_digest,
            }
            log.append("decision", payload, incident_id=f"inc-{i}", ts=T0)
    finally:
        log.close()
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        SHIPPED.read_text(encoding="utf-8").replace(
            'service: ["payments-*", "*-regulated"]', 'service: ["payments-*", "kb-*"]'
        ),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["constitution", "backtest", str(candidate), "--db", str(db)])
    assert result.exit_code == 0, result.output
    changed = [line for line in result.output.splitlines() if "CHANGED" in line]
    assert len(changed) == 1 and "incident inc-3" in changed[0] and "-> deny" in changed[0], result.output
    assert "1 of 5 decisions would change" in result.output
