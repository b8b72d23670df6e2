"""Webhook notifications: one per incident state change, retried, never blocking."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runtime.metrics import Metrics
from runtime.notify import IncidentChange, Notifier, slack_message
from tests.runtime._loopback import serve


class Receiver:
    """A Slack-like webhook on loopback that can fail its first N calls."""

    def __init__(self, fail_first: int = 0, status: int = 500) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.calls = 0
        self.fail_first = fail_first
        self.status = status

    async def hook(self, request: Request) -> Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            return Response("nope", status_code=self.status)
        self.bodies.append(await request.json())
        return Response("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook/secret", self.hook, methods=["POST"])])


def change(state: str = "awaiting_approval", incident: str = "inc-1") -> IncidentChange:
    return IncidentChange(
        incident_id=incident,
        state=state,
        service="chat",
        summary="error rate 12% after model v2",
        facts={"Action": "rollback_model_version", "Rule": "rollbacks-need-approval"},
        url="http://127.0.0.1:8080/incidents/inc-1",
    )


class TestDedupe:
    async def test_one_message_per_incident_state(self) -> None:
        """Repeated notifications of the same state (one per poll) send one message; a new state sends another."""
        receiver = Receiver()
        with serve(receiver.app()) as url:
            notifier = Notifier([f"{url}/hook/secret"])
            notifier.start()
            results = [notifier.notify(change()) for _ in range(5)]
            notifier.notify(change("executing"))
            notifier.notify(change("diagnosing"))  # not a notified state
            notifier.notify(change(incident="inc-2"))
            await notifier.aclose()
        assert results == [True, False, False, False, False]
        assert [b["text"].split(":")[0] for b in receiver.bodies] == [
            "Approval needed",
            "Remediation running",
            "Approval needed",
        ]


class TestDelivery:
    async def test_failures_are_retried_with_backoff(self) -> None:
        """A webhook failing twice gets the message on the third try, after 1s then 2s backoff."""
        receiver = Receiver(fail_first=2)
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)

        metrics = Metrics()
        with serve(receiver.app()) as url:
            notifier = Notifier([f"{url}/hook/secret"], sleep=fake_sleep, metrics=metrics)
            notifier.start()
            notifier.notify(change())
            await notifier.aclose()
        assert slept == [1.0, 2.0]
        assert len(receiver.bodies) == 1
        assert metrics.registry.get_sample_value("homeostat_notifications_total", {"result": "sent"}) == 1.0

    async def test_dead_webhook_never_blocks_the_caller(self, caplog: pytest.LogCaptureFixture) -> None:
        """notify() returns at once even if the webhook is down; failure is logged without the secret path."""
        with serve(Starlette()) as url:
            dead = f"{url}/hook/secret"

        async def no_sleep(seconds: float) -> None:
            await asyncio.sleep(0)

        notifier = Notifier([dead], sleep=no_sleep, max_attempts=3)
        notifier.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(50):
            notifier.notify(change(incident=f"inc-{i}"))
        assert loop.time() - started < 0.5
        await notifier.aclose()
        assert "given up" in caplog.text
        assert "secret" not in caplog.text

    async def test_client_errors_are_not_retried(self) -> None:
        """A 400 from the webhook (bad payload) is not retried."""
        receiver = Receiver(fail_first=10, status=400)
        with serve(receiver.app()) as url:
            notifier = Notifier([f"{url}/hook/secret"], base_delay_s=0.001)
            notifier.start()
            notifier.notify(change())
            await notifier.aclose()
        assert receiver.calls == 1


async def test_from_config_links_to_the_console() -> None:
    """A notifier built from config links each message to the incident's console page."""
    from runtime.config import parse_config

    receiver = Receiver()
    with serve(receiver.app()) as url:
        config = parse_config(
            f"notifications:\n  webhooks: ['{url}/hook/secret']\n  console_url: http://homeostat.internal:8080/\n"
        )
        notifier = Notifier.from_config(config.notifications)
        notifier.start()
        notifier.notify(IncidentChange("inc 7", "escalated", "chat"))
        await notifier.aclose()
    context = receiver.bodies[0]["blocks"][-1]["elements"][0]["text"]
    assert "<http://homeostat.internal:8080/incidents/inc%207|open incident>" in context


def test_message_is_slack_compatible_and_escapes_untrusted_text() -> None:
    """The body has text and blocks, and telemetry text cannot inject links or mentions."""
    body = slack_message(
        IncidentChange("inc-9", "failed", "chat", summary="<!channel> see <http://evil|here>", facts={"Cause": "a&b"})
    )
    assert body["text"].startswith("Remediation failed verification: chat (incident inc-9)")
    assert body["blocks"][0]["type"] == "header"
    assert "&lt;!channel&gt;" in body["blocks"][1]["text"]["text"]
    assert body["blocks"][2]["fields"] == [{"type": "mrkdwn", "text": "*Cause*\na&amp;b"}]
