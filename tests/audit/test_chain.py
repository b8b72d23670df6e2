"""The chain as written: appends link up, hashes are what the spec says, records stream back."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from domain.canonical import canonical_json
from runtime.audit import GENESIS_HASH, AuditError, AuditLog
from tests.audit.helpers import T0, fill


class TestAppendAndVerify:
    def test_fresh_chain_verifies_and_reports_its_head(self, db_url: str) -> None:
        """A chain written only through append() verifies, and its head is the last record."""
        with AuditLog(db_url) as log:
            written = fill(log, 20)
            report = log.verify()
            assert report.ok, report.message
            assert report.checked == 20
            assert report.head_seq == 20
            assert report.head_hash == written[-1].hash
            head = log.head()
            assert head is not None and head.hash == written[-1].hash

    def test_records_link_from_genesis_with_consecutive_seqs(self, db_url: str) -> None:
        """Seqs run 1..n and each record's prev_hash is its predecessor's hash, starting at 64 zeros."""
        with AuditLog(db_url) as log:
            written = fill(log, 5)
        assert [r.seq for r in written] == [1, 2, 3, 4, 5]
        assert written[0].prev_hash == GENESIS_HASH
        for before, after in itertools.pairwise(written):
            assert after.prev_hash == before.hash

    def test_hash_is_sha256_over_canonical_json_of_the_fields(self, tmp_path: Path) -> None:
        """An auditor can recompute a hash with nothing but sha256 and canonical JSON."""
        with AuditLog(str(tmp_path / "a.db")) as log:
            rec = log.append("decision", {"b": 1, "a": [1.5, "x"]}, incident_id="inc-1", ts=T0)
        message = canonical_json(
            {
                "seq": 1,
                "ts": "2026-03-01T12:00:00+00:00",
                "incident_id": "inc-1",
                "kind": "decision",
                "payload": {"a": [1.5, "x"], "b": 1},
                "prev_hash": GENESIS_HASH,
            }
        )
        assert rec.hash == hashlib.sha256(message.encode()).hexdigest()
        assert rec.payload_json == '{"a":[1.5,"x"],"b":1}'

    def test_domain_values_are_stored_as_their_canonical_json(self, tmp_path: Path) -> None:
        """Pydantic models, enums, datetimes and tuples in a payload are stored as canonical_json renders them."""
        from domain import ActionName, Cause, Proposal, Verdict

        proposal = Proposal(
            action=ActionName.THROTTLE,
            target="chat",
            service="chat",
            blast_radius=0.1,
            reversible=True,
            cause=Cause.CAPACITY,
            confidence=0.85,
        )
        payload = {"proposal": proposal, "verdict": Verdict.AUTO, "at": T0, "pair": (1, "two"), "ü": None}
        with AuditLog(str(tmp_path / "a.db")) as log:
            rec = log.append("proposal", payload, incident_id="inc-1", ts=T0)
            stored = next(log.records())
        assert rec.payload_json == canonical_json(payload) == stored.payload_json
        assert rec.payload == json.loads(rec.payload_json) == stored.payload

    def test_hmac_key_makes_hashes_hmac_sha256(self, tmp_path: Path) -> None:
        """With an operator key every hash is HMAC-SHA256 over the same canonical message."""
        key = b"operator-secret-key-0123456789"
        with AuditLog(str(tmp_path / "a.db"), hmac_key=key) as log:
            rec = log.append("constitution_loaded", {"digest": "d"}, incident_id=None, ts=T0)
            assert log.verify().ok
        message = canonical_json(
            {
                "seq": 1,
                "ts": rec.ts.isoformat(),
                "incident_id": None,
                "kind": "constitution_loaded",
                "payload": {"digest": "d"},
                "prev_hash": GENESIS_HASH,
            }
        )
        assert rec.hash == hmac.new(key, message.encode(), hashlib.sha256).hexdigest()

    def test_timestamps_are_stored_in_utc(self, tmp_path: Path) -> None:
        """A timestamp in another zone is stored and hashed as the same instant in UTC."""
        with AuditLog(str(tmp_path / "a.db")) as log:
            rec = log.append(
                "observation", {}, incident_id="i", ts=datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
            )
            assert rec.ts == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
            assert rec.ts.utcoffset() == timedelta(0)

    def test_reopening_continues_the_same_chain(self, db_url: str) -> None:
        """A second handle (a restart) appends after the first handle's records."""
        with AuditLog(db_url) as log:
            fill(log, 3)
        with AuditLog(db_url) as log:
            rec = log.append("incident_closed", {"state": "resolved"}, incident_id="inc-0", ts=T0)
            assert rec.seq == 4
            assert log.verify().ok


class TestReadingBack:
    def test_records_filter_by_incident_kind_and_after_seq(self, db_url: str) -> None:
        """records() streams in seq order and filters by incident, kind and a starting seq."""
        with AuditLog(db_url) as log:
            fill(log, 12, incidents=3)
            assert [r.seq for r in log.records()] == list(range(1, 13))
            assert [r.seq for r in log.records(incident_id="inc-1")] == [2, 5, 8, 11]
            assert [r.seq for r in log.records(kind="decision")] == [4, 10]
            assert [r.seq for r in log.records(after_seq=9)] == [10, 11, 12]
            rec = next(log.records(after_seq=2))
            assert rec.payload == json.loads(rec.payload_json)
            assert rec.payload["note"] == "ünïcode ok"

    def test_empty_log_has_no_head_and_verifies(self, db_url: str) -> None:
        """A new log has no head and verifies with zero records."""
        with AuditLog(db_url) as log:
            assert log.head() is None
            report = log.verify()
            assert report.ok and report.checked == 0


class TestBadInput:
    def test_naive_timestamp_is_refused(self, tmp_path: Path) -> None:
        """A naive datetime is an error naming the record kind, never silently assumed UTC."""
        with AuditLog(str(tmp_path / "a.db")) as log, pytest.raises(AuditError, match=r"'observation'.*naive"):
            log.append("observation", {}, incident_id=None, ts=datetime(2026, 1, 1))

    def test_non_json_payload_is_refused(self, tmp_path: Path) -> None:
        """NaN and non-dict payloads are refused with the kind named, and nothing is written."""
        with AuditLog(str(tmp_path / "a.db")) as log:
            with pytest.raises(AuditError, match="'verification'"):
                log.append("verification", {"x": math.nan}, incident_id="i", ts=T0)
            with pytest.raises(AuditError, match="must be a dict"):
                log.append("verification", [1], incident_id="i", ts=T0)  # type: ignore[arg-type]
            with pytest.raises(AuditError, match="kind"):
                log.append("", {}, incident_id="i", ts=T0)
            assert log.head() is None

    def test_missing_database_is_named_when_opening_read_only(self, tmp_path: Path) -> None:
        """Opening a log that does not exist for verification names the path instead of creating it."""
        missing = tmp_path / "nope.db"
        with pytest.raises(AuditError, match=r"no audit database at .*nope\.db"):
            AuditLog(str(missing), create=False)
        assert not missing.exists()

    def test_unknown_url_scheme_is_named(self) -> None:
        """A URL scheme other than SQLite or PostgreSQL is refused with the scheme named."""
        with pytest.raises(AuditError, match="'mysql'"):
            AuditLog("mysql://x/y")

    def test_closed_log_says_so(self, tmp_path: Path) -> None:
        """Using a closed log is an explicit error; closing twice is fine."""
        log = AuditLog(str(tmp_path / "a.db"))
        log.close()
        log.close()
        with pytest.raises(AuditError, match="closed"):
            log.append("observation", {}, incident_id=None, ts=T0)


class TestHmacKeyFromEnvironment:
    def test_both_variables_set_is_an_error_naming_them(self) -> None:
        """Setting both the key and the key-file variable is refused, naming both."""
        from runtime.audit import load_hmac_key_from_env

        env = {"HOMEOSTAT_AUDIT_HMAC_KEY": "k", "HOMEOSTAT_AUDIT_HMAC_KEY_FILE": "/x"}
        with pytest.raises(AuditError, match="HOMEOSTAT_AUDIT_HMAC_KEY and HOMEOSTAT_AUDIT_HMAC_KEY_FILE"):
            load_hmac_key_from_env(env)

    def test_empty_or_missing_key_file_is_an_error_naming_the_file(self, tmp_path: Path) -> None:
        """An empty or unreadable key file is refused with its path, never treated as 'no key'."""
        from runtime.audit import load_hmac_key_from_env

        empty = tmp_path / "empty.key"
        empty.write_bytes(b"\n")
        with pytest.raises(AuditError, match=r"empty\.key: the HMAC key file is empty"):
            load_hmac_key_from_env({"HOMEOSTAT_AUDIT_HMAC_KEY_FILE": str(empty)})
        with pytest.raises(AuditError, match=r"missing\.key: cannot read"):
            load_hmac_key_from_env({"HOMEOSTAT_AUDIT_HMAC_KEY_FILE": str(tmp_path / "missing.key")})
        assert load_hmac_key_from_env({}) is None
