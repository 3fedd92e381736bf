"""The wire guard's WebSocket input that no XMPP library sends (issue 16): invalid UTF-8 in a
text message, a message cut inside a character, a character split across fragments, and a
binary message, each from a hand-written RFC 7395 client signed in through the real gate to the
real prosody; a strophe.js host watches the room.

Invalid UTF-8 never reaches the guard: the WebSocket layer (gateway/edge/server.py) fails the
connection with close code 1007 (RFC 6455 §8.1), not an XMPP stream error. A binary message
reaches it and ends the stream with `unsupported-encoding` (RFC 7395 §3.2: text frames only).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.guard_helpers import guarded_gateway, streams_ended, sync
from tests.integration.journeys import admit, new_room, signalling_query, ws_url

pytestmark = pytest.mark.slow

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAM_MANAGEMENT = "urn:xmpp:sm:3"
MUC = "http://jabber.org/protocol/muc"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
TIMEOUT = 10.0
# RFC 6455 §7.4.1: a text message whose data is not UTF-8.
INVALID_DATA = 1007
TOO_BIG = 1009
EURO = "€".encode()  # three bytes: e2 82 ac


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any
) -> Iterator[GatewayServer]:
    with guarded_gateway(
        tmp_path_factory, "guarded-frames", jitsi_web, prosody, GENEROUS_LIMITS
    ) as (server, _):
        yield server


class HandSocketClient:
    """XMPP over WebSocket by hand (RFC 7395): anonymous SASL, bind, stream management on as a
    Jitsi client has it, a room joined; then whatever frames a test sends."""

    def __init__(self, socket: ClientConnection, domain: str) -> None:
        self.socket = socket
        self._domain = domain
        self.jid = ""

    async def receive(self) -> ET.Element:
        text = await asyncio.wait_for(self.socket.recv(), TIMEOUT)
        assert isinstance(text, str), text
        return ET.fromstring(text)  # noqa: S314 - prosody of the tests answers

    async def receive_until(self, tag: str) -> ET.Element:
        while True:
            element = await self.receive()
            if element.tag == tag:
                return element

    async def open_stream(self) -> None:
        await self.socket.send(f"<open xmlns='{FRAMING}' to='{self._domain}' version='1.0'/>")
        await self.receive_until("{http://etherx.jabber.org/streams}features")

    async def sign_in(self) -> None:
        await self.open_stream()
        await self.socket.send(f"<auth xmlns='{SASL}' mechanism='ANONYMOUS'/>")
        await self.receive_until(f"{{{SASL}}}success")
        await self.open_stream()
        await self.socket.send(
            f"<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='{BIND}'/></iq>"
        )
        bound = await self.receive_until("{jabber:client}iq")
        jid = bound.find(f".//{{{BIND}}}jid")
        assert jid is not None and jid.text, ET.tostring(bound)
        self.jid = jid.text
        await self.socket.send(f"<enable xmlns='{STREAM_MANAGEMENT}' resume='true'/>")
        await self.receive_until(f"{{{STREAM_MANAGEMENT}}}enabled")

    async def join(self, room_jid: str, nick: str) -> None:
        await self.socket.send(
            f"<presence xmlns='jabber:client' to='{room_jid}/{nick}'><x xmlns='{MUC}'/></presence>"
        )
        while True:
            element = await self.receive_until("{jabber:client}presence")
            if element.get("from") == f"{room_jid}/{nick}":
                return

    async def received_until_closed(self) -> list[str]:
        """Every text message the gate sends until it closes the socket."""
        texts: list[str] = []
        try:
            while True:
                message = await asyncio.wait_for(self.socket.recv(), TIMEOUT)
                assert isinstance(message, str)
                texts.append(message)
        except ConnectionClosed:
            return texts


@asynccontextmanager
async def mallory_beside_ada(
    guarded: GatewayServer, prosody: Any
) -> AsyncIterator[tuple[str, HandSocketClient, XmppClient]]:
    """A new room with its host Ada (strophe.js) and Mallory (by hand) in it."""
    room = new_room(guarded)
    room_jid = prosody.room_jid(room)
    ada, mallory = admit(guarded, room, "Ada", role="host"), admit(guarded, room, "Mallory")
    async with (
        XmppClient.open(ws_url(guarded, signalling_query(ada))) as watcher,
        connect(
            ws_url(guarded, signalling_query(mallory)),
            subprotocols=[Subprotocol("xmpp")],
            open_timeout=TIMEOUT,
        ) as socket,
    ):
        await watcher.join(room_jid, "ada")
        hand = HandSocketClient(socket, prosody.domain)
        await hand.sign_in()
        await hand.join(room_jid, "mal")
        await watcher.wait_for_presence(nick="mal", type="available")
        yield room_jid, hand, watcher


def groupchat(room_jid: str, text: bytes) -> bytes:
    return (
        f"<message xmlns='jabber:client' to='{room_jid}' type='groupchat' id='u'><body>".encode()
        + text
        + b"</body></message>"
    )


async def assert_session_ended(watcher: XmppClient, prosody: Any, jid: str) -> None:
    """Mallory's prosody session ended: her presence gone at once, not kept hibernating for a
    resumption (tests/fixtures/prosody.py, SMACKS_HIBERNATION_TIME)."""
    await watcher.wait_for_presence(nick="mal", type="unavailable", timeout=5)
    assert not prosody.session_hibernated(jid)


async def assert_unaffected(watcher: XmppClient, prosody: Any, room_jid: str) -> None:
    await sync(watcher, prosody, "ada-unaffected")
    await watcher.send_groupchat(room_jid, "still here")
    await watcher.wait_for_message(lambda m: m.body == "still here")
    assert watcher.end is None


# What each case sends: the frames, as websockets' send() takes them (bytes sent as text).
INVALID_UTF8 = {
    "invalid-byte": lambda room_jid: [groupchat(room_jid, b"caf\xc3(")],
    "lone-continuation-byte": lambda room_jid: [groupchat(room_jid, b"\x80")],
    "cut-inside-a-character": lambda room_jid: [groupchat(room_jid, b"x")[:-3] + EURO[:2]],
    "cut-at-the-end-of-a-fragmented-message": lambda room_jid: [
        [groupchat(room_jid, b"x")[:-3], b"></message" + EURO[:1]]
    ],
}


@pytest.mark.parametrize("case", sorted(INVALID_UTF8))
async def test_invalid_utf8_closes_the_socket_with_1007_and_ends_only_its_session(
    guarded: GatewayServer, prosody: Any, case: str
) -> None:
    before = streams_ended(guarded)
    async with mallory_beside_ada(guarded, prosody) as (room_jid, mallory, watcher):
        for frames in INVALID_UTF8[case](room_jid):
            await mallory.socket.send(frames, text=True)
        received = await mallory.received_until_closed()
        assert mallory.socket.close_code == INVALID_DATA, received
        # The WebSocket layer fails the connection: no XMPP stream error, nothing relayed.
        assert not [text for text in received if STREAM_ERRORS in text]
        assert not watcher.stanzas_matching(lambda e: e.get("id") == "u")
        await assert_unaffected(watcher, prosody, room_jid)
    # The guard never read it: nothing it counts.
    assert streams_ended(guarded) == before


async def test_invalid_utf8_ends_the_prosody_session(guarded: GatewayServer, prosody: Any) -> None:
    async with mallory_beside_ada(guarded, prosody) as (room_jid, mallory, watcher):
        for frames in INVALID_UTF8["invalid-byte"](room_jid):
            await mallory.socket.send(frames, text=True)
        await mallory.received_until_closed()
        assert mallory.socket.close_code == INVALID_DATA
        await assert_session_ended(watcher, prosody, mallory.jid)


async def test_a_message_over_the_cap_ends_the_prosody_session(
    guarded: GatewayServer, prosody: Any
) -> None:
    """A message over the gate's WebSocket cap (1 MiB) is closed with 1009, and the sender's
    prosody session ends with it as after invalid UTF-8 (the same close path: 1002, 1007, 1009)."""
    async with mallory_beside_ada(guarded, prosody) as (room_jid, mallory, watcher):
        body = "x" * (1024 * 1024 + 10)
        await mallory.socket.send(groupchat(room_jid, body.encode()).decode())
        await mallory.received_until_closed()
        assert mallory.socket.close_code == TOO_BIG
        await assert_session_ended(watcher, prosody, mallory.jid)


async def test_a_character_split_across_fragments_arrives_whole(
    guarded: GatewayServer, prosody: Any
) -> None:
    async with mallory_beside_ada(guarded, prosody) as (room_jid, mallory, watcher):
        whole = groupchat(room_jid, b"price " + EURO)
        cut = whole.index(EURO) + 1
        await mallory.socket.send([whole[:cut], whole[cut:]], text=True)
        await watcher.wait_for_message(lambda m: m.body == "price €")
        assert mallory.socket.close_code is None


async def test_a_binary_message_ends_the_stream_with_unsupported_encoding(
    guarded: GatewayServer, prosody: Any
) -> None:
    before = streams_ended(guarded, "unsupported-encoding")
    async with mallory_beside_ada(guarded, prosody) as (room_jid, mallory, watcher):
        await mallory.socket.send(groupchat(room_jid, b"in binary"), text=False)
        received = await mallory.received_until_closed()
        assert mallory.socket.close_code == 1000, received
        # What prosody sent before (the room's subject) may come first; the stream's end last.
        assert received[-2:] == [
            "<error xmlns='http://etherx.jabber.org/streams'>"
            f"<unsupported-encoding xmlns='{STREAM_ERRORS}'/></error>",
            f'<close xmlns="{FRAMING}"/>',
        ], received
        assert not watcher.stanzas_matching(lambda e: e.get("id") == "u")
        await assert_session_ended(watcher, prosody, mallory.jid)
        await assert_unaffected(watcher, prosody, room_jid)
    assert streams_ended(guarded, "unsupported-encoding") - before == 1
