"""The benchmark's stand-in for Jitsi's web server: two fixed bodies, a WebSocket echo (on a
relayed endpoint's path and on signalling's) and a BOSH echo.

A pure ASGI app, so the upstream costs as little as an ASGI server can; the bodies are
deterministic so that a run can check it received every byte.
"""

from __future__ import annotations

import hashlib

from starlette.types import Receive, Scope, Send

SMALL_PATH = "/libs/bench-2k.bin"
LARGE_PATH = "/libs/bench-3m.bin"
# The gate relays WebSockets on signalling and on the relayed endpoints its config names only
# (static paths are plain HTTP): the bench's gateways relay RELAYED_ENDPOINT (bench/servers.py),
# as a deployment relays Jitsi's bridge channel.
RELAYED_ENDPOINT = "/colibri-ws/"
ECHO_PATH = RELAYED_ENDPOINT + "bench-echo"
# Signalling (`/xmpp-websocket`) echoes too, so that a gateway's signalling upstream can be this
# app: the wire guard's cost is measured on it (bench/guard.py), without prosody's own work.
SIGNALLING_PATH = "/xmpp-websocket"
# BOSH (`/http-bind`) echoes too: each POST is answered with the body it carried, so that what a
# client reads back is what the gate forwarded (the wire guard's relay property test).
BOSH_PATH = "/http-bind"


def body_of(size: int) -> bytes:
    """`size` deterministic bytes: a SHA-256 chain, so no two 32-byte blocks repeat."""
    blocks = []
    block = b"meetgate-bench"
    for _ in range(size // 32 + 1):
        block = hashlib.sha256(block).digest()
        blocks.append(block)
    return b"".join(blocks)[:size]


BODIES = {SMALL_PATH: body_of(2 * 1024), LARGE_PATH: body_of(3 * 1024 * 1024)}


async def _bosh_echo(receive: Receive, send: Send) -> None:
    received = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        received.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(received)
    headers = [
        (b"content-type", b"text/xml; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == BOSH_PATH and scope["method"] == "POST":
        await _bosh_echo(receive, send)
        return
    body = BODIES.get(scope["path"])
    if body is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _echo(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        elif message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        if scope["path"] not in (ECHO_PATH, SIGNALLING_PATH):
            await send({"type": "websocket.close", "code": 1008})
            return
        await _echo(receive, send)
