"""The baselines for redemptions and for the forward-auth check: the least an ASGI app can do to
answer a join POST or an auth subrequest.

A POST gets the shape of a successful redemption (303, a Location and a Set-Cookie header); any
other request the shape of a passed forward-auth check (204, `Cache-Control: no-store`). Nothing
else is done, so `redemptions/s ÷ bare/s` is the share of the server stack's capacity left once
the admission pipeline runs, and likewise for the check.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

HEADERS = [
    (b"location", b"/bench#jwt=x"),
    (b"set-cookie", b"meetgate=x; HttpOnly; Path=/; SameSite=lax"),
    (b"content-length", b"0"),
]
AUTH_HEADERS = [(b"cache-control", b"no-store")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        await send({"type": "http.response.start", "status": 303, "headers": HEADERS})
    else:
        await send({"type": "http.response.start", "status": 204, "headers": AUTH_HEADERS})
    await send({"type": "http.response.body", "body": b""})
