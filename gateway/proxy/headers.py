"""Which request and response headers cross the proxy, and the forwarding headers Meetgate sets."""

from __future__ import annotations

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by Meetgate from what it verified, never passed on from the client.
CLIENT_CONTROLLED = frozenset(
    {
        b"host",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-real-ip",
        b"authorization",
        b"content-length",
    }
)
# The WebSocket handshake is redone by the client library toward the upstream, which writes these
# (and Host, from the `host` given here: see websocket.upstream_handshake) once, itself.
WEBSOCKET_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)


# What is never passed on, as one set each way, so a request whose Connection header names no
# further field costs no set built for it.
_NOT_UPSTREAM = HOP_BY_HOP | CLIENT_CONTROLLED
_NOT_UPSTREAM_WEBSOCKET = _NOT_UPSTREAM | WEBSOCKET_HANDSHAKE


def _connection_listed(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The fields a Connection header names (RFC 9110 §7.6.1), also hop-by-hop."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed.update(part.strip().lower() for part in value.split(b","))
    return frozenset(listed)


def upstream_request_headers(
    headers: list[tuple[bytes, bytes]],
    *,
    cookie_name: bytes,
    public_host: bytes,
    public_scheme: bytes,
    client_addr: bytes,
    websocket: bool = False,
) -> list[tuple[bytes, bytes]]:
    """Headers for the upstream request: no hop-by-hop, no Meetgate cookie, honest forwarding."""
    dropped = _NOT_UPSTREAM_WEBSOCKET if websocket else _NOT_UPSTREAM
    listed = _connection_listed(headers)
    if listed - dropped:
        dropped = dropped | listed
    own_cookie = cookie_name + b"="
    result: list[tuple[bytes, bytes]] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name in dropped:
            continue
        if name == b"cookie":
            kept = [
                part
                for part in (p.strip() for p in value.split(b";"))
                if part and not part.startswith(own_cookie)
            ]
            if not kept:
                continue
            value = b"; ".join(kept)
        result.append((name, value))
    result += [
        (b"host", public_host),
        (b"x-forwarded-for", client_addr),
        (b"x-forwarded-proto", public_scheme),
        (b"x-forwarded-host", public_host),
    ]
    return result


def downstream_response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    dropped: frozenset[bytes] = HOP_BY_HOP
    listed = _connection_listed(headers)
    if listed - dropped:
        dropped = dropped | listed
    result: list[tuple[bytes, bytes]] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name not in dropped:
            result.append((name, value))
    return result
