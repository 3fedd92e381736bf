"""The host dashboard in a real browser (Debian's chromium driven by playwright), phone-sized:
from the host invite to removing an attendee, with the page's own script and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

from tests.fixtures.browser import PHONE
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.integration.journeys import admit, new_room

pytestmark = pytest.mark.slow

SCREENSHOT = Path(os.environ.get("MEETGATE_SCREENSHOT_DIR", "/tmp")) / "meetgate-dashboard.png"


class BrowserLog:
    """Every URL the page requested and every console error (CSP violations land there)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        # The browser asks for /favicon.ico by itself; the gate answers it like any Jitsi path.
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            self.errors.append(f"{message.text} ({message.location['url']})")


@pytest.fixture
def phone(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[tuple[Page, BrowserLog]]:
    """A phone-sized page; `@pytest.mark.parametrize("phone", [False], indirect=True)` turns
    its script off."""
    script = bool(getattr(request, "param", True))
    log = BrowserLog()
    context = chromium.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        java_script_enabled=script,
    )
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("request", lambda request: log.requests.append(request.url))
        page.on("console", log.console)
        page.on("pageerror", lambda error: log.errors.append(str(error)))
        yield page, log
    finally:
        context.close()


def open_dashboard(page: Page, gateway: GatewayServer, room: str) -> None:
    """Follow a fresh host invite link to the dashboard, as a host would."""
    link = gateway.invite_token(gateway.create_invite(room, "Hilde Host", role="host"))
    page.goto(f"{gateway.url}/j/{link}")
    page.get_by_role("button", name="Open the host dashboard").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}")


def test_host_removes_an_attendee_from_the_dashboard(
    gateway: GatewayServer, phone: tuple[Page, BrowserLog]
) -> None:
    page, log = phone
    room = new_room(gateway)
    ada = admit(gateway, room, "Ada Attendee")
    open_dashboard(page, gateway, room)

    participants = page.locator("#participants > li")
    ada_row = participants.filter(has_text="Ada Attendee")
    expect(ada_row).to_have_count(1)
    expect(ada_row.locator('[data-slot="address"]')).to_have_count(0)
    expect(ada_row).not_to_contain_text("127.0.0")
    expect(participants.filter(has_text="Hilde Host").locator('[data-slot="you"]')).to_be_visible()
    # Hosts cannot remove themselves: no buttons on their own card.
    expect(participants.filter(has_text="Hilde Host").get_by_role("button")).to_have_count(0)

    # The roster is live: someone admitted after the page loaded shows up by itself.
    admit(gateway, room, "Bob Latecomer")
    expect(participants.filter(has_text="Bob Latecomer")).to_have_count(1)
    expect(page.locator("#participant-count")).to_have_text("3")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Saying no to the question changes nothing.
    page.once("dialog", lambda dialog: _answer(dialog, log, accept=False))
    ada_row.get_by_role("button", name="Remove", exact=True).click()
    expect(page.locator("#notice")).to_be_hidden()
    expect(ada_row).to_have_count(1)

    page.once("dialog", lambda dialog: _answer(dialog, log, accept=True))
    ada_row.get_by_role("button", name="Remove", exact=True).click()
    expect(ada_row).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("Ada Attendee was removed")
    expect(page.locator("#audit")).to_contain_text("Hilde Host revoke: Ada Attendee")
    assert log.dialogs == ["Remove Ada Attendee from the meeting?"] * 2

    with httpx.Client(
        base_url=gateway.url, trust_env=False, cookies=ada.cookies, verify=TLS
    ) as client:
        after = client.get(f"/{room}")
    assert after.status_code == 403
    assert "A host removed you" in after.text

    foreign = [url for url in log.requests if not url.startswith(gateway.url + "/")]
    assert foreign == []
    assert f"{gateway.url}/_meetgate/static/host.js" in log.requests
    assert any(url.endswith(f"/_meetgate/host/{room}/roster") for url in log.requests)
    assert log.errors == []


def test_dashboard_fits_a_phone_screen(
    gateway: GatewayServer, phone: tuple[Page, BrowserLog]
) -> None:
    page, log = phone
    room = new_room(gateway)
    admit(gateway, room, "Ada Attendee with a rather long name, as some people have")
    open_dashboard(page, gateway, room)
    expect(page.locator("#participants > li")).to_have_count(2)
    # Nothing sticks out sideways, and the buttons are big enough to hit with a thumb.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    for button in page.get_by_role("button").all():
        if button.is_visible():
            box = button.bounding_box()
            assert box is not None and box["height"] >= 36, button.text_content()
    expect(page.get_by_role("button", name="Emergency lockdown")).to_be_visible()
    assert log.errors == []


@pytest.mark.parametrize("phone", [False], indirect=True)
def test_without_script_every_action_goes_through_a_confirmation_page(
    gateway: GatewayServer, phone: tuple[Page, BrowserLog]
) -> None:
    page, log = phone
    room = new_room(gateway)
    ada = admit(gateway, room, "Ada Attendee")
    open_dashboard(page, gateway, room)
    ada_row = page.locator("#participants > li").filter(has_text="Ada Attendee")
    ada_row.locator("select").select_option("1d")
    ada_row.get_by_role("button", name="Remove and ban").click()
    expect(page.get_by_role("heading")).to_have_text("Remove and ban Ada Attendee for 1 day?")
    page.screenshot(path=str(SCREENSHOT.with_name("meetgate-confirm.png")), full_page=True)
    page.get_by_role("button", name="Remove and ban").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}")
    expect(page.locator("#participants > li")).to_have_count(1)
    expect(page.locator("#audit")).to_contain_text("ban")

    page.get_by_role("button", name="Lock", exact=True).click()
    page.get_by_role("button", name="Lock", exact=True).click()  # the confirmation page's button
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}")
    expect(page.locator("#room-state")).to_contain_text("Locked")
    expect(page.get_by_role("button", name="Unlock")).to_be_visible()
    assert log.dialogs == []
    assert not any(url.endswith("/roster") for url in log.requests)

    with httpx.Client(
        base_url=gateway.url, trust_env=False, cookies=ada.cookies, verify=TLS
    ) as client:
        assert client.get(f"/{room}").status_code == 403


def test_host_changes_who_may_enter_from_the_dashboard(
    gateway: GatewayServer, phone: tuple[Page, BrowserLog]
) -> None:
    page, log = phone
    room = new_room(gateway)
    open_dashboard(page, gateway, room)
    page.get_by_text("Change who may enter").click()
    policy = page.locator("#policy-form")
    policy.get_by_label("A host approves").check()
    policy.get_by_label("Allowed e-mail domains").fill("@Uni.Example, staff.example")
    page.once("dialog", lambda dialog: _answer(dialog, log, accept=True))
    policy.get_by_role("button", name="Save who may enter").click()
    expect(page.locator("#notice")).to_contain_text("The new policy is saved")
    expect(policy.get_by_label("Allowed e-mail domains")).to_have_value(
        "uni.example\nstaff.example"
    )
    expect(page.locator("#policy-summary")).to_have_text(
        "ways in: invite, host approves; lists: 2 domains"
    )
    expect(page.locator("#audit")).to_contain_text("Hilde Host change policy")
    # The form now carries the saved version: a second change goes through as well.
    policy.get_by_label("A host approves").uncheck()
    page.once("dialog", lambda dialog: _answer(dialog, log, accept=True))
    policy.get_by_role("button", name="Save who may enter").click()
    expect(page.locator("#policy-summary")).to_have_text("ways in: invite; lists: 2 domains")
    assert log.dialogs[0].startswith("Change who may enter this room?")
    with gateway.admin() as admin:
        rules = admin.get(f"/api/v1/rooms/{room}").json()["rules"]
    assert rules["lobby"] is False and rules["allowed_domains"] == ["uni.example", "staff.example"]
    assert log.errors == []


@pytest.mark.parametrize("phone", [False], indirect=True)
def test_without_script_the_policy_is_changed_through_a_confirmation_page(
    gateway: GatewayServer, phone: tuple[Page, BrowserLog]
) -> None:
    page, _ = phone
    room = new_room(gateway)
    open_dashboard(page, gateway, room)
    page.get_by_text("Change who may enter").click()
    policy = page.locator("#policy-form")
    policy.get_by_label("A host approves").check()
    policy.get_by_label("Addresses that come in as hosts").fill(
        "Chair@Uni.Example\nvice@uni.example"
    )
    policy.get_by_role("button", name="Save who may enter").click()
    expect(page.get_by_role("heading")).to_have_text("Change who may enter this room?")
    page.get_by_role("button", name="Save the policy").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}?done=policy")
    expect(page.locator("#notice")).to_contain_text("The new policy is saved")
    expect(page.locator("#policy-summary")).to_have_text(
        "ways in: invite, host approves; lists: 2 host addresses"
    )
    with gateway.admin() as admin:
        rules = admin.get(f"/api/v1/rooms/{room}").json()["rules"]
        hosts = [
            admin.get(f"/api/v1/rooms/{room}/policy/emails/{address}").json()["host"]
            for address in ("chair@uni.example", "vice@uni.example", "ada@uni.example")
        ]
    assert rules["lobby"] is True and rules["host_email_count"] == 2
    assert hosts == [True, True, False]


def _answer(dialog: Dialog, log: BrowserLog, *, accept: bool) -> None:
    log.dialogs.append(dialog.message)
    if accept:
        dialog.accept()
    else:
        dialog.dismiss()
