"""One series' detector ensemble: robust level-shift/spike, river drift detectors, trend, burn rate.

The state machine per series is: warming up -> armed -> alarmed -> (recovered | re-baselined)
-> armed. Only the armed state raises shift anomalies, so one shift gives one anomaly. All
arithmetic is on plain floats; river's ADWIN / Page-Hinkley see the standardised residual.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from statistics import median
from typing import Any

from river import drift

from domain import Anomaly, Direction, Severity
from runtime.detection.config import SignalPolicy
from runtime.detection.likelihood import ForecastLikelihood, LikelihoodParams, Verdict
from runtime.detection.windows import BurnRate

_SIGMA_PER_ABSDEV = 1.2533  # E|X - mu| = sigma * sqrt(2/pi) for a normal variable
_MAD_TO_SIGMA = 1.4826
_FAST_ALPHA = 0.1  # weight of the fast residual mean that confirms river drifts
_LEVEL_ALPHA = 0.2  # weight of the level tracked while alarmed
_RECENT_ALPHA = 0.5  # weight of the recent residual that sizes a shift as it is raised
_TREND_W = 1.0 / 120.0  # exponentially weighted regression: ~240 samples of memory
_TREND_T = 4.0  # slope must be this many standard errors from zero
ADWIN_CHECK_SAMPLES = 32  # ADWIN looks for a change about once per this many samples (river's clock, in samples)


def ts_to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def anomaly_id(service: str, signal: str, detector: str, ts: float) -> str:
    return f"{service}/{signal}/{detector}/{ts_to_datetime(ts):%Y%m%dT%H%M%SZ}"


def make_anomaly(
    *,
    service: str,
    signal: str,
    detector: str,
    ts: float,
    direction: Direction,
    baseline: float,
    current: float,
    severity: Severity,
    kind: str,
    detail: dict[str, Any],
) -> Anomaly:
    return Anomaly(
        id=anomaly_id(service, signal, detector, ts),
        service=service,
        signal=signal,
        detector=detector,
        ts=ts_to_datetime(ts),
        direction=direction,
        baseline=baseline,
        current=current,
        severity=severity,
        kind=kind,
        detail=detail,
    )


class SeriesDetector:
    """Detector state for one (service, signal) series. Feed it with `update(ts, value)`.

    A policy whose `detectors` include "likelihood" gets a `LikelihoodSeriesDetector` (same
    constructor): the ensemble plus the forecast-error likelihood, with one alarm per event.
    """

    #: the columnar batch path may hold this series' state (see columnar.eligible)
    columnar = True

    def __new__(cls, *args: Any, **kwargs: Any) -> SeriesDetector:
        policy = args[2] if len(args) > 2 else kwargs.get("policy")
        target = cls
        if cls is SeriesDetector and policy is not None and "likelihood" in policy.detectors:
            target = LikelihoodSeriesDetector
        return object.__new__(target)

    __slots__ = (
        "absdev",
        "adwin",
        "alarm",
        "alarm_absdev",
        "alarm_base_mu",
        "alarm_base_sigma",
        "alarm_level",
        "alarm_n",
        "alarm_sum",
        "blk_n",
        "blk_sum",
        "burn",
        "decay",
        "dn_n",
        "dn_sum",
        "fast",
        "gate",
        "interval",
        "last_ts",
        "mu",
        "n",
        "p",
        "peak_s",
        "peak_z",
        "pending_spike",
        "ph",
        "recent",
        "s_dn",
        "s_up",
        "service",
        "sigma",
        "signal",
        "stale_reported",
        "trend",
        "up_n",
        "up_sum",
        "warm",
        "watch_dn",
        "watch_up",
    )

    def __init__(self, service: str, signal: str, policy: SignalPolicy) -> None:
        self.service = service
        self.signal = signal
        self.p = policy
        direction = policy.watched_direction(signal)
        self.watch_up = direction in (Direction.UP, Direction.BOTH)
        self.watch_dn = direction in (Direction.DOWN, Direction.BOTH)
        self.n = 0
        self.last_ts: float | None = None
        self.interval = 0.0
        self.stale_reported = False
        self.warm: list[float] | None = []
        self.mu = 0.0
        self.sigma = 1.0
        self.absdev = 0.0
        self.fast = 0.0
        self.recent = 0.0
        self.peak_s = self.peak_z = self.gate = 0.0
        self.decay = 0.5 ** (1.0 / policy.surprise_halflife)
        self.s_up = self.s_dn = 0.0
        self.up_sum = self.dn_sum = 0.0
        self.up_n = self.dn_n = 0
        self.alarm = 0
        self.alarm_n = 0
        self.alarm_sum = 0.0
        self.alarm_base_mu = self.alarm_base_sigma = self.alarm_level = self.alarm_absdev = 0.0
        self.pending_spike: tuple[float, float, float, float, float, bool] | None = None
        self.adwin: drift.ADWIN | None = None
        self.blk_sum = 0.0  # ADWIN sees block means: running sum and count of the current block
        self.blk_n = 0
        self.ph: drift.PageHinkley | None = None
        self._new_river()
        self.burn = BurnRate(policy.slo_objective) if policy.slo_objective is not None else None
        has_trend = policy.slo_max is not None or policy.slo_min is not None
        # trend: [mean_t, mean_x, c_tt, c_tx, c_xx, n, streak, fired]
        self.trend: list[float] | None = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] if has_trend else None

    def _new_river(self) -> None:
        p = self.p
        # ADWIN checks for a change every `clock` updates (block means): about once per ADWIN_CHECK_SAMPLES samples
        clock = max(1, ADWIN_CHECK_SAMPLES // p.adwin_block)
        self.adwin = drift.ADWIN(delta=p.adwin_delta, clock=clock) if "adwin" in p.detectors else None  # type: ignore[no-untyped-call]
        self.blk_sum = 0.0
        self.blk_n = 0
        if "page_hinkley" in p.detectors:
            mode = "both" if self.watch_up and self.watch_dn else ("up" if self.watch_up else "down")
            self.ph = drift.PageHinkley(min_instances=p.warmup, delta=0.5, threshold=p.ph_threshold, mode=mode)
        else:
            self.ph = None

    # ------------------------------------------------------------------------------------------

    def _floor(self, mu: float) -> float:
        p = self.p
        floor = max(p.scale_floor_rel * abs(mu), p.scale_floor_abs)
        if p.counts:  # Poisson counts: the spread is at least sqrt(mean)
            root = math.sqrt(abs(mu))
            return root if root > floor else floor
        return floor

    def _material_size(self, base: float) -> float:
        p = self.p
        return max(p.min_rel_change * abs(base), p.min_abs_change)

    def _material(self, shift: float, base: float) -> bool:
        size = abs(shift)
        return size >= self._material_size(base) and size > 0.0

    def _severity(self, shift: float, base: float, sigma: float, current: float) -> Severity:
        p = self.p
        if (p.slo_max is not None and current > p.slo_max) or (p.slo_min is not None and current < p.slo_min):
            return Severity.CRITICAL
        rel = abs(shift) / abs(base) if base else math.inf
        if abs(shift) / sigma >= p.crit_z and rel >= p.crit_rel:
            return Severity.CRITICAL
        return Severity.WARNING

    def update(self, ts: float, x: float, drift: bool | None = None) -> list[Anomaly] | None:  # noqa: PLR0915 - the hot path stays inline
        """Feed one value (ts in unix seconds, strictly increasing); returns anomalies or None.

        `drift` is for the columnar batch path only: it has already added this sample to the
        series' ADWIN block (feeding river's ADWIN when the block filled; Page-Hinkley series
        never take that path) and passes the result.
        """
        out: list[Anomaly] | None = None
        last = self.last_ts
        if last is not None:
            gap = ts - last
            iv = self.interval
            if iv == 0.0:
                self.interval = gap
            else:  # a long silence says nothing about the usual cadence: clip it
                self.interval = iv + 0.05 * ((gap if gap < 2.0 * iv else 2.0 * iv) - iv)
        self.last_ts = ts
        self.stale_reported = False
        self.n += 1
        if self.burn is not None:
            fired = self.burn.update(ts, x)
            if fired:
                out = [self._burn_anomaly(ts, x, f) for f in fired]
        warm = self.warm
        if warm is not None:
            warm.append(x)
            if len(warm) >= self.p.warmup:
                self._finish_warmup(warm)
            return out
        if self.trend is not None:
            found_trend = self._trend(ts, x)
            if found_trend is not None:
                out = out or []
                out.append(found_trend)
        p = self.p
        r = x - self.mu
        z = r / self.sigma
        clip = p.z_clip
        zc = clip if z > clip else (-clip if z < -clip else z)

        river_drift = False
        adwin = self.adwin
        if drift is not None:
            river_drift = drift
        elif adwin is not None:  # fed the mean of each block of `adwin_block` samples
            self.blk_sum += 0.5 + zc / (2.0 * clip)
            self.blk_n += 1
            if self.blk_n >= p.adwin_block:
                adwin.update(self.blk_sum / self.blk_n)  # type: ignore[no-untyped-call]
                self.blk_sum = 0.0
                self.blk_n = 0
                river_drift = adwin.drift_detected
        ph = self.ph
        if ph is not None and drift is None:
            ph.update(zc)  # type: ignore[no-untyped-call]
            river_drift = river_drift or ph.drift_detected
        self.fast += _FAST_ALPHA * (r - self.fast)

        if self.alarm != 0:
            self.pending_spike = None
            self._alarmed(x)
            return out

        # A far-out sample is held back one step: if the next one is back, it was a lone spike
        # (info only, never fed to the CUSUM); if the next one is out too, both feed the CUSUM.
        held = self.pending_spike
        if held is not None:
            self.pending_spike = None
            if (held[2] > 0 and z >= clip) or (held[2] < 0 and z <= -clip):
                self.recent = held[3]
                found = self._cusum(held[3], held[4], river_drift=False, learn=False)
                if found is not None:
                    out = out or []
                    out.append(self._raise_shift(held[0], held[1], *found))
                    return out
            elif held[5] and (self.watch_up if held[2] > 0 else self.watch_dn):
                out = out or []
                out.append(self._spike_anomaly(held[0], held[1], held[2]))
        az = -z if z < 0 else z
        peak_z = self.peak_z
        self.peak_z = az if az > peak_z * self.decay else peak_z * self.decay
        if az >= p.spike_z and held is None:
            # A spike is news only if it stands out from the spikes this series usually has.
            self.pending_spike = (ts, x, z, r, zc, az >= p.surprise * peak_z)
            return out
        self.recent += _RECENT_ALPHA * (r - self.recent)

        found = self._cusum(r, zc, river_drift)
        if found is not None:
            out = out or []
            out.append(self._raise_shift(ts, x, *found))
        return out

    def _cusum(self, r: float, zc: float, river_drift: bool, learn: bool = True) -> tuple[Direction, str, float] | None:
        """Two one-sided CUSUMs on the clipped robust z; fires on a material shift in a watched way."""
        p = self.p
        k = p.cusum_k
        h = p.cusum_h
        mu = self.mu
        up = self._side(1, r, zc - k, h)
        dn = self._side(-1, r, -zc - k, h)
        for direction, shift in ((Direction.UP, up), (Direction.DOWN, dn)):
            if shift is None:
                continue
            if self.watch_up if direction == Direction.UP else self.watch_dn:
                return direction, "robust", shift
            self._rebaseline(mu + self.recent)  # a move the good way: adopt it quietly
            return None
        if river_drift:
            shift = self.fast
            ok_dir = (shift > 0 and self.watch_up) or (shift < 0 and self.watch_dn)
            size = -shift if shift < 0 else shift
            if ok_dir and size >= p.confirm_z * self.sigma and self._material(shift, mu) and size > self.gate:
                adwin = self.adwin
                detector = "adwin" if adwin is not None and adwin.drift_detected else "page_hinkley"
                return (Direction.UP if shift > 0 else Direction.DOWN), detector, shift
        # Self-calibration: a shift must be larger than the departures this series made without one
        # (departures while a shift may be building count only once they are judged, in _side).
        peak = self.peak_s * self.decay
        if learn and self.s_up < 0.5 * h and self.s_dn < 0.5 * h:
            self._adapt(r)
            top = -self.recent if self.recent < 0 else self.recent
            peak = max(peak, top)
        self.peak_s = peak
        self.gate = p.surprise * peak
        return None

    def _side(self, sign: int, r: float, step: float, h: float) -> float | None:
        """Advance one CUSUM side; the material shift estimate when it crosses h, else None."""
        if sign > 0:
            s = self.s_up + step
            if s <= 0.0:
                self.s_up = self.up_sum = 0.0
                self.up_n = 0
                return None
            self.s_up = s
            self.up_sum += r
            self.up_n += 1
            run = self.up_sum / self.up_n
        else:
            s = self.s_dn + step
            if s <= 0.0:
                self.s_dn = self.dn_sum = 0.0
                self.dn_n = 0
                return None
            self.s_dn = s
            self.dn_sum += r
            self.dn_n += 1
            run = self.dn_sum / self.dn_n
        if s <= h:
            return None
        recent = self.recent
        shift = max(run, recent) if sign > 0 else min(run, recent)
        size = -shift if shift < 0 else shift
        if self._material(shift, self.mu) and size > self.gate:
            return shift
        self.peak_s = max(self.peak_s, size)  # judged ordinary for this series: later ones must beat it
        if sign > 0:  # not material (yet): hold at the threshold, keep the running estimate
            self.s_up = h
        else:
            self.s_dn = h
        return None

    def _adapt(self, r: float) -> None:
        """Move the baseline with a winsorised residual (a spike moves it at most 3 sigma x alpha)."""
        a = self.p.baseline_alpha
        sigma = self.sigma
        lim = 3.0 * sigma
        mu = self.mu + a * (lim if r > lim else (-lim if r < -lim else r))
        self.mu = mu
        ar = abs(r)
        self.absdev += a * ((ar if ar < lim else lim) - self.absdev)
        est = _SIGMA_PER_ABSDEV * self.absdev
        floor = self._floor(mu)
        self.sigma = est if est > floor else floor

    def _rebaseline(self, level: float) -> None:
        self.mu = level
        self.sigma = max(self.sigma, self._floor(level))
        self.fast = self.recent = 0.0
        self._reset_cusum()
        self._new_river()

    def _finish_warmup(self, warm: list[float]) -> None:
        mu = median(warm)
        mad = median(abs(v - mu) for v in warm) * _MAD_TO_SIGMA
        if mad == 0.0:  # mostly-constant series (counts that are mostly 0): fall back to mean abs dev
            mad = sum(abs(v - mu) for v in warm) / len(warm) * _SIGMA_PER_ABSDEV
        self.mu = mu
        self.sigma = max(mad, self._floor(mu))
        self.absdev = self.sigma / _SIGMA_PER_ABSDEV
        self.warm = None

    def _raise_shift(self, ts: float, x: float, direction: Direction, detector: str, shift: float) -> Anomaly:
        mu = self.mu
        sigma = self.sigma
        current = mu + shift
        if self.p.surprise > 0.0:  # the next alarm must beat this one's size (decaying)
            self.peak_s = max(self.peak_s, abs(shift))
            self.gate = self.p.surprise * self.peak_s
        self.alarm = 1 if direction == Direction.UP else -1
        self.alarm_n = 0
        self.alarm_sum = 0.0
        self.alarm_base_mu = mu
        self.alarm_base_sigma = sigma
        self.alarm_level = current
        self.alarm_absdev = self.absdev
        self._reset_cusum()
        self.pending_spike = None
        return make_anomaly(
            service=self.service,
            signal=self.signal,
            detector=detector,
            ts=ts,
            direction=direction,
            baseline=mu,
            current=current,
            severity=self._severity(shift, mu, sigma, current),
            kind="shift",
            detail={
                "robust_z": round(shift / sigma, 3),
                "relative_change": round(shift / mu, 4) if mu else None,
                "sigma": sigma,
                "last_value": x,
            },
        )

    def _alarmed(self, x: float) -> None:
        self.alarm_n += 1
        level = self.alarm_level + _LEVEL_ALPHA * (x - self.alarm_level)
        self.alarm_level = level
        self.alarm_absdev += 0.1 * (abs(x - level) - self.alarm_absdev)
        self.alarm_sum += x
        base = self.alarm_base_mu
        moved = level - base
        # Hysteresis: recovery needs the level well inside what raised the alarm.
        back = abs(moved) < min(self.p.recover_z * self.alarm_base_sigma, 0.5 * self._material_size(base))
        if (back or (moved > 0) != (self.alarm > 0)) and self.alarm_n >= self.p.refractory:
            self.alarm = 0  # recovered: the old baseline still holds
            self._reset_cusum()
            return
        if self.alarm_n >= self.p.cooldown:
            # The shift is the new normal: adopt it as the baseline and watch from there.
            self.alarm = 0
            level = self.alarm_sum / self.alarm_n
            self.mu = level
            self.absdev = self.alarm_absdev
            est = _SIGMA_PER_ABSDEV * self.absdev
            self.sigma = max(est, self._floor(level))
            self.fast = self.recent = 0.0
            self._reset_cusum()
            self._new_river()

    def _reset_cusum(self) -> None:
        self.s_up = self.s_dn = 0.0
        self.up_sum = self.dn_sum = 0.0
        self.up_n = self.dn_n = 0

    def _spike_anomaly(self, ts: float, x: float, z: float) -> Anomaly:
        direction = Direction.UP if z > 0 else Direction.DOWN
        return make_anomaly(
            service=self.service,
            signal=self.signal,
            detector="robust",
            ts=ts,
            direction=direction,
            baseline=self.mu,
            current=x,
            severity=Severity.INFO,
            kind="spike",
            detail={"robust_z": round(z, 3), "sigma": self.sigma},
        )

    def _burn_anomaly(self, ts: float, x: float, fired: tuple[str, float, float, float, float, float]) -> Anomaly:
        severity, factor, burn_long, burn_short, long_s, short_s = fired
        budget = self.burn.budget if self.burn is not None else 0.0
        return make_anomaly(
            service=self.service,
            signal=self.signal,
            detector=f"burn_rate_{int(long_s)}s_{int(short_s)}s",
            ts=ts,
            direction=Direction.UP,
            baseline=budget,
            current=x,
            severity=Severity(severity),
            kind="burn_rate",
            detail={
                "burn_rate_long": round(burn_long, 3),
                "burn_rate_short": round(burn_short, 3),
                "threshold": factor,
                "long_window_s": long_s,
                "short_window_s": short_s,
                "slo_objective": self.p.slo_objective,
            },
        )

    def _trend(self, ts: float, x: float) -> Anomaly | None:
        """Exponentially weighted linear regression; warn when the fit will cross the SLO soon."""
        st = self.trend
        assert st is not None
        w = _TREND_W
        if st[5] == 0.0:
            st[0], st[1] = ts, x
        dt = ts - st[0]
        dx = x - st[1]
        st[0] += w * dt
        st[1] += w * dx
        st[2] = (1 - w) * (st[2] + w * dt * dt)
        st[3] = (1 - w) * (st[3] + w * dt * dx)
        st[4] = (1 - w) * (st[4] + w * dx * dx)
        st[5] += 1.0
        if st[5] < max(self.p.warmup, 2.0 / w) or st[2] <= 0.0:
            return None
        slope = st[3] / st[2]
        n_eff = min(st[5], (2.0 - w) / w)
        resid = max(st[4] - st[3] * slope, 0.0)
        se = math.sqrt(resid / (st[2] * n_eff)) if resid > 0 else 0.0
        fitted = st[1] + slope * (ts - st[0])
        p = self.p
        eta = math.inf
        threshold = None
        if slope > 0 and p.slo_max is not None and fitted < p.slo_max:
            eta, threshold = (p.slo_max - fitted) / slope, p.slo_max
        elif slope < 0 and p.slo_min is not None and fitted > p.slo_min:
            eta, threshold = (p.slo_min - fitted) / slope, p.slo_min
        significant = se == 0.0 or abs(slope) >= _TREND_T * se
        if self.alarm != 0:
            st[6] = 0.0  # a raised shift already covers this series
            return None
        if st[7]:
            if eta > 2.0 * p.trend_horizon_s or not significant:
                st[7] = 0.0
                st[6] = 0.0
            return None
        if threshold is not None and eta <= p.trend_horizon_s and significant:
            st[6] += 1.0
        else:
            st[6] = 0.0
        if st[6] < p.trend_confirm:
            return None
        st[7] = 1.0
        breach_ts = ts + eta
        return make_anomaly(
            service=self.service,
            signal=self.signal,
            detector="trend",
            ts=ts,
            direction=Direction.UP if slope > 0 else Direction.DOWN,
            baseline=self.mu,
            current=fitted,
            severity=Severity.WARNING,
            kind="trend",
            detail={
                "projected_breach_ts": ts_to_datetime(breach_ts).isoformat(),
                "seconds_to_breach": round(eta, 1),
                "slope_per_s": slope,
                "threshold": threshold,
            },
        )

    # ------------------------------------------------------------------------------------------

    def stale_after(self) -> float:
        return max(self.p.stale_after_s, self.p.stale_factor * self.interval)


def likelihood_params(p: SignalPolicy) -> LikelihoodParams:
    """The `lik_*` fields of a policy as `ForecastLikelihood` parameters."""
    return LikelihoodParams(
        forecasters=tuple(p.lik_forecasters),
        combine=p.lik_combine,
        level_alpha=p.lik_level_alpha,
        error_alpha=p.lik_error_alpha,
        window=p.lik_window,
        history_alpha=p.lik_history_alpha,
        min_history=p.lik_min_history,
        tail=p.lik_tail,
        cooldown=p.lik_cooldown,
        season_s=p.lik_season_s,
        season_alpha=p.lik_season_alpha,
        season_bins=p.lik_season_bins,
        week_bins=p.lik_week_bins,
        surprise=p.lik_surprise,
        surprise_halflife=p.lik_surprise_halflife,
    )


class LikelihoodSeriesDetector(SeriesDetector):
    """The ensemble plus a forecast-error anomaly likelihood (`likelihood.py`), for series whose
    shape is unknown. Both see every sample; a shift or spike from either one silences the
    other for `lik_quiet` samples, so one event raises one anomaly. On the columnar path once its
    recent window is full (`columnar.LikCols`, `_kernels.lik_step`); a step that may alarm is
    handed back here.
    """

    __slots__ = ("lik", "quiet_until")

    def __init__(self, service: str, signal: str, policy: SignalPolicy) -> None:
        super().__init__(service, signal, policy)
        self.lik = ForecastLikelihood(likelihood_params(policy))
        self.quiet_until = 0

    def update(self, ts: float, x: float, drift: bool | None = None) -> list[Anomaly] | None:
        found = super().update(ts, x, drift)
        verdict = self.lik.update(ts, x)
        if found is None and verdict is None:
            return None
        out: list[Anomaly] = []
        n = self.n
        quiet = self.p.lik_quiet
        for anomaly in found or ():
            if anomaly.kind in ("shift", "spike"):
                if n <= self.quiet_until:
                    continue
                self.quiet_until = n + quiet
            out.append(anomaly)
        if verdict is not None and n > self.quiet_until and (self.watch_up if verdict.up else self.watch_dn):
            self.quiet_until = n + quiet
            out.append(self._likelihood_anomaly(ts, x, verdict))
        return out or None

    def _likelihood_anomaly(self, ts: float, x: float, verdict: Verdict) -> Anomaly:
        p = self.p
        forecast = verdict.forecast
        return make_anomaly(
            service=self.service,
            signal=self.signal,
            detector="likelihood",
            ts=ts,
            direction=Direction.UP if verdict.up else Direction.DOWN,
            baseline=forecast,
            current=x,
            severity=self._severity(x - forecast, forecast, self.sigma, x),
            kind="shift",
            detail={
                "tail_probability": verdict.tail,
                "score_z": round(verdict.z, 3),
                "window": p.lik_window,
                "forecast": forecast,
                "last_value": x,
            },
        )
