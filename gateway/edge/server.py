"""Meetgate's own HTTP/1.1 and WebSocket server for ASGI applications.

Why not an off-the-shelf server: the gate must end slow and greedy clients before they reach the
application (gateway/edge/guard.py) and stop in its own order (gateway/serving.py), and no
server offered either through a public interface (docs/design/http-server.md). So the wire is
parsed here, with documented libraries only:

- **HTTP/1.1 through h11**, the sans-I/O parser: it caps the request head
  (`max_header_bytes`, answered 431), validates every header it reads or is given to write,
  keeps a chunked body's trailer fields out of the headers and frames responses (content-length,
  chunked, or close-delimited for HTTP/1.0).
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
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import socket
import time
import urllib.parse
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import h11
from starlette.types import ASGIApp, Message
from websockets.exceptions import InvalidHandshake, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request as HandshakeRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway.edge.guard import NEVER, Guarding, address_key

log = logging.getLogger("meetgate.server")

# The listen backlog (what uvicorn used).
BACKLOG = 2048
# A request body buffered beyond this while the application does not read it pauses reading.
BODY_BUFFER_BYTES = 64 * 1024
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

ASGI_HTTP = {"version": "3.0", "spec_version": "2.3"}
ASGI_WEBSOCKET = {"version": "3.0", "spec_version": "2.4"}
WEBSOCKET_EXTENSIONS: dict[str, dict[str, Any]] = {"websocket.http.response": {}}
# Reason phrases by status, as they are first used.
REASONS: dict[int, bytes] = {}


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
    """The `date` header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode()
        return self._value


class HttpServer:
    """One ASGI application served on listening sockets, under one set of guard rules."""

    def __init__(self, app: ASGIApp, *, guarding: Guarding, limits: ServerLimits) -> None:
        self.app = app
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
        loop = asyncio.get_running_loop()
        self.stopping = True
        self._emptied = asyncio.Event()
        for connection in list(self.guarding.open):
            connection.shutdown()
        self.released()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._emptied.wait(), max(deadline - loop.time(), 0.0))
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
        "client",
        "cycle",
        "h11",
        "key",
        "local",
        "loop",
        "lost",
        "reading",
        "server",
        "stalled_until",
        "state",
        "transport",
        "until",
        "websocket",
        "writable",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.h11: h11.Connection | None = None
        self.key: tuple[int, int] | None = None
        self.state = HEAD
        # The state's deadline, and the one a client that takes no bytes runs into.
        self.until = NEVER
        self.stalled_until = NEVER
        self.cycle: Cycle | None = None
        self.websocket: WebSocket | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.reading = True
        # Set while the transport takes writes; cleared between pause_writing and resume_writing.
        self.writable: asyncio.Event | None = None
        self.lost = False

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
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.server.limits.max_header_bytes
        )
        self.until = self.loop.time() + rules.header_read_seconds

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSING:
            return
        if self.websocket is not None:
            self.websocket.feed(data)
            return
        if self.h11 is None:
            return
        if self.state == IDLE:
            # Any byte after an answer (a blank line too) starts the next head's clock.
            self.state = HEAD
            self.until = self.loop.time() + self.server.guarding.rules.header_read_seconds
        self.h11.receive_data(data)
        self._next_events()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
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

    # ------------------------------------------------------------ reading requests

    def _next_events(self) -> None:
        conn = self.h11
        transport = self.transport
        while conn is not None and transport is not None and not transport.is_closing():
            if conn.their_state is h11.MUST_CLOSE:
                # The client asked to close after this request: what it sent after it is
                # ignored, never read as another request.
                self.pause_reading()
                return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc.error_status_hint)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                # The next request waits until this one is answered (pipelining).
                self.pause_reading()
                return
            kind = type(event)
            if kind is h11.Data:
                assert self.cycle is not None
                self.cycle.received(cast(h11.Data, event).data)
            elif kind is h11.Request:
                self._on_request(cast(h11.Request, event))
                if self.websocket is not None:
                    return
            elif kind is h11.EndOfMessage:
                cycle = self.cycle
                assert cycle is not None
                cycle.received_all()
                if cycle.complete:
                    # Answered before its body was read: the body is over, the next may come.
                    self._next_cycle()
                else:
                    self.state = APP
                    self.until = NEVER
            elif kind is h11.ConnectionClosed:
                self._close()
                return

    def _on_request(self, event: h11.Request) -> None:
        raw_path, _, query = event.target.partition(b"?")
        if (
            not raw_path.startswith(b"/")
            or not raw_path.isascii()
            or event.http_version not in (b"1.1", b"1.0")
        ):
            # Only a path (origin form) of HTTP/1.x: an absolute URL, `*` (OPTIONS, CONNECT's
            # authority) or HTTP/2's preface is not a request any route of the gate's serves,
            # and browsers percent-encode every byte that is not ASCII.
            self._bad_request(400)
            return
        headers = list(event.headers)
        scope: dict[str, Any] = {
            "asgi": ASGI_HTTP,
            "http_version": event.http_version.decode("ascii"),
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "root_path": "",
            "path": urllib.parse.unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
            "state": {},
        }
        if _is_websocket(event.method, headers):
            scope["type"] = "websocket"
            scope["asgi"] = ASGI_WEBSOCKET
            scope["scheme"] = "ws"
            scope["subprotocols"] = _subprotocols(headers)
            scope["extensions"] = WEBSOCKET_EXTENSIONS
            self._start_websocket(scope, event)
            return
        scope["type"] = "http"
        scope["method"] = event.method.decode("ascii")
        self.state = BODY
        self.until = self.loop.time() + self.server.guarding.rules.body_read_seconds
        cycle = Cycle(self, scope, head=event.method == b"HEAD")
        if _framed_twice(headers):
            # Content-Length and Transfer-Encoding both: read by its chunks, and the connection
            # closed after the answer (RFC 9112 section 6.1), so that a front that read it by
            # its length cannot have smuggled a second request behind it.
            cycle.keep_alive = False
        self.cycle = cycle
        cycle.task = self.loop.create_task(cycle.run())

    def _start_websocket(self, scope: dict[str, Any], event: h11.Request) -> None:
        assert self.h11 is not None
        pending, _ = self.h11.trailing_data
        # Whatever follows the head belongs to the WebSocket (frames), never to h11.
        self.h11 = None
        self.state = WEBSOCKET
        self.until = NEVER
        head = b"".join(
            [
                b"GET ",
                event.target,
                b" HTTP/1.1\r\n",
                *(name + b": " + value + b"\r\n" for name, value in event.headers.raw_items()),
                b"\r\n",
            ]
        )
        websocket = WebSocket(self, scope, head)
        self.websocket = websocket
        websocket.task = self.loop.create_task(websocket.run())
        if pending:
            websocket.feed(pending)

    def answered(self, keep_alive: bool) -> None:
        """The current request's answer was written in full: next request, or close."""
        conn = self.h11
        if conn is None or self.lost:
            return
        if not keep_alive or self.server.stopping or conn.our_state is not h11.DONE:
            # Closing: asked for (by either side, or HTTP/1.0), or stopping.
            self._close()
            return
        if conn.their_state is not h11.DONE:
            # Answered before the request's body was read (a refusal): the rest of the body is
            # read and dropped, within the body's deadline; the next request follows it.
            self.resume_reading()
            return
        self._next_cycle()
        if conn.trailing_data[0]:
            self._next_events()

    def _next_cycle(self) -> None:
        conn = self.h11
        assert conn is not None
        self.cycle = None
        if self.server.stopping:
            self._close()
            return
        conn.start_next_cycle()
        self.resume_reading()
        if conn.trailing_data[0]:
            # Pipelined: the next head is (partly) here already.
            self.state = HEAD
            self.until = self.loop.time() + self.server.guarding.rules.header_read_seconds
        else:
            self.state = IDLE
            self.until = self.loop.time() + self.server.limits.keep_alive_seconds

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
        self.until = self.loop.time() + CLOSE_SECONDS
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, reason: str) -> None:
        self.server.guarding.end(reason)
        assert self.transport is not None
        self.transport.abort()

    def _bad_request(self, status: int) -> None:
        cycle = self.cycle
        if cycle is not None:
            # The request being read went bad (its body's framing): the application is told the
            # client has gone; the answer it may have started cannot be followed by another.
            cycle.disconnect()
            if cycle.started:
                self.abort()
                return
        self.server.guarding.end("header_too_large" if status == 431 else "bad_request")
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
        "complete",
        "connection",
        "disconnected",
        "ended_body",
        "head",
        "keep_alive",
        "more_body",
        "pending",
        "scope",
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
        # The response's head, written with the first part of its body.
        self.pending: list[bytes] = []
        self.wake: asyncio.Event | None = None

    # ------------------------------------------------------------ from the connection

    def received(self, data: bytes) -> None:
        if self.complete:
            # Answered already: what is left of the body is dropped.
            return
        self.body += data
        if len(self.body) > BODY_BUFFER_BYTES:
            self.connection.pause_reading()
        self._wake()

    def received_all(self) -> None:
        self.more_body = False
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
                self._fail()
            elif not self.complete:
                self._abort()
            # Complete: the answer went out whole (a background task failed after it); the
            # connection goes on with its next request.
            return
        if not self.started:
            log.error("the application returned without answering a request")
            self._fail()
        elif not self.complete and not self.disconnected:
            log.error("the application returned before its answer was complete")
            self._abort()

    def _abort(self) -> None:
        # Only while this request is the connection's: a later one must not pay for it.
        if self.connection.cycle is self:
            self.connection.abort()

    def _fail(self) -> None:
        self.started = self.complete = True
        if self.connection.cycle is self:
            self.connection.write(SERVER_ERROR)
            self.connection._close()

    async def receive(self) -> Message:
        connection = self.connection
        conn = connection.h11
        if not self.started and conn is not None and conn.they_are_waiting_for_100_continue:
            connection.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
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
        conn = connection.h11
        assert conn is not None
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind!r}")
            self.started = True
            headers = list(message.get("headers", ()))
            if not any(name.lower() == b"date" for name, _ in headers):
                headers.append((b"date", connection.server.clock.date()))
            if (
                not self.keep_alive
                or connection.server.stopping
                or conn.they_are_waiting_for_100_continue
            ):
                # The connection ends with this answer: a request framed twice, stopping, or a
                # client that holds its body back until told to send it (what it sends next
                # cannot be told apart from the next request).
                self.keep_alive = False
                headers.append((b"connection", b"close"))
            status = message["status"]
            self.pending = (
                conn.send_with_data_passthrough(
                    h11.Response(status_code=status, headers=headers, reason=_reason(status))
                )
                or []
            )
            return
        if self.complete:
            raise RuntimeError(f"the response is complete; got {kind!r}")
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {kind!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        out = self.pending
        self.pending = []
        if body and not self.head:
            out += conn.send_with_data_passthrough(h11.Data(data=body)) or []
        if not more:
            out += conn.send_with_data_passthrough(h11.EndOfMessage()) or []
            # Only once h11 has framed it whole (a body short of its length raises above).
            self.complete = True
        if out:
            connection.writelines(out)
        # A client that does not read holds its answer here, and no next request of its is
        # read meanwhile (pipelined requests cannot pile answers up in the write buffer).
        await connection.drain()
        if not more:
            self._wake()
            connection.answered(self.keep_alive)


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
        self.protocol: ServerProtocol | None = None
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
        self.queue: deque[Message] = deque()
        self.wake: asyncio.Event | None = None
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
            if self.wake is None:
                self.wake = asyncio.Event()
            self.wake.clear()
            await self.wake.wait()
        message = self.queue.popleft()
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
            # websockets could not read the head h11 took (a line over its own limits).
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
        self.protocol = protocol
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
        conn = h11.Connection(h11.SERVER)
        # A throwaway h11 connection frames and checks the refusal: told it answers a GET.
        conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        conn.next_event()
        headers = [
            (name, value)
            for name, value in headers
            if name.lower() not in (b"content-length", b"connection", b"transfer-encoding")
        ]
        if not any(name.lower() == b"date" for name, _ in headers):
            headers.append((b"date", connection.server.clock.date()))
        headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        out = conn.send_with_data_passthrough(
            h11.Response(status_code=status, headers=headers, reason=_reason(status))
        )
        out = out or []
        if body:
            out += conn.send_with_data_passthrough(h11.Data(data=body)) or []
        out += conn.send_with_data_passthrough(h11.EndOfMessage()) or []
        connection.writelines(out)
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
            # frame it sent, as its documented ConnectionClosed carries it.
            close = self.protocol.close_exc.sent
        if close is None:
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        return {"type": "websocket.disconnect", "code": int(close.code), "reason": close.reason}

    def _wake(self) -> None:
        if self.wake is not None:
            self.wake.set()


def _keep_alive(transport: asyncio.BaseTransport | None) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


def _reason(status: int) -> bytes:
    """The status's reason phrase (empty for a status HTTP does not name)."""
    found = REASONS.get(status)
    if found is None:
        try:
            found = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            found = b""
        REASONS[status] = found
    return found


def _address(found: Any) -> tuple[str, int] | None:
    if isinstance(found, tuple) and len(found) >= 2:
        return (str(found[0]), int(found[1]))
    return None


def _framed_twice(headers: list[tuple[bytes, bytes]]) -> bool:
    # One pass, no set: this runs on every request.
    length = coding = False
    for name, _ in headers:
        if name == b"content-length":
            length = True
        elif name == b"transfer-encoding":
            coding = True
    return length and coding


def _is_websocket(method: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    if method != b"GET":
        return False
    return any(name == b"upgrade" and value.lower() == b"websocket" for name, value in headers)


def _subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    found: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            found += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return found
