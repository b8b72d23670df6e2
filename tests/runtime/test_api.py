"""The HTTP API over a fake incident service, on a real loopback server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.runtime.conftest import LiveApi, bearer


class TestAuthentication:
    def test_missing_token_is_401_and_audited(self, live_api: LiveApi) -> None:
        """A call without a token is refused with 401, a Bearer challenge, and an audit record."""
        r = live_api.client.get("/v1/incidents")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "missing bearer token" in r.json()["error"]
        denied = [a for a in live_api.service.audit if a["kind"] == "access_denied"]
        assert denied == [
            {
                "seq": 1,
                "kind": "access_denied",
                "who": None,
                "method": "GET",
                "path": "/v1/incidents",
                "status": 401,
                "reason": r.json()["error"],
            }
        ]

    def test_wrong_token_is_401(self, live_api: LiveApi) -> None:
        """A token not in the tokens file is refused with 401."""
        r = live_api.client.get("/v1/incidents", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert r.json()["error"] == "unknown or revoked token"

    def test_viewer_cannot_approve(self, live_api: LiveApi) -> None:
        """A viewer's approve call is refused with 403 naming the needed role, audited, and changes nothing."""
        r = live_api.client.post("/v1/incidents/inc-1/approve", json={"comment": "x"}, headers=bearer("vera"))
        assert r.status_code == 403
        assert "needs one of ['approver']" in r.json()["error"]
        assert live_api.service.incidents["inc-1"]["state"] == "awaiting_approval"
        assert live_api.service.audit[-1]["who"] == "vera"
        assert live_api.service.audit[-1]["status"] == 403

    def test_only_auditors_query_the_audit_log(self, live_api: LiveApi) -> None:
        """The audit endpoint needs the auditor role."""
        assert live_api.client.get("/v1/audit", headers=bearer("alice")).status_code == 403
        assert live_api.client.get("/v1/audit", headers=bearer("aude")).status_code == 200

    def test_refusals_are_counted_in_metrics(self, live_api: LiveApi) -> None:
        """Refused calls show in homeostat_api_denied_total by status."""
        live_api.client.get("/v1/incidents")
        live_api.client.get("/v1/audit", headers=bearer("vera"))
        text = live_api.client.get("/metrics").text
        assert 'homeostat_api_denied_total{status="401"} 1.0' in text
        assert 'homeostat_api_denied_total{status="403"} 1.0' in text


class TestIncidents:
    def test_list_and_filter_by_state(self, live_api: LiveApi) -> None:
        """Any role lists incidents, optionally filtered by state."""
        all_ = live_api.client.get("/v1/incidents", headers=bearer("vera")).json()
        assert [i["id"] for i in all_] == ["inc-1", "inc-2"]
        resolved = live_api.client.get("/v1/incidents?state=resolved", headers=bearer("aude")).json()
        assert [i["id"] for i in resolved] == ["inc-2"]

    def test_unknown_state_is_a_clear_422(self, live_api: LiveApi) -> None:
        """An unknown state filter is refused naming the parameter and the valid states."""
        r = live_api.client.get("/v1/incidents?state=bogus", headers=bearer("vera"))
        assert r.status_code == 422
        assert "query.state" in r.json()["error"]
        assert "awaiting_approval" in r.json()["error"]

    def test_unknown_incident_is_404(self, live_api: LiveApi) -> None:
        """Asking for an incident that does not exist answers 404 with its id."""
        r = live_api.client.get("/v1/incidents/nope", headers=bearer("vera"))
        assert r.status_code == 404
        assert r.json()["error"] == "no incident 'nope'"


class TestApprovals:
    def test_pending_approvals_listed(self, live_api: LiveApi) -> None:
        """Pending approvals list only incidents awaiting approval."""
        r = live_api.client.get("/v1/approvals", headers=bearer("vera"))
        assert [i["id"] for i in r.json()] == ["inc-1"]

    def test_approve_records_identity_and_comment(self, live_api: LiveApi) -> None:
        """An approver's approval reaches the service with their identity and comment."""
        r = live_api.client.post(
            "/v1/incidents/inc-1/approve", json={"comment": "looks right"}, headers=bearer("alice")
        )
        assert r.status_code == 200
        assert r.json()["state"] == "executing"
        assert live_api.service.incidents["inc-1"]["approvals"] == [
            {"approver": "alice", "approve": True, "comment": "looks right"}
        ]
        assert live_api.service.audit[-1]["who"] == "alice"

    def test_approving_twice_is_409_with_reason(self, live_api: LiveApi) -> None:
        """An approval the service refuses answers 409 with the service's reason, and is still audited."""
        live_api.client.post("/v1/incidents/inc-1/approve", json={}, headers=bearer("alice"))
        r = live_api.client.post("/v1/incidents/inc-1/approve", json={}, headers=bearer("alice"))
        assert r.status_code == 409
        assert r.json()["error"] == "incident inc-1 is executing, not awaiting approval"
        assert [a["kind"] for a in live_api.service.audit] == ["approval_call", "approval_call"]

    def test_proposer_cannot_approve(self, live_api: LiveApi) -> None:
        """Whoever proposed an action gets 409 when approving it."""
        live_api.service.add("inc-3", proposer="alice")
        r = live_api.client.post("/v1/incidents/inc-3/approve", headers=bearer("alice"))
        assert r.status_code == 409
        assert "cannot approve" in r.json()["error"]

    def test_reject_needs_a_reason(self, live_api: LiveApi) -> None:
        """A rejection without a reason is a 422 naming the field; with one it rejects the incident."""
        r = live_api.client.post("/v1/incidents/inc-1/reject", json={}, headers=bearer("alice"))
        assert r.status_code == 422
        assert "body.reason" in r.json()["error"]
        r = live_api.client.post("/v1/incidents/inc-1/reject", json={"reason": "risky"}, headers=bearer("alice"))
        assert r.status_code == 200
        assert r.json()["state"] == "rejected"

    def test_approve_unknown_incident_is_404(self, live_api: LiveApi) -> None:
        """Approving an incident that does not exist is a 404, not a 409 or 500."""
        r = live_api.client.post("/v1/incidents/ghost/approve", json={}, headers=bearer("alice"))
        assert r.status_code == 404


class TestBadInputNeverCrashes:
    @pytest.mark.parametrize(
        ("path", "content"),
        [
            ("/v1/incidents/inc-1/approve", b"{not json"),
            ("/v1/incidents/inc-1/reject", b"\xff\xfe"),
            ("/v1/push", b'{"samples": [1,'),
            ("/v1/alertmanager", b"[]]"),
        ],
    )
    def test_malformed_json_is_400(self, live_api: LiveApi, path: str, content: bytes) -> None:
        """A body that is not JSON is a 400 saying so, never a 500."""
        who = "alice" if "incidents" in path else "otto"
        r = live_api.client.post(path, content=content, headers={**bearer(who), "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert "not valid JSON" in r.json()["error"]

    def test_unknown_body_field_is_422(self, live_api: LiveApi) -> None:
        """Unknown fields in an approval body are refused by name."""
        r = live_api.client.post("/v1/incidents/inc-1/approve", json={"coment": "x"}, headers=bearer("alice"))
        assert r.status_code == 422
        assert "coment" in r.json()["error"]

    def test_oversized_body_is_413(self, live_api: LiveApi) -> None:
        """A body past the limit is refused with 413 before it is parsed."""
        r = live_api.client.post("/v1/push", content=b"x" * 70_000, headers=bearer("otto"))
        assert r.status_code == 413


class TestPush:
    def test_valid_items_accepted_bad_ones_named(self, live_api: LiveApi) -> None:
        """Good samples are buffered; a NaN or incomplete one is refused with its index and reason."""
        body = (
            '{"samples": ['
            '{"service": "chat", "signal": "error_rate", "ts": "2026-01-01T00:00:00Z", "value": 0.1},'
            '{"service": "chat", "signal": "error_rate", "ts": "2026-01-01T00:00:01Z", "value": NaN},'
            '{"service": "chat", "ts": "2026-01-01T00:00:02Z", "value": 1}'
            "]}"
        )
        r = live_api.client.post("/v1/push", content=body, headers=bearer("otto"))
        assert r.status_code == 202
        assert r.json()["accepted"] == {"samples": 1, "changes": 0}
        rejected = r.json()["rejected"]
        assert rejected[0]["where"] == "samples[1]" and "finite" in rejected[0]["message"]
        assert rejected[1]["where"] == "samples[2]" and "signal" in rejected[1]["message"]
        batch = asyncio.run(live_api.push.poll(datetime(2026, 1, 1, tzinfo=UTC)))
        assert [s.value for s in batch.samples] == [0.1]

    def test_all_bad_is_422(self, live_api: LiveApi) -> None:
        """A batch whose every item is bad answers 422 listing them."""
        r = live_api.client.post("/v1/push", json={"samples": [{"value": 1}]}, headers=bearer("otto"))
        assert r.status_code == 422
        assert r.json()["detail"][0]["where"] == "samples[0]"

    def test_full_buffer_answers_429_with_retry_after(self, live_api: LiveApi) -> None:
        """When the bounded buffer is full the API answers 429 with Retry-After, and accepts again after a poll."""
        sample = {"service": "chat", "signal": "error_rate", "ts": "2026-01-01T00:00:00Z", "value": 0.1}
        r = live_api.client.post("/v1/push", json={"samples": [sample] * 4}, headers=bearer("otto"))
        assert r.status_code == 202
        r = live_api.client.post("/v1/push", json={"samples": [sample] * 2}, headers=bearer("otto"))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"
        assert "buffer full (4/5" in r.json()["error"]
        assert live_api.push.buffered == 4
        asyncio.run(live_api.push.poll(datetime(2026, 1, 1, tzinfo=UTC)))
        r = live_api.client.post("/v1/push", json={"samples": [sample] * 2}, headers=bearer("otto"))
        assert r.status_code == 202
        assert "homeostat_push_backpressure_total 1.0" in live_api.client.get("/metrics").text

    def test_push_needs_operator(self, live_api: LiveApi) -> None:
        """Pushing telemetry is an operator's call; a viewer gets 403."""
        assert live_api.client.post("/v1/push", json={}, headers=bearer("vera")).status_code == 403


class TestStatus:
    def test_readyz_waits_for_first_poll_and_constitution(self, live_api: LiveApi) -> None:
        """/readyz is 503 naming what is missing until sources were polled and a constitution loaded."""
        r = live_api.client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["source:push"] == "not polled yet"
        assert r.json()["checks"]["constitution"] == "not loaded"
        now = live_api.clock.now()
        for source in live_api.guarded:
            asyncio.run(source.poll(now))
        live_api.status.constitution_loaded(digest="abc", path="constitution.yaml", at=now)
        r = live_api.client.get("/readyz")
        assert r.status_code == 200, r.json()
        assert live_api.client.get("/healthz").json() == {"status": "ok"}

    def test_constitution_reports_failed_reload(self, live_api: LiveApi) -> None:
        """A refused reload shows beside the digest still in force."""
        now = live_api.clock.now()
        live_api.status.constitution_loaded(digest="abc", path="c.yaml", at=now)
        live_api.status.constitution_reload_failed(error="c.yaml:3: rules[0]: bad", at=now)
        body = live_api.client.get("/v1/constitution", headers=bearer("vera")).json()
        assert body["digest"] == "abc"
        assert body["last_reload_ok"] is False
        assert body["last_reload_error"] == "c.yaml:3: rules[0]: bad"

    def test_metrics_exposition(self, live_api: LiveApi) -> None:
        """/metrics serves Prometheus text including every documented metric family."""
        live_api.metrics.loop_latency.observe(0.02)
        live_api.metrics.set_incident_counts({"awaiting_approval": 1})
        r = live_api.client.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        for family in (
            "homeostat_samples_ingested",
            "homeostat_anomalies",
            'homeostat_incidents{state="awaiting_approval"} 1.0',
            "homeostat_actions",
            "homeostat_approval_wait_seconds",
            "homeostat_loop_latency_seconds_count 1.0",
        ):
            assert family in r.text

    def test_openapi_spec_lists_endpoints(self, live_api: LiveApi) -> None:
        """The OpenAPI spec documents the approval endpoints and bearer security."""
        spec = live_api.client.get("/openapi.json").json()
        assert "/v1/incidents/{incident_id}/approve" in spec["paths"]
        assert "HTTPBearer" in spec["components"]["securitySchemes"]


class TestMetricsHelpers:
    def test_loop_helpers_count_by_label(self) -> None:
        """record_batch, record_anomalies and set_incident_counts fill the labelled families the loop reports."""
        from domain import Anomaly, Direction, Sample, Severity
        from runtime.metrics import Metrics
        from runtime.ports import TelemetryBatch

        metrics = Metrics()
        ts = datetime(2026, 1, 1, tzinfo=UTC)
        sample = Sample(service="chat", signal="error_rate", ts=ts, value=0.1)
        metrics.record_batch("prom", TelemetryBatch(samples=[sample, sample]))
        anomaly = Anomaly(
            id="a1",
            service="chat",
            signal="error_rate",
            detector="cusum",
            ts=ts,
            direction=Direction.UP,
            baseline=0.01,
            current=0.2,
            severity=Severity.CRITICAL,
        )
        metrics.record_anomalies([anomaly])
        metrics.set_incident_counts({"resolved": 2})
        metrics.set_incident_counts({"open": 1})
        get = metrics.registry.get_sample_value
        assert get("homeostat_samples_ingested_total", {"source": "prom"}) == 2.0
        assert get("homeostat_anomalies_total", {"kind": "shift", "severity": "critical"}) == 1.0
        assert get("homeostat_incidents", {"state": "resolved"}) == 0.0
        assert get("homeostat_incidents", {"state": "open"}) == 1.0


class TestServiceCall:
    def test_service_calls_go_through_the_given_runner(self) -> None:
        """With a `call` runner, every service call (and the access audit) runs through it, e.g. in a
        worker thread behind the loop's lock, and ApprovalError still becomes a 409."""
        import threading
        from collections.abc import Callable
        from typing import TypeVar

        import httpx

        from domain import VirtualClock
        from runtime.api import DaemonStatus, create_app
        from runtime.auth import TokenAuthority
        from runtime.metrics import Metrics
        from tests.runtime._loopback import serve
        from tests.runtime.conftest import TOKENS
        from tests.runtime.fakes import FakeIncidentService

        T = TypeVar("T")
        lock = threading.Lock()
        threads: list[str] = []

        async def in_worker(fn: Callable[[], T]) -> T:
            def locked() -> T:
                with lock:
                    threads.append(threading.current_thread().name)
                    return fn()

            return await asyncio.to_thread(locked)

        service = FakeIncidentService()
        service.add("inc-1")
        app = create_app(
            service,
            auth=TokenAuthority.from_tokens(TOKENS),
            push=None,
            alertmanager=None,
            status=DaemonStatus(VirtualClock(), [], db_check=lambda: None),
            metrics=Metrics(),
            call=in_worker,
        )
        with serve(app) as url, httpx.Client(base_url=url) as client:
            assert client.post("/v1/incidents/inc-1/approve", headers=bearer("alice")).status_code == 200
            r = client.post("/v1/incidents/inc-1/approve", headers=bearer("alice"))
            assert r.status_code == 409 and "not awaiting approval" in r.json()["error"]
            assert client.get("/v1/approvals", headers={"Authorization": "Bearer bad"}).status_code == 401
        assert len(threads) == 5  # get+approve, get+approve, access_denied
        assert all(name != threading.main_thread().name for name in threads)
        assert service.audit[-1]["kind"] == "access_denied"
