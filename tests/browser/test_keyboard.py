"""Every journey by keyboard alone (issue 14): a host removing, banning, locking and locking down
(with the page's script and without it), a guest with an e-mail code, the language switcher and
a sign-in with an OpenID provider. Only Tab, Shift+Tab, Enter, Space and the arrow keys move and
act; text is typed into the field that Tab (or the page's own autofocus) put the focus on. Every
control reached shows where the focus is: a ring of 2px or more (outline, or a box-shadow drawn
outside the control) with 3:1 contrast against what lies behind it.

One gateway (an SMTP server and one OpenID provider beside it) and one browser for the module.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect

from tests.browser.origins import OriginLog
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.oidc import OidcProviderServer, clients_for, oidc_table, start_oidc_provider
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.smtp import SmtpServer
from tests.integration.journeys import Admitted, admission_id, admit, host_action

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 800}
SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[email_codes]
ttl_seconds = 600
"""
# What is wrong with the focus shown on `e` ("" when nothing): it must be the active element,
# match :focus-visible and carry a ring of 2px or more whose colour stands 3:1 against the colour
# behind the control (its ancestors' backgrounds laid over each other, white under them all).
# An inset box-shadow is not counted: on these pages it is a control's own border.
FOCUS_PROBLEM = """e => {
  if (e !== document.activeElement) return "not the active element";
  if (!e.matches(":focus-visible")) return "does not match :focus-visible";
  const box = e.getBoundingClientRect();
  if (box.width < 1 || box.height < 1) return "has no size";
  const rgba = (c) => {
    const n = c.match(/[\\d.]+/g).map(Number);
    return [n[0], n[1], n[2], n.length > 3 ? n[3] : 1];
  };
  const over = ([r, g, b, a], under) => [r * a + under[0] * (1 - a),
    g * a + under[1] * (1 - a), b * a + under[2] * (1 - a)];
  const layers = [];
  for (let n = e.parentElement; n; n = n.parentElement) {
    layers.push(rgba(getComputedStyle(n).backgroundColor));
  }
  let behind = [255, 255, 255];
  for (const layer of layers.reverse()) behind = over(layer, behind);
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (x, y) => {
    const [hi, lo] = [lum(x), lum(y)].sort((p, q) => q - p);
    return (hi + 0.05) / (lo + 0.05);
  };
  const style = getComputedStyle(e);
  const rings = [];
  if (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2) {
    rings.push(rgba(style.outlineColor));
  }
  if (style.boxShadow !== "none") {
    for (const shadow of style.boxShadow.split(/,(?![^(]*\\))/)) {
      const colour = shadow.match(/rgba?\\([^)]*\\)/);
      const lengths = shadow.replace(/rgba?\\([^)]*\\)/, "").match(/-?[\\d.]+px/g) || [];
      if (!shadow.includes("inset") && colour && lengths.length >= 4
          && parseFloat(lengths[3]) >= 2) {
        rings.push(rgba(colour[0]));
      }
    }
  }
  if (rings.some((ring) => contrast(over(ring, behind), behind) >= 3)) return "";
  return `no ring: outline ${style.outlineStyle} ${style.outlineWidth} ${style.outlineColor}, `
    + `box-shadow ${style.boxShadow}, behind rgb(${behind.map(Math.round)})`;
}"""
DESCRIBE = "e => e === document.body ? '<body>' : e.outerHTML.slice(0, 100)"


@dataclass
class Site:
    gateway: GatewayServer
    provider: OidcProviderServer
    smtp: SmtpServer


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[Site]:
    provider_port = free_port()
    gateway, gateway_proc = start_gateway(
        tmp_path_factory.mktemp("keyboard"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS
        + SETTINGS.format(smtp_port=smtp_server.port)
        + oidc_table("idp", "University Login", f"http://127.0.0.1:{provider_port}"),
    )
    try:
        provider, provider_proc = start_oidc_provider(
            tmp_path_factory.mktemp("keyboard-idp"),
            provider_port,
            clients=clients_for(gateway.url, "idp"),
        )
        try:
            yield Site(gateway, provider, smtp_server)
        finally:
            stop_process(provider_proc)
    finally:
        stop_process(gateway_proc)


class Keyboard:
    """Moves the focus with Tab and Shift+Tab only, checking the focus shown at every stop."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.stops = 0

    def focused(self) -> str:
        return str(self.page.evaluate(f"({DESCRIBE})(document.activeElement)"))

    def shows_focus_on(self, target: Locator) -> None:
        problem = target.evaluate(FOCUS_PROBLEM)
        assert problem == "", f"{self.focused()}: {problem}"

    def is_on(self, target: Locator) -> None:
        """The focus is on `target` (where the page put it), plainly shown."""
        expect(target).to_be_focused()
        self.shows_focus_on(target)

    def tab_to(self, target: Locator, *, back: bool = False, within: int = 60) -> None:
        """Press Tab (Shift+Tab with `back`) until `target` has the focus, at most `within`
        times; every control on the way shows the focus plainly."""
        key = "Shift+Tab" if back else "Tab"
        passed: list[str] = []
        for _ in range(within):
            self.page.keyboard.press(key)
            self.stops += 1
            active = self.page.locator(":focus")
            expect(active).to_have_count(1)
            passed.append(self.focused())
            problem = active.evaluate(FOCUS_PROBLEM)
            assert problem == "", f"{passed[-1]}: {problem}"
            if target.evaluate("e => e === document.activeElement"):
                return
        raise AssertionError(f"{within} presses of {key} never reached {target}: {passed}")

    def type_into(self, target: Locator, text: str, **tab: Any) -> None:
        self.tab_to(target, **tab)
        self.page.keyboard.type(text)
        expect(target).to_have_value(text)


def accept_dialogs(page: Page) -> list[str]:
    """The script's confirm() questions, answered yes (the browser's own dialog: Enter does it)."""
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    return asked


@dataclass
class Board:
    room: str
    link: str  # the keyboard host's invite link
    cohost: Admitted


def board_room(gateway: GatewayServer) -> Board:
    """A room with four attendees and a co-host; the keyboard host's invite link."""
    room = f"keys-{secrets.token_hex(3)}"
    gateway.create_room(room, title="Keyboard board")
    for name in ("Ada Attendee", "Bob Banned", "Cleo Cleared", "Dora Dismissed"):
        admit(gateway, room, name)
    cohost = admit(gateway, room, "Hanna Host", role="host")
    token = gateway.invite_token(gateway.create_invite(room, "Hilde Host", role="host"))
    return Board(room, f"{gateway.url}/j/{token}", cohost)


def card(page: Page, name: str) -> Locator:
    return page.locator("#participants > li").filter(has_text=name)


def open_dashboard(page: Page, keys: Keyboard, link: str, room: str) -> None:
    page.goto(link)
    keys.tab_to(page.get_by_role("button", name="Open the host dashboard"))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/_meetgate/host/{room}")
    expect(page.locator("#participants > li")).to_have_count(6)


def test_host_removes_bans_locks_and_locks_down_by_keyboard(site: Site, chromium: Browser) -> None:
    board = board_room(site.gateway)
    room = board.room
    context = chromium.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        asked = accept_dialogs(page)
        keys = Keyboard(page)
        open_dashboard(page, keys, board.link, room)

        keys.tab_to(card(page, "Ada Attendee").get_by_role("button", name="Remove", exact=True))
        page.keyboard.press("Enter")
        expect(page.locator("#notice")).to_contain_text("Ada Attendee was removed")
        expect(card(page, "Ada Attendee")).to_have_count(0)
        # Her card went with the button: the focus waits on the roster's heading, not lost.
        keys.is_on(page.locator("#roster-heading"))

        bob = card(page, "Bob Banned")
        duration = bob.locator("select")
        keys.tab_to(duration)
        first = duration.input_value()
        page.keyboard.press("ArrowDown")
        chosen = duration.input_value()
        assert chosen != first
        phrase = duration.locator(f"option[value='{chosen}']").get_attribute("data-phrase")
        keys.tab_to(bob.get_by_role("button", name="Remove and ban"))
        page.keyboard.press("Enter")
        expect(page.locator("#notice")).to_contain_text("Bob Banned")
        expect(bob).to_have_count(0)
        assert asked[-1] == f"Remove and ban Bob Banned {phrase}?"
        keys.is_on(page.locator("#roster-heading"))

        # Another host removes Cleo while the focus is on her card: the roster's update takes
        # the card away, and the focus waits on the roster's heading again.
        keys.tab_to(card(page, "Cleo Cleared").get_by_role("button", name="Remove", exact=True))
        cleo = admission_id(site.gateway, board.cohost, "Cleo Cleared")
        host_action(site.gateway, board.cohost, "revoke", admission=cleo)
        expect(card(page, "Cleo Cleared")).to_have_count(0)
        keys.is_on(page.locator("#roster-heading"))

        keys.tab_to(page.get_by_role("button", name="Lock", exact=True), back=True)
        page.keyboard.press("Enter")
        expect(page.locator("#room-state")).to_have_attribute("data-state", "locked")
        # Lock made way for Unlock: the focus moved along to it.
        keys.is_on(page.get_by_role("button", name="Unlock"))

        lockdown = page.get_by_role("button", name="Emergency lockdown")
        keys.tab_to(lockdown, within=2)
        page.keyboard.press("Space")
        expect(page.locator("#room-state")).to_have_attribute("data-state", "lockdown")
        expect(card(page, "Dora Dismissed")).to_have_count(0)
        keys.is_on(lockdown)
        assert asked == [
            "Remove Ada Attendee from the meeting?",
            f"Remove and ban Bob Banned {phrase}?",
            "Lock the room? Nobody new can join.",
            "EMERGENCY LOCKDOWN: lock the room and remove every attendee now?",
        ]
    finally:
        context.close()


def confirm_on_its_page(page: Page, keys: Keyboard, question: str, room: str) -> None:
    """The confirmation page: its button is the first stop, and the dashboard follows."""
    expect(page.get_by_role("heading", level=1)).to_have_text(question)
    keys.tab_to(page.locator("main form button[type=submit]"), within=1)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/_meetgate/host/{room}(\?done=[a-z-]+)?$"))


def test_host_acts_by_keyboard_without_script(site: Site, chromium: Browser) -> None:
    board = board_room(site.gateway)
    room = board.room
    # In the dark scheme: its focus ring must show against the dark card as well.
    context = chromium.new_context(viewport=DESKTOP, java_script_enabled=False, color_scheme="dark")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        keys = Keyboard(page)
        open_dashboard(page, keys, board.link, room)

        keys.tab_to(card(page, "Ada Attendee").get_by_role("button", name="Remove", exact=True))
        page.keyboard.press("Enter")
        confirm_on_its_page(page, keys, "Remove Ada Attendee from the meeting?", room)
        expect(card(page, "Ada Attendee")).to_have_count(0)

        bob = card(page, "Bob Banned")
        keys.tab_to(bob.locator("select"))
        for key in ("ArrowDown", "ArrowDown", "ArrowUp"):
            page.keyboard.press(key)
        expect(bob.locator("select")).to_have_value("1d")
        keys.tab_to(bob.get_by_role("button", name="Remove and ban"))
        page.keyboard.press("Space")
        confirm_on_its_page(page, keys, "Remove and ban Bob Banned for 1 day?", room)
        expect(bob).to_have_count(0)

        keys.tab_to(page.get_by_role("button", name="Lock", exact=True))
        page.keyboard.press("Enter")
        confirm_on_its_page(page, keys, "Lock the room?", room)
        expect(page.locator("#room-state")).to_have_attribute("data-state", "locked")

        keys.tab_to(page.get_by_role("button", name="Emergency lockdown"))
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_contain_text("lockdown", ignore_case=True)
        keys.tab_to(page.locator("main form button[type=submit]"), within=1)
        page.keyboard.press("Space")
        page.wait_for_url(re.compile(rf"/_meetgate/host/{room}(\?done=[a-z-]+)?$"))
        expect(page.locator("#room-state")).to_have_attribute("data-state", "lockdown")
        expect(card(page, "Cleo Cleared")).to_have_count(0)
        expect(card(page, "Dora Dismissed")).to_have_count(0)
    finally:
        context.close()


def test_guest_joins_with_an_email_code_by_keyboard(site: Site, chromium: Browser) -> None:
    gateway = site.gateway
    room = f"mail-{secrets.token_hex(3)}"
    gateway.create_room(room, title="Planning")
    gateway.set_policy(room, email_code=True, allowed_domains=["example.org"])
    email = f"kim-{secrets.token_hex(4)}@example.org"
    context = chromium.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        keys = Keyboard(page)
        page.goto(f"{gateway.url}/_meetgate/enter/{room}")
        keys.type_into(page.locator("#address"), email, within=1)
        keys.tab_to(page.get_by_role("button", name="Send me a code"), within=1)
        page.keyboard.press("Enter")
        expect(page.get_by_text("a code is on its way")).to_be_visible()

        # The page puts the focus on the code's field itself, shown as plainly as a Tab would.
        code_field = page.locator("#code")
        expect(code_field).to_be_focused()
        keys.shows_focus_on(code_field)
        page.keyboard.type(site.smtp.mailbox.wait_for(email)[0].code())
        keys.type_into(page.locator("#name"), "Kim Keys", within=1)
        keys.tab_to(page.get_by_role("button", name="Join the meeting"), within=1)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/{room}#jwt=*")
    finally:
        context.close()


def test_language_switcher_by_keyboard(site: Site, chromium: Browser) -> None:
    gateway = site.gateway
    room = f"lang-{secrets.token_hex(3)}"
    gateway.create_room(room, title="Assembly")
    gateway.set_policy(room, email_code=True, lobby=True)
    context = chromium.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        keys = Keyboard(page)
        page.goto(f"{gateway.url}/_meetgate/enter/{room}")
        # The switcher closes the page: Shift+Tab from the top reaches it at once.
        switcher = page.locator("nav.languages")
        keys.tab_to(switcher.locator("a[lang='zh-Hant']"), back=True, within=2)
        page.keyboard.press("Enter")
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hant")
        expect(switcher.locator("[aria-current='true']")).to_have_attribute("lang", "zh-Hant")

        # The page in its new language starts where it did: the first Tab is its first field.
        keys.tab_to(page.locator("#address"), within=1)
        # On to the switcher from this end too, and home to English.
        keys.tab_to(switcher.locator("a[lang='en']"), within=5)
        page.keyboard.press("Enter")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        keys.tab_to(page.locator("#address"), within=1)
    finally:
        context.close()


def test_sign_in_with_a_provider_by_keyboard(
    site: Site, chromium: Browser, origins: OriginLog
) -> None:
    origins.allow(site.provider.url)  # the provider's own pages, an origin of their own
    gateway = site.gateway
    room = f"sso-{secrets.token_hex(3)}"
    gateway.create_room(room, title="Staff meeting")
    gateway.set_policy(room, oidc=True)
    context = chromium.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        keys = Keyboard(page)
        page.goto(f"{gateway.url}/_meetgate/enter/{room}")
        keys.tab_to(page.get_by_role("link", name="Sign in with University Login"), within=1)
        page.keyboard.press("Enter")

        # The provider's own pages are not Meetgate's: filled however they are.
        page.wait_for_url(f"{site.provider.url}/**")
        page.locator("input[name=login]").fill("ada")
        page.locator("input[name=password]").fill("any password")
        page.locator("button[type=submit]").click()
        page.locator("button[type=submit]").click()  # its consent form
        page.wait_for_url(f"**/{room}#jwt=*")
        assert page.url.startswith(gateway.url)
    finally:
        context.close()
