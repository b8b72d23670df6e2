"""Property: any single-record mutation of a stored chain is detected, at that record."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.canonical import canonical_json
from runtime.audit import AuditLog, Hasher, hashed_message
from runtime.audit._verify import Row, walk
from tests.audit.helpers import fill

N = 12
FIELDS = {"ts": 1, "incident_id": 2, "kind": 3, "payload_json": 4, "prev_hash": 5, "hash": 6}


@pytest.fixture(scope="module", params=[None, b"k" * 32], ids=["sha256", "hmac"])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Row], Hasher]:
    path = Path(tmp_path_factory.mktemp("prop")) / "a.db"
    with AuditLog(str(path), hmac_key=request.param) as log:
        fill(log, N)
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT seq, ts, incident_id, kind, payload_json, prev_hash, hash FROM audit_records ORDER BY seq"
        ).fetchall()
    return rows, Hasher(request.param)


class TestAnyMutationIsDetected:
    @settings(max_examples=150, deadline=None)
    @given(index=st.integers(0, N - 1), field=st.sampled_from(sorted(FIELDS)), junk=st.text(min_size=1, max_size=20))
    def test_changing_any_field_of_any_record_is_caught_at_that_record(
        self, stored: tuple[list[Row], Hasher], index: int, field: str, junk: str
    ) -> None:
        """Whatever field of whichever record changes, verify fails and names that record."""
        rows, hasher = stored
        row = list(rows[index])
        original = row[FIELDS[field]]
        row[FIELDS[field]] = (original or "") + junk
        mutated = [*rows[:index], tuple(row), *rows[index + 1 :]]
        report = walk(mutated, hasher)  # type: ignore[arg-type]
        assert not report.ok
        assert report.first_bad_seq == index + 1

    @settings(max_examples=100, deadline=None)
    @given(index=st.integers(0, N - 1), new_seq=st.integers(-5, N + 5))
    def test_renumbering_any_record_is_caught(self, stored: tuple[list[Row], Hasher], index: int, new_seq: int) -> None:
        """Giving any record another seq breaks verification."""
        rows, hasher = stored
        if new_seq == rows[index][0]:
            return
        mutated = [*rows[:index], (new_seq, *rows[index][1:]), *rows[index + 1 :]]
        mutated.sort(key=lambda r: r[0])
        assert not walk(mutated, hasher).ok  # type: ignore[arg-type]

    @settings(max_examples=50, deadline=None)
    @given(index=st.integers(0, N - 1))
    def test_dropping_any_record_is_caught_given_the_head(self, stored: tuple[list[Row], Hasher], index: int) -> None:
        """Dropping any one record, the last included, is caught (the last against the kept head)."""
        rows, hasher = stored
        mutated = rows[:index] + rows[index + 1 :]
        report = walk(mutated, hasher, head_hash=rows[-1][6])
        assert not report.ok
        assert report.problem in ("deleted", "truncated")
        assert report.first_bad_seq == index + 1

    @given(
        payload=st.dictionaries(
            st.text(max_size=8),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=10),
            ),
            max_size=5,
        ),
        incident=st.one_of(st.none(), st.text(max_size=10)),
        kind=st.text(min_size=1, max_size=10),
    )
    def test_fast_hashed_message_equals_canonical_json(self, payload: dict, incident: str | None, kind: str) -> None:  # type: ignore[type-arg]
        """The hashed bytes are exactly canonical_json of the six fields, for any payload and strings."""
        ts = "2026-01-01T00:00:00+00:00"
        expected = canonical_json(
            {"seq": 7, "ts": ts, "incident_id": incident, "kind": kind, "payload": payload, "prev_hash": "0" * 64}
        )
        assert hashed_message(7, ts, incident, kind, canonical_json(payload), "0" * 64) == expected.encode()
