"""A real OpenID provider (oidc-provider under Node, as tests/fixtures/oidc.py starts it) behind
fronts of the test's own that fail the way providers and the networks before them do: stopped (a
closed port), a 5xx or an HTML page for one path, an answer that is not JSON, a token endpoint
that hands out another token, a key set that is another provider's, a code used once already,
and a discovery document whose endpoints move. A gateway of its own per setup, so that what one
test leaves cached (the provider's document, its keys) is not another test's premise.

Each front is a real HTTP server (uvicorn, in a thread of its own) on a fixed port, forwarding
with httpx to the provider; stopping it closes the port, starting it again opens the same one.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.oidc import clients_for, oidc_table, start_oidc_provider
from tests.fixtures.processes import free_port, stop_process

PROVIDER = "flaky"
DISCOVERY = "/.well-known/openid-configuration"
ERROR_PAGE = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"


@dataclass
class Faults:
    """What a front does instead of forwarding, by path; read on every request."""

    # Hold the request unanswered while the path is listed (a blackholed provider), then carry
    # on with the faults below.
    hold: set[str] = field(default_factory=set)
    # Answer this status with an HTML error page (as a reverse proxy does).
    status: dict[str, int] = field(default_factory=dict)
    # Answer 200 with an HTML page where JSON belongs.
    html: set[str] = field(default_factory=set)
    # Forward twice and answer with the second answer (a code used once already).
    twice: set[str] = field(default_factory=set)
    # A token answer whose `id_token` has a signature that is not its own.
    tamper: set[str] = field(default_factory=set)
    # Replace fields of a JSON answer (the discovery document's endpoints, a token answer's
    # `id_token`) or answer with this JSON instead (`replace`: a key set).
    patch: dict[str, dict[str, Any]] = field(default_factory=dict)
    replace: dict[str, Any] = field(default_factory=dict)
    # Answer with this JSON the next time only, then forward again (a key set before rotation).
    once: dict[str, Any] = field(default_factory=dict)

    def clear(self) -> None:
        self.hold.clear()
        self.status.clear()
        self.html.clear()
        self.twice.clear()
        self.tamper.clear()
        self.patch.clear()
        self.replace.clear()
        self.once.clear()


class Front:
    """An HTTP front on 127.0.0.1:`port` for the provider on `target_port`."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.faults = Faults()
        self.requests: collections.Counter[str] = collections.Counter()
        # Requests held now (`Faults.hold`) whose client has not hung up, by path.
        self.holding: collections.Counter[str] = collections.Counter()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            access_log=False,
            http="h11",
            interface="asgi3",
        )
        server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            async def serve() -> None:
                task = asyncio.create_task(server.serve(sockets=[sock]))
                while not server.started and not task.done():
                    await asyncio.sleep(0.01)
                started.set()
                await task

            asyncio.run(serve())
            sock.close()

        self._server = server
        self._thread = threading.Thread(target=run, name=f"front-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(15):
            raise TimeoutError("the front did not start")

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(15)
        if self._thread.is_alive():
            raise TimeoutError("the front did not stop")
        self._server = self._thread = None

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.requests[path] += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        faults = self.faults
        if path in faults.hold and not await self._held(path, receive):
            return
        if path in faults.status:
            await _answer(send, faults.status[path], ERROR_PAGE, b"text/html")
            return
        if path in faults.html:
            await _answer(send, 200, ERROR_PAGE, b"text/html")
            return
        if path in faults.replace:
            await _answer(send, 200, json.dumps(faults.replace[path]).encode(), b"application/json")
            return
        if path in faults.once:
            once = faults.once.pop(path)
            await _answer(send, 200, json.dumps(once).encode(), b"application/json")
            return
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in (b"content-length", b"accept-encoding", b"connection")
        ]
        target = path + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.target_port}", trust_env=False, timeout=30
        ) as client:
            answer = await client.request(scope["method"], target, headers=headers, content=body)
            if path in faults.twice:
                answer = await client.request(
                    scope["method"], target, headers=headers, content=body
                )
        content = answer.content
        if path in faults.patch and answer.is_success:
            content = json.dumps({**answer.json(), **faults.patch[path]}).encode()
        if path in faults.tamper and answer.is_success:
            data = answer.json()
            data["id_token"] = _tampered(data["id_token"])
            content = json.dumps(data).encode()
        kept = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in answer.headers.multi_items()
            if name.lower()
            not in ("content-length", "transfer-encoding", "content-encoding", "connection")
        ]
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [*kept, (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _held(self, path: str, receive: Receive) -> bool:
        """Hold while `path` is in `Faults.hold`; False if the client hung up meanwhile."""
        self.holding[path] += 1
        # With the body read, the server's next message is the client's disconnect.
        gone = asyncio.ensure_future(receive())
        try:
            while path in self.faults.hold:
                if gone.done():
                    return False
                await asyncio.sleep(0.02)
            return True
        finally:
            self.holding[path] -= 1
            gone.cancel()


def _tampered(token: str) -> str:
    """`token` with one byte of its signature flipped."""
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0xFF
    return ".".join([head, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])


async def _answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def moved(url: str, front: Front) -> str:
    """`url` at `front`'s address instead of its own."""
    return front.url + urlsplit(url).path


@dataclass
class FaultySetup:
    gateway: GatewayServer
    # The issuer's address: discovery, the browser's way in, and (unless moved) every endpoint.
    front: Front
    # Where the discovery document sends the gate for the key set.
    keys: Front
    # The provider's own discovery document (its endpoints at `front`).
    document: dict[str, Any]

    def path(self, endpoint: str) -> str:
        return urlsplit(self.document[endpoint]).path


@contextmanager
def faulty_provider(workdir: Path, upstream: str, *, extra: str = "") -> Iterator[FaultySetup]:
    """A gateway whose provider `flaky` is a real oidc-provider behind `front` (its issuer's
    address), with its key set behind `keys`; `extra` adds TOML to the gateway's settings."""
    node_port = free_port()
    front = Front(node_port)
    keys = Front(node_port)
    gateway, gateway_proc = start_gateway(
        workdir / "gateway",
        upstream=upstream,
        extra=GENEROUS_LIMITS + oidc_table(PROVIDER, "Flaky Login", front.url) + extra,
    )
    procs = [gateway_proc]
    try:
        server, node = start_oidc_provider(
            workdir / "provider",
            node_port,
            clients=clients_for(gateway.url, PROVIDER),
            issuer=front.url,
        )
        procs.append(node)
        document = server.discovery()
        front.faults.patch[DISCOVERY] = {"jwks_uri": moved(document["jwks_uri"], keys)}
        front.start()
        keys.start()
        try:
            yield FaultySetup(gateway, front, keys, document)
        finally:
            # Held requests go on, so that the fronts can stop.
            front.faults.clear()
            keys.faults.clear()
            front.stop()
            keys.stop()
    finally:
        for proc in reversed(procs):
            stop_process(proc)
