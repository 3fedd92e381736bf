"""The lobby in a real browser (Debian's chromium driven by playwright): one browser asks to be
let in and waits, a second (the host) answers on the dashboard by clicking, and the first lands
in the meeting, or on a clear page, without anyone reloading by hand; with the page's event
stream, with its polling fallback, and without script through "Check again". A request nobody
answers expires, and both pages show it by themselves.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Locator, Page, expect

from tests.browser.test_dashboard_browser import BrowserLog
from tests.fixtures.browser import PHONE
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.integration.journeys import Admitted, admit, host_action
from tests.integration.test_lobby import waiting

pytestmark = pytest.mark.slow

MEETING_MARKER = "Jitsi Meet test page"


@dataclass
class Visitor:
    page: Page
    log: BrowserLog


def visitor(context: BrowserContext) -> Visitor:
    """A page in its own browser context (its own cookies), with what it requested and logged."""
    log = BrowserLog()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("request", lambda request: log.requests.append(request.url))
    page.on("console", log.console)

    def page_error(error: Exception) -> None:
        # The test meeting page loads random bytes as a script: its errors are not the lobby's.
        if "/_meetgate/" in page.url:
            log.errors.append(f"{error} ({page.url})")

    page.on("pageerror", page_error)
    return Visitor(page, log)


def lobby_room(gateway: GatewayServer) -> str:
    room = f"assembly-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Open assembly")
    gateway.set_policy(room, lobby=True)
    return room


def open_dashboard(host: Visitor, gateway: GatewayServer, room: str) -> None:
    link = gateway.invite_token(gateway.create_invite(room, "Hilde Host", role="host"))
    host.page.goto(f"{gateway.url}/j/{link}")
    host.page.get_by_role("button", name="Open the host dashboard").click()
    host.page.wait_for_url(f"{gateway.url}/_meetgate/host/{room}")


def ask_to_join(guest: Visitor, gateway: GatewayServer, room: str, name: str) -> None:
    page = guest.page
    page.goto(f"{gateway.url}/_meetgate/enter/{room}")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("A short message for the hosts (optional)").fill("From the tenants' union")
    page.get_by_role("button", name="Ask to join").click()
    page.wait_for_url(f"{gateway.url}/_meetgate/lobby/{room}/wait")
    expect(page.get_by_role("heading", name="Waiting for a host")).to_be_visible()
    expect(page.locator("#lobby-name")).to_have_text(f"{name} (guest)")


def answer(host: Visitor, name: str, button: str) -> list[str]:
    """Click `button` on the waiting person's card and accept the question; return it."""
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    card = host.page.locator("#lobby > li").filter(has_text=name)
    expect(card).to_have_count(1)
    host.page.once("dialog", accept)
    card.get_by_role("button", name=button, exact=True).click()
    expect(card).to_have_count(0)
    return asked


def only_own_requests(gateway: GatewayServer, *visitors: Visitor) -> None:
    for seen in visitors:
        foreign = [url for url in seen.log.requests if not url.startswith(gateway.url + "/")]
        assert foreign == []
        assert seen.log.errors == []


@pytest.mark.parametrize("live", ["stream", "polling"])
def test_a_host_lets_a_waiting_guest_in_and_the_guest_lands_in_the_meeting(
    gateway: GatewayServer, chromium: Browser, live: str
) -> None:
    room = lobby_room(gateway)
    host = visitor(chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True))
    guest_context = chromium.new_context()
    if live == "polling":
        # A browser without EventSource falls back to polling the JSON status.
        guest_context.add_init_script("delete window.EventSource;")
    guest = visitor(guest_context)
    open_dashboard(host, gateway, room)
    expect(host.page.locator("#lobby-empty")).to_be_visible()

    ask_to_join(guest, gateway, room, "Gina Guest")
    expect(guest.page.locator("#lobby-live")).to_contain_text("updates by itself")

    # The request shows up on the host's dashboard by itself, with what was verified.
    card = host.page.locator("#lobby > li").filter(has_text="Gina Guest (guest)")
    expect(card).to_have_count(1)
    expect(card.locator('[data-slot="message"]')).to_have_text("From the tenants' union")
    expect(card.locator('[data-slot="via"]')).to_have_text("lobby")
    expect(card.locator('[data-slot="guest"]')).to_be_visible()
    expect(host.page.locator("#lobby-count")).to_have_text("1")

    asked = answer(host, "Gina Guest (guest)", "Let in")
    assert asked == ["Let Gina Guest (guest) in?"]
    expect(host.page.locator("#notice")).to_contain_text("Gina Guest (guest) was let in")

    # The guest's page goes into the meeting by itself.
    guest.page.wait_for_url(re.compile(rf"^{re.escape(gateway.url)}/{room}#jwt=[\w.-]+$"))
    expect(guest.page.get_by_role("heading", name=MEETING_MARKER)).to_be_visible()
    participants = host.page.locator("#participants > li")
    expect(participants.filter(has_text="Gina Guest (guest)")).to_have_count(1)
    # The log says a guest was let in, not who (it would otherwise list who attended).
    expect(host.page.locator("#audit")).to_contain_text("Hilde Host approve")
    expect(host.page.locator("#audit")).not_to_contain_text("Gina")

    status_path = f"/_meetgate/lobby/{room}/status"
    events_path = f"/_meetgate/lobby/{room}/events"
    if live == "stream":
        assert any(url.endswith(events_path) for url in guest.log.requests)
        assert not any(url.endswith(status_path) for url in guest.log.requests)
    else:
        assert any(url.endswith(status_path) for url in guest.log.requests)
        assert not any(url.endswith(events_path) for url in guest.log.requests)
    # Nobody reloaded by hand: the wait page was loaded once by the form, once by the script.
    waits = [url for url in guest.log.requests if url.endswith(f"/_meetgate/lobby/{room}/wait")]
    assert len(waits) == 2
    only_own_requests(gateway, host, guest)


def test_a_turned_away_guest_sees_it_at_once(gateway: GatewayServer, chromium: Browser) -> None:
    room = lobby_room(gateway)
    host = visitor(chromium.new_context())
    guest = visitor(chromium.new_context())
    open_dashboard(host, gateway, room)
    ask_to_join(guest, gateway, room, "Troll Toll")
    asked = answer(host, "Troll Toll (guest)", "Turn away and ban")
    assert asked == ["Turn Troll Toll (guest) away and ban them from this meeting?"]
    expect(guest.page.get_by_role("heading", name="You cannot join this meeting")).to_be_visible()
    expect(guest.page.get_by_text("barred you")).to_be_visible()
    wait_url = f"{gateway.url}/_meetgate/lobby/{room}/wait"
    assert guest.page.url == wait_url
    # The answer page says 403, which the browser notes in its console; nothing else may.
    refused = f"the server responded with a status of 403 (Forbidden) ({wait_url})"
    assert [e for e in guest.log.errors if e.endswith(refused)] != []
    guest.log.errors = [e for e in guest.log.errors if not e.endswith(refused)]
    only_own_requests(gateway, host, guest)


def test_without_script_check_again_leads_into_the_meeting(
    gateway: GatewayServer, chromium: Browser
) -> None:
    room = lobby_room(gateway)
    host = visitor(chromium.new_context())
    guest = visitor(chromium.new_context(java_script_enabled=False))
    open_dashboard(host, gateway, room)
    ask_to_join(guest, gateway, room, "Nora Noscript")
    guest.page.get_by_role("button", name="Check again").click()
    expect(guest.page.get_by_role("heading", name="Waiting for a host")).to_be_visible()
    answer(host, "Nora Noscript (guest)", "Let in")
    guest.page.get_by_role("button", name="Check again").click()
    guest.page.wait_for_url(re.compile(rf"/{room}#jwt="))
    expect(guest.page.get_by_role("heading", name=MEETING_MARKER)).to_be_visible()
    assert not any("/events" in url or "/status" in url for url in guest.log.requests)
    only_own_requests(gateway, host, guest)


# The shortest wait the settings allow. The request that must expire is made as the module starts
# (`patient`), so these seconds pass while the other tests run, not idle in the expiry test.
LOBBY_TTL_SECONDS = 20


@dataclass
class Patient:
    """A request nobody answers: the gate it waits at, both pages, and a co-host's view of it."""

    server: GatewayServer
    room: str
    host: Visitor
    guest: Visitor
    card: Locator
    co_host: Admitted
    request: dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def patient(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, chromium: Browser
) -> Iterator[Patient]:
    """The guest asks to join and the host's dashboard shows the request; nobody answers.
    test_a_request_nobody_answers_expires_on_both_pages sees its end."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("lobby-ttl"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + f"\n[lobby]\nttl_seconds = {LOBBY_TTL_SECONDS}\n",
    )
    try:
        room = lobby_room(server)
        host = visitor(chromium.new_context())
        guest = visitor(chromium.new_context())
        open_dashboard(host, server, room)
        ask_to_join(guest, server, room, "Paula Patient")
        card = host.page.locator("#lobby > li").filter(has_text="Paula Patient (guest)")
        expect(card).to_have_count(1)
        co_host = admit(server, room, "Co Host", role="host")
        [request] = waiting(server, co_host)
        yield Patient(server, room, host, guest, card, co_host, request)
        # Its pages go first: the gate's stop would wait for the guest's open event stream.
        for seen in (guest, host):
            seen.page.context.close()
    finally:
        stop_process(proc)


def test_a_request_nobody_answers_expires_on_both_pages(patient: Patient) -> None:
    server, room, card = patient.server, patient.room, patient.card
    host, guest = patient.host, patient.guest
    # Nobody answers. The guest's page follows the request to its end by itself...
    expired = guest.page.get_by_role("heading", name="Your request expired")
    expect(expired).to_be_visible(timeout=(LOBBY_TTL_SECONDS + 60) * 1000)
    wait_url = f"{server.url}/_meetgate/lobby/{room}/wait"
    assert guest.page.url == wait_url
    # ...and it leaves the host's list by itself; a late answer changes nothing.
    expect(card).to_have_count(0)
    expect(host.page.locator("#lobby-empty")).to_be_visible()
    late = host_action(server, patient.co_host, "approve", request=patient.request["id"])
    assert late["done"] is False
    assert waiting(server, patient.co_host) == []

    # The page's link asks again, from the gate page.
    guest.page.get_by_role("link", name="Ask again").click()
    guest.page.wait_for_url(f"{server.url}/_meetgate/enter/{room}")
    ask_to_join(guest, server, room, "Paula Patient")
    expect(card).to_have_count(1)
    # The expired page says 410, which the browser notes in its console; nothing else may.
    gone = f"the server responded with a status of 410 (Gone) ({wait_url})"
    assert [e for e in guest.log.errors if e.endswith(gone)] != []
    guest.log.errors = [e for e in guest.log.errors if not e.endswith(gone)]
    only_own_requests(server, host, guest)
