"""schemathesis against the running daemon's own OpenAPI spec: no input, with any role's token, yields a 5xx.

The daemon runs as a subprocess (SQLite, push and Alertmanager sources, one token per role);
schemathesis generates requests for every operation in GET /openapi.json (positive and
negative), and each is sent with every role's token and with none. Every answer is below 500,
and every 4xx from the API says what is wrong. `HOMEOSTAT_SCHEMATHESIS_EXAMPLES` (default 25
per operation) scales the run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.reliability.daemon_proc import REPO, free_port, start_cli, stop, wait_for

EXAMPLES = int(os.environ.get("HOMEOSTAT_SCHEMATHESIS_EXAMPLES", "25"))
ROLE_TOKENS = {
    "viewer": "st-viewer-token",
    "approver": "st-approver-token",
    "operator": "st-operator-token",
    "auditor": "st-auditor-token",
}


@pytest.fixture(scope="module")
def daemon_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    tokens = tmp / "tokens.yaml"
    lines = ["identities:"]
    for role, token in ROLE_TOKENS.items():
        digest = hashlib.sha256(token.encode()).hexdigest()
        lines += [f"  - name: {role}-user", f"    roles: [{role}]", f"    token_sha256: {digest}"]
    tokens.write_text("\n".join(lines) + "\n")
    port = free_port()
    config = tmp / "homeostat.yaml"
    config.write_text(
        f"""database_url: sqlite:///{tmp / "homeostat.sqlite"}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: push
    max_buffered: 1000
  - type: alertmanager
auth:
  tokens_file: {tokens}
api:
  port: {port}
intervals: {{poll_s: 0.5}}
grace_period_s: 2
"""
    )
    proc = start_cli("run", "--config", str(config), log=tmp / "daemon.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the daemon's API", lambda: httpx.get(f"{url}/healthz").status_code == 200, 120)
        yield url
    finally:
        stop(proc)
    assert proc.returncode == 0, f"the daemon did not stop cleanly; see {tmp / 'daemon.log'}"


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_generated_request_yields_a_server_error(daemon_url: str, mode: GenerationMode) -> None:
    """Every generated request, with each role's token and none, is answered below 500 with a reason on 4xx."""
    operations = _operations(daemon_url)
    assert len(operations) >= 10, "the daemon's spec lists its operations"
    sent: dict[int, int] = {}
    with httpx.Client(base_url=daemon_url, timeout=30) as client:
        for operation in operations:

            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
            @given(case=operation.as_strategy(mode))
            def check(case: Any) -> None:
                kwargs = case.as_transport_kwargs(base_url=daemon_url)
                for token in [None, *ROLE_TOKENS.values()]:
                    headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
                    if token is not None:
                        headers["Authorization"] = f"Bearer {token}"
                    response = client.request(
                        kwargs["method"],
                        kwargs["url"],
                        params=kwargs.get("params"),
                        headers=headers,
                        content=_content(kwargs),
                    )
                    sent[response.status_code] = sent.get(response.status_code, 0) + 1
                    where = f"{case.method} {case.formatted_path} ({'no token' if token is None else token})"
                    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
                    if 400 <= response.status_code < 500 and case.formatted_path.startswith("/v1/"):
                        body = response.json()
                        assert body.get("error"), f"{where}: a 4xx without an error message: {response.text[:300]}"

            try:
                check()
            except Unsatisfiable:  # an operation without inputs has no negative cases
                assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no positive case could be generated"
    print(f"schemathesis {mode.value}: {sum(sent.values())} requests over {len(operations)} operations: {sent}")
    assert sum(sent.values()) >= len(operations) * 5


SQLITE_MAX_INT = 2**63 - 1


def test_audit_after_beyond_sqlite_integer_range_is_a_4xx(daemon_url: str) -> None:
    """An out-of-range `after` cursor on GET /v1/audit is a 4xx naming the parameter, not a 500."""
    headers = {"Authorization": f"Bearer {ROLE_TOKENS['auditor']}"}
    response = httpx.get(f"{daemon_url}/v1/audit", params={"after": str(SQLITE_MAX_INT + 1)}, headers=headers)
    assert response.status_code == 422 and "after" in response.text, response.text


def _content(kwargs: dict[str, Any]) -> bytes | None:
    import json

    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data") or kwargs.get("content")
    if data is None:
        return None
    return data if isinstance(data, bytes) else str(data).encode()
