"""The hash chain itself: how one record's hash is computed from its fields and its predecessor.

Pure functions, no I/O. The hashed message is the canonical JSON of
``{"incident_id", "kind", "payload", "prev_hash", "seq", "ts"}``; it is assembled from the
stored canonical payload text directly (no parse/re-serialise) so verification stays fast,
and a property test checks it equals `domain.canonical.canonical_json` of the same dict.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""The prev_hash of the first record in every chain."""

# The C string encoder behind json.dumps(..., ensure_ascii=False): quotes and escapes a str.
_quote = json.encoder.encode_basestring


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One link of the chain, as stored: `payload_json` is the exact canonical text that was hashed."""

    seq: int
    ts: datetime
    incident_id: str | None
    kind: str
    payload: dict[str, Any]
    payload_json: str
    prev_hash: str
    hash: str

    def to_json_dict(self) -> dict[str, Any]:
        """The record as plain JSON data (for export and the API)."""
        return {
            "seq": self.seq,
            "ts": format_ts(self.ts),
            "incident_id": self.incident_id,
            "kind": self.kind,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def format_ts(ts: datetime) -> str:
    """The one text form of a record's time: ISO 8601 in UTC. Naive datetimes are refused."""
    if ts.tzinfo is None:
        raise ValueError(f"audit timestamps must be timezone-aware (UTC); got naive {ts.isoformat()}")
    return ts.astimezone(UTC).isoformat()


def hashed_message(  # noqa: PLR0917 - the six hashed fields, positional in the spec's order, on the hot path
    seq: int, ts: str, incident_id: str | None, kind: str, payload_json: str, prev_hash: str
) -> bytes:
    """The canonical JSON bytes a record's hash covers (keys in sorted order, no whitespace)."""
    incident = "null" if incident_id is None else _quote(incident_id)
    text = (
        f'{{"incident_id":{incident},"kind":{_quote(kind)},"payload":{payload_json},'
        f'"prev_hash":{_quote(prev_hash)},"seq":{int(seq)},"ts":{_quote(ts)}}}'
    )
    return text.encode("utf-8")


class Hasher:
    """SHA-256, or HMAC-SHA256 when an operator key is given (so DB write access cannot re-forge)."""

    __slots__ = ("_key", "algorithm")

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) == 0:
            raise ValueError("the audit HMAC key is empty; give at least 16 bytes or no key at all")
        self._key = key
        self.algorithm = "sha256" if key is None else "hmac-sha256"

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def digest(self, message: bytes) -> str:
        if self._key is None:
            return hashlib.sha256(message).hexdigest()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def record_hash(  # noqa: PLR0917 - the six hashed fields, positional in the spec's order, on the hot path
        self, seq: int, ts: str, incident_id: str | None, kind: str, payload_json: str, prev_hash: str
    ) -> str:
        return self.digest(hashed_message(seq, ts, incident_id, kind, payload_json, prev_hash))
