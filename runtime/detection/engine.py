"""The detection stage: samples in, anomalies out, one detector ensemble per series.

`DetectionEngine` owns every series' state, drops bad samples with a counted reason (the
stream goes on), raises staleness once per silence, projects budgets, and checkpoints to
bytes so a restart resumes where it stopped.
"""

from __future__ import annotations

import math
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from domain import Anomaly, Direction, Sample, Severity
from runtime.detection.budget import BUDGET_SIGNALS, BudgetTracker
from runtime.detection.columnar import LAST_TS_ROW as _LAST_TS
from runtime.detection.columnar import Columns, kernels, kernels_ready
from runtime.detection.config import DetectionConfig, load_detection_config
from runtime.detection.intake import SampleBatch, series_ids_known
from runtime.detection.series import SeriesDetector, make_anomaly

SNAPSHOT_MAGIC = b"HOMEOSTAT-DETECTION\x00"
SNAPSHOT_FORMAT = 1

_DEFAULT_CONFIG: DetectionConfig | None = None


def default_config() -> DetectionConfig:
    """The shipped defaults (loaded once per process)."""
    global _DEFAULT_CONFIG  # noqa: PLW0603 - a process-wide cache of an immutable value
    if _DEFAULT_CONFIG is None:
        _DEFAULT_CONFIG = load_detection_config()
    return _DEFAULT_CONFIG


_series_of = attrgetter("service", "signal")
_value_of = attrgetter("value")
_ts_of = attrgetter("ts")


def _unix_times(samples: Sequence[Sample]) -> npt.NDArray[np.float64]:
    """Unix seconds of each sample; a poll's samples usually share one datetime object."""
    moments = list(map(_ts_of, samples))
    first = moments[0]
    if moments.count(first) == len(moments):
        return np.full(len(moments), first.timestamp())
    return np.array([m.timestamp() for m in moments], dtype=np.float64)


def _hashable(part: object) -> bool:
    return isinstance(part, str)


def _occurrence_rounds(slots: npt.NDArray[np.intp], known: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.intp]]:
    """Rows grouped by occurrence: round r holds the r-th row of every series (rows in order)."""
    rows = np.flatnonzero(known)
    order = rows[np.argsort(slots[rows], kind="stable")]
    ordered = slots[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    positions = np.arange(len(order))
    rank = positions - np.maximum.accumulate(np.where(starts, positions, 0))
    by_row = np.full(len(slots), -1, dtype=np.intp)
    by_row[order] = rank
    return [np.flatnonzero(by_row == r) for r in range(int(rank.max()) + 1)] if len(order) else []


class SnapshotError(ValueError):
    """A detection snapshot cannot be restored; the message says why."""


class DetectionEngine:
    """Streaming anomaly detection over many series.

    Snapshots are pickles: restore only blobs this process family wrote (the checkpoint
    store), never bytes from an untrusted party.
    """

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.config = config if config is not None else default_config()
        self._series: dict[tuple[str, str], SeriesDetector] = {}
        self.dropped: Counter[str] = Counter()
        self.accepted = 0
        self._slots: dict[tuple[str, str], int] = {}
        self._cols = Columns()
        self._slot_of_id = np.full(64, -1, dtype=np.intp)
        #: False: until the compiled loops are loaded (a few seconds, in a thread) polls go one by
        #: one, with identical results; True: the first batch waits for them (benchmarks, tests)
        self.wait_for_kernels = False
        teams = {name: svc.team for name, svc in self.config.services.items() if svc.team is not None}
        self._budget = BudgetTracker(self.config.budgets, teams) if self.config.budgets else None

    # -- intake ---------------------------------------------------------------------------------

    @property
    def series_count(self) -> int:
        return len(self._series)

    def observe(self, sample: Sample) -> list[Anomaly]:
        """Feed one sample; returns the anomalies it completes (usually none)."""
        return self.observe_value(sample.service, sample.signal, sample.ts.timestamp(), sample.value, sample.labels)

    def observe_batch(self, samples: Sequence[Sample]) -> list[Anomaly]:
        """Feed a poll's samples (any order across series; time order within a series).

        Same anomalies, in the same order, as `observe()` one sample at a time. A
        `SampleBatch` (what the sources build) hands over its rows as columns, series ids
        included; any other sequence is read into columns first. See `observe_columns`.
        """
        if not samples:
            return []
        if self._budget is not None or not kernels_ready(self.wait_for_kernels):
            return self._observe_one_by_one(samples)
        if self._cols.pending:
            self._cols.adopt_pending()
        cols = samples.columns() if isinstance(samples, SampleBatch) else None
        if cols is None:
            keys: Sequence[tuple[str, str]] = list(map(_series_of, samples))
            ts_arr = _unix_times(samples)
            x_arr = np.array(list(map(_value_of, samples)), dtype=np.float64)
            slots = self._slots_by_key(keys)
        else:
            keys, ids, ts_arr, x_arr = cols
            found = self._observe_routine(ids, ts_arr, x_arr)
            if found is not None:
                return found
            slots = self._slots_by_id(keys, ids)
        return self._observe_rows(slots, ts_arr, x_arr, lambda i: self.observe(samples[i]))

    def _observe_routine(
        self, ids: npt.NDArray[np.intp], ts_arr: npt.NDArray[np.float64], x_arr: npt.NDArray[np.float64]
    ) -> list[Anomaly] | None:
        """The common poll (every row a tracked, armed series, once, in time): one compiled pass
        checks that, then one step. None when some row needs the general path."""
        cols = self._cols
        n = len(ids)
        table = self._id_table()
        slots = np.empty(n, dtype=np.intp)
        take = np.empty(n, dtype=bool)
        n_take, dup, _unknown = kernels().prepare(
            table, ids, ts_arr, x_arr, cols.active, cols.state, cols.scratch_mark, slots, take
        )
        if n_take != n or dup:
            return None
        found_at: list[tuple[int, list[Anomaly]]] = []
        self._advance(slots, ts_arr, x_arr, None, found_at)
        if not found_at:
            return []
        found_at.sort(key=lambda item: item[0])
        return [a for _, found in found_at for a in found]

    def _advance(
        self,
        slots: npt.NDArray[np.intp],
        ts_arr: npt.NDArray[np.float64],
        x_arr: npt.NDArray[np.float64],
        row_of: npt.NDArray[np.intp] | None,
        found_at: list[tuple[int, list[Anomaly]]],
    ) -> None:
        """One compiled step over distinct, routine rows; rows it hands back go through their detector."""
        cols = self._cols
        self.accepted += len(slots)
        back, drifts, burned = cols.step(slots, ts_arr, x_arr)
        for j, found in burned:
            found_at.append((j if row_of is None else int(row_of[j]), found))
        for j, drift in zip(back, drifts, strict=True):
            slot = int(slots[j])
            cols.release(slot)
            det = cols.dets[slot]
            assert det is not None
            hit = det.update(float(ts_arr[j]), float(x_arr[j]), drift=drift)
            cols.handed_back(slot)
            if hit:
                found_at.append((j if row_of is None else int(row_of[j]), hit))

    def observe_columns(
        self,
        keys: Sequence[tuple[str, str]],
        ts: Sequence[float] | npt.NDArray[np.float64],
        values: Sequence[Any] | npt.NDArray[np.float64],
    ) -> list[Anomaly]:
        """Feed a poll given as columns: row i is series `keys[i]` = (service, signal) at `ts[i]`
        (unix seconds) with `values[i]`.

        Same anomalies, in the same order, as `observe_value` row by row, and bad rows (NaN,
        strings, duplicate or out-of-order timestamps, unknown series) are counted in
        `dropped` the same way. Rows of series whose step is routine are advanced together
        by compiled loops over the state matrix (`columnar.Columns`), one round per
        occurrence of a series in the poll (a range query returns several points per
        series); the rest, and any row a routine step cannot decide, go through their own
        `SeriesDetector`.
        """
        n = len(keys)
        if len(ts) != n or len(values) != n:
            raise ValueError(f"observe_columns: keys, ts and values differ in length ({n}, {len(ts)}, {len(values)})")
        if n == 0:
            return []

        def slow(i: int) -> list[Anomaly]:
            key = keys[i]
            return self.observe_value(key[0], key[1], ts[i], values[i])

        if self._budget is not None or not kernels_ready(self.wait_for_kernels):
            return [a for i in range(n) for a in slow(i)]
        if self._cols.pending:
            self._cols.adopt_pending()
        try:
            ts_arr = np.asarray(ts, dtype=np.float64)
            x_arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):  # a string or None among the rows: row by row, each counted
            return [a for i in range(n) for a in slow(i)]
        return self._observe_rows(self._slots_by_key(keys), ts_arr, x_arr, slow)

    def _slots_by_key(self, keys: Sequence[tuple[str, str]]) -> npt.NDArray[np.intp]:
        """The state slot of each row's series; -1 for a series not tracked yet (or not hashable)."""
        get = self._slots.get
        try:
            slot_list = list(map(get, keys))
        except TypeError:  # an unhashable key: every row by key, one at a time
            slot_list = [get(k) if isinstance(k, tuple) and all(map(_hashable, k)) else None for k in keys]
        if None in slot_list:
            return np.array([-1 if s is None else s for s in slot_list], dtype=np.intp)
        return np.array(slot_list, dtype=np.intp)

    def _id_table(self) -> npt.NDArray[np.intp]:
        """Slot of each process-wide series id (-1: none yet), grown to cover every id handed out."""
        table = self._slot_of_id
        known = series_ids_known()
        if known > len(table):
            grown = np.full(max(known, 2 * len(table)), -1, dtype=np.intp)
            grown[: len(table)] = table
            table = self._slot_of_id = grown
        return table

    def _slots_by_id(self, keys: Sequence[tuple[str, str]], ids: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Slots from process-wide series ids (`intake.series_id`): one array lookup per poll."""
        table = self._id_table()
        if len(ids) and int(ids.min()) < 0:  # ids ran out: look those rows up by key
            return self._slots_by_key(keys)
        slots = table[ids]
        missing = np.flatnonzero(slots < 0)
        if missing.size:  # series seen by id for the first time (or not tracked yet)
            get = self._slots.get
            for i in missing.tolist():
                slot = get(keys[i])
                if slot is not None:
                    table[ids[i]] = slots[i] = slot
        return slots

    def _observe_rows(
        self,
        slots: npt.NDArray[np.intp],
        ts_arr: npt.NDArray[np.float64],
        x_arr: npt.NDArray[np.float64],
        slow: Callable[[int], list[Anomaly]],
    ) -> list[Anomaly]:
        """The batch path: routine rows on the state matrix, every other row through `slow(row)`.

        Round r advances the r-th row of every series in the poll. A row the matrix cannot
        take (series not tracked yet or not armed, bad value, late timestamp) sends it and
        every later row of its series to `slow`, which runs after the rounds in row order,
        so each series still sees its rows in order.
        """
        cols = self._cols
        known = slots >= 0
        all_known = bool(known.all())
        safe = slots if all_known else np.where(known, slots, 0)
        good = np.isfinite(x_arr) & np.isfinite(ts_arr)
        if not all_known:
            good &= known
        if cols.distinct(safe[known] if not all_known else safe):
            rounds: list[npt.NDArray[np.intp] | None] = [None]
        else:
            rounds = list(_occurrence_rounds(safe, known))
        poison = cols.poison
        slow_rows: list[int] = [] if all_known else np.flatnonzero(~known).tolist()
        poisoned: list[npt.NDArray[np.intp]] = []
        found_at: list[tuple[int, list[Anomaly]]] = []
        last_ts = cols.state_column(_LAST_TS)
        for rows in rounds:
            row_of: npt.NDArray[np.intp] | None
            if rows is None:
                r_slots, r_ts, r_x, r_good = safe, ts_arr, x_arr, good
            else:
                r_slots, r_ts, r_x, r_good = safe[rows], ts_arr[rows], x_arr[rows], good[rows]
            take = r_good & cols.active[r_slots]
            take &= r_ts > last_ts[r_slots]  # out of order or duplicate: counted one by one
            if poisoned:
                take &= ~poison[r_slots]
            if not take.all():
                odd = ~take
                if not all_known:
                    odd &= known if rows is None else known[rows]
                odd_slots = r_slots[odd]
                poison[odd_slots] = True
                poisoned.append(odd_slots)
                odd_rows = np.flatnonzero(odd) if rows is None else rows[odd]
                slow_rows.extend(odd_rows.tolist())
                pick = np.flatnonzero(take)
                row_of = pick if rows is None else rows[pick]
                r_slots, r_ts, r_x = r_slots[pick], r_ts[pick], r_x[pick]
            else:
                row_of = rows
            if len(r_slots):
                self._advance(r_slots, r_ts, r_x, row_of, found_at)
        for marks in poisoned:
            poison[marks] = False
        if slow_rows:
            slow_rows.sort()
            for i in slow_rows:
                found = slow(i)
                if found:
                    found_at.append((i, found))
        if not found_at:
            return []
        found_at.sort(key=lambda item: item[0])
        return [a for _, found in found_at for a in found]

    def _observe_one_by_one(self, samples: Sequence[Sample]) -> list[Anomaly]:
        out: list[Anomaly] = []
        for sample in samples:
            found = self.observe(sample)
            if found:
                out.extend(found)
        return out

    def observe_value(
        self, service: str, signal: str, ts: float, value: Any, labels: dict[str, str] | None = None
    ) -> list[Anomaly]:
        """Feed one raw observation (ts in unix seconds). Bad input is counted in `dropped`, never raised."""
        reason = self._reject_reason(service, signal, ts, value)
        if reason is not None:
            self.dropped[reason] += 1
            return []
        key = (service, signal)
        det = self._series.get(key)
        slot = self._slots.get(key)
        if det is None:
            if len(self._series) >= self.config.max_series:
                self.dropped["series_limit"] += 1
                return []
            det = self._series[key] = SeriesDetector(service, signal, self.config.policy_for(service, signal))
            slot = self._register(key, det)
        else:
            if slot is not None:
                self._cols.release(slot)
            if det.last_ts is not None and ts <= det.last_ts:
                self.dropped["duplicate_ts" if ts == det.last_ts else "out_of_order"] += 1
                return []
        self.accepted += 1
        found = det.update(ts, float(value))
        if slot is not None:
            self._cols.adopt(slot, lazy=True)
        out = list(found) if found else []
        if self._budget is not None and signal in BUDGET_SIGNALS:
            team = labels.get("team") if labels else None
            budget_found = self._budget.update(service, signal, ts, float(value), team)
            if budget_found:
                out.extend(budget_found)
        return out

    def _register(self, key: tuple[str, str], det: SeriesDetector) -> int:
        slot = len(self._slots)
        self._slots[key] = slot
        self._cols.register(slot, det)
        return slot

    def _sync(self) -> None:
        """Write columnar state back to every SeriesDetector (before reading them directly)."""
        self._cols.release_all()

    @staticmethod
    def _reject_reason(service: Any, signal: Any, ts: Any, value: Any) -> str | None:
        if not isinstance(service, str) or not service or not isinstance(signal, str) or not signal:
            return "unknown_series"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "not_a_number"
        if not math.isfinite(value):
            return "not_finite"
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            return "bad_timestamp"
        return None

    # -- staleness ------------------------------------------------------------------------------

    def check_staleness(self, now: datetime) -> list[Anomaly]:
        """One `stale` anomaly per series that has been silent too long (once per silence)."""
        self._sync()
        t = now.timestamp()
        out: list[Anomaly] = []
        for det in self._series.values():
            last = det.last_ts
            if last is None or det.stale_reported:
                continue
            limit = det.stale_after()
            if t - last > limit:
                det.stale_reported = True
                out.append(
                    make_anomaly(
                        service=det.service,
                        signal=det.signal,
                        detector="staleness",
                        ts=t,
                        direction=Direction.BOTH,
                        baseline=det.mu,
                        current=det.mu,
                        severity=Severity.WARNING,
                        kind="stale",
                        detail={"silent_s": round(t - last, 3), "stale_after_s": round(limit, 3)},
                    )
                )
        return out

    # -- checkpoint -----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """All detector state as bytes; `DetectionEngine.restore` continues exactly from here."""
        self._sync()
        payload = {
            "format": SNAPSHOT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "series": self._series,
            "budget": self._budget,
            "dropped": dict(self.dropped),
            "accepted": self.accepted,
        }
        return SNAPSHOT_MAGIC + pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes, config: DetectionConfig | None = None) -> DetectionEngine:
        """An engine resuming from `snapshot()` bytes; `config` (if given) replaces the saved one."""
        if not blob.startswith(SNAPSHOT_MAGIC):
            raise SnapshotError("not a Homeostat detection snapshot (bad magic header)")
        try:
            payload = pickle.loads(blob[len(SNAPSHOT_MAGIC) :])
        except Exception as exc:
            raise SnapshotError(f"detection snapshot is corrupt: {exc}") from None
        if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(f"unsupported detection snapshot format {payload.get('format')!r}")
        if config is None:
            config = DetectionConfig.model_validate(payload["config"])
        engine = cls(config)
        engine._series = payload["series"]
        if payload["budget"] is not None and engine._budget is not None:
            engine._budget = payload["budget"]
        engine.dropped = Counter(payload["dropped"])
        engine.accepted = payload["accepted"]
        for (service, signal), det in engine._series.items():
            det.p = config.policy_for(service, signal)
            if not hasattr(det, "blk_n"):  # written before ADWIN block means: start a fresh block
                det.blk_sum = 0.0
                det.blk_n = 0
            engine._register((service, signal), det)
        return engine

    def iter_series(self) -> Iterable[SeriesDetector]:
        self._sync()
        return iter(self._series.values())
