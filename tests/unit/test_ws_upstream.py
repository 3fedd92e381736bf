"""The upstream half of a relayed WebSocket against websockets' own server (and, for what that
server will not do, a raw loopback listener): messages both ways, in order; the upstream's close
code at the browser; the browser's end at the upstream; a dead upstream noticed by the keepalive.

The browser's half is the ASGI `receive` and `send` the gate's relay is called with.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from gateway.proxy import websocket as relayed
from gateway.proxy.websocket import RelayedSocket, open_upstream, relay

Message = dict[str, Any]
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WAIT = 5.0


class Browser:
    """The ASGI side: what the relay sent to the browser, and what the browser says next."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.closed.set()
            # A browser answers the close: its side of the ASGI call ends.
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": message["code"]})


@asynccontextmanager
async def websockets_upstream(
    handler: Callable[[ServerConnection], Awaitable[None]],
) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/xmpp-websocket"


async def relayed_to(url: str, browser: Browser) -> asyncio.Task[None]:
    upstream = await open_upstream(
        url, {"type": "websocket"}, [], max_message_bytes=65536, open_timeout=WAIT
    )
    socket = RelayedSocket(upstream, browser.send, signalling=False)
    return asyncio.create_task(relay(socket, upstream, browser.receive, browser.send))


async def test_upstream_messages_reach_the_browser_in_order_then_its_close_code() -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send("hello")
        await connection.send(b"\x00\x01")
        await connection.send(["frag", "mented"])
        await connection.close(4001, "bye")

    browser = Browser()
    async with websockets_upstream(handler) as url:
        task = await relayed_to(url, browser)
        await asyncio.wait_for(task, WAIT)
    assert browser.sent == [
        {"type": "websocket.send", "text": "hello"},
        {"type": "websocket.send", "bytes": b"\x00\x01"},
        {"type": "websocket.send", "text": "fragmented"},
        {"type": "websocket.close", "code": 4001},
    ]


async def test_browser_messages_reach_the_upstream_and_its_leaving_closes_the_upstream() -> None:
    received: list[str | bytes] = []
    close_codes: list[int | None] = []

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            received.append(message)
        close_codes.append(connection.close_code)

    browser = Browser()
    async with websockets_upstream(handler) as url:
        task = await relayed_to(url, browser)
        browser.inbox.put_nowait({"type": "websocket.receive", "text": "a"})
        browser.inbox.put_nowait({"type": "websocket.receive", "bytes": b"b"})
        browser.inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
        await asyncio.wait_for(task, WAIT)
        async with asyncio.timeout(WAIT):
            while not close_codes:
                await asyncio.sleep(0.01)
    assert received == ["a", b"b"]
    assert close_codes == [1000]


async def test_an_upstream_gone_without_a_close_is_1011_at_the_browser() -> None:
    async def handler(connection: ServerConnection) -> None:
        connection.transport.abort()

    browser = Browser()
    async with websockets_upstream(handler) as url:
        task = await relayed_to(url, browser)
        await asyncio.wait_for(task, WAIT)
    assert browser.sent == [{"type": "websocket.close", "code": 1011}]


@asynccontextmanager
async def raw_upstream(after_101: bytes, received: bytearray | None = None) -> AsyncIterator[str]:
    """Accepts the handshake, sends `after_101` in the same write as the 101, then reads and
    answers nothing (pings and closes included) until the client goes; what it read after the
    handshake is added to `received`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())  # noqa: S324 (RFC 6455)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + after_101
        )
        while data := await reader.read(4096):
            if received is not None:
                received.extend(data)
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/xmpp-websocket"
    finally:
        server.close()


def text_frame(text: str) -> bytes:
    data = text.encode()
    return bytes([0x81, len(data)]) + data


async def test_frames_in_the_same_packet_as_the_101_are_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This upstream never ends the closing handshake.
    monkeypatch.setattr(relayed, "CLOSE_TIMEOUT_SECONDS", 0.1)
    browser = Browser()
    async with raw_upstream(text_frame("first") + text_frame("second")) as url:
        task = await relayed_to(url, browser)
        async with asyncio.timeout(WAIT):
            while len(browser.sent) < 2:
                await asyncio.sleep(0.01)
        browser.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, WAIT)
    assert browser.sent[:2] == [
        {"type": "websocket.send", "text": "first"},
        {"type": "websocket.send", "text": "second"},
    ]


async def test_an_upstream_that_answers_no_ping_is_closed_and_the_browser_told_1011(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relayed, "PING_INTERVAL_SECONDS", 0.05)
    monkeypatch.setattr(relayed, "CLOSE_TIMEOUT_SECONDS", 0.1)
    browser = Browser()
    async with raw_upstream(b"") as url:
        task = await relayed_to(url, browser)
        await asyncio.wait_for(task, WAIT)
    assert browser.sent == [{"type": "websocket.close", "code": 1011}]


def opcodes(data: bytes) -> list[int]:
    """The opcodes of the masked client frames in `data` (short ones only, as the gate sends)."""
    found: list[int] = []
    at = 0
    while at + 6 <= len(data):
        length = data[at + 1] & 0x7F
        assert length < 126
        found.append(data[at] & 0x0F)
        at += 6 + length
    return found


async def test_a_cut_closes_the_browser_before_the_upstream_answers_its_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revoked signalling socket whose upstream never answers the close: the browser gets its
    4403 while the upstream's closing handshake is still waited for. Catches a browser told only
    once the upstream's handshake is done or has timed out (up to CLOSE_TIMEOUT_SECONDS of a
    revocation spent before the attendee is cut)."""
    # The upstream's closing handshake cannot end by timing out during the test.
    monkeypatch.setattr(relayed, "CLOSE_TIMEOUT_SECONDS", 3600.0)
    browser = Browser()
    received = bytearray()
    async with raw_upstream(b"", received) as url:
        upstream = await open_upstream(
            url, {"type": "websocket"}, [], max_message_bytes=65536, open_timeout=WAIT
        )
        socket = RelayedSocket(upstream, browser.send, signalling=True)
        relaying = asyncio.create_task(relay(socket, upstream, browser.receive, browser.send))
        cutting = asyncio.create_task(socket.close("revoked"))
        try:
            await asyncio.wait_for(browser.closed.wait(), WAIT)
            assert not cutting.done()
            assert browser.sent == [
                {"type": "websocket.close", "code": relayed.CLOSE_REVOKED, "reason": "revoked"}
            ]
            async with asyncio.timeout(WAIT):
                while len(opcodes(bytes(received))) < 2:
                    await asyncio.sleep(0.01)
            # The XMPP `<close/>`, then the WebSocket close.
            assert opcodes(bytes(received)) == [0x1, 0x8]
        finally:
            upstream.abort()
            await asyncio.wait_for(asyncio.gather(cutting, relaying), WAIT)
