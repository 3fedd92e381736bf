"""Slow and greedy clients cannot hold the gate: the rules every client connection is held to.

The server (gateway/edge/server.py) applies them as it reads each connection:

- **caps at accept**: at most `max_connections` open client connections on this replica and
  `max_connections_per_address` from one client address (an IPv6 client by its /64, the
  smallest network one subscriber gets); a connection over either is reset before anything is
  read. The trusted proxies (`trusted_proxies`) are exempt from the per-address cap: behind a
  front proxy every connection comes from it, and the front enforces that cap itself.
- **a head deadline**: a request's head (request line and header fields) must be complete within
  `header_read_seconds` of the connection's opening or of the first byte sent after the last
  answer; else the connection is reset. A silent socket, a half-sent head and a head trickled a
  byte at a time all end there.
- **a body deadline**: a request's body must be complete within `body_read_seconds` of its head.
- **a head size cap**: a head over `max_header_bytes`, whether it came whole or is still
  arriving, is answered 431 and closed at once, without reading the rest (at most one socket
  read past the cap is taken). A head begun in the same read as the end of a request before it
  is counted by what the parser reports of it (its target, each field that ended) and by the
  line it is in at the read's end. Before its first field has ended, that line is taken as its
  request line, less the end of the body before it: a client that sends a body with no line
  feed, then a first field that does not end, can still read up to one read past the cap.

Nothing is timed while the application works on a request (a BOSH long poll may hold one for a
minute). An open WebSocket counts toward the replica's cap until it closes, but no longer toward
its address's: a WebSocket is only kept open for an admitted attendee (one signalling session per
admission, gateway/proxy), and attendees behind one NAT must not crowd each other out.

Deadlines are checked by one sweep every SWEEP_SECONDS while any connection is open, rather than
by a timer a connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.client_address import IPNetwork
from gateway.settings import LimitSettings

log = logging.getLogger("meetgate")

# A sweep of every connection's deadline runs this often while any connection is open, so a
# deadline fires up to this much late.
SWEEP_SECONDS = 0.5
# A refusal at accept is logged at most this often (with how many there were since).
LOG_EVERY_SECONDS = 60.0


# Why a connection was ended by the guard (the label of meetgate_client_connections_ended_total).
REASONS = (
    "replica_full",
    "address_full",
    "header_timeout",
    "body_timeout",
    "write_timeout",
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

    @classmethod
    def of(cls, limits: LimitSettings, trusted_proxies: Sequence[IPNetwork] = ()) -> Rules:
        """The rules `[limits]` sets (and the proxies exempt from the per-address cap)."""
        return cls(
            header_read_seconds=limits.header_read_seconds,
            body_read_seconds=limits.body_read_seconds,
            max_header_bytes=limits.max_header_bytes,
            max_connections=limits.max_connections,
            max_connections_per_address=limits.max_connections_per_address,
            trusted_proxies=trusted_proxies,
        )


AddressKey = tuple[int, int]


@dataclass(slots=True)
class Guarding:
    """What one replica's guards share: the rules, the open connections and the counts."""

    rules: Rules
    open: set[Guarded] = field(default_factory=set)
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


class Guarded(Protocol):
    """A connection the rules watch (gateway/edge/server.py's `Connection`)."""

    @property
    def deadline(self) -> float:
        """When the sweep ends it (the loop's clock)."""

    def expire(self) -> None:
        """Its deadline passed: end it."""

    def shutdown(self) -> None:
        """The server is stopping: end it once it is idle."""

    def abort(self) -> list[asyncio.Task[None]]:
        """End it now; the application tasks this cancelled."""
