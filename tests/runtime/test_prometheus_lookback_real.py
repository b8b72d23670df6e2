"""Bounded range reads against a real Prometheus server (Debian's `prometheus`; required in CI)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import httpx

from runtime.sources import PrometheusSource, PromQuery
from tests.runtime.test_prometheus_server import prometheus  # noqa: F401  (the real-server fixture)

STEP_S = 0.001
LOOKBACK_S = 11.5  # 11,501 points per series at STEP_S: more than Prometheus answers in one query


async def test_a_read_longer_than_prometheus_allows_arrives_whole_in_chunks(prometheus: str) -> None:  # noqa: F811
    """A first read of 11,501 points, which real Prometheus refuses as one query, arrives gap-free through chunks."""
    await asyncio.sleep(1.0)  # the last chunk holds the latest 0.5 s: let the series predate it
    now = datetime.now(UTC)
    start = now - timedelta(seconds=LOOKBACK_S)
    whole = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": "llm_error_ratio", "start": start.timestamp(), "end": now.timestamp(), "step": STEP_S},
        timeout=10,
    )
    assert whole.status_code == 400 and "11,000 points" in whole.text, whole.text
    source = PrometheusSource(
        prometheus, [PromQuery("error_rate", "llm_error_ratio")], step_s=STEP_S, lookback_s=LOOKBACK_S, timeout_s=10
    )
    batch = await source.poll(now)
    await source.aclose()
    assert source.poll_warnings == []
    chat = sorted(s.ts for s in batch.samples if s.service == "chat")
    assert chat[0] < now - timedelta(seconds=0.5) and chat[-1] > now - timedelta(seconds=0.01)
    assert all(b - a == timedelta(milliseconds=1) for a, b in itertools.pairwise(chat))
    assert {s.value for s in batch.samples if s.service == "chat"} == {0.25}
