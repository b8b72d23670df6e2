"""Export the audit log for SIEM ingestion, streamed record by record (never loaded whole)."""

from __future__ import annotations

import csv
import json
from typing import Literal, TextIO

from runtime.audit._store import AuditLog

ExportFormat = Literal["jsonl", "csv"]
CSV_COLUMNS = ("seq", "ts", "incident_id", "kind", "payload_json", "prev_hash", "hash")


def export(log: AuditLog, fmt: ExportFormat, out: TextIO, *, incident_id: str | None = None) -> int:
    """Write every record (or one incident's) to `out` as JSON lines or CSV; returns how many.

    JSON lines carry the payload as an object plus prev_hash and hash, so a SIEM can re-check
    the chain; CSV carries the canonical payload text in `payload_json`.
    """
    count = 0
    if fmt == "jsonl":
        for rec in log.records(incident_id=incident_id):
            out.write(json.dumps(rec.to_json_dict(), ensure_ascii=False, separators=(",", ":"), sort_keys=True))
            out.write("\n")
            count += 1
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for rec in log.records(incident_id=incident_id):
            writer.writerow(
                (
                    rec.seq,
                    rec.ts.isoformat(),
                    rec.incident_id or "",
                    rec.kind,
                    rec.payload_json,
                    rec.prev_hash,
                    rec.hash,
                )
            )
            count += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}; use jsonl or csv")
    return count
