"""The real daemon (`homeostat run`) SIGKILLed mid-incident and restarted on the same SQLite file.

Fewer kills than the forked harness (`test_chaos.py`): each restart is a full interpreter
start. After every restart the audit chain verifies (`homeostat audit verify`); at the end the
incident is final and its page (the escalation action) went out once.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.daemon_proc import REPO, free_port, start_cli, stop, wait_for

TOKEN = "daemon-kill-operator-token"
KILLS = 3


class _Pager(BaseHTTPRequestHandler):
    pages: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.pages.append(json.loads(self.rfile.read(length) or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def pager() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Pager.pages = []
    server = HTTPServer(("127.0.0.1", 0), _Pager)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Pager.pages
    server.shutdown()
    server.server_close()


def _verify(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "audit", "verify", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_daemon_killed_mid_incident_recovers_and_acts_once(
    tmp_path: Path, pager: tuple[str, list[dict[str, Any]]]
) -> None:
    """Three SIGKILLs of `homeostat run` while an incident settles and runs: chain verifies, one page, final state."""
    hook, pages = pager
    rng = random.Random(5)
    port = free_port()
    db = tmp_path / "homeostat.sqlite"
    tokens = tmp_path / "tokens.yaml"
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens.write_text(f"identities:\n  - name: otto\n    roles: [operator, viewer]\n    token_sha256: {digest}\n")
    config = tmp_path / "homeostat.yaml"
    config.write_text(
        f"""database_url: sqlite:///{db}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: alertmanager
auth:
  tokens_file: {tokens}
notifications:
  webhooks: ["{hook}"]
  states: [escalated]
api:
  port: {port}
intervals: {{poll_s: 0.2, approval_expiry_s: 0.5, verification_s: 1, checkpoint_s: 1}}
grace_period_s: 2
"""
    )
    api = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def start() -> subprocess.Popen[bytes]:
        proc = start_cli("run", "--config", str(config), log=tmp_path / "daemon.log")
        wait_for("the daemon's API", lambda: httpx.get(f"{api}/healthz").status_code == 200, 120)
        return proc

    daemon = start()
    try:
        alert = {
            "status": "firing",
            "labels": {"alertname": "PIIDetected", "service": "chat", "severity": "critical", "signal": "pii_alerts"},
            "annotations": {"summary": "PII in responses"},
            "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "fp-kill",
        }
        body = {"version": "4", "status": "firing", "receiver": "homeostat", "groupKey": "{}:{}", "alerts": [alert]}
        assert httpx.post(f"{api}/v1/alertmanager", json=body, headers=auth).status_code == 200
        wait_for("the incident to open", lambda: httpx.get(f"{api}/v1/incidents", headers=auth).json(), 30)
        for kill in range(KILLS):
            if kill < KILLS - 1:
                time.sleep(rng.uniform(2.0, 12.0))  # while the incident settles (60 s of wall clock)
            else:  # the last kill as soon as the graph has started on it
                wait_for(
                    "the incident's graph to start",
                    lambda: any(r["state"] != "open" for r in httpx.get(f"{api}/v1/incidents", headers=auth).json()),
                    120,
                    every=0.05,
                )
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
            verified = _verify(db)
            assert verified.returncode == 0, f"after kill {kill + 1}: {verified.stdout}{verified.stderr}"
            daemon = start()

        def final() -> list[dict[str, Any]] | None:
            rows = httpx.get(f"{api}/v1/incidents", headers=auth).json()
            done = rows and all(r["state"] in ("resolved", "failed", "rejected", "expired", "escalated") for r in rows)
            return rows if done else None

        rows = wait_for("the incident to reach a final state", final, 150, every=1.0)
        time.sleep(2.0)  # a duplicate page would be on its way by now
    finally:
        stop(daemon)
    assert [r["state"] for r in rows] == ["escalated"], rows
    assert len(pages) == 1, f"the escalation paged {len(pages)} times"
    verified = _verify(db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
