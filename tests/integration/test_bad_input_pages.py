"""The gate's own pages answer bad input with the error page (or its JSON form), never a 500,
a traceback or FastAPI's JSON echoing what was sent: in-process, the whole gate on the memory
store, every page route tried with generated paths, queries, forms and bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admission.invites import make_invite
from gateway.app import create_app
from gateway.metrics import Metrics
from gateway.proxy.gate import Gate
from gateway.settings import load_settings
from gateway.store.memory import MemoryStore
from gateway.store.records import Role, Room

ORIGIN = "http://127.0.0.1:8000"
OPEN = '{"per_minute": 10000000, "burst": 1000000}'
# Generous limits: this test is about bad input, not about being rate limited.
ENVIRON = {
    "MEETGATE_CHALLENGE__MODE": "off",
    **{f"MEETGATE_RATES__{kind}": OPEN for kind in ("ADDRESS", "NETWORK", "ROOM", "GATE")},
    **{f"MEETGATE_RATES__{kind}": OPEN for kind in ("IDENTITY", "INVITE")},
    # Registration needs a mail server named; nothing listens there (a code's mail fails in the
    # background, which is not what this test looks at).
    "MEETGATE_SMTP__HOST": "127.0.0.1",
    "MEETGATE_SMTP__PORT": "9",
    "MEETGATE_SMTP__SECURITY": "none",
}
# Every route of Meetgate's pages, with a room and an invite that exist where one is named.
GET_ROUTES = [
    "/",
    "/j/{token}",
    "/_meetgate/ticket",
    "/_meetgate/health",
    "/_meetgate/keys/{junk}",
    "/_meetgate/static/{junk}",
    "/_meetgate/oidc/{junk}/login",
    "/_meetgate/oidc/{junk}/callback",
    "/_meetgate/lobby/{room}/wait",
    "/_meetgate/lobby/{room}/status",
    "/_meetgate/enter/{room}",
    "/_meetgate/enter/{junk}",
    "/_meetgate/host",
    "/_meetgate/host/{room}",
    "/_meetgate/host/{room}/roster",
    "/_meetgate/host/{room}/invitations",
    "/_meetgate/host/{room}/invitations/progress",
    "/_meetgate/host/{room}/invitations/registrations",
    "/_meetgate/register/{room}",
    "/_meetgate/register/{room}/code",
    "/_meetgate/register/{room}/done",
    "/_meetgate/register/{junk}",
]
POST_ROUTES = [
    "/j/{token}",
    "/_meetgate/oidc/{junk}/login",
    "/_meetgate/email/{room}/send",
    "/_meetgate/email/{room}/verify",
    "/_meetgate/lobby/{room}",
    "/_meetgate/lobby/{room}/leave",
    "/_meetgate/host/{room}/revoke",
    "/_meetgate/host/{room}/{junk}",
    "/_meetgate/host/{room}/invitations/invite",
    "/_meetgate/host/{room}/invitations/import",
    "/_meetgate/host/{room}/invitations/meeting",
    "/_meetgate/host/{room}/invitations/approve",
    "/_meetgate/host/{room}/invitations/deny",
    "/_meetgate/register/{room}/send",
    "/_meetgate/register/{room}/confirm",
    "/_meetgate/register/{junk}/send",
]
FORM = "application/x-www-form-urlencoded"
# A path segment as a browser would send it: anything, percent-encoded.
SEGMENT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=80).map(
    lambda text: quote(text, safe="")
) | st.from_regex(r"[a-z0-9_.~-]{1,70}", fullmatch=True)
QUERY = st.lists(
    st.tuples(
        st.sampled_from(["room", "done", "code", "state", "next", "x", "room"])
        | st.text(max_size=10),
        st.text(max_size=20) | st.text(min_size=60, max_size=300),
    ),
    max_size=4,
)
BODY = st.binary(max_size=600) | st.text(max_size=600).map(str.encode)
CONTENT_TYPE = st.sampled_from([FORM, f"{FORM}; charset=utf-8", "application/json", "text/plain"])


class Pages:
    def __init__(self, gate: Gate, token: str) -> None:
        self.gate = gate
        self.token = token

    def path(self, template: str, junk: str) -> str:
        return template.format(token=self.token, room="rally", junk=junk)


@pytest.fixture
async def pages() -> AsyncIterator[Pages]:
    settings_ = load_settings(None, environ=ENVIRON)
    store = MemoryStore()
    gate = create_app(settings_, store, Metrics())
    await store.create_room(
        Room(name="rally", title="Rally", created_at=time.time(), registration=True)
    )
    made = make_invite(
        room="rally",
        name="Ada",
        role=Role.HOST,
        max_uses=10_000,
        lifetime_seconds=3600,
        now=time.time(),
    )
    await store.add_invite(made.invite)
    yield Pages(gate, made.token)
    await gate.aclose()


def client(pages: Pages, **headers: str) -> httpx.AsyncClient:
    # raise_app_exceptions off: an exception escaping the app is a 500 here, as a server sends.
    transport = httpx.ASGITransport(pages.gate, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=ORIGIN, headers=headers)


def assert_clear(response: httpx.Response, *, as_json: bool = False) -> None:
    assert response.status_code < 500, response.text[:400]
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        kind = "application/json" if as_json else "text/html"
        assert response.headers["content-type"].startswith(kind), response.headers
        assert '"detail"' not in response.text


async def test_a_query_value_a_route_cannot_take_gets_the_error_page(pages: Pages) -> None:
    room = "a" * 65
    async with client(pages) as browser:
        page = await browser.get("/_meetgate/ticket", params={"room": room})
        as_json = await browser.get(
            "/_meetgate/ticket", params={"room": room}, headers={"accept": "application/json"}
        )
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert "cannot read" in page.text and room not in page.text
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_input" and room not in as_json.text


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\xfe=1", FORM, 400),
        (b'{"next": "dashboard"}', "application/json", 400),
        (b"next=a&next=b", FORM, 400),
        (b"a=1&" * 2000, FORM, 413),
    ],
    ids=["not utf-8", "json", "repeated field", "too large"],
)
async def test_a_form_that_cannot_be_read_gets_the_error_page(
    pages: Pages, body: bytes, content_type: str, status: int
) -> None:
    async with client(pages, origin=ORIGIN) as browser:
        response = await browser.post(
            f"/j/{pages.token}", content=body, headers={"content-type": content_type}
        )
    assert response.status_code == status
    assert_clear(response)


async def test_a_form_streamed_past_its_cap_is_refused_unread(pages: Pages) -> None:
    """No Content-Length: the body is counted as it comes and refused once past the cap."""
    reads = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal reads
        while reads < 10_000:
            reads += 1
            yield b"a=1&" * 256

    async with client(pages, origin=ORIGIN) as browser:
        response = await browser.post(
            f"/j/{pages.token}", content=endless(), headers={"content-type": FORM}
        )
    assert response.status_code == 413
    assert reads < 10


@pytest.mark.parametrize("template", GET_ROUTES)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(junk=SEGMENT, query=QUERY, as_json=st.booleans())
async def test_any_query_on_any_page_gets_a_clear_answer(
    pages: Pages, template: str, junk: str, query: list[tuple[str, str]], as_json: bool
) -> None:
    accept = "application/json" if as_json else "text/html"
    async with client(pages, accept=accept) as browser:
        response = await browser.get(pages.path(template, junk), params=query)
    assert_clear(response, as_json=as_json)


@pytest.mark.parametrize("template", POST_ROUTES)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(junk=SEGMENT, body=BODY, content_type=CONTENT_TYPE)
async def test_any_form_on_any_page_gets_a_clear_answer(
    pages: Pages, template: str, junk: str, body: bytes, content_type: str
) -> None:
    headers: dict[str, Any] = {"content-type": content_type}
    async with client(pages, origin=ORIGIN) as browser:
        response = await browser.post(pages.path(template, junk), content=body, headers=headers)
    assert_clear(response)


@pytest.mark.parametrize("query", [{}, {"room": "rally"}, {"room": "a" * 65}])
async def test_head_on_the_ticket_refresh_is_answered_as_get_is(
    pages: Pages, query: dict[str, str]
) -> None:
    """HEAD on the ticket refresh (a route outside the pages' framework): GET's status and
    header fields, no body. Catches the route answering GET only (HEAD fell through to the
    pages' 404 once it left Starlette)."""
    async with client(pages) as browser:
        got = await browser.get("/_meetgate/ticket", params=query)
        head = await browser.head("/_meetgate/ticket", params=query)
    assert got.status_code in (400, 403)
    assert head.status_code == got.status_code
    for name in ("content-type", "content-length"):
        assert head.headers[name] == got.headers[name]
    assert head.content == b""


@pytest.mark.parametrize(
    ("template", "status"),
    [
        ("/", 200),
        ("/j/{token}", 200),
        ("/j/unknown-link", 404),
        ("/_meetgate/health", 200),
        ("/_meetgate/static/nothing.css", 404),
    ],
)
async def test_head_on_a_public_page_is_answered_as_get_is(
    pages: Pages, template: str, status: int
) -> None:
    """HEAD (a chat app's link previewer, a front's health check) on the pages FastAPI serves:
    GET's status and header fields, no body. FastAPI answers only the methods a route names, so
    HEAD fell through to a 404 before."""
    path = pages.path(template, "")
    async with client(pages) as browser:
        got = await browser.get(path)
        head = await browser.head(path)
    assert head.status_code == got.status_code == status
    assert "content-type" in got.headers
    for name in ("content-type", "content-length", "cache-control"):
        assert head.headers.get(name) == got.headers.get(name)
    assert head.content == b""


async def test_head_on_the_ticket_refresh_of_a_live_admission_is_answered_as_get_is(
    pages: Pages,
) -> None:
    """The refresh Jitsi's page makes with a live admission: HEAD gets GET's status and its
    header fields (the ticket's redirect), no body."""
    async with client(pages) as browser:
        joined = await browser.post(
            f"/j/{pages.token}", content=b"", headers={"content-type": FORM, "origin": ORIGIN}
        )
        assert joined.status_code == 303, joined.text[:400]
        got = await browser.get("/_meetgate/ticket", params={"room": "rally"})
        head = await browser.head("/_meetgate/ticket", params={"room": "rally"})
    assert got.status_code == 303, got.text[:400]
    assert head.status_code == got.status_code
    assert head.headers["location"].split("jwt=")[0] == got.headers["location"].split("jwt=")[0]
    assert head.headers.keys() == got.headers.keys()
    assert head.content == b""
