"""HTTP relayed exactly or not at all, through the real `meetgate serve`.

Both ends are raw sockets written byte by byte in the test: a client that sends trailers or
stops mid-body, and an upstream (Jitsi's web server and prosody's BOSH in one) that records every
byte and event of each request it is sent, and answers with trailers or cuts its answer off.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httptools
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import stop_process, wait_until
from tests.integration.journeys import Admitted, admit, new_room, signalling_query

pytestmark = pytest.mark.slow

HTTPBIND = "http://jabber.org/protocol/httpbind"
RELAYED = "/conference-request/v1"
BOSH_ANSWER = f"<body xmlns='{HTTPBIND}' sid='s1'/>".encode()
TRAILER_ANSWER = b"trailed answer"


@dataclass
class Received:
    """One request as the upstream read it: header fields, trailer fields, body, whether it
    ended, and whether its connection has closed since."""

    target: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    head_done: bool = False
    complete: bool = False
    closed: bool = False

    def header_names(self) -> set[bytes]:
        return {name.lower() for name, _ in self.headers}


class _RequestEvents:
    def __init__(self, received: Received) -> None:
        self.received = received

    def on_url(self, url: bytes) -> None:
        self.received.target += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self.received.trailers if self.received.head_done else self.received.headers
        fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.received.head_done = True

    def on_body(self, body: bytes) -> None:
        self.received.body += body

    def on_message_complete(self) -> None:
        self.received.complete = True


def _answer(target: str) -> bytes:
    """What the upstream writes, in one write, for a complete request to `target`."""
    path = target.split("?", 1)[0]
    if path == "/http-bind":
        head = f"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {len(BOSH_ANSWER)}"
        return head.encode() + b"\r\n\r\n" + BOSH_ANSWER
    if path == "/config.js":
        return (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-upstream-trailer\r\n\r\n"
            + b"%x\r\n%b\r\n" % (len(TRAILER_ANSWER), TRAILER_ANSWER)
            + b"0\r\nx-upstream-trailer: leaked\r\n\r\n"
        )
    return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


CUT_ANSWERS = {
    "/libs/cut-sized.js": b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 1000,
    "/libs/cut-chunked.js": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n"
    + b"x" * 1000
    + b"\r\n",
}


class RawUpstream:
    """A thread per connection; each request recorded in `requests` as it is read."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            received, parser = self._next_request()
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    received.closed = True
                    return
                parser.feed_data(data)
                path = received.target.split("?", 1)[0]
                if received.head_done and path in CUT_ANSWERS:
                    conn.sendall(CUT_ANSWERS[path])
                    return
                if received.complete:
                    conn.sendall(_answer(received.target))
                    received, parser = self._next_request()

    def _next_request(self) -> tuple[Received, httptools.HttpRequestParser]:
        received = Received()
        with self._lock:
            self.requests.append(received)
        return received, httptools.HttpRequestParser(_RequestEvents(received))

    def to(self, path: str, marker: str = "") -> list[Received]:
        """The requests for `path` (with `marker` in their query) whose head has been read."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.head_done and r.target.split("?", 1)[0] == path and marker in r.target
            ]

    def close(self) -> None:
        self._stopping = True
        self._listener.close()


@dataclass(frozen=True)
class Setup:
    gateway: GatewayServer
    upstream: RawUpstream


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    upstream = RawUpstream()
    gateway, proc = start_gateway(
        tmp_path_factory.mktemp("relay-exact"),
        upstream=upstream.url,
        signalling_upstream=upstream.url,
        jitsi=f'relayed_endpoints = ["{RELAYED}"]',
    )
    yield Setup(gateway, upstream)
    stop_process(proc)
    upstream.close()


def raw_connection(gateway: GatewayServer) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    head_done: bool = False
    complete: bool = False

    def on_header(self, name: bytes, value: bytes) -> None:
        (self.trailers if self.head_done else self.headers).append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def exchange(gateway: GatewayServer, request: bytes) -> tuple[Answer, bytes]:
    """Send `request` in one write and read the answer to the connection's end; the answer as
    parsed, and every byte that came."""
    answer = Answer()
    parser = httptools.HttpResponseParser(answer)
    raw = b""
    with raw_connection(gateway) as sock:
        sock.sendall(request)
        while not answer.complete:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                break
            raw += data
            parser.feed_data(data)
    answer.status = parser.get_status_code() if answer.head_done else 0
    return answer, raw


def chunked(body: bytes, pieces: int = 3) -> bytes:
    size = -(-len(body) // pieces)
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in parts)


CLIENT_TRAILERS = b"0\r\nx-client-trailer: leaked\r\nx-forwarded-for: 6.6.6.6\r\n\r\n"


def bosh_request(admitted: Admitted, body: bytes, framing: str = "chunked") -> bytes:
    head = (
        f"POST /http-bind?{signalling_query(admitted)} HTTP/1.1\r\nhost: meet.test\r\n"
        "content-type: text/xml; charset=utf-8\r\nconnection: close\r\n"
    ).encode()
    if framing == "chunked":
        return (
            head
            + b"transfer-encoding: chunked\r\ntrailer: x-client-trailer\r\n\r\n"
            + chunked(body)
            + CLIENT_TRAILERS
        )
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


def cookie_request(admitted: Admitted, method: str, path: str, rest: bytes) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nhost: meet.test\r\ncookie: meetgate={admitted.cookie}\r\n"
        "connection: close\r\n"
    ).encode() + rest


def no_trailer_in(received: Received) -> None:
    assert received.complete
    assert b"x-client-trailer" not in received.header_names()
    assert received.trailers == []
    forwarded_for = [v for n, v in received.headers if n.lower() == b"x-forwarded-for"]
    assert forwarded_for == [b"127.0.0.1"]


# Trailers (RFC 9110 §6.5): dropped both ways, never turned into header fields.


def test_request_trailers_never_reach_the_upstream(setup: Setup) -> None:
    gateway, upstream = setup.gateway, setup.upstream
    room = new_room(gateway)
    attendee = admit(gateway, room)
    body = f"<body rid='1' xmlns='{HTTPBIND}' to='meet.test' wait='5' hold='1'/>".encode()

    answer, _ = exchange(gateway, bosh_request(attendee, body))
    assert answer.status == 200 and answer.body == BOSH_ANSWER
    (bosh,) = upstream.to("/http-bind", room)
    no_trailer_in(bosh)
    assert bosh.body == body

    # Streamed on (a relayed endpoint), chunked again toward the upstream.
    payload = b"x" * 5000
    request = b"transfer-encoding: chunked\r\n\r\n" + chunked(payload) + CLIENT_TRAILERS
    answer, _ = exchange(gateway, cookie_request(attendee, "POST", f"{RELAYED}?m={room}", request))
    assert answer.status == 200 and answer.complete
    (streamed,) = upstream.to(RELAYED, room)
    no_trailer_in(streamed)
    assert streamed.body == payload

    # A GET's head and its (unread) chunked body with trailers, all in one read by the server.
    request = b"transfer-encoding: chunked\r\n\r\n" + chunked(b"ignored") + CLIENT_TRAILERS
    answer, _ = exchange(
        gateway, cookie_request(attendee, "GET", f"/libs/app.js?m={room}", request)
    )
    assert answer.status == 200
    (page,) = upstream.to("/libs/app.js", room)
    assert b"x-client-trailer" not in page.header_names()
    assert [v for n, v in page.headers if n.lower() == b"x-forwarded-for"] == [b"127.0.0.1"]


def test_response_trailers_never_reach_the_client(setup: Setup) -> None:
    gateway, upstream = setup.gateway, setup.upstream
    room = new_room(gateway)
    attendee = admit(gateway, room)
    answer, raw = exchange(
        gateway, cookie_request(attendee, "GET", f"/config.js?m={room}", b"\r\n")
    )
    assert upstream.to("/config.js", room)
    assert answer.status == 200 and answer.complete
    assert answer.body == TRAILER_ANSWER
    assert b"x-upstream-trailer" not in raw.lower()
    assert answer.trailers == []
    assert b"trailer" not in {name for name, _ in answer.headers}


# An upload the client cuts off is aborted upstream, never completed short.


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_an_upload_cut_by_the_client_is_aborted_upstream(setup: Setup, framing: str) -> None:
    gateway, upstream = setup.gateway, setup.upstream
    room = new_room(gateway)
    attendee = admit(gateway, room)
    path = f"{RELAYED}?m={room}"
    if framing == "chunked":
        first_half = b"transfer-encoding: chunked\r\n\r\n" + chunked(b"y" * 4000, pieces=1)
    else:
        first_half = b"content-length: 8000\r\n\r\n" + b"y" * 4000
    with raw_connection(gateway) as sock:
        sock.sendall(cookie_request(attendee, "POST", path, first_half))
        wait_until(
            lambda: any(r.body for r in upstream.to(RELAYED, room)),
            timeout=10,
            what="the first half of the body upstream",
        )
    (received,) = upstream.to(RELAYED, room)
    wait_until(
        lambda: received.closed or received.complete,
        timeout=10,
        what="the upstream request to be aborted or completed",
    )
    assert not received.complete
    assert received.closed
    assert received.body == b"y" * 4000


def test_a_bosh_body_cut_by_the_client_is_not_passed_on(setup: Setup) -> None:
    gateway, upstream = setup.gateway, setup.upstream
    room = new_room(gateway)
    attendee = admit(gateway, room)
    body = f"<body rid='2' sid='cut-off' xmlns='{HTTPBIND}'/>".encode()
    request = bosh_request(attendee, body, framing="content-length")
    aborted_before = gateway.log_text().count("request_aborted")
    with raw_connection(gateway) as sock:
        sock.sendall(request[: -len(body) // 2])
    wait_until(
        lambda: gateway.log_text().count("request_aborted") > aborted_before,
        timeout=10,
        what="the gate to see the client go",
    )
    assert upstream.to("/http-bind", room) == []


# A response the upstream cuts off never looks whole to the client.


@pytest.mark.parametrize("path", sorted(CUT_ANSWERS))
def test_a_response_cut_by_the_upstream_is_not_complete(setup: Setup, path: str) -> None:
    gateway = setup.gateway
    attendee = admit(gateway, new_room(gateway))
    answer, _ = exchange(gateway, cookie_request(attendee, "GET", path, b"\r\n"))
    assert answer.status == 200
    assert not answer.complete
    assert answer.body == b"x" * len(answer.body) and len(answer.body) <= 1000


# BOSH bodies the gate cannot read as prosody would are refused, not forwarded.


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"rid=1 sid=x",
        f"<body rid='1' xmlns='{HTTPBIND}'>".encode(),
        b"<body rid='1' xmlns='jabber:client'/>",
        f"<!DOCTYPE body [<!ENTITY s 'x'>]><body rid='1' sid='&s;' xmlns='{HTTPBIND}'/>".encode(),
        f"<body sid='no-rid' xmlns='{HTTPBIND}'/>".encode(),
        f"<body rid='1' sid='not a sid' xmlns='{HTTPBIND}'/>".encode(),
    ],
)
def test_a_body_that_is_not_a_bosh_body_is_refused(setup: Setup, body: bytes) -> None:
    gateway, upstream = setup.gateway, setup.upstream
    room = new_room(gateway)
    attendee = admit(gateway, room)
    answer, _ = exchange(gateway, bosh_request(attendee, body, framing="content-length"))
    assert answer.status == 400
    assert b"BOSH" in answer.body
    assert upstream.to("/http-bind", room) == []
