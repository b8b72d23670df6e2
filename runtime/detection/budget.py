"""Cost-budget projection: integrate each service's spend rate and warn before a budget is overspent.

Spend rate per service comes from its latest samples: tokens/s = request_rate x
tokens_per_request, cost/s = request_rate x cost_per_1k_requests / 1000 (request_rate is in
requests per second). A budget covers one service or every service carrying one team label.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from domain import Anomaly, Direction, Severity, Signal
from runtime.detection.config import BudgetSpec
from runtime.detection.series import make_anomaly, ts_to_datetime

_RATE_ALPHA = 0.1  # smoothing of the spend rate used for projection
_MAX_GAP_FACTOR = 5.0  # a silence longer than 5 intervals is not integrated as spend
BUDGET_SIGNALS = frozenset({Signal.REQUEST_RATE, Signal.TOKENS_PER_REQUEST, Signal.COST_PER_1K_REQUESTS})


@dataclass
class _ServiceSpend:
    team: str | None = None
    request_rate: float | None = None
    tokens_per_request: float | None = None
    cost_per_1k: float | None = None
    last_ts: float | None = None
    interval: float = 0.0
    rate: dict[str, float] = field(default_factory=dict)  # unit -> smoothed spend per second


@dataclass
class _BudgetState:
    period_start: float = -1.0
    spent: float = 0.0
    warned: bool = False
    overspent: bool = False


def period_bounds(ts: float, period: str) -> tuple[float, float]:
    """[start, end) of the UTC day or calendar month containing `ts`."""
    moment = ts_to_datetime(ts)
    if period == "daily":
        start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp()
        return start, start + 86400.0
    start_dt = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    return start_dt.timestamp(), start_dt.timestamp() + days * 86400.0


class BudgetTracker:
    """Projects spend per budget from the request-rate clock of every service in its scope."""

    def __init__(self, budgets: tuple[BudgetSpec, ...], service_teams: dict[str, str]) -> None:
        self.budgets = budgets
        self.service_teams = service_teams
        self.services: dict[str, _ServiceSpend] = {}
        self.states = [_BudgetState() for _ in budgets]

    def _in_scope(self, spec: BudgetSpec, service: str, spend: _ServiceSpend) -> bool:
        if spec.service is not None:
            return spec.service == service
        return spend.team == spec.team

    def update(self, service: str, signal: str, ts: float, value: float, team: str | None) -> list[Anomaly] | None:
        if not self.budgets:
            return None
        spend = self.services.get(service)
        if spend is None:
            spend = self.services[service] = _ServiceSpend()
        spend.team = team or self.service_teams.get(service) or spend.team
        if signal == Signal.TOKENS_PER_REQUEST:
            spend.tokens_per_request = value
            return None
        if signal == Signal.COST_PER_1K_REQUESTS:
            spend.cost_per_1k = value
            return None
        # request_rate is the clock: integrate spend since this service's previous tick.
        spend.request_rate = value
        out: list[Anomaly] | None = None
        gap = 0.0 if spend.last_ts is None else ts - spend.last_ts
        if spend.last_ts is not None:
            spend.interval = gap if spend.interval == 0.0 else spend.interval + 0.05 * (gap - spend.interval)
        spend.last_ts = ts
        rates = {
            "tokens": value * spend.tokens_per_request if spend.tokens_per_request is not None else None,
            "cost": value * spend.cost_per_1k / 1000.0 if spend.cost_per_1k is not None else None,
        }
        for unit, rate in rates.items():
            if rate is None:
                continue
            prev = spend.rate.get(unit)
            spend.rate[unit] = rate if prev is None else prev + _RATE_ALPHA * (rate - prev)
        integrate = 0.0 < gap <= _MAX_GAP_FACTOR * max(spend.interval, 1e-9)
        for spec, state in zip(self.budgets, self.states, strict=True):
            if not self._in_scope(spec, service, spend):
                continue
            start, end = period_bounds(ts, spec.period)
            if state.period_start != start:
                state.period_start, state.spent, state.warned, state.overspent = start, 0.0, False, False
            rate = rates[spec.unit]
            if rate is not None and integrate:
                state.spent += rate * gap
            found = self._project(spec, state, ts, start, end)
            if found is not None:
                out = out or []
                out.append(found)
        return out

    def _scope_rate(self, spec: BudgetSpec) -> float:
        return sum(s.rate.get(spec.unit, 0.0) for name, s in self.services.items() if self._in_scope(spec, name, s))

    def _project(self, spec: BudgetSpec, state: _BudgetState, ts: float, start: float, end: float) -> Anomaly | None:
        if state.overspent:
            return None
        rate = self._scope_rate(spec)
        projected = state.spent + rate * (end - ts)
        if state.spent >= spec.limit:
            state.overspent = True
            severity = Severity.CRITICAL
            breach_ts = ts
        elif not state.warned and projected >= spec.warn_at * spec.limit and rate > 0.0:
            severity = Severity.WARNING
            breach_ts = ts + (spec.limit - state.spent) / rate
        else:
            return None
        state.warned = True
        name = spec.service if spec.service is not None else f"team:{spec.team}"
        return make_anomaly(
            service=name,
            signal=f"budget_{spec.unit}_{spec.period}",
            detector="budget",
            ts=ts,
            direction=Direction.UP,
            baseline=spec.limit,
            current=projected,
            severity=severity,
            kind="budget",
            detail={
                "scope": spec.scope,
                "unit": spec.unit,
                "period": spec.period,
                "limit": spec.limit,
                "spent": round(state.spent, 6),
                "spend_rate_per_s": rate,
                "projected_spend": round(projected, 6),
                "projected_overspend_ts": ts_to_datetime(min(breach_ts, end)).isoformat(),
                "period_start": ts_to_datetime(start).isoformat(),
                "period_end": ts_to_datetime(end).isoformat(),
            },
        )
