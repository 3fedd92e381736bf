"""The wire guard on BOSH (issue 16): a body carrying what no XMPP client sends ends the
sender's session, not anyone else's, and prosody never reads it.

A hand-written XEP-0206 client (strophe.js builds only well-formed bodies) signs in through the
real gate to the real prosody and joins a room; a strophe.js attendee watches it leave.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.guard_helpers import guarded_gateway
from tests.integration.journeys import admit, bosh_url, new_room, signalling_query, ws_url
from tests.integration.test_bosh_decoy import HTTPBIND, DecoyBoshClient
from tests.integration.test_wire_guard import LAUGHS

pytestmark = pytest.mark.slow

# Each case: what comes before the <body> (a document type) and what goes inside it.
MALFORMED = {
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
    # Well-formed, but no client sends it: the guard's own refusal.
    "unknown-element": ("", "<lol9 xmlns='jabber:client' to='{room}'/>"),
}
# A body that is not well-formed XML is refused whole (400, BoshBodyInvalid) before the guard
# reads its stanzas, and the session it names goes on.
BODY_REFUSED = {"billion-laughs", "external-entity", "deeply-nested", "not-well-formed"}


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
        self, inner: str = "", prologue: str = "", **attributes: str
    ) -> httpx.Response:
        self.rid += 1
        spelled = "".join(
            f" {name.replace('_', ':')}='{value}'" for name, value in attributes.items()
        )
        if self.sid:
            spelled = f" sid='{self.sid}'" + spelled
        body = f"{prologue}<body rid='{self.rid}'{spelled} xmlns='{HTTPBIND}'>{inner}</body>"
        return await self._client.post(
            self._url, content=body.encode(), headers={"content-type": "text/xml; charset=utf-8"}
        )

    async def post(self, inner: str = "", **attributes: str) -> ET.Element:
        response = await self.request(inner, **attributes)
        assert response.status_code == 200, response.text
        answer = ET.fromstring(response.content)  # noqa: S314 - prosody of the tests answers
        assert answer.get("type") != "terminate", response.text
        return answer


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
    mallory = admit(guarded, room, "Mallory")
    hand = HandBoshClient(http, bosh_url(guarded, signalling_query(mallory)), prosody.domain)
    await hand.sign_in()
    muc = "http://jabber.org/protocol/muc"
    await hand.post(
        f"<presence to='{room_jid}/mal' xmlns='jabber:client'><x xmlns='{muc}'/></presence>"
    )
    await watcher.wait_for_presence(nick="mal", type="available")
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
        refused = answer.status_code != 200 or (
            ET.fromstring(answer.content).get("type") == "terminate"  # noqa: S314
        )
        assert refused, answer.text
        await watcher.send_groupchat(prosody.room_jid(room), "still here")
        await watcher.wait_for_message(lambda m: m.body == "still here")
    never_relayed(prosody)


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_body_ends_its_session(
    guarded: GatewayServer, prosody: Any, case: str
) -> None:
    async with watched_room(guarded, prosody) as (room, watcher, http):
        hand, _ = await sign_in_and_send(guarded, prosody, case, room, watcher, http)
        await watcher.wait_for_presence(nick="mal", type="unavailable", timeout=5)
        after = await hand.request("")
        assert after.status_code != 200 or b"terminate" in after.content, after.text
