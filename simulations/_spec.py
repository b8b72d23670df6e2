"""The declarative shape of a scenario: fleet overrides, timed injections and ground truth.

Plain pydantic models validated from YAML; `_scenario.py` maps validation errors back to the
file and line they came from. Nothing here runs the fleet.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from domain import ActionName, Cause, ChangeKind

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number (seconds) or a string such as "90s", "40m", "1h30m", "2h"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '40m' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if not text:
            raise ValueError("empty duration; write e.g. '40m', '1h30m' or a number of seconds")
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
                pos = match.end()
            if pos != len(text) or pos == 0:
                raise ValueError(
                    f"cannot read duration {value!r}; write e.g. '90s', '40m', '1h30m', '2h' or seconds"
                ) from None
    else:
        raise ValueError(f"expected a duration like '40m' or a number of seconds, got {type(value).__name__}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Fleet
# --------------------------------------------------------------------------------------------


class ProviderSpec(_Spec):
    """An LLM or embedding provider: how fast, how reliable and how expensive it is."""

    latency_factor: float = Field(1.0, gt=0, description="multiplies every service's base latency")
    price_per_1k_tokens: float = Field(0.002, ge=0, description="USD per 1000 tokens")
    error_rate: float = Field(0.002, ge=0, le=1, description="baseline error rate of calls")
    quality_delta: float = Field(0.0, ge=-1, le=1, description="added to quality scores of its callers")


class ServiceSpec(_Spec):
    """One service of the fleet; unset fields keep the default fleet's value (or a generic one)."""

    kind: Literal["llm", "retrieval"] | None = None
    provider: str | None = None
    backup_provider: str | None = None
    model_version: str | None = None
    previous_model_version: str | None = None
    prompt_version: str | None = None
    previous_prompt_version: str | None = None
    routing: str | None = None
    previous_routing: str | None = None
    traffic_share: float | None = Field(None, ge=0, le=1)
    depends_on: tuple[str, ...] | None = None
    team: str | None = None
    latency_p50_ms: float | None = Field(None, gt=0, description="healthy median latency, ms")
    tokens_per_request: float | None = Field(None, gt=0)
    quality: float | None = Field(None, ge=0, le=1, description="healthy quality score")
    hallucination_rate: float | None = Field(None, ge=0, le=1)
    policy_violation_rate: float | None = Field(None, ge=0, le=1)
    pii_alerts_per_interval: float | None = Field(None, ge=0)
    cache_hit_rate: float | None = Field(None, ge=0, le=1)
    headroom: float | None = Field(None, gt=1, description="capacity as a multiple of peak demand")


class FleetSpec(_Spec):
    """Overrides of the default fleet. Services and providers merge by name with the defaults
    unless `replace_defaults` is true."""

    replace_defaults: bool = False
    requests_per_s: float | None = Field(None, gt=0, description="fleet-wide requests/s at the daily mean")
    daily_amplitude: float | None = Field(None, ge=0, lt=1, description="relative daily traffic swing")
    interval_s: float | None = Field(None, gt=0, le=3600)
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Injections
# --------------------------------------------------------------------------------------------

FaultKind = Literal[
    "bad_model_deploy",
    "bad_prompt_deploy",
    "provider_degradation",
    "provider_outage",
    "capacity",
    "cost_misrouting",
    "data_drift",
    "safety_regression",
    "pii_leak",
    "tokenizer_mismatch",
    "upstream_dependency",
]

Shape = Literal["sudden", "gradual", "intermittent"]


class FaultInjection(_Spec):
    """A cause of trouble starting at `at`. Deploy-borne faults come with their change event."""

    type: Literal["fault"]
    at: Duration
    fault: FaultKind
    service: str | None = Field(None, description="the service at fault (not for provider faults)")
    provider: str | None = Field(None, description="for provider_degradation / provider_outage")
    severity: float = Field(1.0, gt=0, le=2, description="1.0 is a clear, typical occurrence")
    shape: Shape = "sudden"
    ramp: Duration | None = Field(None, description="gradual: time to full strength")
    period: Duration | None = Field(None, description="intermittent: one on+off cycle")
    duty: float = Field(0.5, gt=0, le=1, description="intermittent: share of each period the fault is on")
    duration: Duration | None = Field(None, description="the fault ends by itself after this long")
    to: str | None = Field(None, description="the version/routing the fault's deploy moves to")
    via: str | None = Field(
        None,
        description="tokenizer/safety: the change that carries it ('model_version' or 'prompt_version'); "
        "upstream_dependency: the callee's own fault kind",
    )
    id: str | None = None

    @field_validator("period")
    @classmethod
    def _period_positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("period must be positive")
        return value


class DeployInjection(_Spec):
    """A benign change: a version, routing or config moves at `at` and nothing breaks."""

    type: Literal["deploy"]
    at: Duration
    service: str
    kind: ChangeKind = ChangeKind.MODEL_VERSION
    to: str | None = None
    actor: str = "deploy-pipeline"
    id: str | None = None


class LoadInjection(_Spec):
    """A traffic swing within capacity (a campaign, a batch job): a confounder, not a fault."""

    type: Literal["load"]
    at: Duration
    service: str | None = Field(None, description="one service, or the whole fleet when omitted")
    factor: float = Field(gt=0, le=5, description="multiplies demand")
    duration: Duration = Field(gt=0)
    ramp: Duration = 0.0


class NoiseInjection(_Spec):
    """A noisy period: wider jitter and more single-sample spikes, with nothing broken."""

    type: Literal["noise"]
    at: Duration
    service: str | None = Field(None, description="one service, or the whole fleet when omitted")
    scale: float = Field(2.0, ge=1, le=10, description="multiplies noise amplitude and spike odds")
    duration: Duration = Field(gt=0)


Injection = Annotated[FaultInjection | DeployInjection | LoadInjection | NoiseInjection, Field(discriminator="type")]


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


class FaultTruth(_Spec):
    """What is really wrong, and which remediation is right or harmful."""

    cause: Cause
    service: str
    provider: str | None = None
    target: str | None = Field(None, description="where the right action points; default service or provider")
    acceptable_actions: tuple[ActionName, ...] = ()
    harmful_actions: tuple[ActionName, ...] = ()

    @property
    def action_target(self) -> str:
        if self.target:
            return self.target
        if self.cause == Cause.PROVIDER_DEGRADATION and self.provider:
            return self.provider
        return self.service


class GroundTruth(_Spec):
    """The primary fault (absent for no-fault controls) and any further simultaneous faults."""

    cause: Cause | None = None
    service: str | None = None
    provider: str | None = None
    target: str | None = None
    acceptable_actions: tuple[ActionName, ...] = ()
    harmful_actions: tuple[ActionName, ...] = ()
    expect_incident: bool | None = None
    also: tuple[FaultTruth, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> GroundTruth:
        if self.cause is None:
            if self.expect_incident:
                raise ValueError("expect_incident is true but no cause is given (a control has cause: null)")
            if self.acceptable_actions:
                raise ValueError("a no-fault control (cause: null) cannot list acceptable_actions")
            if self.also:
                raise ValueError("a no-fault control (cause: null) cannot list further faults in 'also'")
        elif not self.service:
            raise ValueError("ground_truth.service is required when a cause is given")
        return self

    @property
    def incident_expected(self) -> bool:
        return self.expect_incident if self.expect_incident is not None else self.cause is not None

    @property
    def faults(self) -> tuple[FaultTruth, ...]:
        """Every fault of the scenario, primary first; empty for controls."""
        if self.cause is None or self.service is None:
            return ()
        primary = FaultTruth(
            cause=self.cause,
            service=self.service,
            provider=self.provider,
            target=self.target,
            acceptable_actions=self.acceptable_actions,
            harmful_actions=self.harmful_actions,
        )
        return (primary, *self.also)


class ScenarioSpec(_Spec):
    """A whole scenario file."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    seed: int = Field(ge=0)
    duration: Duration = Field(gt=0)
    start: datetime = Field(default_factory=lambda: datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    fleet: FleetSpec = Field(default_factory=FleetSpec)
    injections: tuple[Injection, ...] = ()
    ground_truth: GroundTruth = Field(default_factory=GroundTruth)

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start must carry a timezone, e.g. 2026-03-02T08:00:00Z")
        return value.astimezone(UTC)
