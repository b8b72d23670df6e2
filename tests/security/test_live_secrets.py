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
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.simulate import SimulatorDriver
from tests._daemon_harness import (
    REPO,
    cli,
    free_port,
    json_of,
    procs,
    scenario_without_injections,
    stop,
    tokens_file,
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


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Recorder:
    """What a loopback HTTP server saw: paths, headers (names lower-cased) and bodies."""

    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)


def _serve(recorder: Recorder, answer: Any) -> ThreadingHTTPServer:
    """A loopback server recording every POST and replying with `answer(body)` as JSON."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            recorder.paths.append(self.path)
            recorder.headers.append({k.lower(): v for k, v in self.headers.items()})
            recorder.bodies.append(body)
            data = json.dumps(answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _chat_completion(body: str) -> dict[str, Any]:
    """An OpenAI chat completion naming the incident's first anomalous series as a provider problem."""
    request = json.loads(body)
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
    return {
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
def llm() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    server = _serve(recorder, _chat_completion)
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", recorder
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    server = _serve(recorder, lambda _body: {"ok": True})
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/{WEBHOOK_SECRET}", recorder
    server.shutdown()
    server.server_close()


def _config(tmp_path: Path, *, sim: str, api_port: int, db: Path, llm_url: str) -> Path:
    tokens = tokens_file(
        tmp_path,
        {
            "ana": (APPROVER, ["approver"]),
            "vic": (VIEWER, ["viewer"]),
            "aud": (AUDITOR, ["auditor"]),
            "otto": (OPERATOR, ["operator"]),
        },
    )
    path = tmp_path / "homeostat.yaml"
    path.write_text(
        f"""database_url: sqlite:///{db}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: simulator
    url: {sim}
    interval_s: 0.5
tools:
  simulator_url: {sim}
  allowed_targets: ["*"]
auth:
  tokens_file: {tokens}
notifications:
  webhooks: ["${{LIVE_WEBHOOK_URL}}"]
  states: [open, awaiting_approval, executing, verifying, resolved, failed, escalated]
api:
  port: {api_port}
intervals: {{poll_s: 0.5, approval_expiry_s: 0.5, verification_s: 0.5, checkpoint_s: 2}}
diagnoser:
  kind: llm
  base_url: {llm_url}
  model: loopback-model
  api_key_env: LIVE_LLM_API_KEY
  timeout_s: 30
grace_period_s: 5
"""
    )
    return path


def test_no_secret_leaks_from_a_live_llm_diagnosed_incident(
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
    llm: tuple[str, Recorder],
    webhook: tuple[str, Recorder],
) -> None:
    """An LLM-diagnosed, approved, recovered incident leaves no secret in logs, audit, webhooks, API or DB."""
    llm_url, llm_seen = llm
    hook_url, hook_seen = webhook
    sim_port, api_port = free_port(), free_port()
    procs.append(
        cli("sim", "serve", "--scenario", str(scenario_without_injections("provider_outage", tmp_path)),
            "--port", str(sim_port), "--speed", "0", log=tmp_path / "sim.log")
    )  # fmt: skip
    sim = f"http://127.0.0.1:{sim_port}"
    wait_for("the simulator", lambda: httpx.get(f"{sim}/healthz").status_code == 200, 60)
    json_of(httpx.post(f"{sim}/advance", json={"seconds": 40 * 60}, timeout=120))  # detector history
    db = tmp_path / "homeostat.db"
    config = _config(tmp_path, sim=sim, api_port=api_port, db=db, llm_url=llm_url)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "LIVE_WEBHOOK_URL": hook_url,
        "HOMEOSTAT_AUDIT_HMAC_KEY": HMAC_KEY,
        "LIVE_LLM_API_KEY": LLM_API_KEY,
    }
    out_log, err_log = tmp_path / "daemon.stdout", tmp_path / "daemon.stderr"
    command = [sys.executable, "-m", "runtime.cli", "run", "--config", str(config)]
    command += ["--clock", "simulator", "--log-level", "DEBUG"]
    with out_log.open("wb") as out, err_log.open("wb") as err:
        daemon = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, env=env)
    procs.append(daemon)
    api = f"http://127.0.0.1:{api_port}"
    responses: dict[str, str] = {}

    def get(path: str, token: str, **params: Any) -> Any:
        response = httpx.get(f"{api}{path}", headers=_auth(token), params=params, timeout=30)
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
                f"{api}/v1/incidents/{incident}/approve", headers=_auth(wrong), json={"comment": "let me"}
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
                        headers=_auth(APPROVER),
                        json={"comment": "go"},
                        timeout=30,
                    )
                    responses[f"POST approve #{len(answered)}"] = approved.text
            rows = get("/v1/incidents", VIEWER)
            return any(r["state"] == "resolved" and r["action"] for r in rows) and all(
                r["state"] in FINAL for r in rows
            )

        wait_for("the incidents to settle", settled, 180, 1.0)
        get("/v1/incidents", VIEWER)
        get("/v1/approvals", APPROVER)
        get("/v1/constitution", OPERATOR)
        get("/v1/sources", VIEWER)
        audit = get("/v1/audit", AUDITOR, limit=1000)
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            responses[f"GET {path}"] = httpx.get(f"{api}{path}", timeout=30).text
        wait_for("the resolution's notification", lambda: any("resolved" in b for b in hook_seen.bodies), 30)
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
        env=env,
    ).stdout

    # The secrets were really in use on these paths, so searching for them means something.
    assert llm_seen.bodies, "the LLM endpoint was never called"
    assert {h.get("authorization") for h in llm_seen.headers} == {f"Bearer {LLM_API_KEY}"}
    diagnoses = [r["payload"]["diagnosis"] for r in audit if r["kind"] == "diagnosis"]
    assert diagnoses and diagnoses[0]["diagnoser"] == "llm", diagnoses  # accepted, not a fallback
    assert hook_seen.paths and all(WEBHOOK_SECRET in p for p in hook_seen.paths)
    assert {r["kind"] for r in audit} >= {"decision", "approval", "action_intent", "action_result"}
    assert answered, "an approval was given over the API"
    err_text, out_text = err_log.read_text(), out_log.read_text()
    assert "daemon.stopped" in err_text + out_text, "the logs searched cover the whole run"

    haystacks = {
        "daemon stdout": out_text,
        "daemon stderr": err_text,
        "audit export": export,
        "prompts sent to the LLM": "\n".join(llm_seen.bodies),
        "webhook bodies": "\n".join(hook_seen.bodies),
        "webhook headers": json.dumps(hook_seen.headers),
        **responses,
    }
    haystacks |= {p.name: p.read_bytes().decode("latin-1") for p in tmp_path.glob("homeostat.db*")}
    leaks = [
        f"{name} in {where}" for name, secret in SECRETS.items() for where, text in haystacks.items() if secret in text
    ]
    assert leaks == []
