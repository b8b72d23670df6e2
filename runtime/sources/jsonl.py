"""Tails a JSONL file of samples and change events, as a log shipper would.

Each line is one JSON object: a sample (``service, signal, ts, value, labels``) or a change
event (``id, service, kind, from_value, to_value, ts, actor``); an optional ``"type":
"sample" | "change"`` says which. Partial last lines wait for their newline; rotation (the
path now names a new file) and truncation are followed; bad lines are reported as
``file:line: reason`` and skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from domain import ChangeEvent, Sample
from runtime.detection.intake import SampleBatch
from runtime.ports import TelemetryBatch
from runtime.sources._parse import Rejection, SourceError, parse_item

log = logging.getLogger(__name__)

#: Longest line accepted; a longer one is reported and skipped (protects memory).
MAX_LINE_BYTES = 1 << 20
#: Bytes read per poll at most, so one poll never stalls the loop on a huge backlog.
MAX_READ_BYTES = 8 << 20


class JsonlTailSource:
    """A `TelemetrySource` over a growing JSONL file."""

    def __init__(self, path: str | Path, *, name: str | None = None, from_end: bool = False) -> None:
        self.path = Path(path)
        self.name = name or f"jsonl:{self.path.name}"
        self._from_end = from_end
        self._fh: IO[bytes] | None = None
        self._inode: tuple[int, int] | None = None
        self._line_no = 0
        self._partial = b""
        self._skipping_long_line = False
        self.rejections: deque[Rejection] = deque(maxlen=1000)
        """The most recent bad lines, as ``file:line`` and reason."""

    async def poll(self, now: datetime) -> TelemetryBatch:
        return await asyncio.to_thread(self._poll_sync)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # -- reading ------------------------------------------------------------------------

    def _poll_sync(self) -> TelemetryBatch:
        batch = TelemetryBatch(samples=SampleBatch())  # samples plus the columns detection reads
        if self._fh is None:
            self._open(first=True)
        assert self._fh is not None
        if self._read_available(batch) >= MAX_READ_BYTES:
            return batch  # more backlog in this file; rotation is checked once it is drained
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return batch  # rotated away and not yet recreated: keep what we read
        if (st.st_dev, st.st_ino) != self._inode:
            # Rotated: drain what the writer added to the old file, then follow the new one.
            self._read_available(batch)
            self._finish_partial(batch)
            self._fh.close()
            self._open(first=False)
            self._read_available(batch)
        elif st.st_size < self._fh.tell():
            log.warning("%s was truncated; reading it again from the start", self.path)
            self._fh.seek(0)
            self._partial = b""
            self._line_no = 0
            self._read_available(batch)
        return batch

    def _open(self, *, first: bool) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - held open across polls to follow rotation
        except FileNotFoundError as exc:
            raise SourceError(f"{self.path}: no such file") from exc
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open: {exc}") from exc
        st = os.fstat(fh.fileno())
        self._fh = fh
        self._inode = (st.st_dev, st.st_ino)
        self._partial = b""
        self._line_no = 0
        self._skipping_long_line = False
        if first and self._from_end:
            # Skip existing content, but count its lines so reported line numbers stay true.
            for _ in fh:
                self._line_no += 1

    def _read_available(self, batch: TelemetryBatch) -> int:
        """Read what the file holds past our position; returns the number of bytes read."""
        assert self._fh is not None
        chunk = self._fh.read(MAX_READ_BYTES)
        if not chunk:
            return 0
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            self._line_no += 1
            if self._skipping_long_line:
                self._skipping_long_line = False
                continue
            self._handle_line(raw, batch)
        if len(self._partial) > MAX_LINE_BYTES:
            self._reject(self._line_no + 1, f"line longer than {MAX_LINE_BYTES} bytes; skipped")
            self._partial = b""
            self._skipping_long_line = True
        return len(chunk)

    def _finish_partial(self, batch: TelemetryBatch) -> None:
        """A rotated file's last line without a newline is still a whole record."""
        if self._partial.strip():
            self._line_no += 1
            self._handle_line(self._partial, batch)
        self._partial = b""

    def _handle_line(self, raw: bytes, batch: TelemetryBatch) -> None:
        text = raw.strip()
        if not text:
            return
        if len(text) > MAX_LINE_BYTES:
            self._reject(self._line_no, f"line longer than {MAX_LINE_BYTES} bytes; skipped")
            return
        try:
            item: Any = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            self._reject(self._line_no, f"not valid JSON: {exc}")
            return
        if not isinstance(item, dict):
            self._reject(self._line_no, f"expected a JSON object, got {type(item).__name__}")
            return
        kind = item.pop("type", None)
        if kind is None:
            kind = "change" if "kind" in item and "from_value" in item else "sample"
        where = f"{self.path}:{self._line_no}"
        if kind == "sample":
            sample = parse_item(Sample, item, where)
            if isinstance(sample, Rejection):
                self._record(sample)
            else:
                samples = batch.samples
                if isinstance(samples, SampleBatch):
                    samples.add(sample)
                else:
                    samples.append(sample)
        elif kind == "change":
            change = parse_item(ChangeEvent, item, where)
            if isinstance(change, Rejection):
                self._record(change)
            else:
                batch.changes.append(change)
        else:
            self._reject(self._line_no, f"unknown type {kind!r}; expected 'sample' or 'change'")

    def _reject(self, line_no: int, reason: str) -> None:
        self._record(Rejection(f"{self.path}:{line_no}", reason))

    def _record(self, rejection: Rejection) -> None:
        log.warning("bad telemetry line skipped: %s", rejection)
        self.rejections.append(rejection)
