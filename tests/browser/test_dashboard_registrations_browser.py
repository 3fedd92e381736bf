"""The invitations page in a real browser (Debian's chromium driven by playwright): two people
register on the registration page and confirm their address with the code a real SMTP server
received; the host ticks both, approves them (the page's own script asks first), and watches
the sending reach done; each of them receives one invitation.

With MEETGATE_SCREENSHOTS set to a folder (as scripts/screenshots does for the journeys), the
page is saved there at 390 and 1280 px wide: docs/hosts.md's pictures
(docs/images/host-invitations-*.png).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

from tests.fixtures.browser import PHONE
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.smtp import Mailbox, SmtpServer

pytestmark = pytest.mark.slow

# Read, not taken: test_journeys.py takes it out of the environment when it is imported after
# this module; the gateway below is started without it either way (`meetgate serve` refuses a
# MEETGATE_* variable it does not know).
SCREENSHOTS = os.environ.get("MEETGATE_SCREENSHOTS")
WIDE = {"width": 1280, "height": 900}
SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[outbox]
retry_seconds = 1
"""
PEOPLE = (("Ada Lovelace", "ada@uni.example"), ("Grace Hopper", "grace@navy.example"))


@pytest.fixture(scope="module")
def mailing_gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[tuple[GatewayServer, Mailbox]]:
    with pytest.MonkeyPatch.context() as environ:
        environ.delenv("MEETGATE_SCREENSHOTS", raising=False)
        gateway, proc = start_gateway(
            tmp_path_factory.mktemp("registrations"),
            upstream=jitsi_web.url,
            extra=GENEROUS_LIMITS + SETTINGS.format(smtp_port=smtp_server.port),
        )
    try:
        yield gateway, smtp_server.mailbox
    finally:
        stop_process(proc)


def register(page: Page, gateway: GatewayServer, mailbox: Mailbox, room: str) -> None:
    """Both people register and confirm their address, each in a browser of their own."""
    for name, address in PEOPLE:
        before = len(mailbox.to(address))
        page.context.clear_cookies()
        page.goto(f"{gateway.url}/_meetgate/register/{room}")
        page.fill('input[name="name"]', name)
        page.fill('input[name="email"]', address)
        page.fill('textarea[name="note"]', f"{name.split()[0]} from the workshop")
        page.locator('form button[type="submit"]').first.click()
        code = mailbox.wait_for(address, before + 1)[-1].code()
        page.fill('input[name="code"]', code)
        page.locator('form button[type="submit"]').first.click()
        page.wait_for_url(f"**/_meetgate/register/{room}/done**")


def console_error(message: ConsoleMessage, errors: list[str]) -> None:
    # The browser asks for /favicon.ico by itself; the gate answers it like any Jitsi path.
    if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
        errors.append(f"{message.text} ({message.location['url']})")


def screenshot(page: Page, width: str) -> None:
    if SCREENSHOTS:
        path = Path(SCREENSHOTS) / f"host-invitations-{width}.png"
        page.screenshot(path=str(path), full_page=True)


def open_invitations(page: Page, gateway: GatewayServer, room: str) -> None:
    link = gateway.invite_token(gateway.create_invite(room, "Hilde Host", role="host"))
    page.goto(f"{gateway.url}/j/{link}")
    page.get_by_role("button", name="Open the host dashboard").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}")
    page.locator("#invitations-link").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}/invitations")


def test_a_host_approves_two_registrations_and_sees_them_sent(
    chromium: Browser, mailing_gateway: tuple[GatewayServer, Mailbox]
) -> None:
    gateway, mailbox = mailing_gateway
    room = "workshop"
    gateway.create_room(room, "Workshop on open hardware")
    with gateway.admin() as admin:
        changed = admin.patch(f"/api/v1/rooms/{room}", json={"registration": True})
        assert changed.status_code == 200, changed.text

    errors: list[str] = []
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    for viewport, name in ((WIDE, "1280"), (PHONE, "390")):
        context = chromium.new_context(viewport=viewport, device_scale_factor=1)
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: console_error(message, errors))
            if name == "1280":
                register(page, gateway, mailbox, room)
                page.context.clear_cookies()
            open_invitations(page, gateway, room)
            rows = page.locator("#registrations > li")
            expect(rows).to_have_count(2)
            expect(page.locator("#count-waiting")).to_have_text("2")
            for person, address in PEOPLE:
                expect(rows.filter(has_text=person)).to_have_count(1)
                expect(page.locator("body")).not_to_contain_text(address)
            expect(rows.first).to_contain_text("@uni.example")
            screenshot(page, name)
            if name == "390":
                # With the keyboard: tick every one on the page, then approve.
                page.locator("#pick-all").check()
                expect(page.locator("input.pick:checked")).to_have_count(2)
                page.once("dialog", accept)
                page.get_by_role("button", name="Approve the ticked").click()
                page.wait_for_url("**/invitations?done=approve")
                batch = page.locator("#batches > li").first
                expect(batch).to_have_attribute("data-done", "yes", timeout=20_000)
                expect(batch.locator('[data-slot="counts"]')).to_have_text(
                    "2 sent, 0 failed, 0 waiting of 2"
                )
                expect(page.locator("#count-approved")).to_have_text("2")
                expect(page.locator("#registrations-empty")).to_be_visible()
                expect(page.get_by_role("button", name="Approve the ticked")).to_have_count(0)
        finally:
            context.close()

    assert asked == ["Approve 2 registrations and send their invitations?"]
    assert errors == []
    for _, address in PEOPLE:
        invitations = [m for m in mailbox.to(address) if "/j/" in m.body]
        assert len(invitations) == 1
