# ruff: noqa: PLR0915, PLR0917, SIM108 - compiled scalar loops over matrices named as in the docs
"""Compiled (numba) loops of the columnar batch path: one pass over a poll's rows.

Each kernel is `SeriesDetector.update` for one routine step written as scalar code over the
state matrix, with the same float operations in the same order (no fast-math, no fused
multiply-add), so the numbers are bit-identical to the one-by-one path
(`tests/detection/test_batch_path.py`). Divisions are not checked for zero (numpy error
model): every divisor is positive by construction (sigma >= scale_floor_abs > 0, clip > 0,
counts >= 1, budgets > 0, trend c_tt > 0 is tested first). Imported lazily: numba's import
and first compile cost seconds, paid once per process (compiled code is cached on disk).

Layouts (one row per slot): `S[slot, STATE...]`, `P[slot, PARAMS...]` as named in
`runtime.detection.columnar`; burn rings `tot/cnt/last[slot, window]`,
`b_idx/b_sum/b_cnt[slot, window, bucket]`, `act[slot, rule]`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# state columns (must match columnar.ROWS)
MU, SIGMA, ABSDEV, FAST, RECENT, PEAK_S, PEAK_Z, GATE = 0, 1, 2, 3, 4, 5, 6, 7
S_UP, S_DN, UP_SUM, DN_SUM, UP_N, DN_N, INTERVAL, LAST_TS, N = 8, 9, 10, 11, 12, 13, 14, 15, 16
BLK_SUM, BLK_N = 17, 18
T0 = 19  # eight trend columns t0..t7
# parameter columns (must match columnar.PARAMS)
ALPHA, K, H, CLIP, SPIKE_Z, SURPRISE, DECAY, FLOOR_REL, FLOOR_ABS, COUNTS = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
CONFIRM_Z, MIN_REL, MIN_ABS, WATCH_UP, WATCH_DN, HAS_TREND, HAS_BURN, HAS_ADWIN, BLOCK = (
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
)
SLO_MAX, SLO_MIN, TREND_MIN_N, HORIZON, TREND_CONFIRM = 19, 20, 21, 22, 23

_FAST_ALPHA = 0.1
_RECENT_ALPHA = 0.5
_SIGMA_PER_ABSDEV = 1.2533
_TREND_W = 1.0 / 120.0
_TREND_T = 4.0
_BUCKETS = 12


@njit(cache=True, nogil=True, error_model="numpy")
def adwin_blocks(S, P, slots, x, full_rows, means):  # type: ignore[no-untyped-def]
    """Add each row's scaled residual to its series' ADWIN block; rows whose block filled (and means)."""
    k = 0
    for j in range(slots.shape[0]):
        s = slots[j]
        if P[s, HAS_ADWIN] == 0.0:
            continue
        r = x[j] - S[s, MU]
        z = r / S[s, SIGMA]
        clip = P[s, CLIP]
        zc = clip if z > clip else (-clip if z < -clip else z)
        bsum = S[s, BLK_SUM] + (0.5 + zc / (2.0 * clip))
        bn = S[s, BLK_N] + 1.0
        if bn >= P[s, BLOCK]:
            full_rows[k] = j
            means[k] = bsum / bn
            k += 1
            bsum = 0.0
            bn = 0.0
        S[s, BLK_SUM] = bsum
        S[s, BLK_N] = bn
    return k


@njit(cache=True, nogil=True, error_model="numpy")
def _trend_step(S, P, s, ts, x):  # type: ignore[no-untyped-def]
    """SeriesDetector._trend (armed, past its first sample): new t0..t7 and whether it would fire."""
    w = _TREND_W
    t0 = S[s, T0]
    t1 = S[s, T0 + 1]
    dt = ts - t0
    dx = x - t1
    t0 += w * dt
    t1 += w * dx
    t2 = (1 - w) * (S[s, T0 + 2] + w * dt * dt)
    t3 = (1 - w) * (S[s, T0 + 3] + w * dt * dx)
    t4 = (1 - w) * (S[s, T0 + 4] + w * dx * dx)
    t5 = S[s, T0 + 5] + 1.0
    t6 = S[s, T0 + 6]
    t7 = S[s, T0 + 7]
    fires = False
    if not (t5 < P[s, TREND_MIN_N] or t2 <= 0.0):
        slope = t3 / t2
        n_eff = min(t5, (2.0 - w) / w)
        resid = t4 - t3 * slope
        resid = max(resid, 0.0)
        se = math.sqrt(resid / (t2 * n_eff)) if resid > 0 else 0.0
        fitted = t1 + slope * (ts - t0)
        slo_max = P[s, SLO_MAX]
        slo_min = P[s, SLO_MIN]
        eta = math.inf
        has_threshold = False
        if slope > 0 and not math.isnan(slo_max) and fitted < slo_max:
            eta = (slo_max - fitted) / slope
            has_threshold = True
        elif slope < 0 and not math.isnan(slo_min) and fitted > slo_min:
            eta = (slo_min - fitted) / slope
            has_threshold = True
        significant = se == 0.0 or abs(slope) >= _TREND_T * se
        horizon = P[s, HORIZON]
        if t7 != 0.0:
            if eta > 2.0 * horizon or not significant:
                t7 = 0.0
                t6 = 0.0
        else:
            if has_threshold and eta <= horizon and significant:
                t6 += 1.0
            else:
                t6 = 0.0
            if t6 >= P[s, TREND_CONFIRM]:
                fires = True
    return t0, t1, t2, t3, t4, t5, t6, t7, fires


@njit(cache=True, nogil=True, error_model="numpy")
def step_rows(  # type: ignore[no-untyped-def]
    S, P, slots, ts, x, drift, exc, rings, rules, fired, burn
):
    """Advance each row's series by one sample in place; rows it cannot decide are marked in `exc`
    (their state is left as it was, except the ADWIN block). Burn-rate series also advance their
    windows (`rings`, `rules`: see `burn_row`). Returns (rows marked, rows that fired a burn rule)."""
    n_exc = 0
    n_fired = 0
    for j in range(slots.shape[0]):
        s = slots[j]
        t = ts[j]
        xv = x[j]
        mu = S[s, MU]
        sigma = S[s, SIGMA]
        gap = t - S[s, LAST_TS]
        iv = S[s, INTERVAL]
        if iv == 0.0:
            interval = gap
        else:
            interval = iv + 0.05 * ((gap if gap < 2.0 * iv else 2.0 * iv) - iv)
        exceptional = False
        has_trend = P[s, HAS_TREND] != 0.0
        t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
        if has_trend:
            t0, t1, t2, t3, t4, t5, t6, t7, fires = _trend_step(S, P, s, t, xv)
            exceptional = fires
        r = xv - mu
        z = r / sigma
        clip = P[s, CLIP]
        zc = clip if z > clip else (-clip if z < -clip else z)
        fast = S[s, FAST]
        fast += _FAST_ALPHA * (r - fast)
        az = -z if z < 0 else z
        decay = P[s, DECAY]
        pz = S[s, PEAK_Z] * decay
        peak_z = az if az > pz else pz
        if az >= P[s, SPIKE_Z]:
            exceptional = True
        recent = S[s, RECENT]
        recent += _RECENT_ALPHA * (r - recent)
        k = P[s, K]
        h = P[s, H]
        s_up = S[s, S_UP] + (zc - k)
        if s_up <= 0.0:
            s_up = 0.0
            up_sum = 0.0
            up_n = 0.0
        else:
            up_sum = S[s, UP_SUM] + r
            up_n = S[s, UP_N] + 1.0
            if s_up > h:
                exceptional = True
        s_dn = S[s, S_DN] + (-zc - k)
        if s_dn <= 0.0:
            s_dn = 0.0
            dn_sum = 0.0
            dn_n = 0.0
        else:
            dn_sum = S[s, DN_SUM] + r
            dn_n = S[s, DN_N] + 1.0
            if s_dn > h:
                exceptional = True
        if drift[j] and not exceptional:
            ok_dir = (fast > 0 and P[s, WATCH_UP] != 0.0) or (fast < 0 and P[s, WATCH_DN] != 0.0)
            size = -fast if fast < 0 else fast
            rel = P[s, MIN_REL] * abs(mu)
            min_abs = P[s, MIN_ABS]
            material = size >= (rel if rel >= min_abs else min_abs) and size > 0.0
            if ok_dir and size >= P[s, CONFIRM_Z] * sigma and material and size > S[s, GATE]:
                exceptional = True
        if exceptional:
            exc[j] = True
            n_exc += 1
            continue
        # self-calibration and the baseline (SeriesDetector._cusum tail and _adapt)
        peak = S[s, PEAK_S] * decay
        if s_up < 0.5 * h and s_dn < 0.5 * h:
            a = P[s, ALPHA]
            lim = 3.0 * sigma
            new_mu = mu + a * (lim if r > lim else (-lim if r < -lim else r))
            ar = -r if r < 0 else r
            absdev = S[s, ABSDEV]
            absdev += a * ((ar if ar < lim else lim) - absdev)
            est = _SIGMA_PER_ABSDEV * absdev
            f_rel = P[s, FLOOR_REL] * abs(new_mu)
            f_abs = P[s, FLOOR_ABS]
            floor = f_rel if f_rel >= f_abs else f_abs
            if P[s, COUNTS] != 0.0:
                root = math.sqrt(abs(new_mu))
                floor = max(floor, root)
            S[s, MU] = new_mu
            S[s, ABSDEV] = absdev
            S[s, SIGMA] = est if est > floor else floor
            top = -recent if recent < 0 else recent
            peak = max(peak, top)
        S[s, PEAK_S] = peak
        S[s, GATE] = P[s, SURPRISE] * peak
        S[s, FAST] = fast
        S[s, RECENT] = recent
        S[s, PEAK_Z] = peak_z
        S[s, S_UP] = s_up
        S[s, S_DN] = s_dn
        S[s, UP_SUM] = up_sum
        S[s, DN_SUM] = dn_sum
        S[s, UP_N] = up_n
        S[s, DN_N] = dn_n
        S[s, INTERVAL] = interval
        S[s, LAST_TS] = t
        S[s, N] = S[s, N] + 1.0
        if has_trend:
            S[s, T0] = t0
            S[s, T0 + 1] = t1
            S[s, T0 + 2] = t2
            S[s, T0 + 3] = t3
            S[s, T0 + 4] = t4
            S[s, T0 + 5] = t5
            S[s, T0 + 6] = t6
            S[s, T0 + 7] = t7
        if P[s, HAS_BURN] != 0.0 and burn_row(j, s, t, xv, rings, rules, fired, burn):
            n_fired += 1
    return n_exc, n_fired


@njit(cache=True, nogil=True, error_model="numpy")
def py_floordiv(v, w):  # type: ignore[no-untyped-def]
    """Python's `float // float`, step for step as CPython computes it (fmod, then correct)."""
    mod = np.fmod(v, w)
    div = (v - mod) / w
    if mod and (w < 0) != (mod < 0):
        div -= 1.0
    if div:
        floordiv = math.floor(div)
        if div - floordiv > 0.5:
            floordiv += 1.0
        return floordiv
    return math.copysign(0.0, v / w)


@njit(cache=True, nogil=True, error_model="numpy")
def burn_row(j, s, t, xv, rings, rules, fired, burn):  # type: ignore[no-untyped-def]
    """WindowMean.add and BurnRate.update for row j (series slot s), in place; sets `fired[j, rule]`
    and the burn rates `burn[j, window]`. True when a rule fired."""
    tot, cnt, last, b_idx, b_sum, b_cnt, act, first_ts, budget = rings
    factor, short_s, warn, width = rules
    for w in range(tot.shape[1]):
        bi = py_floordiv(t, width[w])  # WindowMean.add: float(ts // width_s)
        prev = last[s, w]
        total = tot[s, w] + xv
        count = cnt[s, w] + 1.0
        oldest = bi - (_BUCKETS - 1)
        b = prev - (_BUCKETS - 1)
        while b < oldest and b <= prev:  # buckets that left the window, oldest first
            pos = np.int64(b) % _BUCKETS
            if b_idx[s, w, pos] == b:
                total -= b_sum[s, w, pos]
                count -= b_cnt[s, w, pos]
            b += 1.0
        pos = np.int64(bi) % _BUCKETS
        if bi == prev:
            b_sum[s, w, pos] += xv
            b_cnt[s, w, pos] += 1.0
        else:
            b_idx[s, w, pos] = bi
            b_sum[s, w, pos] = xv
            b_cnt[s, w, pos] = 1.0
        last[s, w] = bi
        tot[s, w] = total
        cnt[s, w] = count
        burn[j, w] = total / count / budget[s]
    any_fired = False
    for i in range(act.shape[1]):
        b_long = burn[j, 2 * i]
        b_short = burn[j, 2 * i + 1]
        if act[s, i]:
            if b_short < factor[i]:
                act[s, i] = False
            continue
        if t - first_ts[s] >= short_s[i] and b_long >= factor[i] and b_short >= factor[i]:
            act[s, i] = True
            if warn[i] and act[s, 0]:
                continue  # a page already covers the slower ticket
            fired[j, i] = True
            any_fired = True
    return any_fired


@njit(cache=True, nogil=True, error_model="numpy")
def prepare(table, ids, ts, x, active, S, mark, slots, take):  # type: ignore[no-untyped-def]
    """Slots of a poll's rows from series ids, and which rows the compiled step can take.

    Returns (rows taken, a series appears twice, a row's series has no slot yet)."""
    n = ids.shape[0]
    n_table = table.shape[0]
    n_take = 0
    dup = False
    unknown = False
    for j in range(n):
        i = ids[j]
        s = table[i] if 0 <= i < n_table else -1
        slots[j] = s
        if s < 0:
            unknown = True
            take[j] = False
            continue
        if mark[s]:
            dup = True
        mark[s] = True
        ok = active[s] and math.isfinite(x[j]) and math.isfinite(ts[j]) and ts[j] > S[s, LAST_TS]
        take[j] = ok
        if ok:
            n_take += 1
    for j in range(n):
        s = slots[j]
        if s >= 0:
            mark[s] = False
    return n_take, dup, unknown
