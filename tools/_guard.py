"""The containment guard: the one place where Homeostat acts on the world.

Every call goes through `Guard.execute`: allow-list, idempotency (a key runs at most once),
a write-ahead intent before the call and the result after it, dry-run, retries with backoff on
transient errors. After a restart `Guard.reconcile` settles intents that never got a result by
asking the target what it did — it never repeats a call blindly.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from domain import ActionName, ActionOutcome, OutcomeStatus, canonical_json, sha256_hex
from tools._catalog import CATALOG
from tools._errors import ParameterError, PermanentError, TransientError


class ActionRequest(BaseModel):
    """One action to run on one target, under one idempotency key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: ActionName
    target: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str = Field(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    incident_id: str = Field(min_length=1, max_length=200)
    dry_run: bool = False


def idempotency_key(incident_id: str, action: ActionName | str, target: str, attempt: int = 0) -> str:
    """The key for one action on one target within one incident: the same inputs give the same key.

    `attempt` distinguishes a deliberate second try (e.g. the undo of an undo) from a repeat.
    """
    if attempt < 0:
        raise ValueError(f"idempotency_key: attempt must be >= 0, got {attempt}")
    digest = sha256_hex(canonical_json([incident_id, str(action), target, attempt]))
    return f"hs-{digest[:40]}"


class Adapter(Protocol):
    """A way to reach a target. Must honour the idempotency key: the same key applies once."""

    def call(self, request: ActionRequest) -> ActionOutcome:
        """Run the action; may raise TransientError (retry is safe) or PermanentError."""
        ...

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        """Ask the target what it did for this key; None if it never applied it.

        May raise TransientError / PermanentError when the target cannot say.
        """
        ...


class IntentLog(Protocol):
    """Write-ahead record of actions; the runtime implements it over the audit log."""

    def record_intent(self, request: ActionRequest) -> None: ...

    def record_result(self, request: ActionRequest, outcome: ActionOutcome) -> None: ...

    def result_for(self, idempotency_key: str) -> ActionOutcome | None: ...

    def unresolved(self) -> list[ActionRequest]:
        """Intents without a result, oldest first."""
        ...


class InMemoryIntentLog:
    """An IntentLog in a dict: for tests, the in-process simulator and single-shot tools.

    It lives as long as the object does; a "restart" in tests is a new Guard over the same log.
    """

    def __init__(self) -> None:
        self._pending: dict[str, ActionRequest] = {}  # insertion order = oldest first
        self._results: dict[str, ActionOutcome] = {}
        self._lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        """("intent" | "result", key) in the order they were written."""

    def record_intent(self, request: ActionRequest) -> None:
        with self._lock:
            self._pending.setdefault(request.idempotency_key, request)
            self.events.append(("intent", request.idempotency_key))

    def record_result(self, request: ActionRequest, outcome: ActionOutcome) -> None:
        with self._lock:
            self._results[request.idempotency_key] = outcome
            self._pending.pop(request.idempotency_key, None)
            self.events.append(("result", request.idempotency_key))

    def result_for(self, idempotency_key: str) -> ActionOutcome | None:
        with self._lock:
            return self._results.get(idempotency_key)

    def unresolved(self) -> list[ActionRequest]:
        with self._lock:
            return list(self._pending.values())


class CallableAdapter:
    """Wraps an in-process target (e.g. the simulator) given as two plain functions."""

    def __init__(
        self,
        call_fn: Callable[[ActionRequest], ActionOutcome],
        lookup_fn: Callable[[str], ActionOutcome | None] | None = None,
    ) -> None:
        self._call = call_fn
        self._lookup = lookup_fn

    def call(self, request: ActionRequest) -> ActionOutcome:
        return self._call(request)

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        if self._lookup is None:
            raise PermanentError("this target cannot say what it did (no lookup function)")
        return self._lookup(idempotency_key)


@dataclass(frozen=True)
class RetryPolicy:
    """How the guard retries transient failures. Validated on construction."""

    max_attempts: int = 3
    """Calls in total, first one included. 1 means no retry."""
    backoff_base_s: float = 0.5
    """Delay before the second attempt, in seconds; doubles for each attempt after that."""
    backoff_max_s: float = 30.0
    """Cap on one delay, in seconds, so a long outage does not mean hour-long sleeps."""
    jitter: float = 0.1
    """Each delay is stretched by a random factor in [1, 1 + jitter] so replicas do not retry in lockstep."""
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    """Source of jitter; inject a seeded one so runs are reproducible."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("RetryPolicy backoff_base_s and backoff_max_s must be >= 0 seconds")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter}")

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after `failed_attempts` failures (>= 1)."""
        base: float = min(self.backoff_max_s, self.backoff_base_s * (2 ** (failed_attempts - 1)))
        return base * (1.0 + self.jitter * self.rng.random())


@dataclass(frozen=True)
class GuardConfig:
    """What the guard lets through and how hard it tries."""

    allow: Mapping[ActionName, list[str]] = field(default_factory=dict)
    """Target globs allowed per action (fnmatch, case-sensitive). An action not listed is refused."""
    dry_run: bool = False
    """Do everything but the call: check, record intent and a DRY_RUN result."""
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 60.0
    """Budget in seconds for all attempts of one action; no retry starts past it. Each adapter
    also has its own per-request timeout."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"GuardConfig.timeout_s must be > 0 seconds, got {self.timeout_s}")
        for action, globs in self.allow.items():
            try:
                ActionName(action)
            except ValueError:
                raise ValueError(f"GuardConfig.allow: {action!r} is not a catalog action") from None
            if isinstance(globs, str) or not all(isinstance(g, str) and g for g in globs):
                raise ValueError(f"GuardConfig.allow[{action}]: expected a list of non-empty target globs")

    def allows(self, action: ActionName, target: str) -> bool:
        return any(fnmatch.fnmatchcase(target, glob) for glob in self.allow.get(action, ()))


class Guard:
    """Runs catalog actions on targets within the limits of its config; never raises."""

    def __init__(
        self,
        adapter: Adapter,
        intents: IntentLog,
        config: GuardConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._adapter = adapter
        self._intents = intents
        self._config = config
        self._sleep = sleep
        self._monotonic = monotonic
        self._lock = threading.Lock()

    def execute(self, request: ActionRequest) -> ActionOutcome:
        key = request.idempotency_key
        if not self._config.allows(request.action, request.target):
            return _outcome(
                OutcomeStatus.FAILED,
                key,
                f"refused: {request.target!r} is not allowed for {request.action.value} by the guard's allow-list",
                attempts=0,
            )
        try:
            CATALOG[request.action].validate_params(request.parameters)
        except ParameterError as exc:
            return _outcome(OutcomeStatus.FAILED, key, f"refused: {exc}", attempts=0)

        with self._lock:  # check-then-write-intent must not interleave for one key
            try:
                previous = self._intents.result_for(key)
                if previous is not None and previous.status is not OutcomeStatus.DRY_RUN:
                    return _as_duplicate(previous)
                pending = next((r for r in self._intents.unresolved() if r.idempotency_key == key), None)
                if pending is not None:  # an earlier run crashed mid-call: ask, never repeat
                    outcome = self._settle(pending)
                    return _as_duplicate(outcome)
                self._intents.record_intent(request)
            except Exception as exc:
                return _outcome(OutcomeStatus.FAILED, key, f"not run: the intent log failed ({_describe(exc)})", 0)

        if request.dry_run or self._config.dry_run:
            outcome = _outcome(OutcomeStatus.DRY_RUN, key, "dry run: checks passed, target not called", 0)
        else:
            outcome = self._call_with_retries(request)
        return self._record(request, outcome)

    def reconcile(self) -> list[tuple[ActionRequest, ActionOutcome]]:
        """Settle every intent without a result by asking its target; UNKNOWN if it cannot say."""
        try:
            pending = self._intents.unresolved()
        except Exception:
            return []
        return [(request, self._settle(request)) for request in pending]

    # ------------------------------------------------------------------------------------------

    def _settle(self, request: ActionRequest) -> ActionOutcome:
        key = request.idempotency_key
        try:
            found = self._adapter.lookup(key)
        except Exception as exc:
            outcome = _outcome(
                OutcomeStatus.UNKNOWN, key, f"reconcile: the target could not say what it did ({_describe(exc)})", 0
            )
        else:
            if found is None:
                outcome = _outcome(
                    OutcomeStatus.UNKNOWN,
                    key,
                    "reconcile: the target has no record of this key; not repeated (escalate)",
                    0,
                )
            else:
                outcome = found.model_copy(update={"detail": f"reconciled after restart: {found.detail}".rstrip(": ")})
        return self._record(request, outcome)

    def _call_with_retries(self, request: ActionRequest) -> ActionOutcome:
        key = request.idempotency_key
        policy = self._config.retries
        started = self._monotonic()
        attempt = 0
        last_error = ""
        while True:
            attempt += 1
            try:
                outcome = self._adapter.call(request)
            except TransientError as exc:
                last_error = _describe(exc)
            except PermanentError as exc:
                return _outcome(OutcomeStatus.FAILED, key, f"permanent error: {_describe(exc)}", attempt)
            except Exception as exc:  # an adapter bug: we cannot tell whether it acted
                return self._after_uncertain(key, attempt, f"adapter error: {_describe(exc)}")
            else:
                return outcome.model_copy(update={"attempts": attempt, "idempotency_key": key})
            if attempt >= policy.max_attempts:
                break
            delay = policy.delay(attempt)
            if self._monotonic() - started + delay > self._config.timeout_s:
                last_error += f"; time budget of {self._config.timeout_s}s exhausted"
                break
            self._sleep(delay)
        return self._after_uncertain(
            key, attempt, f"transient errors, gave up after {attempt} attempt(s): {last_error}"
        )

    def _after_uncertain(self, key: str, attempts: int, detail: str) -> ActionOutcome:
        """The last call may or may not have acted: ask the target before calling it a failure."""
        try:
            found = self._adapter.lookup(key)
        except Exception as exc:
            return _outcome(OutcomeStatus.UNKNOWN, key, f"{detail}; lookup failed too ({_describe(exc)})", attempts)
        if found is None:
            return _outcome(OutcomeStatus.FAILED, key, f"{detail}; the target confirms it did not act", attempts)
        return found.model_copy(update={"attempts": attempts, "detail": f"{detail}; but the target did act"})

    def _record(self, request: ActionRequest, outcome: ActionOutcome) -> ActionOutcome:
        try:
            self._intents.record_result(request, outcome)
        except Exception as exc:
            note = f" [result not recorded: {_describe(exc)}; reconcile will ask the target]"
            return outcome.model_copy(update={"detail": outcome.detail + note})
        return outcome


def _outcome(status: OutcomeStatus, key: str, detail: str, attempts: int) -> ActionOutcome:
    return ActionOutcome(status=status, idempotency_key=key, detail=detail, attempts=attempts)


def _as_duplicate(previous: ActionOutcome) -> ActionOutcome:
    return ActionOutcome(
        status=OutcomeStatus.DUPLICATE,
        idempotency_key=previous.idempotency_key,
        detail=f"already done under this key: {previous.status.value}"
        + (f" ({previous.detail})" if previous.detail else ""),
        attempts=0,
        effect=dict(previous.effect),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."
