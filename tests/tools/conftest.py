"""Shared fixtures for the tools tests: a small fleet topology and an in-process target."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from domain import ActionOutcome, OutcomeStatus, ServiceInfo, Topology
from tools import ActionRequest, TransientError


@pytest.fixture
def topology() -> Topology:
    """Three services: two on provider 'openai' (one with a backup), one on 'anthropic'."""
    return Topology(
        services={
            "chat": ServiceInfo(
                name="chat",
                provider="openai",
                backup_provider="anthropic",
                model_version="m2",
                previous_model_version="m1",
                prompt_version="p5",
                previous_prompt_version="p4",
                routing="cheap",
                previous_routing="default",
                traffic_share=0.5,
            ),
            "search": ServiceInfo(
                name="search",
                provider="openai",
                backup_provider="anthropic",
                model_version="s1",
                prompt_version="q1",
                traffic_share=0.3,
            ),
            "summarise": ServiceInfo(
                name="summarise", provider="anthropic", model_version="c1", prompt_version="r1", traffic_share=0.2
            ),
        }
    )


@dataclass
class FakeTarget:
    """An in-process target that honours idempotency keys and can be scripted to misbehave."""

    fail_transiently: int = 0
    """How many calls fail with a transient error before the target works."""
    apply_then_fail: int = 0
    """How many calls apply the action and then fail transiently (a lost response)."""
    calls: list[str] = field(default_factory=list)
    effects: dict[str, ActionRequest] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, request: ActionRequest) -> ActionOutcome:
        with self.lock:
            self.calls.append(request.idempotency_key)
            if self.fail_transiently > 0:
                self.fail_transiently -= 1
                raise TransientError("503 from target")
            duplicate = request.idempotency_key in self.effects
            self.effects.setdefault(request.idempotency_key, request)
            if self.apply_then_fail > 0:
                self.apply_then_fail -= 1
                raise TransientError("timed out waiting for the response")
        return ActionOutcome(
            status=OutcomeStatus.SUCCEEDED,
            idempotency_key=request.idempotency_key,
            detail="duplicate" if duplicate else "applied",
            effect={"action": request.action.value, "target": request.target},
        )

    def lookup(self, key: str) -> ActionOutcome | None:
        with self.lock:
            request = self.effects.get(key)
        if request is None:
            return None
        return ActionOutcome(
            status=OutcomeStatus.SUCCEEDED,
            idempotency_key=key,
            detail="applied",
            effect={"action": request.action.value, "target": request.target},
        )


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()
