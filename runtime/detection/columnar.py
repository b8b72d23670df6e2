"""Columnar state for the batch path: quiet series updated a whole poll at a time with numpy.

A series whose next step is routine (armed, no spike held back, no SLO burn-rate, trend or
Page-Hinkley state) keeps its robust state here, in float64 arrays indexed by a slot number,
instead of in its `SeriesDetector`. `step` replays `SeriesDetector.update` for all such rows
at once with the same float operations in the same order, so the numbers are bit-identical.
A row whose step is not routine (a far-out sample, a CUSUM crossing its threshold, an ADWIN
drift that is confirmed) is handed back: its series' state is written back to its
`SeriesDetector`, which takes that step itself. River's ADWIN is still updated once per
sample (it has no batch API); it is called from one tight loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from river import drift

from domain import Anomaly
from runtime.detection.series import (
    _FAST_ALPHA,
    _RECENT_ALPHA,
    _SIGMA_PER_ABSDEV,
    _TREND_T,
    _TREND_W,
    SeriesDetector,
)

F64 = npt.NDArray[np.float64]


def _adwin_internals() -> bool:
    """True when river's ADWIN keeps the layout this module relies on (checked, not assumed)."""
    probe = drift.ADWIN()  # type: ignore[no-untyped-call]
    return hasattr(probe, "_helper") and hasattr(probe, "_reset") and probe.__dict__.get("_drift_detected") is False


_ADWIN_INTERNALS = _adwin_internals()

#: robust state mirrored between a SeriesDetector and the arrays (same names as its slots)
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
)
#: the trend detector's exponentially weighted regression (SeriesDetector.trend[0..7])
TREND = ("t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7")
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
    "slo_max",
    "slo_min",
    "trend_min_n",
    "horizon",
    "trend_confirm",
)


def eligible(det: SeriesDetector) -> bool:
    """True when the series' next step is routine enough for the columnar path."""
    return (
        det.warm is None
        and det.alarm == 0
        and det.pending_spike is None
        and det.ph is None
        and (det.trend is None or det.trend[5] > 0.0)
        and det.last_ts is not None
    )


class Columns:
    """Slot-indexed arrays of robust state; `active[slot]` says the arrays hold the truth."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.state: dict[str, F64] = {name: np.zeros(capacity) for name in (*STATE, *TREND)}
        self.param: dict[str, F64] = {name: np.zeros(capacity) for name in PARAMS}
        self.active = np.zeros(capacity, dtype=bool)
        self.stale_reported = np.zeros(capacity, dtype=bool)
        self.adwin: list[Any] = [None] * capacity
        self.dets: list[SeriesDetector | None] = [None] * capacity

    def _grow(self, needed: int) -> None:
        cap = self.capacity
        while cap < needed:
            cap *= 2
        extra = cap - self.capacity
        for table in (self.state, self.param):
            for name, arr in table.items():
                table[name] = np.concatenate([arr, np.zeros(extra)])
        self.active = np.concatenate([self.active, np.zeros(extra, dtype=bool)])
        self.stale_reported = np.concatenate([self.stale_reported, np.zeros(extra, dtype=bool)])
        self.adwin.extend([None] * extra)
        self.dets.extend([None] * extra)
        self.capacity = cap

    def register(self, slot: int, det: SeriesDetector) -> None:
        if slot >= self.capacity:
            self._grow(slot + 1)
        self.dets[slot] = det
        p = det.p
        par = self.param
        par["alpha"][slot] = p.baseline_alpha
        par["k"][slot] = p.cusum_k
        par["h"][slot] = p.cusum_h
        par["clip"][slot] = p.z_clip
        par["spike_z"][slot] = p.spike_z
        par["surprise"][slot] = p.surprise
        par["decay"][slot] = det.decay
        par["floor_rel"][slot] = p.scale_floor_rel
        par["floor_abs"][slot] = p.scale_floor_abs
        par["counts"][slot] = 1.0 if p.counts else 0.0
        par["confirm_z"][slot] = p.confirm_z
        par["min_rel"][slot] = p.min_rel_change
        par["min_abs"][slot] = p.min_abs_change
        par["watch_up"][slot] = 1.0 if det.watch_up else 0.0
        par["watch_dn"][slot] = 1.0 if det.watch_dn else 0.0
        par["has_trend"][slot] = 1.0 if det.trend is not None else 0.0
        par["has_burn"][slot] = 1.0 if det.burn is not None else 0.0
        par["slo_max"][slot] = p.slo_max if p.slo_max is not None else np.nan
        par["slo_min"][slot] = p.slo_min if p.slo_min is not None else np.nan
        par["trend_min_n"][slot] = max(p.warmup, 2.0 / _TREND_W)
        par["horizon"][slot] = p.trend_horizon_s
        par["trend_confirm"][slot] = p.trend_confirm

    def adopt(self, slot: int) -> None:
        """Move a series' state into the arrays if its next step is routine."""
        det = self.dets[slot]
        if det is None or not eligible(det):
            return
        st = self.state
        for name in STATE:
            st[name][slot] = getattr(det, name)
        if det.trend is not None:
            for name, value in zip(TREND, det.trend, strict=True):
                st[name][slot] = value
        self.stale_reported[slot] = det.stale_reported
        self.adwin[slot] = det.adwin
        self.active[slot] = True

    def release(self, slot: int) -> None:
        """Write the arrays' state back to the series' detector; it is authoritative again."""
        if not self.active[slot]:
            return
        det = self.dets[slot]
        assert det is not None
        st = self.state
        for name in STATE:
            value = float(st[name][slot])
            setattr(det, name, int(value) if name in ("up_n", "dn_n", "n") else value)
        if det.trend is not None:
            det.trend = [float(st[name][slot]) for name in TREND]
        det.stale_reported = bool(self.stale_reported[slot])
        self.active[slot] = False

    def release_all(self) -> None:
        for slot in np.flatnonzero(self.active).tolist():
            self.release(slot)

    def step(  # noqa: PLR0915 - one vectorised pass, kept inline
        self, slots: npt.NDArray[np.intp], ts: F64, x: F64
    ) -> tuple[list[int], list[bool], list[tuple[int, list[Anomaly]]]]:
        """Advance active series (one row each) by one sample; returns rows that need their detector.

        For each handed-back row the arrays are left as before the step, the ADWIN has seen the
        sample, and the second list carries its drift flag for `SeriesDetector.update(drift=)`.
        """
        st = self.state
        par = self.param
        g = {name: arr[slots] for name, arr in st.items()}
        q = {name: arr[slots] for name, arr in par.items()}
        mu = g["mu"]
        sigma = g["sigma"]
        # cadence (SeriesDetector.update prologue)
        gap = ts - g["last_ts"]
        iv = g["interval"]
        interval = np.where(iv == 0.0, gap, iv + 0.05 * (np.where(gap < 2.0 * iv, gap, 2.0 * iv) - iv))
        r = x - mu
        z = r / sigma
        clip = q["clip"]
        zc = np.where(z > clip, clip, np.where(z < -clip, -clip, z))
        # river ADWIN: one call per sample, in a tight loop
        adwins = self.adwin
        feed = (0.5 + zc / (2.0 * clip)).tolist()
        drift_list = [False] * len(feed)
        if _ADWIN_INTERNALS:  # river ADWIN.update without its Python wrapper (same steps)
            for j, slot in enumerate(slots.tolist()):
                a = adwins[slot]
                if a is not None:
                    if a._drift_detected:
                        a._reset()
                    drift_list[j] = a._drift_detected = a._helper.update(feed[j])
        else:
            for j, slot in enumerate(slots.tolist()):
                a = adwins[slot]
                if a is not None:
                    a.update(feed[j])
                    drift_list[j] = a.drift_detected
        drift = np.array(drift_list, dtype=bool)
        fast = g["fast"] + _FAST_ALPHA * (r - g["fast"])
        az = np.abs(z)
        decay = q["decay"]
        pz = g["peak_z"] * decay
        peak_z = np.where(az > pz, az, pz)
        exceptional = az >= q["spike_z"]
        recent = g["recent"] + _RECENT_ALPHA * (r - g["recent"])
        k = q["k"]
        h = q["h"]
        # CUSUM, up side
        s_up = g["s_up"] + (zc - k)
        up_reset = s_up <= 0.0
        s_up = np.where(up_reset, 0.0, s_up)
        up_sum = np.where(up_reset, 0.0, g["up_sum"] + r)
        up_n = np.where(up_reset, 0.0, g["up_n"] + 1.0)
        exceptional |= s_up > h
        # CUSUM, down side
        s_dn = g["s_dn"] + (-zc - k)
        dn_reset = s_dn <= 0.0
        s_dn = np.where(dn_reset, 0.0, s_dn)
        dn_sum = np.where(dn_reset, 0.0, g["dn_sum"] + r)
        dn_n = np.where(dn_reset, 0.0, g["dn_n"] + 1.0)
        exceptional |= s_dn > h
        # a river drift the level confirms would raise a shift
        if drift.any():
            size = np.abs(fast)
            ok_dir = ((fast > 0) & (q["watch_up"] > 0)) | ((fast < 0) & (q["watch_dn"] > 0))
            material = (size >= np.maximum(q["min_rel"] * np.abs(mu), q["min_abs"])) & (size > 0.0)
            exceptional |= drift & ok_dir & (size >= q["confirm_z"] * sigma) & material & (size > g["gate"])
        # self-calibration and the baseline (SeriesDetector._cusum tail and _adapt)
        peak = g["peak_s"] * decay
        learn = (s_up < 0.5 * h) & (s_dn < 0.5 * h)
        alpha = q["alpha"]
        lim = 3.0 * sigma
        new_mu = mu + alpha * np.where(r > lim, lim, np.where(r < -lim, -lim, r))
        ar = np.abs(r)
        g_absdev = g["absdev"]
        new_absdev = g_absdev + alpha * (np.where(ar < lim, ar, lim) - g_absdev)
        est = _SIGMA_PER_ABSDEV * new_absdev
        floor = np.maximum(q["floor_rel"] * np.abs(new_mu), q["floor_abs"])
        root = np.sqrt(np.abs(new_mu))
        floor = np.where((q["counts"] > 0) & (root > floor), root, floor)
        new_sigma = np.where(est > floor, est, floor)
        top = np.abs(recent)
        peak = np.where(learn & (top > peak), top, peak)
        trend_rows = np.flatnonzero(q["has_trend"] > 0.0)
        if trend_rows.size:
            trend_new, fires = self._trend(slots[trend_rows], ts[trend_rows], x[trend_rows], q, trend_rows)
            exceptional[trend_rows] |= fires
        ok = ~exceptional
        rows = np.flatnonzero(ok)
        w = slots[rows]
        if trend_rows.size:
            keep = ok[trend_rows]
            tw = slots[trend_rows[keep]]
            for name, arr in trend_new.items():
                st[name][tw] = arr[keep]
        st["interval"][w] = interval[rows]
        st["last_ts"][w] = ts[rows]
        st["n"][w] = g["n"][rows] + 1.0
        self.stale_reported[w] = False
        st["fast"][w] = fast[rows]
        st["peak_z"][w] = peak_z[rows]
        st["recent"][w] = recent[rows]
        st["s_up"][w] = s_up[rows]
        st["up_sum"][w] = up_sum[rows]
        st["up_n"][w] = up_n[rows]
        st["s_dn"][w] = s_dn[rows]
        st["dn_sum"][w] = dn_sum[rows]
        st["dn_n"][w] = dn_n[rows]
        lr = learn[rows]
        st["mu"][w] = np.where(lr, new_mu[rows], mu[rows])
        st["absdev"][w] = np.where(lr, new_absdev[rows], g_absdev[rows])
        st["sigma"][w] = np.where(lr, new_sigma[rows], sigma[rows])
        st["peak_s"][w] = peak[rows]
        st["gate"][w] = q["surprise"][rows] * peak[rows]
        back = np.flatnonzero(exceptional).tolist()
        found: list[tuple[int, list[Anomaly]]] = []
        burn_rows = np.flatnonzero(ok & (q["has_burn"] > 0.0)).tolist()
        if burn_rows:  # SLO burn-rate windows: per sample, but independent of the robust state
            dets = self.dets
            slot_list = slots.tolist()
            ts_list = ts.tolist()
            x_list = x.tolist()
            for j in burn_rows:
                det = dets[slot_list[j]]
                assert det is not None and det.burn is not None
                fired = det.burn.update(ts_list[j], x_list[j])
                if fired:
                    found.append((j, [det._burn_anomaly(ts_list[j], x_list[j], f) for f in fired]))
        return back, [drift_list[j] for j in back], found

    def _trend(
        self, slots: npt.NDArray[np.intp], ts: F64, x: F64, q: dict[str, F64], rows: npt.NDArray[np.intp]
    ) -> tuple[dict[str, F64], npt.NDArray[np.bool_]]:
        """SeriesDetector._trend for many series: the new regression state and which rows would fire."""
        st = self.state
        t0, t1, t2, t3, t4, t5, t6, t7 = (st[name][slots] for name in TREND)
        w = _TREND_W
        dt = ts - t0
        dx = x - t1
        t0 = t0 + w * dt
        t1 = t1 + w * dx
        t2 = (1 - w) * (t2 + w * dt * dt)
        t3 = (1 - w) * (t3 + w * dt * dx)
        t4 = (1 - w) * (t4 + w * dx * dx)
        t5 = t5 + 1.0
        judged = (t5 >= q["trend_min_n"][rows]) & (t2 > 0.0)
        safe_t2 = np.where(judged, t2, 1.0)
        slope = t3 / safe_t2
        n_eff = np.minimum(t5, (2.0 - w) / w)
        resid = np.maximum(t4 - t3 * slope, 0.0)
        se = np.where(resid > 0, np.sqrt(resid / (safe_t2 * n_eff)), 0.0)
        fitted = t1 + slope * (ts - t0)
        slo_max = q["slo_max"][rows]
        slo_min = q["slo_min"][rows]
        up = (slope > 0) & ~np.isnan(slo_max) & (fitted < slo_max)
        down = ~up & (slope < 0) & ~np.isnan(slo_min) & (fitted > slo_min)
        safe_slope = np.where(up | down, slope, 1.0)
        eta = np.where(up, (slo_max - fitted) / safe_slope, np.where(down, (slo_min - fitted) / safe_slope, np.inf))
        significant = (se == 0.0) | (np.abs(slope) >= _TREND_T * se)
        horizon = q["horizon"][rows]
        fired = t7 > 0.0
        clear = judged & fired & ((eta > 2.0 * horizon) | ~significant)
        close = (up | down) & (eta <= horizon) & significant
        streak = np.where(judged & ~fired, np.where(close, t6 + 1.0, 0.0), t6)
        streak = np.where(clear, 0.0, streak)
        t7 = np.where(clear, 0.0, t7)
        fires = judged & ~fired & (streak >= q["trend_confirm"][rows])
        new = {"t0": t0, "t1": t1, "t2": t2, "t3": t3, "t4": t4, "t5": t5, "t6": streak, "t7": t7}
        return new, fires
