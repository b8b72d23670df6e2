"""PrometheusSource against a real Prometheus server scraping a loopback exporter.

Needs Debian's `prometheus` binary; skipped without it, except in CI (CI=true) where its
absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from runtime.sources import PrometheusSource, PromQuery
from tests.runtime._loopback import serve

PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(
        "# TYPE llm_error_ratio gauge\n"
        'llm_error_ratio{service="chat",region="eu"} 0.25\n'
        'llm_error_ratio{service="search",region="eu"} 0.5\n'
    )


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    if PROMETHEUS is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (Debian package 'prometheus')")
        pytest.skip("prometheus binary not installed")
    with serve(Starlette(routes=[Route("/metrics", _metrics)])) as exporter:
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: llm\n    static_configs:\n"
            f"      - targets: ['{exporter.removeprefix('http://')}']\n"
        )
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    body = httpx.get(f"{url}/api/v1/query", params={"query": "llm_error_ratio"}, timeout=2).json()
                    if len(body["data"]["result"]) == 2:
                        break
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("Prometheus did not scrape the exporter within 30s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def test_reads_scraped_series_from_real_prometheus(prometheus: str) -> None:
    """Range and instant queries against a real Prometheus yield one series per service label."""
    now = datetime.now(UTC)
    ranged = PrometheusSource(prometheus, [PromQuery("error_rate", "llm_error_ratio")], step_s=1, lookback_s=30)
    batch = await ranged.poll(now)
    await ranged.aclose()
    by_service = {s.service: s for s in batch.samples}
    assert set(by_service) == {"chat", "search"}
    assert {s.value for s in batch.samples if s.service == "chat"} == {0.25}
    assert by_service["search"].labels == {
        "region": "eu",
        "instance": by_service["search"].labels["instance"],
        "job": "llm",
    }
    instant = PrometheusSource(prometheus, [PromQuery("error_rate", "llm_error_ratio")], mode="instant")
    batch = await instant.poll(now)
    await instant.aclose()
    assert sorted((s.service, s.value) for s in batch.samples) == [("chat", 0.25), ("search", 0.5)]
