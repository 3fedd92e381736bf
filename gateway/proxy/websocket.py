"""Relays one WebSocket between the browser and the upstream, both ways, until either side ends.

A relayed signalling socket can be cut by the gate (revocation, or a newer session of the same
admission): it first ends the XMPP stream toward prosody with an RFC 7395 `<close/>`, so prosody
drops the session at once instead of keeping it for stream resumption.

A replica that stops hands its sockets over instead (`hand_over`): the browser's stream is ended
with a `<close/>`, prosody's only with a WebSocket close, so prosody keeps the session for
resumption and the browser resumes it through another replica at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from gateway.errors import UpstreamUnreachable

log = logging.getLogger("meetgate.proxy")

XMPP_CLOSE = '<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>'
# 4000-4999 are free for applications; the browser sees why it was cut.
CLOSE_REVOKED = 4403
# RFC 6455 "going away": the server is stopping.
CLOSE_GOING_AWAY = 1001


def requested_subprotocols(scope: Scope) -> list[Subprotocol]:
    return [Subprotocol(p) for p in scope.get("subprotocols", [])]


class RelayedSocket:
    """One browser socket and its upstream twin; registered in the ConnectionRegistry."""

    def __init__(self, upstream: ClientConnection, send: Send, *, signalling: bool) -> None:
        self._upstream = upstream
        self._send = send
        self._signalling = signalling
        self._closing = False
        self.done = asyncio.Event()

    @property
    def signalling(self) -> bool:
        return self._signalling

    @property
    def closing(self) -> bool:
        """Cut or handed over: the relay passes nothing more to the browser."""
        return self._closing

    async def close(self, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self._signalling:
            with contextlib.suppress(ConnectionClosed, OSError):
                await asyncio.wait_for(self._upstream.send(XMPP_CLOSE), timeout=2)
        with contextlib.suppress(ConnectionClosed, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._upstream.close(), timeout=2)
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": CLOSE_REVOKED, "reason": reason})
        self.done.set()

    async def hand_over(self) -> None:
        """This replica is stopping: end the browser's side, leave prosody's session resumable.

        The browser gets an RFC 7395 `<close/>` and a WebSocket close 1001, so its client ends
        the connection at once, keeps its XEP-0198 resume token and resumes through another
        replica (whose gate checks the ticket again). Prosody gets no `<close/>`, only the
        WebSocket close: to prosody that is a dropped connection, and it keeps the session (its
        room presence, its unacknowledged stanzas) hibernating for that resumption. A `<close/>`
        toward prosody would end the session and make every attendee rejoin the meeting instead.
        """
        if self._closing:
            return
        self._closing = True
        if self._signalling:
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.send", "text": XMPP_CLOSE})
        with contextlib.suppress(Exception):
            await self._send(
                {"type": "websocket.close", "code": CLOSE_GOING_AWAY, "reason": "server stopping"}
            )
        with contextlib.suppress(ConnectionClosed, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._upstream.close(), timeout=2)
        self.done.set()


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
) -> ClientConnection:
    handshake = upstream_handshake(url, headers)
    try:
        return await connect(
            handshake.uri,
            host=handshake.host,
            port=handshake.port,
            subprotocols=requested_subprotocols(scope) or None,
            additional_headers=handshake.headers,
            max_size=max_message_bytes,
            open_timeout=open_timeout,
            compression=None,
            user_agent_header=None,
            proxy=None,
            # None over plain ws:// (asyncio refuses a TLS name without TLS).
            server_hostname=handshake.server_hostname,
        )
    # ValueError: a redirect to another origin, which the client will not follow to an
    # explicit host and port.
    except (TimeoutError, OSError, InvalidHandshake, InvalidStatus, InvalidURI, ValueError) as exc:
        raise UpstreamUnreachable() from exc


async def relay(
    socket: RelayedSocket, upstream: ClientConnection, receive: Receive, send: Send
) -> None:
    """Pump frames both ways; return when either side has gone."""

    async def browser_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def upstream_to_browser() -> None:
        async for frame in upstream:
            if socket.closing:
                # Nothing may reach the browser after the end of its stream.
                return
            if isinstance(frame, str):
                await send({"type": "websocket.send", "text": frame})
            else:
                await send({"type": "websocket.send", "bytes": frame})

    tasks = [
        asyncio.create_task(browser_to_upstream()),
        asyncio.create_task(upstream_to_browser()),
        asyncio.create_task(socket.done.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError, Exception):
                await task
    if socket.done.is_set():
        return
    code = upstream.close_code or 1000
    if code in (1005, 1006, 1015):
        # Reserved codes that may not be sent on the wire: the upstream went away abnormally.
        code = 1011
    with contextlib.suppress(ConnectionClosed, OSError, asyncio.TimeoutError):
        await asyncio.wait_for(upstream.close(), timeout=2)
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code if 1000 <= code < 5000 else 1011})
