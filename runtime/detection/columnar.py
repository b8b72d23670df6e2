"""Columnar state for the batch path: quiet series advanced a whole poll at a time.

A series whose next step is routine (armed, no spike held back, no Page-Hinkley) keeps its
state here, as one row of a 2-D float64 matrix indexed by a slot number, instead of in its
`SeriesDetector`; SLO burn-rate windows live here too, as ring buffers of time buckets
(`BurnRings`). `Columns.step` runs compiled loops (`_kernels`, numba) that replay
`SeriesDetector.update` for every row of a poll with the same float operations in the same
order, so the numbers are bit-identical to the one-by-one path. A row whose step is not
routine (a far-out sample, a CUSUM crossing its threshold, an ADWIN drift that is confirmed,
a trend about to warn) is handed back: its series' state is written back to its
`SeriesDetector`, which takes that step itself. River's ADWIN is fed the mean of each block
of `adwin_block` samples, from one tight loop over the rows whose block filled in this poll.
"""

from __future__ import annotations

import logging
import threading
from array import array
from collections import deque
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from river import drift

from domain import Anomaly
from runtime.detection.likelihood import FORECASTERS
from runtime.detection.series import _TREND_W, LikelihoodSeriesDetector, SeriesDetector
from runtime.detection.windows import BUCKETS_PER_WINDOW, BurnRate, WindowMean

F64 = npt.NDArray[np.float64]
Rows = npt.NDArray[np.intp]


def _adwin_internals() -> bool:
    """True when river's ADWIN keeps the layout this module relies on (checked, not assumed)."""
    probe = drift.ADWIN()  # type: ignore[no-untyped-call]
    return hasattr(probe, "_helper") and hasattr(probe, "_reset") and probe.__dict__.get("_drift_detected") is False


_ADWIN_INTERNALS = _adwin_internals()
_HELPER_UPDATE: Any = type(drift.ADWIN()._helper).update if _ADWIN_INTERNALS else None  # type: ignore[no-untyped-call]

#: robust state mirrored between a SeriesDetector and the matrix (same names as its slots)
STATE = (
    "mu",
    "sigma",
    "absdev",
    "fast",
    "recent",
    "peak_s",
    "peak_z",
    "gate",
    "s_up",
    "s_dn",
    "up_sum",
    "dn_sum",
    "up_n",
    "dn_n",
    "interval",
    "last_ts",
    "n",
    "blk_sum",
    "blk_n",
)
_INT_STATE = frozenset({"up_n", "dn_n", "n", "blk_n"})
#: the trend detector's exponentially weighted regression (SeriesDetector.trend[0..7])
TREND = ("t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7")
ROWS = (*STATE, *TREND)
#: per-series constants from the policy
PARAMS = (
    "alpha",
    "k",
    "h",
    "clip",
    "spike_z",
    "surprise",
    "decay",
    "floor_rel",
    "floor_abs",
    "counts",
    "confirm_z",
    "min_rel",
    "min_abs",
    "watch_up",
    "watch_dn",
    "has_trend",
    "has_burn",
    "has_adwin",
    "block",
    "slo_max",
    "slo_min",
    "trend_min_n",
    "horizon",
    "trend_confirm",
)
_S = {name: i for i, name in enumerate(ROWS)}
_P = {name: i for i, name in enumerate(PARAMS)}
_TREND_AT = _S["t0"]
LAST_TS_ROW = _S["last_ts"]


def eligible(det: SeriesDetector) -> bool:
    """True when the series' next step is routine enough for the columnar path."""
    if isinstance(det, LikelihoodSeriesDetector):
        lik = det.lik
        if lik.n < 1 or len(lik.recent) != lik.p.window:  # still filling its recent window
            return False
    return (
        det.columnar
        and det.warm is None
        and det.alarm == 0
        and det.pending_spike is None
        and det.ph is None
        and (det.trend is None or det.trend[5] > 0.0)
        and det.last_ts is not None
        and (det.burn is None or det.burn.first_ts is not None)
    )


MAX_BACKOFF = 64  # polls a likelihood series stays one-by-one after repeated hand-backs

_KERNELS: ModuleType | None = None
_READY = threading.Event()
_LOADER: threading.Thread | None = None
_LOADER_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def kernels() -> ModuleType:
    """The compiled loops (imported on first use: numba's import and compile take seconds)."""
    global _KERNELS  # noqa: PLW0603 - a process-wide cache of a module
    if _KERNELS is None:
        from runtime.detection import _kernels

        assert (
            _kernels.T0 == _TREND_AT
            and _S["blk_sum"] == _kernels.BLK_SUM
            and _P["trend_confirm"] == _kernels.TREND_CONFIRM
            and _L["ring_off"] == _kernels.L_ROFF
            and _L["seen0"] == _kernels.L_SEEN
            and _LP["surprise"] == _kernels.LP_SURPRISE
        )
        _warm(_kernels)
        _KERNELS = _kernels
        _READY.set()
    return _KERNELS


def _warm(module: ModuleType) -> None:
    """Call each compiled loop once on a one-row poll, so its machine code is loaded (or compiled)."""
    cols = Columns(capacity=1)
    cols.state[0, _S["sigma"]] = cols.param[0, _P["clip"]] = 1.0  # no division by zero
    slots = np.zeros(1, dtype=np.intp)
    one = np.ones(1)
    module.adwin_blocks(cols.state, cols.param, slots, one, np.empty(1, dtype=np.intp), np.empty(1))
    rings = cols.rings
    module.step_rows(
        cols.state, cols.param, slots, one, one, np.zeros(1, dtype=bool), np.zeros(1, dtype=bool),
        rings.arrays(), rings.rules,
        np.zeros((1, len(BurnRate.RULES)), dtype=bool), np.empty((1, rings.n_windows)), cols.lik.arrays(),
    )  # fmt: skip
    ids = np.zeros(1, dtype=np.intp)
    module.prepare(slots, ids, one, one, cols.active, cols.state, cols.scratch_mark, slots.copy(), cols.active.copy())


def kernels_ready(wait: bool = False) -> bool:
    """True once the compiled loops are loaded. The first call starts loading them in a thread
    (the batch path takes the one-by-one route meanwhile, with identical results); `wait`
    blocks until they are loaded."""
    global _LOADER  # noqa: PLW0603 - one loader thread per process
    if _READY.is_set():
        return True
    if wait:
        kernels()
        return True
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = threading.Thread(target=_load_quietly, name="detection-kernels", daemon=True)
            _LOADER.start()
    return False


def _load_quietly() -> None:
    try:
        kernels()
    except Exception:  # the batch path stays on the one-by-one route, which gives the same results
        log.exception("detection: compiled batch loops unavailable; polls go one sample at a time")


class BurnRings:
    """Every burn-rate series' windows as ring buffers: `BUCKETS_PER_WINDOW` buckets per window.

    Window `w` of a series (rule `w // 2`, long then short) keeps its running `tot` and `cnt`,
    the index of its newest bucket (`last`) and, per bucket position `idx % 12`, the bucket's
    index, sum and count. `_kernels.burn_row` is `WindowMean.add` and `BurnRate.update`.
    """

    def __init__(self, capacity: int) -> None:
        rules = BurnRate.RULES
        self.n_windows = nw = 2 * len(rules)
        nb = BUCKETS_PER_WINDOW
        self.width = np.array([span / BUCKETS_PER_WINDOW for rule in rules for span in rule[:2]])
        self.factor = np.array([rule[2] for rule in rules])
        self.short_s = np.array([rule[1] for rule in rules])
        self.warn = np.array([rule[3] == "warning" for rule in rules])
        self.rules = (self.factor, self.short_s, self.warn, self.width)
        self.tot = np.zeros((capacity, nw))
        self.cnt = np.zeros((capacity, nw))
        self.last = np.full((capacity, nw), np.nan)
        self.b_idx = np.full((capacity, nw, nb), np.nan)
        self.b_sum = np.zeros((capacity, nw, nb))
        self.b_cnt = np.zeros((capacity, nw, nb))
        self.act = np.zeros((capacity, len(rules)), dtype=bool)
        self.first_ts = np.zeros(capacity)
        self.budget = np.ones(capacity)

    def grow(self, extra: int) -> None:
        for name in ("tot", "cnt", "last", "b_idx", "b_sum", "b_cnt", "act", "first_ts", "budget"):
            arr = getattr(self, name)
            fill = {"last": np.nan, "b_idx": np.nan, "budget": 1.0}.get(name, 0)
            pad = np.full((extra, *arr.shape[1:]), fill, dtype=arr.dtype)
            setattr(self, name, np.concatenate([arr, pad]))

    def load(self, slot: int, burn: BurnRate) -> None:
        """Copy a series' `BurnRate` into the rings."""
        assert burn.first_ts is not None
        self.first_ts[slot] = burn.first_ts
        self.budget[slot] = burn.budget
        self.b_idx[slot] = np.nan
        for w, window in enumerate(self._windows(burn)):
            self.tot[slot, w] = window.total
            self.cnt[slot, w] = window.count
            buckets = window._buckets
            self.last[slot, w] = buckets[-1][0] if buckets else np.nan
            for idx, total, count in buckets:
                pos = int(idx % BUCKETS_PER_WINDOW)
                self.b_idx[slot, w, pos] = idx
                self.b_sum[slot, w, pos] = total
                self.b_cnt[slot, w, pos] = count
        self.act[slot] = burn.active

    def store(self, slot: int, burn: BurnRate) -> None:
        """Write the rings back to a series' `BurnRate` (deques in time order, ints as ints)."""
        for w, window in enumerate(self._windows(burn)):
            window.total = float(self.tot[slot, w])
            window.count = int(self.cnt[slot, w])
            last = float(self.last[slot, w])
            buckets: deque[list[float]] = deque()
            if not np.isnan(last):
                for back in range(BUCKETS_PER_WINDOW - 1, -1, -1):
                    idx = last - back
                    pos = int(idx % BUCKETS_PER_WINDOW)
                    if self.b_idx[slot, w, pos] == idx:
                        buckets.append([idx, float(self.b_sum[slot, w, pos]), int(self.b_cnt[slot, w, pos])])
            window._buckets = buckets
        burn.active = [bool(v) for v in self.act[slot]]

    @staticmethod
    def _windows(burn: BurnRate) -> list[WindowMean]:
        return [w for pair in burn.windows for w in pair]

    def arrays(self) -> tuple[Any, ...]:
        """The ring arrays as `_kernels.burn_row` takes them."""
        return (self.tot, self.cnt, self.last, self.b_idx, self.b_sum, self.b_cnt, self.act, self.first_ts, self.budget)


#: ForecastLikelihood state per slot (`_kernels.L_*`): scalars, then the layout of its tables and ring
LIK_ROWS = (
    "n", "prev", "prev_ts", "level", "err0", "err1", "err2", "err3", "seen0", "seen1", "seen2", "seen3",
    "recent_sum", "signed_sum", "n_avg", "avg_mu", "avg_var", "peak", "cool", "head",
    "day_width", "day_off", "day_count", "week_width", "week_off", "week_count", "ring_off",
)  # fmt: skip
LIK_PARAMS = (
    "has", "use0", "use1", "use2", "use3", "combine", "level_alpha", "error_alpha", "window",
    "history_alpha", "min_history", "tail", "day_s", "week_s", "season_alpha", "peak_decay", "surprise",
)  # fmt: skip
_L = {name: i for i, name in enumerate(LIK_ROWS)}
_LP = {name: i for i, name in enumerate(LIK_PARAMS)}
_COMBINE = {"mean": 0.0, "min": 1.0, "best": 2.0}


class LikCols:
    """The forecast-error likelihood of every unknown-signal series (`ForecastLikelihood`), as rows.

    Scalars are a row of `state`; season tables live in shared pools (`value` float32 as
    `array('f')` rounds, `first`/`last` int32), the recent raw and signed scores in ring pools;
    each slot's region is laid out once a table's cell count is fixed and reused afterwards.
    While a slot is active its detector's tables are left empty (the cells live here only once).
    """

    def __init__(self, capacity: int) -> None:
        self.state = np.zeros((capacity, len(LIK_ROWS)))
        self.param = np.zeros((capacity, len(LIK_PARAMS)))
        self.value = np.zeros(0, dtype=np.float32)
        self.first = np.zeros(0, dtype=np.int32)
        self.last = np.zeros(0, dtype=np.int32)
        self.raw = np.zeros(0)
        self.signed = np.zeros(0)
        self.used_tables = 0
        self.used_rings = 0
        self.regions: dict[tuple[int, str], tuple[int, int]] = {}  # (slot, table) -> (offset, count)

    def grow(self, extra: int) -> None:
        self.state = np.concatenate([self.state, np.zeros((extra, len(LIK_ROWS)))])
        self.param = np.concatenate([self.param, np.zeros((extra, len(LIK_PARAMS)))])

    def arrays(self) -> tuple[Any, ...]:
        """As `_kernels.step_rows` takes them."""
        return (self.state, self.param, self.value, self.first, self.last, self.raw, self.signed)

    def register(self, slot: int, det: SeriesDetector) -> None:
        if not isinstance(det, LikelihoodSeriesDetector):
            self.param[slot] = 0.0
            return
        lik = det.lik
        p = lik.p
        use = [1.0 if name in p.forecasters else 0.0 for name in FORECASTERS]
        values = {
            "has": 1.0,
            "combine": _COMBINE[p.combine],
            "level_alpha": p.level_alpha,
            "error_alpha": p.error_alpha,
            "window": float(p.window),
            "history_alpha": p.history_alpha,
            "min_history": float(p.min_history),
            "tail": p.tail,
            "day_s": lik.day.period if lik.day is not None else 1.0,
            "week_s": lik.week.period if lik.week is not None else 1.0,
            "season_alpha": p.season_alpha,
            "peak_decay": lik.peak_decay,
            "surprise": p.surprise,
        }
        values.update({f"use{i}": u for i, u in enumerate(use)})
        self.param[slot] = [values[name] for name in LIK_PARAMS]

    def _region(self, slot: int, name: str, count: int) -> int:
        """Offset of the slot's region `name` of `count` cells, laid out on first use."""
        found = self.regions.get((slot, name))
        if found is not None and found[1] == count:
            return found[0]
        ring = name == "ring"
        used = self.used_rings if ring else self.used_tables
        pools = ("raw", "signed") if ring else ("value", "first", "last")
        size = len(getattr(self, pools[0]))
        if used + count > size:
            new = max(size + size // 4, used + count, 4096)  # modest slack: pools can be large
            for pool in pools:
                arr = getattr(self, pool)
                grown = np.zeros(new, dtype=arr.dtype)
                grown[:size] = arr
                setattr(self, pool, grown)
        if ring:
            self.used_rings = used + count
        else:
            self.used_tables = used + count
        self.regions[(slot, name)] = (used, count)
        return used

    def adopt(self, slot: int, det: LikelihoodSeriesDetector) -> None:
        lik = det.lik
        window = lik.p.window
        ring = self._region(slot, "ring", window)
        self.raw[ring : ring + window] = lik.recent
        self.signed[ring : ring + window] = lik.recent_signed
        layout: list[float] = []
        for name, table in (("day", lik.day), ("week", lik.week)):
            if table is None or not table.width:
                layout.extend((0.0, 0.0, 0.0))
                continue
            count = len(table.value)
            off = self._region(slot, name, count)
            self.value[off : off + count] = np.frombuffer(table.value, dtype=np.float32)
            self.first[off : off + count] = np.frombuffer(table.first, dtype=np.int32)
            self.last[off : off + count] = np.frombuffer(table.last, dtype=np.int32)
            layout.extend((table.width, float(off), float(count)))
            # the pools are the truth now (release writes the cells back): hold them only once
            table.value, table.first, table.last = array("f"), array("i"), array("i")
        self.state[slot] = [
            lik.n, lik.prev, lik.prev_ts, lik.level, *lik.err, *lik.seen,
            lik.recent_sum, lik.signed_sum, lik.n_avg, lik.avg_mu, lik.avg_var, lik.peak, lik.cool, 0.0,
            *layout, float(ring),
        ]  # fmt: skip

    def release(self, slot: int, det: LikelihoodSeriesDetector) -> None:
        lik = det.lik
        row = self.state[slot].tolist()
        lik.n = int(row[_L["n"]])
        lik.prev, lik.prev_ts, lik.level = row[_L["prev"]], row[_L["prev_ts"]], row[_L["level"]]
        lik.err = row[_L["err0"] : _L["err3"] + 1]
        lik.seen = [int(v) for v in row[_L["seen0"] : _L["seen3"] + 1]]
        lik.recent_sum, lik.signed_sum = row[_L["recent_sum"]], row[_L["signed_sum"]]
        lik.n_avg = int(row[_L["n_avg"]])
        lik.avg_mu, lik.avg_var, lik.peak = row[_L["avg_mu"]], row[_L["avg_var"]], row[_L["peak"]]
        lik.cool = int(row[_L["cool"]])
        head = int(row[_L["head"]])
        window = lik.p.window
        ring = int(row[_L["ring_off"]])
        raw = self.raw[ring : ring + window].tolist()
        signed = self.signed[ring : ring + window].tolist()
        lik.recent = raw[head:] + raw[:head]
        lik.recent_signed = signed[head:] + signed[:head]
        for name, table in (("day", lik.day), ("week", lik.week)):
            if table is None or not table.width:
                continue
            off, count = self.regions[(slot, name)]
            table.value = array("f", self.value[off : off + count].tobytes())
            table.first = array("i", self.first[off : off + count].tobytes())
            table.last = array("i", self.last[off : off + count].tobytes())


class Columns:
    """Slot-indexed state matrix; `active[slot]` says the matrix holds the truth for that series."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.state = np.zeros((capacity, len(ROWS)))
        self.param = np.zeros((capacity, len(PARAMS)))
        self.active = np.zeros(capacity, dtype=bool)
        self.stale_reported = np.zeros(capacity, dtype=bool)
        self.adwin: list[Any] = [None] * capacity
        self.helper: list[Any] = [None] * capacity  # adwin[slot]._helper (river's compiled window)
        self.drifted = np.zeros(capacity, dtype=bool)  # adwin[slot]._drift_detected
        self.dets: list[SeriesDetector | None] = [None] * capacity
        self.rings = BurnRings(capacity)
        self.lik = LikCols(capacity)
        self.pending: set[int] = set()  # slots adopt(lazy=True) left to the next batch
        self.backoff: dict[int, int] = {}  # likelihood slots: polls to stay out after a hand-back
        self.wait: dict[int, int] = {}  # ... and how many of them are left
        self.adopted_at: dict[int, int] = {}
        self.rounds = 0  # compiled steps so far (a clock for the back-off)
        self._mark = np.zeros(capacity, dtype=bool)
        self.poison = np.zeros(capacity, dtype=bool)

    def state_column(self, row: int) -> F64:
        """One state variable of every slot (a view)."""
        return self.state[:, row]

    @property
    def scratch_mark(self) -> npt.NDArray[np.bool_]:
        """An all-False array over slots that a caller may set and must clear again."""
        return self._mark

    def distinct(self, slots: Rows) -> bool:
        """True when no slot appears twice in `slots`."""
        mark = self._mark
        mark[slots] = True
        unique = int(np.count_nonzero(mark))
        mark[slots] = False
        return unique == len(slots)

    def _grow(self, needed: int) -> None:
        cap = self.capacity
        while cap < needed:
            cap *= 2
        extra = cap - self.capacity
        self.state = np.concatenate([self.state, np.zeros((extra, len(ROWS)))])
        self.param = np.concatenate([self.param, np.zeros((extra, len(PARAMS)))])
        self.active = np.concatenate([self.active, np.zeros(extra, dtype=bool)])
        self.stale_reported = np.concatenate([self.stale_reported, np.zeros(extra, dtype=bool)])
        self.adwin.extend([None] * extra)
        self.helper.extend([None] * extra)
        self.drifted = np.concatenate([self.drifted, np.zeros(extra, dtype=bool)])
        self.dets.extend([None] * extra)
        self.rings.grow(extra)
        self.lik.grow(extra)
        self._mark = np.zeros(cap, dtype=bool)
        self.poison = np.zeros(cap, dtype=bool)
        self.capacity = cap

    def register(self, slot: int, det: SeriesDetector) -> None:
        if slot >= self.capacity:
            self._grow(slot + 1)
        self.dets[slot] = det
        p = det.p
        values = {
            "alpha": p.baseline_alpha,
            "k": p.cusum_k,
            "h": p.cusum_h,
            "clip": p.z_clip,
            "spike_z": p.spike_z,
            "surprise": p.surprise,
            "decay": det.decay,
            "floor_rel": p.scale_floor_rel,
            "floor_abs": p.scale_floor_abs,
            "counts": 1.0 if p.counts else 0.0,
            "confirm_z": p.confirm_z,
            "min_rel": p.min_rel_change,
            "min_abs": p.min_abs_change,
            "watch_up": 1.0 if det.watch_up else 0.0,
            "watch_dn": 1.0 if det.watch_dn else 0.0,
            "has_trend": 1.0 if det.trend is not None else 0.0,
            "has_burn": 1.0 if det.burn is not None else 0.0,
            "has_adwin": 1.0 if "adwin" in p.detectors else 0.0,
            "block": p.adwin_block,
            "slo_max": p.slo_max if p.slo_max is not None else np.nan,
            "slo_min": p.slo_min if p.slo_min is not None else np.nan,
            "trend_min_n": max(p.warmup, 2.0 / _TREND_W),
            "horizon": p.trend_horizon_s,
            "trend_confirm": p.trend_confirm,
        }
        self.param[slot] = [values[name] for name in PARAMS]
        self.lik.register(slot, det)

    def adopt(self, slot: int, lazy: bool = False) -> None:
        """Move a series' state into the matrix if its next step is routine.

        `lazy` (the one-sample path): a likelihood series is only noted, and moved by the next
        batch's `adopt_pending`, so feeding samples one at a time never copies its tables back
        and forth."""
        det = self.dets[slot]
        if det is None or self.active[slot]:
            return
        if lazy and isinstance(det, LikelihoodSeriesDetector):
            self.pending.add(slot)
            return
        self.pending.discard(slot)
        if not eligible(det):
            return
        row = [float(getattr(det, name)) for name in STATE]
        row.extend(det.trend if det.trend is not None else [0.0] * len(TREND))
        self.state[slot] = row
        if det.burn is not None:
            self.rings.load(slot, det.burn)
        self.stale_reported[slot] = det.stale_reported
        adwin = self.adwin[slot] = det.adwin
        if adwin is not None and _ADWIN_INTERNALS:
            self.helper[slot] = adwin._helper
            self.drifted[slot] = adwin._drift_detected
        if isinstance(det, LikelihoodSeriesDetector):
            self.lik.adopt(slot, det)
        self.active[slot] = True

    def adopt_pending(self) -> None:
        """Adopt the likelihood series that `adopt(lazy=True)` left out (before a batch), except
        those still backing off after a hand-back (see `handed_back`)."""
        wait = self.wait
        for slot in sorted(self.pending):
            left = wait.get(slot, 0)
            if left > 0:
                wait[slot] = left - 1
                continue
            self.adopt(slot)
            self.adopted_at[slot] = self.rounds

    def handed_back(self, slot: int) -> None:
        """A compiled step handed this slot's row back. A likelihood series (whose tables are copied
        in and out on every hand-back) then stays on the one-sample path for a number of polls that
        doubles with each hand-back soon after its adoption (at most `MAX_BACKOFF`), and restarts
        from one after a long routine run; other series are adopted again at once. Only speed
        depends on this: both paths give the same numbers."""
        det = self.dets[slot]
        if not isinstance(det, LikelihoodSeriesDetector):
            self.adopt(slot)
            return
        backoff = self.backoff.get(slot, 0)
        if self.rounds - self.adopted_at.get(slot, self.rounds) > 4 * backoff + 4:
            backoff = 0
        backoff = min(2 * backoff + 1, MAX_BACKOFF)
        self.backoff[slot] = self.wait[slot] = backoff
        self.pending.add(slot)

    def release(self, slot: int) -> None:
        """Write the matrix's state back to the series' detector; it is authoritative again."""
        if not self.active[slot]:
            return
        det = self.dets[slot]
        assert det is not None
        row = self.state[slot].tolist()
        for i, name in enumerate(STATE):
            value = row[i]
            setattr(det, name, int(value) if name in _INT_STATE else value)
        if det.trend is not None:
            det.trend = row[_TREND_AT:]
        if det.burn is not None:
            self.rings.store(slot, det.burn)
        det.stale_reported = bool(self.stale_reported[slot])
        if isinstance(det, LikelihoodSeriesDetector):
            self.lik.release(slot, det)
        self.active[slot] = False

    def release_all(self) -> None:
        for slot in np.flatnonzero(self.active).tolist():
            self.release(slot)

    def _feed_adwins(self, slots: Rows, means: F64) -> list[bool]:
        """`ADWIN.update(mean)` for each slot, the same steps as river's wrapper, from one C-level map."""
        if not _ADWIN_INTERNALS:
            adwins = self.adwin
            seen = []
            for slot, mean in zip(slots.tolist(), means.tolist(), strict=True):
                a = adwins[slot]
                a.update(mean)
                seen.append(a.drift_detected)
            return seen
        pending = self.drifted[slots]
        if pending.any():  # the wrapper resets a detector on the update after a drift
            for slot in slots[pending].tolist():
                a = self.adwin[slot]
                a._reset()
                self.helper[slot] = a._helper
            self.drifted[slots[pending]] = False
        hits: list[bool] = list(map(_HELPER_UPDATE, map(self.helper.__getitem__, slots.tolist()), means.tolist()))
        if True in hits:
            hit = slots[np.array(hits, dtype=bool)]
            for slot in hit.tolist():
                self.adwin[slot]._drift_detected = True
            self.drifted[hit] = True
        return hits

    def step(self, slots: Rows, ts: F64, x: F64) -> tuple[list[int], list[bool], list[tuple[int, list[Anomaly]]]]:
        """Advance active series (one row each, distinct) by one sample; returns rows that need their detector.

        For each handed-back row the matrix holds the state before the step except for the
        ADWIN block, which has taken the sample (river's ADWIN too, if the block filled);
        the second list carries the drift flag for `SeriesDetector.update(drift=)`. The third
        lists the burn-rate anomalies of the rows that were not handed back.
        """
        k = kernels()
        self.rounds += 1
        n = len(slots)
        full_rows = np.empty(n, dtype=np.intp)
        means = np.empty(n)
        n_full = k.adwin_blocks(self.state, self.param, slots, x, full_rows, means)
        drift_arr = np.zeros(n, dtype=bool)
        if n_full:
            rows = full_rows[:n_full]
            drift_arr[rows] = self._feed_adwins(slots[rows], means[:n_full])
        exc = np.zeros(n, dtype=bool)
        rings = self.rings
        fired = np.zeros((n, len(BurnRate.RULES)), dtype=bool)
        burn = np.empty((n, rings.n_windows))
        n_exc, n_fired = k.step_rows(
            self.state, self.param, slots, ts, x, drift_arr, exc, rings.arrays(), rings.rules, fired, burn,
            self.lik.arrays(),
        )  # fmt: skip
        self.stale_reported[slots] = False
        back = np.flatnonzero(exc).tolist() if n_exc else []
        burned: list[tuple[int, list[Anomaly]]] = []
        if n_fired:
            for j in np.flatnonzero(fired.any(axis=1)).tolist():
                det = self.dets[int(slots[j])]
                assert det is not None
                t_j, x_j = float(ts[j]), float(x[j])
                row = [
                    (severity, factor, float(burn[j, 2 * i]), float(burn[j, 2 * i + 1]), long_s, short_s)
                    for i, (long_s, short_s, factor, severity) in enumerate(BurnRate.RULES)
                    if fired[j, i]
                ]
                burned.append((j, [det._burn_anomaly(t_j, x_j, f) for f in row]))
        drifts = drift_arr[back].tolist() if back else []
        return back, drifts, burned
