"""The baseline for redemptions: the least an ASGI app can do to answer a join POST.

It answers every request with the shape of a successful redemption (303, a Location and a
Set-Cookie header) and does nothing else, so `redemptions/s ÷ bare/s` is the share of the
server stack's capacity left once the admission pipeline runs.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

HEADERS = [
    (b"location", b"/bench#jwt=x"),
    (b"set-cookie", b"meetgate=x; HttpOnly; Path=/; SameSite=lax"),
    (b"content-length", b"0"),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 303, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b""})
