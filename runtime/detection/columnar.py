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

from runtime.detection.series import _FAST_ALPHA, _RECENT_ALPHA, _SIGMA_PER_ABSDEV, SeriesDetector

F64 = npt.NDArray[np.float64]

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
)


def eligible(det: SeriesDetector) -> bool:
    """True when the series' next step is routine enough for the columnar path."""
    return (
        det.warm is None
        and det.alarm == 0
        and det.pending_spike is None
        and det.trend is None
        and det.burn is None
        and det.ph is None
        and det.last_ts is not None
    )


class Columns:
    """Slot-indexed arrays of robust state; `active[slot]` says the arrays hold the truth."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.state: dict[str, F64] = {name: np.zeros(capacity) for name in STATE}
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

    def adopt(self, slot: int) -> None:
        """Move a series' state into the arrays if its next step is routine."""
        det = self.dets[slot]
        if det is None or not eligible(det):
            return
        st = self.state
        for name in STATE:
            st[name][slot] = getattr(det, name)
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
        det.stale_reported = bool(self.stale_reported[slot])
        self.active[slot] = False

    def release_all(self) -> None:
        for slot in np.flatnonzero(self.active).tolist():
            self.release(slot)

    def step(self, slots: npt.NDArray[np.intp], ts: F64, x: F64) -> tuple[list[int], list[bool]]:  # noqa: PLR0915
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
        ok = ~exceptional
        rows = np.flatnonzero(ok)
        w = slots[rows]
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
        return back, [drift_list[j] for j in back]
