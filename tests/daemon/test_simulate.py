"""`homeostat run --simulate`: a person can try the approval flow with the printed tokens."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests._daemon_harness import cli, free_port, json_of, procs, stop, wait_for

__all__ = ["procs"]  # the fixture, re-exported for pytest


def _banner(stdout: Path) -> dict[str, str] | None:
    text = stdout.read_text()
    found = dict(re.findall(r"^\s+(approver token|viewer token|simulator):\s+(\S+)", text, re.MULTILINE))
    return found if len(found) == 3 else None


def test_simulate_prints_working_tokens_and_the_approver_can_approve(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The printed approver token approves the scenario's failover, the viewer token only reads, none is refused."""
    port = free_port()
    stdout = tmp_path / "stdout.txt"
    daemon = cli(
        "run", "--simulate", "--port", str(port), "--speed", "20", "--scenario", "provider_outage",
        log=tmp_path / "stderr.log", stdout=stdout,
    )  # fmt: skip
    procs.append(daemon)
    banner = wait_for("the printed tokens", lambda: _banner(stdout), 90)
    approver = {"Authorization": f"Bearer {banner['approver token']}"}
    viewer = {"Authorization": f"Bearer {banner['viewer token']}"}
    api = f"http://127.0.0.1:{port}"
    wait_for("the API", lambda: httpx.get(f"{api}/healthz").status_code == 200, 90)

    assert httpx.get(f"{api}/v1/approvals").status_code == 401
    assert httpx.get(f"{api}/v1/approvals", headers={"Authorization": "Bearer not-a-token"}).status_code == 401

    def pending() -> dict[str, Any] | None:
        rows = json_of(httpx.get(f"{api}/v1/approvals", headers=viewer))
        return rows[0] if rows else None

    # The scenario's provider outage fires shortly after start; failing over needs an approver.
    incident = wait_for("the scenario's failover to await approval", pending, 120, 0.5)
    assert incident["action"] == "failover_provider"
    url = f"{api}/v1/incidents/{incident['id']}/approve"
    assert httpx.post(url, headers=viewer, json={"comment": "viewer tries"}).status_code == 403
    answer = json_of(httpx.post(url, headers=approver, json={"comment": "by hand"}))
    assert answer["by"] == "you-approver"

    def executed() -> dict[str, Any] | None:
        row = json_of(httpx.get(f"{api}/v1/incidents/{incident['id']}", headers=viewer))
        return row if row["state"] in {"executing", "verifying", "resolved"} else None

    wait_for("the approved failover to run", executed, 60, 0.5)
    assert stop(daemon) == 0
    try:  # the simulator child stops with the daemon
        httpx.get(f"{banner['simulator']}/healthz", timeout=2)
        reachable = True
    except httpx.HTTPError:
        reachable = False
    assert not reachable, "the simulator outlived the daemon"
