"""Columnar intake: a poll's samples as columns, built by the source while it parses them.

`SampleBatch` is a `list[Sample]` (everything that reads a poll's samples keeps working) that
also carries the same rows as columns: a process-wide integer id of each row's series
(`series_id`), unix seconds and the value. A source appends each sample it validated with
`add`; `DetectionEngine.observe_batch` then reads the columns and maps series ids to its own
state slots with one array lookup per poll, instead of walking the `Sample` objects and
looking every (service, signal) up in a dict again.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from domain import Sample

#: distinct series the process-wide id table holds; rows of further series get id -1 (looked up by key)
MAX_SERIES_IDS = 1_000_000

_IDS: dict[tuple[str, str], int] = {}
_KEYS: list[tuple[str, str]] = []

Columns = tuple[list[tuple[str, str]], npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def series_id(key: tuple[str, str]) -> int:
    """A stable small integer for a (service, signal) key in this process; -1 once the table is full."""
    found = _IDS.get(key)
    if found is not None:
        return found
    if len(_KEYS) >= MAX_SERIES_IDS:
        return -1
    new = _IDS[key] = len(_KEYS)
    _KEYS.append(key)
    return new


def series_ids_known() -> int:
    """How many series ids this process has handed out."""
    return len(_KEYS)


class SampleBatch(list[Sample]):
    """A poll's samples plus their columns; `columns()` is None once the list was changed directly."""

    __slots__ = ("_cache", "_ids", "_keys", "_ts", "_values")

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        super().__init__()
        self._keys: list[tuple[str, str]] = []
        self._ids = array("q")  # typed buffers: the columns are copied out in one memcpy each
        self._ts = array("d")
        self._values = array("d")
        self._cache: Columns | None = None
        for sample in samples:
            self.add(sample)

    def add(self, sample: Sample) -> None:
        """Append one sample and its row."""
        key = (sample.service, sample.signal)
        self.append(sample)
        self._keys.append(key)
        self._ids.append(series_id(key))
        self._ts.append(sample.ts.timestamp())
        self._values.append(sample.value)
        self._cache = None

    def extend_batch(self, other: SampleBatch) -> None:
        """Append another batch's rows (columns included)."""
        if other.columns() is None:
            for sample in other:
                self.add(sample)
            return
        self.extend(other)
        self._keys.extend(other._keys)
        self._ids.extend(other._ids)
        self._ts.extend(other._ts)
        self._values.extend(other._values)
        self._cache = None

    def columns(self) -> Columns | None:
        """(keys, series ids, unix seconds, values) of every row, or None if the list no longer matches them."""
        if len(self._keys) != len(self):
            return None
        if self._cache is None:
            self._cache = (
                self._keys,
                np.frombuffer(self._ids, dtype=np.int64).astype(np.intp),
                np.frombuffer(self._ts, dtype=np.float64).copy(),
                np.frombuffer(self._values, dtype=np.float64).copy(),
            )
        return self._cache
