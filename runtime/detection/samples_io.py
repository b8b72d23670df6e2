"""Offline sample files for `homeostat detect`: JSON lines or a `timestamp,value` CSV.

Rows are yielded raw (service, signal, unix ts, value) so that the engine's own checks count
and drop bad ones with a reason; only rows that cannot be read at all are counted here.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class SamplesFileError(ValueError):
    """The samples file as a whole cannot be read (missing, wrong header, missing names)."""


@dataclass
class RawRow:
    service: Any
    signal: Any
    ts: Any
    value: Any
    where: str


@dataclass
class ReadStats:
    unreadable: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def count(self, reason: str, where: str) -> None:
        self.unreadable[reason] += 1
        self.examples.setdefault(reason, where)


def parse_timestamp(text: Any) -> float | None:
    """Unix seconds, or an ISO-8601 / `YYYY-MM-DD HH:MM:SS` time (UTC when no zone is given)."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return float(text) if math.isfinite(text) else None
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text  # the engine counts it as not_a_number


def read_samples(
    path: Path, *, service: str | None = None, signal: str | None = None, stats: ReadStats | None = None
) -> Iterator[RawRow]:
    """Rows of a `.jsonl` file, or of a `.csv` file with columns timestamp,value (needs service and signal)."""
    stats = stats if stats is not None else ReadStats()
    if not path.is_file():
        raise SamplesFileError(f"{path}: no such samples file")
    if path.suffix.lower() == ".csv":
        yield from _read_csv(path, service, signal, stats)
    else:
        yield from _read_jsonl(path, service, signal, stats)


def _read_csv(path: Path, service: str | None, signal: str | None, stats: ReadStats) -> Iterator[RawRow]:
    if not service or not signal:
        raise SamplesFileError(f"{path}: a CSV samples file needs --service and --signal to name its series")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if "timestamp" not in header or "value" not in header:
            raise SamplesFileError(f"{path}:1: CSV header must have columns timestamp,value; got {header}")
        ti, vi = header.index("timestamp"), header.index("value")
        for line_no, row in enumerate(reader, start=2):
            where = f"{path}:{line_no}"
            if len(row) <= max(ti, vi):
                stats.count("short_row", where)
                continue
            ts = parse_timestamp(row[ti])
            if ts is None:
                stats.count("bad_timestamp", where)
                continue
            yield RawRow(service, signal, ts, _number(row[vi].strip()), where)


def _read_jsonl(path: Path, service: str | None, signal: str | None, stats: ReadStats) -> Iterator[RawRow]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            where = f"{path}:{line_no}"
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                stats.count("bad_json", where)
                continue
            if not isinstance(obj, dict):
                stats.count("not_an_object", where)
                continue
            ts = parse_timestamp(obj.get("ts"))
            if ts is None:
                stats.count("bad_timestamp", where)
                continue
            yield RawRow(obj.get("service", service), obj.get("signal", signal), ts, obj.get("value"), where)
