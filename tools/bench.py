"""Benchmark: the guard's own overhead per action (in-memory intent log, in-process target).

Run: `uv run python -m tools.bench [n]`. Figures go in docs/TOOLS.md, never in timed tests.
"""

from __future__ import annotations

import sys
import time

from domain import ActionName, ActionOutcome, OutcomeStatus
from tools._guard import ActionRequest, CallableAdapter, Guard, GuardConfig, InMemoryIntentLog, idempotency_key


def main(n: int = 20_000) -> None:
    def call(request: ActionRequest) -> ActionOutcome:
        return ActionOutcome(status=OutcomeStatus.SUCCEEDED, idempotency_key=request.idempotency_key)

    guard = Guard(
        CallableAdapter(call, lambda _key: None), InMemoryIntentLog(), GuardConfig(allow={ActionName.THROTTLE: ["*"]})
    )
    requests = [
        ActionRequest(
            action=ActionName.THROTTLE,
            target=f"svc-{i}",
            parameters={"admit_fraction": 0.5},
            incident_id="bench",
            idempotency_key=idempotency_key("bench", ActionName.THROTTLE, f"svc-{i}"),
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    for request in requests:
        guard.execute(request)
    fresh = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for request in requests:
        guard.execute(request)
    duplicate = (time.perf_counter() - started) / n
    print(f"actions: {n}")
    print(f"guard.execute, new key:       {fresh * 1e6:8.1f} us/action")
    print(f"guard.execute, duplicate key: {duplicate * 1e6:8.1f} us/action")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
