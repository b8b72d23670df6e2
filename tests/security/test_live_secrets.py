"""Secrets on the live daemon paths: `homeostat run` with its LLM diagnoser (set in the config
file's `diagnoser:` section) on a loopback OpenAI-compatible endpoint (API key set), a webhook
notifier whose URL holds a secret, an audit HMAC key and bearer tokens. One provider outage is
diagnosed by the LLM, approved over the API and recovers; then the daemon's stdout and stderr,
the audit export, the webhook bodies and headers, every /v1 response, the prompts sent to the
model and the raw database are searched for every secret value.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.simulate import SimulatorDriver
from tests._daemon_harness import (
    REPO,
    LoopbackJSONServer,
    Seen,
    bearer,
    cli,
    daemon_config,
    free_port,
    json_of,
    procs,
    scenario_without_injections,
    start_simulator,
    stop,
    wait_for,
)

__all__ = ["procs"]  # the fixture, re-exported for pytest

pytestmark = pytest.mark.slow

SPEED = 10.0
APPROVER = "appr-live-4f3e2d1c0b9a8f7e6d5c"
VIEWER = "view-live-0a1b2c3d4e5f6a7b8c9d"
AUDITOR = "audt-live-9e8d7c6b5a4f3e2d1c0b"
OPERATOR = "oper-live-5a6b7c8d9e0f1a2b3c4d"
WEBHOOK_SECRET = "T0LIVE/B0LIVE/whSecretLive8c7b6a5f"
HMAC_KEY = "hmac-live-3c2b1a0f9e8d7c6b5a4f"
LLM_API_KEY = "sk-live-llm-7e6d5c4b3a2f1e0d9c8b7a6f"
SECRETS = {
    "approver token": APPROVER,
    "viewer token": VIEWER,
    "auditor token": AUDITOR,
    "operator token": OPERATOR,
    "webhook secret": WEBHOOK_SECRET,
    "audit HMAC key": HMAC_KEY,
    "LLM API key": LLM_API_KEY,
}
FINAL = {"resolved", "failed", "rejected", "expired", "escalated"}
ANOMALY = re.compile(r'"service": "([^"]+)", "signal": "([^"]+)"')


def _chat_completion(seen: Seen) -> tuple[int, dict[str, Any]]:
    """An OpenAI chat completion naming the incident's first anomalous series as a provider problem."""
    request = seen.json()
    incident = next(m["content"] for m in request["messages"] if m["role"] == "user")
    found = ANOMALY.search(incident)
    service, signal = found.groups() if found else ("unknown", "error_rate")
    answer = {
        "cause": "provider_degradation",
        "service": service,
        "confidence": 0.9,
        "rationale": "errors and latency rose together on every service of the provider",
        "evidence": [{"type": "series", "service": service, "signal": signal}],
    }
    return 200, {
        "id": "chatcmpl-live",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "loopback-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": json.dumps(answer)}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
    }


@pytest.fixture
def llm() -> Iterator[LoopbackJSONServer]:
    with LoopbackJSONServer(_chat_completion) as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[LoopbackJSONServer]:
    with LoopbackJSONServer(lambda _request: (200, {"ok": True})) as server:
        yield server


def test_no_secret_leaks_from_a_live_llm_diagnosed_incident(
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
    llm: LoopbackJSONServer,
    webhook: LoopbackJSONServer,
) -> None:
    """An LLM-diagnosed, approved, recovered incident leaves no secret in logs, audit, webhooks, API or DB."""
    sim = start_simulator(tmp_path, procs, scenario_without_injections("provider_outage", tmp_path))
    api_port = free_port()
    db = tmp_path / "homeostat.db"
    config = daemon_config(
        tmp_path,
        sim=sim,
        api_port=api_port,
        db=db,
        tokens={
            "ana": (APPROVER, ["approver"]),
            "vic": (VIEWER, ["viewer"]),
            "aud": (AUDITOR, ["auditor"]),
            "otto": (OPERATOR, ["operator"]),
        },
        notifications={
            "webhooks": ["${LIVE_WEBHOOK_URL}"],
            "states": ["open", "awaiting_approval", "executing", "verifying", "resolved", "failed", "escalated"],
        },
        diagnoser={
            "kind": "llm",
            "base_url": f"{llm.url}/v1",
            "model": "loopback-model",
            "api_key_env": "LIVE_LLM_API_KEY",
            "timeout_s": 30,
        },
    )
    secrets_env = {
        "LIVE_WEBHOOK_URL": f"{webhook.url}/hooks/{WEBHOOK_SECRET}",
        "HOMEOSTAT_AUDIT_HMAC_KEY": HMAC_KEY,
        "LIVE_LLM_API_KEY": LLM_API_KEY,
    }
    out_log, err_log = tmp_path / "daemon.stdout", tmp_path / "daemon.stderr"
    daemon = cli(
        "run", "--config", str(config), "--clock", "simulator", "--log-level", "DEBUG",
        log=err_log, stdout=out_log, env=secrets_env,
    )  # fmt: skip
    procs.append(daemon)
    api = f"http://127.0.0.1:{api_port}"
    responses: dict[str, str] = {}

    def get(path: str, token: str, **params: Any) -> Any:
        response = httpx.get(f"{api}{path}", headers=bearer(token), params=params, timeout=30)
        responses[f"GET {response.request.url.raw_path.decode()}"] = response.text
        return json_of(response)

    driver = SimulatorDriver(sim, SPEED)
    driver.start()
    try:
        wait_for("the daemon's API", lambda: httpx.get(f"{api}/readyz").status_code == 200, 90)
        outage = {"fault": "provider_outage", "provider": "llm-alpha", "severity": 1.0, "shape": "sudden"}
        json_of(httpx.post(f"{sim}/faults", json=outage))
        pending = wait_for("a proposal awaiting approval", lambda: get("/v1/approvals", VIEWER), 150, 0.5)
        incident = pending[0]["id"]
        # Secrets presented where they do not belong are refused (and the refusals audited).
        for wrong in (HMAC_KEY, LLM_API_KEY, WEBHOOK_SECRET, VIEWER):
            refused = httpx.post(
                f"{api}/v1/incidents/{incident}/approve", headers=bearer(wrong), json={"comment": "let me"}
            )
            responses[f"refused approve with {wrong[:6]}"] = refused.text
            assert refused.status_code in (401, 403), refused.text
        answered: set[str] = set()

        def settled() -> bool:
            """Approve whatever waits (an undo may ask again); done when every incident is final, one resolved."""
            for row in get("/v1/approvals", VIEWER):
                key = json.dumps(row, sort_keys=True)
                if key not in answered:
                    answered.add(key)
                    approved = httpx.post(
                        f"{api}/v1/incidents/{row['id']}/approve",
                        headers=bearer(APPROVER),
                        json={"comment": "go"},
                        timeout=30,
                    )
                    responses[f"POST approve #{len(answered)}"] = approved.text
            rows = get("/v1/incidents", VIEWER)
            return any(r["state"] == "resolved" and r["action"] for r in rows) and all(
                r["state"] in FINAL for r in rows
            )

        try:
            wait_for("the incidents to settle", settled, 180, 1.0)
        except AssertionError as exc:
            states = [(r["id"], r["state"], r["action"]) for r in get("/v1/incidents", VIEWER)]
            raise AssertionError(f"{exc}; incidents (id, state, action): {states}") from None
        get("/v1/incidents", VIEWER)
        get("/v1/approvals", APPROVER)
        get("/v1/constitution", OPERATOR)
        get("/v1/sources", VIEWER)
        audit = get("/v1/audit", AUDITOR, limit=1000)
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            responses[f"GET {path}"] = httpx.get(f"{api}{path}", timeout=30).text
        wait_for("the resolution's notification", lambda: any("resolved" in b for b in webhook.bodies), 30)
    finally:
        driver.stop()
        assert stop(daemon) == 0
    export = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "audit", "export", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, **secrets_env},
    ).stdout

    # The secrets were really in use on these paths, so searching for them means something.
    assert llm.bodies, "the LLM endpoint was never called"
    assert {h.get("authorization") for h in llm.headers} == {f"Bearer {LLM_API_KEY}"}
    diagnoses = [r["payload"]["diagnosis"] for r in audit if r["kind"] == "diagnosis"]
    assert diagnoses and diagnoses[0]["diagnoser"] == "llm", diagnoses  # accepted, not a fallback
    assert webhook.paths and all(WEBHOOK_SECRET in p for p in webhook.paths)
    assert {r["kind"] for r in audit} >= {"decision", "approval", "action_intent", "action_result"}
    assert answered, "an approval was given over the API"
    err_text, out_text = err_log.read_text(), out_log.read_text()
    assert "daemon.stopped" in err_text + out_text, "the logs searched cover the whole run"

    haystacks = {
        "daemon stdout": out_text,
        "daemon stderr": err_text,
        "audit export": export,
        "prompts sent to the LLM": "\n".join(llm.bodies),
        "webhook bodies": "\n".join(webhook.bodies),
        "webhook headers": json.dumps(webhook.headers),
        **responses,
    }
    haystacks |= {p.name: p.read_bytes().decode("latin-1") for p in tmp_path.glob("homeostat.db*")}
    leaks = [
        f"{name} in {where}" for name, secret in SECRETS.items() for where, text in haystacks.items() if secret in text
    ]
    assert leaks == []
