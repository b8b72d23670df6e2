"""Each telemetry source against a real loopback server or a real file."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domain import ChangeKind, Direction, Severity
from runtime.sources import (
    AlertmanagerSource,
    GuardedSource,
    JsonlTailSource,
    PrometheusSource,
    PromQuery,
    SimulatorSource,
    SourceError,
    parse_webhook,
)
from tests.runtime._loopback import serve

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def sample(ts: datetime, value: Any = 0.5, **extra: Any) -> dict[str, Any]:
    return {"service": "chat", "signal": "error_rate", "ts": ts.isoformat(), "value": value, **extra}


# -- Prometheus ---------------------------------------------------------------------------------


class FakePrometheus:
    """Answers /api/v1/query and /api/v1/query_range like Prometheus, from a function of time."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.fail_with: tuple[int, dict[str, Any]] | None = None

    def value(self, service: str, t: float) -> str:
        return "NaN" if service == "broken" else str(round(t % 1000 / 1000, 3))

    async def query(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.requests.append({"path": request.url.path, **params})
        if self.fail_with:
            return JSONResponse(self.fail_with[1], status_code=self.fail_with[0])
        if params["query"].startswith("bad"):
            return JSONResponse({"status": "error", "errorType": "bad_data", "error": "unknown function"}, 400)
        services = ["chat", "search", "broken"]
        if request.url.path.endswith("query_range"):
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
            times = []
            t = start
            while t <= end:
                times.append(t)
                t += step
            result = [
                {
                    "metric": {"__name__": "x", "service": s, "region": "eu"},
                    "values": [[t, self.value(s, t)] for t in times],
                }
                for s in services
            ]
            result.append({"metric": {"job": "no-service-label"}, "values": [[start, "1"]]})
            return JSONResponse({"status": "success", "data": {"resultType": "matrix", "result": result}})
        t = float(params["time"])
        vector = [{"metric": {"service": s}, "value": [t, self.value(s, t)]} for s in services]
        return JSONResponse({"status": "success", "data": {"resultType": "vector", "result": vector}})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/query", self.query), Route("/api/v1/query_range", self.query)])


class TestPrometheusSource:
    async def test_range_queries_map_labels_to_services_without_gaps_or_repeats(self) -> None:
        """Range mode reads every step since the last poll, names services by label, and never repeats a point."""
        fake = FakePrometheus()
        with serve(fake.app()) as url:
            source = PrometheusSource(url, [PromQuery("error_rate", "rate(errors[1m])")], step_s=15, lookback_s=60)
            first = await source.poll(T0)
            second = await source.poll(T0 + timedelta(seconds=30))
            await source.aclose()
        assert {s.service for s in first.samples} == {"chat", "search"}
        chat_first = [s.ts for s in first.samples if s.service == "chat"]
        chat_second = [s.ts for s in second.samples if s.service == "chat"]
        assert chat_first == [T0 - timedelta(seconds=60) + timedelta(seconds=15 * i) for i in range(5)]
        assert chat_second == [T0 + timedelta(seconds=15), T0 + timedelta(seconds=30)]
        assert first.samples[0].labels == {"region": "eu"}
        assert fake.requests[0]["query"] == "rate(errors[1m])"
        assert fake.requests[0]["step"] == "15"
        reasons = [str(r) for r in source.rejections]
        assert any("not finite" in r for r in reasons)
        assert any("no 'service' label" in r for r in reasons)

    async def test_polls_at_uneven_times_stay_on_the_step_grid(self) -> None:
        """Polls that do not fall on step boundaries still deliver points exactly every step."""
        fake = FakePrometheus()
        with serve(fake.app()) as url:
            source = PrometheusSource(url, [PromQuery("error_rate", "x")], step_s=15, lookback_s=30)
            stamps = []
            for offset in (0, 40, 50, 51, 75):
                batch = await source.poll(T0 + timedelta(seconds=offset))
                stamps += [s.ts for s in batch.samples if s.service == "chat"]
            await source.aclose()
        assert stamps == [T0 + timedelta(seconds=s) for s in range(-30, 76, 15)]

    async def test_one_failing_query_does_not_silence_the_others(self) -> None:
        """A broken PromQL is reported as a warning (source unhealthy) while other signals keep flowing."""
        fake = FakePrometheus()
        with serve(fake.app()) as url:
            source = PrometheusSource(
                url, [PromQuery("error_rate", "good"), PromQuery("quality_score", "bad(")], mode="instant"
            )
            guard = GuardedSource(source)
            batch = await guard.poll(T0)
            await source.aclose()
        assert {s.signal for s in batch.samples} == {"error_rate"}
        health = guard.health(T0)
        assert not health.healthy and health.consecutive_failures == 0
        assert "quality_score" in health.warnings[0] and "unknown function" in health.warnings[0]

    async def test_instant_query_with_fixed_service(self) -> None:
        """Instant mode asks for the value at now; a fixed service overrides labels."""
        fake = FakePrometheus()
        with serve(fake.app()) as url:
            source = PrometheusSource(url, [PromQuery("queue_depth", "sum(queue)", service="gateway")], mode="instant")
            batch = await source.poll(T0)
            await source.aclose()
        assert fake.requests[0]["time"] == f"{T0.timestamp():.3f}"
        assert {s.service for s in batch.samples} == {"gateway"}
        assert all(s.ts == T0 and s.signal == "queue_depth" for s in batch.samples)

    async def test_query_error_is_raised_with_prometheus_message(self) -> None:
        """A PromQL error surfaces as a SourceError carrying Prometheus's message and the signal."""
        fake = FakePrometheus()
        fake.fail_with = (400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"})
        with serve(fake.app()) as url:
            source = PrometheusSource(url, [PromQuery("error_rate", "rate(")], mode="instant")
            with pytest.raises(SourceError, match="parse error at char 5") as info:
                await source.poll(T0)
            await source.aclose()
        assert "error_rate" in str(info.value)


# -- guard: backoff and staleness ---------------------------------------------------------------


class TestGuardedSource:
    async def test_unreachable_source_backs_off_and_reports_unhealthy(self) -> None:
        """A dead endpoint yields empty batches, exponential capped backoff and an unhealthy, stale status."""
        with serve(Starlette()) as url:
            dead = url  # the port is closed once the server stops
        source = SimulatorSource(dead, timeout_s=1)
        guard = GuardedSource(source, base_delay_s=1, max_delay_s=4, stale_after_s=10)
        now = T0
        batch = await guard.poll(now)
        assert batch.samples == [] and batch.changes == []
        health = guard.health(now)
        assert not health.healthy and health.polled_once and health.consecutive_failures == 1
        assert "ConnectError" in (health.last_error or "")
        assert health.next_attempt == now + timedelta(seconds=1)
        # While backing off, the source is not called at all.
        await guard.poll(now + timedelta(seconds=0.5))
        assert guard.health(now).consecutive_failures == 1
        delays = []
        for _ in range(4):
            now = guard.health(now).next_attempt or now
            await guard.poll(now)
            delays.append((guard.health(now).next_attempt - now).total_seconds())  # type: ignore[operator]
        assert delays == [2.0, 4.0, 4.0, 4.0]
        await source.aclose()

    async def test_credentials_in_urls_never_reach_health_or_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        """A source URL with user:password shows in health and logs with the credentials masked."""
        with serve(Starlette()) as url:
            dead = url.replace("http://", "http://scraper:hunter2@")
        source = PrometheusSource(dead, [PromQuery("error_rate", "x")], mode="instant", timeout_s=1)
        guard = GuardedSource(source)
        await guard.poll(T0)
        await source.aclose()
        error = guard.health(T0).last_error or ""
        assert "http://***@127.0.0.1" in error
        assert "hunter2" not in error and "hunter2" not in caplog.text

    async def test_recovery_resets_backoff_and_staleness_follows_time(self) -> None:
        """After a success the source is healthy; with no success for stale_after_s it turns unhealthy."""
        calls = {"n": 0}

        class Flaky:
            name = "flaky"

            async def poll(self, now: datetime) -> Any:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise SourceError("boom")
                from runtime.ports import TelemetryBatch

                return TelemetryBatch()

        guard = GuardedSource(Flaky(), base_delay_s=1, max_delay_s=8, stale_after_s=30)
        await guard.poll(T0)
        await guard.poll(T0 + timedelta(seconds=1))
        health = guard.health(T0 + timedelta(seconds=1))
        assert health.healthy and health.consecutive_failures == 0 and health.last_error is None
        assert not guard.health(T0 + timedelta(seconds=32)).healthy
        assert guard.health(T0 + timedelta(seconds=32)).staleness_s == 31


# -- simulator over HTTP ------------------------------------------------------------------------


class TestSimulatorSource:
    async def test_polls_since_last_now_and_rejects_bad_items_individually(self) -> None:
        """The source asks for telemetry since the previous answer's `now`; bad items are dropped with reasons."""
        seen: list[str | None] = []

        async def telemetry(request: Request) -> Response:
            seen.append(request.query_params.get("since"))
            now = T0 + timedelta(seconds=10 * len(seen))
            return JSONResponse(
                {
                    "now": now.isoformat(),
                    "samples": [sample(now), sample(now, value="NaN"), {"service": "chat"}],
                    "changes": [
                        {
                            "id": "c1",
                            "service": "chat",
                            "kind": "model_version",
                            "from_value": "v1",
                            "to_value": "v2",
                            "ts": now.isoformat(),
                            "actor": "ci",
                        }
                    ],
                }
            )

        with serve(Starlette(routes=[Route("/telemetry", telemetry)])) as url:
            source = SimulatorSource(url)
            first = await source.poll(T0)
            await source.poll(T0)
            await source.aclose()
        assert seen == [None, (T0 + timedelta(seconds=10)).isoformat()]
        assert len(first.samples) == 1 and first.changes[0].kind is ChangeKind.MODEL_VERSION
        assert [r.where.rsplit("/", 1)[-1] for r in source.rejections] == [
            "telemetry.samples[1]",
            "telemetry.samples[2]",
        ]

    async def test_against_the_real_simulator_each_sample_arrives_once(self) -> None:
        """Against the simulator's own HTTP app, successive polls deliver every sample exactly once."""
        from simulations import builtin_scenarios, load_scenario
        from simulations.http import create_app as simulator_app

        fleet = load_scenario(builtin_scenarios()[0]).build_fleet()
        with serve(simulator_app(fleet, speed=None)) as url:
            source = SimulatorSource(url)
            async with httpx.AsyncClient(base_url=url) as client:
                await client.post("/advance", json={"seconds": 60})
                first = await source.poll(T0)
                await client.post("/advance", json={"seconds": 30})
                second = await source.poll(T0)
                third = await source.poll(T0)
            await source.aclose()
        keys = [(s.service, s.signal, s.ts) for s in first.samples + second.samples]
        assert first.samples and second.samples and not third.samples
        assert len(keys) == len(set(keys))
        assert min(s.ts for s in second.samples) > max(s.ts for s in first.samples)
        assert source.rejections == []

    async def test_server_error_raises(self) -> None:
        """A 500 from the simulator is a SourceError (the guard turns it into staleness), not empty data."""

        async def broken(request: Request) -> Response:
            return Response("overloaded", status_code=503)

        with serve(Starlette(routes=[Route("/telemetry", broken)])) as url:
            source = SimulatorSource(url)
            with pytest.raises(SourceError, match="503"):
                await source.poll(T0)
            await source.aclose()


# -- JSONL tail ---------------------------------------------------------------------------------


def write(path: Path, text: str, mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as fh:
        fh.write(text)


class TestJsonlTailSource:
    async def test_reads_new_lines_and_waits_for_partial_ones(self, tmp_path: Path) -> None:
        """Complete lines are read once; a line without its newline waits for the rest."""
        path = tmp_path / "t.jsonl"
        write(path, json.dumps(sample(T0)) + "\n" + json.dumps(sample(T0 + timedelta(seconds=1)))[:20])
        source = JsonlTailSource(path)
        first = await source.poll(T0)
        assert [s.ts for s in first.samples] == [T0]
        write(path, json.dumps(sample(T0 + timedelta(seconds=1)))[20:] + "\n")
        second = await source.poll(T0)
        assert [s.ts for s in second.samples] == [T0 + timedelta(seconds=1)]
        assert (await source.poll(T0)).samples == []
        source.close()

    async def test_bad_lines_reported_with_file_and_line(self, tmp_path: Path) -> None:
        """Bad lines are skipped and reported as file:line with a reason; good lines around them pass."""
        path = tmp_path / "t.jsonl"
        change = {
            "id": "c1",
            "service": "chat",
            "kind": "prompt_version",
            "from_value": "p1",
            "to_value": "p2",
            "ts": T0.isoformat(),
        }
        lines = [
            json.dumps(sample(T0)),
            "{oops",
            json.dumps(sample(T0, value=float("nan"))),
            "",
            json.dumps(change),
            json.dumps({"type": "metric", "x": 1}),
            "[1, 2]",
        ]
        write(path, "\n".join(lines) + "\n")
        source = JsonlTailSource(path)
        batch = await source.poll(T0)
        assert len(batch.samples) == 1 and [c.id for c in batch.changes] == ["c1"]
        rejections = {r.where: r.reason for r in source.rejections}
        assert set(rejections) == {f"{path}:2", f"{path}:3", f"{path}:6", f"{path}:7"}
        assert "not valid JSON" in rejections[f"{path}:2"]
        assert "finite" in rejections[f"{path}:3"]
        assert "unknown type 'metric'" in rejections[f"{path}:6"]
        source.close()

    async def test_follows_rotation_without_losing_lines(self, tmp_path: Path) -> None:
        """After rename-and-recreate rotation, the old file's tail and the new file are both read."""
        path = tmp_path / "t.jsonl"
        write(path, json.dumps(sample(T0)) + "\n")
        source = JsonlTailSource(path)
        assert len((await source.poll(T0)).samples) == 1
        write(path, json.dumps(sample(T0 + timedelta(seconds=1))) + "\n")  # written just before rotation
        os.rename(path, tmp_path / "t.jsonl.1")
        write(path, json.dumps(sample(T0 + timedelta(seconds=2))) + "\n", mode="w")
        batch = await source.poll(T0)
        assert [s.ts.second for s in batch.samples] == [1, 2]
        write(path, json.dumps(sample(T0 + timedelta(seconds=3))) + "\n")
        assert [s.ts.second for s in (await source.poll(T0)).samples] == [3]
        source.close()

    async def test_truncation_restarts_from_the_top(self, tmp_path: Path) -> None:
        """A file truncated in place (copytruncate) is read again from its start."""
        path = tmp_path / "t.jsonl"
        write(path, (json.dumps(sample(T0)) + "\n") * 3)
        source = JsonlTailSource(path)
        assert len((await source.poll(T0)).samples) == 3
        write(path, json.dumps(sample(T0 + timedelta(seconds=9))) + "\n", mode="w")
        assert [s.ts.second for s in (await source.poll(T0)).samples] == [9]
        source.close()

    async def test_missing_file_is_a_source_error(self, tmp_path: Path) -> None:
        """A configured file that does not exist fails the poll (and so shows as unhealthy)."""
        source = JsonlTailSource(tmp_path / "absent.jsonl")
        with pytest.raises(SourceError, match="no such file"):
            await source.poll(T0)

    async def test_from_end_skips_history_but_keeps_line_numbers(self, tmp_path: Path) -> None:
        """With from_end, existing lines are skipped and later bad lines keep their true numbers."""
        path = tmp_path / "t.jsonl"
        write(path, (json.dumps(sample(T0)) + "\n") * 2)
        source = JsonlTailSource(path, from_end=True)
        assert (await source.poll(T0)).samples == []
        write(path, "nope\n")
        await source.poll(T0)
        assert [r.where for r in source.rejections] == [f"{path}:3"]
        source.close()


# -- Alertmanager -------------------------------------------------------------------------------


def alert_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {"version": "4", "status": status, "receiver": "homeostat", "groupKey": "{}:{}", "alerts": list(alerts)}


def alert(fingerprint: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", "service": "chat", "severity": "critical", **labels},
        "annotations": {"summary": "errors above 5%"},
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom/graph",
        "fingerprint": fingerprint,
    }


class TestAlertmanagerSource:
    async def test_firing_alert_becomes_alert_anomaly(self) -> None:
        """A firing alert becomes one anomaly of kind alert with service, severity and annotations kept as data."""
        source = AlertmanagerSource()
        new, rejected = source.receive(parse_webhook(alert_payload(alert("fp1", signal="error_rate"))))
        assert rejected == []
        [anomaly] = (await source.poll(T0)).anomalies
        assert anomaly == new[0]
        assert (anomaly.kind, anomaly.service, anomaly.signal) == ("alert", "chat", "error_rate")
        assert anomaly.severity is Severity.CRITICAL and anomaly.direction is Direction.UP
        assert anomaly.detail["annotations"] == {"summary": "errors above 5%"}
        assert anomaly.ts == T0

    async def test_repeats_deduplicated_until_resolved(self) -> None:
        """Re-sent firing alerts are ignored; after a resolve the same fingerprint fires anew."""
        source = AlertmanagerSource()
        source.receive(parse_webhook(alert_payload(alert("fp1"))))
        source.receive(parse_webhook(alert_payload(alert("fp1"))))
        assert len((await source.poll(T0)).anomalies) == 1
        source.receive(parse_webhook(alert_payload(alert("fp1", status="resolved"), status="resolved")))
        assert (await source.poll(T0)).anomalies == []
        new, _ = source.receive(parse_webhook(alert_payload(alert("fp1"))))
        assert len(new) == 1

    async def test_alert_without_service_label_is_rejected_by_name(self) -> None:
        """An alert that names no service is refused with the label it lacks; others in the payload pass."""
        source = AlertmanagerSource()
        nameless = alert("fp2")
        del nameless["labels"]["service"]
        new, rejected = source.receive(parse_webhook(alert_payload(nameless, alert("fp3"))))
        assert len(new) == 1
        assert str(rejected[0]) == "alerts[0]: alert has no 'service' label to name the service"

    def test_payload_shape_errors_name_the_field(self) -> None:
        """A payload that is not v4 is refused naming the field."""
        from pydantic import ValidationError

        with pytest.raises(ValidationError, match="version"):
            parse_webhook({"version": "3", "status": "firing", "alerts": []})


class TestAlertmanagerOverHttp:
    def test_webhook_post_creates_anomaly(self, live_api: Any) -> None:
        """POST /v1/alertmanager with a v4 payload yields an anomaly the loop will poll."""
        from tests.runtime.conftest import bearer

        r = live_api.client.post("/v1/alertmanager", json=alert_payload(alert("fpX")), headers=bearer("otto"))
        assert r.status_code == 200, r.text
        assert r.json()["anomalies"][0].startswith("alert-fpX-")
        bad = live_api.client.post("/v1/alertmanager", json={"alerts": "x"}, headers=bearer("otto"))
        assert bad.status_code == 422 and "version" in bad.json()["error"]
        assert isinstance(live_api.client, httpx.Client)


def test_webhook_anomalies_are_counted_once_by_the_loop(live_api: Any) -> None:
    """The webhook does not count anomalies itself: the loop's record_anomalies counts each one once."""
    from tests.runtime.conftest import bearer

    live_api.client.post("/v1/alertmanager", json=alert_payload(alert("fpY")), headers=bearer("otto"))
    get = live_api.metrics.registry.get_sample_value
    assert get("homeostat_anomalies_total", {"kind": "alert", "severity": "critical"}) is None
