"""The simulated fleet: LLM services whose 13 signals are derived from causes every interval.

Virtual time moves only through `Fleet.advance`. Each tick draws its noise from a generator
seeded by (scenario seed, tick index), so the samples do not depend on how time is sliced.
Faults change cause-level knobs (see `_faults.py`); `apply_action` is the remediation
endpoint, exactly-once per idempotency key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from domain import ActionName, ChangeEvent, ChangeKind, Sample, ServiceInfo, Signal, Topology
from simulations._faults import (
    CARRIER,
    CAUSE_OF,
    EFFECTS,
    HEALTHY,
    PROVIDER_KINDS,
    ActiveFault,
    Effect,
    FaultRecord,
    FaultState,
)
from simulations._spec import (
    DeployInjection,
    FaultInjection,
    FleetSpec,
    Injection,
    LoadInjection,
    NoiseInjection,
    ProviderSpec,
    ServiceSpec,
)

SIGNALS: tuple[str, ...] = tuple(s.value for s in Signal)

#: Providers of the default fleet.
DEFAULT_PROVIDERS: dict[str, ProviderSpec] = {
    "llm-alpha": ProviderSpec(latency_factor=1.0, price_per_1k_tokens=0.002, error_rate=0.002),
    "llm-beta": ProviderSpec(latency_factor=1.25, price_per_1k_tokens=0.0026, error_rate=0.003, quality_delta=-0.01),
    "embed-gamma": ProviderSpec(latency_factor=1.0, price_per_1k_tokens=0.0001, error_rate=0.001),
    "embed-delta": ProviderSpec(latency_factor=1.3, price_per_1k_tokens=0.00013, error_rate=0.0015),
}

#: Services of the default fleet (the demo scenarios rely on these names).
DEFAULT_SERVICES: dict[str, ServiceSpec] = {
    "support-chat": ServiceSpec(
        kind="llm",
        provider="llm-alpha",
        backup_provider="llm-beta",
        model_version="chat-m-2026.01",
        previous_model_version="chat-m-2025.11",
        prompt_version="v7",
        previous_prompt_version="v6",
        routing="default",
        traffic_share=0.5,
        depends_on=("kb-retriever",),
        team="assist",
        latency_p50_ms=620.0,
        tokens_per_request=850.0,
        quality=0.86,
        hallucination_rate=0.03,
        policy_violation_rate=0.004,
        pii_alerts_per_interval=0.02,
        cache_hit_rate=0.32,
        headroom=1.7,
    ),
    "doc-summarizer": ServiceSpec(
        kind="llm",
        provider="llm-alpha",
        backup_provider="llm-beta",
        model_version="sum-m-3.2",
        previous_model_version="sum-m-3.1",
        prompt_version="v12",
        previous_prompt_version="v11",
        routing="default",
        traffic_share=0.2,
        depends_on=(),
        team="docs",
        latency_p50_ms=1400.0,
        tokens_per_request=2100.0,
        quality=0.82,
        hallucination_rate=0.04,
        policy_violation_rate=0.002,
        pii_alerts_per_interval=0.01,
        cache_hit_rate=0.12,
        headroom=1.7,
    ),
    "kb-retriever": ServiceSpec(
        kind="retrieval",
        provider="embed-gamma",
        backup_provider="embed-delta",
        model_version="embed-e5-v4",
        previous_model_version="embed-e5-v3",
        prompt_version="query-v2",
        previous_prompt_version="query-v1",
        routing="default",
        traffic_share=0.3,
        depends_on=(),
        team="search",
        latency_p50_ms=85.0,
        tokens_per_request=96.0,
        quality=0.9,
        hallucination_rate=0.005,
        policy_violation_rate=0.0005,
        pii_alerts_per_interval=0.005,
        cache_hit_rate=0.58,
        headroom=1.7,
    ),
}

#: Values a service added by a scenario gets for fields it leaves out.
GENERIC_SERVICE = ServiceSpec(
    kind="llm",
    model_version="model-1",
    prompt_version="v1",
    routing="default",
    depends_on=(),
    latency_p50_ms=800.0,
    tokens_per_request=900.0,
    quality=0.85,
    hallucination_rate=0.03,
    policy_violation_rate=0.004,
    pii_alerts_per_interval=0.02,
    cache_hit_rate=0.3,
    headroom=1.7,
)

DEFAULT_REQUESTS_PER_S = 120.0
DEFAULT_DAILY_AMPLITUDE = 0.3
DEFAULT_INTERVAL_S = 10.0
EVALS_PER_INTERVAL = 200  # responses graded per interval for quality / hallucination
SPIKE_PROBABILITY = 0.003  # chance per service and interval of a one-sample latency spike
ERROR_BURST_PROBABILITY = 0.001  # chance per service and interval of a one-sample error burst
RETRAIN_S = 600.0  # a retraining / re-index job takes this long before the fix lands
CACHE_WARMUP_S = 300.0  # time constant of a purged cache filling up again
DEFAULT_THROTTLE_UTILISATION = 0.5  # throttle caps served load at this share of capacity


class FleetError(ValueError):
    """The fleet's configuration is inconsistent (unknown provider, dependency cycle, ...)."""


class ActionResult(BaseModel):
    """The answer of the remediation endpoint to one call."""

    model_config = ConfigDict(frozen=True)

    status: Literal["applied", "duplicate", "rejected"]
    detail: str
    effect: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    action: str
    target: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    ts: datetime


@dataclass(frozen=True, slots=True)
class SimBatch:
    """What one `Fleet.advance` produced."""

    samples: list[Sample]
    changes: list[ChangeEvent]


@dataclass(slots=True)
class _Service:
    name: str
    kind: str
    provider: str
    backup_provider: str | None
    model_version: str
    previous_model_version: str | None
    prompt_version: str
    previous_prompt_version: str | None
    routing: str
    previous_routing: str | None
    config: str
    traffic_share: float
    depends_on: tuple[str, ...]
    team: str | None
    latency_p50_ms: float
    tokens_per_request: float
    quality: float
    hallucination_rate: float
    policy_violation_rate: float
    pii_alerts_per_interval: float
    cache_hit_rate: float
    headroom: float
    queue: float = 0.0
    throttle_rps: float | None = None
    cache_purged_s: float | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def attr(self, kind: ChangeKind) -> str:
        return {
            ChangeKind.MODEL_VERSION: self.model_version,
            ChangeKind.PROMPT_VERSION: self.prompt_version,
            ChangeKind.ROUTING: self.routing,
            ChangeKind.PROVIDER: self.provider,
            ChangeKind.CONFIG: self.config,
        }[kind]

    def refresh_labels(self) -> None:
        self.labels = {
            "provider": self.provider,
            "model_version": self.model_version,
            "prompt_version": self.prompt_version,
        }


@dataclass(frozen=True, slots=True)
class _Window:
    """A load swing or noisy period: [start_s, end_s) on one service or all (service None)."""

    service: str | None
    start_s: float
    end_s: float
    factor: float
    ramp_s: float = 0.0

    def weight(self, service: str, t: float) -> float:
        if (self.service is not None and self.service != service) or not (self.start_s <= t < self.end_s):
            return 0.0
        if self.ramp_s <= 0:
            return 1.0
        return min(1.0, (t - self.start_s) / self.ramp_s, (self.end_s - t) / self.ramp_s)


def next_version(value: str) -> str:
    """The version after `value`: its last number incremented (v7 -> v8), else `value`-next."""
    match = re.search(r"(\d+)(?!.*\d)", value)
    if not match:
        return f"{value}-next"
    digits = match.group(1)
    bumped = str(int(digits) + 1).zfill(len(digits))
    return value[: match.start()] + bumped + value[match.end() :]


def _merge(base: ServiceSpec, override: ServiceSpec) -> ServiceSpec:
    return base.model_copy(update=override.model_dump(exclude_none=True))


def resolve_fleet(spec: FleetSpec) -> tuple[dict[str, _Service], dict[str, ProviderSpec]]:
    """Merge the scenario's overrides into the default fleet and check the result is coherent."""
    providers = {} if spec.replace_defaults else dict(DEFAULT_PROVIDERS)
    for name, prov in spec.providers.items():
        providers[name] = prov
    merged: dict[str, ServiceSpec] = {} if spec.replace_defaults else dict(DEFAULT_SERVICES)
    for name, svc in spec.services.items():
        merged[name] = _merge(merged.get(name, GENERIC_SERVICE), svc)
    if not merged:
        raise FleetError("fleet.services: the fleet has no services")
    services: dict[str, _Service] = {}
    for name, svc in merged.items():
        where = f"fleet.services.{name}"
        if svc.provider is None:
            raise FleetError(f"{where}.provider: a new service needs a provider")
        for field_name, prov_name in (("provider", svc.provider), ("backup_provider", svc.backup_provider)):
            if prov_name is not None and prov_name not in providers:
                raise FleetError(f"{where}.{field_name}: unknown provider {prov_name!r}; known: {sorted(providers)}")
        for dep in svc.depends_on or ():
            if dep not in merged:
                raise FleetError(f"{where}.depends_on: unknown service {dep!r}; known: {sorted(merged)}")
        if svc.traffic_share is None:
            raise FleetError(f"{where}.traffic_share: a new service needs a traffic share")
        services[name] = _Service(
            name=name,
            kind=svc.kind or "llm",
            provider=svc.provider,
            backup_provider=svc.backup_provider,
            model_version=svc.model_version or "model-1",
            previous_model_version=svc.previous_model_version,
            prompt_version=svc.prompt_version or "v1",
            previous_prompt_version=svc.previous_prompt_version,
            routing=svc.routing or "default",
            previous_routing=svc.previous_routing,
            config="config-1",
            traffic_share=svc.traffic_share,
            depends_on=tuple(svc.depends_on or ()),
            team=svc.team,
            latency_p50_ms=_req(svc.latency_p50_ms),
            tokens_per_request=_req(svc.tokens_per_request),
            quality=_req(svc.quality),
            hallucination_rate=_req(svc.hallucination_rate),
            policy_violation_rate=_req(svc.policy_violation_rate),
            pii_alerts_per_interval=_req(svc.pii_alerts_per_interval),
            cache_hit_rate=_req(svc.cache_hit_rate),
            headroom=_req(svc.headroom),
        )
        services[name].refresh_labels()
    total = sum(s.traffic_share for s in services.values())
    if abs(total - 1.0) > 1e-6:
        shares = ", ".join(f"{n}={s.traffic_share:g}" for n, s in services.items())
        raise FleetError(f"fleet.services: traffic shares must sum to 1, got {total:g} ({shares})")
    _dependency_order(services)  # raises on cycles
    return services, providers


_SAMPLE_FIELDS = frozenset({"service", "signal", "ts", "value", "labels"})
_setattr = object.__setattr__


def _sample_fast(values: dict[str, Any]) -> Sample:
    """Build a Sample from values the fleet already guarantees valid, without re-validating.

    This is what `model_construct` does, minus its per-call bookkeeping (it was 60% of
    `advance`). Checked once at import against the validating constructor; on any
    mismatch (a future pydantic), `_sample` falls back to `model_construct`."""
    obj = object.__new__(Sample)
    _setattr(obj, "__dict__", values)
    _setattr(obj, "__pydantic_fields_set__", set(_SAMPLE_FIELDS))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


def _sample_construct(values: dict[str, Any]) -> Sample:
    return Sample.model_construct(**values)


def _pick_sample_builder() -> Any:
    probe = {"service": "s", "signal": "x", "ts": datetime(2026, 1, 1, tzinfo=UTC), "value": 1.5, "labels": {"a": "b"}}
    try:
        fast = _sample_fast(dict(probe))
        if fast == Sample.model_validate(probe) and fast.model_dump() == probe and hash(fast.series_key):
            return _sample_fast
    except Exception:  # pragma: no cover - only on a pydantic whose internals moved
        pass
    return _sample_construct  # pragma: no cover


_sample = _pick_sample_builder()


def _unit(p: float) -> float:
    return min(1.0, max(0.0, p))


def _req(value: float | None) -> float:
    assert value is not None  # every default service spec sets every physical field
    return value


def _dependency_order(services: Mapping[str, _Service]) -> list[str]:
    """Callees before callers, ties by name; a cycle is a configuration error."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*path, name))
            raise FleetError(f"fleet.services: dependency cycle {cycle}")
        state[name] = 1
        for dep in sorted(services[name].depends_on):
            visit(dep, (*path, name))
        state[name] = 2
        order.append(name)

    for name in sorted(services):
        visit(name, ())
    return order


class Fleet:
    """A seeded, virtual-time fleet of LLM services with fault injection and remediation."""

    def __init__(
        self,
        *,
        seed: int,
        start: datetime,
        fleet: FleetSpec | None = None,
        injections: Sequence[Injection] = (),
    ) -> None:
        if start.tzinfo is None:
            raise FleetError("start must be timezone-aware (UTC)")
        spec = fleet or FleetSpec()
        self._seed = seed
        self._bitgen = np.random.Philox(key=np.array([seed % 2**64, 0x5EED], dtype=np.uint64))
        self._rng = np.random.Generator(self._bitgen)
        self._start = start.astimezone(UTC)
        self._services, self._providers = resolve_fleet(spec)
        self._order = _dependency_order(self._services)
        self._rps = spec.requests_per_s or DEFAULT_REQUESTS_PER_S
        self._amplitude = spec.daily_amplitude if spec.daily_amplitude is not None else DEFAULT_DAILY_AMPLITUDE
        self._interval = spec.interval_s or DEFAULT_INTERVAL_S
        self._t = 0.0
        self._pending: list[tuple[float, int, Injection]] = []
        self._faults: list[FaultState] = []
        self._loads: list[_Window] = []
        self._noise: list[_Window] = []
        self._changes: list[ChangeEvent] = []  # emitted, not yet returned by advance()
        self._change_seq = 0
        self._fault_seq = 0
        self._inject_seq = 0
        self._results: dict[str, ActionResult] = {}
        self._applied: list[ActionResult] = []
        self._log: list[ActionResult] = []
        for injection in injections:
            self.inject(injection)

    # -- time and telemetry ----------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self._at(self._t)

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def interval_s(self) -> float:
        return self._interval

    @property
    def elapsed_s(self) -> float:
        return self._t

    def _at(self, t: float) -> datetime:
        return self._start + timedelta(microseconds=round(t * 1e6))

    def advance(self, seconds: float) -> SimBatch:
        """Move virtual time forward; return samples with ts in (old now, new now] and the
        change events that happened meanwhile (including those caused by remediation)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"advance() needs a finite, non-negative number of seconds, got {seconds!r}")
        old, new = self._t, self._t + seconds
        samples: list[Sample] = []
        first = math.floor(old / self._interval + 1e-9) + 1
        last = math.floor(new / self._interval + 1e-9)
        for tick in range(first, last + 1):
            t = tick * self._interval
            self._run_injections(t)
            self._settle(t)
            self._t = t
            samples.extend(self._tick(tick, t))
        self._run_injections(new)
        self._settle(new)
        self._t = new
        changes, self._changes = self._changes, []
        return SimBatch(samples=samples, changes=changes)

    def _run_injections(self, t: float) -> None:
        while self._pending and self._pending[0][0] <= t + 1e-9:
            _at, _seq, injection = self._pending.pop(0)
            self._activate(injection)

    def _settle(self, t: float) -> None:
        """Land delayed fixes (retraining) and note faults that expired by themselves."""
        for fault in self._faults:
            if fault.cleared_s is None and fault.pending_clear_s is not None and fault.pending_clear_s <= t:
                fault.cleared_s = fault.pending_clear_s
                fault.cleared_by = fault.pending_clear_by

    def _tick(self, tick: int, t: float) -> list[Sample]:
        rng = self._rng_for(tick)
        n = len(self._order)
        z = rng.standard_normal((n, 6))
        u = rng.random((n, 3))
        ts = self._at(t)
        hour = (ts.hour + ts.minute / 60 + ts.second / 3600) % 24
        daily = 1.0 + self._amplitude * math.sin(2 * math.pi * (hour - 9.0) / 24.0)
        excess: dict[str, tuple[float, float, float]] = {}  # callee -> (latency ms, error, quality drop)
        samples: list[Sample] = []
        mods_by_service = self._mods(t)
        for i, name in enumerate(self._order):
            svc = self._services[name]
            values = self._service_values(
                svc, mods_by_service[name], t=t, daily=daily, excess=excess, rng=rng, z=z[i], u=u[i]
            )
            labels = svc.labels
            for signal, value in zip(SIGNALS, values, strict=True):
                samples.append(
                    _sample({"service": name, "signal": signal, "ts": ts, "value": float(value), "labels": labels})
                )
        return samples

    def _service_values(
        self,
        svc: _Service,
        mods: Effect,
        *,
        t: float,
        daily: float,
        excess: dict[str, tuple[float, float, float]],
        rng: np.random.Generator,
        z: np.ndarray,
        u: np.ndarray,
    ) -> tuple[float, ...]:
        """One service's 13 signal values at one tick, in `SIGNALS` order, from its causes."""
        name = svc.name
        prov = self._providers[svc.provider]
        noise = 1.0 + sum((w.factor - 1.0) * w.weight(name, t) for w in self._noise)
        load = 1.0 + sum((w.factor - 1.0) * w.weight(name, t) for w in self._loads)

        # demand, capacity, queue
        demand = self._rps * svc.traffic_share * daily * load * mods.demand_mult * math.exp(0.02 * noise * z[0])
        served = demand if svc.throttle_rps is None else min(demand, svc.throttle_rps)
        capacity = self._capacity(svc)
        svc.queue = max(0.0, svc.queue + (served - capacity) * self._interval)
        rho = min(served / capacity, 0.95)
        load_latency = 1.0 + 0.15 * rho * rho / (1.0 - rho)
        wait_ms = svc.queue / capacity * 1000.0
        requests = int(rng.poisson(served * self._interval))

        # cache: a purged cache refills over minutes; misses cost latency
        cache = min(max(svc.cache_hit_rate + mods.cache_add, 0.0), 0.99)
        if svc.cache_purged_s is not None:
            cache *= 1.0 - math.exp(-(t - svc.cache_purged_s) / CACHE_WARMUP_S)
        cache_penalty = 1.0 + 0.4 * max(0.0, svc.cache_hit_rate - cache)

        # upstream: callees' excess latency, errors and quality loss reach their callers
        up_latency = up_error = up_quality = 0.0
        for dep in svc.depends_on:
            lat, err, qdrop = excess.get(dep, (0.0, 0.0, 0.0))
            up_latency += lat
            up_error += 0.8 * err
            up_quality += 0.6 * qdrop

        nominal_p50 = svc.latency_p50_ms * prov.latency_factor * load_latency
        p50_mean = nominal_p50 * mods.latency_mult * cache_penalty + wait_ms + up_latency
        timeout_error = min(0.5, wait_ms / 60_000.0)
        error_p = min(1.0, prov.error_rate + mods.error_add + timeout_error + up_error)
        healthy_quality = svc.quality + prov.quality_delta
        quality_mean = healthy_quality + mods.quality_add - up_quality
        excess[name] = (p50_mean - nominal_p50, error_p - prov.error_rate, max(0.0, healthy_quality - quality_mean))

        p50 = p50_mean * math.exp(0.03 * noise * z[1])
        p95 = p50 * (2.1 + 0.5 * (load_latency - 1.0)) * math.exp(0.04 * noise * z[2])
        p99 = p95 * 1.45 * math.exp(0.05 * noise * z[3])
        if u[0] < SPIKE_PROBABILITY * noise:
            p99 *= 2.0 + 2.0 * u[1]
            p95 *= 1.3
        if u[2] < ERROR_BURST_PROBABILITY * noise:
            error_p = min(1.0, error_p + 0.02)
        denom = max(requests, 1)
        tokens = svc.tokens_per_request * mods.tokens_mult * math.exp(0.02 * noise * z[4])
        cache_rate = rng.binomial(requests, cache) / denom
        hallucination_p = svc.hallucination_rate + mods.hallucination_add + 0.5 * up_quality
        policy_p = svc.policy_violation_rate + mods.policy_add
        return (
            p50,
            p95,
            p99,
            rng.binomial(requests, error_p) / denom,
            requests / self._interval,
            tokens,
            tokens * prov.price_per_1k_tokens * mods.price_mult * (1.0 - 0.5 * cache_rate),
            min(1.0, max(0.0, quality_mean + 0.012 * noise * z[5])),
            rng.binomial(EVALS_PER_INTERVAL, _unit(hallucination_p)) / EVALS_PER_INTERVAL,
            rng.binomial(requests, _unit(policy_p)) / denom,
            float(rng.poisson(svc.pii_alerts_per_interval + mods.pii_add)),
            float(rng.poisson(2.0 + 4.0 * rho * rho / (1.0 - rho))) + round(svc.queue),
            cache_rate,
        )

    def _capacity(self, svc: _Service) -> float:
        """Requests/s the service can serve: its share of the daily peak times its headroom."""
        return self._rps * svc.traffic_share * (1.0 + self._amplitude) * svc.headroom

    def _rng_for(self, tick: int) -> np.random.Generator:
        """The generator for one tick: a counter-based stream keyed by the seed, positioned at the
        tick, so noise depends only on (seed, tick), never on how time was sliced."""
        state = self._bitgen.state
        state["state"]["counter"] = np.array([0, tick, 0, 0], dtype=np.uint64)
        state["buffer_pos"] = 4  # drop any buffered output of the previous tick
        state["has_uint32"] = 0
        self._bitgen.state = state
        return self._rng

    def _mods(self, t: float) -> dict[str, Effect]:
        mods = dict.fromkeys(self._services, HEALTHY)
        for fault in self._faults:
            strength = fault.shape_intensity(t) * fault.severity
            if strength <= 0.0:
                continue
            effect = EFFECTS[fault.kind]
            for name in self._affected(fault):
                mods[name] = mods[name].blend(effect, strength)
        return mods

    def _affected(self, fault: FaultState) -> list[str]:
        """The services a fault reaches right now, given what carries it."""
        if fault.kind in PROVIDER_KINDS:
            return [n for n in self._order if self._services[n].provider == fault.provider]
        if fault.service is None or fault.service not in self._services:
            return []
        svc = self._services[fault.service]
        if fault.carrier is not None and svc.attr(fault.carrier) != fault.carrier_value:
            return []
        return [fault.service]

    # -- injections ------------------------------------------------------------------------

    def inject(self, injection: Injection) -> None:
        """Schedule an injection at `injection.at` seconds after the fleet's start (now, if past)."""
        self._check_injection(injection)
        if injection.at < self._t:
            injection = injection.model_copy(update={"at": self._t})
        at = injection.at
        self._inject_seq += 1
        self._pending.append((at, self._inject_seq, injection))
        self._pending.sort(key=lambda item: (item[0], item[1]))
        if at <= self._t + 1e-9:
            self._run_injections(self._t)

    def _check_injection(self, injection: Injection) -> None:
        service = getattr(injection, "service", None)
        if service is not None and service not in self._services:
            raise FleetError(f"injection: unknown service {service!r}; known: {sorted(self._services)}")
        if isinstance(injection, FaultInjection):
            name = injection.fault
            if name in PROVIDER_KINDS:
                if injection.provider is None:
                    raise FleetError(f"injection {name}: needs 'provider'")
                if injection.provider not in self._providers:
                    raise FleetError(
                        f"injection {name}: unknown provider {injection.provider!r}; known: {sorted(self._providers)}"
                    )
            elif service is None:
                raise FleetError(f"injection {name}: needs 'service'")
            if name == "upstream_dependency":
                via = injection.via or "bad_model_deploy"
                if via not in EFFECTS:
                    raise FleetError(f"injection upstream_dependency: 'via' must be one of {sorted(EFFECTS)}")
                if via in PROVIDER_KINDS:
                    raise FleetError("injection upstream_dependency: 'via' a provider fault -- inject that directly")
                if not self.topology().callers_of(service or ""):
                    raise FleetError(f"injection upstream_dependency: nothing calls {service!r}, so nothing follows")
            elif name in ("tokenizer_mismatch", "safety_regression") and injection.via not in (
                None,
                "model_version",
                "prompt_version",
            ):
                raise FleetError(f"injection {name}: 'via' must be model_version or prompt_version")
            if injection.shape == "intermittent" and injection.period is None:
                raise FleetError(f"injection {name}: an intermittent fault needs 'period' (e.g. '10m')")
        if isinstance(injection, DeployInjection) and injection.kind == ChangeKind.PROVIDER:
            target = injection.to
            if target is None or target not in self._providers:
                raise FleetError(f"injection deploy: provider change needs 'to' naming a provider, got {target!r}")

    def _activate(self, injection: Injection) -> None:
        if isinstance(injection, FaultInjection):
            self._start_fault(injection)
        elif isinstance(injection, DeployInjection):
            svc = self._services[injection.service]
            self._change(svc, injection.kind, injection.to, actor=injection.actor, ts=injection.at)
        elif isinstance(injection, LoadInjection):
            self._loads.append(
                _Window(
                    injection.service, injection.at, injection.at + injection.duration, injection.factor, injection.ramp
                )
            )
        elif isinstance(injection, NoiseInjection):
            self._noise.append(
                _Window(injection.service, injection.at, injection.at + injection.duration, injection.scale)
            )

    def _start_fault(self, spec: FaultInjection) -> None:
        self._fault_seq += 1
        kind: str = spec.fault
        if kind == "upstream_dependency":
            kind = spec.via or "bad_model_deploy"
        carrier = CARRIER[kind]
        if kind in ("tokenizer_mismatch", "safety_regression") and spec.via in ("model_version", "prompt_version"):
            carrier = ChangeKind(spec.via)
        default_ramp = 3600.0 if kind == "data_drift" else 900.0
        fault = FaultState(
            id=spec.id or f"fault-{self._fault_seq}-{spec.fault}",
            kind=kind,
            cause=CAUSE_OF[spec.fault],
            label=spec.fault,
            start_s=spec.at,
            severity=spec.severity,
            shape=spec.shape,
            ramp_s=spec.ramp if spec.ramp is not None else default_ramp,
            period_s=spec.period if spec.period is not None else 600.0,
            duty=spec.duty,
            service=spec.service,
            provider=spec.provider,
            end_s=spec.at + spec.duration if spec.duration is not None else None,
            started=True,
        )
        if carrier is not None and spec.service is not None:
            svc = self._services[spec.service]
            change = self._change(svc, carrier, spec.to, actor="deploy-pipeline", ts=spec.at)
            fault.carrier = carrier
            fault.carrier_value = change.to_value
        self._faults.append(fault)

    def _change(
        self, svc: _Service, kind: ChangeKind, to: str | None, *, actor: str, ts: float, restore: bool = False
    ) -> ChangeEvent:
        """Move one attribute of a service, remember the previous value, emit the change event."""
        old = svc.attr(kind)
        if kind == ChangeKind.MODEL_VERSION:
            new = to or next_version(old)
            svc.previous_model_version, svc.model_version = (None if restore else old), new
        elif kind == ChangeKind.PROMPT_VERSION:
            new = to or next_version(old)
            svc.previous_prompt_version, svc.prompt_version = (None if restore else old), new
        elif kind == ChangeKind.ROUTING:
            new = to or ("premium-all" if old == "default" else "default")
            svc.previous_routing, svc.routing = (None if restore else old), new
        elif kind == ChangeKind.PROVIDER:
            new = to or (svc.backup_provider or old)
            if svc.backup_provider == new:
                svc.backup_provider = old
            svc.provider = new
        else:
            new = to or next_version(old)
            svc.config = new
        svc.refresh_labels()
        self._change_seq += 1
        event = ChangeEvent(
            id=f"chg-{self._change_seq:04d}-{svc.name}-{kind.value}",
            service=svc.name,
            kind=kind,
            from_value=old,
            to_value=new,
            ts=self._at(ts),
            actor=actor,
        )
        self._changes.append(event)
        self._clear_uncarried(ts)
        return event

    def _clear_uncarried(self, t: float) -> None:
        """A deploy-borne fault whose version is gone, or a provider fault nobody uses, is over."""
        for fault in self._faults:
            if fault.cleared_s is not None or not fault.live(t):
                continue
            if not self._affected(fault):
                fault.cleared_s = t
                fault.cleared_by = self._current_key or "change"

    _current_key: str | None = None

    # -- remediation -----------------------------------------------------------------------

    def apply_action(
        self, action: ActionName | str, target: str, parameters: Mapping[str, Any] | None, idempotency_key: str
    ) -> ActionResult:
        """Apply one remediation at most once per idempotency key; see the module docstring."""
        if not idempotency_key:
            raise ValueError("apply_action needs a non-empty idempotency_key")
        first = self._results.get(idempotency_key)
        if first is not None:
            return first.model_copy(update={"status": "duplicate"})
        params = dict(parameters or {})
        try:
            name = ActionName(action)
        except ValueError:
            result = self._result(
                status="rejected",
                detail=f"unknown action {action!r}; known: {[a.value for a in ActionName]}",
                key=idempotency_key,
                action=str(action),
                target=target,
                params=params,
            )
        else:
            self._current_key = idempotency_key
            try:
                result = self._dispatch(name, target, params, idempotency_key)
            finally:
                self._current_key = None
        self._results[idempotency_key] = result
        self._log.append(result)
        if result.status == "applied":
            self._applied.append(result)
        return result

    def action_result(self, idempotency_key: str) -> ActionResult | None:
        return self._results.get(idempotency_key)

    @property
    def applied_actions(self) -> list[ActionResult]:
        return list(self._applied)

    @property
    def action_log(self) -> list[ActionResult]:
        """Every first call per idempotency key, applied or rejected, in order."""
        return list(self._log)

    def _result(
        self,
        *,
        status: Literal["applied", "rejected"],
        detail: str,
        key: str,
        action: str,
        target: str,
        params: dict[str, Any],
        effect: dict[str, Any] | None = None,
    ) -> ActionResult:
        return ActionResult(
            status=status,
            detail=detail,
            effect=effect or {},
            idempotency_key=key,
            action=action,
            target=target,
            parameters=params,
            ts=self.now,
        )

    def _dispatch(self, action: ActionName, target: str, params: dict[str, Any], key: str) -> ActionResult:
        def reject(detail: str) -> ActionResult:
            return self._result(
                status="rejected", detail=detail, key=key, action=action.value, target=target, params=params
            )

        def applied(detail: str, effect: dict[str, Any]) -> ActionResult:
            return self._result(
                status="applied",
                detail=detail,
                key=key,
                action=action.value,
                target=target,
                params=params,
                effect=effect,
            )

        if action == ActionName.FAILOVER_PROVIDER:
            if target in self._providers:
                names = [n for n in self._order if self._services[n].provider == target]
                if not names:
                    return reject(f"no service runs on provider {target!r}")
            elif target in self._services:
                names = [target]
            else:
                return reject(f"unknown provider or service {target!r}; providers: {sorted(self._providers)}")
            movable = [n for n in names if self._services[n].backup_provider]
            if not movable:
                return reject(f"no service on {target!r} has a backup provider")
            before = self._cleared_ids()
            moves = {}
            for n in movable:
                svc = self._services[n]
                change = self._change(svc, ChangeKind.PROVIDER, svc.backup_provider, actor="homeostat", ts=self._t)
                moves[n] = {"from": change.from_value, "to": change.to_value}
            cleared = sorted(self._cleared_ids() - before)
            return applied(
                f"moved {', '.join(movable)} to backup provider",
                {"moved": moves, "cleared_faults": cleared, "stayed": sorted(set(names) - set(movable))},
            )

        found = self._services.get(target)
        if found is None:
            return reject(f"unknown service {target!r}; known: {sorted(self._services)}")
        svc = found

        if action in (ActionName.ROLLBACK_MODEL_VERSION, ActionName.ROLLBACK_PROMPT_VERSION, ActionName.REVERT_ROUTING):
            kind = {
                ActionName.ROLLBACK_MODEL_VERSION: ChangeKind.MODEL_VERSION,
                ActionName.ROLLBACK_PROMPT_VERSION: ChangeKind.PROMPT_VERSION,
                ActionName.REVERT_ROUTING: ChangeKind.ROUTING,
            }[action]
            previous = {
                ChangeKind.MODEL_VERSION: svc.previous_model_version,
                ChangeKind.PROMPT_VERSION: svc.previous_prompt_version,
                ChangeKind.ROUTING: svc.previous_routing,
            }[kind]
            if previous is None:
                return reject(f"{target} has no previous {kind.value} to go back to")
            before = self._cleared_ids()
            change = self._change(svc, kind, previous, actor="homeostat", ts=self._t, restore=True)
            cleared = sorted(self._cleared_ids() - before)
            effect: dict[str, Any] = {"from": change.from_value, "to": change.to_value, "cleared_faults": cleared}
            if not cleared:
                effect["lost_version"] = change.from_value
            return applied(f"{target}: {kind.value} {change.from_value} -> {change.to_value}", effect)

        if action == ActionName.THROTTLE:
            cap = float(params.get("max_rps", DEFAULT_THROTTLE_UTILISATION * self._capacity(svc)))
            if not math.isfinite(cap) or cap <= 0:
                return reject(f"throttle max_rps must be a positive number, got {params.get('max_rps')!r}")
            svc.throttle_rps = cap
            cleared = self._clear_direct(svc.name, "capacity", key)
            return applied(
                f"{target}: served load capped at {cap:.1f} req/s", {"max_rps": cap, "cleared_faults": cleared}
            )

        if action == ActionName.TRIGGER_RETRAINING:
            delay = float(params.get("duration_s", RETRAIN_S))
            if not math.isfinite(delay) or delay < 0:
                return reject(f"trigger_retraining duration_s must be a non-negative number, got {delay!r}")
            scheduled = []
            for fault in self._faults:
                if fault.kind == "data_drift" and fault.service == svc.name and fault.live(self._t):
                    fault.pending_clear_s = self._t + delay
                    fault.pending_clear_by = key
                    scheduled.append(fault.id)
            return applied(
                f"{target}: retraining started, lands in {delay:.0f}s",
                {"completes_at": self._at(self._t + delay).isoformat(), "fixes_faults": scheduled, "cost_usd": 400.0},
            )

        if action == ActionName.PURGE_CONTEXT_CACHE:
            svc.cache_purged_s = self._t
            cleared = self._clear_direct(svc.name, "pii_leak", key)
            return applied(f"{target}: context cache purged", {"cache_cold": True, "cleared_faults": cleared})

        if action == ActionName.ESCALATE:
            return applied(f"{target}: paged team {svc.team or 'on-call'}", {"paged": svc.team or "on-call"})

        return reject(f"action {action.value} is not supported by the simulator")  # pragma: no cover

    def _clear_direct(self, service: str, kind: str, key: str) -> list[str]:
        cleared = []
        for fault in self._faults:
            if fault.kind == kind and fault.service == service and fault.live(self._t):
                fault.cleared_s = self._t
                fault.cleared_by = key
                cleared.append(fault.id)
        return cleared

    def _cleared_ids(self) -> set[str]:
        return {f.id for f in self._faults if f.cleared_s is not None}

    # -- views -----------------------------------------------------------------------------

    def topology(self) -> Topology:
        return Topology(
            services={
                name: ServiceInfo(
                    name=name,
                    provider=svc.provider,
                    backup_provider=svc.backup_provider,
                    model_version=svc.model_version,
                    previous_model_version=svc.previous_model_version,
                    prompt_version=svc.prompt_version,
                    previous_prompt_version=svc.previous_prompt_version,
                    routing=svc.routing,
                    previous_routing=svc.previous_routing,
                    traffic_share=svc.traffic_share,
                    depends_on=svc.depends_on,
                    team=svc.team,
                )
                for name, svc in sorted(self._services.items())
            }
        )

    def active_faults(self) -> list[ActiveFault]:
        """Faults still breaking something: started, not removed, not expired, still carried."""
        return [
            ActiveFault(
                id=f.id,
                fault=f.label,
                cause=f.cause,
                service=f.service,
                provider=f.provider,
                since=self._at(f.start_s),
                severity=f.severity,
                shape=f.shape,
            )
            for f in self._faults
            if f.live(self._t) and self._affected(f)
        ]

    def fault_log(self) -> list[FaultRecord]:
        """Every fault injected so far, with when and by what it stopped (None while live)."""
        records = []
        for f in self._faults:
            end: float | None = f.cleared_s
            by = f.cleared_by
            if end is None and f.end_s is not None and f.end_s <= self._t:
                end, by = f.end_s, "expired"
            records.append(
                FaultRecord(
                    id=f.id,
                    fault=f.label,
                    cause=f.cause,
                    service=f.service,
                    provider=f.provider,
                    started_at=self._at(f.start_s),
                    cleared_at=None if end is None else self._at(end),
                    cleared_by=by,
                )
            )
        return records

    def providers(self) -> dict[str, ProviderSpec]:
        return dict(self._providers)
