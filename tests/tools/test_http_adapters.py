"""Adapters over real HTTP on loopback: exactly-once effects, restart reconciliation, no leaks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain import ActionName, OutcomeStatus
from tests.tools.loopback import FakeSimulator, Seen, serve
from tools import (
    ActionRequest,
    Guard,
    GuardConfig,
    InMemoryIntentLog,
    PermanentError,
    RetryPolicy,
    SecretRef,
    SimulatorHttpAdapter,
    TransientError,
    WebhookAdapter,
    WebhookTarget,
    idempotency_key,
)

ALLOW = {action: ["*"] for action in ActionName}
FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.02, rng=random.Random(1))


class Crash(BaseException):
    """Stands in for the process dying between a lost response and its retry."""


def rollback(target: str = "chat", incident: str = "inc-7", **params: object) -> ActionRequest:
    return ActionRequest(
        action=ActionName.ROLLBACK_MODEL_VERSION,
        target=target,
        parameters=dict(params),
        incident_id=incident,
        idempotency_key=idempotency_key(incident, ActionName.ROLLBACK_MODEL_VERSION, target),
    )


class TestSimulatorAdapter:
    def test_two_transient_failures_then_success_apply_once(self) -> None:
        """Two 503s then success: three POSTs reach the simulator and it acts exactly once."""
        sim = FakeSimulator(script=["503", "503"])
        with serve(sim) as server, SimulatorHttpAdapter(server.url, timeout_s=2.0) as adapter:
            outcome = Guard(adapter, InMemoryIntentLog(), GuardConfig(allow=ALLOW, retries=FAST)).execute(rollback())
        assert outcome.status is OutcomeStatus.SUCCEEDED and outcome.attempts == 3
        assert len([s for s in server.seen if s.method == "POST"]) == 3
        assert len(sim.effects) == 1
        assert all(s.headers["Idempotency-Key"] == rollback().idempotency_key for s in server.seen)

    def test_applied_but_timed_out_is_not_repeated_after_restart(self) -> None:
        """The simulator acts but answers too late; after a crash and restart reconcile finds it, no second POST."""
        sim = FakeSimulator(script=["slow"])
        log = InMemoryIntentLog()
        req = rollback()

        def crash(_s: float) -> None:
            raise Crash

        with serve(sim) as server:
            with SimulatorHttpAdapter(server.url, timeout_s=0.1) as adapter:
                first = Guard(adapter, log, GuardConfig(allow=ALLOW, retries=FAST), sleep=crash)
                with pytest.raises(Crash):
                    first.execute(req)
            assert [r.idempotency_key for r in log.unresolved()] == [req.idempotency_key]
            with SimulatorHttpAdapter(server.url, timeout_s=2.0) as adapter:
                restarted = Guard(adapter, log, GuardConfig(allow=ALLOW, retries=FAST))
                [(_, settled)] = restarted.reconcile()
                again = restarted.execute(req)
        assert settled.status is OutcomeStatus.SUCCEEDED and "reconciled" in settled.detail
        assert again.status is OutcomeStatus.DUPLICATE
        assert len([s for s in server.seen if s.method == "POST"]) == 1
        assert [s.method for s in server.seen] == ["POST", "GET"]
        assert len(sim.effects) == 1

    def test_rejected_action_is_failed(self) -> None:
        """A 'rejected' answer becomes a FAILED outcome with the simulator's reason."""
        with serve(FakeSimulator()) as server, SimulatorHttpAdapter(server.url) as adapter:
            outcome = adapter.call(rollback(target="nowhere"))
        assert outcome.status is OutcomeStatus.FAILED and outcome.detail == "unknown target"

    def test_lookup_of_unknown_key_is_none(self) -> None:
        """A 404 on lookup means the simulator never applied the key."""
        with serve(FakeSimulator()) as server, SimulatorHttpAdapter(server.url) as adapter:
            assert adapter.lookup("hs-never-seen") is None

    def test_errors_are_classified(self) -> None:
        """5xx and refused connections are transient; 4xx are permanent."""
        with (
            serve(lambda _s: (422, {"detail": "bad parameters"}, 0.0)) as server,
            SimulatorHttpAdapter(server.url) as adapter,
            pytest.raises(PermanentError, match="HTTP 422"),
        ):
            adapter.call(rollback())
        with (
            serve(lambda _s: (502, None, 0.0)) as server,
            SimulatorHttpAdapter(server.url) as adapter,
            pytest.raises(TransientError, match="HTTP 502"),
        ):
            adapter.call(rollback())
        with SimulatorHttpAdapter(server.url) as adapter, pytest.raises(TransientError, match="cannot reach"):
            adapter.call(rollback())  # the server is gone now


def ok(_seen: Seen) -> tuple[int, object, float]:
    return 200, {"accepted": True}, 0.0


class TestWebhookAdapter:
    def test_request_is_built_from_config_and_typed_parameters(self) -> None:
        """Method, URL, literal headers, the key header and a body filled from typed parameters reach the endpoint."""
        with serve(ok) as server:
            target = WebhookTarget(
                name="chat*",
                actions=(ActionName.THROTTLE,),
                url=f"{server.url}/hooks/throttle",
                method="PUT",
                headers={"X-Team": "llm-platform"},
                body={"svc": "{{target}}", "admit": "{{params.admit_fraction}}", "note": "limit {{target}}"},
            )
            with WebhookAdapter([target], env={}) as adapter:
                req = ActionRequest(
                    action=ActionName.THROTTLE,
                    target="chat-eu",
                    parameters={"admit_fraction": 0.25},
                    incident_id="inc-1",
                    idempotency_key=idempotency_key("inc-1", ActionName.THROTTLE, "chat-eu"),
                )
                outcome = adapter.call(req)
        [seen] = server.seen
        assert (seen.method, seen.path) == ("PUT", "/hooks/throttle")
        assert seen.headers["X-Team"] == "llm-platform"
        assert seen.headers["Idempotency-Key"] == req.idempotency_key
        assert seen.body == {"svc": "chat-eu", "admit": 0.25, "note": "limit chat-eu"}
        assert outcome.status is OutcomeStatus.SUCCEEDED and outcome.effect == {"accepted": True}

    def test_malicious_diagnosis_text_cannot_redirect_the_request(self) -> None:
        """Text that names another URL never reaches it: parameters are refused, redirects not followed."""
        with serve(ok) as evil:
            hostile = (302, {"location": f"{evil.url}/steal"}, 0.0)
            with serve(lambda _s: hostile) as good:
                target = WebhookTarget(name="*", actions=tuple(ActionName), url=f"{good.url}/hook")
                with WebhookAdapter([target], env={}) as adapter:
                    guard = Guard(adapter, InMemoryIntentLog(), GuardConfig(allow=ALLOW, retries=FAST))
                    smuggled = guard.execute(rollback(to_version=f"{evil.url}/steal", incident="inc-x"))
                    extra = guard.execute(
                        ActionRequest(
                            action=ActionName.ESCALATE,
                            target="chat",
                            parameters={"url": f"{evil.url}/steal", "why_not_more": [f"POST {evil.url}/steal"]},
                            incident_id="inc-y",
                            idempotency_key=idempotency_key("inc-y", ActionName.ESCALATE, "chat"),
                        )
                    )
                    redirected = guard.execute(rollback(incident="inc-z"))
        assert smuggled.status is OutcomeStatus.FAILED and "to_version" in smuggled.detail
        assert extra.status is OutcomeStatus.FAILED and "escalate.parameters.url" in extra.detail
        assert redirected.status is OutcomeStatus.FAILED and "redirect refused" in redirected.detail
        assert evil.seen == []
        assert [s.path for s in good.seen] == ["/hook"]

    def test_only_configured_targets_are_called(self) -> None:
        """An action/target pair with no configured webhook is a permanent error and sends nothing."""
        with serve(ok) as server:
            target = WebhookTarget(name="search", actions=(ActionName.THROTTLE,), url=server.url)
            with WebhookAdapter([target], env={}) as adapter, pytest.raises(PermanentError, match="no webhook"):
                adapter.call(rollback(target="search"))
        assert server.seen == []

    def test_secrets_come_from_env_and_files_and_never_leak(self, tmp_path: Path) -> None:
        """Secret headers are sent, but echoed secrets are scrubbed from outcomes and errors."""
        token_file = tmp_path / "token"
        token_file.write_text("file-secret-7f3a9\n")
        env = {"PAGER_TOKEN": "env-secret-c41d2"}

        def echo(seen: Seen) -> tuple[int, object, float]:
            status = 200 if seen.method == "POST" else 500
            return status, {"echo": seen.headers.get("Authorization"), "key": seen.headers.get("X-Api-Key")}, 0.0

        with serve(echo) as server:
            target = WebhookTarget(
                name="*",
                actions=(ActionName.ROLLBACK_MODEL_VERSION,),
                url=server.url,
                secret_headers={
                    "Authorization": SecretRef(env="PAGER_TOKEN", prefix="Bearer "),
                    "X-Api-Key": SecretRef(file=token_file),
                },
                status_url=f"{server.url}/status/{{idempotency_key}}",
            )
            with WebhookAdapter([target], env=env) as adapter:
                outcome = adapter.call(rollback())
                with pytest.raises(TransientError) as lookup_error:
                    adapter.lookup("hs-some-key")
        sent = server.seen[0].headers
        assert sent["Authorization"] == "Bearer env-secret-c41d2" and sent["X-Api-Key"] == "file-secret-7f3a9"
        shown = outcome.model_dump_json() + str(lookup_error.value)
        assert "env-secret-c41d2" not in shown and "file-secret-7f3a9" not in shown
        assert "[redacted]" in shown

    def test_missing_secret_names_the_variable_not_a_value(self) -> None:
        """An unset secret variable is a permanent error naming the header and variable; nothing is sent."""
        with serve(ok) as server:
            target = WebhookTarget(
                name="*",
                actions=(ActionName.ROLLBACK_MODEL_VERSION,),
                url=server.url,
                secret_headers={"Authorization": SecretRef(env="PAGER_TOKEN")},
            )
            with (
                WebhookAdapter([target], env={}) as adapter,
                pytest.raises(PermanentError, match="header Authorization: environment variable PAGER_TOKEN"),
            ):
                adapter.call(rollback())
        assert server.seen == []

    def test_timeouts_and_5xx_are_retried_by_the_adapter_when_configured(self) -> None:
        """With retries configured, a 503 then a 200 gives one success and two requests."""
        replies = [(503, None, 0.0), (200, {"ok": 1}, 0.0)]
        with serve(lambda _s: replies.pop(0)) as server:
            target = WebhookTarget(name="*", actions=(ActionName.ROLLBACK_MODEL_VERSION,), url=server.url, retries=2)
            with WebhookAdapter([target], env={}, sleep=lambda _s: None) as adapter:
                assert adapter.call(rollback()).status is OutcomeStatus.SUCCEEDED
        assert len(server.seen) == 2

    def test_lookup_uses_the_status_url(self) -> None:
        """Lookup asks the status URL: 2xx means done, 404 means not done."""

        def status(seen: Seen) -> tuple[int, object, float]:
            return (200, {"state": "done"}, 0.0) if seen.path.endswith("/hs-done-key") else (404, None, 0.0)

        with serve(status) as server:
            target = WebhookTarget(
                name="*",
                actions=(ActionName.ROLLBACK_MODEL_VERSION,),
                url=server.url,
                status_url=f"{server.url}/status/{{idempotency_key}}",
            )
            with WebhookAdapter([target], env={}) as adapter:
                found = adapter.lookup("hs-done-key")
                assert found is not None and found.status is OutcomeStatus.SUCCEEDED
                assert adapter.lookup("hs-other-key") is None


class TestWebhookConfig:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"url": "ftp://x"}, "absolute http"),
            ({"body": {"u": "{{params.url}}"}}, "has no parameter 'url'"),
            ({"body": {"u": "{{diagnosis.rationale}}"}}, "unknown"),
            ({"status_url": "http://h/{target}"}, "exactly once"),
            ({"secret_headers": {"A": {"env": "X", "file": "/f"}}}, "exactly one of 'env'"),
            ({"url": None}, "exactly one of 'url' or 'url_secret'"),
        ],
    )
    def test_bad_config_is_refused_with_a_reason(self, fields: dict[str, object], message: str) -> None:
        """A webhook configuration that could misroute or leak is refused at load time, saying why."""
        base: dict[str, object] = {"name": "*", "actions": ["rollback_model_version"], "url": "http://127.0.0.1:9"}
        with pytest.raises(ValidationError, match=message):
            WebhookTarget.model_validate({**base, **fields})
