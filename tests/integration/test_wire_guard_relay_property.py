"""Issue 16's property through the relay, not only the guard: for any sequence of valid stanzas
within budgets, the real `meetgate serve` with the guard on passes each one, in order, none lost,
each as sent but for the display name, which is the verified one.

The stanzas are the guard's unit property's (tests/fixtures/guard_stanzas.py, `stanza()`: Jitsi's
own, group and private chat with hostile text, presence with a forged name in any namespace).

Through the real prosody, over WebSocket and BOSH (strophe.js): Ada sends those a room shows
(to the room, privately to Bob, her presence updates) and Bob, in the same fresh room, reads
each, in order, with what it carried; what prosody adds (its occupant and stanza ids, the
MUC's `x`) is left out, and so is her leave presence, after which prosody refuses her chat (the
room's state, not the relay's).

Byte for byte, which prosody cannot show (it serialises what it relays again): every kind of
stanza through the gate to the bench's upstream (bench/upstream.py), which sends each WebSocket
message back as it came and answers each BOSH body with the body it received, so what the client
reads is what the gate forwarded; server-to-client traffic passes the gate untouched.
"""

from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from bench import upstream
from gateway.proxy.bosh_body import parse_body
from tests.fixtures.asgi_servers import ServedApp
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.guard_stanzas import JITSI, NAME, ROOM, assert_same_meaning, element, stanza
from tests.fixtures.processes import stop_process
from tests.fixtures.xmpp_client import XmppClient, parse_stanza
from tests.integration.guard_helpers import guarded_gateway, transport
from tests.integration.journeys import admit, bosh_url, new_room, signalling_query, ws_url
from tests.integration.test_wire_guard import ADDED_BY_SERVER, MUC_JOIN, attendee, is_from, nicks

pytestmark = pytest.mark.slow
__all__ = ["transport"]  # the fixture, for pytest

HTTPBIND = "http://jabber.org/protocol/httpbind"
CLIENT = "{jabber:client}"
# Raised as far as the settings allow (bench/guard.py's GUARD_BUDGETS), so nothing is refused;
# strikes 0: never removed.
BUDGETS = """
[guard]
chat_per_10s = 10000
chat_burst = 10000
presence_per_10s = 100000
presence_burst = 100000
iq_per_10s = 100000
iq_burst = 100000
signal_per_10s = 100000
signal_burst = 100000
strikes = 0
"""
# How long a client waits for what it sent to come back or reach the other: well past a loaded
# machine's worst.
ECHO_SECONDS = 10.0
SESSION_ID = "8f2c0d6e-1b7a-4c39-9e55-3a0d2f6b7c41"
# The occupants' nicks: Ada's is the one the unit stanzas' own presence goes to.
ADA = "a1b2c3d4"
BOB = "bob"


# -- through the real prosody, seen by another occupant --


@pytest.fixture(scope="module")
def prosody_gate(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any
) -> Iterator[GatewayServer]:
    with guarded_gateway(
        tmp_path_factory, "relay-property-prosody", jitsi_web, prosody, GENEROUS_LIMITS + BUDGETS
    ) as (server, _):
        yield server


@dataclass
class Meeting:
    """Ada (under the verified name the stanzas expect) and Bob in a fresh room, on their own
    event loop, which runs while a test waits on them."""

    runner: asyncio.Runner
    room_jid: str
    ada: XmppClient
    bob: XmppClient


@pytest.fixture
def meeting(prosody_gate: GatewayServer, prosody: Any, transport: str) -> Iterator[Meeting]:
    room = new_room(prosody_gate)
    room_jid = prosody.room_jid(room)
    with asyncio.Runner() as runner:
        clients = AsyncExitStack()
        try:
            ada = runner.run(
                clients.enter_async_context(attendee(prosody_gate, room, NAME, transport=transport))
            )
            bob = runner.run(
                clients.enter_async_context(
                    attendee(prosody_gate, room, "Bob", transport=transport)
                )
            )
            runner.run(ada.join(room_jid, ADA))
            runner.run(bob.join(room_jid, BOB))
            yield Meeting(runner, room_jid, ada, bob)
        finally:
            runner.run(clients.aclose())


def shown_in_the_room(text: str) -> bool:
    """A stanza prosody passes on to another occupant: a message to the room or privately to
    an occupant, a presence update (not the leave)."""
    stanza = element(text)
    to = stanza.get("to") or ""
    if to != ROOM and not to.startswith(f"{ROOM}/"):
        return False
    if stanza.tag == f"{CLIENT}message":
        return stanza.get("type") in ("groupchat", "chat")
    return stanza.tag == f"{CLIENT}presence" and stanza.get("type") is None


# Of Jitsi's stanzas, those a room shows; all of the others stanza() makes are.
SHOWN = tuple(name for name in sorted(JITSI) if shown_in_the_room(JITSI[name]))


def addressed(text: str, room_jid: str) -> str:
    """The stanza to the real room: the room itself, Ada's own occupant, or else Bob's."""
    to = element(text).get("to") or ""
    if to == ROOM:
        real = room_jid
    elif to == f"{ROOM}/{ADA}":
        real = f"{room_jid}/{ADA}"
    else:
        real = f"{room_jid}/{BOB}"
    assert text.count(f"to='{to}'") == 1
    return text.replace(f"to='{to}'", f"to='{real}'")


def is_name(tag: str) -> bool:
    return tag.rpartition("}")[2] == "nick"


def content(stanza: ET.Element) -> list[tuple[Any, ...]]:
    """A stanza's children as comparable values, deeply, with their text and what follows each;
    what prosody adds and the name (the guard's to set) left out."""
    return [
        (
            child.tag,
            sorted(child.attrib.items()),
            child.text or "",
            child.tail or "",
            content(child),
        )
        for child in stanza
        if child.tag not in ADDED_BY_SERVER and child.tag != MUC_JOIN and not is_name(child.tag)
    ]


def assert_shown_as_sent(sent: ET.Element, seen: ET.Element) -> None:
    """What Bob sees is what Ada sent, but for the name: the verified one where she sent any."""
    assert seen.tag == sent.tag
    assert seen.get("type") == sent.get("type")
    # A group message sent without an id gets one from prosody (handle_groupchat_to_room).
    if sent.get("id") is not None:
        assert seen.get("id") == sent.get("id")
    assert content(seen) == content(sent)
    assert nicks(seen) == ([NAME] if any(is_name(e.tag) for e in sent.iter()) else [])


MARKS = itertools.count()


async def sent_and_seen(meeting: Meeting, sequence: list[str]) -> None:
    """Ada sends `sequence` and Bob sees each of them, in order. A private message opens it, and
    Bob reads from there: whatever an earlier example left on its way is before it."""
    ada, bob = meeting.ada, meeting.bob
    from_ada = is_from(f"{meeting.room_jid}/{ADA}")
    start = f"example-{next(MARKS)}"
    await ada.send_raw(
        f"<message to='{meeting.room_jid}/{BOB}' type='chat' id='{start}' xmlns='jabber:client'>"
        "<body>next</body></message>"
    )
    opened = await bob.wait_for_stanza(
        lambda e: from_ada(e) and e.get("id") == start, timeout=ECHO_SECONDS
    )
    mark = bob.received.index(opened) + 1
    for text in sequence:
        await ada.send_raw(text)
    for text in sequence:
        seen = await bob.wait_for_stanza(from_ada, timeout=ECHO_SECONDS, after=mark)
        mark = bob.received.index(seen, mark) + 1
        assert_shown_as_sent(element(text), parse_stanza(seen))
    assert ada.end is None and bob.end is None


# The clients are the test's on purpose: one meeting for every example (a new pair each would
# cost seconds). Not shrunk: each step of shrinking a lost stanza would wait ECHO_SECONDS.
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sequence=st.lists(stanza(SHOWN), min_size=1, max_size=12))
def test_valid_stanzas_reach_another_occupant_through_prosody_in_order_unchanged(
    meeting: Meeting, sequence: list[tuple[str, bool]]
) -> None:
    texts = [addressed(text, meeting.room_jid) for text, _ in sequence]
    meeting.runner.run(sent_and_seen(meeting, texts))


# -- byte for byte, to the bench's echo --


@pytest.fixture(scope="module")
def relay_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """`meetgate serve`, guard on and its budgets raised, in front of the bench's upstream
    (echoes), with the unit stanzas' room."""
    echo = ServedApp("uvicorn", upstream.app)
    echo.start()
    try:
        echoes = f"http://127.0.0.1:{echo.port}"
        server, proc = start_gateway(
            tmp_path_factory.mktemp("relay-property"),
            upstream=echoes,
            signalling_upstream=echoes,
            extra=GENEROUS_LIMITS + BUDGETS,
        )
        try:
            server.create_room(ROOM.partition("@")[0])
            yield server
        finally:
            stop_process(proc)
    finally:
        echo.stop()


@dataclass(frozen=True)
class Signalling:
    """One admission's signalling addresses, under the name the unit test's stanzas verify. They
    carry its ticket: never shown (pytest prints a failed test's arguments)."""

    websocket: str = field(repr=False)
    bosh: str = field(repr=False)


@pytest.fixture(scope="module")
def signalling(relay_gate: GatewayServer) -> Signalling:
    """One admission for the module."""
    query = signalling_query(admit(relay_gate, ROOM.partition("@")[0], NAME))
    return Signalling(websocket=ws_url(relay_gate, query), bosh=bosh_url(relay_gate, query))


def assert_passed(sent: str, forged: bool, out: str) -> None:
    """Byte for byte as sent, or (a forged name) the same elements with the verified name."""
    if not forged:
        assert out == sent
    else:
        assert_same_meaning(element(sent), element(out))


@settings(max_examples=40, deadline=None)
@given(sequence=st.lists(stanza(), min_size=1, max_size=20))
def test_valid_stanzas_pass_the_websocket_relay_in_order_unchanged(
    signalling: Signalling, sequence: list[tuple[str, bool]]
) -> None:
    with connect(signalling.websocket, open_timeout=ECHO_SECONDS) as socket:
        for text, _ in sequence:
            socket.send(text)
        for text, forged in sequence:
            out = socket.recv(timeout=ECHO_SECONDS)
            assert isinstance(out, str)
            assert_passed(text, forged, out)


RIDS = itertools.count(1_000_000)


@settings(max_examples=25, deadline=None)
@given(bodies=st.lists(st.lists(stanza(), min_size=1, max_size=4), min_size=1, max_size=5))
def test_valid_stanzas_pass_the_bosh_relay_in_order_unchanged(
    signalling: Signalling, bodies: list[list[tuple[str, bool]]]
) -> None:
    with httpx.Client(trust_env=False, timeout=ECHO_SECONDS) as client:
        for sequence in bodies:
            inner = "".join(text for text, _ in sequence)
            body = f"<body rid='{next(RIDS)}' sid='{SESSION_ID}' xmlns='{HTTPBIND}'>{inner}</body>"
            response = client.post(
                signalling.bosh,
                content=body.encode(),
                headers={"content-type": "text/xml; charset=utf-8"},
            )
            assert response.status_code == 200
            received = response.content
            children = parse_body(received, max_bytes=len(received)).children
            assert len(children) == len(sequence)
            for (text, forged), child in zip(sequence, children, strict=True):
                assert_passed(text, forged, received[child.start : child.end].decode())
