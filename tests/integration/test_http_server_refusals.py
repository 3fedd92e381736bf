"""The server's check before the application (`HttpServer.refuse`), as the gate uses it: a join
attempt from an address the gate already knows is over its limit is answered by the server as
soon as its head is read, with the very bytes the gate's ASGI path sends for it.

The whole gate runs in-process on the memory store, served by Meetgate's server on a loopback
port; the hook is switched on and off between requests on one connection, so that both paths
answer the same request from the same gate. A wrapper around the gate counts its ASGI calls.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from gateway.access_log import AccessLog
from gateway.admission.invites import make_invite
from gateway.app import create_app
from gateway.metrics import Metrics
from gateway.proxy.gate import Gate
from gateway.settings import load_settings
from gateway.store.memory import MemoryStore
from gateway.store.records import Role, Room
from tests.fixtures.asgi_servers import ServedApp, serve_app

OPEN = '{"per_minute": 10000000, "burst": 1000000}'
# Two attempts, then a minute's wait: the refusal stays known for the whole test.
ENVIRON = {
    "MEETGATE_CHALLENGE__MODE": "off",
    "MEETGATE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
    "MEETGATE_RATES__ADDRESS": '{"per_minute": 1, "burst": 2}',
    **{f"MEETGATE_RATES__{kind}": OPEN for kind in ("NETWORK", "ROOM", "GATE")},
    **{f"MEETGATE_RATES__{kind}": OPEN for kind in ("IDENTITY", "INVITE")},
}
WITHIN = 10.0


class Counted:
    """The gate behind its access log, as `meetgate serve` runs it, counting the ASGI calls."""

    def __init__(self, gate: Gate) -> None:
        self.app = AccessLog(gate, client_addresses="truncated")
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@dataclass
class Served:
    server: ServedApp
    gate: Gate
    app: Counted
    metrics: Metrics
    token: str

    def hook(self, on: bool) -> None:
        async def switch() -> None:
            assert self.server.server is not None
            self.server.server.refuse = self.gate.refuse_known if on else None

        self.server.run(switch())

    def metric(self, name: str) -> float:
        async def render() -> str:
            return self.metrics.render()

        text: str = self.server.run(render())
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    settings = load_settings(None, environ=ENVIRON)
    store = MemoryStore()
    metrics = Metrics()
    gate = create_app(settings, store, metrics)
    app = Counted(gate)
    server = serve_app("meetgate", app)
    made = make_invite(
        room="rally",
        name="Ada",
        role=Role.HOST,
        max_uses=10_000,
        lifetime_seconds=3600,
        now=time.time(),
    )

    async def prepare() -> None:
        await store.create_room(Room(name="rally", title="Rally", created_at=time.time()))
        await store.add_invite(made.invite)

    server.run(prepare())
    try:
        yield Served(server, gate, app, metrics, made.token)
    finally:
        server.run(gate.aclose())
        server.stop()


class Wire:
    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(WITHIN)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def answer(self, head_only: bool = False) -> bytes:
        """The next response's bytes (by its content-length; none for a HEAD)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        found = re.search(rb"\r\ncontent-length: (\d+)", head, re.I)
        length = 0 if head_only or found is None else int(found.group(1))
        while len(rest) < length:
            self.buffer = head + b"\r\n\r\n" + rest
            self._fill()
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
        self.buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        assert data, f"closed; had {self.buffer[:200]!r}"
        self.buffer += data


def join_request(method: str, path: str, address: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: gate.test", f"x-forwarded-for: {address}"]
    lines += headers
    if body:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def retry_after(answer: bytes) -> bytes | None:
    found = re.search(rb"\r\nretry-after: (\d+)", answer, re.I)
    return found.group(1) if found else None


def without_date(answer: bytes) -> bytes:
    return re.sub(rb"\r\ndate: [^\r]*", b"", answer, flags=re.I)


def refused_address(served: Served, address: str) -> None:
    """`address` made known to be over its limit: its attempts until the gate refuses one."""
    served.hook(False)
    with Wire(served.server.port) as wire:
        for _ in range(5):
            wire.sock.sendall(join_request("GET", f"/j/{served.token}", address))
            if wire.answer().startswith(b"HTTP/1.1 429 "):
                return
    raise AssertionError("the address limit never refused")


def both_ways(served: Served, request: bytes, head_only: bool = False) -> tuple[bytes, bytes]:
    """The answers to `request` through the ASGI path and through the hook, on one connection,
    with their Retry-After alike (a second boundary between them changes it: tried again)."""
    for _ in range(3):
        with Wire(served.server.port) as wire:
            served.hook(False)
            calls = served.app.calls
            wire.sock.sendall(request)
            through_app = wire.answer(head_only)
            assert served.app.calls == calls + 1
            served.hook(True)
            wire.sock.sendall(request)
            through_hook = wire.answer(head_only)
            assert served.app.calls == calls + 1, "the application was called"
        if retry_after(through_app) == retry_after(through_hook):
            return through_app, through_hook
    raise AssertionError("Retry-After changed three times in a row")


@pytest.mark.parametrize(
    ("method", "headers", "body"),
    [
        ("GET", (), b""),
        ("GET", ("accept-language: de-DE,de;q=0.9", "cookie: other=1"), b""),
        ("GET", ("accept: application/json",), b""),
        ("HEAD", (), b""),
        ("POST", ("content-type: application/x-www-form-urlencoded",), b"name=Ada&x=1"),
    ],
    ids=["page", "language", "json", "head", "post"],
)
def test_a_known_refusal_has_the_same_bytes_through_both_paths(
    served: Served, method: str, headers: tuple[str, ...], body: bytes
) -> None:
    """Catches the hook's answer differing from the gate's own in any byte but the date (a
    header, the security headers, Retry-After, the page's language or form, HEAD's empty body),
    and the application called although the hook answered."""
    address = "198.51.100.10"
    refused_address(served, address)
    request = join_request(method, f"/j/{served.token}", address, *headers, body=body)
    through_app, through_hook = both_ways(served, request, head_only=method == "HEAD")
    assert through_hook.startswith(b"HTTP/1.1 429 ")
    assert b"retry-after: " in through_hook.lower()
    assert b"x-request-id" not in through_hook.lower()
    assert without_date(through_hook) == without_date(through_app)


def test_the_connection_goes_on_after_the_hook_answers(served: Served) -> None:
    """A refused POST whose body comes after its answer, then a health check on the same
    connection: catches the body read as a request, or the connection left unusable."""
    address = "198.51.100.11"
    refused_address(served, address)
    served.hook(True)
    body = b"name=" + b"x" * 3000
    post = join_request("POST", f"/j/{served.token}", address, body=body)
    head = post[: post.index(b"\r\n\r\n") + 4]
    with Wire(served.server.port) as wire:
        wire.sock.sendall(head)
        assert wire.answer().startswith(b"HTTP/1.1 429 ")
        wire.sock.sendall(body + b"GET /_meetgate/health HTTP/1.1\r\nhost: gate.test\r\n\r\n")
        assert wire.answer().startswith(b"HTTP/1.1 200 ")


def test_the_hook_resolves_the_client_address_as_the_gate_does(served: Served) -> None:
    """X-Forwarded-For is believed only from a trusted proxy (127.0.0.1 here): the same header
    from 127.0.0.2 names nobody, so the attempt is that peer's own, goes to the application
    and is not refused. Catches a hook that takes the header from anyone (a client could get
    any address refused) or ignores it from the proxy."""
    address = "198.51.100.12"
    refused_address(served, address)
    served.hook(True)
    calls = served.app.calls
    with Wire(served.server.port, source="127.0.0.2") as wire:
        wire.sock.sendall(join_request("GET", f"/j/{served.token}", address))
        assert wire.answer().startswith(b"HTTP/1.1 200 ")
    assert served.app.calls == calls + 1
    with Wire(served.server.port) as wire:
        wire.sock.sendall(join_request("GET", f"/j/{served.token}", address))
        assert wire.answer().startswith(b"HTTP/1.1 429 ")
    assert served.app.calls == calls + 1


def test_the_hooks_refusals_are_counted_and_not_logged(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Catches a refusal by the hook missing from the metrics (the rate-limited count, and a
    refused join for a POST), or a log line about it (the access log writes one per request it
    sees; the hook's requests it never sees)."""
    address = "198.51.100.13"
    refused_address(served, address)
    served.hook(True)
    limited = 'meetgate_rate_limited_total{limit="address"}'
    joins = 'meetgate_join_seconds_count{outcome="refused"}'
    before = served.metric(limited), served.metric(joins)
    caplog.clear()
    with caplog.at_level(logging.DEBUG), Wire(served.server.port) as wire:
        for method in ("GET", "POST", "POST"):
            wire.sock.sendall(join_request(method, f"/j/{served.token}", address, body=b"a=1"))
            assert wire.answer().startswith(b"HTTP/1.1 429 ")
        # A request the access log does write, on the same connection: once its line is there,
        # any line for the requests before it would be too.
        wire.sock.sendall(b"GET /_meetgate/health HTTP/1.1\r\nhost: gate.test\r\n\r\n")
        assert wire.answer().startswith(b"HTTP/1.1 200 ")
        deadline = time.monotonic() + WITHIN
        while not any("/_meetgate/health" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the health check's access line never came"
            time.sleep(0.01)
    assert served.metric(limited) == before[0] + 3
    assert served.metric(joins) == before[1] + 2
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("meetgate")]
    assert len(lines) == 1 and "/_meetgate/health" in lines[0], lines


def test_a_refusal_that_cannot_be_written_is_answered_500() -> None:
    """The check answers with a header field that cannot be written (a CR LF in its value): the
    client gets 500 and the connection closes, and the application is not called. Catches the
    injected field written, or the request left unanswered."""
    called: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope["path"])

    def refuse(scope: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return 403, [(b"x-a", b"a\r\nset-cookie: x=1")], b"no\n"

    server = serve_app("meetgate", app)
    try:

        async def hook() -> None:
            assert server.server is not None
            server.server.refuse = refuse

        server.run(hook())
        with Wire(server.port) as wire:
            wire.sock.sendall(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
            answer = wire.answer()
            assert answer.startswith(b"HTTP/1.1 500 ")
            assert b"set-cookie" not in answer
            assert wire.sock.recv(65536) == b""
    finally:
        server.stop()
    assert called == []
