"""`homeostat audit verify`: exit 0 on an intact chain, exit 1 naming the broken record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from runtime.audit import AuditLog
from runtime.cli import app
from tests.audit.helpers import fill

runner = CliRunner()


def _make(path: Path, key: bytes | None = None) -> str:
    with AuditLog(str(path), hmac_key=key) as log:
        return fill(log, 6)[-1].hash


class TestVerifyCommand:
    def test_intact_log_exits_zero_and_prints_the_head(self, tmp_path: Path) -> None:
        """An intact log exits 0 and prints the head hash an auditor should keep."""
        head = _make(tmp_path / "a.db")
        result = runner.invoke(app, ["audit", "verify", "--db", str(tmp_path / "a.db")])
        assert result.exit_code == 0, result.output
        assert "6 records verified" in result.output
        assert head in result.output

    def test_changed_payload_exits_one_naming_the_record(self, tmp_path: Path) -> None:
        """Changing one stored payload makes verify exit 1 and name that record and the kind of tampering."""
        db = tmp_path / "a.db"
        _make(db)
        conn = sqlite3.connect(db)
        conn.execute("DROP TRIGGER audit_records_no_update")
        conn.execute("UPDATE audit_records SET payload_json = '{\"i\":99}' WHERE seq = 3")
        conn.commit()
        conn.close()
        result = runner.invoke(app, ["audit", "verify", "--db", str(db)])
        assert result.exit_code == 1
        assert "record 3: edited" in result.output

    def test_head_option_catches_truncation(self, tmp_path: Path) -> None:
        """`--head` with a hash the chain never reaches exits 1 reporting truncation."""
        db = tmp_path / "a.db"
        _make(db)
        result = runner.invoke(app, ["audit", "verify", "--db", str(db), "--head", "ab" * 32])
        assert result.exit_code == 1
        assert "truncated" in result.output

    def test_key_file_option_verifies_a_keyed_log(self, tmp_path: Path) -> None:
        """A keyed log verifies with --hmac-key-file and not without it."""
        db = tmp_path / "a.db"
        _make(db, key=b"k" * 32)
        key_file = tmp_path / "key"
        key_file.write_bytes(b"k" * 32 + b"\n")
        assert runner.invoke(app, ["audit", "verify", "--db", str(db)]).exit_code == 1
        result = runner.invoke(app, ["audit", "verify", "--db", str(db), "--hmac-key-file", str(key_file)])
        assert result.exit_code == 0, result.output

    def test_missing_database_exits_two_with_the_path(self, tmp_path: Path) -> None:
        """A database that does not exist is a usage error naming the path, and is not created."""
        result = runner.invoke(app, ["audit", "verify", "--db", str(tmp_path / "missing.db")])
        assert result.exit_code == 2
        assert "missing.db" in result.output
        assert not (tmp_path / "missing.db").exists()

    def test_malformed_head_is_a_usage_error(self, tmp_path: Path) -> None:
        """A --head that is not a SHA-256 hex digest is refused with the value named."""
        _make(tmp_path / "a.db")
        result = runner.invoke(app, ["audit", "verify", "--db", str(tmp_path / "a.db"), "--head", "xyz"])
        assert result.exit_code == 2
        assert "xyz" in result.output
