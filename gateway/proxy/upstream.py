"""Meetgate's HTTP/1.1 client for the upstream: keep-alive connection pools, one per origin.

httpx's pool costs O(pooled connections) per request (docs/performance-history.md, "Where the
time goes"; this client against httpx and aiohttp: docs/performance.md, "Upstream HTTP client").
Here an idle connection is taken in O(1), responses are parsed by llhttp (httptools) as
the bytes arrive and handed on chunk by chunk, and no body is ever held whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from gateway.errors import BadRequest, UpstreamUnreachable
from gateway.i18n import N_

# RFC 9110 §9.2.2. Only these, and only without a body, are sent again when a reused connection
# turns out to have been closed by the server before it answered.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Stop reading from the upstream while this much of a body waits for a slower client.
READ_HIGH_WATER = 512 * 1024
# A body piece this large goes on alone: a copy to join it with others would cost more than
# one more write downstream. Smaller ones (a chunked body's many small chunks) are joined.
SEND_ALONE = 64 * 1024
# asyncio may run a timer up to its clock resolution early; an idle connection that is this
# close to its limit is retired with the others rather than by a timer of its own.
SWEEP_SLACK = 0.01


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """Timeouts (seconds) and pool bounds, per upstream origin."""

    connect_timeout: float = 5.0
    # From the request sent to the response head: BOSH long-polls are held by prosody for up to
    # `bosh_max_wait` (120 s by default).
    response_timeout: float = 180.0
    # Silence allowed between two pieces of a response body.
    read_timeout: float = 60.0
    # A request body the upstream stops reading.
    write_timeout: float = 30.0
    # Waiting for a connection when `max_connections` are busy.
    pool_timeout: float = 10.0
    # Below the shortest common server keep-alive (uvicorn's 5 s; nginx's 75 s), so a
    # connection is normally retired by us before the server closes it under a new request,
    # a race that only idempotent requests survive (they are retried).
    idle_timeout: float = 4.0
    max_connections: int = 1000
    max_idle: int = 100


class ResponseCut(Exception):
    """The response body broke off: the upstream closed, reset or went silent before its end."""


class _NothingReceived(Exception):
    """The connection failed before the first byte of the answer: maybe a stale keep-alive."""


class _Unsolicited(Exception):
    """A second answer to one request; raised inside llhttp's callback to stop the parse."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One upstream connection, and the parser's callback target for the answer in flight.

    The event loop feeds bytes straight into llhttp (no stream buffer in between); the task that
    sent the request waits on `wait()` and reads the state the callbacks leave.
    """

    transport: asyncio.Transport

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.parser = httptools.HttpResponseParser(self)
        # Set when llhttp was left mid-message (a HEAD answer, a body counted by us).
        self.parser_stale = False
        self.holds_slot = False
        self.in_idle = False
        self.idle_since = 0.0
        # Connection state.
        self.lost = False
        self.eof = False
        self.reusable = True
        self.writing_paused = False
        self.reading_paused = False
        # The exchange in flight.
        self.active = False
        self.head_only = False
        self.received = False
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.body_seen = 0
        self.length_checked = False
        # Body bytes still to come when we count a Content-Length body ourselves (0: we don't).
        self.remaining = 0
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:
            # Bytes nobody asked for (a late error page, a 408 before an idle close): this
            # connection cannot be trusted to carry the next answer.
            self.reusable = False
            self.transport.abort()
            return
        self.received = True
        if self.remaining:
            self._sized_body(data)
        else:
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                self.reusable = False
                if not self.complete:
                    self.error = exc
                self.transport.abort()
            if self.head_done and not self.complete and not self.length_checked:
                self._count_sized_body()
        if self.buffered > READ_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def _count_sized_body(self) -> None:
        # llhttp copies every body piece it reports; counting the rest of a Content-Length
        # body ourselves hands the bytes on as the socket gave them (one copy less).
        self.length_checked = True
        length = None
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                return
            if lowered == b"content-length":
                length = int(value)  # llhttp has checked it is a number, and the only one
        if length is not None and length > self.body_seen:
            self.remaining = length - self.body_seen
            self.parser_stale = True

    def _sized_body(self, data: bytes) -> None:
        if len(data) > self.remaining:
            # Bytes after the body that nobody asked for.
            self.reusable = False
            data = data[: self.remaining]
        self.chunks.append(data)
        self.buffered += len(data)
        self.remaining -= len(data)
        if not self.remaining:
            self.complete = True

    def eof_received(self) -> bool:
        self.eof = True
        self.reusable = False
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        self.pool.forget(self)
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Unsolicited()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            # A trailer field (llhttp reports them like headers, after the body). Dropped, as
            # RFC 9110 §6.5.1 lets a proxy do with fields it does not understand: the server
            # under the gate cannot send trailers downstream (ASGI's `http.response.trailers`
            # extension is not offered), and a trailer must never become a header (§6.5).
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # A 1xx interim answer (100 Continue to a forwarded Expect) is not the response.
            self.headers = []
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only:
            # llhttp cannot know the request was HEAD and would wait for the body announced.
            self.complete = True
            self.parser_stale = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.reusable = False
            return
        self.chunks.append(body)
        self.buffered += len(body)
        self.body_seen += len(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True

    # used by the client

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, deadline: float) -> None:
        """Until the next event (bytes, EOF, loss, writable again); TimeoutError at `deadline`."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        timer = self.loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def begin(self, *, head_only: bool) -> None:
        if self.parser_stale:
            self.parser = httptools.HttpResponseParser(self)
            self.parser_stale = False
        self.active = True
        self.head_only = head_only
        self.received = self.head_done = self.complete = self.length_checked = False
        self.status = self.body_seen = self.remaining = 0
        self.headers = []
        self.chunks = []
        self.buffered = 0

    def take(self) -> bytes:
        chunks = self.chunks
        if len(chunks) == 1 or len(chunks[0]) >= SEND_ALONE:
            data = chunks.pop(0)
        else:
            data = b"".join(chunks)
            chunks.clear()
        self.buffered -= len(data)
        if self.reading_paused and self.buffered <= READ_HIGH_WATER // 2:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    @property
    def open(self) -> bool:
        return not (self.lost or self.eof or self.transport.is_closing())

    def ended_by_close(self) -> bool:
        """Whether the server closing the connection is how this response's body ends."""
        if not self.eof or self.error is not None or not self.head_done or self.complete:
            return False
        encoding = length = None
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                encoding = value
            elif lowered == b"content-length":
                length = value
        if encoding is not None:
            return not encoding.rstrip().lower().endswith(b"chunked")
        return length is None


class _Pool:
    """Connections to one origin: at most `max_connections`, idle ones reused newest first."""

    def __init__(self, origin: str, limits: UpstreamLimits, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.loop = asyncio.get_running_loop()
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.authority = parts.netloc.rpartition("@")[2].encode("ascii")
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = context or _default_context()
        self._limits = limits
        self._idle: deque[_Connection] = deque()
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._open = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self) -> tuple[_Connection, bool]:
        """A connection for one exchange, and whether it has served one before."""
        while True:
            if self._closed:
                raise UpstreamUnreachable()
            idle = self._idle
            if idle:
                oldest_allowed = self.loop.time() - self._limits.idle_timeout
                while idle:
                    connection = idle.pop()
                    connection.in_idle = False
                    if connection.open and connection.idle_since > oldest_allowed:
                        return connection, True
                    self.discard(connection)
            if self._open < self._limits.max_connections:
                self._open += 1
                return await self.connect(), False
            handed = await self._wait_for_turn()
            if handed is None:
                return await self.connect(), False
            if handed.open:
                return handed, True
            # It broke while being handed over; its slot is free again.
            self.discard(handed)

    async def connect(self) -> _Connection:
        """Open a connection in a slot already counted in `_open`."""
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                _, connection = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
        except (OSError, TimeoutError) as exc:
            self._free_slot()
            raise UpstreamUnreachable() from exc
        except BaseException:
            self._free_slot()
            raise
        if connection.lost:
            self._free_slot()
            raise UpstreamUnreachable()
        connection.holds_slot = True
        return connection

    async def reconnect(self, connection: _Connection) -> _Connection:
        """A fresh connection in place of one that failed, keeping its slot under the bound."""
        connection.holds_slot = False
        self.discard(connection)
        return await self.connect()

    async def _wait_for_turn(self) -> _Connection | None:
        """A connection handed over by `release`, or None for a slot freed to open one in."""
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._limits.pool_timeout):
                return await waiter
        except BaseException as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            # Handed something in the same tick as the timeout or a cancellation: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            if isinstance(exc, TimeoutError):
                raise UpstreamUnreachable() from exc
            raise

    def release(self, connection: _Connection) -> None:
        """Keep a connection whose exchange ended cleanly for the next request."""
        connection.active = False
        if self._closed:
            self.discard(connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = self.loop.time()
        connection.in_idle = True
        self._idle.append(connection)
        if len(self._idle) > self._limits.max_idle:
            oldest = self._idle.popleft()
            oldest.in_idle = False
            self.discard(oldest)
        if self._sweeper is None:
            self._arm_sweeper()

    def discard(self, connection: _Connection) -> None:
        """Close a connection for good and free its slot."""
        connection.active = False
        connection.reusable = False
        if connection.in_idle:
            connection.in_idle = False
            self._idle.remove(connection)
        connection.transport.abort()
        self._forget_slot(connection)

    def forget(self, connection: _Connection) -> None:
        """The connection is gone (the server closed it, or we did): drop it from the pool."""
        if connection.in_idle:
            connection.in_idle = False
            self._idle.remove(connection)
        self._forget_slot(connection)

    def _forget_slot(self, connection: _Connection) -> None:
        if connection.holds_slot:
            connection.holds_slot = False
            self._free_slot()

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # The slot passes straight to the longest waiter; `_open` stays the same.
                waiter.set_result(None)
                return
        self._open -= 1

    def _arm_sweeper(self) -> None:
        if self._idle:
            when = self._idle[0].idle_since + self._limits.idle_timeout
            self._sweeper = self.loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        """Retire the connections idle for too long (the oldest are at the left)."""
        self._sweeper = None
        limit = self.loop.time() - self._limits.idle_timeout + SWEEP_SLACK
        idle = self._idle
        while idle and idle[0].idle_since <= limit:
            connection = idle.popleft()
            connection.in_idle = False
            self.discard(connection)
        self._arm_sweeper()

    def close(self) -> None:
        """Close the idle connections now, the busy ones when their exchange ends."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._idle:
            connection = self._idle.popleft()
            connection.in_idle = False
            self.discard(connection)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamUnreachable())


def _default_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _split_url(url: str) -> tuple[str, str]:
    """`http://host:port/path?query` → (`http://host:port`, `/path?query`)."""
    start = url.find("://") + 3
    end = url.find("/", start)
    query = url.find("?", start)
    if query >= 0 and (end < 0 or query < end):
        return url[:query], "/" + url[query:]
    if end < 0:
        return url, "/"
    return url[:end], url[end:]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class UpstreamResponse:
    """An upstream response's head, and its body to read piece by piece as it arrives.

    `close()` must follow (in a `finally`): it keeps the connection for the next request when
    the whole body was read and the upstream allows it, and closes the connection otherwise.
    """

    __slots__ = ("_closed", "_connection", "_read_timeout", "finished", "headers", "status")

    def __init__(self, connection: _Connection, read_timeout: float) -> None:
        self.status = connection.status
        self.headers = connection.headers
        self.finished = connection.complete and not connection.chunks
        self._connection = connection
        self._read_timeout = read_timeout
        self._closed = False

    async def read(self) -> bytes:
        """The body bytes that arrived since the last call; b"" and `finished` at the end.

        Raises ResponseCut if the body breaks off or nothing arrives for `read_timeout`.
        """
        connection = self._connection
        while True:
            if connection.chunks:
                data = connection.take()
                self.finished = connection.complete and not connection.chunks
                return data
            if connection.complete:
                self.finished = True
                return b""
            if connection.error is not None or connection.lost or connection.eof:
                if connection.ended_by_close():
                    self.finished = True
                    return b""
                raise ResponseCut()
            try:
                await connection.wait(connection.loop.time() + self._read_timeout)
            except TimeoutError as exc:
                raise ResponseCut() from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if (
            self.finished
            and connection.complete
            and connection.keep_alive
            and connection.reusable
            and connection.open
        ):
            connection.pool.release(connection)
        else:
            connection.pool.discard(connection)


class UpstreamClient:
    """HTTP/1.1 requests to the upstream origins over pooled keep-alive connections.

    Errors before the response head are raised as UpstreamUnreachable (the gate's 502 page);
    request-body errors (RequestTooLarge, BadRequest) pass through as raised.
    """

    def __init__(
        self, limits: UpstreamLimits | None = None, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._limits = limits or UpstreamLimits()
        self._ssl_context = ssl_context
        self._pools: dict[str, _Pool] = {}
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """Connections kept open for the next request, across origins."""
        return sum(pool.idle for pool in self._pools.values())

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | bytes | None = None,
    ) -> UpstreamResponse:
        """Send a request and return once the response head has arrived.

        `headers` are written as given (the caller has filtered them), plus Host from the URL
        if missing and the body's framing: Content-Length if given or `body` is bytes, else
        chunked. An async iterable body is streamed as the caller produces it.
        """
        if self._closed:
            raise UpstreamUnreachable()
        origin, target = _split_url(url)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(origin, self._limits, self._ssl_context)

        try:
            target_bytes = target.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise BadRequest() from exc
        declared: int | None = None
        has_host = False
        parts = [method.encode("ascii"), b" ", target_bytes, b" HTTP/1.1\r\n"]
        lines = 2 + len(headers)  # the request line, the headers, the blank line
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"host":
                has_host = True
            elif lowered == b"content-length":
                try:
                    declared = int(value)
                except ValueError as exc:
                    raise BadRequest(N_("The Content-Length header is not valid.")) from exc
            parts += (name, b": ", value, b"\r\n")
        if not has_host:
            parts[4:4] = (b"host: ", pool.authority, b"\r\n")
            lines += 1
        first = b""
        rest: AsyncIterator[bytes] | None = None
        if isinstance(body, bytes):
            first = body
            if declared is None:
                declared = len(body)
                parts += (b"content-length: ", str(declared).encode(), b"\r\n")
                lines += 1
        elif body is not None:
            rest = aiter(body)
            if declared is None:
                parts.append(b"transfer-encoding: chunked\r\n")
                lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        # A CR or LF inside a value or the target would let it write headers of its own.
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b" " in target_bytes:
            raise BadRequest()

        if rest is not None:
            # The first piece rides with the head; a body refused at once costs no connection.
            first = await anext(rest, b"")
        if declared is not None and (
            len(first) > declared or (rest is None and len(first) != declared)
        ):
            raise BadRequest(N_("The request body does not match its Content-Length."))
        data = head + (_chunk(first) if first and declared is None else first)

        retry = body is None and method in IDEMPOTENT
        connection, reused = await pool.acquire()
        while True:
            try:
                return await self._exchange(connection, method, data, rest, declared, len(first))
            except _NothingReceived as exc:
                if reused and retry:
                    reused = False
                    connection = await pool.reconnect(connection)
                    continue
                pool.discard(connection)
                raise UpstreamUnreachable() from exc
            except (
                OSError,
                TimeoutError,
                httptools.HttpParserError,
                httptools.HttpParserUpgrade,
            ) as exc:
                pool.discard(connection)
                raise UpstreamUnreachable() from exc
            except BaseException:
                pool.discard(connection)
                raise

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        data: bytes,
        rest: AsyncIterator[bytes] | None,
        declared: int | None,
        sent: int,
    ) -> UpstreamResponse:
        if not connection.open:
            raise _NothingReceived()
        connection.begin(head_only=method == "HEAD")
        connection.transport.write(data)
        if rest is not None:
            await self._write_body(connection, rest, declared, sent)
        deadline = connection.loop.time() + self._limits.response_timeout
        while not connection.head_done:
            if connection.error is not None:
                raise connection.error
            if connection.lost or connection.eof:
                if not connection.received:
                    raise _NothingReceived()
                raise ConnectionResetError("the upstream closed the connection mid-head")
            await connection.wait(deadline)
        return UpstreamResponse(connection, self._limits.read_timeout)

    async def _write_body(
        self,
        connection: _Connection,
        rest: AsyncIterator[bytes],
        declared: int | None,
        sent: int,
    ) -> None:
        total = sent
        async for piece in rest:
            if not piece:
                continue
            total += len(piece)
            if declared is not None and total > declared:
                raise BadRequest()
            await self._drain(connection)
            connection.transport.write(piece if declared is not None else _chunk(piece))
        if declared is None:
            connection.transport.write(b"0\r\n\r\n")
        elif total != declared:
            # The client went away mid-body; the upstream would wait for the rest.
            raise BadRequest(N_("The request body is shorter than its Content-Length."))
        await self._drain(connection)

    async def _drain(self, connection: _Connection) -> None:
        """Wait while the upstream is not reading what was written (bounded by write_timeout)."""
        deadline: float | None = None
        while True:
            if connection.lost or connection.error is not None:
                raise ConnectionResetError("the upstream connection broke mid-request")
            if not connection.writing_paused:
                return
            if deadline is None:
                deadline = connection.loop.time() + self._limits.write_timeout
            await connection.wait(deadline)

    async def submit(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> int:
        """Send a small request, read its answer to the end and return the status.

        For calls whose answer matters only by its status (a BOSH terminate); the caller bounds
        the time with `asyncio.timeout`. Any failure is UpstreamUnreachable.
        """
        response = await self.send(method, url, headers, body)
        try:
            while not response.finished:
                await response.read()
        except ResponseCut as exc:
            raise UpstreamUnreachable() from exc
        finally:
            response.close()
        return response.status

    async def aclose(self) -> None:
        """Close every pooled connection; busy ones close when their exchange ends."""
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
