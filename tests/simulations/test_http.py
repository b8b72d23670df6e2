"""The fleet over HTTP: telemetry, metrics, topology and remediation as the daemon sees them."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest
import uvicorn

from domain import Sample, Topology
from simulations import builtin_scenarios, load_scenario
from simulations.http import create_app


def _fleet():
    return load_scenario(next(p for p in builtin_scenarios() if p.stem == "bad_prompt_deploy")).build_fleet()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_fleet(), speed=None, scenario_name="test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as c:
        yield c


class TestTelemetry:
    async def test_telemetry_since_returns_only_newer_samples(self, client: httpx.AsyncClient) -> None:
        """Polling with the previous answer's `now` yields each sample exactly once."""
        await client.post("/advance", json={"seconds": 60})
        first = (await client.get("/telemetry")).json()
        await client.post("/advance", json={"seconds": 30})
        second = (await client.get("/telemetry", params={"since": first["now"]})).json()
        samples = [Sample.model_validate(s) for s in first["samples"] + second["samples"]]
        stamps = sorted({s.ts for s in samples})
        assert len(stamps) == 9 and len(samples) == len({(s.ts, s.service, s.signal) for s in samples})
        assert all(s.ts > datetime.fromisoformat(first["now"]) for s in map(Sample.model_validate, second["samples"]))

    async def test_bad_since_is_a_clear_422(self, client: httpx.AsyncClient) -> None:
        """A malformed `since` is rejected naming the parameter."""
        response = await client.get("/telemetry", params={"since": "yesterday"})
        assert response.status_code == 422 and "'since'" in response.json()["detail"]

    async def test_metrics_are_prometheus_gauges_per_signal(self, client: httpx.AsyncClient) -> None:
        """/metrics exposes the latest value of each series as an llm_<signal> gauge with labels."""
        await client.post("/advance", json={"seconds": 10})
        text = (await client.get("/metrics")).text
        assert "# TYPE llm_latency_p95_ms gauge" in text
        line = next(x for x in text.splitlines() if x.startswith('llm_latency_p95_ms{service="support-chat"'))
        assert 'provider="llm-alpha"' in line and float(line.rsplit(" ", 1)[1]) > 0

    async def test_topology_and_health(self, client: httpx.AsyncClient) -> None:
        """/topology is the domain Topology; /healthz reports virtual now."""
        topo = Topology.model_validate((await client.get("/topology")).json())
        assert "support-chat" in topo.services
        health = (await client.get("/healthz")).json()
        assert health["status"] == "ok" and health["scenario"] == "test"


class TestRemediation:
    async def test_action_is_applied_once_per_key(self, client: httpx.AsyncClient) -> None:
        """POST /actions applies once; a repeat with the same key answers duplicate; GET finds it."""
        await client.post("/advance", json={"seconds": 45 * 60})  # the bad prompt lands at 40m
        body = {"action": "rollback_prompt_version", "target": "support-chat", "parameters": {}}
        first = await client.post("/actions", json=body, headers={"Idempotency-Key": "inc-1:rollback"})
        again = await client.post("/actions", json=body, headers={"Idempotency-Key": "inc-1:rollback"})
        assert first.status_code == 200 and first.json()["status"] == "applied"
        assert again.json()["status"] == "duplicate"
        assert (await client.get("/actions/inc-1:rollback")).json()["status"] == "applied"
        assert (await client.get("/actions/never")).status_code == 404
        await client.post("/advance", json={"seconds": 10})  # remediation changes surface with the next tick
        changes = (await client.get("/changes", params={"since": "2026-03-02T08:45:00Z"})).json()["changes"]
        assert [(c["kind"], c["to_value"], c["actor"]) for c in changes] == [("prompt_version", "v7", "homeostat")]

    @pytest.mark.parametrize(
        ("body", "headers", "needle"),
        [
            ({"action": "reboot", "target": "support-chat"}, {"Idempotency-Key": "k"}, "unknown action 'reboot'"),
            ({"action": "throttle", "target": "support-chat"}, {}, "Idempotency-Key"),
            ({"action": "throttle"}, {"Idempotency-Key": "k"}, "target"),
            ({"action": "throttle", "target": "x", "idempotency_key": "a"}, {"Idempotency-Key": "b"}, "differs"),
        ],
    )
    async def test_bad_action_requests_are_422_with_a_reason(
        self, client: httpx.AsyncClient, body: dict, headers: dict, needle: str
    ) -> None:
        """Malformed action requests are refused with a message naming what is wrong."""
        response = await client.post("/actions", json=body, headers=headers)
        assert response.status_code == 422 and needle in response.json()["detail"]

    async def test_faults_can_be_injected_at_runtime(self, client: httpx.AsyncClient) -> None:
        """POST /faults schedules a fault relative to now; GET /faults lists it while it is active."""
        await client.post("/advance", json={"seconds": 60})
        response = await client.post("/faults", json={"fault": "pii_leak", "service": "doc-summarizer", "at": "1m"})
        assert response.status_code == 200, response.text
        await client.post("/advance", json={"seconds": 120})
        active = (await client.get("/faults")).json()["active"]
        assert [(f["fault"], f["service"]) for f in active] == [("pii_leak", "doc-summarizer")]
        bad = await client.post("/faults", json={"fault": "gremlins", "service": "doc-summarizer"})
        assert bad.status_code == 422 and "fault" in bad.json()["detail"]


@pytest.fixture
def live_server() -> Iterator[str]:
    app = create_app(_fleet(), speed=600.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_real_socket_server_moves_virtual_time_at_speed(live_server: str) -> None:
    """Over a real loopback socket, the server advances virtual time by itself at the given speed."""
    with httpx.Client(base_url=live_server, timeout=5) as http:
        t0 = datetime.fromisoformat(http.get("/healthz").json()["now"])
        time.sleep(0.6)
        body = http.get("/telemetry").json()
        assert (datetime.fromisoformat(body["now"]) - t0).total_seconds() >= 120
        assert body["samples"], "the server should have produced samples on its own"
        result = http.post(
            "/actions", json={"action": "escalate", "target": "support-chat", "idempotency_key": "live-1"}
        ).json()
        assert result["status"] == "applied" and result["idempotency_key"] == "live-1"


async def test_first_poll_without_since_gets_the_last_hour() -> None:
    """A poll without `since` returns only the most recent hour, not the whole retained history."""
    app = create_app(_fleet(), speed=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as c:
        await c.post("/advance", json={"seconds": 90 * 60})
        body = (await c.get("/telemetry")).json()
        stamps = sorted({datetime.fromisoformat(s["ts"]) for s in body["samples"]})
        assert (datetime.fromisoformat(body["now"]) - stamps[0]).total_seconds() == 3600 - 10
