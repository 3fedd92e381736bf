"""What every part of the request edge shares about one request: its id, its header fields, the
admission cookie, whether a form post came from the gate's own pages, the marks the gate leaves
for the pages and the access log, and the pages' own prefixes.

The gate (gateway/proxy/gate.py), the pages (gateway/web, gateway/host), the admin API and the
access log all use these; none of them imports another for it (the layers are one-way: see the
import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.types import Scope

from gateway.settings import Settings

# The pages' own prefixes, which the gate answers join attempts on itself while their address
# or network is known to have no budget left (gateway/proxy/gate.py is_join_attempt).
LOBBY_PREFIX = "/_meetgate/lobby"
ENTER_PREFIX = "/_meetgate/enter"
EMAIL_PREFIX = "/_meetgate/email"
REGISTER_PREFIX = "/_meetgate/register"
# Marks a join attempt the gate refused, for the access log (which samples them in a flood)...
REFUSED_ATTEMPT = "refused_attempt"
# ... and one it refused before any other work (which the access log leaves out).
QUIET = "quiet"
# Where the gate leaves the invite it found for a join link, for the pages app.
LOCATED_INVITE = "located_invite"


def request_id(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = secrets.token_hex(8)
    return str(state["request_id"])


def cookie_name(settings: Settings) -> str:
    # `__Host-` cookies must be Secure, so the prefix is only used over TLS.
    return "__Host-meetgate" if settings.secure else "meetgate"


def read_cookie(scope: Scope, name: str) -> str | None:
    """The value of one cookie. Meetgate's own values are URL-safe tokens, so a plain split is
    exact for them; anything odd is left for the callers' shape checks to refuse."""
    wanted = name.encode()
    for header, value in scope["headers"]:
        if header == b"cookie":
            cookies: bytes = value
            for part in cookies.split(b";"):
                key, _, found = part.strip().partition(b"=")
                if key == wanted:
                    return found.decode("latin-1")
    return None


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header `name` (lower case), as starlette reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def same_origin(scope: Scope, public_url: str) -> bool:
    """A form post must come from Meetgate's own pages: Origin (or Sec-Fetch-Site) says so."""
    site = header(scope, b"sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return False
    origin = header(scope, b"origin")
    if origin == "null":
        # Our pages' `Referrer-Policy: no-referrer` makes browsers send `Origin: null` on their
        # own posts; then only the browser-set Sec-Fetch-Site can vouch for them.
        return site == "same-origin"
    if origin is None:
        return True
    expected = urlsplit(public_url)
    given = urlsplit(origin)
    return (given.scheme, given.netloc) == (expected.scheme, expected.netloc)
