"""The remediation catalog: the only actions Homeostat can take, each with typed parameters,
blast radius, reversibility and inverse, preconditions and what recovery looks like.

Everything here is pure: specs read a `Topology` and never touch a target. The guard and the
adapters act; the incident graph reads these specs to build proposals and to plan undo.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain import ActionName, Direction, Signal, Topology
from tools._errors import ParameterError

#: Version, provider and routing names: plain identifiers. No '/', no spaces, no quotes, so a
#: parameter can never smuggle a URL, a path or a shell fragment to a target.
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")]


class ActionParams(BaseModel):
    """Base for every action's parameters: frozen, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RollbackModelVersionParams(ActionParams):
    to_version: Identifier | None = Field(
        default=None, description="version to return to; default: the service's previous model version"
    )


class RollbackPromptVersionParams(ActionParams):
    to_version: Identifier | None = Field(
        default=None, description="version to return to; default: the service's previous prompt version"
    )


class FailoverProviderParams(ActionParams):
    to_provider: Identifier | None = Field(
        default=None, description="provider to move to; default: each service's configured backup provider"
    )
    services: tuple[Identifier, ...] = Field(
        default=(), max_length=200, description="services to move; empty means every service on the target provider"
    )


class RevertRoutingParams(ActionParams):
    to_routing: Identifier | None = Field(
        default=None, description="routing to return to; default: the service's previous routing"
    )


class TriggerRetrainingParams(ActionParams):
    mode: Literal["reindex", "retrain"] = Field(
        default="reindex", description="re-index retrieval data (fast) or retrain the model (slow)"
    )


class ThrottleParams(ActionParams):
    admit_fraction: float | None = Field(
        default=None, gt=0.0, le=1.0, description="share of incoming requests to admit, (0, 1]; 1.0 lifts a throttle"
    )
    max_rps: float | None = Field(default=None, gt=0.0, le=1e7, description="absolute cap in requests per second")
    duration_s: float = Field(
        default=900.0, gt=0.0, le=86_400.0, description="seconds until the throttle lifts by itself"
    )

    @model_validator(mode="after")
    def _one_limit(self) -> ThrottleParams:
        if self.admit_fraction is not None and self.max_rps is not None:
            raise ValueError("give at most one of admit_fraction or max_rps (neither: the target's default cap)")
        return self


class PurgeContextCacheParams(ActionParams):
    scope: Literal["all", "sessions", "retrieval"] = "all"


class EscalateParams(ActionParams):
    urgency: Literal["page", "notify"] = Field(default="page", description="page on-call now, or notify the team")
    why_not_more: tuple[Annotated[str, Field(max_length=500)], ...] = Field(
        default=(), max_length=20, description="why nothing stronger was done (shown to the human, never executed)"
    )
    recommend: ActionName | None = Field(default=None, description="a catalog action the human may want to take")


@dataclass(frozen=True, slots=True)
class RecoverySpec:
    """What recovery looks like after an action: which signals must return to their pre-onset
    baseline, how long to wait before judging, and how far from baseline still counts."""

    signals: tuple[str, ...]
    wait_s: float
    """Seconds after the action before the signals are judged (the action needs time to bite)."""
    tolerance: float
    """Relative slack around the baseline: 0.2 means within 20% of the baseline level (on the bad side)."""

    def __post_init__(self) -> None:
        if self.wait_s < 0:
            raise ValueError(f"RecoverySpec.wait_s must be >= 0, got {self.wait_s}")
        if self.tolerance < 0:
            raise ValueError(f"RecoverySpec.tolerance must be >= 0, got {self.tolerance}")


@dataclass(frozen=True, slots=True)
class ExpectedCost:
    """A move an action is expected to cause on the services it changed, soon after it ran.

    The price of the remedy, not news: the supervisor records such an anomaly on the incident the
    action resolved instead of opening a new one. Anything an action does not declare here (an
    error surge after a failover, say) is treated as a fault in its own right.
    """

    signal: str
    """The signal that moves (a `domain.Signal` value, or any signal name a source reports)."""
    direction: Direction
    """Which way it moves: UP, DOWN, or BOTH for either way."""

    def covers(self, signal: str, direction: Direction) -> bool:
        """Whether an anomaly on `signal` moving `direction` is this expected move.

        An anomaly whose direction is BOTH (unknown) is covered only by a cost declared BOTH.
        """
        return signal == self.signal and (self.direction is Direction.BOTH or direction is self.direction)


def _costs(direction: Direction, *signals: Signal) -> tuple[ExpectedCost, ...]:
    return tuple(ExpectedCost(signal=s.value, direction=direction) for s in signals)


@dataclass(frozen=True, slots=True)
class InverseAction:
    """The action that undoes another one, ready to be proposed (the constitution still decides)."""

    action: ActionName
    target: str
    parameters: dict[str, Any]


PreconditionFn = Callable[[Topology, str, Any, Collection[str]], list[str]]
InverseFn = Callable[[Topology, str, Any], InverseAction | None]


@dataclass(frozen=True)
class ActionSpec:
    """One catalog entry. Read by the agent (to propose), the guard (to validate) and verify (to undo)."""

    name: ActionName
    description: str
    params_model: type[ActionParams]
    target_kind: Literal["service", "provider"]
    reversible: bool
    inverse: ActionName | None
    recovery: RecoverySpec
    changes_nothing: bool = False
    expected_costs: tuple[ExpectedCost, ...] = ()
    """Moves this action is expected to cause on the services it changed (see `ExpectedCost`);
    nothing for an action that changes nothing."""
    _check: PreconditionFn | None = field(default=None, repr=False)
    _undo: InverseFn | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.changes_nothing and self.expected_costs:
            raise ValueError(f"ActionSpec {self.name}: an action that changes nothing can have no expected_costs")

    def expects(self, signal: str, direction: Direction) -> bool:
        """Whether an anomaly on `signal` moving `direction` is one of this action's declared costs."""
        return any(cost.covers(signal, direction) for cost in self.expected_costs)

    def validate_params(self, raw: Mapping[str, Any] | None) -> Any:
        """Typed parameters from raw data; raises ParameterError naming each bad field."""
        if isinstance(raw, self.params_model):
            return raw
        if raw is not None and not isinstance(raw, Mapping):
            raise ParameterError(self.name, [f"parameters must be an object, got {type(raw).__name__}"])
        try:
            return self.params_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(parameters)"
                problems.append(f"{self.name}.parameters.{where}: {err['msg']} (got {_short(err.get('input'))})")
            raise ParameterError(self.name, problems) from None

    def blast_radius(self, topology: Topology, target: str, params: Any = None) -> float:
        """The share of fleet traffic the action touches, 0..1.

        A service action touches that service's share; a provider action the sum of the shares
        of the services it moves; escalate touches nothing. An unknown target counts as the whole
        fleet (1.0): a guess must never make an action look smaller than it is.
        """
        if self.changes_nothing:
            return 0.0
        if self.target_kind == "service":
            info = topology.services.get(target)
            return 1.0 if info is None else info.traffic_share
        services = list(getattr(params, "services", ()) or ()) if params is not None else []
        moved = services or topology.on_provider(target)
        if not moved:
            return 1.0
        shares = [topology.services[s].traffic_share if s in topology.services else 1.0 for s in moved]
        return min(1.0, sum(shares))

    def preconditions(
        self, topology: Topology, target: str, params: Any = None, *, unhealthy_providers: Collection[str] = ()
    ) -> list[str]:
        """What stops the action from making sense right now, in words; [] means it may run.

        `params` may be raw (a dict) or typed; `unhealthy_providers` names providers known to be
        degraded, so a failover never lands on one.
        """
        try:
            typed = self.validate_params(params)
        except ParameterError as exc:
            return list(exc.problems)
        problems: list[str] = []
        if self.changes_nothing:
            return []  # escalation is always possible, whatever the target names
        if self.target_kind == "service" and target not in topology.services:
            known = ", ".join(sorted(topology.services)) or "none"
            return [f"{self.name}: unknown service {target!r} (known: {known})"]
        if self._check is not None:
            problems.extend(self._check(topology, target, typed, unhealthy_providers))
        return problems

    def inverse_for(self, topology_before: Topology, target: str, params: Any = None) -> InverseAction | None:
        """The action that undoes this one, given the topology just before it ran; None if irreversible."""
        if not self.reversible or self._undo is None:
            return None
        return self._undo(topology_before, target, self.validate_params(params))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Preconditions and inverses, one pair per action
# --------------------------------------------------------------------------------------------


def _check_rollback(kind: Literal["model", "prompt"]) -> PreconditionFn:
    def check(topology: Topology, target: str, params: Any, _unhealthy: Collection[str]) -> list[str]:
        info = topology.services[target]
        current = info.model_version if kind == "model" else info.prompt_version
        previous = info.previous_model_version if kind == "model" else info.previous_prompt_version
        action = f"rollback_{kind}_version"
        if previous is None:
            return [f"{action}: service {target!r} has no previous {kind} version to return to"]
        if params.to_version is not None and params.to_version != previous:
            return [
                f"{action}: to_version {params.to_version!r} is not the previous {kind} version of "
                f"{target!r} ({previous!r})"
            ]
        if previous == current:
            return [f"{action}: service {target!r} already runs {kind} version {current!r}"]
        return []

    return check


def _undo_rollback(kind: Literal["model", "prompt"]) -> InverseFn:
    def undo(topology: Topology, target: str, _params: Any) -> InverseAction | None:
        info = topology.services.get(target)
        if info is None:
            return None
        current = info.model_version if kind == "model" else info.prompt_version
        action = ActionName.ROLLBACK_MODEL_VERSION if kind == "model" else ActionName.ROLLBACK_PROMPT_VERSION
        # After a rollback the version it left becomes "previous": rolling back again restores it.
        return InverseAction(action=action, target=target, parameters={"to_version": current})

    return undo


def _failover_moves(topology: Topology, target: str, params: FailoverProviderParams) -> list[str]:
    return list(params.services) or topology.on_provider(target)


def _check_failover(
    topology: Topology, target: str, params: FailoverProviderParams, unhealthy: Collection[str]
) -> list[str]:
    on_target = topology.on_provider(target)
    if not on_target:
        return [f"failover_provider: no service runs on provider {target!r}"]
    problems: list[str] = []
    for service in _failover_moves(topology, target, params):
        info = topology.services.get(service)
        if info is None:
            problems.append(f"failover_provider: unknown service {service!r}")
            continue
        if info.provider != target:
            problems.append(f"failover_provider: service {service!r} runs on {info.provider!r}, not {target!r}")
            continue
        destination = params.to_provider or info.backup_provider
        if destination is None:
            problems.append(f"failover_provider: service {service!r} has no backup provider")
        elif destination == target:
            problems.append(f"failover_provider: backup provider of {service!r} is {target!r} itself")
        elif params.to_provider is not None and info.backup_provider not in (None, params.to_provider):
            problems.append(
                f"failover_provider: to_provider {params.to_provider!r} is not the backup provider of "
                f"{service!r} ({info.backup_provider!r})"
            )
        elif destination in unhealthy:
            problems.append(f"failover_provider: backup provider {destination!r} of {service!r} is unhealthy")
    return problems


def _undo_failover(topology: Topology, target: str, params: FailoverProviderParams) -> InverseAction | None:
    moved = _failover_moves(topology, target, params)
    destinations = {params.to_provider or topology.services[s].backup_provider for s in moved if s in topology.services}
    if len(destinations) != 1 or None in destinations:
        return None  # services went to different backups: no single action undoes it
    (destination,) = destinations
    assert destination is not None
    return InverseAction(
        action=ActionName.FAILOVER_PROVIDER,
        target=destination,
        parameters={"to_provider": target, "services": sorted(moved)},
    )


def _check_routing(topology: Topology, target: str, params: RevertRoutingParams, _u: Collection[str]) -> list[str]:
    info = topology.services[target]
    if info.previous_routing is None:
        return [f"revert_routing: service {target!r} has no previous routing to return to"]
    if params.to_routing is not None and params.to_routing != info.previous_routing:
        return [
            f"revert_routing: to_routing {params.to_routing!r} is not the previous routing of "
            f"{target!r} ({info.previous_routing!r})"
        ]
    if info.previous_routing == info.routing:
        return [f"revert_routing: service {target!r} already uses routing {info.routing!r}"]
    return []


def _undo_routing(topology: Topology, target: str, _params: Any) -> InverseAction | None:
    info = topology.services.get(target)
    if info is None:
        return None
    return InverseAction(action=ActionName.REVERT_ROUTING, target=target, parameters={"to_routing": info.routing})


def _check_throttle(topology: Topology, target: str, params: ThrottleParams, _u: Collection[str]) -> list[str]:
    return []


def _undo_throttle(_topology: Topology, target: str, params: ThrottleParams) -> InverseAction | None:
    if params.admit_fraction is not None and params.admit_fraction >= 1.0:
        return None  # lifting a throttle: we do not know the earlier limit, so no inverse
    return InverseAction(action=ActionName.THROTTLE, target=target, parameters={"admit_fraction": 1.0})


_QUALITY = (Signal.QUALITY_SCORE.value, Signal.HALLUCINATION_RATE.value, Signal.ERROR_RATE.value)

# Expected costs (what an action's own effect looks like on the services it changed). A remedy that
# returns to an earlier, known-good state (a rollback, a routing revert) is expected to move what that
# state set back toward its old level: tokens and spend per request either way, quality up. Moving to
# somewhere new (a backup provider, a cold cache) costs latency and money. Errors never count: an
# error surge after any action contradicts the recovery and is a fault of its own.
_LATENCY = (Signal.LATENCY_P50_MS, Signal.LATENCY_P95_MS, Signal.LATENCY_P99_MS)
_SPEND_EITHER_WAY = _costs(Direction.BOTH, Signal.TOKENS_PER_REQUEST, Signal.COST_PER_1K_REQUESTS)

CATALOG: dict[ActionName, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            name=ActionName.ROLLBACK_MODEL_VERSION,
            description="Return a service to its previous model version.",
            params_model=RollbackModelVersionParams,
            target_kind="service",
            reversible=True,
            inverse=ActionName.ROLLBACK_MODEL_VERSION,
            recovery=RecoverySpec(signals=(*_QUALITY, Signal.LATENCY_P95_MS.value), wait_s=300.0, tolerance=0.2),
            _check=_check_rollback("model"),
            _undo=_undo_rollback("model"),
            expected_costs=(
                *_SPEND_EITHER_WAY,
                *_costs(Direction.UP, Signal.QUALITY_SCORE),
                *_costs(Direction.DOWN, Signal.HALLUCINATION_RATE),
            ),
        ),
        ActionSpec(
            name=ActionName.ROLLBACK_PROMPT_VERSION,
            description="Return a service to its previous prompt version.",
            params_model=RollbackPromptVersionParams,
            target_kind="service",
            reversible=True,
            inverse=ActionName.ROLLBACK_PROMPT_VERSION,
            recovery=RecoverySpec(
                signals=(
                    Signal.QUALITY_SCORE.value,
                    Signal.POLICY_VIOLATION_RATE.value,
                    Signal.TOKENS_PER_REQUEST.value,
                ),
                wait_s=300.0,
                tolerance=0.2,
            ),
            _check=_check_rollback("prompt"),
            _undo=_undo_rollback("prompt"),
            expected_costs=(
                *_SPEND_EITHER_WAY,
                *_costs(Direction.UP, Signal.QUALITY_SCORE),
                *_costs(Direction.DOWN, Signal.POLICY_VIOLATION_RATE),
            ),
        ),
        ActionSpec(
            name=ActionName.FAILOVER_PROVIDER,
            description="Move the services on a degraded provider to their (healthy) backup provider.",
            params_model=FailoverProviderParams,
            target_kind="provider",
            reversible=True,
            inverse=ActionName.FAILOVER_PROVIDER,
            recovery=RecoverySpec(
                signals=(Signal.ERROR_RATE.value, Signal.LATENCY_P95_MS.value), wait_s=120.0, tolerance=0.25
            ),
            _check=_check_failover,
            _undo=_undo_failover,
            expected_costs=_costs(Direction.UP, *_LATENCY, Signal.COST_PER_1K_REQUESTS),
        ),
        ActionSpec(
            name=ActionName.REVERT_ROUTING,
            description="Return a service to its previous routing (e.g. after a cost misrouting).",
            params_model=RevertRoutingParams,
            target_kind="service",
            reversible=True,
            inverse=ActionName.REVERT_ROUTING,
            recovery=RecoverySpec(
                signals=(Signal.COST_PER_1K_REQUESTS.value, Signal.QUALITY_SCORE.value), wait_s=300.0, tolerance=0.15
            ),
            _check=_check_routing,
            _undo=_undo_routing,
            expected_costs=(*_SPEND_EITHER_WAY, *_costs(Direction.UP, Signal.QUALITY_SCORE)),
        ),
        ActionSpec(
            name=ActionName.TRIGGER_RETRAINING,
            description="Start a re-index (or a retraining) for a service whose inputs drifted.",
            params_model=TriggerRetrainingParams,
            target_kind="service",
            reversible=False,
            inverse=None,
            recovery=RecoverySpec(signals=(Signal.QUALITY_SCORE.value,), wait_s=3600.0, tolerance=0.1),
            expected_costs=_costs(Direction.UP, Signal.QUALITY_SCORE),
        ),
        ActionSpec(
            name=ActionName.THROTTLE,
            description="Admit only a share of a service's requests for a while (shed load).",
            params_model=ThrottleParams,
            target_kind="service",
            reversible=True,
            inverse=ActionName.THROTTLE,
            recovery=RecoverySpec(
                signals=(Signal.LATENCY_P99_MS.value, Signal.QUEUE_DEPTH.value, Signal.ERROR_RATE.value),
                wait_s=120.0,
                tolerance=0.3,
            ),
            _check=_check_throttle,
            _undo=_undo_throttle,
            # Shedding load is the point: fewer requests served, a shorter queue. Requests turned
            # away have no signal of their own in the vocabulary; an error surge is not absorbed.
            expected_costs=_costs(Direction.DOWN, Signal.REQUEST_RATE, Signal.QUEUE_DEPTH),
        ),
        ActionSpec(
            name=ActionName.PURGE_CONTEXT_CACHE,
            description="Drop a service's cached context (sessions, retrieval) e.g. after a PII leak.",
            params_model=PurgeContextCacheParams,
            target_kind="service",
            reversible=False,
            inverse=None,
            recovery=RecoverySpec(signals=(Signal.PII_ALERTS.value,), wait_s=300.0, tolerance=0.0),
            # A purged cache refills over minutes: fewer hits, and each miss costs time and money.
            expected_costs=(
                *_costs(Direction.DOWN, Signal.CACHE_HIT_RATE),
                *_costs(Direction.UP, *_LATENCY, Signal.COST_PER_1K_REQUESTS),
            ),
        ),
        ActionSpec(
            name=ActionName.ESCALATE,
            description="Page (or notify) a human. Changes nothing on any service.",
            params_model=EscalateParams,
            target_kind="service",
            reversible=True,  # nothing to undo: it changes nothing
            inverse=None,
            recovery=RecoverySpec(signals=(), wait_s=0.0, tolerance=0.0),
            changes_nothing=True,
        ),
    )
}


def spec_for(action: str) -> ActionSpec:
    """The catalog entry for an action name; a clear KeyError for anything not in the catalog."""
    try:
        return CATALOG[ActionName(action)]
    except ValueError:
        known = ", ".join(a.value for a in ActionName)
        raise KeyError(f"{action!r} is not a catalog action (known: {known})") from None
