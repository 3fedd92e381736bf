"""The upstream WebSocket handshake as it goes on the wire: every handshake header once, the Host
the gate means, the TCP connection to the upstream itself.

A loopback listener stands in for the upstream only to capture the request head (nginx, which
refuses a doubled Host, is the end-to-end witness in tests/integration/test_jitsi_routing.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gateway.errors import UpstreamUnreachable
from gateway.proxy.headers import upstream_request_headers
from gateway.proxy.websocket import open_upstream, upstream_handshake

# What a browser sends on the upgrade, including every header the gate must not pass on twice.
BROWSER_HEADERS = [
    (b"Host", b"attacker.example"),
    (b"Connection", b"Upgrade"),
    (b"Upgrade", b"websocket"),
    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"Sec-WebSocket-Version", b"13"),
    (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
    (b"Sec-WebSocket-Protocol", b"xmpp"),
    (b"Origin", b"https://meet.example.org"),
    (b"User-Agent", b"Mozilla/5.0"),
    (b"Cookie", b"meetgate=secret; other=1"),
    (b"X-Forwarded-For", b"203.0.113.9"),
]


@asynccontextmanager
async def capturing_upstream() -> AsyncIterator[tuple[int, asyncio.Future[bytes]]]:
    """A listener that keeps the first request head it gets and answers 403."""
    head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readuntil(b"\r\n\r\n")
        if not head.done():
            head.set_result(data)
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], head
    finally:
        server.close()
        await server.wait_closed()


def parsed(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    fields = [line.split(":", 1) for line in lines if line]
    return request_line, [(name.strip().lower(), value.strip()) for name, value in fields]


async def handshake_seen(port: int, head: asyncio.Future[bytes], public_host: bytes) -> bytes:
    headers = upstream_request_headers(
        BROWSER_HEADERS,
        cookie_name=b"meetgate",
        public_host=public_host,
        public_scheme=b"https",
        client_addr=b"198.51.100.7",
        websocket=True,
    )
    scope = {"type": "websocket", "subprotocols": ["xmpp"]}
    with pytest.raises(UpstreamUnreachable):
        await open_upstream(
            f"ws://127.0.0.1:{port}/xmpp-websocket?room=r&token=t",
            scope,
            headers,
            max_message_bytes=65536,
            open_timeout=5,
        )
    return await asyncio.wait_for(head, timeout=5)


@pytest.mark.parametrize(
    "public_host",
    [b"meet.example.org", b"meet.example.org:8443", b"127.0.0.1:8000", b"[2001:db8::1]:8443"],
)
async def test_the_upstream_sees_one_host_header_the_gates(public_host: bytes) -> None:
    async with capturing_upstream() as (port, head):
        request_line, fields = parsed(await handshake_seen(port, head, public_host))
    assert request_line == "GET /xmpp-websocket?room=r&token=t HTTP/1.1"
    assert [value for name, value in fields if name == "host"] == [public_host.decode()]


async def test_no_handshake_header_is_doubled_or_taken_from_the_browser() -> None:
    async with capturing_upstream() as (port, head):
        _, fields = parsed(await handshake_seen(port, head, b"meet.example.org"))
    counts = Counter(name for name, _ in fields)
    assert [name for name, count in counts.items() if count > 1] == []
    values = dict(fields)
    assert values["sec-websocket-key"] != "dGhlIHNhbXBsZSBub25jZQ=="
    assert values["sec-websocket-protocol"] == "xmpp"
    assert values["origin"] == "https://meet.example.org"
    assert values["x-forwarded-for"] == "198.51.100.7"
    assert values["cookie"] == "other=1"
    assert "sec-websocket-extensions" not in values
    assert values["connection"].lower() == "upgrade"


def test_the_tcp_peer_is_the_upstream_and_tls_names_it() -> None:
    handshake = upstream_handshake(
        "wss://prosody.internal:5281/xmpp-websocket?room=r", [(b"host", b"meet.example.org")]
    )
    assert handshake.uri == "wss://meet.example.org/xmpp-websocket?room=r"
    assert (handshake.host, handshake.port) == ("prosody.internal", 5281)
    assert handshake.server_hostname == "prosody.internal"
    assert handshake.headers == []


def test_without_a_host_header_the_upstream_is_named() -> None:
    handshake = upstream_handshake("ws://127.0.0.1:5280/xmpp-websocket", [(b"origin", b"o")])
    assert handshake.uri == "ws://127.0.0.1:5280/xmpp-websocket"
    assert handshake.server_hostname is None


@pytest.mark.parametrize(
    "host",
    [b"user:pass@meet.example.org", b"meet.example.org/path", b"", b"meet.example.org?x"],
)
def test_a_host_that_is_not_an_authority_is_refused(host: bytes) -> None:
    with pytest.raises(UpstreamUnreachable):
        upstream_handshake("ws://127.0.0.1:5280/xmpp-websocket", [(b"host", host)])


def test_two_host_headers_are_refused() -> None:
    with pytest.raises(UpstreamUnreachable):
        upstream_handshake(
            "ws://127.0.0.1:5280/xmpp-websocket", [(b"host", b"a.example"), (b"host", b"b")]
        )
