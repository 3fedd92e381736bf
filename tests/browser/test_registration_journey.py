"""Issue 19's journey end to end in a real browser (Debian's chromium driven by playwright), on
`meetgate serve` with a real SMTP server (aiosmtpd): a person registers on the room's page,
reads the code in the real e-mail and confirms; a host, signed in through a host invite, finds
the registration on the dashboard's invitations page, ticks it and approves it; the invitation
e-mail arrives in the person's language with the meeting as an .ics (its times read back); the
person follows the link from that e-mail into the room (the gate forwards to the stand-in Jitsi
page the other journeys reach). In English and in Chinese (zh-Hans: the pages and both e-mails).
No page asks anything of another origin (tests/browser/conftest.py checks every request).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from gateway.admission.invitation_mail import SUBJECT as INVITATION_SUBJECT
from gateway.admission.registrations import REGISTRATION_SUBJECT
from gateway.i18n import ENGLISH, SIMPLIFIED, Language, gettext
from tests.fixtures.browser import PHONE
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.smtp import Received, SmtpServer

pytestmark = pytest.mark.slow

MEETING_MARKER = "Jitsi Meet test page"
SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[outbox]
retry_seconds = 1
"""
BROWSER_LOCALE = {ENGLISH: "en-US", SIMPLIFIED: "zh-CN"}
TITLES = {ENGLISH: "Tenants' assembly", SIMPLIFIED: "租户大会"}
PEOPLE = {ENGLISH: "Ada Lee", SIMPLIFIED: "李明"}
NOTES = {ENGLISH: "From the tenants' union", SIMPLIFIED: "我是租户协会的成员。"}
HOSTS = {ENGLISH: "Hilde Host", SIMPLIFIED: "张主持"}
LINK = re.compile(r"^(http://[^\s/]+/j/[A-Za-z0-9_-]{20,})\s*$", re.MULTILINE)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("registration-journey"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + SETTINGS.format(smtp_port=smtp_server.port),
    )
    yield server
    stop_process(proc)


def meeting_room(gateway: GatewayServer, language: Language) -> tuple[str, int, int]:
    """A room taking registrations for a meeting two days from now, on the hour, set as an
    admin does; its name, start and end."""
    room = f"journey-{language.tag.lower()}-{secrets.token_hex(3)}"
    gateway.create_room(room, title=TITLES[language])
    starts = (int(time.time()) // 3600 + 48) * 3600
    ends = starts + 90 * 60
    with gateway.admin() as admin:
        changed = admin.patch(
            f"/api/v1/rooms/{room}",
            json={"registration": True, "starts_at": starts, "ends_at": ends},
        )
        assert changed.status_code == 200, changed.text
    return room, starts, ends


def phone(chromium: Browser, language: Language) -> BrowserContext:
    locale = BROWSER_LOCALE[language]
    return chromium.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        locale=locale,
        extra_http_headers={"Accept-Language": locale},
    )


def opened(context: BrowserContext, errors: list[str]) -> Page:
    """A page whose script errors on the gate's own pages are noted (the stand-in meeting page,
    at the room's own address, is not the gate's)."""
    page = context.new_page()
    page.set_default_timeout(15_000)

    def noted(error: Exception) -> None:
        if "/_meetgate/" in page.url or "/j/" in page.url:
            errors.append(f"{error} ({page.url.split('#')[0]})")

    page.on("pageerror", noted)
    return page


def calendar_of(message: Received) -> dict[str, str]:
    """The .ics attachment unfolded (RFC 5545: CRLF then a space continues a line): its
    properties by name."""
    (ics,) = list(message.message.iter_attachments())
    assert ics.get_content_type() == "text/calendar"
    data = ics.get_payload(decode=True)
    assert isinstance(data, bytes)
    props: dict[str, str] = {}
    for line in data.replace(b"\r\n ", b"").decode("utf-8").split("\r\n"):
        name, _, value = line.partition(":")
        if name and name not in ("BEGIN", "END"):
            props[name] = value
    return props


def utc(stamp: str) -> int:
    return int(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())


@pytest.mark.parametrize("language", [ENGLISH, SIMPLIFIED], ids=["en", "zh-Hans"])
def test_register_confirm_approve_receive_and_join(
    gateway: GatewayServer, chromium: Browser, smtp_server: SmtpServer, language: Language
) -> None:
    room, starts, ends = meeting_room(gateway, language)
    mailbox = smtp_server.mailbox
    address = f"person-{secrets.token_hex(4)}@example.org"
    name = PEOPLE[language]
    errors: list[str] = []
    asked: list[str] = []

    # The person registers and confirms with the code from the real e-mail.
    person = phone(chromium, language)
    try:
        page = opened(person, errors)
        page.on("request", lambda request: asked.append(request.url))
        page.goto(f"{gateway.url}/_meetgate/register/{room}")
        expect(page.locator("html")).to_have_attribute("lang", language.tag)
        expect(page.get_by_role("heading", level=1)).to_have_text(TITLES[language])
        page.locator("#name").fill(name)
        page.locator("#email").fill(address)
        page.locator("#note").fill(NOTES[language])
        page.locator("form button[type=submit]").click()
        page.wait_for_url(f"**/_meetgate/register/{room}/code")
        (code_mail,) = mailbox.wait_for(address)
        # Written in the person's language (as its catalog has it, translated or not yet).
        assert code_mail.message["Content-Language"] == language.tag
        subject = gettext(language, REGISTRATION_SUBJECT).format(room=TITLES[language])
        assert code_mail.message["subject"] == subject
        page.locator("#code").fill(code_mail.code())
        page.locator("form button[type=submit]").click()
        page.wait_for_url(f"**/_meetgate/register/{room}/done")
        expect(page.locator("#outcome")).to_have_attribute("data-outcome", "waiting")
    finally:
        person.close()

    # A host signs in through a host invite and approves it from the dashboard.
    host = phone(chromium, language)
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    try:
        page = opened(host, errors)
        page.on("dialog", accept)
        made = gateway.create_invite(room, HOSTS[language], role="host")
        page.goto(f"{gateway.url}/j/{gateway.invite_token(made)}")
        page.get_by_role("button", name=gettext(language, "Open the host dashboard")).click()
        page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}")
        page.locator("#invitations-link").click()
        page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}/invitations")
        expect(page.locator("html")).to_have_attribute("lang", language.tag)
        rows = page.locator("#registrations > li")
        expect(rows).to_have_count(1)
        row = rows.first
        expect(row).to_contain_text(name)
        expect(row).to_contain_text("@example.org")
        expect(row).to_contain_text(NOTES[language])
        expect(page.locator("body")).not_to_contain_text(address)
        row.locator("input.pick").check()
        page.locator("button[data-answer=approve]").click()
        page.wait_for_url("**/invitations?done=approve")
        batch = page.locator("#batches > li").first
        expect(batch).to_have_attribute("data-done", "yes", timeout=20_000)
        expect(page.locator("#count-approved")).to_have_text("1")
    finally:
        host.close()
    assert len(dialogs) == 1

    # The invitation: one, in the person's language, the meeting's time in its calendar entry.
    invitations = mailbox.wait_for(address, 2)
    invitation = invitations[1]
    assert invitation.message["Content-Language"] == language.tag
    subject = gettext(language, INVITATION_SUBJECT).format(room=TITLES[language])
    assert invitation.message["subject"] == subject
    calendar = calendar_of(invitation)
    assert (utc(calendar["DTSTART"]), utc(calendar["DTEND"])) == (starts, ends)
    (link,) = LINK.findall(invitation.body)
    assert link.startswith(f"{gateway.url}/j/")

    # The person follows the link from the e-mail into the meeting.
    person = phone(chromium, language)
    try:
        page = opened(person, errors)
        page.on("request", lambda request: asked.append(request.url))
        page.goto(link)
        expect(page.locator("html")).to_have_attribute("lang", language.tag)
        expect(page.get_by_text(name).first).to_be_visible()
        page.get_by_role("button", name=gettext(language, "Join the meeting")).click()
        query = "" if language is ENGLISH else f"?lang={language.jitsi}"
        url = re.escape(f"{gateway.url}/{room}{query}")
        page.wait_for_url(re.compile(rf"^{url}#jwt=[\w.-]+$"))
        expect(page.get_by_role("heading", name=MEETING_MARKER)).to_be_visible()
    finally:
        person.close()

    assert errors == []
    assert asked and all(url.startswith(gateway.url + "/") for url in asked), asked
    # Nobody got a second invitation on the way.
    assert len([m for m in mailbox.to(address) if "/j/" in m.body]) == 1
