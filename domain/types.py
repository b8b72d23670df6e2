"""The shared vocabulary of the loop: what flows from sources to detection to the incident graph.

Every package may import this module; it imports nothing of ours. Types are frozen pydantic
models so they validate at the edges and serialise to canonical JSON for the audit log.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware (UTC); got a naive datetime")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


class Frozen(BaseModel):
    """Base for immutable domain values; unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------


class Signal(StrEnum):
    """The signals an LLM service emits (DESIGN.md). Unknown signal names are still accepted
    by `Sample` as plain strings; these are the ones Homeostat knows the meaning of."""

    LATENCY_P50_MS = "latency_p50_ms"
    LATENCY_P95_MS = "latency_p95_ms"
    LATENCY_P99_MS = "latency_p99_ms"
    ERROR_RATE = "error_rate"
    REQUEST_RATE = "request_rate"
    TOKENS_PER_REQUEST = "tokens_per_request"
    COST_PER_1K_REQUESTS = "cost_per_1k_requests"
    QUALITY_SCORE = "quality_score"
    HALLUCINATION_RATE = "hallucination_rate"
    POLICY_VIOLATION_RATE = "policy_violation_rate"
    PII_ALERTS = "pii_alerts"
    QUEUE_DEPTH = "queue_depth"
    CACHE_HIT_RATE = "cache_hit_rate"


class Direction(StrEnum):
    """Which way a value moved (for anomalies) or which way is bad (for signals)."""

    UP = "up"
    DOWN = "down"
    BOTH = "both"


#: Which direction is "worse" for each known signal. A signal not listed is watched both ways.
BAD_DIRECTION: dict[str, Direction] = {
    Signal.LATENCY_P50_MS: Direction.UP,
    Signal.LATENCY_P95_MS: Direction.UP,
    Signal.LATENCY_P99_MS: Direction.UP,
    Signal.ERROR_RATE: Direction.UP,
    Signal.REQUEST_RATE: Direction.BOTH,
    Signal.TOKENS_PER_REQUEST: Direction.BOTH,
    Signal.COST_PER_1K_REQUESTS: Direction.UP,
    Signal.QUALITY_SCORE: Direction.DOWN,
    Signal.HALLUCINATION_RATE: Direction.UP,
    Signal.POLICY_VIOLATION_RATE: Direction.UP,
    Signal.PII_ALERTS: Direction.UP,
    Signal.QUEUE_DEPTH: Direction.UP,
    Signal.CACHE_HIT_RATE: Direction.DOWN,
}


def bad_direction(signal: str) -> Direction:
    """The direction in which `signal` gets worse; BOTH for signals Homeostat does not know."""
    return BAD_DIRECTION.get(signal, Direction.BOTH)


class Sample(Frozen):
    """One observation of one series: (service, signal, labels) at a UTC instant."""

    service: str = Field(min_length=1, max_length=200)
    signal: str = Field(min_length=1, max_length=200)
    ts: UtcDatetime
    value: float
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"sample value must be a finite number, got {value!r}")
        return value

    @property
    def series_key(self) -> str:
        return series_key(self.service, self.signal)


def series_key(service: str, signal: str) -> str:
    """The identity of a series: one detector state per key."""
    return f"{service}/{signal}"


class ChangeKind(StrEnum):
    MODEL_VERSION = "model_version"
    PROMPT_VERSION = "prompt_version"
    PROVIDER = "provider"
    CONFIG = "config"
    ROUTING = "routing"


class ChangeEvent(Frozen):
    """Something a person or a pipeline changed on a service. Diagnosis leans on these."""

    id: str = Field(min_length=1, max_length=200)
    service: str = Field(min_length=1, max_length=200)
    kind: ChangeKind
    from_value: str
    to_value: str
    ts: UtcDatetime
    actor: str = "unknown"


# --------------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------------


class ServiceInfo(Frozen):
    """What Homeostat knows about one service's wiring right now."""

    name: str
    provider: str
    backup_provider: str | None = None
    model_version: str
    previous_model_version: str | None = None
    prompt_version: str
    previous_prompt_version: str | None = None
    routing: str = "default"
    previous_routing: str | None = None
    traffic_share: float = Field(ge=0.0, le=1.0, description="share of the fleet's requests, 0..1")
    depends_on: tuple[str, ...] = ()
    team: str | None = None


class Topology(Frozen):
    """Services, their providers and their dependencies, as seen at one instant."""

    services: dict[str, ServiceInfo]

    def on_provider(self, provider: str) -> list[str]:
        return sorted(name for name, info in self.services.items() if info.provider == provider)

    def callers_of(self, service: str) -> list[str]:
        return sorted(name for name, info in self.services.items() if service in info.depends_on)


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Anomaly(Frozen):
    """A detector's claim that a series shifted: one per shift, not one per sample."""

    id: str
    service: str
    signal: str
    detector: str
    ts: UtcDatetime
    direction: Direction
    baseline: float
    current: float
    severity: Severity = Severity.WARNING
    kind: Literal["shift", "spike", "burn_rate", "trend", "budget", "stale", "alert"] = "shift"
    detail: dict[str, Any] = Field(default_factory=dict)

    @property
    def series_key(self) -> str:
        return series_key(self.service, self.signal)


# --------------------------------------------------------------------------------------------
# Incidents and diagnosis
# --------------------------------------------------------------------------------------------


class IncidentState(StrEnum):
    OPEN = "open"
    DIAGNOSING = "diagnosing"
    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    RESOLVED = "resolved"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    ESCALATED = "escalated"


FINAL_STATES: frozenset[IncidentState] = frozenset(
    {
        IncidentState.RESOLVED,
        IncidentState.FAILED,
        IncidentState.REJECTED,
        IncidentState.EXPIRED,
        IncidentState.ESCALATED,
    }
)


class Cause(StrEnum):
    """The fixed root-cause taxonomy (DESIGN.md). Diagnosers may name nothing else."""

    BAD_MODEL_DEPLOY = "bad_model_deploy"
    BAD_PROMPT_DEPLOY = "bad_prompt_deploy"
    PROVIDER_DEGRADATION = "provider_degradation"
    CAPACITY = "capacity"
    COST_MISROUTING = "cost_misrouting"
    DATA_DRIFT = "data_drift"
    SAFETY_REGRESSION = "safety_regression"
    PII_LEAK = "pii_leak"
    TOKENIZER_MISMATCH = "tokenizer_mismatch"
    UPSTREAM_DEPENDENCY = "upstream_dependency"
    UNKNOWN = "unknown"


class SeriesEvidence(Frozen):
    """A series window a diagnosis rests on: its level before and after onset."""

    type: Literal["series"] = "series"
    service: str
    signal: str
    before: float
    after: float
    window_s: float
    anomaly_id: str | None = None


class ChangeEvidence(Frozen):
    """A change event a diagnosis rests on, and how long before onset it happened."""

    type: Literal["change"] = "change"
    change_id: str
    service: str
    kind: ChangeKind
    from_value: str
    to_value: str
    seconds_before_onset: float


Evidence = Annotated[SeriesEvidence | ChangeEvidence, Field(discriminator="type")]


class Diagnosis(Frozen):
    cause: Cause
    service: str = Field(description="the service (or provider, for provider causes) the cause sits on")
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: tuple[Evidence, ...] = ()
    rationale: str
    diagnoser: str
    diagnoser_version: str
    provider: str | None = None
    alternatives: tuple[tuple[Cause, float], ...] = ()
    notes: tuple[str, ...] = Field(
        default=(), description="how the diagnosis was reached, e.g. why an LLM answer was rejected"
    )


# --------------------------------------------------------------------------------------------
# Remediation
# --------------------------------------------------------------------------------------------


class ActionName(StrEnum):
    """The remediation catalog's action names. The LLM can name nothing else."""

    ROLLBACK_MODEL_VERSION = "rollback_model_version"
    ROLLBACK_PROMPT_VERSION = "rollback_prompt_version"
    FAILOVER_PROVIDER = "failover_provider"
    REVERT_ROUTING = "revert_routing"
    TRIGGER_RETRAINING = "trigger_retraining"
    THROTTLE = "throttle"
    PURGE_CONTEXT_CACHE = "purge_context_cache"
    ESCALATE = "escalate"


class Proposal(Frozen):
    """A contained remediation: one catalog action on one target, with what it should achieve."""

    action: ActionName
    target: str = Field(description="a service name, or a provider name for failover_provider")
    service: str = Field(description="the service on whose behalf the action runs (for rule matching)")
    parameters: dict[str, Any] = Field(default_factory=dict)
    expected_effect: str = ""
    blast_radius: float = Field(ge=0.0, le=1.0, description="share of fleet traffic touched, 0..1")
    reversible: bool
    cause: Cause
    confidence: float = Field(ge=0.0, le=1.0)
    proposer: str = "homeostat"


class Verdict(StrEnum):
    AUTO = "auto"
    APPROVAL = "approval"
    DENY = "deny"


class OnTimeout(StrEnum):
    REJECT = "reject"
    ESCALATE = "escalate"
    AUTO = "auto"


class ApprovalRequirement(Frozen):
    approvers: int = Field(ge=1, default=1)
    roles: tuple[str, ...] = ("approver",)
    timeout_s: float = Field(gt=0, default=1800.0)
    on_timeout: OnTimeout = OnTimeout.REJECT


class Decision(Frozen):
    """What the constitution says about one proposal, and why."""

    verdict: Verdict
    approval: ApprovalRequirement | None = None
    matched_rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    constitution_digest: str
    engine_version: str | None = Field(
        default=None,
        description="the policy engine (policies.POLICY_ENGINE_VERSION) that decided; None on records written before"
        " decisions were stamped",
    )


class Approval(Frozen):
    """One person's answer to a pending proposal."""

    approver: str
    roles: tuple[str, ...] = ()
    approve: bool
    comment: str = ""
    ts: UtcDatetime


class OutcomeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    DRY_RUN = "dry_run"
    DUPLICATE = "duplicate"


class ActionOutcome(Frozen):
    """The result of one action call, as data: tools never leak exceptions into the graph."""

    status: OutcomeStatus
    idempotency_key: str
    detail: str = ""
    attempts: int = 1
    effect: dict[str, Any] = Field(default_factory=dict)


def utcnow() -> datetime:
    """Wall-clock UTC now. Only `domain.clock.SystemClock` should call this."""
    return datetime.now(UTC)
