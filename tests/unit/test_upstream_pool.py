"""The upstream HTTP/1.1 client and the relay on it, against tiny asyncio servers on free ports.

Each server is written byte by byte in the test, so every framing (content-length, chunked,
close-delimited, none at all), every way of ending a connection (FIN, RST, silence) and every
pool situation (reuse, idle close, the bound under load) is met exactly as a real upstream
would produce it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.errors import BadRequest, RequestAborted, RequestTooLarge, UpstreamUnreachable
from gateway.proxy.http import HttpRelay, read_body
from gateway.proxy.upstream import ResponseCut, UpstreamClient, UpstreamLimits
from tests.fixtures.processes import free_port

DEADLINE = 5.0


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request from the client, or None when it closed the connection."""
    try:
        return await _read_request(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def _read_request(reader: asyncio.StreamReader) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            headers[name.lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
    return Request(method, target, headers, body)


def response(body: bytes = b"hello", status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Upstream"], Awaitable[None]]


@dataclass
class Upstream:
    """A server on a free port, counting its connections and the requests it read."""

    handler: Handler
    url: str = ""
    connections: int = 0
    open: int = 0
    peak: int = 0
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self.handler(reader, writer, self)
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)

    async def next_request(self, reader: asyncio.StreamReader) -> Request | None:
        request = await read_request(reader)
        if request is not None:
            self.requests.append(request)
        return request

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def keep_alive(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
) -> None:
    """Answer every request on the connection with a small body naming the path."""
    while (request := await up.next_request(reader)) is not None:
        writer.write(response(f"{request.method} {request.target}".encode()))
        await writer.drain()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Upstream]]]:
    started: list[Upstream] = []

    async def start(handler: Handler) -> Upstream:
        upstream = Upstream(handler)
        await upstream.start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        await upstream.stop()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream_client = UpstreamClient(UpstreamLimits(connect_timeout=2.0))
    yield upstream_client
    await upstream_client.aclose()


async def fetch(
    client: UpstreamClient, url: str, method: str = "GET", body: Any = None
) -> tuple[int, bytes]:
    async with asyncio.timeout(DEADLINE):
        answer = await client.send(method, url, [], body)
        try:
            pieces = [await answer.read()]
            while not answer.finished:
                pieces.append(await answer.read())
        finally:
            answer.close()
    return answer.status, b"".join(pieces)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll with a deadline: yield to the loop until `condition` holds."""
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.001)
    assert condition(), what


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN, as a crashed server or a middlebox would."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# Keep-alive and the pool


async def test_sequential_requests_share_one_connection(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    up = await serve(keep_alive)
    for path, target in (("/a", "/a"), ("/b?x=/1", "/b?x=/1"), ("?q=1", "/?q=1"), ("", "/")):
        assert await fetch(client, up.url + path) == (200, f"GET {target}".encode())
    assert up.connections == 1
    assert [r.headers["host"] for r in up.requests] == [up.url.removeprefix("http://")] * 4


async def test_idle_connection_closed_by_the_server_is_not_reused(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    closed = asyncio.Event()

    async def one_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        writer.write(response())
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    up = await serve(one_then_close)
    assert await fetch(client, up.url + "/") == (200, b"hello")
    await closed.wait()
    await eventually(lambda: client.idle_connections == 0, "the server's close noticed")
    # A POST is never retried: it succeeds only if the closed connection was not used.
    assert await fetch(client, up.url + "/", "POST", b"x") == (200, b"hello")
    assert up.connections == 2
    assert len(up.requests) == 2


async def test_connections_idle_too_long_are_closed(
    serve: Callable[[Handler], Awaitable[Upstream]],
) -> None:
    up = await serve(keep_alive)
    brief = UpstreamClient(UpstreamLimits(idle_timeout=0.05))
    try:
        assert await fetch(brief, up.url + "/") == (200, b"GET /")
        assert brief.idle_connections == 1
        await eventually(lambda: up.open == 0, "the idle connection closed by the client")
        assert brief.idle_connections == 0
        assert await fetch(brief, up.url + "/") == (200, b"GET /")
    finally:
        await brief.aclose()
    assert up.connections == 2


async def dropping_second_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
) -> None:
    """Answer the first request of a connection; read the second and close unanswered: the
    server's idle close racing the client's reuse."""
    await up.next_request(reader)
    writer.write(response())
    await writer.drain()
    await up.next_request(reader)
    reset(writer)


async def test_get_on_a_connection_closed_under_it_is_retried_once(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    up = await serve(dropping_second_request)
    assert await fetch(client, up.url + "/") == (200, b"hello")
    assert await fetch(client, up.url + "/") == (200, b"hello")
    assert up.connections == 2
    assert len(up.requests) == 3


async def test_post_on_a_connection_closed_under_it_is_not_retried(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    up = await serve(dropping_second_request)
    assert await fetch(client, up.url + "/", "POST", b"one") == (200, b"hello")
    with pytest.raises(UpstreamUnreachable):
        await fetch(client, up.url + "/", "POST", b"two")
    assert [r.body for r in up.requests] == [b"one", b"two"]
    # The pool is not poisoned: the next request goes out on a fresh connection.
    assert await fetch(client, up.url + "/", "POST", b"three") == (200, b"hello")
    assert up.connections == 2


async def test_bytes_on_an_idle_connection_retire_it(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    idle = asyncio.Event()

    async def late_408(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        writer.write(response())
        await writer.drain()
        if up.connections == 1:
            await idle.wait()
            writer.write(response(b"", "408 Request Timeout"))
            await writer.drain()
        await read_request(reader)

    up = await serve(late_408)
    assert await fetch(client, up.url + "/") == (200, b"hello")
    idle.set()
    await eventually(lambda: client.idle_connections == 0, "the connection retired")
    assert await fetch(client, up.url + "/") == (200, b"hello")
    assert up.connections == 2


async def test_a_second_answer_to_one_request_retires_the_connection(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    async def answers_twice(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        writer.write(response() + response(b"", "408 Request Timeout"))
        await writer.drain()
        await read_request(reader)

    up = await serve(answers_twice)
    assert await fetch(client, up.url + "/") == (200, b"hello")
    assert await fetch(client, up.url + "/") == (200, b"hello")
    assert up.connections == 2


async def test_reading_pauses_while_the_body_waits_for_the_client(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    size = 32 * 1024 * 1024
    written = asyncio.Event()

    async def large(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + bytes(size))
        await writer.drain()
        written.set()

    upstream = await serve(large)
    async with asyncio.timeout(DEADLINE):
        answer = await client.send("GET", upstream.url + "/", [])
        try:
            received = len(await answer.read())
            # Not reading: the client must stop taking bytes, so the server cannot finish.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await written.wait()
            while not answer.finished:
                received += len(await answer.read())
        finally:
            answer.close()
        await written.wait()
    assert received == size


async def test_the_pool_bound_holds_under_concurrency(
    serve: Callable[[Handler], Awaitable[Upstream]],
) -> None:
    release = asyncio.Event()
    pending = 0

    async def held(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        nonlocal pending
        while (request := await up.next_request(reader)) is not None:
            pending += 1
            await release.wait()
            pending -= 1
            writer.write(response(request.target.encode()))
            await writer.drain()

    up = await serve(held)
    bounded = UpstreamClient(UpstreamLimits(max_connections=2, max_idle=2))
    try:
        tasks = [asyncio.create_task(fetch(bounded, f"{up.url}/{i}")) for i in range(10)]
        await eventually(lambda: pending == 2, "two requests held by the server")
        assert up.open == 2
        release.set()
        results = await asyncio.gather(*tasks)
    finally:
        await bounded.aclose()
    assert results == [(200, f"/{i}".encode()) for i in range(10)]
    assert up.peak == 2
    assert up.connections == 2


async def test_waiting_for_a_connection_is_bounded(
    serve: Callable[[Handler], Awaitable[Upstream]],
) -> None:
    async def silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        await asyncio.Event().wait()

    up = await serve(silent)
    bounded = UpstreamClient(UpstreamLimits(max_connections=1, pool_timeout=0.1))
    try:
        first = asyncio.create_task(fetch(bounded, up.url + "/"))
        await eventually(lambda: len(up.requests) == 1, "the first request held")
        with pytest.raises(UpstreamUnreachable):
            await fetch(bounded, up.url + "/")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await bounded.aclose()


# Response framing


STREAMED = {
    "chunked": (b"transfer-encoding: chunked", b"5\r\nfirst\r\n", b"7\r\n second\r\n0\r\n\r\n"),
    "sized": (b"content-length: 12", b"fi", b"rst", b" second"),
}


@pytest.mark.parametrize("framing", sorted(STREAMED))
async def test_body_is_streamed_piece_by_piece(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient, framing: str
) -> None:
    header, *pieces = STREAMED[framing]
    read = asyncio.Event()

    async def in_pieces(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        while await up.next_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\n" + header + b"\r\n\r\n" + pieces[0])
            await writer.drain()
            for piece in pieces[1:]:
                # On the first answer, each piece is only written once the client has the one
                # before: streaming.
                if len(up.requests) == 1:
                    await read.wait()
                    read.clear()
                writer.write(piece)
                await writer.drain()

    up = await serve(in_pieces)
    async with asyncio.timeout(DEADLINE):
        answer = await client.send("GET", up.url + "/", [])
        received = []
        try:
            while not answer.finished:
                received.append(await answer.read())
                read.set()
        finally:
            answer.close()
    assert b"".join(received) == b"first second"
    assert len([piece for piece in received if piece]) >= 2
    # The connection stays in step for the next answer, whatever the last one left behind.
    assert await fetch(client, up.url + "/") == (200, b"first second")
    assert up.connections == 1


async def test_close_delimited_response(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        await writer.drain()

    up = await serve(until_close)
    assert await fetch(client, up.url + "/") == (200, b"part one, part two")
    assert await fetch(client, up.url + "/") == (200, b"part one, part two")
    assert up.connections == 2


@pytest.mark.parametrize(
    ("method", "status", "extra"),
    [
        ("HEAD", "200 OK", "content-length: 1000\r\n"),
        ("HEAD", "200 OK", "transfer-encoding: chunked\r\n"),
        ("GET", "204 No Content", ""),
        ("GET", "304 Not Modified", 'etag: "x"\r\n'),
    ],
)
async def test_answers_without_a_body(
    serve: Callable[[Handler], Awaitable[Upstream]],
    client: UpstreamClient,
    method: str,
    status: str,
    extra: str,
) -> None:
    async def bodiless(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        writer.write(f"HTTP/1.1 {status}\r\n{extra}\r\n".encode())
        await writer.drain()
        await keep_alive(reader, writer, up)

    up = await serve(bodiless)
    assert await fetch(client, up.url + "/", method) == (int(status[:3]), b"")
    # The connection is still in step: the next answer is read as the next answer.
    assert await fetch(client, up.url + "/next") == (200, b"GET /next")
    assert up.connections == 1


async def test_interim_100_continue_is_skipped(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    async def continuing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await up.next_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"done", extra="x-final: 1\r\n"))
        await writer.drain()

    up = await serve(continuing)
    async with asyncio.timeout(DEADLINE):
        answer = await client.send("POST", up.url + "/", [(b"expect", b"100-continue")], b"x")
        try:
            assert answer.status == 200
            assert (b"x-final", b"1") in answer.headers
            assert await answer.read() == b"done"
        finally:
            answer.close()


@pytest.mark.parametrize("ending", ["reset", "close"])
async def test_response_cut_mid_body_ends_short_without_hanging(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient, ending: str
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await up.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        if ending == "reset":
            reset(writer)

    up = await serve(cut)
    received = b""
    async with asyncio.timeout(DEADLINE):
        answer = await client.send("GET", up.url + "/", [])
        try:
            with pytest.raises(ResponseCut):
                while True:
                    received += await answer.read()
        finally:
            answer.close()
    assert received == b"x" * len(received) and len(received) <= 1000
    assert not answer.finished


async def test_silent_upstream_times_out_before_and_after_the_head(
    serve: Callable[[Handler], Awaitable[Upstream]],
) -> None:
    async def stalls(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        request = await up.next_request(reader)
        if request is not None and request.target == "/body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            await writer.drain()
        await asyncio.Event().wait()

    up = await serve(stalls)
    impatient = UpstreamClient(UpstreamLimits(response_timeout=0.1, read_timeout=0.1))
    try:
        with pytest.raises(UpstreamUnreachable):
            await fetch(impatient, up.url + "/head")
        with pytest.raises(ResponseCut):
            await fetch(impatient, up.url + "/body")
    finally:
        await impatient.aclose()


async def test_connect_refused_is_upstream_unreachable(client: UpstreamClient) -> None:
    with pytest.raises(UpstreamUnreachable):
        await fetch(client, f"http://127.0.0.1:{free_port()}/")


# Requests


async def test_request_bodies_are_framed_by_length_or_chunked(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    up = await serve(keep_alive)

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"", b"two ", b"three"):
            yield piece

    await fetch(client, up.url + "/", "POST", b"as bytes")
    await fetch(client, up.url + "/", "POST", pieces())
    async with asyncio.timeout(DEADLINE):
        answer = await client.send("PUT", up.url + "/", [(b"content-length", b"13")], pieces())
        answer.close()
    sent = [
        (r.method, r.headers.get("content-length"), r.headers.get("transfer-encoding"), r.body)
        for r in up.requests
    ]
    assert sent == [
        ("POST", "8", None, b"as bytes"),
        ("POST", None, "chunked", b"one two three"),
        ("PUT", "13", None, b"one two three"),
    ]


async def test_a_body_shorter_than_its_length_is_refused(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    up = await serve(keep_alive)

    async def short() -> AsyncIterator[bytes]:
        yield b"only this"

    with pytest.raises(BadRequest):
        async with asyncio.timeout(DEADLINE):
            await client.send("POST", up.url + "/", [(b"content-length", b"100")], short())
    await eventually(lambda: up.open == 0, "the half-sent request's connection closed")
    assert up.requests == []


@pytest.mark.parametrize(
    "header",
    [(b"x-evil", b"1\r\nx-injected: 1"), (b"x-evil", b"1\nx-injected: 1"), (b"x-evil", b"1\r")],
)
async def test_header_injection_is_refused_before_sending(
    serve: Callable[[Handler], Awaitable[Upstream]],
    client: UpstreamClient,
    header: tuple[bytes, bytes],
) -> None:
    up = await serve(keep_alive)
    with pytest.raises(BadRequest):
        await client.send("GET", up.url + "/", [header])
    assert up.connections == 0


async def test_submit_reads_the_answer_and_keeps_the_connection(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    up = await serve(keep_alive)
    headers = [(b"content-type", b"text/xml")]
    assert await client.submit("POST", up.url + "/http-bind", headers, b"<body/>") == 200
    assert await client.submit("POST", up.url + "/http-bind", headers, b"<body/>") == 200
    assert up.connections == 1
    assert up.requests[0].body == b"<body/>"


async def test_a_closed_client_refuses_and_closes_its_connections(
    serve: Callable[[Handler], Awaitable[Upstream]],
) -> None:
    up = await serve(keep_alive)
    closing = UpstreamClient()
    assert await fetch(closing, up.url + "/") == (200, b"GET /")
    await closing.aclose()
    await eventually(lambda: up.open == 0, "the idle connection closed")
    with pytest.raises(UpstreamUnreachable):
        await fetch(closing, up.url + "/")


# The relay on top


class Downstream:
    """The ASGI side of the relay: a scope, a request body to receive, the messages sent."""

    def __init__(self, method: str = "GET", body: bytes = b"") -> None:
        headers = [(b"content-length", str(len(body)).encode())] if body else []
        self.scope: dict[str, Any] = {"type": "http", "method": method, "headers": headers}
        self._body = body
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self._body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def test_relay_streams_and_completes_the_response(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    up = await serve(keep_alive)
    downstream = Downstream("POST", b"payload")
    relay = HttpRelay(client, max_body_bytes=1024)
    async with asyncio.timeout(DEADLINE):
        await relay.relay(downstream.scope, downstream.receive, downstream.send, up.url + "/p", [])
    start = downstream.sent[0]
    assert start["status"] == 200 and (b"content-length", b"7") in start["headers"]
    assert downstream.body == b"POST /p"
    assert downstream.sent[-1]["more_body"] is False
    assert up.requests[0].body == b"payload"


async def test_relay_ends_a_cut_response_short(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
        await up.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        reset(writer)

    up = await serve(cut)
    downstream = Downstream()
    relay = HttpRelay(client, max_body_bytes=1024)
    async with asyncio.timeout(DEADLINE):
        await relay.relay(downstream.scope, downstream.receive, downstream.send, up.url + "/", [])
    assert downstream.sent[0]["status"] == 200
    # Never a final message: the browser must not take a truncated body for a whole one.
    assert all(m["more_body"] for m in downstream.sent[1:])
    assert len(downstream.body) < 1000000


async def test_relay_refuses_before_the_response_starts(client: UpstreamClient) -> None:
    relay = HttpRelay(client, max_body_bytes=4)
    too_big = Downstream("POST", b"too large")
    with pytest.raises(RequestTooLarge):
        await relay.relay(too_big.scope, too_big.receive, too_big.send, "http://127.0.0.1:1/", [])
    dead = Downstream()
    with pytest.raises(UpstreamUnreachable):
        await relay.relay(
            dead.scope, dead.receive, dead.send, f"http://127.0.0.1:{free_port()}/", []
        )
    assert too_big.sent == [] and dead.sent == []


# Relayed exactly: trailers dropped, a request cut by the client aborted


async def test_response_trailers_are_dropped_never_made_headers(
    serve: Callable[[Handler], Awaitable[Upstream]], client: UpstreamClient
) -> None:
    async def trailed(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        while await up.next_request(reader) is not None:
            # One write: llhttp reads the trailers in the same call as the head.
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n"
                b"5\r\nhello\r\n0\r\nx-checksum: 1234\r\nset-cookie: evil=1\r\n\r\n"
            )
            await writer.drain()

    up = await serve(trailed)
    async with asyncio.timeout(DEADLINE):
        answer = await client.send("GET", up.url + "/", [])
        try:
            body = await answer.read()
            while not answer.finished:
                body += await answer.read()
        finally:
            answer.close()
    assert body == b"hello"
    assert [name.lower() for name, _ in answer.headers] == [b"transfer-encoding", b"trailer"]
    # The connection is whole after the trailers and serves the next request.
    assert await fetch(client, up.url + "/") == (200, b"hello")
    assert up.connections == 1


class CutDownstream(Downstream):
    """A client that sends the first part of a body, then goes away."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__("POST")
        self.scope["headers"] = headers
        self._messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": b"first half", "more_body": True},
            {"type": "http.disconnect"},
        ]

    async def receive(self) -> dict[str, Any]:
        return self._messages.pop(0)


@pytest.mark.parametrize("headers", [[], [(b"content-length", b"100")]])
async def test_relay_aborts_an_upload_the_client_cuts(
    serve: Callable[[Handler], Awaitable[Upstream]],
    client: UpstreamClient,
    headers: list[tuple[bytes, bytes]],
) -> None:
    up = await serve(keep_alive)
    downstream = CutDownstream(headers)
    relay = HttpRelay(client, max_body_bytes=1024)
    with pytest.raises(RequestAborted):
        async with asyncio.timeout(DEADLINE):
            await relay.relay(
                downstream.scope, downstream.receive, downstream.send, up.url + "/up", []
            )
    await eventually(lambda: up.open == 0, "the upstream connection dropped")
    # Never read as a whole request: no final chunk, not the announced length.
    assert up.requests == []
    assert downstream.sent == []


async def test_read_body_refuses_a_body_the_client_cuts() -> None:
    downstream = CutDownstream([])
    with pytest.raises(RequestAborted):
        await read_body(downstream.receive, 1024)
