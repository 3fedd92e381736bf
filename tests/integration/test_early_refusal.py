"""The server protocol that answers known-refused join attempts itself (gateway/proxy/
early_refusal.py), under a real uvicorn: such requests never reach the app, every other one
does, intact, on the same connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.proxy.early_refusal import early_refusal_protocol
from tests.fixtures.processes import free_port


class App:
    """Answers 200 with the path and the body it read; remembers what it was called for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls.append(scope["path"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = scope["path"].encode() + b" " + body
        headers = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def refuse_early(scope: Scope) -> float:
    if scope["path"] == "/j/broken":
        raise RuntimeError("a bug in the early check")
    return 7.5 if scope["path"].startswith("/j/refused") else 0.0


SERVERS: list[uvicorn.Server] = []


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[App, int]]:
    app, port = App(), free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=early_refusal_protocol(refuse_early, secure=False),
        log_config=None,
        lifespan="off",
    )
    served = uvicorn.Server(config)
    SERVERS.append(served)
    thread = threading.Thread(target=lambda: asyncio.run(served.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not served.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield app, port
    served.should_exit = True
    thread.join(10)


def exchange(port: int, data: bytes, answers: int) -> list[bytes]:
    """Send `data` on one connection; the first `answers` responses, whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        pending, found = b"", []
        while len(found) < answers:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(found)} answers"
            pending += chunk
            while b"\r\n\r\n" in pending:
                head, rest = pending.split(b"\r\n\r\n", 1)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                found.append(head + b"\r\n\r\n" + rest[:length])
                pending = rest[length:]
        return found


def test_refused_attempts_never_reach_the_app(server: tuple[App, int]) -> None:
    app, port = server
    before = len(app.calls)
    body = b"name=Ada"
    post = b"POST /j/refused HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    kept = b"POST /j/welcome HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    answers = exchange(port, post + post + kept + post, 4)
    statuses = [answer.split(b" ", 2)[1] for answer in answers]
    assert statuses == [b"429", b"429", b"200", b"429"]
    assert app.calls[before:] == ["/j/welcome"]
    # The refused bodies were skipped, the other one read whole.
    assert answers[2].endswith(b"\r\n\r\n/j/welcome name=Ada")
    refused = answers[0].lower()
    assert b"\r\nretry-after: 8\r\n" in refused and b"\r\ndate: " in refused
    assert b"x-request-id" not in refused


def test_a_refused_attempt_in_http_1_0_closes_the_connection(server: tuple[App, int]) -> None:
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /j/refused HTTP/1.0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 429 ") and b"\r\nconnection: close\r\n" in received


def test_many_refused_attempts_pipelined_behind_a_served_one(server: tuple[App, int]) -> None:
    # Queued behind a request the app serves, each refused one finishes as it is answered and
    # hands the connection to the next: hundreds of them must not nest one call per request.
    app, port = server
    before = len(app.calls)
    served = b"GET /served HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
    refused = b"GET /j/refused HTTP/1.1\r\nhost: x\r\n\r\n"
    answers = exchange(port, served + refused * 1500 + served, 1502)
    statuses = [answer.split(b" ", 2)[1] for answer in answers]
    assert statuses == [b"200"] + [b"429"] * 1500 + [b"200"]
    assert app.calls[before:] == ["/served", "/served"]


def test_a_client_that_does_not_read_is_not_answered_without_limit(
    server: tuple[App, int],
) -> None:
    # Pipelined refused attempts from a client that never reads: the kept answers must not
    # pile up in the server's write buffer (each 25-byte request would buy 1.2 KB of it).
    _, port = server
    refused = b"GET /j/refused HTTP/1.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = 0
        deadline = time.monotonic() + 3
        with contextlib.suppress(TimeoutError):
            while sent < 8_000_000 and time.monotonic() < deadline:
                sent += sock.send(refused * 4000)
        time.sleep(0.5)
        buffered = [
            protocol.transport.get_write_buffer_size()
            for protocol in SERVERS[-1].server_state.connections
        ]
    assert sent > 1_000_000, "the server stopped reading at once"
    assert max(buffered) < 2_000_000, f"answers piled up: {max(buffered):,} bytes"


def test_requests_read_with_a_closing_refusal_are_not_started(server: tuple[App, int]) -> None:
    app, port = server
    before = len(app.calls)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Refused before its body was asked for, so closed; the body and the next request
        # came in the same write anyway.
        sock.sendall(
            b"POST /j/refused HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: 5\r\n\r\nhello"
            b"GET /after HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 429 ") and received.count(b"HTTP/1.1 ") == 1
    time.sleep(0.2)
    assert app.calls[before:] == []


def test_a_pipelined_request_waiting_for_continue_closes_only_after_its_answer(
    server: tuple[App, int],
) -> None:
    _, port = server
    answers = exchange(
        port,
        b"GET /j/refused HTTP/1.1\r\nhost: x\r\n\r\n"
        b"POST /j/refused HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
        b"content-length: 5\r\n\r\n",
        2,
    )
    assert b"connection: close" not in answers[0].lower()
    assert b"\r\nconnection: close\r\n" in answers[1].lower()


def test_an_error_in_the_early_check_leaves_the_answer_to_the_app(
    server: tuple[App, int],
) -> None:
    app, port = server
    before = len(app.calls)
    [answer] = exchange(port, b"GET /j/broken HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", 1)
    assert answer.startswith(b"HTTP/1.1 200 ") and app.calls[before:] == ["/j/broken"]
