"""Every role against every authenticated endpoint: allowed roles pass, the rest get 403."""

from __future__ import annotations

import pytest

from tests.runtime.conftest import TOKENS, LiveApi, bearer

ANY = {"viewer", "approver", "operator", "auditor"}
ENDPOINTS: list[tuple[str, str, set[str], dict[str, object] | None]] = [
    ("GET", "/v1/incidents", ANY, None),
    ("GET", "/v1/incidents/inc-1", ANY, None),
    ("GET", "/v1/approvals", ANY, None),
    ("GET", "/v1/constitution", ANY, None),
    ("GET", "/v1/sources", ANY, None),
    ("GET", "/v1/audit", {"auditor"}, None),
    ("POST", "/v1/incidents/inc-1/approve", {"approver"}, {"comment": "ok"}),
    ("POST", "/v1/incidents/inc-1/reject", {"approver"}, {"reason": "no"}),
    ("POST", "/v1/push", {"operator"}, {"samples": []}),
    ("POST", "/v1/alertmanager", {"operator"}, {"version": "4", "status": "firing", "alerts": []}),
]


@pytest.mark.parametrize(("method", "path", "allowed", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_role_matrix(
    live_api: LiveApi, method: str, path: str, allowed: set[str], body: dict[str, object] | None
) -> None:
    """Each identity is let through exactly when it holds an allowed role; no token is always 401."""
    assert live_api.client.request(method, path, json=body).status_code == 401
    for name, (_token, roles) in TOKENS.items():
        live_api.service.add("inc-1")  # fresh, pending, for every caller
        r = live_api.client.request(method, path, json=body, headers=bearer(name))
        if allowed & set(roles):
            assert r.status_code not in (401, 403), (name, r.text)
            assert r.status_code < 300, (name, r.text)
        else:
            assert r.status_code == 403, (name, r.text)
    denied = [a for a in live_api.service.audit if a["kind"] == "access_denied"]
    expected = 1 + sum(1 for _t, roles in TOKENS.values() if not allowed & set(roles))
    assert len(denied) == expected
