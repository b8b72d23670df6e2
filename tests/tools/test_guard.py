"""The guard runs an action at most once per key, only where allowed, and writes ahead."""

from __future__ import annotations

import random

import pytest

from domain import ActionName, ActionOutcome, OutcomeStatus
from tests.tools.conftest import FakeTarget
from tools import (
    ActionRequest,
    CallableAdapter,
    Guard,
    GuardConfig,
    InMemoryIntentLog,
    PermanentError,
    RetryPolicy,
    idempotency_key,
)

ALLOW = {ActionName.ROLLBACK_MODEL_VERSION: ["chat", "search-*"], ActionName.THROTTLE: ["*"]}


class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so nothing catches it."""


def request(
    action: ActionName = ActionName.ROLLBACK_MODEL_VERSION, target: str = "chat", **kw: object
) -> ActionRequest:
    fields: dict[str, object] = {
        "action": action,
        "target": target,
        "parameters": {},
        "incident_id": "inc-1",
        "idempotency_key": idempotency_key("inc-1", action, target),
    }
    fields.update(kw)
    return ActionRequest.model_validate(fields)


def make_guard(
    target: FakeTarget, log: InMemoryIntentLog | None = None, sleeps: list[float] | None = None, **config: object
) -> Guard:
    retries = config.pop("retries", RetryPolicy(max_attempts=4, backoff_base_s=1.0, rng=random.Random(7)))
    cfg = GuardConfig(allow=config.pop("allow", ALLOW), retries=retries, **config)  # type: ignore[arg-type]
    recorded = sleeps if sleeps is not None else []

    def sleep(seconds: float) -> None:  # virtual time: sleeping moves the guard's monotonic clock
        recorded.append(seconds)

    return Guard(
        CallableAdapter(target.call, target.lookup),
        log or InMemoryIntentLog(),
        cfg,
        sleep=sleep,
        monotonic=lambda: sum(recorded),
    )


class TestIdempotencyKey:
    def test_same_inputs_same_key(self) -> None:
        """The key depends only on incident, action, target and attempt."""
        assert idempotency_key("i", ActionName.THROTTLE, "chat") == idempotency_key("i", "throttle", "chat")
        assert idempotency_key("i", ActionName.THROTTLE, "chat") != idempotency_key("i", ActionName.THROTTLE, "chat", 1)
        assert idempotency_key("i", ActionName.THROTTLE, "chat") != idempotency_key("j", ActionName.THROTTLE, "chat")


class TestAllowList:
    def test_target_not_allowed_is_refused_without_a_call(self, target: FakeTarget) -> None:
        """An action on a target outside its allow-list fails and never reaches the target or the log."""
        log = InMemoryIntentLog()
        outcome = make_guard(target, log).execute(request(target="billing"))
        assert outcome.status is OutcomeStatus.FAILED
        assert "not allowed" in outcome.detail
        assert target.calls == [] and log.events == []

    def test_action_missing_from_allow_list_is_refused(self, target: FakeTarget) -> None:
        """An action with no allow-list entry is refused for every target."""
        outcome = make_guard(target).execute(request(ActionName.PURGE_CONTEXT_CACHE))
        assert outcome.status is OutcomeStatus.FAILED and target.calls == []

    def test_globs_match_targets(self, target: FakeTarget) -> None:
        """A glob entry allows the targets it matches."""
        outcome = make_guard(target).execute(request(target="search-eu"))
        assert outcome.status is OutcomeStatus.SUCCEEDED

    def test_invalid_parameters_are_refused_before_any_call(self, target: FakeTarget) -> None:
        """Parameters that fail the catalog's schema never reach the target; the field is named."""
        outcome = make_guard(target).execute(request(ActionName.THROTTLE, parameters={"admit_fraction": 7}))
        assert outcome.status is OutcomeStatus.FAILED
        assert "throttle.parameters.admit_fraction" in outcome.detail
        assert target.calls == []

    def test_config_rejects_unknown_actions(self) -> None:
        """An allow-list naming an action outside the catalog is a configuration error."""
        with pytest.raises(ValueError, match="'nuke' is not a catalog action"):
            GuardConfig(allow={"nuke": ["*"]})  # type: ignore[dict-item]


class TestWriteAheadAndIdempotency:
    def test_intent_is_written_before_the_call_and_result_after(self, target: FakeTarget) -> None:
        """The log holds the intent when the target is called, and the result afterwards."""
        log = InMemoryIntentLog()
        seen: list[list[tuple[str, str]]] = []

        def call(req: ActionRequest) -> ActionOutcome:
            seen.append(list(log.events))
            return target.call(req)

        guard = Guard(CallableAdapter(call, target.lookup), log, GuardConfig(allow=ALLOW))
        req = request()
        outcome = guard.execute(req)
        assert seen == [[("intent", req.idempotency_key)]]
        assert log.events == [("intent", req.idempotency_key), ("result", req.idempotency_key)]
        assert log.result_for(req.idempotency_key) == outcome

    def test_same_key_twice_runs_once(self, target: FakeTarget) -> None:
        """A second execute with a recorded key returns DUPLICATE without calling the target."""
        guard = make_guard(target)
        first = guard.execute(request())
        second = guard.execute(request())
        assert first.status is OutcomeStatus.SUCCEEDED
        assert second.status is OutcomeStatus.DUPLICATE
        assert "already done under this key: succeeded" in second.detail
        assert second.effect == first.effect
        assert len(target.calls) == 1

    def test_dry_run_makes_no_call(self, target: FakeTarget) -> None:
        """Dry-run (per request or per guard) checks and records but never calls the target."""
        log = InMemoryIntentLog()
        assert make_guard(target, log).execute(request(dry_run=True)).status is OutcomeStatus.DRY_RUN
        assert make_guard(target, log, dry_run=True).execute(request()).status is OutcomeStatus.DRY_RUN
        assert target.calls == []

    def test_dry_run_does_not_block_the_real_run(self, target: FakeTarget) -> None:
        """A dry run under a key does not make the later real run a duplicate."""
        log = InMemoryIntentLog()
        make_guard(target, log).execute(request(dry_run=True))
        assert make_guard(target, log).execute(request()).status is OutcomeStatus.SUCCEEDED
        assert len(target.effects) == 1

    def test_dry_run_is_still_refused_outside_the_allow_list(self, target: FakeTarget) -> None:
        """Dry-run does everything but the call, including the allow-list check."""
        assert make_guard(target, dry_run=True).execute(request(target="billing")).status is OutcomeStatus.FAILED


class TestRetries:
    def test_two_transient_failures_then_success_give_one_effect(self, target: FakeTarget) -> None:
        """A target failing transiently twice then working is called three times and acts once."""
        target.fail_transiently = 2
        sleeps: list[float] = []
        outcome = make_guard(target, sleeps=sleeps).execute(request())
        assert outcome.status is OutcomeStatus.SUCCEEDED
        assert outcome.attempts == 3
        assert len(target.calls) == 3 and len(target.effects) == 1
        assert len(sleeps) == 2 and 1.0 <= sleeps[0] <= 1.1 and 2.0 <= sleeps[1] <= 2.2

    def test_backoff_is_capped_and_jitter_is_reproducible(self) -> None:
        """Delays double up to the cap, and the same seed gives the same delays."""
        a = RetryPolicy(backoff_base_s=1, backoff_max_s=5, jitter=0.5, rng=random.Random(3))
        b = RetryPolicy(backoff_base_s=1, backoff_max_s=5, jitter=0.5, rng=random.Random(3))
        delays = [a.delay(n) for n in range(1, 6)]
        assert delays == [b.delay(n) for n in range(1, 6)]
        assert all(5 <= d <= 7.5 for d in delays[3:])

    def test_exhausted_retries_ask_the_target_before_failing(self, target: FakeTarget) -> None:
        """When every attempt failed transiently and the target confirms it never acted, the outcome is FAILED."""
        target.fail_transiently = 10
        outcome = make_guard(target).execute(request())
        assert outcome.status is OutcomeStatus.FAILED
        assert outcome.attempts == 4
        assert "confirms it did not act" in outcome.detail

    def test_lost_responses_are_resolved_by_lookup(self, target: FakeTarget) -> None:
        """If the target acted but every response was lost, lookup finds the effect: SUCCEEDED, one effect."""
        target.apply_then_fail = 10
        outcome = make_guard(target).execute(request())
        assert outcome.status is OutcomeStatus.SUCCEEDED
        assert "the target did act" in outcome.detail
        assert len(target.effects) == 1

    def test_time_budget_stops_retries(self, target: FakeTarget) -> None:
        """No retry starts once the guard's time budget would be exceeded."""
        target.fail_transiently = 10
        sleeps: list[float] = []
        guard = make_guard(target, sleeps=sleeps, timeout_s=2.5)
        outcome = guard.execute(request())
        assert outcome.attempts == 2 and sleeps and sum(sleeps) <= 2.5
        assert "time budget" in outcome.detail

    def test_permanent_error_fails_at_once(self) -> None:
        """A permanent error is not retried and becomes a FAILED outcome, not an exception."""
        calls: list[str] = []

        def refuse(req: ActionRequest) -> ActionOutcome:
            calls.append(req.idempotency_key)
            raise PermanentError("400: unknown service")

        guard = Guard(CallableAdapter(refuse, lambda _k: None), InMemoryIntentLog(), GuardConfig(allow=ALLOW))
        outcome = guard.execute(request())
        assert outcome.status is OutcomeStatus.FAILED and "400: unknown service" in outcome.detail
        assert len(calls) == 1

    def test_adapter_bug_is_an_outcome_not_an_exception(self) -> None:
        """An unexpected adapter exception becomes UNKNOWN when the target cannot be asked."""

        def broken(_req: ActionRequest) -> ActionOutcome:
            raise RuntimeError("boom")

        guard = Guard(CallableAdapter(broken), InMemoryIntentLog(), GuardConfig(allow=ALLOW))
        outcome = guard.execute(request())
        assert outcome.status is OutcomeStatus.UNKNOWN and "boom" in outcome.detail


class TestReconcileAfterRestart:
    def test_applied_but_lost_intent_is_looked_up_never_repeated(self, target: FakeTarget) -> None:
        """A target that acted while the guard crashed mid-retry is asked on restart and never called again."""
        target.apply_then_fail = 1
        log = InMemoryIntentLog()

        def crash(_s: float) -> None:
            raise Crash

        first = Guard(CallableAdapter(target.call, target.lookup), log, GuardConfig(allow=ALLOW), sleep=crash)
        req = request()
        with pytest.raises(Crash):
            first.execute(req)
        assert [r.idempotency_key for r in log.unresolved()] == [req.idempotency_key]
        calls_before = len(target.calls)

        restarted = make_guard(target, log)
        settled = restarted.reconcile()
        assert [(r.idempotency_key, o.status) for r, o in settled] == [(req.idempotency_key, OutcomeStatus.SUCCEEDED)]
        assert log.unresolved() == []
        assert restarted.execute(req).status is OutcomeStatus.DUPLICATE
        assert len(target.calls) == calls_before and len(target.effects) == 1

    def test_intent_the_target_never_saw_is_unknown_not_repeated(self, target: FakeTarget) -> None:
        """An unresolved intent the target has no record of is marked UNKNOWN for escalation, not re-run."""
        log = InMemoryIntentLog()
        req = request()
        log.record_intent(req)
        settled = make_guard(target, log).reconcile()
        assert settled[0][1].status is OutcomeStatus.UNKNOWN
        assert "escalate" in settled[0][1].detail
        assert target.calls == []

    def test_unreachable_target_during_reconcile_is_unknown(self) -> None:
        """When the target cannot answer the lookup, the intent is settled as UNKNOWN."""
        log = InMemoryIntentLog()
        log.record_intent(request())
        guard = Guard(CallableAdapter(lambda r: pytest.fail("must not call")), log, GuardConfig(allow=ALLOW))
        [(_, outcome)] = guard.reconcile()
        assert outcome.status is OutcomeStatus.UNKNOWN and "could not say" in outcome.detail

    def test_execute_on_a_pending_key_reconciles_instead_of_calling(self, target: FakeTarget) -> None:
        """Re-executing a key whose intent has no result asks the target rather than calling again."""
        log = InMemoryIntentLog()
        req = request()
        log.record_intent(req)
        outcome = make_guard(target, log).execute(req)
        assert outcome.status is OutcomeStatus.DUPLICATE and "unknown" in outcome.detail
        assert target.calls == []


class FailingLog(InMemoryIntentLog):
    def record_intent(self, request: ActionRequest) -> None:
        raise OSError("disk full")


def test_no_call_when_the_intent_cannot_be_written(target: FakeTarget) -> None:
    """If the write-ahead intent fails, the action is not run."""
    outcome = make_guard(target, FailingLog()).execute(request())
    assert outcome.status is OutcomeStatus.FAILED and "disk full" in outcome.detail
    assert target.calls == []


def test_real_run_after_a_dry_run_is_still_written_ahead(target: FakeTarget) -> None:
    """After a dry run under a key, the real run's intent is pending until its result lands."""
    log = InMemoryIntentLog()
    make_guard(target, log).execute(request(dry_run=True))
    seen: list[list[str]] = []

    def call(req: ActionRequest) -> ActionOutcome:
        seen.append([r.idempotency_key for r in log.unresolved()])
        return target.call(req)

    Guard(CallableAdapter(call, target.lookup), log, GuardConfig(allow=ALLOW)).execute(request())
    assert seen == [[request().idempotency_key]]
    assert log.unresolved() == []
