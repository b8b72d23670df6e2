"""Tampering behind the log's back: the attacker drops the triggers first, and verify still
names the first bad record and how it was broken, on SQLite and PostgreSQL, keyed or not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runtime.audit import AuditLog, Hasher
from tests.audit.conftest import Attacker
from tests.audit.helpers import fill

KEY = b"operator-key-kept-outside-the-database"
N = 10


@pytest.fixture(params=[None, KEY], ids=["sha256", "hmac"])
def key(request: pytest.FixtureRequest) -> bytes | None:
    return request.param  # type: ignore[no-any-return]


def _chain(db_url: str, key: bytes | None) -> str:
    with AuditLog(db_url, hmac_key=key) as log:
        written = fill(log, N)
    return written[-1].hash


def _verify(db_url: str, key: bytes | None, head: str | None = None):  # type: ignore[no-untyped-def]
    with AuditLog(db_url, hmac_key=key, create=False) as log:
        return log.verify(head_hash=head)


class TestTamperKinds:
    def test_edited_payload_is_named(self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]) -> None:
        """Changing one stored payload is reported as an edit of exactly that record."""
        _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = 4", ('{"verdict":"auto"}',))
        report = _verify(db_url, key)
        assert (report.ok, report.problem, report.first_bad_seq, report.checked) == (False, "edited", 4, 3)
        assert "record 4" in report.message

    def test_edited_and_rehashed_record_is_named(
        self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]
    ) -> None:
        """An edit whose hash the attacker recomputed still breaks the next link and names the edited record."""
        _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        row = a.rows()[5]  # seq 6
        forged = Hasher(key).record_hash(6, row[1], row[2], row[3], '{"edited":1}', row[5])
        a.execute("UPDATE audit_records SET payload_json = ?, hash = ? WHERE seq = 6", ('{"edited":1}', forged))
        report = _verify(db_url, key)
        assert (report.problem, report.first_bad_seq) == ("edited", 6)

    def test_deleted_record_is_named(self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]) -> None:
        """Deleting a record in the middle is reported as a deletion at its seq."""
        _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        a.execute("DELETE FROM audit_records WHERE seq = 5")
        report = _verify(db_url, key)
        assert (report.problem, report.first_bad_seq) == ("deleted", 5)
        assert "record 5 deleted" in report.message

    def test_deleted_and_renumbered_record_is_named(
        self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]
    ) -> None:
        """Deleting a record and renumbering the rest to close the gap is still a deletion at that seq."""
        _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        a.execute("DELETE FROM audit_records WHERE seq = 5")
        a.shift_down(6, by=-1)
        report = _verify(db_url, key)
        assert (report.problem, report.first_bad_seq) == ("deleted", 5)

    def test_inserted_record_is_named(
        self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]
    ) -> None:
        """A forged record slipped into the middle (later ones renumbered) is reported as inserted at its seq."""
        _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        prev = a.rows()[2][6]  # hash of record 3
        a.shift_down(4)
        # the attacker knows the algorithm but not the operator's key
        a.insert_forged(4, prev, Hasher(None if key is None else b"attacker-guess"))
        report = _verify(db_url, key)
        assert (report.problem, report.first_bad_seq) == ("inserted", 4)

    def test_reordered_records_are_named(
        self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]
    ) -> None:
        """Swapping two records' places is reported as a reordering at the first of them."""
        _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        a.set_seq(6, -6)
        a.set_seq(7, 6)
        a.set_seq(-6, 7)
        report = _verify(db_url, key)
        assert (report.problem, report.first_bad_seq) == ("reordered", 6)

    def test_truncated_tail_is_caught_against_the_kept_head(
        self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]
    ) -> None:
        """Cutting off the last records and fixing up the head row is caught by the head hash the auditor kept."""
        kept_head = _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        survivor = a.rows()[6]  # seq 7
        a.execute("DELETE FROM audit_records WHERE seq > 7")
        a.execute("UPDATE audit_head SET seq = 7, hash = ? WHERE id = 1", (survivor[6],))
        assert _verify(db_url, key).ok  # without the kept head the cut is invisible
        report = _verify(db_url, key, head=kept_head)
        assert (report.problem, report.first_bad_seq) == ("truncated", 8)
        assert "head hash you kept" in report.message

    def test_truncated_tail_is_caught_by_the_head_row(
        self, db_url: str, key: bytes | None, attacker: Callable[[str], Attacker]
    ) -> None:
        """Cutting off the tail without touching the head row is caught even without a kept head."""
        _chain(db_url, key)
        a = attacker(db_url)
        a.drop_triggers()
        a.execute("DELETE FROM audit_records WHERE seq > 8")
        report = _verify(db_url, key)
        assert (report.problem, report.first_bad_seq) == ("truncated", 9)

    def test_an_older_kept_head_still_verifies_a_longer_chain(self, db_url: str, key: bytes | None) -> None:
        """A head kept before later appends is still in the chain, so verify passes."""
        kept = _chain(db_url, key)
        with AuditLog(db_url, hmac_key=key) as log:
            fill(log, 3)
            assert log.verify(head_hash=kept).ok


class TestHmacKey:
    def test_rechained_log_without_the_key_fails_verification(
        self, db_url: str, attacker: Callable[[str], Attacker]
    ) -> None:
        """An attacker who edits a record and re-forges every later hash cannot pass a keyed verify."""
        _chain(db_url, KEY)
        a = attacker(db_url)
        a.drop_triggers()
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = 3", ('{"verdict":"deny"}',))
        a.rehash_from(3, Hasher(b"not-the-operator-key"))
        report = _verify(db_url, KEY)
        assert (report.ok, report.problem, report.first_bad_seq) == (False, "edited", 3)

    def test_rechained_unkeyed_log_passes_which_is_why_the_key_exists(
        self, db_url: str, attacker: Callable[[str], Attacker]
    ) -> None:
        """Without a key a full re-forge is undetectable by verify alone (only a kept head catches it)."""
        kept = _chain(db_url, None)
        a = attacker(db_url)
        a.drop_triggers()
        a.execute("UPDATE audit_records SET payload_json = ? WHERE seq = 3", ('{"verdict":"deny"}',))
        a.rehash_from(3, Hasher(None))
        assert _verify(db_url, None).ok
        assert _verify(db_url, None, head=kept).problem == "truncated"

    def test_keyed_log_verified_without_key_asks_for_it(self, db_url: str) -> None:
        """Verifying a keyed log without the key fails and says to supply the key."""
        _chain(db_url, KEY)
        report = _verify(db_url, None)
        assert not report.ok
        assert "HOMEOSTAT_AUDIT_HMAC_KEY" in report.message

    def test_wrong_key_fails_at_the_first_record(self, db_url: str) -> None:
        """Verifying with the wrong key fails at record 1."""
        _chain(db_url, KEY)
        report = _verify(db_url, b"wrong-key")
        assert (report.ok, report.first_bad_seq) == (False, 1)

    def test_appending_with_another_algorithm_is_refused(self, db_url: str) -> None:
        """A handle without the key cannot append to a keyed chain (and vice versa)."""
        from runtime.audit import AuditError

        _chain(db_url, KEY)
        with AuditLog(db_url, hmac_key=None) as log, pytest.raises(AuditError, match="same HMAC key"):
            fill(log, 1)

    def test_key_is_read_from_the_environment(self, db_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        """HOMEOSTAT_AUDIT_HMAC_KEY_FILE supplies the key when none is passed."""
        key_file = tmp_path / "audit.key"
        key_file.write_bytes(KEY + b"\n")
        monkeypatch.setenv("HOMEOSTAT_AUDIT_HMAC_KEY_FILE", str(key_file))
        with AuditLog.from_env(db_url) as log:
            assert log.algorithm == "hmac-sha256"
            fill(log, 3)
        monkeypatch.delenv("HOMEOSTAT_AUDIT_HMAC_KEY_FILE")
        assert _verify(db_url, KEY).ok


class TestAppendOnlyTriggers:
    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE audit_records SET payload_json = '{}' WHERE seq = 2",
            "DELETE FROM audit_records WHERE seq = 2",
            "UPDATE audit_records SET seq = 99 WHERE seq = 10",
        ],
        ids=["update", "delete", "renumber"],
    )
    def test_update_and_delete_are_rejected_by_the_database(
        self, db_url: str, sql: str, attacker: Callable[[str], Attacker]
    ) -> None:
        """UPDATE and DELETE on the records table fail in the database itself, and the chain is untouched."""
        _chain(db_url, None)
        a = attacker(db_url)
        with pytest.raises(Exception, match="append-only"):
            a.execute(sql)
        assert _verify(db_url, None).ok


class TestMalformedRows:
    def test_wrongly_typed_column_is_reported_not_crashed_on(
        self,
        tmp_path,
        attacker: Callable[[str], Attacker],  # type: ignore[no-untyped-def]
    ) -> None:
        """A stored value of the wrong type (SQLite does not enforce types) is reported as malformed at that record."""
        db = str(tmp_path / "a.db")
        _chain(db, None)
        a = attacker(db)
        a.drop_triggers()
        a.execute("UPDATE audit_records SET ts = X'3132' WHERE seq = 3")
        report = _verify(db, None)
        assert (report.ok, report.problem, report.first_bad_seq) == (False, "malformed", 3)


class TestTriggersComeBack:
    def test_opening_the_log_reinstalls_dropped_triggers(
        self, db_url: str, attacker: Callable[[str], Attacker]
    ) -> None:
        """When the daemon next opens the log, triggers an attacker dropped are back in force."""
        _chain(db_url, None)
        a = attacker(db_url)
        a.drop_triggers()
        AuditLog(db_url).close()
        with pytest.raises(Exception, match="append-only"):
            a.execute("DELETE FROM audit_records WHERE seq = 1")
