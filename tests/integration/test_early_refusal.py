"""The server protocol that answers known-refused join attempts itself (gateway/proxy/
early_refusal.py), under a real uvicorn: such requests never reach the app, every other one
does, intact, on the same connection."""

from __future__ import annotations

import asyncio
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
    return 7.5 if scope["path"].startswith("/j/refused") else 0.0


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
