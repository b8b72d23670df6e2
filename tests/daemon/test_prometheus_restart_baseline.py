"""A daemon restarted while an incident is open reads that incident's pre-onset baseline back from Prometheus."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.graph import BASELINE_WINDOW
from domain import ActionName, IncidentState, VirtualClock
from runtime.config import load_config
from runtime.daemon import Daemon
from runtime.store import IncidentRow
from tests._daemon_harness import REPO
from tests.runtime._loopback import serve
from tools import CATALOG
from tools.verification import evaluate_recovery

STEP_S = 15
NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


class Story:
    """An incident on chat opened 20 minutes before the restart at `now`; its remedy ran 6 minutes before."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.onset = now - timedelta(minutes=20)
        self.acted = now - timedelta(minutes=6)

    def error_rate(self, t: float) -> float:
        """About 0.01 before the onset, 0.30 from the onset until the remedy, 0.012 after it."""
        if self.onset.timestamp() <= t < self.acted.timestamp():
            return 0.30
        return 0.012 if t >= self.acted.timestamp() else 0.01 + 0.001 * (int(t // STEP_S) % 3)


STORY = Story(NOW)


async def query_range(request: Request) -> Response:
    start, end, step = (float(request.query_params[k]) for k in ("start", "end", "step"))
    assert (end - start) / step + 1 <= 11_000, "more points than Prometheus answers"
    n = int((end - start) / step) + 1
    values = [[start + i * step, str(STORY.error_rate(start + i * step))] for i in range(n)]
    result = [{"metric": {"__name__": "llm_error_ratio", "service": "chat"}, "values": values}]
    return JSONResponse({"status": "success", "data": {"resultType": "matrix", "result": result}})


def _config(tmp_path: Path, prometheus: str) -> Path:
    path = tmp_path / "homeostat.yaml"
    path.write_text(
        f"""database_url: sqlite:///{tmp_path / "h.db"}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: prometheus
    url: {prometheus}
    step_s: {STEP_S}
    lookback_s: 300
    queries:
      - signal: error_rate
        promql: llm_error_ratio
"""
    )
    return path


def _first_life(config: Path, state: IncidentState, story: Story = STORY) -> None:
    """The daemon that went down left one incident on chat in `state`, opened at the story's onset."""
    daemon = Daemon(load_config(config), clock=VirtualClock(story.onset))
    try:
        stamp = story.onset.isoformat()
        daemon.loop.store.add(
            IncidentRow(
                id="inc-chat",
                state=state.value,
                services_json='["chat"]',
                onset=stamp,
                opened_at=stamp,
                updated_at=story.acted.isoformat(),
                settle_until=stamp,
                action=ActionName.ROLLBACK_PROMPT_VERSION.value,
                target="chat",
            )
        )
    finally:
        daemon.loop.close()


def _restart_and_judge(config: Path, story: Story = STORY) -> tuple[list[float], str, bool]:
    """Restart at the story's `now`, poll Prometheus once, and judge recovery the way the verify step does."""
    onset, acted, now = story.onset, story.acted, story.now
    daemon = Daemon(load_config(config), clock=VirtualClock(now))
    try:
        asyncio.run(daemon.poll(0))
        telemetry = daemon.loop.telemetry
        baseline = [v for _, v in telemetry.window("chat", "error_rate", onset - BASELINE_WINDOW, onset)]
        spec = CATALOG[ActionName.ROLLBACK_PROMPT_VERSION].recovery
        watch_from = max(acted, now - timedelta(seconds=spec.wait_s))
        current = [v for _, v in telemetry.window("chat", "error_rate", watch_from, now + timedelta(seconds=1))]
        during = [v for _, v in telemetry.window("chat", "error_rate", onset, acted)]
        verdict = evaluate_recovery(
            spec,
            {"chat/error_rate": baseline},
            {"chat/error_rate": current},
            incident_levels={"chat/error_rate": max(during, default=0.30)},
        )
        return baseline, verdict.summary, verdict.recovered
    finally:
        daemon.loop.close()


def test_restart_with_an_open_incident_reads_its_baseline_and_verification_judges_against_it(tmp_path: Path) -> None:
    """An incident opened 20 min before a restart gets its whole 30-min pre-onset baseline; recovery is judged on it."""
    with serve(Starlette(routes=[Route("/api/v1/query_range", query_range)])) as prometheus:
        config = _config(tmp_path, prometheus)
        _first_life(config, IncidentState.VERIFYING)
        baseline, summary, recovered = _restart_and_judge(config)
    assert len(baseline) == BASELINE_WINDOW // timedelta(seconds=STEP_S)
    assert max(baseline) < 0.02
    assert recovered, summary
    assert "back within tolerance of baseline" in summary


def test_without_an_open_incident_the_first_poll_reads_only_what_detection_needs(tmp_path: Path) -> None:
    """With the incident already resolved, the restart reads lookback/warm-up only: no pre-onset baseline is fetched."""
    with serve(Starlette(routes=[Route("/api/v1/query_range", query_range)])) as prometheus:
        config = _config(tmp_path, prometheus)
        _first_life(config, IncidentState.RESOLVED)
        baseline, summary, recovered = _restart_and_judge(config)
    assert baseline == []
    assert not recovered and "no watched series had a baseline" in summary


# -- the same restart against a real Prometheus holding the last hour --------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def backfilled_prometheus(tmp_path: Path) -> Iterator[tuple[str, Story]]:
    """A real Prometheus whose TSDB holds the story's last hour of llm_error_ratio (written with promtool)."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus and promtool binaries are required in CI (Debian package 'prometheus')")
        pytest.skip("prometheus/promtool not installed")
    wall = int(time.time())
    story = Story(datetime.fromtimestamp(wall - wall % STEP_S, tz=UTC))
    end = int(story.now.timestamp())
    lines = ["# TYPE llm_error_ratio gauge"]
    lines += [
        f'llm_error_ratio{{service="chat"}} {story.error_rate(t)} {t}' for t in range(end - 3600, end + 1, STEP_S)
    ]
    metrics = tmp_path / "history.om"
    metrics.write_text("\n".join([*lines, "# EOF", ""]))
    data = tmp_path / "tsdb"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(metrics), str(data)], check=True)
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    url = f"http://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address={url.removeprefix('http://')}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Prometheus did not become ready within 30s")
            time.sleep(0.2)
        yield url, story
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_restart_against_a_real_prometheus_judges_on_the_backfilled_baseline(
    tmp_path: Path, backfilled_prometheus: tuple[str, Story]
) -> None:
    """Against a real Prometheus, the restarted daemon reads the incident's 30-min baseline and judges it recovered."""
    url, story = backfilled_prometheus
    config = _config(tmp_path, url)
    _first_life(config, IncidentState.AWAITING_APPROVAL, story)
    baseline, summary, recovered = _restart_and_judge(config, story)
    assert len(baseline) == BASELINE_WINDOW // timedelta(seconds=STEP_S)
    assert max(baseline) < 0.02
    assert recovered, summary
