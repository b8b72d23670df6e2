"""`tools.webhook_targets`: validated at load with file:line:key errors; secrets only by environment variable name."""

from __future__ import annotations

import pytest

from domain import ActionName, ActionOutcome, OutcomeStatus
from runtime.config import ConfigFileError, parse_config
from runtime.daemon import TargetRouter, build_remediation_target
from tools import ActionRequest, PermanentError, SimulatorHttpAdapter


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, "homeostat.yaml")
    return [str(e) for e in info.value.errors]


def _request(action: ActionName, target: str) -> ActionRequest:
    return ActionRequest(action=action, target=target, parameters={}, idempotency_key="key-00001", incident_id="inc-1")


def test_a_minimal_target_serves_every_remediation() -> None:
    """A target with just a URL serves every action but escalate, on the target its key names."""
    config = parse_config("tools:\n  webhook_targets:\n    chat: {url: 'https://ops.example/r'}\n", "homeostat.yaml")
    target = config.tools.webhook_targets["chat"].target("chat")
    assert ActionName.ESCALATE not in target.actions
    assert target.serves(_request(ActionName.ROLLBACK_MODEL_VERSION, "chat"))
    assert not target.serves(_request(ActionName.ROLLBACK_MODEL_VERSION, "search"))


def test_secret_header_and_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """headers_env and url_env become secret references to those variables, never literal values."""
    monkeypatch.setenv("OPS_TOKEN", "Bearer t0k")
    monkeypatch.setenv("OPS_URL", "https://ops.example/secret-path")
    config = parse_config(
        "tools:\n  webhook_targets:\n    'llm-*':\n      url_env: OPS_URL\n"
        "      headers_env: {Authorization: OPS_TOKEN}\n      actions: [failover_provider]\n",
        "homeostat.yaml",
    )
    target = config.tools.webhook_targets["llm-*"].target("llm-*")
    assert target.url is None and target.url_secret is not None and target.url_secret.env == "OPS_URL"
    assert target.secret_headers["Authorization"].env == "OPS_TOKEN"
    assert "t0k" not in target.model_dump_json()


def test_unset_secret_variables_are_named_with_their_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset header or URL variable fails at load, naming the variable, its key and line."""
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    monkeypatch.delenv("NO_SUCH_URL", raising=False)
    errors = errors_of(
        "tools:\n  webhook_targets:\n    chat:\n      url_env: NO_SUCH_URL\n"
        "      headers_env: {Authorization: NO_SUCH_TOKEN}\n"
    )
    assert any(e.startswith("homeostat.yaml:4: tools.webhook_targets.chat.url_env:") for e in errors), errors
    assert any("NO_SUCH_TOKEN is not set" in e for e in errors), errors


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("{}", "exactly one of 'url' or 'url_env'", id="no-url"),
        pytest.param("{url: 'https://a.example', url_env: X}", "exactly one of 'url' or 'url_env'", id="both-urls"),
        pytest.param("{url: 'https://a.example', body: {x: '{{nope}}'}}", "placeholder", id="bad-body-placeholder"),
        pytest.param("{url: 'https://a.example', headers_env: {H: 'sk-live-1'}}", "NAME of an environment", id="key"),
        pytest.param("{url: 'ftp://a.example'}", "http", id="not-http"),
    ],
)
def test_bad_targets_are_refused_on_their_line(body: str, expected: str) -> None:
    """Each mistake in a target is reported on the target's line with what is wrong."""
    errors = errors_of(f"api: {{port: 1}}\ntools:\n  webhook_targets:\n    chat: {body}\n")
    assert any(e.startswith("homeostat.yaml:4: tools.webhook_targets.chat") and expected in e for e in errors), errors
    assert all("sk-live-1" not in e for e in errors)


def test_unserved_actions_fall_through_to_the_simulator() -> None:
    """With both a webhook target and the simulator, only what the webhook serves goes to it."""
    config = parse_config(
        "tools:\n  simulator_url: http://127.0.0.1:9\n  webhook_targets:\n"
        "    'llm-*': {url: 'http://127.0.0.1:9/r', actions: [failover_provider]}\n",
        "homeostat.yaml",
    )
    router = build_remediation_target(config)
    assert isinstance(router, TargetRouter)
    assert router._serves(_request(ActionName.FAILOVER_PROVIDER, "llm-alpha"))
    assert not router._serves(_request(ActionName.THROTTLE, "llm-alpha"))
    assert isinstance(router._fallback, SimulatorHttpAdapter)
    assert isinstance(
        build_remediation_target(parse_config("tools: {simulator_url: 'http://h:1'}\n")), SimulatorHttpAdapter
    )
    assert build_remediation_target(parse_config("")) is None


class _Fake:
    """An adapter that records calls and answers lookups with `found` (or raises `error`)."""

    def __init__(self, found: ActionOutcome | None = None, error: Exception | None = None) -> None:
        self.called: list[str] = []
        self.found, self.error = found, error

    def call(self, request: ActionRequest) -> ActionOutcome:
        self.called.append(request.idempotency_key)
        return ActionOutcome(status=OutcomeStatus.SUCCEEDED, idempotency_key=request.idempotency_key)

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        if self.error is not None:
            raise self.error
        return self.found


def test_a_webhook_call_is_never_looked_up_at_the_simulator() -> None:
    """After a webhook call, "what did you do?" goes to the webhook (which cannot say), not the simulator's None."""
    webhooks, simulator = _Fake(error=PermanentError("no status_url")), _Fake()
    router = TargetRouter(webhooks, lambda r: r.action is ActionName.FAILOVER_PROVIDER, simulator)  # type: ignore[arg-type]
    router.call(_request(ActionName.FAILOVER_PROVIDER, "llm-alpha"))
    router.call(_request(ActionName.THROTTLE, "chat").model_copy(update={"idempotency_key": "key-00002"}))
    assert (webhooks.called, simulator.called) == (["key-00001"], ["key-00002"])
    with pytest.raises(PermanentError):
        router.lookup("key-00001")
    assert router.lookup("key-00002") is None


def test_serves_names_the_targets_when_the_key_is_a_label() -> None:
    """An entry keyed by a label serves the target glob in `serves`, not a target named like the label."""
    config = parse_config(
        "tools:\n  webhook_targets:\n    deployer: {url: 'https://d.example/h', serves: '*'}\n", "homeostat.yaml"
    )
    target = config.tools.webhook_targets["deployer"].target("deployer")
    assert target.serves(_request(ActionName.ROLLBACK_PROMPT_VERSION, "support-chat"))
