"""Which request and response headers cross the proxy, the forwarding headers Meetgate sets, and
the security headers it puts on every Jitsi response it relays (docs/security.md)."""

from __future__ import annotations

from gateway.edge.headers import origin_headers

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


# What Jitsi's pages may use: the camera, the microphone, screen sharing and full screen, for
# the gate's origin alone (no other origin may frame the page, nor does it frame another's).
# Powerful features Jitsi does not use are refused outright. Left at the browser's defaults, as
# Jitsi's web app uses them: autoplay (remote audio starts without a click), clipboard-write
# (copying the meeting link), screen-wake-lock, speaker-selection, compute-pressure, hid
# (headset buttons), picture-in-picture.
JITSI_PERMISSIONS_POLICY = (
    b"camera=(self), microphone=(self), display-capture=(self), fullscreen=(self), "
    b"geolocation=(), payment=(), usb=(), serial=(), midi=(), accelerometer=(), gyroscope=(), "
    b"magnetometer=(), idle-detection=(), xr-spatial-tracking=(), browsing-topics=()"
)
# Only the gate's origin may frame Jitsi's pages (Jitsi frames its own, e.g. the shared document):
# Jitsi's iframe API on another site could not join anyway, as the admission cookie is
# SameSite=Lax and so never sent to a frame of another site.
FRAME_ANCESTORS = b"frame-ancestors 'self'"
# Response fields the gate writes itself on relayed responses, so the upstream's are dropped:
# its Server (no software or version told to the world) and every security header the gate
# sets, so that none is sent twice with two values. Feature-Policy is Permissions-Policy's old
# name: the upstream's could grant what the gate's refuses.
GATE_WRITTEN = frozenset(
    {
        b"server",
        b"x-content-type-options",
        b"referrer-policy",
        b"x-frame-options",
        b"permissions-policy",
        b"feature-policy",
        b"strict-transport-security",
    }
)
_NOT_DOWNSTREAM = HOP_BY_HOP | GATE_WRITTEN


def jitsi_security_headers(*, secure: bool) -> list[tuple[bytes, bytes]]:
    """The headers the gate adds to every relayed Jitsi response (HSTS when `secure`); a CSP
    `frame-ancestors` besides, unless the upstream's own policy has one
    (downstream_response_headers)."""
    return [
        *origin_headers(secure=secure),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"permissions-policy", JITSI_PERMISSIONS_POLICY),
    ]


def _names_frame_ancestors(policy: bytes) -> bool:
    """Whether a Content-Security-Policy value has a frame-ancestors directive (its directives
    are separated by `;`, a policy list by `,`; names are case-insensitive)."""
    for directive in policy.replace(b",", b";").split(b";"):
        words = directive.split()
        if words and words[0].lower() == b"frame-ancestors":
            return True
    return False


def downstream_response_headers(
    headers: list[tuple[bytes, bytes]], security: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers less hop-by-hop fields, its Server, any Date after its
    first (the gate's server writes one only when none is given) and the fields `security`
    (jitsi_security_headers) replaces; then `security`, and `frame-ancestors 'self'` as a CSP
    of its own when no upstream CSP names frame-ancestors (a browser enforces every CSP header,
    so this adds to the upstream's policy without rewriting it)."""
    dropped = _NOT_DOWNSTREAM
    listed = _connection_listed(headers)
    if listed - dropped:
        dropped = dropped | listed
    dated = framed = False
    result: list[tuple[bytes, bytes]] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name in dropped:
            continue
        if name == b"date":
            if dated:
                continue
            dated = True
        elif name == b"content-security-policy":
            framed = framed or _names_frame_ancestors(value)
        result.append((name, value))
    result += security
    if not framed:
        result.append((b"content-security-policy", FRAME_ANCESTORS))
    return result
