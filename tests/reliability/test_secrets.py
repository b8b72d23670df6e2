"""Secrets never leak: a daemon run with tokens, a webhook secret, an HMAC key and an LLM API key set.

The daemon runs as a subprocess at DEBUG log level; the test drives it through its API (push,
Alertmanager, approvals, audit reads, refused calls with wrong tokens) until notifications go
out, then searches the whole log, the audit export and the raw database file for every secret.
Here the LLM API key only sits in the daemon's environment (`homeostat run` has no diagnoser
setting, so nothing calls a model); tests/security/test_live_secrets.py sends it on a real
LLM call from the daemon and searches the webhook bodies and /v1 responses too.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.daemon_proc import REPO, free_port, start_cli, stop, wait_for

OPERATOR_TOKEN = "op-tok-5d1f0c9a8e7b6a5f4e3d2c1b"
APPROVER_TOKEN = "appr-tok-9c8b7a6f5e4d3c2b1a0f9e8d"
AUDITOR_TOKEN = "aud-tok-1a2b3c4d5e6f7a8b9c0d1e2f"
WEBHOOK_SECRET = "T000SECRET/B000SECRET/xoxbWebhookSecret42"
HMAC_KEY = "hmac-key-7f6e5d4c3b2a1908f7e6d5c4"
LLM_API_KEY = "sk-llm-key-0123456789abcdef0123456789"
SECRETS = (OPERATOR_TOKEN, APPROVER_TOKEN, AUDITOR_TOKEN, WEBHOOK_SECRET, HMAC_KEY, LLM_API_KEY)


class _Receiver(BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(self.path + " " + self.rfile.read(length).decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[str]]]:
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/{WEBHOOK_SECRET}", _Receiver.received
    server.shutdown()
    server.server_close()


def _tokens_file(path: Path) -> Path:
    entries = [
        ("otto", "operator", OPERATOR_TOKEN),
        ("ana", "approver", APPROVER_TOKEN),
        ("aud", "auditor", AUDITOR_TOKEN),
    ]
    lines = ["identities:"]
    for name, role, token in entries:
        lines += [
            f"  - name: {name}",
            f"    roles: [{role}]",
            f"    token_sha256: {hashlib.sha256(token.encode()).hexdigest()}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _alert(fingerprint: str, service: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "PIIDetected", "service": service, "severity": "critical", "signal": "pii_alerts"},
        "annotations": {"summary": "PII found in responses"},
        "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom/graph",
        "fingerprint": fingerprint,
    }


def test_no_secret_reaches_logs_audit_or_database(tmp_path: Path, webhook: tuple[str, list[str]]) -> None:
    """Tokens, the webhook secret, the HMAC key and the LLM API key appear in no log line, audit record or DB byte."""
    hook_url, received = webhook
    port = free_port()
    db = tmp_path / "homeostat.sqlite"
    config = tmp_path / "homeostat.yaml"
    config.write_text(
        f"""database_url: sqlite:///{db}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: push
  - type: alertmanager
tools:
  allowed_targets: ["*"]
auth:
  tokens_file: {_tokens_file(tmp_path / "tokens.yaml")}
notifications:
  webhooks: ["${{SLACK_WEBHOOK_URL}}"]
  states: [open, awaiting_approval, executing, failed, escalated, resolved]
api:
  port: {port}
intervals: {{poll_s: 0.2, approval_expiry_s: 0.5, verification_s: 1, checkpoint_s: 1}}
grace_period_s: 2
"""
    )
    env = {
        "SLACK_WEBHOOK_URL": hook_url,
        "HOMEOSTAT_AUDIT_HMAC_KEY": HMAC_KEY,
        "HOMEOSTAT_LLM_API_KEY": LLM_API_KEY,
        "HOMEOSTAT_LLM_API_KEY_ENV": "HOMEOSTAT_LLM_API_KEY",
        "OPENAI_API_KEY": LLM_API_KEY,
    }
    log = tmp_path / "daemon.log"
    daemon = start_cli("run", "--config", str(config), "--log-level", "DEBUG", log=log, env=env)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for("the daemon's API", lambda: httpx.get(f"{api}/healthz").status_code == 200, 120)
        op = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        with httpx.Client(base_url=api, timeout=10) as client:
            now = datetime.now(UTC).isoformat()
            push = {"samples": [{"service": "chat", "signal": "error_rate", "ts": now, "value": 0.01}]}
            assert client.post("/v1/push", json=push, headers=op).status_code == 202
            payload = {
                "version": "4",
                "status": "firing",
                "receiver": "homeostat",
                "groupKey": "{}:{}",
                "alerts": [_alert("fp-secret-test", "chat")],
            }
            assert client.post("/v1/alertmanager", json=payload, headers=op).status_code == 200
            # Refused calls: a token of the wrong role, and secrets presented where they do not belong.
            assert (
                client.post("/v1/push", json=push, headers={"Authorization": f"Bearer {APPROVER_TOKEN}"}).status_code
                == 403
            )
            assert client.get("/v1/audit", headers={"Authorization": f"Bearer {HMAC_KEY}"}).status_code == 401
            assert client.get("/v1/incidents", headers={"Authorization": f"Bearer {LLM_API_KEY}x"}).status_code == 401
            viewer = {"Authorization": f"Bearer {APPROVER_TOKEN}"}

            def diagnosed() -> bool:  # the incident settles for 60 s (wall clock), then the graph runs
                rows = client.get("/v1/incidents", headers=viewer).json()
                return bool(rows) and all(r["state"] not in ("open", "diagnosing") for r in rows)

            wait_for("the incident to be diagnosed and acted on", diagnosed, 150, every=1.0)
            wait_for("a notification to the webhook", lambda: received, 30)
            for row in client.get("/v1/approvals", headers={"Authorization": f"Bearer {APPROVER_TOKEN}"}).json():
                client.post(
                    f"/v1/incidents/{row['id']}/approve",
                    json={"comment": "ok"},
                    headers={"Authorization": f"Bearer {APPROVER_TOKEN}"},
                )
            audit_api = client.get("/v1/audit", headers={"Authorization": f"Bearer {AUDITOR_TOKEN}"})
            assert audit_api.status_code == 200
    finally:
        stop(daemon)
    export = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "audit", "export", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, **env},
    ).stdout
    log_text = log.read_text()
    assert "access_denied" in export or "denied" in export, "refused calls should be audited (and searched)"
    assert "incident.opened" in log_text and "daemon.stopped" in log_text, "the log searched covers the whole run"
    assert '"kind":"action_result"' in export, "the escalation (a page through the webhook) ran and was audited"
    assert any(WEBHOOK_SECRET in r for r in received), "the webhook secret was in use (its path was called)"
    haystacks = {"daemon log": log_text, "audit export": export, "GET /v1/audit": audit_api.text}
    haystacks |= {p.name: p.read_bytes().decode("latin-1") for p in tmp_path.glob("homeostat.sqlite*")}
    leaks = [f"{secret[:8]}… in {where}" for secret in SECRETS for where, text in haystacks.items() if secret in text]
    assert leaks == []
