"""The console over real HTTP on loopback (no browser): sign-in, who may answer, CSRF, errors,
the constitution page and what the pages are allowed to load."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from domain import IncidentState
from tests.console._world import APPROVER_TOKEN, AUDITOR_TOKEN, VIEWER_TOKEN, World, build_world, serving
from tests.console.conftest import failover_pending

FINAL = {IncidentState.RESOLVED.value, IncidentState.ESCALATED.value, IncidentState.FAILED.value}


@pytest.fixture
def served(paused_outage: tuple[World, str]) -> tuple[World, str]:
    """The shared world with the failover awaiting approval; tests here must not answer it."""
    return paused_outage


def _origin(world: World) -> str:
    return world.url.removesuffix("/console")


Connect = Callable[..., httpx.Client]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """`connect(world, token=None)`: an HTTP client, signed in when given a token; closed after the test."""
    clients: list[httpx.Client] = []

    def make(world: World, token: str | None = None) -> httpx.Client:
        client = httpx.Client(base_url=_origin(world), follow_redirects=False, timeout=10)
        clients.append(client)
        if token is not None:
            response = client.post("/console/login", data={"token": token, "next": "/console/incidents"})
            assert response.status_code == 303, response.text
        return client

    yield make
    for client in clients:
        client.close()


def _csrf(client: httpx.Client, path: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(path).text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def _still_pending(world: World, incident_id: str) -> None:
    world.step()
    assert world.incident(incident_id)["state"] == IncidentState.AWAITING_APPROVAL.value
    assert "approval" not in [r.kind for r in world.loop.audit.records(incident_id=incident_id)]


# -- signing in ------------------------------------------------------------------------------


def test_pages_redirect_to_sign_in_without_a_session(served: tuple[World, str], connect: Connect) -> None:
    """Every page sends a visitor without a session to the sign-in form, remembering where they were going."""
    world, incident_id = served
    client = connect(world)
    for path in ("/console/incidents", f"/console/incidents/{incident_id}", "/console/constitution"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=%2Fconsole%2F")
    assert client.get(f"/console/incidents/{incident_id}/summary").status_code == 401


def test_unknown_token_is_refused_with_a_message(served: tuple[World, str], connect: Connect) -> None:
    """A wrong token answers 401 with the reason on the form and sets no cookie."""
    world, _ = served
    response = connect(world).post("/console/login", data={"token": "not-a-token"})
    assert response.status_code == 401
    assert "unknown or revoked token" in response.text
    assert "set-cookie" not in response.headers


def test_session_cookie_is_httponly_strict_and_scoped_to_the_console(
    served: tuple[World, str], connect: Connect
) -> None:
    """The cookie holding the token is HttpOnly, SameSite=Strict and only sent to /console."""
    world, _ = served
    response = connect(world).post("/console/login", data={"token": VIEWER_TOKEN})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie


def test_a_cookie_whose_token_no_longer_resolves_signs_you_out(served: tuple[World, str], connect: Connect) -> None:
    """A session token the authority does not know (revoked) is dropped and the user sent to sign in again."""
    world, _ = served
    client = connect(world)
    client.cookies.set("homeostat_console", "revoked-token", domain="127.0.0.1", path="/console")
    response = client.get("/console/incidents")
    assert response.status_code == 303 and "reason=expired" in response.headers["location"]
    assert 'homeostat_console=""' in response.headers.get("set-cookie", "")


def test_sign_in_never_redirects_off_the_console(served: tuple[World, str], connect: Connect) -> None:
    """The `next` field cannot send a signed-in user to another site."""
    world, _ = served
    for target in ("https://evil.example/", "//evil.example/console/x", "/console//evil.example"):
        response = connect(world).post("/console/login", data={"token": VIEWER_TOKEN, "next": target})
        assert response.headers["location"] == "/console/incidents"


# -- who may answer --------------------------------------------------------------------------


def test_viewer_forged_approve_and_reject_are_refused(served: tuple[World, str], connect: Connect) -> None:
    """A viewer's hand-made approve/reject posts (with a valid CSRF token) answer 403 naming the missing role."""
    world, incident_id = served
    client = connect(world, VIEWER_TOKEN)
    csrf = _csrf(client, f"/console/incidents/{incident_id}")
    for verb in ("approve", "reject"):
        response = client.post(f"/console/incidents/{incident_id}/{verb}", data={"csrf": csrf, "comment": "x"})
        assert response.status_code == 403
        assert "needs the approver role" in response.text and "vic.viewer@sre" in response.text
    _still_pending(world, incident_id)


def test_auditor_sees_the_incident_but_not_the_buttons(served: tuple[World, str], connect: Connect) -> None:
    """Roles other than approver (here auditor) get the page without the approve form."""
    world, incident_id = served
    page = connect(world, AUDITOR_TOKEN).get(f"/console/incidents/{incident_id}").text
    assert 'id="approve"' not in page and "approving needs the approver role" in page
    approver_page = connect(world, APPROVER_TOKEN).get(f"/console/incidents/{incident_id}").text
    assert 'id="approve"' in approver_page and 'id="reject"' in approver_page


def test_approve_without_csrf_token_is_refused(served: tuple[World, str], connect: Connect) -> None:
    """An approver's cookie alone is not enough: a post without the page's CSRF token answers 403."""
    world, incident_id = served
    client = connect(world, APPROVER_TOKEN)
    for form in ({"comment": "x"}, {"comment": "x", "csrf": "0" * 64}):
        response = client.post(f"/console/incidents/{incident_id}/approve", data=form)
        assert response.status_code == 403 and "CSRF" in response.text
    _still_pending(world, incident_id)


def test_approve_posted_from_another_site_is_refused(served: tuple[World, str], connect: Connect) -> None:
    """A cross-site form (Origin of another host) answers 403 even with a valid CSRF token."""
    world, incident_id = served
    client = connect(world, APPROVER_TOKEN)
    csrf = _csrf(client, f"/console/incidents/{incident_id}")
    response = client.post(
        f"/console/incidents/{incident_id}/approve",
        data={"csrf": csrf, "comment": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403 and "another site" in response.text
    _still_pending(world, incident_id)


def test_reject_needs_a_reason(served: tuple[World, str], connect: Connect) -> None:
    """Rejecting with an empty comment answers 422 on the incident page and records nothing."""
    world, incident_id = served
    client = connect(world, APPROVER_TOKEN)
    csrf = _csrf(client, f"/console/incidents/{incident_id}")
    response = client.post(f"/console/incidents/{incident_id}/reject", data={"csrf": csrf, "comment": "  "})
    assert response.status_code == 422
    assert "a reason is required to reject" in response.text
    _still_pending(world, incident_id)


def test_unknown_incident_is_a_404_page(served: tuple[World, str], connect: Connect) -> None:
    """An incident id that does not exist answers 404 naming it."""
    world, _ = served
    response = connect(world, VIEWER_TOKEN).get("/console/incidents/inc-nope")
    assert response.status_code == 404 and "inc-nope" in response.text


def test_unknown_state_filter_is_a_400(served: tuple[World, str], connect: Connect) -> None:
    """A state filter outside the lifecycle answers 400 naming the bad value."""
    world, _ = served
    response = connect(world, VIEWER_TOKEN).get("/console/incidents", params={"state": "on_fire"})
    assert response.status_code == 400 and "on_fire" in response.text


def test_state_filter_lists_only_that_state(served: tuple[World, str], connect: Connect) -> None:
    """?state=awaiting_approval lists the pending failover and nothing in other states."""
    world, incident_id = served
    page = connect(world, VIEWER_TOKEN).get("/console/incidents", params={"state": "awaiting_approval"}).text
    states = set(re.findall(r'data-state="([a-z_]+)"', page))
    assert states == {"awaiting_approval"} and incident_id in page


# -- pages -----------------------------------------------------------------------------------


def test_incident_page_shows_charts_diagnosis_rule_and_timeline(served: tuple[World, str], connect: Connect) -> None:
    """The pending incident's page carries SVG charts with onset and anomalies, the cause, the rule and the log."""
    world, incident_id = served
    page = connect(world, VIEWER_TOKEN).get(f"/console/incidents/{incident_id}").text
    assert page.count('<svg class="chart"') >= 1
    assert 'class="onset-line"' in page and 'class="anomaly-marker"' in page
    assert "provider_degradation" in page
    assert "failover-needs-one-approver" in page and "Moving a service to its backup provider" in page
    assert "of fleet traffic" in page
    assert "DECISION" in page.upper() and "APPROVAL by rule failover-needs-one-approver" in page


def test_pages_load_nothing_from_elsewhere(served: tuple[World, str], connect: Connect) -> None:
    """Pages reference only the console's own assets, and the CSP forbids anything else."""
    world, incident_id = served
    client = connect(world, APPROVER_TOKEN)
    for path in ("/console/incidents", f"/console/incidents/{incident_id}", "/console/constitution"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert all(s.startswith(("/console", "#", "data:")) for s in sources), sources
    assert client.get("/console/static/console.js").status_code == 200
    assert client.get("/console/static/../_app.py").status_code == 404


def test_constitution_page_shows_digest_rules_and_a_refused_reload(served: tuple[World, str], connect: Connect) -> None:
    """The constitution page names the digest in force, every rule, and a refused reload with its error."""
    world, _ = served
    client = connect(world, VIEWER_TOKEN)
    page = client.get("/console/constitution").text
    assert world.loop.constitution.digest in page
    for rule in world.loop.constitution.rules:
        assert f'id="rule-{rule.id}"' in page
    world.status.constitution_reload_failed(error="constitution.yaml:12: rules.0.verdict: bad", at=world.clock.now())
    page = client.get("/console/constitution").text
    assert "refused" in page and "constitution.yaml:12: rules.0.verdict: bad" in page


def test_incident_summary_answers_state_for_auto_refresh(served: tuple[World, str], connect: Connect) -> None:
    """The small JSON the incident page polls reports the state and the last update."""
    world, incident_id = served
    summary = connect(world, VIEWER_TOKEN).get(f"/console/incidents/{incident_id}/summary").json()
    assert summary["state"] == "awaiting_approval" and summary["waiting_for"] == "approval"


# -- answering -------------------------------------------------------------------------------


def test_approver_rejects_with_a_reason_and_the_incident_closes_rejected(
    outage: tuple[World, str], connect: Connect
) -> None:
    """A reject form with a reason is recorded under the approver's name and the incident ends rejected."""
    world, incident_id = outage
    client = connect(world, APPROVER_TOKEN)
    csrf = _csrf(client, f"/console/incidents/{incident_id}")
    response = client.post(
        f"/console/incidents/{incident_id}/reject",
        data={"csrf": csrf, "comment": "llm-beta is under maintenance"},
        headers={"Origin": _origin(world)},
    )
    assert response.status_code == 303 and response.headers["location"].endswith("?done=rejected")
    world.run_until(lambda: world.incident(incident_id)["state"] != IncidentState.AWAITING_APPROVAL.value)
    assert world.incident(incident_id)["state"] == IncidentState.REJECTED.value
    page = client.get(f"/console/incidents/{incident_id}").text
    assert "REJECTED by dana.okafor@sre" in page and "llm-beta is under maintenance" in page
    assert world.fleet.applied_actions == []
    again = client.post(f"/console/incidents/{incident_id}/approve", data={"csrf": csrf, "comment": "late"})
    assert again.status_code == 409 and "not awaiting approval" in again.text


def test_a_failover_that_helped_without_full_recovery_reads_improved_action_kept(
    tmp_path: Path, connect: Connect
) -> None:
    """After an approved failover onto a slower backup, the page says the action was kept, not "Not recovered"."""
    world = build_world(tmp_path / "console.sqlite", "provider_outage_after_benign_deploy")
    with serving(world):
        world.run_until(lambda: failover_pending(world) is not None)
        pending = failover_pending(world)
        assert pending is not None
        client = connect(world, APPROVER_TOKEN)
        csrf = _csrf(client, f"/console/incidents/{pending['id']}")
        client.post(
            f"/console/incidents/{pending['id']}/approve",
            data={"csrf": csrf, "comment": "go"},
            headers={"Origin": _origin(world)},
        )
        world.run_until(lambda: world.incident(pending["id"])["state"] in FINAL)
        verification = world.incident(pending["id"])["verification"]
        assert (verification["recovered"], verification["improved"]) == (False, True)
        page = client.get(f"/console/incidents/{pending['id']}").text
        assert "Improved, action kept: improved, not recovered" in page and "Not recovered" not in page
