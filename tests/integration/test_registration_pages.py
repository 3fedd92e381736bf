"""The registration pages attendees see (issue 19), in-process: the whole gate (`create_app`) on
the memory store, on an event loop of its own (tests/fixtures/in_process.py), its codes sent to a
real SMTP server the tests run (aiosmtpd) and read from there. Form, code, thank-you; wrong,
used and lapsed codes; re-registration; cross-site posts; rooms without registration; hostile
input; the rate limits and the proof-of-work under a flood; the pages and the e-mail in Chinese.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.metrics import Metrics
from gateway.proxy.gate import Gate
from gateway.settings import load_settings
from gateway.store.memory import MemoryStore
from gateway.store.records import Room, RoomPolicy
from tests.fixtures.in_process import EventLoopThread, LoopTransport
from tests.fixtures.proof_of_work import challenge, solve
from tests.fixtures.smtp import Received, SmtpServer

ORIGIN = "http://127.0.0.1:8000"
COOKIE = "meetgate-register"
MAX_NOTE = 500
# Each test speaks from client addresses of its own (X-Forwarded-For, from a trusted proxy), so
# the per-address limit is each test's own; the room's and network's are out of the way.
ENVIRON = {
    "MEETGATE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
    "MEETGATE_RATES__ADDRESS": '{"per_minute": 6, "burst": 10}',
    "MEETGATE_RATES__NETWORK": '{"per_minute": 1000000, "burst": 100000}',
    "MEETGATE_RATES__ROOM": '{"per_minute": 1000000, "burst": 100000}',
    "MEETGATE_RATES__IDENTITY": '{"per_minute": 600, "burst": 60}',
    "MEETGATE_RATES__GATE": '{"per_minute": 1000000, "burst": 100000}',
    "MEETGATE_RATES__REGISTRATION": '{"per_minute": 1000000, "burst": 100000}',
    "MEETGATE_CHALLENGE__MODE": "auto",
    "MEETGATE_CHALLENGE__PRESSURE_THRESHOLD": "8",
    "MEETGATE_CHALLENGE__BASE_DIFFICULTY": "8",
    "MEETGATE_CHALLENGE__MAX_DIFFICULTY": "10",
    "MEETGATE_SMTP__HOST": "127.0.0.1",
    "MEETGATE_SMTP__SECURITY": "none",
    "MEETGATE_SMTP__SENDER": "Meetgate <gate@meet.test>",
    "MEETGATE_EMAIL_CODES__MAX_ATTEMPTS": "3",
    "MEETGATE_REGISTRATION__MAX_NOTE_CHARS": str(MAX_NOTE),
}
# Saturday 12 December 2026, 14:00 to 16:30 UTC.
STARTS = 1797084000.0
ENDS = STARTS + 2.5 * 3600


@dataclass
class Site:
    gate: Gate
    store: MemoryStore
    loop: EventLoopThread
    mailbox: Any

    def room(self, *, registration: bool = True, **fields: Any) -> str:
        name = f"reg-{secrets.token_hex(4)}"
        room = Room(
            name=name,
            title=fields.pop("title", "Tenants' assembly"),
            created_at=time.time(),
            policy=RoomPolicy(invite=True),
            registration=registration,
            starts_at=fields.pop("starts_at", STARTS),
            ends_at=fields.pop("ends_at", ENDS),
            **fields,
        )
        self.loop.run(self.store.create_room(room))
        return name

    def set_room(self, name: str, **changes: Any) -> None:
        async def change() -> None:
            room = await self.store.get_room(name)
            assert room is not None
            await self.store.update_room(replace(room, **changes))

        self.loop.run(change())

    def browser(self, address: str | None = None, **headers: str) -> httpx.Client:
        sent = {"origin": ORIGIN, "x-forwarded-for": address or fresh_client_address()}
        return httpx.Client(
            base_url=ORIGIN,
            transport=LoopTransport(self.gate, self.loop.loop),
            headers={**sent, **headers},
            timeout=30,
        )


@contextmanager
def running_site(smtp_server: SmtpServer, **environ: str) -> Iterator[Site]:
    """The gate in this process, on a memory store of its own, sending to `smtp_server`;
    `environ`'s settings over ENVIRON's."""
    settings = load_settings(
        None, environ={**ENVIRON, **environ, "MEETGATE_SMTP__PORT": str(smtp_server.port)}
    )
    loop = EventLoopThread()
    store = MemoryStore()

    async def build() -> Gate:
        gate = create_app(settings, store, Metrics())
        await gate.start()
        return gate

    gate = loop.run(build())
    try:
        yield Site(gate, store, loop, smtp_server.mailbox)
    finally:
        loop.run(gate.aclose())
        loop.close()


@pytest.fixture(scope="module")
def site(smtp_server: SmtpServer) -> Iterator[Site]:
    with running_site(smtp_server) as running:
        yield running


@pytest.fixture
def flooded_site(smtp_server: SmtpServer) -> Iterator[Site]:
    """A gate of its own: a flood raises the whole gate's pressure too."""
    with running_site(smtp_server) as running:
        yield running


counter = iter(range(1, 1_000_000))


def fresh_client_address() -> str:
    n = next(counter)
    return f"198.51.{n // 256 % 256}.{n % 256}"


def fresh_email() -> str:
    return f"reg-{secrets.token_hex(5)}@example.org"


def form(room: str) -> str:
    return f"/_meetgate/register/{room}"


def send(browser: httpx.Client, room: str, **fields: str) -> httpx.Response:
    return browser.post(f"{form(room)}/send", data=fields)


def confirm(browser: httpx.Client, room: str, code: str) -> httpx.Response:
    return browser.post(f"{form(room)}/confirm", data={"code": code})


def registered(
    site: Site, browser: httpx.Client, room: str, email: str, name: str = "Ada", note: str = ""
) -> Received:
    """Send the form as a person does; the e-mail with the code that came of it."""
    before = len(site.mailbox.to(email))
    sent = send(browser, room, name=name, email=email, note=note)
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == f"{form(room)}/code"
    message: Received = site.mailbox.wait_for(email, before + 1)[-1]
    return message


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def without_request_ids(page: str) -> str:
    return re.sub(r"request [0-9a-f]+", "request …", page)


def outcome(page: httpx.Response) -> str:
    found = re.search(r'data-outcome="([a-z-]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_register_confirm_and_thanks(site: Site) -> None:
    room = site.room(title="Tenants' assembly")
    email = fresh_email()
    with site.browser() as browser:
        page = browser.get(form(room))
        assert page.status_code == 200
        assert "Tenants&#39; assembly" in page.text
        # The meeting's time in the reader's language, in UTC, said as such; and in the markup.
        assert "Saturday, December 12, 2026, 14:00\u201316:30 UTC" in page.text
        assert '<time datetime="2026-12-12T14:00+00:00">' in page.text
        assert f'maxlength="{MAX_NOTE}"' in page.text
        assert f"At most {MAX_NOTE} characters" in page.text
        # Every field has its label; no script, no style in the page (the CSP allows neither).
        for field in ("name", "email", "note"):
            assert f'<label for="{field}">' in page.text
        assert "<script" not in page.text and "style=" not in page.text

        message = registered(site, browser, room, email, name="Ada Lovelace", note="Hello")
        assert message.message["subject"] == "Confirm your registration for Tenants' assembly"
        assert message.message["Content-Language"] == "en"
        assert COOKIE in browser.cookies

        code_page = browser.get(f"{form(room)}/code")
        assert code_page.status_code == 200
        assert 'id="code"' in code_page.text and "on its way" in code_page.text
        # The e-mail says where the code goes: this page, in this browser.
        where = f"in the browser you registered in: {ORIGIN}{form(room)}/code"
        assert [line for line in message.body.splitlines() if line.endswith(where)]

        done = confirm(browser, room, message.code())
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{form(room)}/done"
        thanks = browser.get(done.headers["location"])
        assert thanks.status_code == 200
        assert outcome(thanks) == "waiting"
        assert "The organisers will review your registration" in thanks.text
        assert "your invitation will come by e-mail" in thanks.text
        # Reloaded, and in another language: the same thanks (the browser keeps the outcome).
        assert outcome(browser.get(f"{form(room)}/done?lang=zh-Hant")) == "waiting"

        # The code works once: sent again from a copy of the cookie, nothing is waiting.
    with site.browser() as again:
        again.cookies.set(COOKIE, f"code:{room}:{'0' * 32}:{'a' * 43}")
        refused = confirm(again, room, message.code())
        assert refused.status_code == 404
        assert "Please register again" in refused.text
        assert 'id="code"' not in refused.text


def test_a_wrong_code_can_be_tried_again_then_too_many_end_it(site: Site) -> None:
    room = site.room()
    email = fresh_email()
    with site.browser() as browser:
        code = registered(site, browser, room, email).code()
        wrong = confirm(browser, room, other_code(code))
        assert wrong.status_code == 400
        assert "That code is not right." in wrong.text
        # The error is tied to the field it is about, and the field is there to try again.
        assert 'aria-invalid="true"' in wrong.text and 'aria-describedby="code-error"' in wrong.text
        assert 'id="code-error"' in wrong.text
        right = confirm(browser, room, code)
        assert right.status_code == 303

    with site.browser() as browser:
        code = registered(site, browser, room, fresh_email()).code()
        # What is no code at all is not a try; each wrong code is (max_attempts = 3).
        assert confirm(browser, room, "not a code").status_code == 400
        assert confirm(browser, room, other_code(code)).status_code == 400
        assert confirm(browser, room, other_code(code)).status_code == 400
        ended = confirm(browser, room, other_code(code))
        assert ended.status_code == 403
        assert "Too many wrong codes" in ended.text and 'id="code"' not in ended.text
        # Not even the right code counts now.
        assert confirm(browser, room, code).status_code == 404


def test_a_lapsed_registration_asks_to_register_again(site: Site) -> None:
    room = site.room()
    with site.browser() as browser:
        code = registered(site, browser, room, fresh_email()).code()
        held = browser.cookies[COOKIE].split(":")
        # What the store's expiry does once confirm_ttl_seconds have passed: the record is gone.
        site.loop.run(site.store.delete_value(f"registration:pending:{held[2]}"))
        lapsed = confirm(browser, room, code)
        assert lapsed.status_code == 404
        assert "it may have expired. Please register again." in lapsed.text
        assert 'id="code"' not in lapsed.text
        assert f'href="{form(room)}"' in lapsed.text


def test_no_cookie_no_code_page(site: Site) -> None:
    room, other = site.room(), site.room()
    with site.browser() as browser:
        page = browser.get(f"{form(room)}/code")
        assert page.status_code == 200
        assert "No registration is waiting for a code in this browser" in page.text
        assert 'id="code"' not in page.text
        assert confirm(browser, room, "123456").status_code == 409
        # A registration for one room is not the other room's.
        registered(site, browser, room, fresh_email())
        assert 'id="code"' not in browser.get(f"{form(other)}/code").text
        assert confirm(browser, other, "123456").status_code == 409
        # A thank-you page with nothing to thank for.
        assert "data-outcome" not in browser.get(f"{form(room)}/done").text


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        "code",
        "code:{room}",
        "code:{room}:abc",
        "code:{room}:" + "0" * 32 + ":" + "a" * 42 + "!",
        "code:{room}:" + "0" * 32 + ":" + "a" * 400,
        "done:{room}:maybe",
        "done:{room}:waiting:extra",
        "\u202e:{room}",
    ],
    ids=["empty", "kind", "room", "short", "bad-secret", "long", "outcome", "extra", "bidi"],
)
def test_a_forged_cookie_is_nothing_held(site: Site, cookie: str) -> None:
    room = site.room()
    raw = f"{COOKIE}={cookie.format(room=room)}".encode()
    with site.browser() as browser:
        browser.headers = httpx.Headers([*browser.headers.raw, (b"cookie", raw)])
        page = browser.get(f"{form(room)}/code")
        assert page.status_code == 200 and 'id="code"' not in page.text
        assert confirm(browser, room, "123456").status_code == 409
        assert "data-outcome" not in browser.get(f"{form(room)}/done").text


def test_registering_again_updates_and_says_so_only_with_the_code(site: Site) -> None:
    room = site.room()
    email = fresh_email()
    with site.browser() as first:
        code = registered(site, first, room, email, name="Ada").code()
        assert confirm(first, room, code).status_code == 303
        assert outcome(first.get(f"{form(room)}/done")) == "waiting"

    # Sending the form again answers exactly as for a new address: nothing is revealed there.
    with site.browser() as again, site.browser() as stranger:
        resent = send(again, room, name="Ada L.", email=email, note="Updated")
        fresh = send(stranger, room, name="Ada L.", email=fresh_email(), note="Updated")
        assert (resent.status_code, resent.headers["location"]) == (
            fresh.status_code,
            fresh.headers["location"],
        )
        code_pages = [b.get(f"{form(room)}/code") for b in (again, stranger)]
        assert without_request_ids(code_pages[0].text) == without_request_ids(code_pages[1].text)
        # With the code: the earlier registration was updated, not added to.
        code = site.mailbox.wait_for(email, 2)[-1].code()
        assert confirm(again, room, code).status_code == 303
        thanks = again.get(f"{form(room)}/done")
        assert outcome(thanks) == "updated"
        assert "that registration is now updated, not added twice" in thanks.text

    registrations = site.loop.run(
        site.store.index_members(f"registration:room:{room}")
    )  # one registration for the address
    assert len(registrations) == 1


def test_auto_approved_says_the_invitation_is_on_its_way(site: Site) -> None:
    room = site.room(auto_approve_domains=("example.org",))
    email = fresh_email()
    with site.browser() as browser:
        code = registered(site, browser, room, email).code()
        assert confirm(browser, room, code).status_code == 303
        thanks = browser.get(f"{form(room)}/done")
        assert outcome(thanks) == "approved"
        assert "your invitation is on its way" in thanks.text


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
    ids=["other-origin", "null-origin", "cross-site", "same-site"],
)
def test_cross_site_posts_are_refused(site: Site, headers: dict[str, str]) -> None:
    room = site.room()
    email = fresh_email()
    with site.browser(**headers) as browser:
        refused = send(browser, room, name="Mallory", email=email)
        assert refused.status_code == 403
        assert "sent from another site" in refused.text
        assert confirm(browser, room, "123456").status_code == 403
    assert site.mailbox.to(email) == []


def test_a_room_without_registration_reads_as_no_room(site: Site) -> None:
    closed = site.room(registration=False)
    unknown = f"reg-{secrets.token_hex(4)}"
    pages: dict[str, list[str]] = {}
    with site.browser() as browser:
        for room in (closed, unknown):
            answers = [
                browser.get(form(room)),
                send(browser, room, name="Ada", email=fresh_email()),
                browser.get(f"{form(room)}/code"),
                confirm(browser, room, "123456"),
                browser.get(f"{form(room)}/done"),
            ]
            assert [a.status_code for a in answers] == [404] * 5
            assert "There is no registration at this address" in answers[0].text
            pages[room] = [without_request_ids(a.text.replace(room, "ROOM")) for a in answers]
        # Not a word tells a room that exists from one that does not.
        assert pages[closed] == pages[unknown]
    # A name no room can have gets the same page (from an address of its own: every post above
    # was charged too).
    with site.browser() as browser:
        assert browser.get(form("x" * 80)).status_code == 404


def test_a_meeting_over_takes_no_registrations(site: Site) -> None:
    room = site.room(starts_at=time.time() - 3 * 86400, ends_at=time.time() - 2 * 86400)
    with site.browser() as browser:
        page = browser.get(form(room))
        assert page.status_code == 403
        assert "This meeting has ended, so it takes no more registrations." in page.text


# Each a field's value and the message beside that field.
HOSTILE = [
    ("name", "A" * 65, "A name can be at most 64 characters long."),
    ("name", "", "Please give a name."),
    ("name", "Ada\x07Bell", None),
    ("name", "Ada\u202eecnalovoL", None),
    ("name", "0123456789abcdef" * 4, "This looks like a code, not a name."),
    ("email", "not an address", "That is not an e-mail address"),
    ("email", "a@b.c\r\nBcc: x@evil.example", "That is not an e-mail address"),
    ("email", "x" * 300 + "@example.org", "That is not an e-mail address"),
    ("note", "n" * (MAX_NOTE + 1), f"at most {MAX_NOTE} characters long"),
    ("note", "Hi\x00there", "contains a character that is not allowed"),
    ("note", "Hi \u202egnitirw", "contains a character that is not allowed"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    HOSTILE,
    ids=[
        "long-name",
        "empty-name",
        "bell-in-name",
        "bidi-in-name",
        "id-shaped-name",
        "not-an-address",
        "header-injection",
        "long-address",
        "long-note",
        "nul-in-note",
        "bidi-in-note",
    ],
)
def test_hostile_input_is_refused_beside_its_field(
    site: Site, field: str, value: str, message: str | None
) -> None:
    room = site.room()
    fields = {"name": "Ada", "email": fresh_email(), "note": "", field: value}
    with site.browser() as browser:
        page = send(browser, room, **fields)
    assert page.status_code == 400, page.text
    error = re.search(rf'<p class="error" id="{field}-error">(.*?)</p>', page.text, re.S)
    assert error, page.text
    if message is not None:
        assert message in error.group(1)
    # The field says it is wrong and where it is said; it has the focus.
    control = re.search(rf'<(?:input|textarea) id="{field}"[^>]*>', page.text)
    assert control
    assert 'aria-invalid="true"' in control.group(0)
    assert f"{field}-error" in control.group(0) and "autofocus" in control.group(0)
    # The other fields are not marked.
    assert page.text.count('aria-invalid="true"') == 1
    assert not site.mailbox.to(fields["email"])


def test_what_was_typed_comes_back_escaped(site: Site) -> None:
    room = site.room()
    note = '<script>alert("note")</script> & </textarea><b>'
    name = '"><img src=x onerror=alert(1)>'
    with site.browser() as browser:
        page = send(browser, room, name=name, email="not an address", note=note)
    assert page.status_code == 400
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "</textarea><b>" not in page.text
    assert "&lt;script&gt;alert(&#34;note&#34;)&lt;/script&gt; &amp; &lt;/textarea&gt;" in page.text
    assert 'value="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page.text


def test_a_script_in_the_note_is_kept_as_text(site: Site) -> None:
    # A note may say anything printable: it is the hosts' pages' job to show it as text.
    room = site.room()
    with site.browser() as browser:
        code = registered(site, browser, room, fresh_email(), note="<script>x()</script>").code()
        assert confirm(browser, room, code).status_code == 303


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"name=" + b"A" * 40_000, "application/x-www-form-urlencoded", 413),
        (b"name=a&name=b&email=x", "application/x-www-form-urlencoded", 400),
        (b"\xff\xfe=1", "application/x-www-form-urlencoded", 400),
        (b'{"name": "Ada"}', "application/json", 400),
    ],
    ids=["too-large", "repeated", "not-utf8", "json"],
)
def test_a_body_that_is_no_form_is_refused(
    site: Site, body: bytes, content_type: str, status: int
) -> None:
    room = site.room()
    with site.browser() as browser:
        answer = browser.post(
            f"{form(room)}/send", content=body, headers={"content-type": content_type}
        )
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")


def test_a_note_at_its_limit_in_chinese_fits_the_form(site: Site) -> None:
    # Four-byte characters, each percent-encoded: the form's size allows the longest honest note.
    room = site.room()
    with site.browser() as browser:
        code = registered(site, browser, room, fresh_email(), name="艾達", note="𠀀" * MAX_NOTE)
        assert confirm(browser, room, code.code()).status_code == 303


def test_too_many_attempts_from_one_address_get_the_429_page(site: Site) -> None:
    room = site.room()
    answers = []
    with site.browser() as browser:
        for _ in range(14):
            answers.append(send(browser, room, name="Ada", email=fresh_email()))
    statuses = [answer.status_code for answer in answers]
    assert 303 in statuses and statuses[-1] == 429
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["content-type"].startswith("text/html")
    assert "Too many attempts" in refused.text or "Please wait" in refused.text


def test_looking_at_forms_is_charged_whether_or_not_the_room_exists(site: Site) -> None:
    # The form is no free oracle for which rooms exist: each look costs the address the same.
    room, unknown = site.room(), f"reg-{secrets.token_hex(4)}"
    with site.browser() as browser:
        statuses = [browser.get(form(room if n % 2 else unknown)).status_code for n in range(14)]
    assert statuses[:2] == [404, 200] and statuses[-2:] == [429, 429]


@pytest.mark.parametrize("page", ["code", "done"])
def test_looking_at_code_and_thanks_pages_is_charged_whether_or_not_the_room_exists(
    site: Site, page: str
) -> None:
    # A room that takes registrations shows these pages, any other answers 404: each look costs
    # the address what a look at the form does, or they would tell the rooms apart for free.
    room, unknown = site.room(), f"reg-{secrets.token_hex(4)}"
    with site.browser() as browser:
        statuses = [
            browser.get(f"{form(room if n % 2 else unknown)}/{page}").status_code for n in range(14)
        ]
    assert statuses[:2] == [404, 200] and statuses[-2:] == [429, 429]


def test_a_denied_registration_reads_as_one_still_waiting(site: Site) -> None:
    room = site.room()
    denied, waiting = fresh_email(), fresh_email()
    for email in (denied, waiting):
        with site.browser() as browser:
            assert (
                confirm(browser, room, registered(site, browser, room, email).code()).status_code
                == 303
            )
    registrations = site.gate.registrations
    assert registrations is not None
    page = site.loop.run(registrations.page(room, now=time.time()))
    first = next(r for r in page.items if r.created_at == min(i.created_at for i in page.items))
    assert site.loop.run(registrations.deny(room, [first.id], "host", time.time())) == 1
    # Each registers again: the denied one and the waiting one read the same thanks.
    thanks = []
    for email in (denied, waiting):
        with site.browser() as browser:
            code = registered(site, browser, room, email, name="Ada again").code()
            assert confirm(browser, room, code).status_code == 303
            thanks.append(browser.get(f"{form(room)}/done"))
    assert [outcome(t) for t in thanks] == ["updated", "updated"]
    assert without_request_ids(thanks[0].text) == without_request_ids(thanks[1].text)


def challenge_of(page: httpx.Response) -> tuple[str, int] | None:
    return challenge(page.text) if page.status_code == 200 else None


def test_under_a_flood_the_form_asks_for_proof_of_work(flooded_site: Site) -> None:
    site = flooded_site
    room = site.room()
    # A flood of bad forms from many addresses, until the room's pressure has the gate ask for
    # proof-of-work (each refusal adds to it; the gate reads it anew every second).
    deadline = time.monotonic() + 15
    demanded = None
    while demanded is None:
        assert time.monotonic() < deadline, "no proof-of-work demanded under the flood"
        with site.browser() as flooder:
            answer = send(flooder, room, name="x", email="nope")
            assert answer.status_code in (200, 400), answer.text
            demanded = challenge_of(answer)
    email = fresh_email()
    note = "Genuinely interested — 真的"
    fields = {"name": "Ada", "email": email, "note": note}
    with site.browser() as person:
        page = send(person, room, **fields)
        challenge = challenge_of(page)
        assert challenge is not None, page.text
        assert 'src="/_meetgate/static/pow.js"' in page.text
        assert f'action="{form(room)}/send"' in page.text
        # What was typed rides along, to be sent again once the proof is found.
        assert f'<input type="hidden" name="note" value="{note}">' in page.text
        assert site.mailbox.to(email) == []
        wrong = send(person, room, **fields, pow_token=challenge[0], answer="x")
        assert wrong.status_code == 403
        challenge = challenge_of(send(person, room, **fields))
        assert challenge is not None
        solved = send(person, room, **fields, pow_token=challenge[0], answer=solve(*challenge))
        assert solved.status_code == 303, solved.text
        code = site.mailbox.wait_for(email)[0].code()
        assert confirm(person, room, code).status_code == 303
        assert outcome(person.get(f"{form(room)}/done")) == "waiting"


@pytest.mark.parametrize(
    ("accept", "tag"),
    [("zh-CN,zh;q=0.9", "zh-Hans"), ("zh-TW,zh;q=0.9", "zh-Hant")],
    ids=["simplified", "traditional"],
)
def test_chinese_pages_and_the_email_follow_the_page(site: Site, accept: str, tag: str) -> None:
    room = site.room(title="租户大会")
    email = fresh_email()
    with site.browser(**{"accept-language": accept}) as browser:
        page = browser.get(form(room))
        assert page.status_code == 200
        assert f'<html lang="{tag}">' in page.text
        assert "租户大会" in page.text
        # The date as the language writes it.
        assert "2026年12月12日" in page.text
        for field in ("name", "email", "note"):
            assert f'<label for="{field}">' in page.text
        message = registered(site, browser, room, email, name="王小明")
        assert message.message["Content-Language"] == tag
        assert "租户大会" in message.message["subject"]
        code_page = browser.get(f"{form(room)}/code")
        assert f'<html lang="{tag}">' in code_page.text
        assert confirm(browser, room, message.code()).status_code == 303
        thanks = browser.get(f"{form(room)}/done")
        assert f'<html lang="{tag}">' in thanks.text and outcome(thanks) == "waiting"


def test_the_language_switcher_leads_back_to_each_page(site: Site) -> None:
    room = site.room()
    with site.browser() as browser:
        page = browser.get(form(room))
        assert f'href="{form(room)}?lang=zh-Hans"' in page.text
        refused = send(browser, room, name="", email="x")
        assert f'href="{form(room)}?lang=zh-Hant"' in refused.text
        registered(site, browser, room, fresh_email())
        wrong = confirm(browser, room, "000000x")
        assert f'href="{form(room)}/code?lang=zh-Hans"' in wrong.text
        switched = browser.get(f"{form(room)}/code?lang=zh-Hans")
        assert '<html lang="zh-Hans">' in switched.text and 'id="code"' in switched.text
