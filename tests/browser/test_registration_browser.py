"""Registering in a real browser (Debian's chromium driven by playwright), on a phone-sized screen
and in Chinese: the form filled and sent, the code read from the real SMTP server the tests run
(aiosmtpd), entered, and the thank-you page shown; the pages fit the screen, speak the reader's
language, and ask for nothing from another origin.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.slow

# The narrowest phone the pages are made for.
NARROW_PHONE: ViewportSize = {"width": 360, "height": 740}
SMTP = """
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Meetgate <gate@meet.test>"
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("register"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + SMTP.format(port=smtp_server.port),
    )
    yield server
    stop_process(proc)


def registration_room(gateway: GatewayServer, title: str) -> str:
    """A room taking registrations for a meeting two days from now, set as an admin does."""
    room = f"register-{secrets.token_hex(4)}"
    gateway.create_room(room, title=title)
    gateway.set_policy(room, invite=True)
    starts = int(time.time()) + 2 * 86400
    with gateway.admin() as admin:
        changed = admin.patch(
            f"/api/v1/rooms/{room}",
            json={"registration": True, "starts_at": starts, "ends_at": starts + 2 * 3600},
        )
        assert changed.status_code == 200, changed.text
    return room


def fits_the_screen(page: Page) -> None:
    """Nothing wider than the phone: no sideways scrolling."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW_PHONE["width"], f"{page.url} is {width}px wide"


@pytest.mark.parametrize(
    ("locale", "tag"), [("zh-CN", "zh-Hans"), ("zh-TW", "zh-Hant")], ids=["hans", "hant"]
)
def test_a_person_registers_in_chinese_on_a_phone(
    gateway: GatewayServer, chromium: Browser, smtp_server: SmtpServer, locale: str, tag: str
) -> None:
    room = registration_room(gateway, "租户大会")
    email = f"wang-{secrets.token_hex(4)}@example.org"
    context = chromium.new_context(
        viewport=NARROW_PHONE, is_mobile=True, has_touch=True, locale=locale
    )
    asked: list[str] = []
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("request", lambda request: asked.append(request.url))
        page.goto(f"{gateway.url}/_meetgate/register/{room}")
        expect(page.locator("html")).to_have_attribute("lang", tag)
        expect(page.get_by_role("heading", level=1)).to_have_text("租户大会")
        expect(page.locator("time")).to_contain_text("UTC")
        fits_the_screen(page)
        # Each field is found by its label, as a screen reader announces it.
        for field in ("name", "email", "note"):
            assert page.locator(f"label[for={field}]").count() == 1
        page.locator("#name").fill("王小明")
        page.locator("#email").fill(email)
        page.locator("#note").fill("我是租户协会的成员。")
        page.locator("form button[type=submit]").click()

        page.wait_for_url(f"**/_meetgate/register/{room}/code")
        expect(page.locator("html")).to_have_attribute("lang", tag)
        fits_the_screen(page)
        message = smtp_server.mailbox.wait_for(email)[0]
        assert message.message["Content-Language"] == tag
        assert "租户大会" in message.message["subject"]
        page.locator("#code").fill(message.code())
        page.locator("form button[type=submit]").click()

        page.wait_for_url(f"**/_meetgate/register/{room}/done")
        expect(page.locator("html")).to_have_attribute("lang", tag)
        expect(page.locator("#outcome")).to_have_attribute("data-outcome", "waiting")
        fits_the_screen(page)
        # The switcher: the same thank-you page in English.
        page.get_by_role("link", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("#outcome")).to_contain_text("The organisers will review")
    finally:
        context.close()
    assert asked and all(url.startswith(gateway.url + "/") for url in asked), asked


def test_a_wrong_code_is_said_beside_the_field(
    gateway: GatewayServer, chromium: Browser, smtp_server: SmtpServer
) -> None:
    room = registration_room(gateway, "Tenants' assembly")
    email = f"ada-{secrets.token_hex(4)}@example.org"
    context = chromium.new_context(viewport=NARROW_PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{gateway.url}/_meetgate/register/{room}")
        page.get_by_label("Your name").fill("Ada")
        page.get_by_label("Your e-mail address").fill(email)
        page.get_by_role("button", name="Register").click()
        page.wait_for_url(f"**/_meetgate/register/{room}/code")
        code = smtp_server.mailbox.wait_for(email)[0].code()
        wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
        field = page.get_by_label(f"The {len(code)}-digit code from the e-mail")
        field.fill(wrong)
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("alert")).to_contain_text("That code is not right.")
        expect(field).to_have_attribute("aria-invalid", "true")
        # The field's description is the error, as a screen reader reads it with the field.
        described = field.evaluate(
            "e => document.getElementById(e.getAttribute('aria-describedby')).textContent"
        )
        assert "That code is not right." in described
        expect(field).to_be_focused()
        field.fill(code)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url(f"**/_meetgate/register/{room}/done")
        expect(page.locator("#outcome")).to_have_attribute("data-outcome", "waiting")
    finally:
        context.close()
