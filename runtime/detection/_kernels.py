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
    S, P, slots, ts, x, drift, exc, rings, rules, fired, burn, lik
):
    """Advance each row's series by one sample in place; rows it cannot decide are marked in `exc`
    (their state is left as it was, except the ADWIN block). Burn-rate series also advance their
    windows (`rings`, `rules`: see `burn_row`); likelihood series (`lik`: state, parameters, season
    pools value/first/last, recent rings raw/signed) take their forecast step (`lik_step`).
    Returns (rows marked, rows that fired a burn rule)."""
    n_exc = 0
    n_fired = 0
    lik_s, lik_p, tv, tf, tl, rr, rs = lik
    fc = np.empty(4)
    hv = np.zeros(4, dtype=np.bool_)
    er = np.empty(4)
    sn = np.empty(4)
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
        if (
            not exceptional
            and lik_p[s, LP_HAS] != 0.0
            and lik_step(lik_s, lik_p, s, t, xv, tv, tf, tl, rr, rs, fc, hv, er, sn)
        ):
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


# -- the forecast-error likelihood (likelihood.ForecastLikelihood) for unknown signals -----------
# likelihood state columns (must match columnar.LIK_ROWS)
L_N, L_PREV, L_PREV_TS, L_LEVEL, L_ERR, L_SEEN = 0, 1, 2, 3, 4, 8  # ERR and SEEN: four columns each
L_RSUM, L_SSUM, L_NAVG, L_MU, L_VAR, L_PEAK, L_COOL, L_HEAD = 12, 13, 14, 15, 16, 17, 18, 19
L_DW, L_DOFF, L_DCNT, L_WW, L_WOFF, L_WCNT, L_ROFF = 20, 21, 22, 23, 24, 25, 26
# likelihood parameter columns (must match columnar.LIK_PARAMS)
LP_HAS, LP_USE, LP_COMBINE, LP_LEVEL_A, LP_ERR_A, LP_WINDOW = 0, 1, 5, 6, 7, 8  # USE: four columns
LP_HIST_A, LP_MIN_HIST, LP_TAIL, LP_DAY_S, LP_WEEK_S, LP_SEASON_A, LP_DECAY, LP_SURPRISE = 9, 10, 11, 12, 13, 14, 15, 16
_SCALE_WARMUP = 10.0
_SQRT2 = math.sqrt(2.0)
_TAIL_MARGIN = 1.0 + 1e-6  # a tail this close to the threshold is left to Python's own erfc


@njit(cache=True, nogil=True, error_model="numpy")
def py_mod(v, w):  # type: ignore[no-untyped-def]
    """Python's `float % float` (fmod, then the sign of the divisor)."""
    mod = np.fmod(v, w)
    if mod:
        if (w < 0) != (mod < 0):
            mod += w
    else:
        mod = math.copysign(0.0, w)
    return mod


@njit(cache=True, nogil=True, error_model="numpy")
def season_cell(t, period, width, count):  # type: ignore[no-untyped-def]
    """SeasonTable._cell: (cell index, period number) of time t."""
    q = py_floordiv(py_mod(t, period), width)
    i = np.int64(q) % count
    k = np.int64(py_floordiv(t, period))
    return i, k


@njit(cache=True, nogil=True, error_model="numpy")
def lik_step(L, LP, s, t, xv, tv, tf, tl, rr, rs, fc, hv, er, sn):  # type: ignore[no-untyped-def]
    """ForecastLikelihood.update for slot s, in place; True (state untouched) when the step may
    raise a verdict or lay out a season table, which the Python detector then takes itself.
    `fc, hv, er, sn` are scratch arrays of four (forecasts, has-forecast, errors, seen)."""
    gap = t - L[s, L_PREV_TS]
    day_i = week_i = np.int64(-1)
    day_k = week_k = np.int64(0)
    for i in range(4):
        hv[i] = False
        er[i] = L[s, L_ERR + i]
        sn[i] = L[s, L_SEEN + i]
    if LP[s, LP_USE] != 0.0:
        hv[0] = True
        fc[0] = L[s, L_PREV]
    if LP[s, LP_USE + 1] != 0.0:
        hv[1] = True
        fc[1] = L[s, L_LEVEL]
    for tab in range(2):
        if LP[s, LP_USE + 2 + tab] == 0.0:
            continue
        width = L[s, L_DW + 3 * tab]
        period = LP[s, LP_DAY_S + tab]
        if width == 0.0:
            if gap > 0.0 and gap < period:
                return True  # the table is laid out on this sample: Python does it
            continue
        off = np.int64(L[s, L_DOFF + 3 * tab])
        ci, k = season_cell(t, period, width, np.int64(L[s, L_DCNT + 3 * tab]))
        if tab == 0:
            day_i, day_k = ci, k
        else:
            week_i, week_k = ci, k
        first = tf[off + ci]
        if 0 <= first < k and tl[off + ci] >= k - 1:
            hv[2 + tab] = True
            fc[2 + tab] = np.float64(tv[off + ci])
    err_a = LP[s, LP_ERR_A]
    n_scores = 0
    score_sum = 0.0
    score_min = 0.0
    direction = 0.0
    best = -1
    for i in range(4):
        if not hv[i]:
            continue
        e = xv - fc[i]
        ae = -e if e < 0 else e
        seen = sn[i]
        if seen >= _SCALE_WARMUP:
            scale = er[i]
            sc = ae / scale if scale > 0.0 else (0.0 if ae == 0.0 else 10.0)
            score_sum += sc
            if n_scores == 0 or sc < score_min:
                score_min = sc
            direction += e
            n_scores += 1
            if best < 0 or er[i] < er[best]:
                best = i
        seen += 1.0
        sn[i] = seen
        w = 1.0 / seen if seen * err_a < 1.0 else err_a
        er[i] += w * (ae - er[i])
    level = L[s, L_LEVEL]
    level += LP[s, LP_LEVEL_A] * (xv - level)
    raw = 0.0
    if n_scores:
        combine = LP[s, LP_COMBINE]
        if combine == 0.0:
            raw = score_sum / n_scores
        elif combine == 1.0:
            raw = score_min
        else:
            scale = er[best]
            d = xv - fc[best]
            raw = (-d if d < 0 else d) / scale if scale > 0.0 else 0.0
    window = np.int64(LP[s, LP_WINDOW])
    head = np.int64(L[s, L_HEAD])
    roff = np.int64(L[s, L_ROFF])
    rsum = ssum = n_avg = avg_mu = avg_var = peak = cool = 0.0
    if n_scores:
        rsum = L[s, L_RSUM] + raw
        rsum -= rr[roff + head]
        ssum = L[s, L_SSUM] + direction
        ssum -= rs[roff + head]
        avg = rsum / window
        n_avg = L[s, L_NAVG] + 1.0
        avg_mu = L[s, L_MU]
        avg_var = L[s, L_VAR]
        peak = L[s, L_PEAK]
        cool = L[s, L_COOL]
        if n_avg > LP[s, LP_MIN_HIST]:
            sd = math.sqrt(avg_var) if avg_var > 0.0 else 1e-12
            z = (avg - avg_mu) / sd
            tail = 0.5 * math.erfc(z / _SQRT2)
            beats_peak = avg > LP[s, LP_SURPRISE] * peak
            pk = peak * LP[s, LP_DECAY]
            peak = avg if avg > pk else pk
            if cool > 0.0:
                cool -= 1.0
            elif beats_peak and tail < LP[s, LP_TAIL] * _TAIL_MARGIN:
                return True  # a verdict (or too close to call): Python raises it
        hist_a = LP[s, LP_HIST_A]
        b = 1.0 / n_avg if n_avg * hist_a < 1.0 else hist_a
        d = avg - avg_mu
        avg_mu += b * d
        avg_var = (1.0 - b) * (avg_var + b * d * d)
    # commit: the step is routine
    L[s, L_N] += 1.0
    L[s, L_PREV] = xv
    L[s, L_LEVEL] = level
    for i in range(4):
        L[s, L_ERR + i] = er[i]
        L[s, L_SEEN + i] = sn[i]
    alpha = LP[s, LP_SEASON_A]
    for tab in range(2):
        ci = day_i if tab == 0 else week_i
        if ci < 0:
            continue
        k = day_k if tab == 0 else week_k
        at = np.int64(L[s, L_DOFF + 3 * tab]) + ci
        if tf[at] < 0 or tl[at] < k - 1:
            tf[at] = k
            tv[at] = xv
        else:
            v = np.float64(tv[at])
            tv[at] = v + alpha * (xv - v)
        tl[at] = k
    L[s, L_PREV_TS] = t
    if n_scores:
        rr[roff + head] = raw
        rs[roff + head] = direction
        L[s, L_HEAD] = (head + 1) % window
        L[s, L_RSUM] = rsum
        L[s, L_SSUM] = ssum
        L[s, L_NAVG] = n_avg
        L[s, L_MU] = avg_mu
        L[s, L_VAR] = avg_var
        L[s, L_PEAK] = peak
        L[s, L_COOL] = cool
    return False
