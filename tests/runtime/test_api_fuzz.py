"""Arbitrary JSON and bytes at every write endpoint: always a 2xx or a clear 4xx, never a 500."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime.conftest import LiveApi, bearer

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
SAMPLE_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "service": st.text(max_size=5) | SCALARS,
        "signal": st.sampled_from(["error_rate", ""]) | SCALARS,
        "ts": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "x"]) | SCALARS,
        "value": st.floats(allow_nan=True, allow_infinity=True) | SCALARS,
        "labels": JSON,
    },
)
PUSH_BODIES = JSON | st.fixed_dictionaries(
    {}, optional={"samples": st.lists(SAMPLE_LIKE, max_size=4) | JSON, "changes": st.lists(JSON, max_size=3) | JSON}
)
ALERT_BODIES = JSON | st.fixed_dictionaries(
    {"version": st.sampled_from(["4", "3", 4]), "status": st.sampled_from(["firing", "resolved", "x"])},
    optional={
        "alerts": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "status": st.sampled_from(["firing", "resolved"]),
                    "labels": JSON,
                    "startsAt": SCALARS,
                    "fingerprint": SCALARS,
                    "annotations": JSON,
                },
            ),
            max_size=3,
        )
        | JSON
    },
)

#: Examples per endpoint; raise it for a longer hunt (HOMEOSTAT_FUZZ_EXAMPLES=2000 uv run pytest ...).
EXAMPLES = int(os.environ.get("HOMEOSTAT_FUZZ_EXAMPLES", "60"))

ENDPOINTS: list[tuple[str, str, Any]] = [
    ("/v1/push", "otto", PUSH_BODIES),
    ("/v1/alertmanager", "otto", ALERT_BODIES),
    ("/v1/incidents/inc-1/approve", "alice", JSON),
    ("/v1/incidents/inc-1/reject", "alice", JSON),
]


def _fuzz(live_api: LiveApi, path: str, who: str, bodies: Any) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=bodies)
    def check(body: Any) -> None:
        live_api.service.incidents["inc-1"]["state"] = "awaiting_approval"
        content = json.dumps(body, allow_nan=True)
        r = live_api.client.post(path, content=content, headers={**bearer(who), "Content-Type": "application/json"})
        assert r.status_code < 500, (path, content, r.text)
        if r.status_code >= 400:
            assert r.json()["error"]
        asyncio.run(live_api.push.poll(live_api.clock.now()))  # keep the buffer from filling into 429s

    check()


@pytest.mark.parametrize(("path", "who", "bodies"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_write_endpoints_never_answer_500(live_api: LiveApi, path: str, who: str, bodies: Any) -> None:
    """Hypothesis-generated JSON bodies (NaN included) get a 2xx or a 4xx with an error message, never a 5xx."""
    _fuzz(live_api, path, who, bodies)


def test_raw_bytes_never_answer_500(live_api: LiveApi) -> None:
    """Bytes that are not JSON at push and approve get a 4xx, never a 500."""

    @settings(
        max_examples=max(1, EXAMPLES // 2), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(raw=st.binary(max_size=200))
    def check(raw: bytes) -> None:
        for path, who in (("/v1/push", "otto"), ("/v1/incidents/inc-1/approve", "alice")):
            r = live_api.client.post(path, content=raw, headers={**bearer(who), "Content-Type": "application/json"})
            assert r.status_code < 500, (path, raw, r.text)

    check()
