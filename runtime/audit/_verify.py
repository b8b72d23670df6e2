"""Walking the chain: find the first record that breaks it, and say how it was broken.

The fast path only recomputes each hash and checks each link. When a record fails, a small
window of neighbours is examined to tell an edit from a deletion, an insertion or a
reordering; a truncated tail is caught against the head the database keeps and, more
importantly, against a head hash the auditor kept elsewhere.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from runtime.audit._chain import GENESIS_HASH, Hasher, _quote

Problem = Literal["edited", "deleted", "inserted", "reordered", "truncated", "malformed"]

# (seq, ts, incident_id, kind, payload_json, prev_hash, hash), exactly as stored.
Row = tuple[int, str, str | None, str, str, str, str]

_WINDOW = 8  # how far (in seq) a moved record is looked for when classifying a failure


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verdict on a chain. `first_bad_seq` and `problem` are None when `ok`."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: Problem | None = None
    message: str = ""
    head_seq: int | None = None
    head_hash: str | None = None
    algorithm: str = "sha256"


def _verifies_at(hasher: Hasher, row: Row, seq: int, prev_hash: str | None = None) -> bool:
    _, ts, incident_id, kind, payload_json, stored_prev, stored_hash = row
    prev = stored_prev if prev_hash is None else prev_hash
    return hasher.record_hash(seq, ts, incident_id, kind, payload_json, prev) == stored_hash


def _original_seq(hasher: Hasher, row: Row, prev_candidates: list[str]) -> int | None:
    """The nearby seq at which this record's own hash checks out, if it was moved there from elsewhere.

    The record's link may have been repointed too (prev_hash is UNIQUE, so an attacker who
    slips a record in must relink its successor), so nearby predecessors' hashes are tried as well.
    """
    seq = row[0]
    prevs = [row[5], *prev_candidates]
    for distance in range(1, _WINDOW + 1):
        for candidate in (seq + distance, seq - distance):
            if candidate >= 1 and any(_verifies_at(hasher, row, candidate, p) for p in prevs):
                return candidate
    return None


def _verifies_near(hasher: Hasher, row: Row, seq: int, prev_candidates: list[str]) -> bool:
    return any(_verifies_at(hasher, row, seq, p) for p in [row[5], *prev_candidates])


def _short(h: str) -> str:
    return h[:12] + "…"


def classify(
    hasher: Hasher, before: list[Row], row: Row, after: list[Row], expected_seq: int
) -> tuple[Problem, int, str]:
    """Explain the first failing record `row`, given verified predecessors and unverified successors."""
    seq = row[0]
    expected_prev = before[-1][6] if before else GENESIS_HASH
    prevs = [GENESIS_HASH, *(r[6] for r in before)]
    if seq > expected_seq:
        missing = f"record {expected_seq}" if seq == expected_seq + 1 else f"records {expected_seq}..{seq - 1}"
        return "deleted", expected_seq, f"{missing} deleted: the sequence jumps from {expected_seq - 1} to {seq}"
    if seq < expected_seq:
        return "inserted", seq, f"record {seq} appears twice: a second record was inserted with the same number"

    if not _verifies_at(hasher, row, seq):
        original = _original_seq(hasher, row, prevs)
        if original is not None and original < seq:
            return (
                "inserted",
                original,
                f"record {original} was inserted: the record now numbered {seq} was originally number {original} "
                f"and was pushed down to make room",
            )
        if original is not None and original > seq:
            later = [r for r in after if _verifies_near(hasher, r, seq, prevs)]
            if later:
                return (
                    "reordered",
                    seq,
                    f"records reordered at {seq}: the record stored as number {seq} was written as number {original}, "
                    f"and the one written as number {seq} now sits at {later[0][0]}",
                )
            return (
                "deleted",
                seq,
                f"record {seq} deleted: the record now numbered {seq} was written as number {original} and later "
                f"records were renumbered to close the gap",
            )
        if after and _verifies_near(hasher, after[0], seq, prevs):
            return (
                "inserted",
                seq,
                f"record {seq} was inserted: it was never part of the chain (its hash does not check out) and the "
                f"record written as number {seq} follows it",
            )
        return (
            "edited",
            seq,
            f"record {seq} was edited: its stored hash {_short(row[6])} no longer matches its contents "
            f"(payload, time, kind, incident or links changed after it was written)",
        )

    if row[5] != expected_prev:
        prev_pos = {r[6]: r[0] for r in before[:-1]}
        if row[5] in prev_pos:
            first = prev_pos[row[5]] + 1
            return (
                "inserted",
                first,
                f"record {first} was inserted: record {seq} links back to record {prev_pos[row[5]]}, "
                f"skipping what now sits between them",
            )
        if any(r[6] == row[5] for r in after):
            return "reordered", seq, f"records reordered at {seq}: record {seq} links to a record stored after it"
        culprit = before[-1][0] if before else seq
        if not before:
            return "edited", seq, f"record {seq} was edited: the first record must link to the genesis hash"
        return (
            "edited",
            culprit,
            f"record {culprit} was rewritten: its hash {_short(expected_prev)} is not the one record {seq} "
            f"committed to ({_short(row[5])}); it was edited and re-hashed, or records after it were removed "
            f"and the rest renumbered",
        )
    raise AssertionError("classify() called on a record that verifies")  # pragma: no cover


def walk(
    rows: Iterable[Row],
    hasher: Hasher,
    *,
    head_hash: str | None = None,
    stored_head: tuple[int, str] | None = None,
) -> VerifyReport:
    """Verify `rows` (ordered by seq) against `hasher`; stop at the first broken record."""
    it: Iterator[Row] = iter(rows)
    recent: deque[Row] = deque(maxlen=_WINDOW)
    digest = hasher.digest
    quote = _quote
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    seen_head = head_hash is None
    last_seq = 0
    for row in it:
        seq, ts, incident_id, kind, payload_json, stored_prev, stored_hash = row
        try:
            broken = (
                seq != expected_seq
                or stored_prev != prev_hash
                or digest(
                    (
                        f'{{"incident_id":{"null" if incident_id is None else quote(incident_id)},"kind":{quote(kind)},'
                        f'"payload":{payload_json},"prev_hash":{quote(stored_prev)},"seq":{seq},"ts":{quote(ts)}}}'
                    ).encode()
                )
                != stored_hash
            )
            if broken:
                after = [r for _, r in zip(range(_WINDOW), it, strict=False)]
                problem, first_bad, message = classify(hasher, list(recent), row, after, expected_seq)
        except (TypeError, ValueError) as exc:  # a column of the wrong type (SQLite does not enforce types)
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=expected_seq,
                problem="malformed",
                message=f"record {expected_seq} is malformed: a stored column has the wrong type ({exc})",
                algorithm=hasher.algorithm,
            )
        if broken:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=first_bad,
                problem=problem,
                message=message,
                algorithm=hasher.algorithm,
            )
        if not seen_head and stored_hash == head_hash:
            seen_head = True
        recent.append(row)
        prev_hash = stored_hash
        last_seq = seq
        expected_seq += 1
        checked += 1

    if not seen_head:
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=last_seq + 1,
            problem="truncated",
            message=(
                f"truncated: the chain ends at record {last_seq} and never reaches the head hash you kept "
                f"({_short(head_hash or '')}); records after {last_seq} were removed or the chain was rewritten"
            ),
            head_seq=last_seq or None,
            head_hash=prev_hash if last_seq else None,
            algorithm=hasher.algorithm,
        )
    if stored_head is not None and stored_head[0] != last_seq:
        head_seq, _ = stored_head
        if head_seq > last_seq:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=last_seq + 1,
                problem="truncated",
                message=(
                    f"truncated: the log's head says {head_seq} records were written but the chain ends at "
                    f"record {last_seq}"
                ),
                algorithm=hasher.algorithm,
            )
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=head_seq + 1,
            problem="inserted",
            message=(
                f"record {head_seq + 1} was inserted: the log's head says {head_seq} records were written but "
                f"the chain continues to {last_seq} (rows added without going through the log)"
            ),
            algorithm=hasher.algorithm,
        )
    if stored_head is not None and stored_head[1] != prev_hash and last_seq:
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=last_seq,
            problem="edited",
            message=f"record {last_seq} was rewritten: its hash differs from the head the log recorded",
            algorithm=hasher.algorithm,
        )
    return VerifyReport(
        ok=True,
        checked=checked,
        message=f"{checked} records verified; the chain is intact",
        head_seq=last_seq or None,
        head_hash=prev_hash if last_seq else None,
        algorithm=hasher.algorithm,
    )
