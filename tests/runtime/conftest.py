"""Shared fixtures: a live API on loopback over a fake incident service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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


@pytest.fixture
def live_api() -> Iterator[LiveApi]:
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
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield LiveApi(url, client, service, push, alertmanager, status, metrics, clock, guarded)
