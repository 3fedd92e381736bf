"""A minimal XMPP client over WebSocket (RFC 7395), for timing revocations and for the attack
replay's attendees and trolls.

Anonymous SASL, resource binding, stream management (XEP-0198, resumable, as Jitsi's client asks
for it, so that an unclean cut would leave prosody holding the session), joining a MUC room,
sending groupchat, presences or any stanza, and noting, with the arrival time, every message and
presence heard (`heard`, bounded), the stream error if the server sent one and the moment the
socket closes. It runs in the benchmark's own event loop, so those times are on the same clock
as the host's revoke request, and a client starts in milliseconds where the tests' strophe.js
client needs a Node process each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl as tls
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SM = "urn:xmpp:sm:3"
CLIENT = "jabber:client"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
NICK = "http://jabber.org/protocol/nick"
STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PING = "urn:xmpp:ping"
# The most messages and presences one client keeps in `heard` (the oldest go first).
HEARD_LIMIT = 20_000
# Stanzas counted for stream management's acknowledgements.
STANZAS = {f"{{{CLIENT}}}{kind}" for kind in ("message", "presence", "iq")}


class XmppFailed(RuntimeError):
    """The server refused a step of the session set-up, or the connection ended during it."""


@dataclass(frozen=True, slots=True)
class Seen:
    """A presence as it arrived: the occupant's nick, its type and when (perf_counter)."""

    nick: str
    type: str
    at: float


@dataclass(frozen=True, slots=True)
class Heard:
    """A message or presence as it arrived (`at`: perf_counter). `kind` is "message",
    "presence" or "error" (either of type error: `body` is then the error's condition, as
    "policy-violation"). `sender` is the full `from`; `nick_text` the text of a XEP-0172
    `<nick>`; `body` a message's body or a presence's status; `extras` the local names of the
    stanza's children (as "nick", "avatar-url", "email"); `stanza_id` its id attribute;
    `type` its type attribute (as "unavailable"; "" when it has none); `self_presence` whether
    it is the room's presence of the receiving client's own occupant (MUC status code 110)."""

    at: float
    kind: str
    sender: str
    nick_text: str
    body: str
    extras: tuple[str, ...]
    stanza_id: str = ""
    type: str = ""
    self_presence: bool = False

    @property
    def resource(self) -> str:
        """The sender's resource: an occupant's MUC nick."""
        return self.sender.partition("/")[2]


def heard_from(element: ET.Element, at: float) -> Heard:
    """A `message` or `presence` element as a Heard record."""
    kind = "message" if element.tag == f"{{{CLIENT}}}message" else "presence"
    if element.get("type") == "error":
        kind = "error"
        error = element.find(f"{{{CLIENT}}}error")
        body = "" if error is None else _condition(error, STANZA_ERRORS)
    elif kind == "message":
        body = element.findtext(f"{{{CLIENT}}}body") or ""
    else:
        body = element.findtext(f"{{{CLIENT}}}status") or ""
    return Heard(
        at=at,
        kind=kind,
        sender=element.get("from", ""),
        nick_text=element.findtext(f"{{{NICK}}}nick") or "",
        body=body,
        extras=tuple(dict.fromkeys(child.tag.rpartition("}")[2] for child in element)),
        stanza_id=element.get("id", ""),
        type=element.get("type", ""),
        self_presence=kind == "presence"
        and element.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}status[@code='110']") is not None,
    )


def _condition(error: ET.Element, namespace: str) -> str:
    """The local name of an error element's condition child (not its `<text>`)."""
    conditions = (
        child.tag.rpartition("}")[2]
        for child in error
        if child.tag.startswith(f"{{{namespace}}}") and child.tag != f"{{{namespace}}}text"
    )
    return next(conditions, "")


class XmppClient:
    """One anonymous session. `presences`, `heard`, `stream_error`, `closed_at`, `close_code`
    and `close_reason` fill in as events arrive; `on_heard`, if set, is called (in the reader,
    synchronously) with each message or presence as it is noted. `reader_error` is the type
    name of an exception that ended the reader (a frame it could not parse, an `on_heard` that
    raised): the client itself failed, not the server, and the connection was aborted."""

    def __init__(self, connection: ClientConnection, domain: str) -> None:
        self._connection = connection
        self._domain = domain
        self._ids = itertools.count(1)
        self._inbox: asyncio.Queue[ET.Element] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._handled = 0
        self._counting = False
        self._set_up_done = False
        self.presences: list[Seen] = []
        self.heard: deque[Heard] = deque(maxlen=HEARD_LIMIT)
        self.on_heard: Callable[[Heard], None] | None = None
        self.stream_error: str | None = None
        self.closed_at: float | None = None
        self.close_code: int | None = None
        # The close frame's reason: a gate's cut (code 4403) says why ("revoked", "moved", …).
        self.close_reason: str | None = None
        # The type name only: an exception's message may quote a stanza.
        self.reader_error: str | None = None
        self.jid = ""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        domain: str,
        stream_management: bool,
        timeout: float = 10.0,
        ssl: tls.SSLContext | None = None,
        headers: dict[str, str] | None = None,
    ) -> XmppClient:
        """Open the WebSocket (`ssl`: the context for a wss:// URL, e.g. one trusting the TLS
        front's CA; `headers` added to the upgrade) and set up a bound session (resumable if
        `stream_management`)."""
        # websockets refuses an `ssl` argument with a ws:// URL: pass it only when given.
        tls_options: dict[str, Any] = {} if ssl is None else {"ssl": ssl}
        connection = await connect(
            url,
            subprotocols=[Subprotocol("xmpp")],
            compression=None,
            open_timeout=timeout,
            proxy=None,
            additional_headers=headers,
            **tls_options,
        )
        client = cls(connection, domain)
        try:
            await asyncio.wait_for(client._set_up(stream_management), timeout)
        except BaseException:
            await client.abort()
            raise
        return client

    async def _set_up(self, stream_management: bool) -> None:
        await self._open_stream()
        await self._send(f'<auth xmlns="{SASL}" mechanism="ANONYMOUS"/>')
        answer = await self._next()
        if answer.tag != f"{{{SASL}}}success":
            raise XmppFailed(f"anonymous login refused: {ET.tostring(answer)!r}")
        features = await self._open_stream()
        iq_id = f"bind{next(self._ids)}"
        await self._send(
            f'<iq xmlns="{CLIENT}" type="set" id="{iq_id}"><bind xmlns="{BIND}"/></iq>'
        )
        bound = await self._next()
        jid = bound.find(f"{{{BIND}}}bind/{{{BIND}}}jid")
        if bound.get("type") != "result" or jid is None or not jid.text:
            raise XmppFailed(f"resource binding failed: {ET.tostring(bound)!r}")
        self.jid = jid.text
        if stream_management:
            if features.find(f"{{{SM}}}sm") is None:
                raise XmppFailed("the server offers no stream management")
            await self._send(f'<enable xmlns="{SM}" resume="true"/>')
            enabled = await self._next()
            if enabled.tag != f"{{{SM}}}enabled":
                raise XmppFailed(f"stream management refused: {ET.tostring(enabled)!r}")
            self._counting = True
        self._set_up_done = True

    async def _open_stream(self) -> ET.Element:
        """Send `<open/>`; the server's features (after its own `<open/>`)."""
        await self._send(f'<open xmlns="{FRAMING}" to={quoteattr(self._domain)} version="1.0"/>')
        opened = await self._next()
        if opened.tag != f"{{{FRAMING}}}open":
            raise XmppFailed(f"no stream opened: {ET.tostring(opened)!r}")
        return await self._next()

    async def join(
        self, room_jid: str, nick: str, timeout: float = 10.0, inner_xml: str = ""
    ) -> None:
        """Enter a MUC room as occupant `nick` (its resource), the presence carrying
        `inner_xml` too (as Jitsi's `<nick>`); return once the room answered with our presence,
        or raise XmppFailed if it answered with an error."""
        occupant = f"{room_jid}/{nick}"
        await self._send(
            f'<presence xmlns="{CLIENT}" to={quoteattr(occupant)}><x xmlns="{MUC}"/>'
            f"{inner_xml}</presence>"
        )
        answer = await self._first(nick, {"available", "error"}, timeout)
        if answer.type == "error":
            raise XmppFailed(f"the room refused {occupant}")

    def _stanza_id(self) -> str:
        return f"s{next(self._ids)}"

    async def send_raw(self, xml: str) -> None:
        """Send one whole stanza (or any top-level element) as it is written."""
        await self._send(xml)

    async def send_chat(self, room_jid: str, body: str, *, stanza_id: str | None = None) -> None:
        """Send a groupchat message to the room."""
        sid = stanza_id or self._stanza_id()
        await self._send(
            f'<message xmlns="{CLIENT}" to={quoteattr(room_jid)} type="groupchat"'
            f" id={quoteattr(sid)}><body>{escape(body)}</body></message>"
        )

    async def send_presence(self, occupant_jid: str, inner_xml: str) -> None:
        """Send a presence to `occupant_jid` (room/nick) carrying `inner_xml` as its children."""
        await self._send(
            f'<presence xmlns="{CLIENT}" to={quoteattr(occupant_jid)}'
            f" id={quoteattr(self._stanza_id())}>{inner_xml}</presence>"
        )

    async def wait_for(self, nick: str, kind: str, timeout: float) -> float:
        """When a presence of `nick` of type `kind` ("available", "unavailable") arrived,
        before or after the call; TimeoutError after `timeout` seconds."""
        return (await self._first(nick, {kind}, timeout)).at

    async def _first(self, nick: str, kinds: set[str], timeout: float) -> Seen:
        def found() -> Seen | None:
            return next((p for p in self.presences if p.nick == nick and p.type in kinds), None)

        async def until() -> Seen:
            async with self._changed:
                while (seen := found()) is None:
                    if self.closed_at is not None:
                        raise XmppFailed(f"closed while waiting for {nick} {sorted(kinds)}")
                    await self._changed.wait()
                return seen

        return await asyncio.wait_for(until(), timeout)

    async def wait_closed(self, timeout: float) -> float:
        """When the connection ended (the close frame or the socket's end arrived)."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        assert self.closed_at is not None
        return self.closed_at

    async def close(self) -> None:
        """End the session cleanly (RFC 7395 `<close/>`), then the socket."""
        if self.closed_at is None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(f'<close xmlns="{FRAMING}"/>')
        await self.abort()

    async def abort(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._connection.close(), 2.0)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    async def _send(self, text: str) -> None:
        await self._connection.send(text)

    async def _next(self) -> ET.Element:
        """The next top-level element during set-up (before the reader routes presences)."""
        get = asyncio.create_task(self._inbox.get())
        try:
            # asyncio.wait leaves the reader running: it only watches for its end.
            await asyncio.wait({get, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():
                get.cancel()
        if get.cancelled():
            raise XmppFailed(f"the connection ended during set-up (code {self.close_code})")
        return get.result()

    async def _read(self) -> None:
        try:
            async for frame in self._connection:
                # The benchmark's own prosody, on loopback: nothing untrusted is parsed.
                element = ET.fromstring(frame)  # noqa: S314
                if self._counting and element.tag in STANZAS:
                    self._handled += 1
                if element.tag == f"{{{SM}}}r":
                    await self._send(f'<a xmlns="{SM}" h="{self._handled}"/>')
                elif element.tag == f"{{{CLIENT}}}presence":
                    self._note_heard(element)
                    await self._note_presence(element)
                elif element.tag == f"{{{CLIENT}}}message":
                    self._note_heard(element)
                elif element.tag == f"{{{STREAMS}}}error":
                    self._note_stream_error(element)
                elif not self._set_up_done:
                    self._inbox.put_nowait(element)
                elif (
                    element.tag == f"{{{CLIENT}}}iq" and element.find(f"{{{PING}}}ping") is not None
                ):
                    await self._answer_ping(element)
        except ConnectionClosed:
            pass
        except Exception as exc:
            # Not the server's doing: record it (the watchers report it as the bench's own
            # failure) and end the socket for real, so that nothing keeps a half-read session.
            self.closed_at = time.perf_counter()
            self.reader_error = type(exc).__name__
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(code=1011), 2.0)
            self._connection.transport.abort()
        finally:
            if self.closed_at is None:
                self.closed_at = time.perf_counter()
            self.close_code = self._connection.close_code
            self.close_reason = self._connection.close_reason
            async with self._changed:
                self._changed.notify_all()

    def _note_heard(self, element: ET.Element) -> None:
        heard = heard_from(element, time.perf_counter())
        self.heard.append(heard)
        if self.on_heard is not None:
            self.on_heard(heard)

    def _note_stream_error(self, element: ET.Element) -> None:
        self.stream_error = _condition(element, STREAM_ERRORS) or "undefined-condition"
        if not self._set_up_done:
            self._inbox.put_nowait(element)

    async def _answer_ping(self, element: ET.Element) -> None:
        reply = f'<iq xmlns="{CLIENT}" type="result" id={quoteattr(element.get("id", ""))}'
        if element.get("from"):
            reply += f" to={quoteattr(element.get('from', ''))}"
        await self._send(reply + "/>")

    async def _note_presence(self, element: ET.Element) -> None:
        at = time.perf_counter()
        kind = element.get("type", "available")
        nick = element.get("from", "").partition("/")[2]
        async with self._changed:
            self.presences.append(Seen(nick=nick, type=kind, at=at))
            self._changed.notify_all()
