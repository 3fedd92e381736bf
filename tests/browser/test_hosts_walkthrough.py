"""docs/hosts.md's walk-through of issue 19 in a real Chromium, on `meetgate serve` with a real
SMTP server (aiosmtpd): the registration form on a phone in English and in Chinese; the host's
review list with each kind of flag (a name like the host's, an address and a domain seen at an
earlier meeting of the series, a burst from one network, a registration updated); approving the
ticked ones; a list imported with refused lines; its sending held up while the mail server is
down, then done once it is back, every invitee receiving one invitation.

With MEETGATE_SCREENSHOTS set to a folder (scripts/screenshots sets it), each step is saved
there as `walkthrough-<step>-<language>.png`: the walk-through's pictures.
"""

from __future__ import annotations

import email
import email.policy
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Dialog, FilePayload, Locator, Page, ViewportSize, expect

from tests.fixtures.browser import PHONE
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import free_port, stop_process, wait_until
from tests.fixtures.smtp import Mailbox, Received

pytestmark = pytest.mark.slow

# Read, not taken: test_journeys.py takes it out of the environment when it is imported first;
# the gateway below is started without it either way (`meetgate serve` refuses a MEETGATE_*
# variable it does not know).
SCREENSHOTS = os.environ.get("MEETGATE_SCREENSHOTS")
WIDE: ViewportSize = {"width": 1280, "height": 900}
SERIES = "assembly"
ROOM = "assembly-april"
EARLIER = "assembly-march"
TITLE = "Tenants' assembly, April"
HOST = "Hilde Host"
# The gate believes X-Forwarded-For from loopback, so each registrant comes from a network.
SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[outbox]
retry_seconds = 1
retry_max_seconds = 2
"""


@dataclass(frozen=True)
class Registrant:
    name: str
    address: str
    network: str
    note: str = ""


# Who registers, and from where: the flags the hosts then see.
PLAIN = Registrant("Ada Lee", "ada@uni.example", "198.51.100.7", "From the tenants' union.")
SEEN = Registrant("Bo Chen", "bo@coop.example", "192.0.2.4", "Was at the March assembly.")
SAME_DOMAIN = Registrant("Li Wei", "li.wei@coop.example", "192.0.2.80")
LOOKALIKE = Registrant("H1lde Host", "hilde.h@mail.example", "100.64.3.3", "Let me in!")
UPDATED = Registrant("Cy Park", "cy@park.example", "100.64.9.9", "Coming with my neighbour.")
BURST = [
    Registrant(name, f"{name.split()[0].lower()}@fast.example", f"203.0.113.{n + 10}")
    for n, name in enumerate(("Max Noise", "Tom Loud", "Sam Spam", "Ed Echo", "Jo Jam"))
]
# The list a host imports: six good rows and two refused ones.
INVITEE_LIST = """name,email,role
Rosa Díaz,rosa@neighbours.example,attendee
王芳,wang.fang@neighbours.example,attendee
Yusuf Kaya,yusuf@neighbours.example,host
Mia Novak,mia@neighbours.example,
Ola Berg,not an address,
Ken Ito,ken@neighbours.example,
,nobody@neighbours.example,
Ana Silva,ana@neighbours.example,
"""
GOOD_ROWS = 6


class Recorder:
    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self._mailbox.add(Received(envelope.mail_from, tuple(envelope.rcpt_tos), parsed))
        return "250 OK"


class MailServer:
    """aiosmtpd on a fixed port, stopped and started again (the mail server failing)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(Recorder(self.mailbox), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any
) -> Iterator[tuple[GatewayServer, MailServer]]:
    mail = MailServer()
    mail.start()
    with pytest.MonkeyPatch.context() as environ:
        environ.delenv("MEETGATE_SCREENSHOTS", raising=False)
        gateway, proc = start_gateway(
            tmp_path_factory.mktemp("walkthrough"),
            upstream=jitsi_web.url,
            top='trusted_proxies = ["127.0.0.1/32"]',
            extra=GENEROUS_LIMITS + SETTINGS.format(smtp_port=mail.port),
        )
    try:
        yield gateway, mail
    finally:
        stop_process(proc)
        mail.stop()


def photo(target: Page | Locator, step: str, language: str = "en") -> None:
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        path = str(folder / f"walkthrough-{step}-{language}.png")
        if isinstance(target, Page):
            target.screenshot(path=path, full_page=True, animations="disabled")
        else:
            target.screenshot(path=path, animations="disabled")


def meeting(gateway: GatewayServer, room: str, title: str, starts: int | None) -> None:
    """A room of the series; with `starts`, taking registrations for a meeting of 90 minutes
    (the earlier one's time is past, which a room may not be set to: it has none)."""
    gateway.create_room(room, title=title)
    change: dict[str, Any] = {"series": SERIES}
    if starts is not None:
        change.update(registration=True, starts_at=starts, ends_at=starts + 90 * 60)
    with gateway.admin() as admin:
        changed = admin.patch(f"/api/v1/rooms/{room}", json=change)
        assert changed.status_code == 200, changed.text


def sent_by_the_admin(gateway: GatewayServer, room: str, text: str) -> str:
    """A list imported with send through the admin API; the batch, once done."""
    with gateway.admin() as admin:
        made = admin.post(f"/api/v1/rooms/{room}/invites/import", json={"csv": text, "send": True})
        assert made.status_code == 200, made.text
        batch = str(made.json()["batch"])

        def done() -> bool:
            return bool(admin.get(f"/api/v1/outbox/{batch}").json()["done"])

        wait_until(done, 30, "the batch sent")
    return batch


def register(gateway: GatewayServer, mail: MailServer, room: str, who: Registrant) -> None:
    """Register through the pages as a browser on `who.network` does, code from the mail."""
    before = len(mail.mailbox.to(who.address))
    headers = {"origin": gateway.url, "x-forwarded-for": who.network}
    with gateway.client(headers=headers, timeout=30) as browser:
        sent = browser.post(
            f"/_meetgate/register/{room}/send",
            data={"name": who.name, "email": who.address, "note": who.note},
        )
        assert sent.status_code == 303, sent.text
        code = mail.mailbox.wait_for(who.address, before + 1)[-1].code()
        confirmed = browser.post(f"/_meetgate/register/{room}/confirm", data={"code": code})
        assert confirmed.status_code == 303, confirmed.text


def the_form_on_a_phone(chromium: Browser, gateway: GatewayServer, language: str) -> None:
    locale = {"en": "en-US", "zh-Hans": "zh-CN"}[language]
    context = chromium.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        locale=locale,
        extra_http_headers={"Accept-Language": locale},
    )
    try:
        page = context.new_page()
        page.goto(f"{gateway.url}/_meetgate/register/{ROOM}")
        assert page.evaluate("document.documentElement.lang") == language
        expect(page.locator("time")).to_be_visible()
        name, note = {
            "en": ("Ada Lee", "From the tenants' union."),
            "zh-Hans": ("李明", "我是租户协会的成员。"),
        }[language]
        page.fill("#name", name)
        page.fill("#email", "ada@uni.example" if language == "en" else "li.ming@uni.example")
        page.fill("#note", note)
        photo(page, "register", language)
    finally:
        context.close()


def as_host(chromium: Browser, gateway: GatewayServer) -> Page:
    context = chromium.new_context(viewport=WIDE, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15_000)
    link = gateway.invite_token(gateway.create_invite(ROOM, HOST, role="host"))
    page.goto(f"{gateway.url}/j/{link}")
    page.get_by_role("button", name="Open the host dashboard").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{ROOM}")
    page.locator("#invitations-link").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/host/{ROOM}/invitations")
    return page


def flags_of(page: Page, name: str) -> list[str]:
    row = page.locator("#registrations > li").filter(has_text=name)
    return sorted(row.locator("li.flag").evaluate_all("items => items.map(i => i.dataset.flag)"))


def test_from_announcing_to_invitations_delivered(
    chromium: Browser, site: tuple[GatewayServer, MailServer]
) -> None:
    gateway, mail = site
    starts = (int(time.time()) // 3600 + 14 * 24) * 3600
    # The series' earlier meeting: Bo was invited and got the invitation.
    meeting(gateway, EARLIER, "Tenants' assembly, March", None)
    sent_by_the_admin(gateway, EARLIER, f"{SEEN.name},{SEEN.address}\n")
    meeting(gateway, ROOM, TITLE, starts)
    for language in ("en", "zh-Hans"):
        the_form_on_a_phone(chromium, gateway, language)

    # The host's invite is made before anyone registers, so the look-alike is caught.
    page = as_host(chromium, gateway)
    for who in (PLAIN, SEEN, SAME_DOMAIN, LOOKALIKE, UPDATED, *BURST):
        register(gateway, mail, ROOM, who)
    register(gateway, mail, ROOM, UPDATED)
    page.reload()
    expect(page.locator("#count-waiting")).to_have_text(str(5 + len(BURST)))
    assert flags_of(page, PLAIN.name) == []
    assert flags_of(page, SEEN.name) == ["seen_address", "seen_domain"]
    assert flags_of(page, SAME_DOMAIN.name) == ["seen_domain"]
    assert flags_of(page, LOOKALIKE.name) == ["looks_like"]
    assert flags_of(page, UPDATED.name) == ["updated"]
    assert "burst" in flags_of(page, BURST[-1].name)
    for who in (PLAIN, SEEN, LOOKALIKE):
        expect(page.locator("body")).not_to_contain_text(who.address)
    photo(page.locator("section.registrations"), "review")

    # Tick the four to let in, approve them (the page asks first).
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    for who in (PLAIN, SEEN, SAME_DOMAIN, UPDATED):
        page.locator("#registrations > li").filter(has_text=who.name).locator("input.pick").check()
    page.once("dialog", accept)
    page.get_by_role("button", name="Approve the ticked").click()
    page.wait_for_url("**/invitations?done=approve", timeout=30_000)
    assert asked == ["Approve 4 registrations and send their invitations?"]
    batch = page.locator("#batches > li").first
    expect(batch).to_have_attribute("data-done", "yes", timeout=20_000)

    # The mail server goes down; a list is imported and waits for it.
    mail.stop()
    upload = page.context.new_page()
    upload.goto(f"{gateway.url}/_meetgate/host/{ROOM}/invitations")
    the_list: FilePayload = {
        "name": "invitees.csv",
        "mimeType": "text/csv",
        "buffer": INVITEE_LIST.encode(),
    }
    upload.set_input_files("#import-file", files=[the_list])
    upload.locator('#import-form button[type="submit"]').click()
    expect(upload.get_by_role("heading", level=1)).to_have_text(
        f"{GOOD_ROWS} invitations are being sent"
    )
    problems = upload.locator("#problems > li")
    expect(problems).to_have_count(2)
    assert problems.evaluate_all("items => items.map(i => i.dataset.line)") == ["6", "8"]
    expect(upload.locator("body")).not_to_contain_text("not an address")
    photo(upload.locator("div.invited"), "import")

    page.goto(f"{gateway.url}/_meetgate/host/{ROOM}/invitations")
    newest = page.locator("#batches > li").first
    expect(newest.locator('[data-slot="retry"]')).to_be_visible(timeout=20_000)
    expect(newest.locator('[data-slot="counts"]')).to_contain_text(
        f"0 sent, 0 failed, {GOOD_ROWS} waiting of {GOOD_ROWS}"
    )
    photo(page.locator("section.sending"), "failing")

    # Back up: the queue resumes by itself and the page follows it.
    mail.start()
    expect(newest).to_have_attribute("data-done", "yes", timeout=30_000)
    expect(newest.locator('[data-slot="counts"]')).to_have_text(
        f"{GOOD_ROWS} sent, 0 failed, 0 waiting of {GOOD_ROWS}"
    )
    photo(page.locator("section.sending"), "sent")
    page.context.close()

    invited = [
        "rosa@neighbours.example",
        "wang.fang@neighbours.example",
        "yusuf@neighbours.example",
        "mia@neighbours.example",
        "ken@neighbours.example",
        "ana@neighbours.example",
        *(who.address for who in (PLAIN, SEEN, SAME_DOMAIN, UPDATED)),
    ]
    for address in invited:
        invitations = [m for m in mail.mailbox.to(address) if "/j/" in m.body]
        # Bo's first invitation was March's.
        assert len(invitations) == (2 if address == SEEN.address else 1), address
