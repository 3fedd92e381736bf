"""Security headers: all of them for every response Meetgate renders itself, and the ones it
shares with the Jitsi responses it relays (gateway/proxy/headers.py adds Jitsi's own there)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Meetgate's pages load only their own stylesheets and scripts (the host dashboard's), never inline
# code, and talk only to Meetgate itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The same on every response of the gate's origin, its pages and Jitsi's alike: no type guessing,
# no address (a room, a ticket in a query) told to another site, and HTTPS only once seen over it.
NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_REFERRER = (b"referrer-policy", b"no-referrer")
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def origin_headers(*, secure: bool) -> list[tuple[bytes, bytes]]:
    """The headers every response of the gate's origin carries, relayed ones too."""
    return [NOSNIFF, NO_REFERRER, HSTS] if secure else [NOSNIFF, NO_REFERRER]


def security_headers(*, secure: bool) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
        (b"cache-control", b"no-store"),
        *origin_headers(secure=secure),
    ]


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers above unless the app already set one of them."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self._app = app
        self._headers = security_headers(secure=secure)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self._headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self._app(scope, receive, send_with_headers)
