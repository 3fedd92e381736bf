"""The wire guard on BOSH (issue 16): a body carrying what no XMPP client sends ends the
sender's session, not anyone else's, and prosody never reads it; the end is counted and logged
with its stream error condition, as a WebSocket stream's end is.

A hand-written XEP-0206 client (strophe.js builds only well-formed bodies) signs in through the
real gate to the real prosody and joins a room; a strophe.js attendee watches it leave.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import wait_until
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.guard_helpers import LAUGHS, guarded_gateway, streams_ended
from tests.integration.journeys import admit, bosh_url, new_room, signalling_query, ws_url
from tests.integration.test_bosh_decoy import HTTPBIND, DecoyBoshClient

pytestmark = pytest.mark.slow

EURO = "€".encode()  # three bytes: e2 82 ac
# Each case: what comes before the <body> (a document type) and what goes inside it.
MALFORMED: dict[str, tuple[str, str | bytes]] = {
    "billion-laughs": (
        f"<!DOCTYPE body [{LAUGHS}]>",
        "<message xmlns='jabber:client' to='{room}' type='groupchat'><body>&lol9;</body></message>",
    ),
    "external-entity": (
        "<!DOCTYPE body [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>",
        "<message xmlns='jabber:client' to='{room}' type='groupchat'><body>&x;</body></message>",
    ),
    "deeply-nested": (
        "",
        "<message xmlns='jabber:client' to='{room}' id='deep'>"
        + "<a>" * 200
        + "</a>" * 200
        + "</message>",
    ),
    "not-well-formed": ("", "<message xmlns='jabber:client' to='{room}'><body>lol9</iq>"),
    "invalid-utf8": (
        "",
        b"<message xmlns='jabber:client' to='{room}' type='groupchat'><body>lol9 caf\xc3(</body>"
        b"</message>",
    ),
    "cut-inside-a-character": (
        "",
        b"<message xmlns='jabber:client' to='{room}' type='groupchat'><body>lol9 "
        + EURO[:2]
        + b"</body></message>",
    ),
    # Well-formed, but no client sends it: the guard's own refusals. A stanza over the guard's
    # cap (MAX_ELEMENT_BYTES, 256 KiB, prosody's own) in a body under the gate's (1 MiB).
    "unknown-element": ("", "<lol9 xmlns='jabber:client' to='{room}'/>"),
    "oversized-stanza": (
        "",
        "<message xmlns='jabber:client' to='{room}' type='groupchat'><body>lol9</body>"
        + "<json-message xmlns='http://jitsi.org/jitmeet'>"
        + "x" * (300 * 1024)
        + "</json-message></message>",
    ),
}
# What the gate counts and logs each case's end as: the stream error condition a WebSocket
# session would end with.
CONDITION = {
    "billion-laughs": "restricted-xml",
    "external-entity": "restricted-xml",
    "deeply-nested": "policy-violation",
    "not-well-formed": "not-well-formed",
    "invalid-utf8": "not-well-formed",
    "cut-inside-a-character": "not-well-formed",
    "unknown-element": "unsupported-stanza-type",
    "oversized-stanza": "policy-violation",
}
# A body that is not one well-formed, safe <body> is refused whole (400, BoshBodyInvalid) before
# the guard reads its stanzas; the others are answered with the end of the session (XEP-0124
# §17.2, a terminal binding condition).
BODY_REFUSED = {
    "billion-laughs",
    "external-entity",
    "deeply-nested",
    "not-well-formed",
    "invalid-utf8",
    "cut-inside-a-character",
}
ENDED_LOG = "wire guard: a session ended for input no client sends ({})"


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any
) -> Iterator[GatewayServer]:
    with guarded_gateway(tmp_path_factory, "guarded-bosh", jitsi_web, prosody, GENEROUS_LIMITS) as (
        server,
        _,
    ):
        yield server


class HandBoshClient(DecoyBoshClient):
    """XEP-0206 by hand, one request at a time: test_bosh_decoy's client (its sign-in), with
    plain bodies (no decoy) and a raw request for bodies prosody must never read."""

    def __init__(self, client: httpx.AsyncClient, url: str, domain: str) -> None:
        super().__init__(client, url, domain)
        self.rid = 2_000_000

    async def request(
        self, inner: str | bytes = "", prologue: str = "", **attributes: str
    ) -> httpx.Response:
        self.rid += 1
        spelled = "".join(
            f" {name.replace('_', ':')}='{value}'" for name, value in attributes.items()
        )
        if self.sid:
            spelled = f" sid='{self.sid}'" + spelled
        head = f"{prologue}<body rid='{self.rid}'{spelled} xmlns='{HTTPBIND}'>".encode()
        inside = inner if isinstance(inner, bytes) else inner.encode()
        return await self._client.post(
            self._url,
            content=head + inside + b"</body>",
            headers={"content-type": "text/xml; charset=utf-8"},
        )

    async def post(self, inner: str = "", **attributes: str) -> ET.Element:
        response = await self.request(inner, **attributes)
        assert response.status_code == 200, response.text
        answer = ET.fromstring(response.content)  # noqa: S314 - prosody of the tests answers
        assert answer.get("type") != "terminate", response.text
        return answer


async def signed_in(
    guarded: GatewayServer,
    prosody: Any,
    room: str,
    watcher: XmppClient,
    http: httpx.AsyncClient,
) -> HandBoshClient:
    """Mallory, signed in over BOSH by hand, in the watcher's room."""
    mallory = admit(guarded, room, "Mallory")
    hand = HandBoshClient(http, bosh_url(guarded, signalling_query(mallory)), prosody.domain)
    await hand.sign_in()
    muc = "http://jabber.org/protocol/muc"
    await hand.post(
        f"<presence to='{prosody.room_jid(room)}/mal' xmlns='jabber:client'>"
        f"<x xmlns='{muc}'/></presence>"
    )
    await watcher.wait_for_presence(nick="mal", type="available")
    return hand


async def sign_in_and_send(
    guarded: GatewayServer,
    prosody: Any,
    case: str,
    room: str,
    watcher: XmppClient,
    http: httpx.AsyncClient,
) -> tuple[HandBoshClient, httpx.Response]:
    """Mallory joins the watcher's room over BOSH by hand, then sends the case's body."""
    prologue, inner = MALFORMED[case]
    room_jid = prosody.room_jid(room)
    hand = await signed_in(guarded, prosody, room, watcher, http)
    if isinstance(inner, bytes):
        return hand, await hand.request(inner.replace(b"{room}", room_jid.encode()), prologue)
    return hand, await hand.request(inner.replace("{room}", room_jid), prologue)


def never_relayed(prosody: Any) -> None:
    log = prosody.log_text()
    assert "lol9" not in log and "file:///etc/passwd" not in log and "<a><a><a>" not in log


@asynccontextmanager
async def watched_room(
    guarded: GatewayServer, prosody: Any
) -> AsyncIterator[tuple[str, XmppClient, httpx.AsyncClient]]:
    """A new room, its host Ada joined over WebSocket to watch it, and an HTTP client for the
    hand-written BOSH one."""
    room = new_room(guarded)
    ada = admit(guarded, room, "Ada", role="host")
    async with (
        XmppClient.open(ws_url(guarded, signalling_query(ada))) as watcher,
        httpx.AsyncClient(trust_env=False, timeout=20, verify=TLS) as http,
    ):
        await watcher.join(prosody.room_jid(room), "ada")
        yield room, watcher, http


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_body_never_reaches_prosody_nor_troubles_others(
    guarded: GatewayServer, prosody: Any, case: str
) -> None:
    async with watched_room(guarded, prosody) as (room, watcher, http):
        _, answer = await sign_in_and_send(guarded, prosody, case, room, watcher, http)
        if case in BODY_REFUSED:
            assert answer.status_code == 400, answer.text
        else:
            assert answer.status_code == 200, answer.text
            ended = ET.fromstring(answer.content)  # noqa: S314 - the gate's own answer
            assert ended.get("type") == "terminate", answer.text
            assert ended.get("condition") == "policy-violation", answer.text
        await watcher.send_groupchat(prosody.room_jid(room), "still here")
        await watcher.wait_for_message(lambda m: m.body == "still here")
    never_relayed(prosody)


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_body_ends_its_session(
    guarded: GatewayServer, prosody: Any, case: str
) -> None:
    condition = CONDITION[case]
    before = streams_ended(guarded, condition)
    logged = logged_ends(guarded, condition)
    async with watched_room(guarded, prosody) as (room, watcher, http):
        hand, _ = await sign_in_and_send(guarded, prosody, case, room, watcher, http)
        await watcher.wait_for_presence(nick="mal", type="unavailable", timeout=5)
        after = await hand.request("")
        assert after.status_code != 200 or b"terminate" in after.content, after.text
    # Counted and logged once, with the condition the input earns and nothing of it.
    assert streams_ended(guarded, condition) - before == 1
    wait_until(
        lambda: logged_ends(guarded, condition) == logged + 1,
        what=f"the log line for a session ended ({condition})",
    )
    assert "lol9" not in guarded.log_text()


def logged_ends(gateway: GatewayServer, condition: str) -> int:
    return len(re.findall(re.escape(ENDED_LOG.format(condition)), gateway.log_text()))


async def test_a_body_over_the_gates_cap_is_refused_and_the_session_goes_on(
    guarded: GatewayServer, prosody: Any
) -> None:
    """A body over `[limits] max_body_bytes` (1 MiB) is refused before anything reads it (413):
    it is not judged, so it ends nothing, and the session goes on."""
    before = streams_ended(guarded)
    async with watched_room(guarded, prosody) as (room, watcher, http):
        room_jid = prosody.room_jid(room)
        hand = await signed_in(guarded, prosody, room, watcher, http)
        huge = (
            f"<message xmlns='jabber:client' to='{room_jid}' type='groupchat'><body>"
            + "x" * (1024 * 1024)
            + "</body></message>"
        )
        answer = await hand.request(huge)
        assert answer.status_code == 413, answer.text[:200]
        hand.rid -= 1  # prosody never saw that request: its number is used again
        await hand.post(
            f"<message xmlns='jabber:client' to='{room_jid}' type='groupchat'>"
            "<body>after the refusal</body></message>"
        )
        await watcher.wait_for_message(lambda m: m.body == "after the refusal")
        assert not watcher.stanzas_matching(lambda e: "xxxxxxxx" in ET.tostring(e, "unicode"))
        assert not [p for p in watcher.presences if p.nick == "mal" and p.type == "unavailable"]
    assert streams_ended(guarded) == before
