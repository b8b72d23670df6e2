"""Export for SIEMs (streamed JSON lines and CSV) and the person-readable incident timeline."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from runtime.audit import AuditLog, hashed_message
from runtime.audit.export import export
from runtime.cli import app
from tests.audit.helpers import T0, fill

runner = CliRunner()


class _CountingSink(io.StringIO):
    """Records how many lines were written before the source was exhausted (proves streaming)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


class TestExport:
    def test_jsonl_has_one_record_per_line_with_hashes_an_auditor_can_recheck(self, db_url: str) -> None:
        """Each JSON line carries the record's fields and hash, and the hash recomputes from them."""
        with AuditLog(db_url) as log:
            fill(log, 7)
            sink = io.StringIO()
            assert export(log, "jsonl", sink) == 7
        lines = [json.loads(line) for line in sink.getvalue().splitlines()]
        assert [r["seq"] for r in lines] == list(range(1, 8))
        import hashlib

        from domain.canonical import canonical_json

        for r in lines:
            msg = hashed_message(
                r["seq"], r["ts"], r["incident_id"], r["kind"], canonical_json(r["payload"]), r["prev_hash"]
            )
            assert hashlib.sha256(msg).hexdigest() == r["hash"]

    def test_csv_has_a_header_and_the_canonical_payload(self, tmp_path: Path) -> None:
        """CSV export has a header row and one row per record with the canonical payload text."""
        with AuditLog(str(tmp_path / "a.db")) as log:
            written = fill(log, 4)
            sink = io.StringIO()
            export(log, "csv", sink, incident_id="inc-1")
        rows = list(csv.DictReader(io.StringIO(sink.getvalue())))
        assert [int(r["seq"]) for r in rows] == [2]
        assert rows[0]["payload_json"] == written[1].payload_json
        assert rows[0]["hash"] == written[1].hash

    def test_export_is_streamed_not_buffered(self, tmp_path: Path) -> None:
        """Records are written out one by one as they are read, not collected first."""
        with AuditLog(str(tmp_path / "a.db")) as log:
            fill(log, 50)
            sink = _CountingSink()
            export(log, "jsonl", sink)
        assert sink.writes >= 50

    def test_cli_writes_the_file_and_refuses_unknown_formats(self, tmp_path: Path) -> None:
        """`homeostat audit export --out` writes the file; an unknown --format is a usage error naming it."""
        db = str(tmp_path / "a.db")
        with AuditLog(db) as log:
            fill(log, 5)
        out = tmp_path / "out.csv"
        result = runner.invoke(app, ["audit", "export", "--db", db, "--format", "csv", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert len(out.read_text().splitlines()) == 6
        bad = runner.invoke(app, ["audit", "export", "--db", db, "--format", "xml"])
        assert bad.exit_code == 2
        assert "'xml'" in bad.output


def _incident(log: AuditLog) -> None:
    t = T0
    steps = [
        (
            "incident_opened",
            {
                "services": ["chat"],
                "anomalies": [
                    {
                        "service": "chat",
                        "signal": "quality_score",
                        "direction": "down",
                        "baseline": 0.9,
                        "current": 0.6,
                        "detector": "page_hinkley",
                        "severity": "critical",
                    }
                ],
            },
        ),
        (
            "diagnosis",
            {
                "diagnosis": {
                    "cause": "bad_prompt_deploy",
                    "service": "chat",
                    "confidence": 0.92,
                    "rationale": "quality fell 40s after prompt v7",
                    "diagnoser": "rules",
                    "diagnoser_version": "1",
                    "evidence": [
                        {
                            "type": "change",
                            "kind": "prompt_version",
                            "from_value": "v6",
                            "to_value": "v7",
                            "service": "chat",
                            "seconds_before_onset": 40,
                        }
                    ],
                },
                "services": {"chat": {"model_version": "m3", "prompt_version": "v7", "provider": "acme"}},
            },
        ),
        (
            "proposal",
            {
                "proposal": {
                    "action": "rollback_prompt_version",
                    "target": "chat",
                    "parameters": {"to": "v6"},
                    "blast_radius": 0.3,
                    "reversible": True,
                }
            },
        ),
        (
            "decision",
            {
                "decision": {"verdict": "auto", "matched_rules": ["rollback-after-bad-deploy"]},
                "constitution_digest": "ab" * 32,
            },
        ),
        (
            "action_intent",
            {
                "idempotency_key": "k1",
                "action": "rollback_prompt_version",
                "target": "chat",
                "parameters": {"to": "v6"},
                "dry_run": False,
            },
        ),
        ("action_result", {"idempotency_key": "k1", "outcome": {"status": "succeeded", "attempts": 1}}),
        ("verification", {"recovered": True, "signals": {}, "detail": "quality back to 0.9"}),
        ("incident_closed", {"state": "resolved", "summary": "rolled back prompt v7"}),
    ]
    for kind, payload in steps:
        log.append(kind, payload, incident_id="inc-42", ts=t)
        t += timedelta(seconds=10)
    log.append("observation", {"anomaly": {}}, incident_id="inc-other", ts=t)


class TestShow:
    def test_timeline_tells_the_story_in_words(self, tmp_path: Path) -> None:
        """The timeline names the anomaly, cause with evidence, action, verdict with its rule, and outcome."""
        db = str(tmp_path / "a.db")
        with AuditLog(db) as log:
            _incident(log)
        result = runner.invoke(app, ["audit", "show", "inc-42", "--db", db], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        out = result.output
        for expected in [
            "chat/quality_score down 0.9 → 0.6",
            "bad_prompt_deploy on chat (confidence 0.92",
            "change prompt_version v6 → v7 on chat, 40s before onset",
            "rollback_prompt_version on chat (to=v6)",
            "AUTO by rule rollback-after-bad-deploy",
            "succeeded after 1 attempt(s)",
            "recovered: quality back to 0.9",
            "RESOLVED: rolled back prompt v7",
        ]:
            assert expected in out, expected
        assert "inc-other" not in out

    def test_unknown_incident_exits_one(self, tmp_path: Path) -> None:
        """Asking for an incident with no records says so and exits 1."""
        db = str(tmp_path / "a.db")
        with AuditLog(db) as log:
            _incident(log)
        result = runner.invoke(app, ["audit", "show", "inc-nope", "--db", db])
        assert result.exit_code == 1
        assert "inc-nope" in result.output
