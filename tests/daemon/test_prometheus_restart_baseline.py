"""A daemon restarted while an incident is open reads that incident's pre-onset baseline back from Prometheus."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

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

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
ONSET = NOW - timedelta(minutes=20)  # the incident opened 20 minutes before the restart
ACTED = NOW - timedelta(minutes=6)  # the remedy ran; the error rate came back down after it
STEP_S = 15


def error_rate(t: float) -> float:
    """About 0.01 before the onset, 0.30 from the onset until the remedy, 0.012 after it."""
    if ONSET.timestamp() <= t < ACTED.timestamp():
        return 0.30
    return 0.012 if t >= ACTED.timestamp() else 0.01 + 0.001 * (int(t // STEP_S) % 3)


async def query_range(request: Request) -> Response:
    start, end, step = (float(request.query_params[k]) for k in ("start", "end", "step"))
    assert (end - start) / step + 1 <= 11_000, "more points than Prometheus answers"
    values = [[start + i * step, str(error_rate(start + i * step))] for i in range(int((end - start) / step) + 1)]
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


def _first_life(config: Path, state: IncidentState) -> None:
    """The daemon that went down left one incident on chat in `state`, opened at ONSET."""
    daemon = Daemon(load_config(config), clock=VirtualClock(ONSET))
    try:
        stamp = ONSET.isoformat()
        daemon.loop.store.add(
            IncidentRow(
                id="inc-chat",
                state=state.value,
                services_json='["chat"]',
                onset=stamp,
                opened_at=stamp,
                updated_at=ACTED.isoformat(),
                settle_until=stamp,
                action=ActionName.ROLLBACK_PROMPT_VERSION.value,
                target="chat",
            )
        )
    finally:
        daemon.loop.close()


def _restart_and_judge(config: Path) -> tuple[list[float], str, bool]:
    """Restart at NOW, poll Prometheus once, and judge recovery the way the verify step does."""
    daemon = Daemon(load_config(config), clock=VirtualClock(NOW))
    try:
        asyncio.run(daemon.poll(0))
        telemetry = daemon.loop.telemetry
        baseline = [v for _, v in telemetry.window("chat", "error_rate", ONSET - BASELINE_WINDOW, ONSET)]
        spec = CATALOG[ActionName.ROLLBACK_PROMPT_VERSION].recovery
        watch_from = max(ACTED, NOW - timedelta(seconds=spec.wait_s))
        current = [v for _, v in telemetry.window("chat", "error_rate", watch_from, NOW + timedelta(seconds=1))]
        during = [v for _, v in telemetry.window("chat", "error_rate", ONSET, ACTED)]
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
