"""Webhook notifications (Slack-compatible JSON) when an incident needs or gets attention.

The loop calls `Notifier.notify(change)` on every incident state change; it returns at once.
One message is sent per (incident, state), never one per poll; each webhook has its own queue
and worker, failures are retried with capped exponential backoff and then logged and dropped:
a dead chat server never blocks the loop.

A webhook may also be signed: with a secret, every POST carries ``X-Homeostat-Timestamp`` (Unix
seconds) and ``X-Homeostat-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>." +
raw body`` under the secret, so a receiver can reject forged or replayed messages
(`verify_signature`). The secret itself is never sent or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import httpx

from domain import IncidentState
from runtime.config import NotificationsConfig, SignedWebhookConfig
from runtime.metrics import Metrics

log = logging.getLogger(__name__)

#: States that send a message by default: a person must act, something acted, or it went wrong.
DEFAULT_STATES: frozenset[str] = frozenset(
    {IncidentState.AWAITING_APPROVAL, IncidentState.EXECUTING, IncidentState.FAILED, IncidentState.ESCALATED}
)

_HEADLINES: dict[str, str] = {
    IncidentState.AWAITING_APPROVAL: "Approval needed",
    IncidentState.EXECUTING: "Remediation running",
    IncidentState.VERIFYING: "Verifying remediation",
    IncidentState.RESOLVED: "Resolved",
    IncidentState.FAILED: "Remediation failed verification",
    IncidentState.REJECTED: "Proposal rejected",
    IncidentState.EXPIRED: "Approval expired",
    IncidentState.ESCALATED: "Escalated to a human",
}


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """An incident entered `state`; `facts` are shown as labelled fields (cause, action, rule...)."""

    incident_id: str
    state: str
    service: str
    summary: str = ""
    facts: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None


def _escape(text: str, limit: int = 1500) -> str:
    """Slack mrkdwn escaping; incident text comes from telemetry and must not become markup or links."""
    text = text[:limit]
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(change: IncidentChange) -> dict[str, Any]:
    """The Slack-compatible body for one change: plain-text fallback plus Block Kit blocks."""
    headline = _HEADLINES.get(change.state, change.state.replace("_", " ").capitalize())
    title = f"{headline}: {change.service} (incident {change.incident_id})"
    fields = [{"type": "mrkdwn", "text": f"*{_escape(k)}*\n{_escape(v)}"} for k, v in list(change.facts.items())[:10]]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
    ]
    if change.summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(change.summary, 2900)}})
    if fields:
        blocks.append({"type": "section", "fields": fields})
    context = f"state `{change.state}`"
    if change.url:
        context += f" · <{change.url}|open incident>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    text = title + (f": {change.summary}" if change.summary else "")
    return {"text": _escape(text, 3000), "blocks": blocks}


Sleep = Callable[[float], Awaitable[None]]

SIGNATURE_HEADER = "X-Homeostat-Signature"
TIMESTAMP_HEADER = "X-Homeostat-Timestamp"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`: ``sha256=`` + hex HMAC of ``"<ts>." + body``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """For receivers: True if `signature` signs the raw `body` at `timestamp`, within `tolerance_s` of `now`.

    Compares in constant time; a missing, malformed or stale timestamp fails, which stops replays.
    """
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    ts = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class Notifier:
    """Posts one message per (incident, state) in `states` to every webhook, off the loop's path."""

    def __init__(
        self,
        webhooks: Iterable[str],
        *,
        states: Iterable[str] = DEFAULT_STATES,
        max_attempts: int = 5,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        timeout_s: float = 10.0,
        queue_size: int = 1000,
        remembered: int = 100_000,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        metrics: Metrics | None = None,
        console_url: str | None = None,
        secrets: Mapping[str, str | bytes] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`secrets` maps a webhook URL to its signing secret; those webhooks get signed POSTs."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (got {max_attempts})")
        self._webhooks = list(dict.fromkeys(webhooks))
        self._secrets = {
            url: secret.encode() if isinstance(secret, str) else bytes(secret)
            for url, secret in (secrets or {}).items()
        }
        unknown = [_redact(url) for url in self._secrets if url not in self._webhooks]
        if unknown:
            raise ValueError(f"signing secrets given for webhooks that are not configured: {', '.join(unknown)}")
        if any(not secret for secret in self._secrets.values()):
            raise ValueError("a webhook signing secret is empty")
        self._wall_clock = wall_clock
        self._states = {str(s) for s in states}
        self._max_attempts = max_attempts
        self._base = base_delay_s
        self._max = max_delay_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None
        self._sleep = sleep
        self._metrics = metrics
        self._remembered = remembered
        self._console_url = console_url.rstrip("/") if console_url else None
        self._sent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {
            url: asyncio.Queue(maxsize=queue_size) for url in self._webhooks
        }
        self._workers: list[asyncio.Task[None]] = []

    @classmethod
    def from_config(
        cls, config: NotificationsConfig, *, metrics: Metrics | None = None, environ: Mapping[str, str] | None = None
    ) -> Notifier:
        """A notifier for the `notifications` section of homeostat.yaml (secrets read from `environ`)."""
        env = os.environ if environ is None else environ
        urls: list[str] = []
        secrets: dict[str, str] = {}
        for i, hook in enumerate(config.webhooks):
            if isinstance(hook, SignedWebhookConfig):
                urls.append(hook.url)
                if hook.secret_env is not None:
                    secret = env.get(hook.secret_env)
                    if not secret:
                        raise ValueError(
                            f"notifications.webhooks[{i}].secret_env: environment variable {hook.secret_env} is not set"
                        )
                    secrets[hook.url] = secret
            else:
                urls.append(hook)
        return cls(
            urls,
            secrets=secrets,
            states=[s.value for s in config.states],
            max_attempts=config.max_attempts,
            console_url=config.console_url,
            metrics=metrics,
        )

    def notify(self, change: IncidentChange) -> bool:
        """Queue a message for `change` unless its state is not notified or was already sent.

        Returns True if a message was queued. Never blocks and never raises for delivery problems.
        """
        if change.state not in self._states or not self._webhooks:
            return False
        key = (change.incident_id, change.state)
        if key in self._sent:
            return False
        self._sent[key] = None
        while len(self._sent) > self._remembered:
            self._sent.popitem(last=False)
        if change.url is None and self._console_url:
            change = replace(change, url=f"{self._console_url}/incidents/{quote(change.incident_id, safe='')}")
        message = slack_message(change)
        for url, queue in self._queues.items():
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                log.error("notification queue for %s is full; message for %s dropped", _redact(url), key)
                self._count("dropped")
        return True

    def start(self) -> None:
        """Start one delivery worker per webhook on the running event loop."""
        if self._workers:
            raise RuntimeError("Notifier already started")
        self._workers = [
            asyncio.create_task(self._deliver(url, q), name=f"notify:{_redact(url)}") for url, q in self._queues.items()
        ]

    async def drain(self) -> None:
        """Wait until every queued message was delivered or given up on."""
        await asyncio.gather(*(q.join() for q in self._queues.values()))

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout_s`, then stop the workers. Safe to call twice."""
        if self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), timeout_s)
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
        if self._owns_client:
            await self._client.aclose()

    async def _deliver(self, url: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            message = await queue.get()
            try:
                await self._post_with_retries(url, message)
            except Exception:  # a worker must outlive any one message
                log.exception("notification worker for %s hit an unexpected error", _redact(url))
            finally:
                queue.task_done()

    async def _post_with_retries(self, url: str, message: dict[str, Any]) -> None:
        error = ""
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        secret = self._secrets.get(url)
        for attempt in range(1, self._max_attempts + 1):
            headers = {"Content-Type": "application/json"}
            if secret is not None:  # signed afresh per attempt: the timestamp says when this copy left
                timestamp = int(self._wall_clock())
                headers[TIMESTAMP_HEADER] = str(timestamp)
                headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
            try:
                response = await self._client.post(url, content=body, headers=headers)
                if response.status_code < 300:
                    self._count("sent")
                    return
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    break  # the webhook refuses this message; retrying will not help
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self._max_attempts:
                delay = min(self._max, self._base * 2.0 ** (attempt - 1))
                log.warning("notification to %s failed (%s); retry %d in %.1fs", _redact(url), error, attempt, delay)
                await self._sleep(delay)
        log.error("notification to %s given up after %s: %s", _redact(url), error, message.get("text", "")[:200])
        self._count("failed")

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.notifications.labels(result=result).inc()


def _redact(url: str) -> str:
    """Webhook URLs carry secrets in their path: log only scheme and host."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}/…"
