"""Issue 16's property through the relay, not only the guard: for any sequence of valid stanzas
within budgets, the real `meetgate serve` passes each one upstream, in order, none lost, each as
sent but for the display name, which is the verified one; over a guarded WebSocket and as BOSH
bodies (a few stanzas each).

The stanzas are the unit test's (tests/unit/test_wire_guard.py, `stanza()`: Jitsi's own, group
and private chat with hostile text, presence with a forged name in any namespace). Upstream is a
stand-in for prosody that sends back what it received (SignallingEcho), so what the client reads
is what the gate forwarded; server-to-client traffic passes the gate untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send
from websockets.sync.client import connect

from gateway.proxy.bosh_body import parse_body
from tests.fixtures.asgi_servers import ServedApp
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.integration.journeys import admit, bosh_url, signalling_query, ws_url
from tests.unit.test_wire_guard import NAME, assert_same_meaning, element, stanza

pytestmark = pytest.mark.slow

HTTPBIND = "http://jabber.org/protocol/httpbind"
# The unit test's stanzas address room@conference.meet.test; start_gateway's XMPP domain is
# meet.test.
ROOM = "room"
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
# How long a client waits for the echo of what it sent: well past a loaded machine's worst.
ECHO_SECONDS = 10.0
SESSION_ID = "8f2c0d6e-1b7a-4c39-9e55-3a0d2f6b7c41"


async def signalling_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Stands in for prosody: each WebSocket message on /xmpp-websocket is sent back as it came,
    and each BOSH request to /http-bind is answered with the body it carried."""
    if scope["type"] == "websocket":
        if scope["path"] != "/xmpp-websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if (await receive())["type"] != "websocket.connect":
            return
        requested = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": requested[0] if requested else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            elif message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif scope["type"] == "http":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] != "/http-bind" or scope["method"] != "POST":
            body, status = b"", 404
        else:
            status = 200
        headers = [
            (b"content-type", b"text/xml; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def relay_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """`meetgate serve`, guard on and its budgets raised, in front of SignallingEcho, with the
    unit test's room."""
    echo = ServedApp("uvicorn", signalling_echo)
    echo.start()
    try:
        upstream = f"http://127.0.0.1:{echo.port}"
        server, proc = start_gateway(
            tmp_path_factory.mktemp("relay-property"),
            upstream=upstream,
            signalling_upstream=upstream,
            extra=GENEROUS_LIMITS + BUDGETS,
        )
        try:
            server.create_room(ROOM)
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
    query = signalling_query(admit(relay_gate, ROOM, NAME))
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
