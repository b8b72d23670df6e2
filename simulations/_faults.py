"""Faults as causes: what each failure mode does to a service's physics, and what removes it.

A fault never paints a signal directly. It changes a cause-level knob (the quality of the
model behind a version, the error rate of a provider, the demand on a service, the price of a
route) and the fleet derives every signal from those knobs. Version-borne faults live on the
version that carries them: roll the version back and the fault is gone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime

from domain import ActionName, Cause, ChangeKind


@dataclass(frozen=True, slots=True)
class Effect:
    """Cause-level knobs a service runs under (the defaults are a healthy service).

    `EFFECTS` holds each failure mode's knobs at severity 1.0 and full intensity; the knobs a
    service runs under at one instant are `HEALTHY` blended with every fault that reaches it.
    """

    latency_mult: float = 1.0
    error_add: float = 0.0
    tokens_mult: float = 1.0
    price_mult: float = 1.0
    quality_add: float = 0.0
    hallucination_add: float = 0.0
    policy_add: float = 0.0
    pii_add: float = 0.0
    demand_mult: float = 1.0
    cache_add: float = 0.0

    def blend(self, effect: Effect, strength: float) -> Effect:
        """These knobs with `effect` blended in at `strength`: `*_mult` knobs compound, the rest add."""
        knobs: dict[str, float] = {}
        for knob in fields(self):
            mine, theirs = getattr(self, knob.name), getattr(effect, knob.name)
            if knob.name.endswith("_mult"):
                knobs[knob.name] = mine * (1.0 + (theirs - 1.0) * strength)
            else:
                knobs[knob.name] = mine + theirs * strength
        return replace(self, **knobs)


HEALTHY = Effect()


#: The mechanics of each fault kind named in scenario files.
EFFECTS: dict[str, Effect] = {
    "bad_model_deploy": Effect(quality_add=-0.18, hallucination_add=0.09, latency_mult=1.2),
    "bad_prompt_deploy": Effect(quality_add=-0.15, policy_add=0.04, tokens_mult=1.45, hallucination_add=0.03),
    "provider_degradation": Effect(error_add=0.07, latency_mult=1.9),
    "provider_outage": Effect(error_add=0.45, latency_mult=2.6),
    "capacity": Effect(demand_mult=2.3),
    "cost_misrouting": Effect(price_mult=3.5, latency_mult=1.04),
    "data_drift": Effect(quality_add=-0.14, hallucination_add=0.05, cache_add=-0.15, tokens_mult=1.12),
    "safety_regression": Effect(policy_add=0.07, quality_add=-0.02),
    "pii_leak": Effect(pii_add=4.0, policy_add=0.01),
    "tokenizer_mismatch": Effect(tokens_mult=0.55, error_add=0.08, quality_add=-0.12),
}

#: The taxonomy cause each fault kind belongs to.
CAUSE_OF: dict[str, Cause] = {
    "bad_model_deploy": Cause.BAD_MODEL_DEPLOY,
    "bad_prompt_deploy": Cause.BAD_PROMPT_DEPLOY,
    "provider_degradation": Cause.PROVIDER_DEGRADATION,
    "provider_outage": Cause.PROVIDER_DEGRADATION,
    "capacity": Cause.CAPACITY,
    "cost_misrouting": Cause.COST_MISROUTING,
    "data_drift": Cause.DATA_DRIFT,
    "safety_regression": Cause.SAFETY_REGRESSION,
    "pii_leak": Cause.PII_LEAK,
    "tokenizer_mismatch": Cause.TOKENIZER_MISMATCH,
    "upstream_dependency": Cause.UPSTREAM_DEPENDENCY,
}

#: Faults carried by a change: the attribute the deploy moves (None = not deploy-borne).
CARRIER: dict[str, ChangeKind | None] = {
    "bad_model_deploy": ChangeKind.MODEL_VERSION,
    "bad_prompt_deploy": ChangeKind.PROMPT_VERSION,
    "tokenizer_mismatch": ChangeKind.MODEL_VERSION,
    "safety_regression": ChangeKind.PROMPT_VERSION,
    "cost_misrouting": ChangeKind.ROUTING,
    "provider_degradation": None,
    "provider_outage": None,
    "capacity": None,
    "data_drift": None,
    "pii_leak": None,
}

#: The action that removes a fault which no version change carries.
DIRECT_REMEDY: dict[str, ActionName] = {
    "capacity": ActionName.THROTTLE,
    "data_drift": ActionName.TRIGGER_RETRAINING,
    "pii_leak": ActionName.PURGE_CONTEXT_CACHE,
}

#: What a rollback of each carrier is called.
ROLLBACK_OF: dict[ChangeKind, ActionName] = {
    ChangeKind.MODEL_VERSION: ActionName.ROLLBACK_MODEL_VERSION,
    ChangeKind.PROMPT_VERSION: ActionName.ROLLBACK_PROMPT_VERSION,
    ChangeKind.ROUTING: ActionName.REVERT_ROUTING,
}

PROVIDER_KINDS = frozenset({"provider_degradation", "provider_outage"})


@dataclass(slots=True)
class FaultState:
    """One injected fault over its life: when it starts, what carries it, when it was removed."""

    id: str
    kind: str  # mechanics: a key of EFFECTS
    cause: Cause  # taxonomy label (upstream_dependency keeps its label, runs its callee's kind)
    label: str  # the name used in the scenario file
    start_s: float
    severity: float
    shape: str
    ramp_s: float
    period_s: float
    duty: float
    service: str | None = None
    provider: str | None = None
    end_s: float | None = None
    carrier: ChangeKind | None = None
    carrier_value: str | None = None
    started: bool = False
    cleared_s: float | None = None
    cleared_by: str | None = None
    pending_clear_s: float | None = None
    pending_clear_by: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def shape_intensity(self, t: float) -> float:
        """0..1: how strongly the fault acts at t seconds after the scenario start (ignoring carriers)."""
        if t < self.start_s or not self.started:
            return 0.0
        if self.cleared_s is not None and t >= self.cleared_s:
            return 0.0
        if self.end_s is not None and t >= self.end_s:
            return 0.0
        elapsed = t - self.start_s
        if self.shape == "gradual":
            return min(1.0, elapsed / self.ramp_s) if self.ramp_s > 0 else 1.0
        if self.shape == "intermittent":
            phase = math.fmod(elapsed, self.period_s)
            return 1.0 if phase < self.duty * self.period_s else 0.0
        return 1.0

    def live(self, t: float) -> bool:
        """Started, not removed, not expired (an intermittent fault between bursts is still live)."""
        if not self.started or t < self.start_s:
            return False
        if self.cleared_s is not None and t >= self.cleared_s:
            return False
        return not (self.end_s is not None and t >= self.end_s)


@dataclass(frozen=True, slots=True)
class ActiveFault:
    """A fault that is still breaking something: what `Fleet.active_faults()` returns."""

    id: str
    fault: str
    cause: Cause
    service: str | None
    provider: str | None
    since: datetime
    severity: float
    shape: str


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault's whole life, for scoring time to recover."""

    id: str
    fault: str
    cause: Cause
    service: str | None
    provider: str | None
    started_at: datetime | None
    cleared_at: datetime | None
    cleared_by: str | None
