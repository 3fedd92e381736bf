"""Relays one WebSocket between the browser and the upstream, both ways, until either side ends.

A relayed signalling socket can be cut by the gate (revocation, or a newer session of the same
admission): it first ends the XMPP stream toward prosody with an RFC 7395 `<close/>`, so prosody
drops the session at once instead of keeping it for stream resumption.

A replica that stops hands its sockets over instead (`hand_over`): the browser's stream is ended
with a `<close/>`, prosody's only with a WebSocket close, so prosody keeps the session for
resumption and the browser resumes it through another replica at once.

The upstream half is websockets' sans-I/O protocol on the event loop's own transport (an
`asyncio.Protocol`, as Meetgate's server runs the browser's half), so that an idle relayed socket
costs little memory: no task of its own (the ASGI call's task reads the browser; what the upstream
sends is delivered by a task that lives only while there is something to deliver), a keepalive
that is a timer, and nothing kept from the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from starlette.types import Message, Receive, Scope, Send
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol, Side, State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from gateway.errors import UpstreamUnreachable
from gateway.proxy.guarded import GuardedWire
from gateway.proxy.wire_guard import Forward, Refuse, Verdict

log = logging.getLogger("meetgate.proxy")

XMPP_CLOSE = '<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>'
# 4000-4999 are free for applications; the browser sees why it was cut.
CLOSE_REVOKED = 4403
# RFC 6455 "going away": the server is stopping.
CLOSE_GOING_AWAY = 1001
# A socket closed for breaking the WebSocket protocol (RFC 6455 §7.4.1: a protocol error, a text
# frame that is not UTF-8, a message over the cap), which the gate's server answers so: under
# the wire guard its XMPP session ends with it, as one ended for input no client sends.
PROTOCOL_BROKEN = frozenset({1002, 1007, 1009})
# Close codes the wire does not carry (RFC 6455 7.4.1): the upstream went away abnormally, and
# the browser is told 1011.
UNSENDABLE_CLOSE_CODES = (1005, 1006, 1015)
# How long a closing handshake with the upstream may take before its connection is dropped.
CLOSE_TIMEOUT_SECONDS = 2.0
# The upstream is pinged this often; one that has not answered by the next ping is dead.
PING_INTERVAL_SECONDS = 20.0
# Messages from the upstream not yet taken by the browser: above HIGH the upstream is not read
# until they are down to LOW.
OUTBOX_HIGH = 16
OUTBOX_LOW = 4
# The upstream's answer to the handshake (a 101 has no body).
MAX_HANDSHAKE_BYTES = 16 * 1024


def requested_subprotocols(scope: Scope) -> list[Subprotocol]:
    return [Subprotocol(p) for p in scope.get("subprotocols", [])]


class HandshakeRefused(Exception):
    """The upstream did not accept the WebSocket (another status, or an invalid 101)."""


class UpstreamSocket(asyncio.Protocol):
    """The upstream half of a relayed WebSocket.

    The handshake runs on a `ClientProtocol` that is dropped once it is done (its parser would
    keep the response's headers for the connection's life); frames then go through a plain
    client-side `Protocol`. Messages are handed to the browser with the ASGI `send` given to
    `deliver_to`, in order, by a task that ends when none is left; what arrives before that
    waits in the outbox.
    """

    __slots__ = (
        "_closed",
        "_delivering",
        "_ended",
        "_fragment_text",
        "_fragments",
        "_frames",
        "_handshake",
        "_head",
        "_loop",
        "_lost",
        "_max_size",
        "_opened",
        "_outbox",
        "_pinging",
        "_reading_paused",
        "_send",
        "_timer",
        "_transport",
        "_writable",
        "silenced",
        "subprotocol",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, max_size: int) -> None:
        self._loop = loop
        self._max_size = max_size
        self._transport: asyncio.Transport | None = None
        self._handshake: ClientProtocol | None = None
        self._head: bytearray | None = bytearray()
        self._opened: asyncio.Future[None] | None = loop.create_future()
        self._frames: Protocol | None = None
        self.subprotocol: Subprotocol | None = None
        self._fragments: bytearray | None = None
        self._fragment_text = False
        # Messages for the browser not yet sent (None: none), and the task sending them.
        self._outbox: list[Message] | None = None
        self._send: Send | None = None
        self._delivering: asyncio.Task[None] | None = None
        # Set once nothing more may reach the browser (cut, handed over, or gone).
        self.silenced = False
        # The upstream's end was told to the browser (queued in the outbox).
        self._ended = False
        self._reading_paused = False
        # Set while the transport takes no more writes (between pause and resume_writing).
        self._writable: asyncio.Future[None] | None = None
        self._pinging = False
        # The keepalive's next ping while open; the deadline of a closing handshake after.
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False
        # Waited on by `close` until the connection is gone.
        self._closed: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ opening

    async def handshake(self, protocol: ClientProtocol) -> None:
        """Send `protocol`'s handshake request; return once the upstream accepted it."""
        assert self._transport is not None and self._opened is not None
        self._handshake = protocol
        for data in protocol.data_to_send():
            self._transport.write(data)
        await self._opened

    def _handshake_data(self, data: bytes) -> None:
        assert self._head is not None
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HANDSHAKE_BYTES:
                self._refused(HandshakeRefused("the upstream's answer has no end"))
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        self._head = None
        status = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            # Another answer than the upgrade (websockets would wait for its body first).
            self._refused(HandshakeRefused(f"the upstream answered {status[1:2]!r}"))
            return
        protocol = self._handshake
        assert protocol is not None
        self._handshake = None
        protocol.receive_data(head)
        events = protocol.events_received()
        if protocol.handshake_exc is not None or not events or not isinstance(events[0], Response):
            self._refused(protocol.handshake_exc or HandshakeRefused("no valid 101 answer"))
            return
        self.subprotocol = protocol.subprotocol
        self._frames = Protocol(Side.CLIENT, max_size=self._max_size)
        self._timer = self._loop.call_later(PING_INTERVAL_SECONDS, self._keepalive)
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)
        self._opened = None
        if rest:
            self.data_received(rest)

    def _refused(self, exc: Exception) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(exc)
        self._opened = None
        self.abort()

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if frames is None:
            if self._head is not None:
                self._handshake_data(data)
            return
        frames.receive_data(data)
        for event in frames.events_received():
            if isinstance(event, Frame):
                self._on_frame(frames, event)
        self._flush(frames)
        if frames.state is not State.OPEN:
            self._upstream_ended(frames)

    def eof_received(self) -> bool | None:
        frames = self._frames
        if frames is not None:
            frames.receive_eof()
            self._flush(frames)
            self._upstream_ended(frames)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(exc or ConnectionResetError("the upstream closed"))
        self._opened = None
        frames = self._frames
        if frames is not None:
            if frames.state is not State.CLOSED:
                frames.receive_eof()
            self._upstream_ended(frames)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # ------------------------------------------------------------ upstream to browser

    def _on_frame(self, frames: Protocol, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(frames, bytes(frame.data), opcode is Opcode.TEXT)
                return
            self._fragments = bytearray(frame.data)
            self._fragment_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            if self._fragments is None:
                return
            self._fragments += frame.data
            if frame.fin:
                data, self._fragments = bytes(self._fragments), None
                self._message(frames, data, self._fragment_text)
        elif opcode is Opcode.PONG:
            self._pinging = False

    def _message(self, frames: Protocol, data: bytes, text: bool) -> None:
        if text:
            try:
                decoded = data.decode()
            except UnicodeDecodeError:
                frames.fail(1007, "invalid UTF-8")
                return
            self._to_browser({"type": "websocket.send", "text": decoded})
        else:
            self._to_browser({"type": "websocket.send", "bytes": data})

    def _upstream_ended(self, frames: Protocol) -> None:
        """The upstream closed, failed or went: the browser is closed with its code."""
        if frames.close_expected() and not self._lost:
            # Its TCP connection is expected to end now; it gets the closing handshake's time.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_later(CLOSE_TIMEOUT_SECONDS, self.abort)
        if self._ended:
            return
        self._ended = True
        received = frames.close_rcvd
        code = 1006 if received is None else int(received.code)
        if code in UNSENDABLE_CLOSE_CODES or not 1000 <= code < 5000:
            code = 1011
        self._to_browser({"type": "websocket.close", "code": code})

    def _to_browser(self, message: Message) -> None:
        if self.silenced:
            return
        if self._outbox is None:
            self._outbox = []
        self._outbox.append(message)
        if len(self._outbox) > OUTBOX_HIGH and not self._reading_paused and self._transport:
            self._reading_paused = True
            self._transport.pause_reading()
        if self._send is not None and self._delivering is None:
            self._delivering = self._loop.create_task(self._deliver(self._send))

    async def _deliver(self, send: Send) -> None:
        try:
            while self._outbox and not self.silenced:
                message = self._outbox.pop(0)
                if not self._outbox:
                    self._outbox = None
                if self._reading_paused and len(self._outbox or ()) <= OUTBOX_LOW:
                    self._reading_paused = False
                    if self._transport is not None and not self._lost:
                        self._transport.resume_reading()
                await send(message)
        except Exception:
            # The browser is gone; its side ends the relay.
            self._outbox = None
        finally:
            self._delivering = None

    def deliver_to(self, send: Send) -> None:
        """From now on, hand what the upstream sends to the browser through `send`."""
        self._send = send
        if self._outbox and self._delivering is None:
            self._delivering = self._loop.create_task(self._deliver(send))

    def reply(self, text: str) -> None:
        """Send the browser a message of the gate's own (the wire guard's answer to a refused
        stanza), in order with what the upstream sends."""
        self._to_browser({"type": "websocket.send", "text": text})

    def stop_delivering(self) -> None:
        """The browser is gone: nothing more is handed to it."""
        self.silenced = True
        self._outbox = None
        if self._delivering is not None:
            self._delivering.cancel()
            self._delivering = None

    # ------------------------------------------------------------ browser to upstream

    def send_text(self, text: str | bytes) -> None:
        """Send a text message upstream: `text`, or its UTF-8 (the wire guard's forwarded
        stanzas, read as UTF-8 already)."""
        frames = self._frames
        if frames is not None and frames.state is State.OPEN and not self._lost:
            frames.send_text(text if isinstance(text, bytes) else text.encode())
            self._flush(frames)

    def send_binary(self, data: bytes) -> None:
        frames = self._frames
        if frames is not None and frames.state is State.OPEN and not self._lost:
            frames.send_binary(data)
            self._flush(frames)

    async def drain(self) -> None:
        """Wait while the upstream takes no more bytes."""
        if self._writable is not None:
            await self._writable

    def _flush(self, frames: Protocol) -> None:
        transport = self._transport
        if transport is None or self._lost:
            return
        for data in frames.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()

    def _keepalive(self) -> None:
        self._timer = None
        frames = self._frames
        if frames is None or frames.state is not State.OPEN or self._lost:
            return
        if self._pinging:
            # The last ping is still unanswered: the upstream is gone.
            frames.fail(1011, "keepalive ping timeout")
            self._flush(frames)
            self._upstream_ended(frames)
            return
        self._pinging = True
        frames.send_ping(b"")
        self._flush(frames)
        self._timer = self._loop.call_later(PING_INTERVAL_SECONDS, self._keepalive)

    # ------------------------------------------------------------ ending

    def begin_closing(self, code: int = 1000, reason: str = "") -> None:
        """Send the upstream's side a close with `code`, not waiting for its answer."""
        frames = self._frames
        if not self._lost and frames is not None and frames.state is State.OPEN:
            frames.send_close(code, reason)
            self._flush(frames)
            self._upstream_ended(frames)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the upstream's side with `code`; wait for its end (CLOSE_TIMEOUT_SECONDS at
        most, then the connection is dropped)."""
        if self._lost:
            return
        self.begin_closing(code, reason)
        if self._closed is None:
            self._closed = self._loop.create_future()
        await asyncio.wait([self._closed], timeout=CLOSE_TIMEOUT_SECONDS)
        self.abort()

    def abort(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.abort()


class RelayedSocket:
    """One browser socket and its upstream twin; registered in the ConnectionRegistry."""

    __slots__ = ("_send", "_signalling", "_upstream")

    def __init__(self, upstream: UpstreamSocket, send: Send, *, signalling: bool) -> None:
        self._upstream = upstream
        self._send = send
        self._signalling = signalling

    @property
    def signalling(self) -> bool:
        return self._signalling

    @property
    def closing(self) -> bool:
        """Cut or handed over: the relay passes nothing more to the browser."""
        return self._upstream.silenced

    async def close(self, reason: str) -> None:
        """Cut: the upstream is sent its `<close/>` (signalling) and a WebSocket close, the
        browser its 4403, before the upstream's closing handshake is waited for (it may take
        CLOSE_TIMEOUT_SECONDS, which the browser is not kept waiting)."""
        upstream = self._upstream
        if upstream.silenced:
            return
        upstream.stop_delivering()
        if self._signalling:
            upstream.send_text(XMPP_CLOSE)
        upstream.begin_closing()
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": CLOSE_REVOKED, "reason": reason})
        await upstream.close()

    async def end_stream(self, error: str) -> None:
        """The browser sent what no XMPP client sends: it gets the stream error `error` and a
        `<close/>` (RFC 7395 §3.6), prosody a `<close/>` that ends the session (nothing of it is
        kept for resumption), and both sockets are closed."""
        upstream = self._upstream
        if upstream.silenced:
            return
        upstream.stop_delivering()
        upstream.send_text(XMPP_CLOSE)
        upstream.begin_closing()
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.send", "text": error})
            await self._send({"type": "websocket.send", "text": XMPP_CLOSE})
            await self._send({"type": "websocket.close", "code": 1000})
        await upstream.close()

    async def hand_over(self) -> None:
        """This replica is stopping: end the browser's side, leave prosody's session resumable.

        The browser gets an RFC 7395 `<close/>` and a WebSocket close 1001, so its client ends
        the connection at once, keeps its XEP-0198 resume token and resumes through another
        replica (whose gate checks the ticket again). Prosody gets no `<close/>`, only the
        WebSocket close: to prosody that is a dropped connection, and it keeps the session (its
        room presence, its unacknowledged stanzas) hibernating for that resumption. A `<close/>`
        toward prosody would end the session and make every attendee rejoin the meeting instead.
        """
        upstream = self._upstream
        if upstream.silenced:
            return
        upstream.stop_delivering()
        if self._signalling:
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.send", "text": XMPP_CLOSE})
        with contextlib.suppress(Exception):
            await self._send(
                {"type": "websocket.close", "code": CLOSE_GOING_AWAY, "reason": "server stopping"}
            )
        await upstream.close()


@dataclass(frozen=True, slots=True)
class UpstreamHandshake:
    """How to open one upstream socket with the websockets client.

    The client writes the `Host` header itself, from the URI's authority, and adds any `host`
    passed as an extra header beside it: two Host headers, which nginx refuses with 400. So the
    URI carries the authority the gate means the upstream to see, and `host`/`port` (the
    library's documented override of the TCP destination only) name the upstream itself.
    """

    uri: str
    host: str
    port: int
    server_hostname: str | None
    headers: list[tuple[str, str]]


def upstream_handshake(url: str, headers: list[tuple[bytes, bytes]]) -> UpstreamHandshake:
    """`url` is the upstream's ws:// or wss:// URL; a `host` among `headers` becomes the
    handshake's one Host header (the upstream's own authority when there is none)."""
    target = urlsplit(url)
    secure = target.scheme == "wss"
    if target.scheme not in ("ws", "wss") or not target.hostname:
        raise UpstreamUnreachable()
    authorities = [value for name, value in headers if name.lower() == b"host"]
    if len(authorities) > 1:
        raise UpstreamUnreachable()
    authority = authorities[0].decode("latin-1") if authorities else target.netloc
    given = urlsplit("//" + authority)
    if not given.hostname or given.username is not None or given.path or given.query:
        raise UpstreamUnreachable()
    resource = (target.path or "/") + (f"?{target.query}" if target.query else "")
    return UpstreamHandshake(
        uri=f"{target.scheme}://{authority}{resource}",
        host=target.hostname,
        port=target.port or (443 if secure else 80),
        server_hostname=target.hostname if secure else None,
        headers=[
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name.lower() != b"host"
        ],
    )


async def open_upstream(
    url: str,
    scope: Scope,
    headers: list[tuple[bytes, bytes]],
    *,
    max_message_bytes: int,
    open_timeout: float,
) -> UpstreamSocket:
    handshake = upstream_handshake(url, headers)
    loop = asyncio.get_running_loop()
    upstream = UpstreamSocket(loop, max_message_bytes)
    try:
        protocol = ClientProtocol(
            parse_uri(handshake.uri),
            subprotocols=requested_subprotocols(scope) or None,
            max_size=max_message_bytes,
        )
        request = protocol.connect()
        for name, value in handshake.headers:
            request.headers[name] = value
        protocol.send_request(request)
        async with asyncio.timeout(open_timeout):
            await loop.create_connection(
                lambda: upstream,
                handshake.host,
                handshake.port,
                ssl=True if handshake.uri.startswith("wss:") else None,
                # None over plain ws:// (asyncio refuses a TLS name without TLS).
                server_hostname=handshake.server_hostname,
            )
            await upstream.handshake(protocol)
    except (TimeoutError, OSError, InvalidHandshake, InvalidURI, HandshakeRefused) as exc:
        upstream.abort()
        raise UpstreamUnreachable() from exc
    return upstream


async def relay(
    socket: RelayedSocket,
    upstream: UpstreamSocket,
    receive: Receive,
    send: Send,
    wire: GuardedWire | None = None,
) -> None:
    """Relay both ways; return when the browser has gone. The browser is read here, in the ASGI
    call's task; what the upstream sends reaches it through `UpstreamSocket.deliver_to`. When
    the upstream ends, the browser is closed with its code and leaves in turn.

    With `wire` (a signalling socket under the wire guard), each message the browser sends is
    judged first: forwarded as sent or rewritten, refused (a stand-in goes upstream, an error to
    the browser), or the stream is ended."""
    upstream.deliver_to(send)
    clock = asyncio.get_running_loop().time
    # An attendee's forwarded stanza needs nothing counted: judged without GuardedWire's call.
    inspect = wire.inspect if wire is not None else None
    counts_forwards = wire is not None and wire.notes_hosts
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                if wire is not None and message.get("code") in PROTOCOL_BROKEN:
                    # Not a dropped connection prosody should keep for resumption.
                    upstream.send_text(XMPP_CLOSE)
                break
            if kind != "websocket.receive" or socket.closing:
                continue
            text = message.get("text")
            if wire is not None:
                # RFC 7395 §3.2: XMPP over WebSocket is text frames only.
                verdict: Verdict
                if text is None:
                    verdict = wire.binary()
                else:
                    assert inspect is not None
                    verdict = inspect(text, clock())
                    if counts_forwards or type(verdict) is not Forward:
                        verdict = wire.judged(verdict)
                if isinstance(verdict, Forward):
                    upstream.send_text(verdict.data)
                elif isinstance(verdict, Refuse):
                    upstream.send_text(verdict.stand_in)
                    if verdict.reply is not None:
                        upstream.reply(verdict.reply)
                else:
                    await socket.end_stream(verdict.error)
                    continue
            elif text is not None:
                upstream.send_text(text)
            else:
                data = message.get("bytes")
                if data is None:
                    continue
                upstream.send_binary(data)
            await upstream.drain()
    finally:
        upstream.stop_delivering()
    await upstream.close()
