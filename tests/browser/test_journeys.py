"""The five journeys of issue 14 in a real Chromium, phone-sized, in each of the three languages,
the language picked the way a visitor's phone picks it (its locale and Accept-Language): an
attendee from the invite link to the room; a guest waiting in the lobby until a host lets them in;
a host removing and banning someone and locking the room down; sign-in with the OpenID provider;
sign-in with an e-mail code; and a host's chat rules (issue 16): limits, quiet mode, and the log
of Meetgate removing someone who kept writing. Every Meetgate page on the way is checked for its
`<html lang>`, for text in the chosen language (read from the catalogs, so a translator's
revision does not break the test) and by axe-core at WCAG 2.2 AA; each journey ends where it
must, in the room (with Jitsi's own `?lang=`) or refused in the visitor's language.

With MEETGATE_SCREENSHOTS set to a folder, each step is saved there as
`<journey>-<step>-<language>.png`: the guides' pictures (`scripts/screenshots` makes them).
The OpenID provider's own pages and the stand-in meeting page are not Meetgate's: they are
walked through, not audited or photographed.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Locator, expect

from gateway.i18n import (
    ENGLISH,
    SIMPLIFIED,
    TRADITIONAL,
    Language,
    gettext,
    translations,
)
from gateway.proxy.guarded import GUARD_ACTOR_NAME
from tests.browser.origins import OriginLog
from tests.browser.test_accessibility import AXE, RUN_AXE, WCAG_22_AA
from tests.fixtures.browser import PHONE
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.oidc import clients_for, oidc_table, start_oidc_provider
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.smtp import Mailbox, SmtpServer
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import admit, signalling_query, ws_url

pytestmark = pytest.mark.slow

# Taken out of the environment: `meetgate serve` (started by the fixtures, inheriting it) reads
# every MEETGATE_* variable as a setting and refuses one it does not know.
SCREENSHOTS = os.environ.pop("MEETGATE_SCREENSHOTS", None)
# What a phone set to the language sends: its locale, and Accept-Language from it.
BROWSER_LOCALE = {ENGLISH: "en-US", SIMPLIFIED: "zh-CN", TRADITIONAL: "zh-TW"}
MEETING_MARKER = "Jitsi Meet test page"
PROVIDER_LABEL = "University Login"
SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[email_codes]
ttl_seconds = 600
"""
# The people and meetings of the pictures, in the reader's own script.
TITLES = {
    ENGLISH: "Tenants' assembly",
    SIMPLIFIED: "租户大会",
    TRADITIONAL: "租戶大會",
}
ATTENDEES = {ENGLISH: "Ada Lee", SIMPLIFIED: "李明", TRADITIONAL: "陳美玲"}
LATECOMERS = {ENGLISH: "Bob Reyes", SIMPLIFIED: "王强", TRADITIONAL: "林志明"}
OTHERS = {ENGLISH: "Cy Park", SIMPLIFIED: "赵丽", TRADITIONAL: "黃家豪"}
HOSTS = {ENGLISH: "Hilde Host", SIMPLIFIED: "张主持", TRADITIONAL: "張主持"}
TROLLS = {ENGLISH: "Max Noise", SIMPLIFIED: "刘大声", TRADITIONAL: "吳大聲"}


@dataclass
class Site:
    gateway: GatewayServer
    mailbox: Mailbox
    prosody: Any
    provider_url: str

    def room(self, journey: str, language: Language, **policy: Any) -> str:
        """A fresh room for `journey` in `language`, with that policy (invite links only, but
        for `policy`). Named the same every run, so the pictures do not change needlessly."""
        name = f"{journey}-{language.tag.lower()}"
        self.gateway.create_room(name, title=TITLES[language])
        if policy:
            self.gateway.set_policy(name, **policy)
        return name

    def invite(self, room: str, name: str, **body: Any) -> str:
        made = self.gateway.create_invite(room, name, **body)
        return f"{self.gateway.url}/j/{self.gateway.invite_token(made)}"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    jitsi_web: Any,
    smtp_server: SmtpServer,
    prosody: Any,
) -> Iterator[Site]:
    """One gateway for every journey: invite links, a lobby, sign-in with a real OpenID provider
    (panva's oidc-provider) and e-mail codes through a real SMTP server; signalling to a real
    prosody, where the wire guard acts on what a client sends."""
    provider_port = free_port()
    gateway, gateway_proc = start_gateway(
        tmp_path_factory.mktemp("journeys"),
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        extra=GENEROUS_LIMITS
        + SETTINGS.format(smtp_port=smtp_server.port)
        + oidc_table("idp", PROVIDER_LABEL, f"http://127.0.0.1:{provider_port}"),
    )
    procs = [gateway_proc]
    try:
        # The provider registers the gateway's callback, so it starts second.
        _, provider_proc = start_oidc_provider(
            tmp_path_factory.mktemp("journeys-idp"),
            provider_port,
            clients=clients_for(gateway.url, "idp"),
        )
        procs.append(provider_proc)
        yield Site(gateway, smtp_server.mailbox, prosody, f"http://127.0.0.1:{provider_port}")
    finally:
        for proc in reversed(procs):
            stop_process(proc)


class Visitor:
    """One person's phone: its own browser context in `language`, a page, and the steps of
    `journey` it checks (and photographs, when asked)."""

    axe = AXE.read_text(encoding="utf-8")

    def __init__(self, browser: Browser, site: Site, language: Language, journey: str) -> None:
        self.site = site
        self.language = language
        self.journey = journey
        locale = BROWSER_LOCALE[language]
        self.context = browser.new_context(
            viewport=PHONE,
            is_mobile=True,
            has_touch=True,
            locale=locale,
            extra_http_headers={"Accept-Language": locale},
            reduced_motion="reduce",
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.dialogs: list[str] = []
        self.page.on("dialog", self._accept)
        self.audited = 0

    def _accept(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()

    def close(self) -> None:
        self.context.close()

    def _(self, message: str, **values: Any) -> str:
        """`message` as the catalogs have it in this visitor's language, values filled in."""
        translated = gettext(self.language, message)
        # Chinese pages compared with English text would prove nothing.
        assert self.language is ENGLISH or translated != message, message
        if "%(" in message:
            return translated % values
        return translated.format(**values) if values else translated

    def sees(self, *texts: str) -> None:
        for text in texts:
            expect(self.page.get_by_text(text).filter(visible=True).first).to_be_visible()

    def check(self, step: str, show: Locator | None = None, *, photo: bool = True) -> None:
        """The page where it stands speaks the language and passes axe; photographed (unless
        `photo` is false) as `step`, scrolled to `show` (else from its top)."""
        page = self.page
        assert page.evaluate("document.documentElement.lang") == self.language.tag, step
        # The pages' Content-Security-Policy refuses an added script tag; evaluate is not a tag.
        page.evaluate(self.axe)
        found = [
            f"{step}: {v['id']} ({v['impact']}) " + " | ".join(v["nodes"])
            for v in page.evaluate(RUN_AXE, WCAG_22_AA)
        ]
        assert found == [], "\n".join(found)
        self.audited += 1
        if SCREENSHOTS and photo:
            folder = Path(SCREENSHOTS)
            folder.mkdir(parents=True, exist_ok=True)
            if show is None:
                page.evaluate("window.scrollTo(0, 0)")
            else:
                show.evaluate("e => window.scrollBy(0, e.getBoundingClientRect().top - 16)")
            page.screenshot(
                path=str(folder / f"{self.journey}-{step}-{self.language.tag}.png"),
                animations="disabled",
            )

    def lands_in(self, room: str) -> None:
        """In the meeting: the room's address with its ticket, and Jitsi told the language
        (English needs no word: Jitsi Meet speaks it by itself)."""
        query = "" if self.language is ENGLISH else f"?lang={self.language.jitsi}"
        url = re.escape(f"{self.site.gateway.url}/{room}{query}")
        self.page.wait_for_url(re.compile(rf"^{url}#jwt=[\w.-]+$"))
        expect(self.page.get_by_role("heading", name=MEETING_MARKER)).to_be_visible()


Phone = Callable[[Language, str], Visitor]


@pytest.fixture
def phone(chromium: Browser, site: Site) -> Iterator[Phone]:
    """Makes a visitor's phone (`phone(language, journey)`); closes them after the test."""
    made: list[Visitor] = []

    def new(language: Language, journey: str) -> Visitor:
        made.append(Visitor(chromium, site, language, journey))
        return made[-1]

    yield new
    for visitor in made:
        visitor.close()


def open_dashboard(host: Visitor, room: str, *, photo: bool = True) -> None:
    """From a host invite link to the room's dashboard, as a host on a phone does."""
    host.page.goto(host.site.invite(room, HOSTS[host.language], role="host"))
    host.sees(host._("Open the host dashboard"))
    host.check("invite", photo=photo)
    host.page.get_by_role("button", name=host._("Open the host dashboard")).click()
    host.page.wait_for_url(f"{host.site.gateway.url}/_meetgate/host/{room}")
    host.sees(host._("Host dashboard"), host._("Emergency lockdown"))


# The three languages of issue 14, named here: a catalog added later does not change the journeys
# (nor the guides' pictures) until it is added here, with its people and its phone's locale.
JOURNEY_LANGUAGES = (ENGLISH, SIMPLIFIED, TRADITIONAL)
each_language = pytest.mark.parametrize(
    "language", JOURNEY_LANGUAGES, ids=[language.tag for language in JOURNEY_LANGUAGES]
)


@each_language
def test_an_attendee_goes_from_the_invite_link_to_the_room(
    site: Site, phone: Phone, language: Language
) -> None:
    room = site.room("attendee", language)
    ada = phone(language, "attendee")
    ada.page.goto(site.invite(room, ATTENDEES[language]))
    ada.sees(
        TITLES[language],
        ATTENDEES[language],
        ada._(
            "Everyone in the meeting will see this name. "
            "Your invite is personal: do not pass it on."
        ),
    )
    ada.check("invite")

    ada.page.get_by_role("button", name=ada._("Join the meeting")).click()
    ada.lands_in(room)

    # The switcher at the foot of every page works without script: another language and back
    # (the choice is then remembered, and handed to Jitsi even for English: ?lang=en).
    ada.page.goto(f"{site.gateway.url}/")
    other = next(choice for choice in JOURNEY_LANGUAGES if choice is not language)
    ada.page.get_by_role("link", name=other.name, exact=True).click()
    expect(ada.page.locator("html")).to_have_attribute("lang", other.tag)
    ada.page.get_by_role("link", name=language.name, exact=True).click()
    expect(ada.page.locator("html")).to_have_attribute("lang", language.tag)
    ada.sees(ada._("This meeting server is gated"))
    assert ada.audited == 1


@each_language
def test_a_guest_waits_in_the_lobby_until_a_host_lets_them_in(
    site: Site, phone: Phone, language: Language
) -> None:
    room = site.room("lobby", language, lobby=True)
    host = phone(language, "host")
    open_dashboard(host, room, photo=False)  # the host journey's pictures show it
    expect(host.page.locator("#lobby-empty")).to_have_text(
        host._("Nobody is waiting to be let in.")
    )

    guest = phone(language, "lobby")
    guest.page.goto(f"{site.gateway.url}/_meetgate/enter/{room}")
    guest.sees(TITLES[language], guest._("Ask to be let in"))
    guest.check("enter")
    name = ATTENDEES[language]
    guest.page.get_by_label(guest._("Your name")).fill(name)
    guest.page.get_by_label(guest._("A short message for the hosts (optional)")).fill(
        {ENGLISH: "From the tenants' union", SIMPLIFIED: "租户协会", TRADITIONAL: "租戶協會"}[
            language
        ]
    )
    guest.page.get_by_role("button", name=guest._("Ask to join")).click()
    guest.page.wait_for_url(f"{site.gateway.url}/_meetgate/lobby/{room}/wait")
    guest.sees(guest._("Waiting for a host"), guest._("Check again"), guest._("Stop waiting"))
    expect(guest.page.locator("#lobby-live")).to_contain_text(
        guest._(
            "This page updates by itself: you go straight into the meeting once a host lets you in."
        )
    )
    guest.check("waiting")

    # The request reaches the host's dashboard by itself; the host lets the guest in.
    card = host.page.locator("#lobby > li").filter(has_text=name)
    expect(card).to_have_count(1)
    expect(host.page.locator("#lobby-count")).to_have_text("1")
    host.check("request", show=host.page.locator("#lobby-heading"))
    card.get_by_role("button", name=host._("Let in"), exact=True).click()
    expect(card).to_have_count(0)
    shown = f"{name} (guest)"
    assert host.dialogs == [host._("Let {name} in?", name=shown)]
    expect(host.page.locator("#notice")).to_contain_text(shown)

    # The guest's page goes into the meeting by itself, in the guest's language.
    guest.lands_in(room)
    expect(host.page.locator("#participants > li").filter(has_text=shown)).to_have_count(1)
    assert (host.audited, guest.audited) == (2, 2)


@each_language
def test_a_host_removes_and_bans_someone_and_locks_the_room_down(
    site: Site, phone: Phone, language: Language
) -> None:
    room = site.room("host", language)
    name = ATTENDEES[language]
    ada = phone(language, "attendee")
    link = site.invite(room, name, max_uses=2)
    ada.page.goto(link)
    ada.page.get_by_role("button", name=ada._("Join the meeting")).click()
    ada.lands_in(room)
    admit(site.gateway, room, OTHERS[language])  # someone else in the meeting meanwhile

    host = phone(language, "host")
    open_dashboard(host, room)
    row = host.page.locator("#participants > li").filter(has_text=name)
    expect(row).to_have_count(1)
    expect(host.page.locator("#participant-count")).to_have_text("3")
    host.check("dashboard")
    host.check("roster", show=host.page.locator("#roster-heading"))

    row.locator("select").select_option("forever")
    row.get_by_role("button", name=host._("Remove and ban"), exact=True).click()
    expect(row).to_have_count(0)
    for_good = host._("for good")
    assert host.dialogs == [
        host._("Remove and ban {name} {duration}?", name=name, duration=for_good)
    ]
    notice = host.page.locator("#notice")
    expect(notice).to_have_text(
        host._("{name} was removed and banned {duration}.", name=name, duration=for_good)
    )
    host.check("banned", show=notice)

    # Removed: the meeting page, reloaded, says so; banned: the link no longer lets them in.
    ada.page.reload()
    ada.sees(
        ada._("You were removed from this meeting"),
        ada._("A host removed you from this meeting. You cannot rejoin with this link."),
    )
    ada.check("removed")
    # Her link says so too while her browser holds the removed admission's cookie; without it,
    # the ban bars the link itself.
    ada.page.goto(link)
    ada.sees(
        ada._("You were removed from this meeting"),
        ada._("A host removed you from this meeting. You cannot rejoin with this link."),
    )
    ada.page.context.clear_cookies()
    ada.page.goto(link)
    ada.page.get_by_role("button", name=ada._("Join the meeting")).click()
    ada.sees(
        ada._("You cannot join this meeting"), ada._("A host has barred you from this meeting.")
    )
    ada.check("barred")

    # Emergency lockdown: locked, every attendee out, and a newcomer waits for a host.
    host.page.get_by_role("button", name=host._("Emergency lockdown")).click()
    expect(host.page.locator("#room-state")).to_have_attribute("data-state", "lockdown")
    assert host.dialogs[-1] == host._(
        "EMERGENCY LOCKDOWN: lock the room and remove every attendee now?"
    )
    expect(host.page.locator("#room-state [data-slot='lockdown']")).to_be_visible()
    lockdown = translations(language).ngettext(
        "Lockdown: the room is locked and {count} attendee was removed.",
        "Lockdown: the room is locked and {count} attendees were removed.",
        1,
    )
    expect(notice).to_have_text(lockdown.format(count=1))
    expect(host.page.locator("#participants > li")).to_have_count(1)
    host.check("lockdown")

    latecomer = phone(language, "attendee")
    latecomer.page.goto(site.invite(room, LATECOMERS[language]))
    latecomer.page.get_by_role("button", name=latecomer._("Join the meeting")).click()
    latecomer.sees(latecomer._("Waiting for a host"))
    latecomer.check("lockdown-waiting")
    expect(host.page.locator("#lobby > li").filter(has_text=LATECOMERS[language])).to_have_count(1)


# The host's chat limits as the picture shows them: a tight room, removal after a few refusals.
CHAT_LIMITS = {
    "chat_per_10s": "3",
    "chat_burst": "5",
    "chat_max_bytes": "1000",
    "guard_strikes": "5",
}


async def keeps_writing(url: str, room_jid: str, refusals: int) -> None:
    """An attendee who keeps writing in quiet mode, with a real XMPP client through the gate:
    every message is refused, and past `refusals` Meetgate ends the session."""
    # Without XEP-0198: the gate's error replies would upset its count (tests/integration/
    # test_wire_guard.py, the strict xfail).
    async with XmppClient.open(url, stream_management=False) as troll:
        await troll.join(room_jid, "troll")
        for n in range(refusals + 5):
            if troll.end is not None:
                break
            await troll.send_groupchat(room_jid, f"noise {n}")
        assert (await troll.wait_closed()).by_server


@each_language
def test_a_host_quiets_the_chat_and_meetgate_removes_who_keeps_writing(
    site: Site, phone: Phone, language: Language
) -> None:
    room = site.room("chat", language)
    host = phone(language, "host")
    open_dashboard(host, room, photo=False)
    page = host.page

    # The chat limits: a form without script, opened from the chat section.
    details = page.locator("#chat-details")
    details.get_by_text(host._("Change the chat limits")).click()
    for field, value in CHAT_LIMITS.items():
        page.locator(f"#chat-form [name='{field}']").fill(value)
    host.check("chat-limits", show=details)
    page.get_by_role("button", name=host._("Save the chat limits")).click()
    notice = page.locator("#notice")
    expect(notice).to_have_text(
        host._("The chat limits are saved: they hold from the next message on.")
    )

    # Quiet mode: only hosts can chat.
    page.get_by_role("button", name=host._("Quiet mode: only hosts can chat")).click()
    expect(page.locator("#quiet-state")).to_have_attribute("data-quiet", "on")
    assert host.dialogs[-1] == host._("Switch on quiet mode? Only hosts can chat.")
    host.check("quiet", show=page.locator("#chat-heading"))

    # An attendee keeps writing: each message is refused, then Meetgate removes them, and the
    # log says why, in the host's language.
    troll = admit(site.gateway, room, TROLLS[language])
    writing = keeps_writing(
        ws_url(site.gateway, signalling_query(troll)),
        site.prosody.room_jid(room),
        int(CHAT_LIMITS["guard_strikes"]),
    )
    # In a thread of its own: Playwright's sync API keeps this one's event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, writing).result(timeout=60)
    why = host._("removed automatically for writing in quiet mode")
    entry = page.locator("#audit > li").filter(has_text=TROLLS[language])
    expect(entry).to_contain_text(
        f"{GUARD_ACTOR_NAME} " + host._("{action}: {detail}", action=why, detail=TROLLS[language])
    )
    host.check("removed-log", show=page.locator("#audit-heading"))


@each_language
def test_sign_in_with_the_openid_provider_lands_in_the_room(
    site: Site, phone: Phone, language: Language, origins: OriginLog
) -> None:
    origins.allow(site.provider_url)  # the sign-in the room asks for, an origin of its own
    room = site.room("signin", language, invite=False, oidc=True)
    ada = phone(language, "signin")
    ada.page.goto(f"{site.gateway.url}/{room}")  # the room's address: the way in is offered
    ada.page.wait_for_url(f"{site.gateway.url}/_meetgate/enter/{room}")
    button = ada._("Sign in with %(label)s", label=PROVIDER_LABEL)
    ada.sees(TITLES[language], ada._("Sign in"), button)
    ada.check("enter")
    ada.page.get_by_role("link", name=button).click()

    # The provider's own login and consent pages (oidc-provider's development interactions).
    ada.page.locator("input[name=login]").fill("ada")
    ada.page.locator("input[name=password]").fill("any password")
    ada.page.locator("button[type=submit]").click()
    ada.page.locator("button[type=submit]").click()
    ada.lands_in(room)


@each_language
def test_sign_in_with_an_e_mail_code_lands_in_the_room(
    site: Site, phone: Phone, language: Language
) -> None:
    room = site.room("email", language, invite=False, email_code=True)
    address = f"ada-{language.tag.lower()}@uni.example"
    ada = phone(language, "email")
    ada.page.goto(f"{site.gateway.url}/_meetgate/enter/{room}")
    ada.sees(TITLES[language], ada._("Get a code by e-mail"))
    ada.check("enter")
    ada.page.get_by_label(ada._("Your e-mail address")).fill(address)
    ada.page.get_by_role("button", name=ada._("Send me a code")).click()
    ada.sees(
        ada._("No e-mail after a few minutes? Check the spam folder, then ask for a new code.")
    )

    mail = site.mailbox.wait_for(address)[0]
    assert mail.message["Content-Language"] == language.tag
    ada.page.locator("#code").fill(mail.code())
    ada.page.get_by_label(ada._("Your name, as the meeting will show it (optional)")).fill(
        ATTENDEES[language]
    )
    ada.check("code")
    ada.page.get_by_role("button", name=ada._("Join the meeting")).click()
    ada.lands_in(room)
