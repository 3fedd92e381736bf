"""A batch of invitations revoked on the invitations page in a real browser (Debian's chromium
driven by playwright): the page's own script asks in a dialog, the batch then says its
invitations are revoked, and their links are refused at the door."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Dialog, expect

from tests.browser.test_dashboard_registrations_browser import (  # the module's gateway
    console_error,
    mailing_gateway,
    open_invitations,
)
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.smtp import Mailbox

pytestmark = pytest.mark.slow

__all__ = ["mailing_gateway"]

PEOPLE = (("Ada Lovelace", "ada@batch.example"), ("Grace Hopper", "grace@batch.example"))


def test_a_host_revokes_a_batch_after_a_dialog_and_its_links_refuse(
    chromium: Browser, mailing_gateway: tuple[GatewayServer, Mailbox]
) -> None:
    gateway, mailbox = mailing_gateway
    room = "batches"
    gateway.create_room(room, "Batches")
    csv = "".join(f"{name},{address}\n" for name, address in PEOPLE)
    with gateway.admin() as admin:
        imported = admin.post(
            f"/api/v1/rooms/{room}/invites/import", json={"csv": csv, "send": True}
        )
        assert imported.status_code in (200, 201), imported.text
    links = [
        re.findall(r"/j/[A-Za-z0-9_-]+", mailbox.wait_for(address)[0].body)[0]
        for _, address in PEOPLE
    ]
    errors: list[str] = []
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    context = chromium.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: console_error(message, errors))
        open_invitations(page, gateway, room)
        batch = page.locator("#batches > li").first
        expect(batch).to_have_attribute("data-done", "yes", timeout=20_000)
        expect(page.locator("#resend-hint")).to_contain_text("no longer keeps its address")
        expect(batch.get_by_role("button", name="Retry the 0 failed")).to_be_hidden()
        page.once("dialog", accept)
        batch.get_by_role("button", name="Revoke these 2 invitations").click()
        page.wait_for_url("**/invitations?done=revoked")
        batch = page.locator("#batches > li").first
        expect(batch.locator('[data-slot="revoked"]')).to_have_text("2 revoked")
        expect(batch.get_by_role("button", name=re.compile("^Revoke"))).to_be_hidden()
        # The page itself said nothing wrong; the refused links below answer 410, as meant.
        assert errors == []
        for link in links:
            page.context.clear_cookies()
            page.goto(gateway.url + link)
            expect(page.get_by_role("button", name="Open the host dashboard")).to_have_count(0)
            expect(page.locator("body")).to_contain_text(re.compile("revoked|no longer", re.I))
    finally:
        context.close()
    assert asked == [
        "Revoke these 2 invitations? Their links stop working, and those not sent yet will not go."
    ]
