"""Every page a visitor or a host can reach, checked by axe-core (WCAG 2.2 AA) in a real Chromium
in each language, at desktop and phone size, in light and dark colour schemes; the live regions
that announce status changes; and the attendee's and the guest's way in by keyboard alone, with
a visible focus on every control it passes.

One gateway, one browser, one context per size: each page is reached the way a person reaches it
(a link, a button, a host's answer) and checked where it stands, in the light and the dark scheme.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError

from gateway.edge.languages import COOKIE, current
from gateway.edge.rendering import error_body
from gateway.edge.templating import render
from gateway.errors import RateLimited
from gateway.i18n import ENGLISH, LANGUAGES, SIMPLIFIED, TRADITIONAL, Language
from tests.fixtures.browser import PHONE
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.oidc import oidc_table
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.smtp import Mailbox, SmtpServer
from tests.integration.journeys import Admitted, admit, host_action
from tests.integration.test_lobby import knock, request_of

pytestmark = pytest.mark.slow

AXE = Path(__file__).parents[1] / "fixtures" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
DESKTOP = {"width": 1280, "height": 800}
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
# Every page in the three languages the pages must speak; a page in each other catalog's (Hong
# Kong's: zh_Hant's text with other words, the same markup), which the whole walk would only
# repeat at a third more time.
WALKED = (ENGLISH, SIMPLIFIED, TRADITIONAL)
GLANCED = tuple(language for language in LANGUAGES if language not in WALKED)
# The proof-of-work room demands the most the settings allow: the page stays on its progress.
SETTINGS = """
[rates]
address = {{ per_minute = 1000000, burst = 100000 }}
network = {{ per_minute = 1000000, burst = 100000 }}
room = {{ per_minute = 1000000, burst = 100000 }}
identity = {{ per_minute = 1000000, burst = 100000 }}
invite = {{ per_minute = 1000000, burst = 100000 }}
gate = {{ per_minute = 1000000, burst = 100000 }}
[challenge]
mode = "auto"
base_difficulty = 28
max_difficulty = 28
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[email_codes]
ttl_seconds = 600
{oidc}
"""
# What runs axe on the page and returns its violations, briefly.
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {
    runOnly: { type: "tag", values: tags },
    resultTypes: ["violations"],
  });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ") + ": " + n.failureSummary),
  }));
}"""


@dataclass
class Site:
    gateway: GatewayServer
    ways_in: str  # sign-in and an e-mail code, a host answers
    lobby: str  # lobby only: anyone may knock
    proof: str  # proof-of-work always on
    dashboard: str  # a room with someone admitted and someone waiting
    lobby_host: Admitted
    registration: str  # a room taking registrations
    mailbox: Mailbox


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[Site]:
    # Configured, never started: the gate page only names it.
    oidc = oidc_table("idp", "University Login", f"http://127.0.0.1:{free_port()}")
    gateway, proc = start_gateway(
        tmp_path_factory.mktemp("a11y"),
        upstream=jitsi_web.url,
        extra=SETTINGS.format(smtp_port=smtp_server.port, oidc=oidc),
    )
    try:
        suffix = secrets.token_hex(3)
        ways_in, lobby, proof, dashboard = (
            f"{kind}-{suffix}" for kind in ("ways", "lobby", "proof", "board")
        )
        gateway.create_room(ways_in, title="Tenants' assembly")
        gateway.set_policy(ways_in, oidc=True, email_code=True, lobby=True)
        gateway.create_room(lobby, title="Open assembly")
        gateway.set_policy(lobby, lobby=True)
        gateway.create_room(proof, title="Busy assembly")
        with gateway.admin() as client:
            changed = client.patch(f"/api/v1/rooms/{proof}", json={"pow_required": True})
            assert changed.status_code == 200, changed.text
        gateway.create_room(dashboard, title="Board meeting")
        gateway.set_policy(dashboard, invite=True, lobby=True)
        admit(gateway, dashboard, "Ada Attendee")
        with httpx.Client(base_url=gateway.url, trust_env=False, verify=TLS) as guest:
            assert knock(guest, gateway, dashboard, "Gina Guest", "Running late").status_code == 303
        registration = f"register-{suffix}"
        gateway.create_room(registration, title="Tenants' conference")
        gateway.set_policy(registration, invite=True)
        starts = int(time.time()) + 2 * 86400
        with gateway.admin() as client:
            changed = client.patch(
                f"/api/v1/rooms/{registration}",
                json={"registration": True, "starts_at": starts, "ends_at": starts + 7200},
            )
            assert changed.status_code == 200, changed.text
        yield Site(
            gateway,
            ways_in,
            lobby,
            proof,
            dashboard,
            admit(gateway, lobby, "Hilde", role="host"),
            registration,
            smtp_server.mailbox,
        )
    finally:
        stop_process(proc)


def new_context(browser: Browser, size: str) -> BrowserContext:
    if size == "phone":
        return browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    return browser.new_context(viewport=DESKTOP)


def speak(context: BrowserContext, site: Site, language: Language) -> None:
    """Choose `language` as the switcher's links do: the cookie they set."""
    context.add_cookies([{"name": COOKIE, "value": language.tag, "url": site.gateway.url}])


class Audit:
    """Runs axe on the page where it stands; collects what it finds, by page and setting."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self.axe = AXE.read_text(encoding="utf-8")
        self.found: list[str] = []
        self.pages = 0
        self.language: Language | None = None

    def check(self, page: Page, what: str) -> None:
        # The pages' Content-Security-Policy allows no inline script, so add_script_tag would be
        # refused; page.evaluate runs axe through the DevTools protocol, with the policy intact.
        page.evaluate(self.axe)
        lang = page.evaluate("document.documentElement.lang")
        # The page speaks the language chosen, or this would audit English three times.
        assert self.language is None or lang == self.language.tag, f"{what}: lang={lang}"
        # Both colour schemes on the page where it stands: half the navigation of two contexts.
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            for violation in page.evaluate(RUN_AXE, WCAG_22_AA):
                self.found.append(
                    f"{self.setting}/{scheme} {lang} {what}: {violation['id']} "
                    f"({violation['impact']}) " + " | ".join(violation["nodes"])
                )
        self.pages += 1


def fulfil_with(page: Page, url: str, body: str, status: int) -> None:
    def answer(route: Route) -> None:
        route.fulfill(status=status, body=body, content_type="text/html; charset=utf-8")

    page.route(url, answer)


def rendered(language: Language, name: str, **context: Any) -> str:
    token = current.set(language)
    try:
        return render(name, **context)
    finally:
        current.reset(token)


def walk(page: Page, site: Site, language: Language, audit: Audit, host_link: str) -> None:
    """Every page, in `language`, reached as a visitor or a host reaches it."""
    gateway = site.gateway
    url = gateway.url

    page.goto(url + "/")
    audit.check(page, "home")
    page.goto(f"{url}/j/{'x' * 43}")
    audit.check(page, "unknown link")

    # Proof-of-work is on for this room: joining starts the check, which takes minutes here. A
    # browser may still find an answer by luck within the audit's seconds (at this difficulty
    # about one chance in a hundred): the page then moves on under axe, and the check is taken
    # again on a fresh link.
    for tries_left in range(2, -1, -1):
        attendee = gateway.invite_token(gateway.create_invite(site.proof, "Ada Attendee"))
        page.goto(f"{url}/j/{attendee}")
        audit.check(page, "join (attendee)")
        page.locator("form button").first.click()
        expect(page.locator("[data-pow-progress]")).to_be_visible()
        try:
            audit.check(page, "proof-of-work")
            break
        except PlaywrightError:
            if tries_left == 0 or page.locator("[data-pow-progress]").count() > 0:
                raise

    page.goto(host_link)
    audit.check(page, "join (host)")

    page.goto(f"{url}/_meetgate/enter/{site.ways_in}")
    audit.check(page, "enter (sign-in, e-mail)")
    page.locator("#address").fill(f"user-{secrets.token_hex(4)}@example.org")
    page.locator("#address ~ button").click()
    expect(page.locator("#code")).to_be_visible()
    audit.check(page, "e-mail code")

    # Registering: the form, sent with mistakes, the code page, a wrong code, the thanks.
    page.goto(f"{url}/_meetgate/register/{site.registration}")
    audit.check(page, "registration form")
    address = f"reg-{secrets.token_hex(4)}@example.org"
    page.locator("#name").fill("Ada")
    page.locator("#email").fill("ada@localhost")
    page.locator("#note").fill("Hi \u202e")
    page.locator("form button[type=submit]").click()
    expect(page.locator("#email-error")).to_be_visible()
    audit.check(page, "registration form with errors")
    page.locator("#email").fill(address)
    page.locator("#note").fill("From the tenants' union")
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"**/_meetgate/register/{site.registration}/code")
    audit.check(page, "registration code")
    code = site.mailbox.wait_for(address)[0].code()
    page.locator("#code").fill(f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}")
    page.locator("form button[type=submit]").click()
    expect(page.locator("#code-error")).to_be_visible()
    audit.check(page, "registration code, wrong")
    page.locator("#code").fill(code)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"**/_meetgate/register/{site.registration}/done")
    audit.check(page, "registration thanks")

    # The lobby: waiting, then turned away by a host (the page follows by itself).
    name = f"Gina {secrets.token_hex(2)}"
    page.goto(f"{url}/_meetgate/enter/{site.lobby}")
    audit.check(page, "enter (lobby)")
    page.locator("#name").fill(name)
    page.locator("section form button").click()
    expect(page.locator("#lobby[data-state='waiting']")).to_be_visible()
    audit.check(page, "lobby waiting")
    host_action(
        gateway,
        site.lobby_host,
        "deny",
        request=request_of(gateway, site.lobby_host, f"{name} (guest)"),
    )
    expect(page.locator("#lobby[data-state='denied']")).to_be_visible()
    audit.check(page, "lobby denied")

    # Let in while this browser looked elsewhere, and the approval collected in another tab.
    page.goto(f"{url}/_meetgate/enter/{site.lobby}")
    page.locator("#name").fill(name + " again")
    page.locator("section form button").click()
    expect(page.locator("#lobby[data-state='waiting']")).to_be_visible()
    wait_url = page.url
    page.goto(url + "/")
    host_action(
        gateway,
        site.lobby_host,
        "approve",
        request=request_of(gateway, site.lobby_host, f"{name} again (guest)"),
    )
    lobby_cookie = next(c for c in page.context.cookies() if c["name"] == "meetgate-lobby")
    with httpx.Client(base_url=url, trust_env=False, verify=TLS) as other_tab:
        other_tab.cookies.set("meetgate-lobby", lobby_cookie["value"])
        assert other_tab.get(wait_url).status_code == 303
    page.goto(wait_url)
    expect(page.locator("#lobby[data-state='admitted']")).to_be_visible()
    audit.check(page, "lobby admitted")

    # An expired request and a 429 take minutes or a flood to reach: the same templates,
    # rendered here, are answered at the gate's own address (its stylesheet, its policy).
    expired = f"{url}/_meetgate/lobby/{site.lobby}/wait?expired"
    fulfil_with(
        page,
        expired,
        rendered(
            language,
            "lobby_wait.html",
            state="expired",
            room_title="Open assembly",
            enter_url=f"/_meetgate/enter/{site.lobby}",
            request_id="",
        ),
        410,
    )
    page.goto(expired)
    audit.check(page, "lobby expired")
    limited = f"{url}/j/{'y' * 43}"
    body, _ = error_body(RateLimited(30), "a11y", as_json=False, language=language)
    fulfil_with(page, limited, body.decode(), 429)
    page.goto(limited)
    audit.check(page, "429")
    page.unroute_all()

    page.goto(f"{url}/_meetgate/host/{site.dashboard}")
    expect(page.locator("#lobby > li")).to_have_count(1)
    # What the folded policy form holds is checked too.
    page.locator("#policy-details").evaluate("details => { details.open = true; }")
    audit.check(page, "dashboard")
    # Without the page's script a host action asks on a page of its own.
    page.locator("form[data-action='lock']").evaluate("form => form.submit()")
    page.wait_for_url(f"**/_meetgate/host/{site.dashboard}/lock")
    audit.check(page, "host confirmation")


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_page_passes_axe(site: Site, chromium: Browser, size: str) -> None:
    audit = Audit(size)
    context = new_context(chromium, size)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        gateway = site.gateway
        host_link = gateway.invite_token(
            gateway.create_invite(site.dashboard, "Hilde Host", role="host", max_uses=10)
        )
        host_link = f"{gateway.url}/j/{host_link}"
        page.goto(host_link)
        page.get_by_role("button", name="Open the host dashboard").click()
        page.wait_for_url(f"**/_meetgate/host/{site.dashboard}")
        for language in WALKED:
            speak(context, site, language)
            audit.language = language
            walk(page, site, language, audit, host_link)
        for language in GLANCED:
            speak(context, site, language)
            audit.language = language
            page.goto(f"{gateway.url}/_meetgate/enter/{site.ways_in}")
            audit.check(page, "enter (sign-in, e-mail)")
    finally:
        context.close()
    assert audit.pages == len(WALKED) * 20 + len(GLANCED)
    assert audit.found == [], "\n".join(audit.found)


# Runs before the page's own scripts: every text a live region takes, in the order it came.
RECORD_LIVE = """
new MutationObserver((changes) => {
  for (const change of changes) {
    const node = change.target.nodeType === 1 ? change.target : change.target.parentElement;
    const region = node && node.closest("[aria-live], [role=status], [role=alert]");
    if (region && region.textContent.trim()) console.info("live: " + region.textContent.trim());
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def live_texts(page: Page) -> list[str]:
    said: list[str] = []
    page.on("console", lambda m: said.append(m.text[6:]) if m.text.startswith("live: ") else None)
    page.add_init_script(RECORD_LIVE)
    return said


def is_live_region(page: Page, selector: str) -> None:
    region = page.locator(selector)
    expect(region).to_have_attribute("role", "status")
    expect(region).to_have_attribute("aria-live", "polite")
    # In the page (not hidden) before its text changes, or screen readers may not read it.
    assert region.evaluate("e => !e.closest('[hidden]') && getComputedStyle(e).display !== 'none'")


def test_status_changes_are_announced_in_live_regions(site: Site, chromium: Browser) -> None:
    gateway, url = site.gateway, site.gateway.url
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        said = live_texts(page)

        # Proof-of-work: its progress.
        attendee = gateway.invite_token(gateway.create_invite(site.proof, "Ada Attendee"))
        page.goto(f"{url}/j/{attendee}")
        page.get_by_role("button", name="Join the meeting").click()
        is_live_region(page, "[data-pow-status]")
        expect(page.locator("[data-pow-status]")).to_have_text("Checking your browser… 0%")
        assert "Checking your browser… 0%" in said

        # The lobby: waiting, then let in by a host.
        page.goto(f"{url}/_meetgate/enter/{site.lobby}")
        page.get_by_label("Your name").fill("Lena Live")
        page.get_by_role("button", name="Ask to join").click()
        is_live_region(page, "#lobby-live")
        expect(page.locator("#lobby-live")).to_contain_text("This page updates by itself")
        # The page leaves for the meeting at once: what its region said is in the record.
        request = request_of(gateway, site.lobby_host, "Lena Live (guest)")
        host_action(gateway, site.lobby_host, "approve", request=request)
        page.wait_for_url(f"**/{site.lobby}#jwt=*")
        assert "A host let you in. Opening the meeting…" in said

        # The dashboard: what a host action did.
        host = gateway.invite_token(gateway.create_invite(site.lobby, "Hanna Host", role="host"))
        page.goto(f"{url}/j/{host}")
        page.get_by_role("button", name="Open the host dashboard").click()
        page.wait_for_url(f"**/_meetgate/host/{site.lobby}")
        is_live_region(page, "#notice")
        with httpx.Client(base_url=url, trust_env=False, verify=TLS) as guest:
            assert knock(guest, gateway, site.lobby, "Nico Notice").status_code == 303
        card = page.locator("#lobby > li").filter(has_text="Nico Notice (guest)")
        page.once("dialog", lambda dialog: dialog.accept())
        card.get_by_role("button", name="Let in", exact=True).click()
        expect(page.locator("#notice")).to_contain_text("Nico Notice (guest) was let in")
        assert any("Nico Notice (guest) was let in" in text for text in said)
        # The notice shown, the roster grown, the room locked: still clean in both schemes.
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("form[data-action='lock'] button").click()
        expect(page.locator("#room-state")).to_have_attribute("data-state", "locked")
        expect(page.locator("#notice")).not_to_be_empty()
        audit = Audit("desktop")
        audit.check(page, "dashboard, locked, with a notice")
        assert audit.found == [], "\n".join(audit.found)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("form[data-action='unlock'] button").click()
        expect(page.locator("#room-state")).to_have_attribute("data-state", "open")
    finally:
        context.close()


FOCUS_SHOWN = """e => {
  const style = getComputedStyle(e);
  return e === document.activeElement && e.matches(":focus-visible")
    && style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
}"""


def tab_to(page: Page, target: str, passed: list[str]) -> None:
    """Press Tab until `target` has the focus; every control on the way shows it plainly."""
    for _ in range(20):
        page.keyboard.press("Tab")
        focused = page.locator(":focus")
        passed.append(focused.evaluate("e => e.outerHTML.slice(0, 80)"))
        assert focused.evaluate(FOCUS_SHOWN), f"no visible focus on {passed[-1]}"
        if focused.evaluate("(e, target) => e.matches(target)", target):
            return
    raise AssertionError(f"Tab never reached {target}: {passed}")


def test_join_and_knock_by_keyboard_alone(site: Site, chromium: Browser) -> None:
    gateway, url = site.gateway, site.gateway.url
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        passed: list[str] = []

        # An attendee's invite: Tab to the button, Enter, and into the meeting.
        room = f"keys-{secrets.token_hex(3)}"
        gateway.create_room(room, title="Keyboard club")
        link = gateway.invite_token(gateway.create_invite(room, "Kim Keys"))
        page.goto(f"{url}/j/{link}")
        tab_to(page, "button[type=submit]", passed)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/{room}#jwt=*")

        # A guest knocks at the lobby: the form filled and sent from the keyboard.
        page.goto(f"{url}/_meetgate/enter/{site.lobby}")
        tab_to(page, "#name", passed)
        page.keyboard.type("Kai Keys")
        tab_to(page, "#message", passed)
        page.keyboard.type("By keyboard")
        tab_to(page, "section button", passed)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/_meetgate/lobby/{site.lobby}/wait")
        expect(page.locator("#lobby[data-state='waiting']")).to_be_visible()
        tab_to(page, "form[method=get] button", passed)
        assert len(passed) >= 5
    finally:
        context.close()
