"""The detection stage: samples in, anomalies out, one detector ensemble per series.

`DetectionEngine` owns every series' state, drops bad samples with a counted reason (the
stream goes on), raises staleness once per silence, projects budgets, and checkpoints to
bytes so a restart resumes where it stopped.
"""

from __future__ import annotations

import math
import pickle
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from domain import Anomaly, Direction, Sample, Severity
from runtime.detection.budget import BUDGET_SIGNALS, BudgetTracker
from runtime.detection.columnar import Columns
from runtime.detection.config import DetectionConfig, load_detection_config
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

        Same anomalies, in the same order, as `observe()` one sample at a time. Series whose
        step is routine are advanced together on numpy arrays (`columnar.Columns`); the rest,
        and any row a routine step cannot decide, go through their own `SeriesDetector`.
        """
        if self._budget is not None or not samples:
            return self._observe_one_by_one(samples)
        cols = self._cols
        slot_list = list(map(self._slots.get, map(_series_of, samples)))
        rest: list[int]
        if None in slot_list or len(set(slot_list)) != len(slot_list):
            # new series or a series twice in one poll: first rows of known series go columnar
            seen: set[Any] = set()
            pick = []
            for i, slot in enumerate(slot_list):
                if slot is not None and slot not in seen:
                    pick.append(i)
                seen.add(slot if slot is not None else ("new", i))
            candidates = np.array(pick, dtype=np.intp)
            all_slots = np.array([slot_list[i] for i in pick], dtype=np.intp)
        else:
            candidates = np.arange(len(slot_list), dtype=np.intp)
            all_slots = np.array(slot_list, dtype=np.intp)
        take = cols.active[all_slots] if all_slots.size else np.zeros(0, dtype=bool)
        fast_idx = candidates[take]
        fast_set = np.zeros(len(slot_list), dtype=bool)
        fast_set[fast_idx] = True
        rest = np.flatnonzero(~fast_set).tolist()
        found_at: list[tuple[int, list[Anomaly]]] = []
        if fast_idx.size:
            slot_arr = all_slots[take]
            chosen = [samples[i] for i in fast_idx.tolist()] if len(fast_idx) != len(samples) else list(samples)
            ts_arr = _unix_times(chosen)
            x_arr = np.array(list(map(_value_of, chosen)), dtype=np.float64)
            late = ts_arr <= cols.state["last_ts"][slot_arr]
            if late.any():  # out of order or duplicate: the one-by-one path counts the drop
                keep = ~late
                rest = sorted(rest + fast_idx[late].tolist())
                fast_idx, slot_arr, ts_arr, x_arr = fast_idx[keep], slot_arr[keep], ts_arr[keep], x_arr[keep]
            fast_rows = fast_idx.tolist()
            self.accepted += len(fast_rows)
            back, drifts, burned = cols.step(slot_arr, ts_arr, x_arr)
            for j, found in burned:
                found_at.append((fast_rows[j], found))
            for j, drift in zip(back, drifts, strict=True):
                slot = int(slot_arr[j])
                cols.release(slot)
                det = cols.dets[slot]
                assert det is not None
                hit = det.update(float(ts_arr[j]), float(x_arr[j]), drift=drift)
                cols.adopt(slot)
                if hit:
                    found_at.append((fast_rows[j], hit))
        for i in rest:
            sample = samples[i]
            found = self.observe(sample)
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
            self._cols.adopt(slot)
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
            engine._register((service, signal), det)
        return engine

    def iter_series(self) -> Iterable[SeriesDetector]:
        self._sync()
        return iter(self._series.values())
