"""Meetgate's own server against clients that try to make it hold memory or connections: each
case found by a review of gateway/edge/server.py and shown on the real server before its fix.

Ours only: the point is what our server bounds, measured from inside it (its connections' write
buffers, its open-connection count) while a raw socket misbehaves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import cast

import pytest
from starlette.types import Receive, Scope, Send

from gateway.edge.server import CLOSE_SECONDS, Connection
from tests.fixtures.asgi_servers import ServedApp, serve_app

BIG = b"x" * (8 << 20)
# How long /slow-accept waits before it accepts its WebSocket.
ACCEPT_AFTER_SECONDS = 1.5
# How long a client may take no bytes, shortened for the tests (30 s by default).
STALL_SECONDS = 3.0
MIB = 1 << 20


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()
        if path == "/refuse-and-leave":
            await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
            raise ValueError("the refusal's body never comes")
        if path == "/slow-accept":
            # The gate checks a ticket and opens its upstream before it accepts.
            await asyncio.sleep(ACCEPT_AFTER_SECONDS)
        await send({"type": "websocket.accept"})
        if path == "/bad-close":
            await send({"type": "websocket.close", "code": 1005})
            return
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    body = BIG if path == "/big" else MIB * b"y" if path == "/mib" else b"ok"
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    if path == "/fails-after":
        # A background task failing once the answer has gone.
        raise ValueError("after the answer")


@pytest.fixture(scope="module")
def served() -> Iterator[ServedApp]:
    server = serve_app("meetgate", app, write_stall_seconds=STALL_SECONDS)
    yield server
    server.stop()


def buffered(served: ServedApp) -> int:
    """Bytes the server holds in its connections' write buffers."""

    async def look() -> int:
        assert served.server is not None
        connections = [cast(Connection, found) for found in served.server.guarding.open]
        return sum(
            connection.transport.get_write_buffer_size()
            for connection in connections
            if connection.transport is not None
        )

    return int(served.run(look()))


def open_connections(served: ServedApp) -> int:
    async def count() -> int:
        assert served.server is not None
        return len(served.server.guarding.open)

    return int(served.run(count()))


def slow_reader(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def upgraded(port: int, path: bytes, *, slow: bool = False) -> socket.socket:
    sock = slow_reader(port) if slow else socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET " + path + b" HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        b"sec-websocket-key: " + key + b"\r\nsec-websocket-version: 13\r\n\r\n"
    )
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_client_that_does_not_read_its_answer_still_counts_then_is_reset(
    served: ServedApp,
) -> None:
    """An 8 MiB answer to a client that reads nothing: the connection still counts toward the
    caps while it holds the buffer, and it is reset once it has taken nothing for the stall
    bound. Catches a close that stops counting at once while the buffer waits for ever (the
    review's 111 MB held by 20 such clients under a per-address cap of 2), and an answer that
    holds its connection and its application task as long as the client likes."""
    before = open_connections(served)
    sock = slow_reader(served.port)
    try:
        sock.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        time.sleep(0.5)
        assert open_connections(served) == before + 1
        started = time.monotonic()
        deadline = started + STALL_SECONDS + CLOSE_SECONDS + 2
        while open_connections(served) > before:
            assert time.monotonic() < deadline, "a closing connection held past its deadline"
            time.sleep(0.1)
    finally:
        sock.close()


def test_pipelined_answers_wait_for_a_client_that_reads(served: ServedApp) -> None:
    """Fifty pipelined GETs of 1 MiB each, none read: the next request is read only once the
    last answer has gone. Catches answers written one after the other into the buffer (the
    review's 311 MB from one connection)."""
    sock = slow_reader(served.port)
    try:
        sock.sendall(b"GET /mib HTTP/1.1\r\nhost: x\r\n\r\n" * 50)
        time.sleep(2)
        assert buffered(served) < 4 * MIB
    finally:
        sock.close()


def test_a_ping_flood_from_a_client_that_does_not_read_is_held_back(served: ServedApp) -> None:
    """Pings to a WebSocket, their pongs never read: once the pongs fill the write buffer the
    server reads no more, so the client's sending blocks. Catches pongs queued without end."""
    sock = upgraded(served.port, b"/ws", slow=True)
    try:
        time.sleep(0.3)
        ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125
        chunk = ping * 1000
        sock.settimeout(3)
        sent = 0
        # Blocked (a timeout), or reset once the pongs stalled for the stall bound: held back
        # either way.
        with contextlib.suppress(OSError):
            while sent < 64 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 64 * MIB, "the server went on reading pings whose pongs nobody took"
        assert buffered(served) < 4 * MIB
    finally:
        sock.close()


def test_empty_fragments_cannot_pile_up(served: ServedApp) -> None:
    """A message begun and continued by empty frames without end: each costs nothing against the
    size cap, so their number is capped (the connection is closed with 1009). Catches a list of
    fragments that grows by millions of entries."""
    sock = upgraded(served.port, b"/ws")
    try:
        time.sleep(0.3)
        sock.recv(4096)
        sock.sendall(bytes([0x02, 0x80]) + b"\0\0\0\0")
        empty = (bytes([0x00, 0x80]) + b"\0\0\0\0") * 5000
        with contextlib.suppress(OSError):
            sock.sendall(empty)
        answer = read_until_closed(sock, 5)
        assert answer[:1] == b"\x88"
        assert struct.unpack("!H", answer[2:4])[0] == 1009
    finally:
        sock.close()


def test_a_close_code_the_wire_does_not_allow_becomes_1011(served: ServedApp) -> None:
    """The app closes with 1005 (a relay passing on what its upstream reported): the client gets
    1011 and the connection ends. Catches a close that raised inside the server and left the
    WebSocket open with nothing timed."""
    sock = upgraded(served.port, b"/bad-close")
    try:
        answer = read_until_closed(sock, CLOSE_SECONDS + 3)
        _, _, frames = answer.partition(b"\r\n\r\n")
        assert frames[:1] == b"\x88"
        assert struct.unpack("!H", frames[2:4])[0] == 1011
    finally:
        sock.close()


def test_a_refusal_begun_and_left_is_answered_500(served: ServedApp) -> None:
    """The app starts a denial response and fails before its body: the client is answered 500
    and the connection closed. Catches a connection left hanging with nothing timed."""
    sock = upgraded(served.port, b"/refuse-and-leave")
    try:
        answer = read_until_closed(sock, 5)
        assert answer.startswith(b"HTTP/1.1 500 ")
    finally:
        sock.close()


def test_a_failure_after_the_answer_leaves_the_next_request_alone(served: ServedApp) -> None:
    """The app raises after its answer went out whole (a background task): the next request on
    the same connection is answered. Catches the failure resetting the connection, and with it a
    request that had nothing to do with it."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /fails-after HTTP/1.1\r\nhost: x\r\n\r\n")
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200 ")
        time.sleep(0.2)
        sock.sendall(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        second = sock.recv(4096)
        assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"ok")


def test_a_websocket_counts_toward_its_address_until_it_is_accepted() -> None:
    """With two connections an address: two upgrade requests the app has not accepted yet still
    hold both (a third connection is reset at accept); once accepted, a WebSocket no longer counts
    toward its address. Catches the count released at the upgrade request, which let any number
    of upgrade requests from one address sit untimed while the app worked on them."""
    served = serve_app("meetgate", app, per_address=2)
    try:
        pending = [upgraded(served.port, b"/slow-accept") for _ in range(2)]
        try:
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", served.port), timeout=5) as third:
                with contextlib.suppress(OSError):
                    third.sendall(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
                assert read_until_closed(third, 5) == b""
            for sock in pending:
                sock.settimeout(5)
                assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
            with socket.create_connection(("127.0.0.1", served.port), timeout=5) as later:
                later.sendall(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
                assert later.recv(4096).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in pending:
                sock.close()
    finally:
        served.stop()


def ended_too_large(served: ServedApp) -> int:
    async def count() -> int:
        assert served.server is not None
        return served.server.guarding.ended["header_too_large"]

    return int(served.run(count()))


@pytest.mark.parametrize(
    "head",
    [
        # One field that has not ended (the parser keeps it until its line ends).
        b"GET / HTTP/1.1\r\nhost: x\r\nx-a: " + b"a" * 20000,
        # Fields that have ended, the head not.
        b"GET / HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"x-%d: %s\r\n" % (n, b"a" * 900) for n in range(20)),
        # A request line that has not ended.
        b"GET /" + b"a" * 20000,
    ],
    ids=["open-field", "ended-fields", "request-line"],
)
def test_a_head_over_the_cap_behind_a_request_in_the_same_read_is_refused(
    served: ServedApp, head: bytes
) -> None:
    """A request, then in the same send a second head over the cap that never ends: the first is
    answered and the connection closes as a head too large, at once. Catches a head begun behind
    another request in one read that was not counted for that read (the review's 105 KB of head
    read before the 431 against a 16 KB cap); the client sends nothing more, so without the
    count only the head deadline would end it."""
    before = ended_too_large(served)
    sock = socket.create_connection(("127.0.0.1", served.port))
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n" + head)
        answer = read_until_closed(sock, timeout=30)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert ended_too_large(served) == before + 1
