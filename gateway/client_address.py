"""Which address a request comes from: the socket peer, or, when the peer is a configured trusted
proxy, the right-most hop of `X-Forwarded-For` (or `Forwarded`) that is not itself trusted.

Headers from any other peer are ignored: a client cannot choose the address it is limited by.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOPS = 32
_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;,\s])for\s*=\s*("?)([^;,"]*)\1')


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def parse_address(text: str) -> IPAddress | None:
    """An address as it appears in a header: bare, `[v6]`, `[v6]:port` or `v4:port`."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def forwarded_hops(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every hop the proxies reported, oldest first: X-Forwarded-For, else Forwarded `for=`."""
    xff: list[str] = []
    forwarded: list[str] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            xff.extend(part for part in value.decode("latin-1").split(","))
        elif name == b"forwarded":
            forwarded.extend(m.group(2) for m in _FORWARDED_FOR.finditer(value.decode("latin-1")))
    return xff or forwarded


def client_address(
    peer: str | None,
    headers: Iterable[tuple[bytes, bytes]],
    trusted: Sequence[IPNetwork],
) -> str:
    peer_address = parse_address(peer) if peer else None
    if peer_address is None:
        return "unknown"
    if not trusted or not _trusted(peer_address, trusted):
        return str(peer_address)
    hops = forwarded_hops(headers)[-MAX_HOPS:]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            # Garbage where a trusted proxy should have written an address: do not guess
            # further left, where the client could have written anything.
            return str(peer_address)
        if not _trusted(address, trusted):
            return str(address)
        peer_address = address
    return str(peer_address)


def network_of(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) an address belongs to; limits and hosts see this."""
    head, dot, last = address.rpartition(".")
    if dot and last.isdigit() and head.count(".") == 2 and head.replace(".", "").isdigit():
        # A dotted quad as `client_address` writes it, on every join attempt: no parsing.
        return f"{head}.0/24"
    parsed = parse_address(address)
    if parsed is None:
        return "unknown"
    bits = 24 if parsed.version == 4 else 64
    return str(ipaddress.ip_network(f"{parsed}/{bits}", strict=False))


# How many distinct (peer, forwarding headers) answers a replica keeps; past that it starts over.
# Only answers for forwarding headers of at most MAX_REMEMBERED_HOPS_BYTES are kept.
MAX_REMEMBERED = 65_536
MAX_REMEMBERED_HOPS_BYTES = 256


class ClientAddresses:
    """`client_address` with the answers kept: a flood repeats its addresses, and parsing them
    is a fifth of what refusing one of its requests costs."""

    def __init__(self, trusted: Sequence[IPNetwork]) -> None:
        self._trusted = trusted
        self._known: dict[tuple[str | None, tuple[tuple[bytes, bytes], ...]], str] = {}

    def resolve(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """What `client_address` answers for `peer` and `headers`."""
        hops: tuple[tuple[bytes, bytes], ...] = ()
        if self._trusted:
            hops = tuple([header for header in headers if header[0] in _FORWARDING_HEADERS])
        if hops and sum([len(value) for _, value in hops]) > MAX_REMEMBERED_HOPS_BYTES:
            # Long chains are rare and would make the kept answers a memory sink.
            return client_address(peer, hops, self._trusted)
        key = (peer, hops)
        known = self._known.get(key)
        if known is None:
            known = client_address(peer, hops, self._trusted)
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
            self._known[key] = known
        return known


_FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"forwarded"})
