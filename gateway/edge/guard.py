"""Slow and greedy clients cannot hold the gate: a connection guard in front of uvicorn.

Every client connection is served by uvicorn's h11 protocol, wrapped (not subclassed) by a
`Guard`, which uvicorn builds for each connection through its public `Config(http=<class>)`.
The guard sees every byte before uvicorn does and enforces, with asyncio's public Protocol and
Transport methods and httptools' public parser only:

- **caps at accept**: at most `max_connections` open client connections on this replica and
  `max_connections_per_address` from one client address (an IPv6 client by its /64, the
  smallest network one subscriber gets); a connection over either is reset before uvicorn sees
  it. The trusted proxies (`trusted_proxies`) are exempt from the per-address cap: behind a front
  proxy every connection comes from it, and the front enforces that cap itself.
- **a head deadline**: a request's head (request line and header fields) must be complete within
  `header_read_seconds` of the connection's opening or of the first byte sent after the last
  request; else the connection is reset. A silent socket, a half-sent head and a head trickled a
  byte at a time all end there.
- **a body deadline**: a request's body must be complete within `body_read_seconds` of its head.
- **a head size cap**: a head still incomplete after `max_header_bytes` is answered 431 and
  closed at once, without reading the rest (at most one socket read, 256 KiB, past the cap is
  taken; uvicorn's h11 caps the exact head at the same size besides).

Nothing is armed while the application works on a request (a BOSH long poll may hold one for a
minute) or while the connection is idle after an answer (uvicorn's keep-alive timeout closes it).

A WebSocket upgrade replaces uvicorn's HTTP protocol on the transport with its WebSocket
protocol (`Transport.set_protocol`); the guard then puts itself back in front of that protocol,
stops parsing and passes everything through, so an open WebSocket still counts toward the
replica's cap until it closes. It no longer counts toward its address's cap: a WebSocket is only
kept open for an admitted attendee (one signalling session per admission, gateway/proxy), and
attendees behind one NAT must not crowd each other out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

from gateway.client_address import IPNetwork

log = logging.getLogger("meetgate")

# A sweep of every connection's deadline runs this often while any connection is open, so a
# deadline fires up to this much late.
SWEEP_SECONDS = 0.5
# A refusal at accept is logged at most this often (with how many there were since).
LOG_EVERY_SECONDS = 60.0

TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\nconnection: close\r\n\r\nRequest header fields too large\n"
)
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 12\r\nconnection: close\r\n\r\nBad request\n"
)

# Why a connection was ended by the guard (the label of meetgate_client_connections_ended_total).
REASONS = (
    "replica_full",
    "address_full",
    "header_timeout",
    "body_timeout",
    "header_too_large",
    "bad_request",
)


@dataclass(frozen=True, slots=True)
class Rules:
    header_read_seconds: float
    body_read_seconds: float
    max_header_bytes: int
    max_connections: int
    max_connections_per_address: int
    trusted_proxies: Sequence[IPNetwork] = ()


AddressKey = tuple[int, int]


@dataclass(slots=True)
class Guarding:
    """What one replica's guards share: the rules, the open connections and the counts."""

    rules: Rules
    open: set[Guard] = field(default_factory=set)
    per_address: dict[AddressKey, int] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    _sweeping: asyncio.TimerHandle | None = None
    _unlogged: dict[str, int] = field(default_factory=dict)
    _logged_at: float = -LOG_EVERY_SECONDS

    @property
    def connections(self) -> int:
        return len(self.open)

    def end(self, reason: str) -> None:
        self.ended[reason] += 1
        if reason in ("replica_full", "address_full"):
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_SECONDS:
                self._logged_at = now
                log.warning(
                    "client connections refused at accept since the last such line: %s"
                    " ([limits] max_connections=%d, max_connections_per_address=%d)",
                    ", ".join(f"{n} ({why})" for why, n in sorted(self._unlogged.items())),
                    self.rules.max_connections,
                    self.rules.max_connections_per_address,
                )
                self._unlogged.clear()

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeping is None:
            self._sweeping = loop.call_later(SWEEP_SECONDS, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeping = None
        now = loop.time()
        late = [guard for guard in self.open if guard.deadline <= now]
        for guard in late:
            guard.expire()
        if self.open:
            self.watch(loop)


def address_key(peer: Any, trusted: Sequence[IPNetwork]) -> AddressKey | None:
    """The key a client address is capped by: an IPv4 address, an IPv6 /64; None for a trusted
    proxy or a peer that is not an IP address."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in trusted):
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return (4, int(address))
    return (6, int(address) >> 64)


NEVER = float("inf")

# Where a connection is, as far as the guard is concerned.
BETWEEN = 0  # no request being read (before the first, or after one was read in full)
HEAD = 1  # reading a request's head
BODY = 2  # reading a request's body
PASSING = 3  # upgraded to a WebSocket: everything passes untouched


class Guard(asyncio.Protocol):
    """One client connection: the rules above, around the protocol that serves it (`inner`).

    Made by `guarded()`, which fixes `guarding` and `inner_class` for a server."""

    guarding: Guarding
    inner_class: type[asyncio.Protocol]

    def __init__(self, **server_arguments: Any) -> None:
        # uvicorn's arguments for its protocol, passed on unopened.
        self.inner: asyncio.Protocol = self.inner_class(**server_arguments)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.key: AddressKey | None = None
        # Whether the inner protocol was handed the connection, and whether the guard has ended it.
        self.served = False
        self.ended = False
        self.state = BETWEEN
        self.deadline = NEVER
        self.head_bytes = 0
        self.finished = False
        self.parser = httptools.HttpRequestParser(self)

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        guarding = self.guarding
        rules = guarding.rules
        if guarding.connections >= rules.max_connections:
            self._refuse("replica_full")
            return
        key = address_key(transport.get_extra_info("peername"), rules.trusted_proxies)
        if key is not None:
            held = guarding.per_address.get(key, 0)
            if held >= rules.max_connections_per_address:
                self._refuse("address_full")
                return
            guarding.per_address[key] = held + 1
            self.key = key
        guarding.open.add(self)
        guarding.watch(self.loop)
        self.deadline = self.loop.time() + rules.header_read_seconds
        self.served = True
        self.inner.connection_made(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.state == PASSING:
            self.inner.data_received(data)
        elif not self.ended:
            upgraded_at = self._watch(data)
            if not self.ended:
                self.inner.data_received(data)
                if upgraded_at is not None:
                    self._after_upgrade(data[upgraded_at:])

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.served else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self.served:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.served:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.served:
            self.inner.resume_writing()

    def _watch(self, data: bytes) -> int | None:
        """Parse what the client sent for the request boundaries and apply the head rules;
        where a WebSocket upgrade's head ends in `data`, if it does."""
        if self.state == BETWEEN and self.deadline == NEVER:
            # Any byte between requests (a blank line too) starts the next head's clock.
            self.deadline = self.loop.time() + self.guarding.rules.header_read_seconds
        self.finished = False
        upgraded_at: int | None = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            upgraded_at = int(upgrade.args[0]) if upgrade.args else len(data)
        except httptools.HttpParserError:
            self._answer_and_close(BAD_REQUEST, "bad_request")
            return None
        # A head still being read: this read is all head, unless a request ended in it (then
        # the next head began somewhere inside; it is counted from the next read on).
        if self.state == HEAD and not self.finished:
            self.head_bytes += len(data)
            if self.head_bytes > self.guarding.rules.max_header_bytes:
                self._answer_and_close(TOO_LARGE, "header_too_large")
        return upgraded_at

    # ------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self.state = HEAD
        self.head_bytes = 0
        if self.deadline == NEVER:
            self.deadline = self.loop.time() + self.guarding.rules.header_read_seconds

    def on_headers_complete(self) -> None:
        self.state = BODY
        self.deadline = self.loop.time() + self.guarding.rules.body_read_seconds

    def on_message_complete(self) -> None:
        self.state = BETWEEN
        self.deadline = NEVER
        self.finished = True

    # ------------------------------------------------------------ the guard's own ends

    def expire(self) -> None:
        """The deadline passed: the connection is reset."""
        self._end("body_timeout" if self.state == BODY else "header_timeout")
        assert self.transport is not None
        self.transport.abort()

    def _refuse(self, reason: str) -> None:
        self._end(reason)
        assert self.transport is not None
        self.transport.abort()

    def _answer_and_close(self, answer: bytes, reason: str) -> None:
        self._end(reason)
        assert self.transport is not None
        self.transport.write(answer)
        self.transport.close()

    def _end(self, reason: str) -> None:
        self.ended = True
        self.guarding.end(reason)
        self._release()

    def _after_upgrade(self, rest: bytes) -> None:
        assert self.transport is not None
        serving = self.transport.get_protocol()
        if serving is self:
            # Not taken as a WebSocket (uvicorn answers it as a plain request): go on watching
            # with a new parser from what followed the head (uvicorn has had it already).
            self.parser = httptools.HttpRequestParser(self)
            self.state = BETWEEN
            self.deadline = NEVER
            if rest:
                self._watch(rest)
            return
        # uvicorn's WebSocket protocol serves the connection now; the guard stays in front of
        # it (so the connection's end is still counted) and passes everything through.
        assert isinstance(serving, asyncio.Protocol)
        self.inner = serving
        self.transport.set_protocol(self)
        self.state = PASSING
        self.deadline = NEVER
        self._release_address()

    def _release_address(self) -> None:
        if self.key is not None:
            held = self.guarding.per_address.get(self.key, 0) - 1
            if held > 0:
                self.guarding.per_address[self.key] = held
            else:
                self.guarding.per_address.pop(self.key, None)
            self.key = None

    def _release(self) -> None:
        self._release_address()
        self.guarding.open.discard(self)
        self.deadline = NEVER


def guarded(inner_class: type[asyncio.Protocol], guarding: Guarding) -> type[Guard]:
    """A protocol class for uvicorn's `Config(http=...)`: `inner_class` behind the guard."""
    return type("GuardedProtocol", (Guard,), {"guarding": guarding, "inner_class": inner_class})
