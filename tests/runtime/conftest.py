"""Shared fixtures: a live API on loopback over a fake incident service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from domain import VirtualClock
from runtime.api import DaemonStatus, create_app
from runtime.auth import TokenAuthority
from runtime.metrics import Metrics
from runtime.sources import AlertmanagerSource, GuardedSource, PushSource
from tests.runtime._loopback import serve
from tests.runtime.fakes import FakeIncidentService

TOKENS = {
    "vera": ("tok-viewer", ["viewer"]),
    "alice": ("tok-approver", ["approver", "viewer"]),
    "otto": ("tok-operator", ["operator"]),
    "aude": ("tok-auditor", ["auditor"]),
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


@dataclass
class LiveApi:
    url: str
    client: httpx.Client
    service: FakeIncidentService
    push: PushSource
    alertmanager: AlertmanagerSource
    status: DaemonStatus
    metrics: Metrics
    clock: VirtualClock
    guarded: list[GuardedSource]


class _Switch:
    """An ASGI app that forwards to whichever app the current test installed."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def _loopback_switch() -> Iterator[tuple[_Switch, str]]:
    """One real loopback server for the session; each test installs its own fresh app behind it."""
    switch = _Switch()
    with serve(switch) as url:
        yield switch, url


@pytest.fixture
def live_api(_loopback_switch: tuple[_Switch, str]) -> Iterator[LiveApi]:
    service = FakeIncidentService()
    service.add("inc-1")
    service.add("inc-2", state="resolved")
    clock = VirtualClock()
    push = PushSource(max_buffered=5, retry_after_s=2)
    alertmanager = AlertmanagerSource()
    guarded = [GuardedSource(push), GuardedSource(alertmanager)]
    status = DaemonStatus(clock, guarded, db_check=lambda: None)
    metrics = Metrics()
    app = create_app(
        service,
        auth=TokenAuthority.from_tokens(TOKENS),
        push=push,
        alertmanager=alertmanager,
        status=status,
        metrics=metrics,
        max_body_bytes=64_000,
    )
    switch, url = _loopback_switch
    switch.app = app
    with httpx.Client(base_url=url, timeout=10) as client:
        yield LiveApi(url, client, service, push, alertmanager, status, metrics, clock, guarded)
    switch.app = None
