"""Signed notification webhooks: a loopback receiver verifies HMAC and timestamp; the secret is never shown."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runtime.config import ConfigFileError, SignedWebhookConfig, parse_config
from runtime.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, IncidentChange, Notifier, sign, verify_signature
from tests.runtime._loopback import serve

SECRET = "whsec-test-6b5a4f3e2d1c0b9a8f7e"
NOW = 1_780_000_000.0


class VerifyingReceiver:
    """A webhook that accepts only messages signed with its secret (as a receiver would), recording what it saw."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret.encode()
        self.fail_first = fail_first
        self.calls = 0
        self.verdicts: list[bool] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []

    async def hook(self, request: Request) -> Response:
        self.calls += 1
        body = await request.body()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        ok = verify_signature(
            self.secret, body, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), now=NOW
        )
        self.verdicts.append(ok)
        if not ok:
            return Response("bad signature", status_code=401)
        if self.calls <= self.fail_first:
            return Response("busy", status_code=503)
        return Response("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


def _change(state: str = "awaiting_approval") -> IncidentChange:
    return IncidentChange(incident_id="inc-7", state=state, service="chat", summary="errors up after model v2")


async def _no_sleep(_s: float) -> None:
    return None


class TestSigning:
    async def test_receiver_verifies_signed_messages(self, caplog: pytest.LogCaptureFixture) -> None:
        """Every message (retries too) carries a timestamp and an HMAC of the raw body that the receiver verifies."""
        caplog.set_level(logging.DEBUG)
        receiver = VerifyingReceiver(SECRET, fail_first=1)
        with serve(receiver.app()) as url:
            hook = f"{url}/hook"
            notifier = Notifier([hook], secrets={hook: SECRET}, wall_clock=lambda: NOW, sleep=_no_sleep)
            notifier.start()
            notifier.notify(_change())
            notifier.notify(_change("executing"))
            await notifier.aclose()
        assert receiver.verdicts == [True, True, True]  # the retried copy is signed too
        assert json.loads(receiver.bodies[-1])["text"].startswith("Remediation running")
        assert all(h[TIMESTAMP_HEADER.lower()] == str(int(NOW)) for h in receiver.headers)
        assert all(h[SIGNATURE_HEADER.lower()].startswith("sha256=") for h in receiver.headers)
        seen = json.dumps(receiver.headers) + b"".join(receiver.bodies).decode() + caplog.text
        assert SECRET not in seen

    async def test_wrong_secret_is_refused_by_the_receiver(self) -> None:
        """A notifier signing with another secret is rejected: the signature really depends on the secret."""
        receiver = VerifyingReceiver(SECRET)
        with serve(receiver.app()) as url:
            hook = f"{url}/hook"
            notifier = Notifier([hook], secrets={hook: "not-the-secret"}, wall_clock=lambda: NOW, max_attempts=1)
            notifier.start()
            notifier.notify(_change())
            await notifier.aclose()
        assert receiver.verdicts == [False]

    async def test_unsigned_webhooks_send_no_signature(self) -> None:
        """A webhook without a secret is posted as before, with no signature headers."""
        receiver = VerifyingReceiver(SECRET)
        with serve(receiver.app()) as url:
            notifier = Notifier([f"{url}/hook"], max_attempts=1)
            notifier.start()
            notifier.notify(_change())
            await notifier.aclose()
        assert receiver.verdicts == [False]
        assert SIGNATURE_HEADER.lower() not in receiver.headers[0]


class TestVerification:
    def _signed(self, body: bytes = b'{"text":"hi"}', ts: int = int(NOW)) -> tuple[bytes, str, str]:
        return body, str(ts), sign(SECRET.encode(), ts, body)

    def test_tampered_body_fails(self) -> None:
        """Changing one byte of the body breaks the signature."""
        body, ts, sig = self._signed()
        assert verify_signature(SECRET.encode(), body, ts, sig, now=NOW)
        assert not verify_signature(SECRET.encode(), body.replace(b"hi", b"ho"), ts, sig, now=NOW)

    def test_replayed_old_message_fails(self) -> None:
        """A correctly signed message older than the tolerance is refused (replay protection)."""
        body, ts, sig = self._signed(ts=int(NOW) - 301)
        assert not verify_signature(SECRET.encode(), body, ts, sig, now=NOW)
        assert verify_signature(SECRET.encode(), body, ts, sig, now=NOW, tolerance_s=600)

    def test_missing_or_malformed_headers_fail(self) -> None:
        """No timestamp, a non-numeric timestamp or no signature is a failed verification, not an error."""
        body, ts, sig = self._signed()
        assert not verify_signature(SECRET.encode(), body, None, sig, now=NOW)
        assert not verify_signature(SECRET.encode(), body, "soon", sig, now=NOW)
        assert not verify_signature(SECRET.encode(), body, ts, None, now=NOW)


class TestConfig:
    def test_signed_and_plain_webhooks_mix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`webhooks` takes plain URLs and {url, secret_env}; the notifier signs only the latter, with the env value."""
        monkeypatch.setenv("HOOK_SECRET", SECRET)
        config = parse_config(
            "notifications:\n  webhooks:\n    - https://plain.example/T1\n"
            "    - {url: 'https://signed.example/T2', secret_env: HOOK_SECRET}\n",
            "homeostat.yaml",
        )
        plain, signed = config.notifications.webhooks
        assert plain == "https://plain.example/T1"
        assert isinstance(signed, SignedWebhookConfig) and signed.secret_env == "HOOK_SECRET"
        notifier = Notifier.from_config(config.notifications)
        assert notifier._secrets == {"https://signed.example/T2": SECRET.encode()}

    def test_unset_secret_variable_names_file_line_and_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A secret_env naming an unset variable fails at load with file:line:key and the variable's name."""
        monkeypatch.delenv("ABSENT_HOOK_SECRET", raising=False)
        with pytest.raises(ConfigFileError) as info:
            parse_config(
                "notifications:\n  webhooks:\n    - url: https://signed.example/T2\n"
                "      secret_env: ABSENT_HOOK_SECRET\n",
                "homeostat.yaml",
            )
        (error,) = [str(e) for e in info.value.errors]
        assert error.startswith("homeostat.yaml:4: notifications.webhooks[0].secret_env:")
        assert "ABSENT_HOOK_SECRET is not set" in error

    def test_a_literal_secret_in_secret_env_is_refused_unechoed(self) -> None:
        """Writing the secret itself where its variable's name belongs is refused without repeating it."""
        with pytest.raises(ConfigFileError) as info:
            parse_config(
                f"notifications:\n  webhooks:\n    - {{url: 'https://s.example/T', secret_env: '{SECRET}'}}\n",
                "homeostat.yaml",
            )
        text = "\n".join(str(e) for e in info.value.errors)
        assert "secret_env" in text and "NAME of an environment variable" in text
        assert SECRET not in text
