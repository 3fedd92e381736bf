"""Meetgate's own HTTP/1.1 and WebSocket server for ASGI applications.

Why not an off-the-shelf server: the gate must end slow and greedy clients before they reach the
application (gateway/edge/guard.py) and stop in its own order (gateway/serving.py), and no
server offered either through a public interface (docs/design/http-server.md). So the wire is
parsed here, with documented libraries only:

- **HTTP/1.1 requests through httptools** (llhttp, in C; its public `HttpRequestParser` and
  callbacks). llhttp checks the request line, header names and values (no control characters,
  no obs-fold, no space before the colon), Content-Length (digits, never twice) and the chunked
  framing. What it leaves to its user is checked here, as h11 did before: the head's size
  (`max_header_bytes`, answered 431, counted as it arrives), Host (once, and required in
  HTTP/1.1), Transfer-Encoding (exactly `chunked`), HTTP/1.0 or 1.1 only, a path (origin form)
  only; a chunked body's trailer fields are dropped, never added to the headers.
- **Responses are framed here**: the status line and the application's headers (each name and
  value checked, as h11 checks them), then Content-Length as the application declared it (a body
  shorter or longer than declared is never written as complete), chunked when it declared none,
  or close-delimited for HTTP/1.0; no body for HEAD, 204 and 304.
- **WebSockets through websockets' sans-I/O `ServerProtocol`**: the handshake is checked and
  answered by it, frames are parsed and written by it (masking, control frames, ping → pong,
  the closing handshake, the message size cap answered 1009).
- **asyncio's public `create_server`**, `Protocol` and `Transport`; one `Connection` a client.

What the application sees is ASGI 3.0 (HTTP spec 2.3, WebSocket spec 2.4 with the
`websocket.http.response` extension, so the gate can refuse a WebSocket with a page). There is
no lifespan protocol: `meetgate serve` starts and stops the application itself.

The guard's rules are applied in the same place the requests are parsed: a connection over the
replica's or its address's cap is reset at accept; a head that takes longer than
`header_read_seconds`, a body than `body_read_seconds`, is reset; nothing is timed while the
application works on a request (a BOSH long poll may hold one for a minute); an idle keep-alive
connection is closed after `keep_alive_seconds`. An open WebSocket counts toward the replica's
cap, not its address's (attendees behind one NAT must not crowd each other out).

llhttp parses everything it is given in one call, so requests pipelined behind the one being
answered are read ahead: each waits, with its body, until the ones before it are answered, and
reading pauses while any waits. At most PIPELINED_MAX wait on one connection; past that nothing
more is read and the connection closes after their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httptools
from starlette.types import ASGIApp, Message
from websockets.exceptions import InvalidHandshake, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request as HandshakeRequest
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

from gateway.edge.guard import NEVER, Guarding, address_key

log = logging.getLogger("meetgate.server")

# The listen backlog (what uvicorn used).
BACKLOG = 2048
# A request body buffered beyond this while the application does not read it pauses reading.
BODY_BUFFER_BYTES = 64 * 1024
# Requests read ahead of their answer on one connection (pipelined); past this, nothing more is
# read and the connection closes once they are answered.
PIPELINED_MAX = 32
# WebSocket messages received and not yet read by the application: reading pauses above the
# first, resumes at the second.
QUEUE_HIGH = 16
QUEUE_LOW = 4
# Frames one WebSocket message may come in (browsers send one).
MAX_FRAGMENTS = 1024
# After the gate sends a WebSocket close, the client has this long to answer it; a connection
# being closed has as long to take what is still to be written to it.
CLOSE_SECONDS = 5.0
# TCP keepalive on an open WebSocket: a peer gone without a word (a phone out of coverage) is
# noticed after about IDLE + INTERVAL * COUNT seconds.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 10
KEEPALIVE_COUNT = 3
# A response's head and body up to this size go to the socket as one write.
JOINED_WRITE_BYTES = 16 * 1024

ASGI_HTTP = {"version": "3.0", "spec_version": "2.3"}
ASGI_WEBSOCKET = {"version": "3.0", "spec_version": "2.4"}
WEBSOCKET_EXTENSIONS: dict[str, dict[str, Any]] = {"websocket.http.response": {}}

# What RFC 9110 allows in a field name (a token) and value, as h11 checks what it writes: no NUL,
# CR, LF or other whitespace but spaces and tabs between visible characters.
FIELD_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
CONTENT_LENGTH_DIGITS = 20
# The request line's fixed part: two spaces, "HTTP/1.1" and CR LF; each header line's: ": " and
# CR LF; the head's end: CR LF.
REQUEST_LINE_BYTES = 12
FIELD_LINE_BYTES = 4
# Status lines by status, as they are first used.
STATUS_LINES: dict[int, bytes] = {}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
# Header fields the server writes itself.
FRAMING = (b"content-length", b"transfer-encoding", b"connection")


def _plain(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


TOO_LARGE = _plain(431, "Request Header Fields Too Large", "Request header fields too large\n")
BAD_REQUEST = _plain(400, "Bad Request", "Bad request\n")
SERVER_ERROR = _plain(500, "Internal Server Error", "Internal server error\n")


class ClientDisconnected(OSError):
    """A WebSocket message sent after the client's connection has ended."""


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request the server answers itself."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int = 16 * 1024
    max_websocket_message_bytes: int = 1024 * 1024
    keep_alive_seconds: float = 5.0
    # A client whose connection takes no byte of what it is sent for this long is reset,
    # whatever the application is doing (a download to a reader that stopped, a WebSocket never
    # read).
    write_stall_seconds: float = 30.0


class _Clock:
    """The `date` header line, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def date(self) -> bytes:
        """`date: …` with its CR LF."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


# A check of each HTTP request's scope before the application is called: None, or the status,
# header fields and body to answer it with instead (see HttpServer).
Refuse = Callable[[dict[str, Any]], tuple[int, Sequence[tuple[bytes, bytes]], bytes] | None]


class HttpServer:
    """One ASGI application served on listening sockets, under one set of guard rules.

    `refuse`, when set, is called with each HTTP request's scope as soon as its head is read,
    before the application. When it returns an answer (status, header fields, body), the server
    sends that, framed as it frames the application's answers (Date, Content-Length or chunks,
    Connection: close where the connection ends, no body for HEAD), the application is not
    called and the request's body is read and dropped. It is what lets the gate answer a flood's
    known refusals without an ASGI call (gateway/proxy/gate.py `Gate.refuse_known`). It runs on
    the event loop between two reads, so it must be quick and must not block; it sees no body
    and writes no log line. It is not asked while the server stops, nor for a client that is not
    taking its answers (the application's path waits for it), nor for WebSockets.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        guarding: Guarding,
        limits: ServerLimits,
        refuse: Refuse | None = None,
    ) -> None:
        self.app = app
        self.refuse = refuse
        self.guarding = guarding
        self.limits = limits
        self.clock = _Clock()
        self.stopping = False
        self._listeners: list[asyncio.Server] = []
        # Set once every connection has ended, while stopping.
        self._emptied: asyncio.Event | None = None

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        """Serve on `sockets` (bound; listening or not)."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            listener = await loop.create_server(
                lambda: Connection(self), sock=sock, backlog=BACKLOG
            )
            self._listeners.append(listener)

    def close_listeners(self) -> None:
        """Accept no more connections (those open go on)."""
        for listener in self._listeners:
            listener.close()

    async def shutdown(self, deadline: float) -> None:
        """Close the idle connections now, let each request in flight finish (its connection
        closes after the answer) until `deadline` (the loop's clock), then end what is left."""
        self.stopping = True
        self._emptied = asyncio.Event()
        for connection in list(self.guarding.open):
            connection.shutdown()
        self.released()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._emptied.wait()
        cancelled = self.abort()
        if cancelled:
            # The cancelled requests' tasks end (their `finally` blocks run) before this returns.
            await asyncio.wait(cancelled, timeout=1.0)

    def released(self) -> None:
        """A connection ended."""
        if self._emptied is not None and not self.guarding.open:
            self._emptied.set()

    def abort(self) -> list[asyncio.Task[None]]:
        """End every connection now (a second stop signal, or the stop's deadline); the tasks
        this cancelled."""
        self.stopping = True
        cancelled: list[asyncio.Task[None]] = []
        for connection in list(self.guarding.open):
            cancelled += connection.abort()
        return cancelled


# Where a connection is.
HEAD = 0  # waiting for or reading a request's head (timed by header_read_seconds)
BODY = 1  # reading a request's body (body_read_seconds)
APP = 2  # the request was read; the application answers it (not timed)
IDLE = 3  # answered; waiting for the next request (keep_alive_seconds)
WEBSOCKET = 4  # upgraded (not timed, except the closing handshake)
CLOSING = 5  # closed by the server; what is left to write has CLOSE_SECONDS to go


class Connection(asyncio.Protocol):
    """One client connection: the guard's rules, HTTP/1.1 requests, or one WebSocket."""

    __slots__ = (
        "begun",
        "body_tail",
        "client",
        "cycle",
        "fields",
        "head_bytes",
        "head_seen",
        "in_head",
        "in_message",
        "key",
        "local",
        "loop",
        "lost",
        "parser",
        "parsing",
        "queued",
        "reading",
        "refusal",
        "server",
        "stalled_until",
        "state",
        "transport",
        "until",
        "url",
        "websocket",
        "writable",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        # None once nothing more is to be parsed: upgraded, closing, or the rest ignored.
        self.parser: httptools.HttpRequestParser | None = None
        self.key: tuple[int, int] | None = None
        self.state = HEAD
        # The state's deadline, and the one a client that takes no bytes runs into.
        self.until = NEVER
        self.stalled_until = NEVER
        # The request being answered, the one being parsed (the same, or one read ahead), and
        # those read ahead waiting for their turn.
        self.cycle: Cycle | None = None
        self.parsing: Cycle | None = None
        self.queued: list[Cycle] = []
        self.websocket: WebSocket | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.reading = True
        # Set while the transport takes writes; cleared between pause_writing and resume_writing.
        self.writable: asyncio.Event | None = None
        self.lost = False
        # The head being parsed: its target, its header fields as sent, the bytes it has taken
        # (counted by the reads it came in), and those of its target and fields (counted by the
        # parser's callbacks).
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.head_seen = 0
        # The bytes at the end of the body read last that no line feed follows.
        self.body_tail = 0
        self.in_message = False
        self.in_head = False
        # Messages begun during the current `feed_data` call.
        self.begun = 0
        # The status a parser callback refused the request with (400 or 431).
        self.refusal = 0

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        guarding = self.server.guarding
        rules = guarding.rules
        if len(guarding.open) >= rules.max_connections:
            self._refuse("replica_full")
            return
        peer = transport.get_extra_info("peername")
        key = address_key(peer, rules.trusted_proxies)
        if key is not None:
            held = guarding.per_address.get(key, 0)
            if held >= rules.max_connections_per_address:
                self._refuse("address_full")
                return
            guarding.per_address[key] = held + 1
            self.key = key
        guarding.open.add(self)
        guarding.watch(self.loop)
        self.client = _address(peer)
        self.local = _address(transport.get_extra_info("sockname"))
        parser = httptools.HttpRequestParser(self)
        # Content-Length beside Transfer-Encoding is read by its chunks and the connection
        # closed after the answer (RFC 9112 section 6.1), rather than refused.
        parser.set_dangerous_leniencies(lenient_chunked_length=True)
        self.parser = parser
        self.until = self.loop.time() + rules.header_read_seconds

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSING:
            return
        if self.websocket is not None:
            self.websocket.feed(data)
            return
        parser = self.parser
        if parser is None:
            # The rest of the connection is ignored (the client asked to close after a request,
            # or it is closing).
            return
        if self.state == IDLE:
            # Any byte after an answer (a blank line too) starts the next head's clock.
            self.state = HEAD
            self.until = self.loop.time() + self.server.guarding.rules.header_read_seconds
        # A head already begun, or begun at this read's first byte, takes all of it.
        whole = not self.in_message
        self.begun = 0
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.websocket is not None:
                # What follows the upgrade request's head belongs to the WebSocket.
                rest = data[int(exc.args[0]) :]
                if rest:
                    self.websocket.feed(rest)
            elif self.parser is not None:
                # An upgrade the callbacks did not take (they stop parsing at every other).
                self._bad_request(400)
            return
        except httptools.HttpParserError as exc:
            if self.parser is not None:
                self._parse_failed(exc)
            return
        if self.in_head and self.parser is not None:
            if self.begun == 0 or (self.begun == 1 and whole):
                self.head_bytes += len(data)
            else:
                # Begun behind another request in this read, at a place the parser does not
                # tell: its lines ended in this read are counted by the callbacks, and the line
                # it is in (no line feed in it) is the end of the read after its last line feed.
                # Before a field has ended, that line may be the request line, whose target the
                # callbacks counted already, and it may follow the end of a body with no line
                # feed in it, which is not the head's.
                after = len(data) - data.rfind(b"\n") - 1
                if self.fields:
                    self.head_bytes = self.head_seen + after
                else:
                    self.head_bytes = max(self.head_seen, after - self.body_tail)
            if self.head_bytes > self.server.limits.max_header_bytes:
                self._bad_request(431)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.parser = None
        self.queued.clear()
        self._release()
        if self.cycle is not None:
            self.cycle.disconnect()
        if self.websocket is not None:
            self.websocket.lost()
        if self.writable is not None:
            self.writable.set()

    @property
    def deadline(self) -> float:
        """When the guard's sweep ends the connection (gateway/edge/guard.py)."""
        return min(self.until, self.stalled_until)

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.Event()
        self.writable.clear()
        # However long the application may work, a client must take what it is sent.
        self.stalled_until = self.loop.time() + self.server.limits.write_stall_seconds
        if self.websocket is not None:
            # What a WebSocket client sends may make writes (a pong for each ping): nothing more
            # is read from one that does not read.
            self.pause_reading()

    def resume_writing(self) -> None:
        self.stalled_until = NEVER
        if self.writable is not None:
            self.writable.set()
        if self.websocket is not None and self.websocket.wants_reading():
            self.resume_reading()

    # ------------------------------------------------------------ httptools' callbacks

    def on_message_begin(self) -> None:
        if self.parser is None:
            return
        self.begun += 1
        self.in_message = self.in_head = True
        if self.state == IDLE:
            # Begun behind an answer completed in the same read.
            self.state = HEAD
            self.until = self.loop.time() + self.server.guarding.rules.header_read_seconds
        self.url = b""
        self.fields = []
        self.head_bytes = self.head_seen = 0

    def on_url(self, url: bytes) -> None:
        if self.parser is not None:
            self.url += url
            self._seen(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # After the head, a chunked body's trailer fields: dropped.
        if self.in_head and self.parser is not None:
            self.fields.append((name, value))
            self._seen(len(name) + len(value) + FIELD_LINE_BYTES)

    def _seen(self, size: int) -> None:
        """`size` more bytes of the head were parsed: over the cap, the head is refused at once,
        whatever read they came in (one begun behind another request in the same read, whose
        share of it the read's count cannot tell, included)."""
        self.head_seen += size
        if self.head_seen > self.server.limits.max_header_bytes:
            self._stop(431)

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser is None:
            return
        self.in_head = False
        self.body_tail = 0
        method = parser.get_method()
        url = self.url
        size = len(method) + len(url) + REQUEST_LINE_BYTES + 2
        headers: list[tuple[bytes, bytes]] = []
        hosts = 0
        length = False
        codings: list[bytes] = []
        close = expect = websocket = False
        for name, value in self.fields:
            if value and value[-1] in b" \t":
                # llhttp drops the whitespace before a value, not after it.
                value = value.rstrip(b" \t")
            size += len(name) + len(value) + FIELD_LINE_BYTES
            name = name.lower()
            headers.append((name, value))
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                codings.append(value)
            elif name == b"connection":
                close = close or b"close" in _tokens(value)
            elif name == b"expect":
                expect = expect or b"100-continue" in _tokens(value)
            elif name == b"upgrade":
                websocket = websocket or value.lower() == b"websocket"
        self.fields = []
        if size > self.server.limits.max_header_bytes:
            self._stop(431)
        version = parser.get_http_version()
        if (
            version not in ("1.1", "1.0")
            or not url.startswith(b"/")
            or not url.isascii()
            # Host exactly once in HTTP/1.1, at most once in 1.0 (RFC 9112 section 3.2).
            or hosts > 1
            or (hosts == 0 and version == "1.1")
            # The one transfer coding the server reads (RFC 9112 section 6.1 allows no other
            # that ends a request's body); llhttp would take `identity, chunked`.
            or (codings and (len(codings) > 1 or codings[0].lower() != b"chunked"))
        ):
            # Only a path (origin form) of HTTP/1.x: an absolute URL, `*` (OPTIONS, CONNECT's
            # authority) or HTTP/2's preface is not a request any route of the gate's serves,
            # and browsers percent-encode every byte that is not ASCII.
            self._stop(400)
        raw_path, _, query = url.partition(b"?")
        path = raw_path.decode("ascii")
        scope: dict[str, Any] = {
            "asgi": ASGI_HTTP,
            "http_version": version,
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "root_path": "",
            "path": urllib.parse.unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
            "state": {},
        }
        if websocket and method == b"GET":
            if self.cycle is not None:
                # An upgrade pipelined behind another request: nothing more is read, and the
                # connection closes once the requests before it are answered.
                self.parser = None
                return
            scope["type"] = "websocket"
            scope["asgi"] = ASGI_WEBSOCKET
            scope["scheme"] = "ws"
            scope["subprotocols"] = _subprotocols(headers)
            scope["extensions"] = WEBSOCKET_EXTENSIONS
            self._start_websocket(scope, method, url)
            return
        upgrade = parser.should_upgrade()
        if upgrade and (length or codings or method == b"CONNECT"):
            # An upgrade to another protocol (h2c) with a body: llhttp stops at its head, so
            # the body could not be told from the next request. Browsers send none.
            self._stop(400)
        scope["type"] = "http"
        scope["method"] = method.decode("ascii")
        cycle = Cycle(self, scope, head=method == b"HEAD")
        # The connection ends with this request's answer: asked for, HTTP/1.0 (which the server
        # does not keep alive), an upgrade to a protocol it does not speak (llhttp reads
        # nothing after it), or Content-Length and Transfer-Encoding both, so that a front that
        # read it by its length cannot have smuggled a second request behind it.
        cycle.keep_alive = not (close or version == "1.0" or upgrade or (length and codings))
        cycle.expect_continue = expect and version == "1.1"
        self.parsing = cycle
        if self.cycle is None:
            self._serve(cycle)
        else:
            self.queued.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        end = body.rfind(b"\n")
        self.body_tail = len(body) - end - 1 if end >= 0 else self.body_tail + len(body)
        cycle = self.parsing
        if cycle is not None and self.parser is not None:
            cycle.received(body)

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is None or self.parser is None:
            return
        self.parsing = None
        self.in_message = False
        cycle.received_all()
        if not cycle.keep_alive or len(self.queued) >= PIPELINED_MAX:
            # Nothing after this request is read as another request.
            self.parser = None
            self.pause_reading()
        if cycle is self.cycle:
            if cycle.complete:
                # Answered before its body was read: the body is over, the next may come.
                self._next_cycle()
            else:
                self.state = APP
                self.until = NEVER

    def _stop(self, status: int) -> None:
        self.refusal = status
        raise _Refused

    # ------------------------------------------------------------ requests

    def _serve(self, cycle: Cycle) -> None:
        self.cycle = cycle
        if cycle.more_body:
            self.state = BODY
            self.until = self.loop.time() + self.server.guarding.rules.body_read_seconds
        else:
            self.state = APP
            self.until = NEVER
        refuse = self.server.refuse
        if refuse is not None and self._refused(cycle, refuse):
            return
        cycle.task = self.loop.create_task(cycle.run())

    def _refused(self, cycle: Cycle, refuse: Refuse) -> bool:
        """Whether `refuse` answered the request itself (then the application is not called)."""
        writable = self.writable
        if self.server.stopping or (writable is not None and not writable.is_set()):
            # Stopping: the application answers every request (503). A client that is not
            # taking its answers is held back by the application's path, which waits for it.
            return False
        try:
            found = refuse(cycle.scope)
        except Exception:
            log.exception("the check before the application failed; the application answers")
            return False
        if found is None:
            return False
        try:
            cycle.answer(*found)
        except RuntimeError:
            log.exception("the answer of the check before the application cannot be written")
            cycle.fail()
            return True
        if not cycle.keep_alive:
            self._close()
        elif not cycle.more_body:
            # Read whole already (pipelined): the next request's turn.
            self._next_cycle()
        # Else the rest of the body is read and dropped within the body's deadline; the next
        # request follows it (`on_message_complete`).
        return True

    def _start_websocket(self, scope: dict[str, Any], method: bytes, url: bytes) -> None:
        # Whatever follows the head belongs to the WebSocket (frames), never to the parser.
        self.parser = None
        self.in_message = False
        self.state = WEBSOCKET
        self.until = NEVER
        head = b"".join(
            [
                method,
                b" ",
                url,
                b" HTTP/1.1\r\n",
                *(name + b": " + value + b"\r\n" for name, value in scope["headers"]),
                b"\r\n",
            ]
        )
        websocket = WebSocket(self, scope, head)
        self.websocket = websocket
        websocket.task = self.loop.create_task(websocket.run())

    def answered(self, keep_alive: bool) -> None:
        """The current request's answer was written in full: next request, or close."""
        if self.lost or self.state == CLOSING:
            return
        if not keep_alive or self.server.stopping:
            # Closing: asked for (by either side, or HTTP/1.0), or stopping.
            self._close()
            return
        cycle = self.cycle
        if cycle is not None and cycle.more_body:
            # Answered before the request's body was read (a refusal): the rest of the body is
            # read and dropped, within the body's deadline; the next request follows it.
            self.resume_reading()
            return
        self._next_cycle()

    def _next_cycle(self) -> None:
        self.cycle = None
        if self.server.stopping:
            self._close()
            return
        if self.queued:
            # Pipelined: the next request was read already.
            self._serve(self.queued.pop(0))
            if not self.queued:
                self.resume_reading()
            return
        if self.parser is None:
            # Nothing more is read on this connection.
            self._close()
            return
        self.resume_reading()
        if self.in_message:
            # The next head is (partly) here already.
            self.state = HEAD
            self.until = self.loop.time() + self.server.guarding.rules.header_read_seconds
        else:
            self.state = IDLE
            self.until = self.loop.time() + self.server.limits.keep_alive_seconds

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        status = self.refusal
        if status == 0 and isinstance(exc, httptools.HttpParserCallbackError):
            # One of the callbacks above failed: the server's fault, not the client's.
            log.error("the server failed on a request's head", exc_info=exc.__context__)
            if self.cycle is None:
                self.write(SERVER_ERROR)
            self._close()
            return
        self._bad_request(status or 400)

    # ------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if self.transport is not None and not self.lost:
            self.transport.writelines(data)

    async def drain(self) -> None:
        writable = self.writable
        if writable is not None and not writable.is_set() and not self.lost:
            await writable.wait()

    def pause_reading(self) -> None:
        transport = self.transport
        if self.reading and transport is not None and not transport.is_closing():
            self.reading = False
            transport.pause_reading()

    def resume_reading(self) -> None:
        transport = self.transport
        if self.websocket is not None and self.writable is not None and not self.writable.is_set():
            return
        if self.queued:
            # Requests read ahead wait for their answers first.
            return
        if not self.reading and transport is not None and not transport.is_closing():
            self.reading = True
            transport.resume_reading()

    # ------------------------------------------------------------ ends

    def expire(self) -> None:
        """The deadline passed (called by the guard's sweep)."""
        if self.stalled_until <= self.loop.time():
            # Took no byte of what it was sent for write_stall_seconds.
            self.server.guarding.end("write_timeout")
            self.abort()
            return
        if self.state == CLOSING:
            # A client that does not take the last bytes of its connection.
            self.abort()
            return
        if self.state == IDLE:
            # Idle after an answer: closed as any server closes a keep-alive connection.
            self._close()
            return
        if self.state == HEAD:
            self.server.guarding.end("header_timeout")
        elif self.state == BODY:
            self.server.guarding.end("body_timeout")
        self.abort()

    def shutdown(self) -> None:
        """The server is stopping: idle connections close now, busy ones after their answer."""
        if self.websocket is None and (self.cycle is None or self.state == HEAD):
            self._close()

    def abort(self) -> list[asyncio.Task[None]]:
        """Reset the connection and cancel its application task; the tasks cancelled."""
        self._release()
        self.parser = None
        current = asyncio.current_task()
        cancelled: list[asyncio.Task[None]] = []
        for task in (
            self.cycle.task if self.cycle is not None else None,
            self.websocket.task if self.websocket is not None else None,
        ):
            if task is not None and task is not current and not task.done():
                task.cancel()
                cancelled.append(task)
        if self.transport is not None:
            self.transport.abort()
        return cancelled

    def closing_handshake(self) -> None:
        """The gate closed its WebSocket: the client has CLOSE_SECONDS to answer."""
        self.until = self.loop.time() + CLOSE_SECONDS

    def _close(self) -> None:
        """Close once what is written has gone; the connection counts until then, and is reset
        if the client will not take it within CLOSE_SECONDS."""
        if self.state == CLOSING:
            return
        self.state = CLOSING
        self.parser = None
        self.queued.clear()
        self.until = self.loop.time() + CLOSE_SECONDS
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, reason: str) -> None:
        self.server.guarding.end(reason)
        assert self.transport is not None
        self.transport.abort()

    def _bad_request(self, status: int) -> None:
        self.parser = None
        self.server.guarding.end("header_too_large" if status == 431 else "bad_request")
        cycle = self.parsing
        if self.cycle is not None and cycle is not self.cycle:
            # A request behind the one being answered went bad: it is dropped, the ones before
            # it are answered, then the connection closes (an answer now would come before
            # theirs).
            if cycle is not None and self.queued and self.queued[-1] is cycle:
                self.queued.pop()
            return
        if cycle is not None:
            # The request being read went bad (its body's framing): the application is told the
            # client has gone; the answer it may have started cannot be followed by another.
            cycle.disconnect()
            if cycle.started:
                self.abort()
                return
        self.write(TOO_LARGE if status == 431 else BAD_REQUEST)
        self._close()

    def _release_address(self) -> None:
        guarding = self.server.guarding
        if self.key is not None:
            held = guarding.per_address.get(self.key, 0) - 1
            if held > 0:
                guarding.per_address[self.key] = held
            else:
                guarding.per_address.pop(self.key, None)
            self.key = None

    def _release(self) -> None:
        self._release_address()
        self.server.guarding.open.discard(self)
        self.until = NEVER
        self.server.released()


class Cycle:
    """One HTTP request and its answer: the ASGI call's `receive` and `send`."""

    __slots__ = (
        "body",
        "chunked",
        "complete",
        "connection",
        "disconnected",
        "ended_body",
        "expect_continue",
        "head",
        "keep_alive",
        "length",
        "more_body",
        "no_body",
        "pending",
        "scope",
        "sent",
        "started",
        "task",
        "wake",
    )

    def __init__(self, connection: Connection, scope: dict[str, Any], *, head: bool) -> None:
        self.connection = connection
        self.scope = scope
        self.head = head
        self.task: asyncio.Task[None] | None = None
        self.body = bytearray()
        self.more_body = True
        # Whether `receive` has returned the body's last part.
        self.ended_body = False
        self.disconnected = False
        self.started = False
        self.complete = False
        self.keep_alive = True
        # The client holds its body back until it is told to send it (`Expect: 100-continue`).
        self.expect_continue = False
        # The response's head, written with the first part of its body.
        self.pending = b""
        # The response's framing: its declared length (None: chunked or close-delimited),
        # whether it is chunked, whether it has no body at all, and the body bytes sent.
        self.length: int | None = None
        self.chunked = False
        self.no_body = False
        self.sent = 0
        self.wake: asyncio.Event | None = None

    # ------------------------------------------------------------ from the connection

    def received(self, data: bytes) -> None:
        self.expect_continue = False
        if self.complete:
            # Answered already: what is left of the body is dropped.
            return
        self.body += data
        if len(self.body) > BODY_BUFFER_BYTES:
            self.connection.pause_reading()
        self._wake()

    def received_all(self) -> None:
        self.more_body = False
        self.expect_continue = False
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        if self.wake is not None:
            self.wake.set()

    # ------------------------------------------------------------ the ASGI call

    async def run(self) -> None:
        connection = self.connection
        try:
            await connection.server.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # Ended by the stop's deadline or a second stop signal.
            self._abort()
            return
        except Exception:
            log.exception("the application failed on a request")
            if not self.started:
                self.fail()
            elif not self.complete:
                self._abort()
            # Complete: the answer went out whole (a background task failed after it); the
            # connection goes on with its next request.
            return
        if not self.started:
            log.error("the application returned without answering a request")
            self.fail()
        elif not self.complete and not self.disconnected:
            log.error("the application returned before its answer was complete")
            self._abort()

    def _abort(self) -> None:
        # Only while this request is the connection's: a later one must not pay for it.
        if self.connection.cycle is self:
            self.connection.abort()

    def fail(self) -> None:
        """Answer 500 in place of an answer that was never begun (the application's, or the
        refusal's that cannot be written), and close the connection."""
        self.started = self.complete = True
        if self.connection.cycle is self:
            self.connection.write(SERVER_ERROR)
            self.connection._close()

    async def receive(self) -> Message:
        connection = self.connection
        if self.expect_continue and not self.started:
            self.expect_continue = False
            connection.write(CONTINUE)
        while True:
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self.ended_body):
                body = bytes(self.body)
                self.body.clear()
                self.ended_body = not self.more_body
                connection.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            connection.resume_reading()
            if self.wake is None:
                self.wake = asyncio.Event()
            self.wake.clear()
            await self.wake.wait()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.disconnected:
            return
        connection = self.connection
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind!r}")
            self.pending = self._head(message["status"], message.get("headers", ()))
            self.started = True
            return
        if self.complete:
            raise RuntimeError(f"the response is complete; got {kind!r}")
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {kind!r}")
        more = message.get("more_body", False)
        out = self._framed(message.get("body", b""), more)
        if len(out) == 1:
            connection.write(out[0])
        elif out:
            if sum(map(len, out)) <= JOINED_WRITE_BYTES:
                connection.write(b"".join(out))
            else:
                connection.writelines(out)
        # A client that does not read holds its answer here, and no next request of its is
        # read meanwhile (pipelined requests cannot pile answers up in the write buffer).
        await connection.drain()
        if not more:
            self._wake()
            connection.answered(self.keep_alive)

    def answer(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
        """Answer at once, without the application (`HttpServer.refuse`); framed as its answer
        would be. RuntimeError, before anything is written, for an answer that cannot be."""
        head = self._head(status, headers)
        self.started = True
        self.pending = head
        self.connection.write(b"".join(self._framed(body, False)))

    def _framed(self, body: bytes, more: bool) -> list[bytes]:
        """What goes on the wire for a part of the body: the head first if it has not gone yet,
        the part framed as the response's head said. RuntimeError for a part over the declared
        length, or a last part short of it."""
        out = [self.pending] if self.pending else []
        if self.no_body:
            pass
        elif self.length is not None:
            sent = self.sent + len(body)
            # Nothing of a body that does not match its declared length is written: a client
            # must never take a truncated body for a whole one, nor extra bytes for an answer.
            if sent > self.length:
                raise RuntimeError("the response's body is longer than its content-length")
            if not more and sent < self.length:
                raise RuntimeError("the response's body is shorter than its content-length")
            self.sent = sent
            if body:
                out.append(body)
        elif self.chunked:
            if body:
                out += [b"%x\r\n" % len(body), body, b"\r\n"]
            if not more:
                out.append(LAST_CHUNK)
        elif body:
            out.append(body)
        self.pending = b""
        if not more:
            self.complete = True
        return out

    def _head(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The response's head, its framing chosen as RFC 9112 section 6 says; RuntimeError for
        a status or a header field that cannot be written."""
        connection = self.connection
        server = connection.server
        version = self.scope["http_version"]
        lines, length, chunked, close, dated = _fields(headers)
        keep_alive = (
            self.keep_alive
            and not close
            and not server.stopping
            # A client that holds its body back until told to send it: what it sends next
            # cannot be told apart from the next request.
            and not self.expect_continue
        )
        if status in (204, 304):
            self.no_body = True
            if status == 304 and length is not None:
                # The length a GET would have had (RFC 9110 section 8.6); never on a 204.
                lines.append(b"content-length: %d\r\n" % length)
        else:
            self.no_body = self.head
            if chunked or length is None:
                if version == "1.1":
                    # No length declared: chunked.
                    self.chunked = not self.head
                    lines.append(b"transfer-encoding: chunked\r\n")
                elif not self.head:
                    # HTTP/1.0 knows no chunks: the body ends with the connection.
                    keep_alive = False
            else:
                self.length = length
                lines.append(b"content-length: %d\r\n" % length)
        if not dated:
            lines.append(server.clock.date())
        if not keep_alive:
            self.keep_alive = False
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return _status_line(status) + b"".join(lines)


class WebSocket:
    """One WebSocket: the ASGI call's `receive` and `send`, frames through websockets."""

    __slots__ = (
        "accepted",
        "close_received",
        "close_sent",
        "closed_by_app",
        "connected",
        "connection",
        "done",
        "fragment_count",
        "fragment_text",
        "fragments",
        "head",
        "pending",
        "protocol",
        "queue",
        "refusal_body",
        "refusing",
        "scope",
        "task",
        "wake",
    )

    def __init__(self, connection: Connection, scope: dict[str, Any], head: bytes) -> None:
        self.connection = connection
        self.scope = scope
        self.head = head
        self.task: asyncio.Task[None] | None = None
        # websockets' protocol for the frames, once the handshake is done.
        self.protocol: Protocol | None = None
        # What the client sent before the handshake was answered.
        self.pending = bytearray()
        self.connected = False
        self.accepted = False
        # A denial response being sent (websocket.http.response.*): its status and headers.
        self.refusing: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.refusal_body: list[bytes] = []
        # Ended: closed both ways, refused, or the connection lost.
        self.done = False
        self.closed_by_app = False
        # The close frames received and sent by the application.
        self.close_received: Close | None = None
        self.close_sent: Close | None = None
        # A list, not a deque: it stays short (QUEUE_HIGH), and an empty deque costs 600 bytes
        # on each of thousands of idle sockets.
        self.queue: list[Message] = []
        # Awaited by `receive` while the queue is empty.
        self.wake: asyncio.Future[None] | None = None
        self.fragments = bytearray()
        self.fragment_count = 0
        self.fragment_text = False

    # ------------------------------------------------------------ the ASGI call

    async def run(self) -> None:
        connection = self.connection
        try:
            await connection.server.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            connection.abort()
            return
        except Exception:
            log.exception("the application failed on a WebSocket")
            code = 1011
        else:
            code = 1000
        if not self.accepted and not self.done:
            # Neither accepted nor refused (or a refusal begun and left): refused here.
            connection.write(SERVER_ERROR)
            connection._close()
            self.done = True
        elif self.accepted and not self.done and not self.closed_by_app:
            self._close_frame(code, "")

    async def receive(self) -> Message:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while not self.queue:
            if self.done:
                return self._disconnect_message()
            self.wake = self.connection.loop.create_future()
            await self.wake
        message = self.queue.pop(0)
        if len(self.queue) <= QUEUE_LOW:
            self.connection.resume_reading()
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        connection = self.connection
        if self.accepted:
            if self.done or self.closed_by_app or connection.lost:
                raise ClientDisconnected("the WebSocket has ended")
            protocol = self.protocol
            assert protocol is not None
            if kind == "websocket.send":
                text = message.get("text")
                if text is not None:
                    protocol.send_text(text.encode())
                else:
                    protocol.send_binary(message.get("bytes") or b"")
                self._flush()
                await connection.drain()
            elif kind == "websocket.close":
                self._close_frame(message.get("code") or 1000, message.get("reason") or "")
            else:
                raise RuntimeError(f"unexpected {kind!r} on an open WebSocket")
            return
        if self.done:
            raise ClientDisconnected("the WebSocket has ended")
        if self.refusing is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"expected websocket.http.response.body, got {kind!r}")
            self.refusal_body.append(message.get("body", b""))
            if not message.get("more_body", False):
                status, headers = self.refusing
                self._refuse(status, headers, b"".join(self.refusal_body))
            return
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            # Closed before it was accepted: refused with 403 (the ASGI specification).
            self._refuse(403, [], b"")
        elif kind == "websocket.http.response.start":
            self.refusing = (message["status"], list(message.get("headers", ())))
        else:
            raise RuntimeError(f"unexpected {kind!r} before the WebSocket was accepted")

    def _accept(self, message: Message) -> None:
        connection = self.connection
        subprotocol = message.get("subprotocol")
        protocol = ServerProtocol(
            subprotocols=[subprotocol] if subprotocol else None,
            max_size=connection.server.limits.max_websocket_message_bytes,
        )
        protocol.receive_data(self.head)
        request = next(
            (event for event in protocol.events_received() if isinstance(event, HandshakeRequest)),
            None,
        )
        if request is None:
            # websockets could not read the head the server took (a line over its own limits).
            self._end_handshake(protocol)
            return
        response = protocol.accept(request)
        if response.status_code != 101:
            # Not a valid WebSocket handshake (no key, wrong version…): websockets' answer.
            protocol.send_response(response)
            self._end_handshake(protocol)
            return
        for name, value in message.get("headers", ()):
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        try:
            protocol.send_response(response)
        except InvalidHandshake:
            self._end_handshake(protocol)
            return
        for data in protocol.data_to_send():
            connection.write(data)
        # The frames go through a protocol of their own: the handshake's parser would keep the
        # request (its headers, 2-3 KB) for as long as the connection lasts.
        self.protocol = Protocol(
            Side.SERVER, max_size=connection.server.limits.max_websocket_message_bytes
        )
        self.accepted = True
        self.head = b""
        # An open WebSocket is kept only for an admitted attendee: it stops counting toward its
        # address's cap (it still counts toward the replica's), and a peer gone without a word is
        # noticed by TCP keepalive.
        connection._release_address()
        _keep_alive(connection.transport)
        self._flush()
        if self.pending:
            pending = bytes(self.pending)
            self.pending.clear()
            self.feed(pending)

    def _end_handshake(self, protocol: ServerProtocol) -> None:
        for data in protocol.data_to_send():
            self.connection.write(data)
        self.connection._close()
        self.done = True
        self._wake()

    def _refuse(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        connection = self.connection
        # Framed as the answer to a GET; the application's framing fields are replaced.
        lines, _, _, _, dated = _fields(headers)
        if not dated:
            lines.append(connection.server.clock.date())
        lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        connection.write(_status_line(status) + b"".join(lines) + body)
        connection._close()
        self.done = True
        self._wake()

    def _close_frame(self, code: int, reason: str) -> None:
        protocol = self.protocol
        assert protocol is not None
        if protocol.state is State.OPEN:
            try:
                protocol.send_close(code, reason)
                self.close_sent = Close(code, reason)
            except (ProtocolError, ValueError):
                # A code the protocol does not allow on the wire (1005, 1006, 1016-2999...) or
                # a reason over 123 bytes: the close says only that something went wrong.
                protocol.send_close(1011, "")
                self.close_sent = Close(1011, "")
            self._flush()
        self.closed_by_app = True
        self.connection.closing_handshake()

    # ------------------------------------------------------------ from the connection

    def feed(self, data: bytes) -> None:
        if self.protocol is None:
            # A client sends nothing before the handshake is answered; a little is kept.
            self.pending += data
            if len(self.pending) > BODY_BUFFER_BYTES:
                self.connection.pause_reading()
            return
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._on_frame(event)
        self._flush()
        if not self.done and (
            self.close_received is not None
            or protocol.state is State.CLOSED
            # websockets failed the connection (a protocol error, a message over the cap).
            or (protocol.state is not State.OPEN and not self.closed_by_app)
        ):
            self.done = True
            self._wake()
        if len(self.queue) > QUEUE_HIGH:
            self.connection.pause_reading()

    def wants_reading(self) -> bool:
        """Whether reading may go on: the application keeps up with what was read."""
        return len(self.queue) <= QUEUE_LOW and len(self.pending) <= BODY_BUFFER_BYTES

    def lost(self) -> None:
        self.done = True
        self._wake()

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self.fragments = bytearray(frame.data)
            self.fragment_count = 1
            self.fragment_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CLOSE:
            # websockets has answered it; what it said is kept for the application.
            # One websockets refused has failed the connection: what it sent is reported.
            with contextlib.suppress(ProtocolError, ValueError):
                self.close_received = Close.parse(frame.data)
            return
        elif opcode is Opcode.CONT:
            self.fragments += frame.data
            self.fragment_count += 1
            if self.fragment_count > MAX_FRAGMENTS:
                # Empty fragments cost nothing against the size cap, but each costs a parse.
                assert self.protocol is not None
                self.protocol.fail(1009, "too many fragments")
                return
        else:
            return
        if not frame.fin:
            return
        data = bytes(self.fragments)
        self.fragments = bytearray()
        if self.fragment_text:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                assert self.protocol is not None
                self.protocol.fail(1007, "invalid UTF-8")
                return
            self.queue.append({"type": "websocket.receive", "text": text})
        else:
            self.queue.append({"type": "websocket.receive", "bytes": data})
        self._wake()

    def _flush(self) -> None:
        protocol = self.protocol
        assert protocol is not None
        for data in protocol.data_to_send():
            if data:
                self.connection.write(data)
            else:
                # The end of the closing handshake: websockets is done with the connection.
                self.connection._close()

    def _disconnect_message(self) -> Message:
        close = self.close_received or self.close_sent
        if close is None and self.protocol is not None and self.protocol.state is not State.OPEN:
            # Closed by websockets itself (a protocol error, a message over the cap): the close
            # frame it sent. (Its close_exc would say the same, but only once the connection is
            # closed: asked while closing, it raised in the application's receive.)
            close = self.protocol.close_sent
        if close is None:
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        return {"type": "websocket.disconnect", "code": int(close.code), "reason": close.reason}

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


def _keep_alive(transport: asyncio.BaseTransport | None) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


def _status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>` with its CR LF; RuntimeError for a status a response cannot
    have (an informational one included: only the server sends those)."""
    line = STATUS_LINES.get(status)
    if line is None:
        if type(status) is not int or not 200 <= status < 1000:
            raise RuntimeError(f"a response cannot have the status {status!r}")
        line = b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))
        STATUS_LINES[status] = line
    return line


def _reason(status: int) -> bytes:
    """The status's reason phrase (empty for a status HTTP does not name)."""
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _fields(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[list[bytes], int | None, bool, bool, bool]:
    """The application's response header fields as lines, less those that frame the response;
    with the length it declared, whether it asked for chunks, whether it asked to close, and
    whether it gave a date. RuntimeError for a field that cannot be written as it is (a name
    that is not a token, a value with CR, LF or NUL in it: an injected header or response)."""
    lines: list[bytes] = []
    length: int | None = None
    chunked = close = dated = False
    for name, value in headers:
        if FIELD_NAME.fullmatch(name) is None or FIELD_VALUE.fullmatch(value) is None:
            raise RuntimeError("a response header field that cannot be written")
        lower = name.lower()
        if lower in FRAMING:
            if lower == b"content-length":
                for part in value.split(b","):
                    part = part.strip()
                    if not part.isdigit() or len(part) > CONTENT_LENGTH_DIGITS:
                        raise RuntimeError("a response content-length that is not a number")
                    if length is not None and int(part) != length:
                        raise RuntimeError("conflicting response content-lengths")
                    length = int(part)
            elif lower == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise RuntimeError("a response transfer-encoding other than chunked")
                chunked = True
            else:
                close = close or b"close" in _tokens(value)
            continue
        if lower == b"date":
            dated = True
        lines.append(name + b": " + value + b"\r\n")
    return lines, length, chunked, close, dated


def _tokens(value: bytes) -> list[bytes]:
    """A comma-separated header value's elements, lowercased."""
    return [token.strip() for token in value.lower().split(b",")]


def _address(found: Any) -> tuple[str, int] | None:
    if isinstance(found, tuple) and len(found) >= 2:
        return (str(found[0]), int(found[1]))
    return None


def _subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    found: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            found += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return found
