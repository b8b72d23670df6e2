"""The console in headless Chromium: an approver approves the pending failover and watches the
incident resolve; a viewer sees no approve button and a forged approval is refused."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from domain import IncidentState
from tests.console._world import APPROVER_TOKEN, VIEWER_TOKEN, World

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

if not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing: install Debian's chromium package", pytrace=False)
    pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium); browser tests skipped", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402 - only once Chromium is known present


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context; request it after the served world so it closes before the server stops."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"the page logged errors: {errors}"


def sign_in(page: Page, world: World, token: str) -> None:
    page.goto(f"{world.url}/incidents")
    expect(page).to_have_url(f"{world.url}/login?next=%2Fconsole%2Fincidents")
    page.fill("#token", token)
    page.click("#sign-in")
    expect(page).to_have_url(f"{world.url}/incidents")


def test_approver_approves_the_failover_and_watches_it_resolve(outage: tuple[World, str], page: Page) -> None:
    """An approver signs in, approves with a comment, and the open page turns resolved as the loop runs."""
    world, incident_id = outage
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(page, world, APPROVER_TOKEN)
    row = page.locator(f"tr[data-incident='{incident_id}']")
    expect(row.locator(".badge")).to_have_text("awaiting approval")
    expect(row).to_contain_text("failover_provider")
    page.screenshot(path=str(ARTIFACTS / "incident-list.png"), full_page=True)

    row.locator("a").first.click()
    expect(page.locator("#state")).to_have_text("awaiting approval")
    expect(page.locator("#matched-rules")).to_contain_text("failover-needs-one-approver")
    expect(page.locator("#blast-radius")).to_contain_text("% of fleet traffic")
    expect(page.locator("#diagnosis")).to_contain_text("provider_degradation")
    assert page.locator("svg.chart").count() >= 2, "both services' affected signals are charted"
    expect(page.locator("svg.chart .anomaly-marker").first).to_be_attached()
    expect(page.locator("svg.chart .onset-line").first).to_be_attached()
    page.screenshot(path=str(ARTIFACTS / "incident-awaiting-approval.png"), full_page=True)

    page.fill("#comment", "status page confirms llm-alpha outage; failing over")
    page.click("#approve")
    expect(page.locator("#done")).to_contain_text("approved")
    expect(page.locator("#approve")).to_have_count(1)  # still pending until the loop's next tick

    world.run_until(
        lambda: (
            world.incident(incident_id)["state"]
            in {
                s.value
                for s in IncidentState
                if s in {IncidentState.RESOLVED, IncidentState.FAILED, IncidentState.ESCALATED}
            }
        )
    )
    expect(page.locator("#state")).to_have_text("resolved")  # the page noticed by itself
    expect(page.locator("#approve")).to_have_count(0)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("APPROVED by dana.okafor@sre")
    expect(timeline).to_contain_text("status page confirms llm-alpha outage")
    expect(timeline).to_contain_text("failover_provider on")
    expect(timeline).to_contain_text("RESOLVED")
    expect(page.locator("svg.chart .action-line").first).to_be_attached()
    expect(page.locator("svg.chart .recovery-window").first).to_be_attached()
    page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)

    page.goto(f"{world.url}/incidents")
    expect(page.locator(f"tr[data-incident='{incident_id}'] .badge")).to_have_text("resolved")
    page.screenshot(path=str(ARTIFACTS / "incidents.png"), full_page=True)


def test_viewer_sees_no_approve_button_and_a_forged_approval_is_refused(
    paused_outage: tuple[World, str], page: Page
) -> None:
    """A viewer gets no approve form; a hand-made approve POST (console or API) answers 403 and changes nothing."""
    world, incident_id = paused_outage
    sign_in(page, world, VIEWER_TOKEN)
    page.click(f"tr[data-incident='{incident_id}'] a")
    expect(page.locator("#state")).to_have_text("awaiting approval")
    expect(page.locator("#approve")).to_have_count(0)
    expect(page.locator("#answer-form")).to_have_count(0)
    expect(page.locator("#no-approve")).to_contain_text("approving needs the approver role")

    csrf = page.locator("input[name=csrf]").first.get_attribute("value")  # the viewer's own sign-out token
    forged = page.request.post(
        f"{world.url}/incidents/{incident_id}/approve",
        form={"csrf": csrf or "", "comment": "forged"},
        headers={"Origin": world.url.removesuffix("/console")},
    )
    assert forged.status == 403
    assert "approver role" in forged.text()

    api = httpx.post(
        f"{world.url.removesuffix('/console')}/v1/incidents/{incident_id}/approve",
        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
        json={"comment": "forged"},
    )
    assert api.status_code == 403

    world.step()
    world.step()
    assert world.incident(incident_id)["state"] == IncidentState.AWAITING_APPROVAL.value
    kinds = [r.kind for r in world.loop.audit.records(incident_id=incident_id)]
    assert "approval" not in kinds
