"""The admin API fuzzed from its own OpenAPI schema (schemathesis), and its answers to bad input:
one JSON shape for every error, a capped body refused before it is read, never a 500."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from starlette.types import Message

from gateway.admin_api import create_admin_app
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.settings import load_settings
from gateway.store.memory import MemoryStore
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import stop_process

CAP = 64 * 1024
SETTINGS = load_settings(None, environ={"MEETGATE_LIMITS__MAX_ADMIN_BODY_BYTES": str(CAP)})
TOKEN = SETTINGS.admin.token.get_secret_value()
ADMIN = create_admin_app(SETTINGS, MemoryStore(), Metrics())
PROBLEM_KEYS = {"error", "message", "request_id", "fields"}

# The schema is read in-process with the token, so it does not matter whether /openapi.json is
# public.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", ADMIN, headers={"authorization": f"Bearer {TOKEN}"}
)
# Bounded so the whole run takes seconds; the coverage phase adds its own cases to these.
schema.config.generation.update(max_examples=60)
# A request the schema allows may still break one of Meetgate's rules the schema cannot state
# (the OpenID providers this config names, an address's syntax, a title's characters): that is
# a 400 saying which; a body the schema allows may be larger than the API takes ([limits]
# max_admin_body_bytes: a policy's longest lists at their longest), a 413. Anything else but
# success, 404 (nothing of that name) or 409 is a failure.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    "2xx",
    "400",
    "404",
    "409",
    "413",
]
# A body the schema refuses must be refused. The body cap comes first: a list longer than its
# maxItems, of long strings (a policy's `host_emails`), is larger than the cap and refused with a
# 413 before it is parsed. schemathesis's own list of refusals has no 413, so it took that
# answer for invalid data accepted.
schema.config.checks.negative_data_rejection.expected_statuses = [
    "400",
    "401",
    "404",
    "405",
    "409",
    "413",
    "415",
    "422",
]


@schema.auth()
class AdminToken:
    """The admin token, as the CLI sends it; schemathesis's auth checks also try without."""

    def get(self, case: Any, context: Any) -> str:
        return TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
def test_admin_api_fuzzed_from_its_schema(case: Any) -> None:
    """Every check schemathesis has: no 5xx, every status, content type and body as documented,
    what the schema refuses refused, what it allows accepted, the token enforced."""
    case.call_and_validate()


@pytest.fixture
async def admin() -> Any:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(ADMIN),
        base_url="http://admin",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["error"] == code and body["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body)


JSON = {"content-type": "application/json"}
# Each kind of bad input once; SENTINEL marks what was sent, never to be echoed back.
BAD_INPUTS = [
    ("malformed", "POST", "/api/v1/rooms", b'{"name": "SENTINEL"', JSON, 400, "malformed_json"),
    ("not utf-8", "POST", "/api/v1/rooms", b'{"name": "\xff"}', JSON, 400, "malformed_json"),
    ("too deep", "POST", "/api/v1/rooms", b"[" * 50_000, JSON, 400, "malformed_json"),
    (
        "huge number",
        "POST",
        "/api/v1/rooms/a/invites",
        b'{"max_uses": ' + b"9" * 5000 + b"}",
        JSON,
        400,
        "malformed_json",
    ),
    (
        "a form",
        "POST",
        "/api/v1/rooms",
        b"name=SENTINEL",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    (
        "no type",
        "POST",
        "/api/v1/rooms",
        b'{"name": "SENTINEL"}',
        {},
        415,
        "unsupported_media_type",
    ),
    ("a list", "POST", "/api/v1/rooms", b'["SENTINEL"]', JSON, 422, "request_invalid"),
    ("wrong type", "POST", "/api/v1/rooms", b'{"name": 5}', JSON, 422, "request_invalid"),
    (
        "string for bool",
        "PATCH",
        "/api/v1/rooms/a",
        b'{"locked": "false"}',
        JSON,
        422,
        "request_invalid",
    ),
    (
        "string for int",
        "POST",
        "/api/v1/rooms/a/invites",
        b'{"name": "A", "max_uses": "5"}',
        JSON,
        422,
        "request_invalid",
    ),
    (
        "unknown key",
        "POST",
        "/api/v1/rooms",
        b'{"name": "a", "bogus": "SENTINEL"}',
        JSON,
        422,
        "request_invalid",
    ),
    (
        "too long",
        "POST",
        "/api/v1/rooms",
        json.dumps({"name": "a", "title": "SENTINEL" * 40}).encode(),
        JSON,
        422,
        "request_invalid",
    ),
    ("bad name", "POST", "/api/v1/rooms", b'{"name": "SENTINEL"}', JSON, 400, "invalid_room_name"),
    ("over the cap", "POST", "/api/v1/rooms", b" " * (CAP + 1), JSON, 413, "request_too_large"),
    ("no such path", "GET", "/api/v1/SENTINEL", b"", {}, 404, "not_found"),
    ("no such room", "GET", "/api/v1/rooms/nothing-here", b"", {}, 404, "room_not_found"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
async def test_bad_input_gets_a_problem(
    admin: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    response = await admin.request(method, path, content=body, headers=headers)
    problem = assert_problem(response, status, code)
    assert "SENTINEL" not in response.text
    if code == "request_invalid":
        assert problem["fields"] and all(f["where"].startswith("body") for f in problem["fields"])
        # The CLI prints the message alone: it names each refused value.
        assert problem["fields"][0]["where"] in problem["message"]


async def test_a_wrong_method_names_every_method_the_path_takes(admin: httpx.AsyncClient) -> None:
    problem = await admin.put("/api/v1/rooms")
    assert_problem(problem, 405, "method_not_allowed")
    # Starlette alone would name the first route's methods (GET), not POST's as well.
    assert problem.headers["allow"] == "GET, POST"


async def test_no_token_gets_the_same_shape(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/api/v1/rooms", content=b"{", headers={"authorization": "Bearer wrong", **JSON}
    )
    assert_problem(response, 401, "admin_auth_failed")
    assert response.headers["www-authenticate"] == "Bearer"


class FailingStore(MemoryStore):
    """The memory store, but listing rooms fails: as a store that is away, or as a bug."""

    def __init__(self, failure: Exception) -> None:
        super().__init__()
        self.failure = failure

    async def list_rooms(self) -> Any:
        raise self.failure


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (StoreUnavailable(), 503, "store_unavailable"),
        (RuntimeError("a bug"), 500, "internal_error"),
    ],
)
async def test_a_store_outage_or_a_bug_gets_the_same_shape(
    failure: Exception, status: int, code: str
) -> None:
    app = create_admin_app(SETTINGS, FailingStore(failure), Metrics())
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://admin", headers={"authorization": f"Bearer {TOKEN}"}
    ) as client:
        response = await client.get("/api/v1/rooms")
    assert_problem(response, status, code)
    assert "a bug" not in response.text
    if status == 503:
        assert response.headers["retry-after"] == "5"


async def test_a_body_over_the_cap_is_refused_before_it_is_read() -> None:
    """Pure ASGI, so the test sees each read: the answer comes once the cap is passed (or at
    once, from Content-Length), and nothing after that is read."""
    chunk = b" " * 4096
    sent: list[Message] = []

    async def run(headers: list[tuple[bytes, bytes]]) -> int:
        reads = 0
        sent.clear()

        async def receive() -> Message:
            nonlocal reads
            reads += 1
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/v1/rooms",
            "raw_path": b"/api/v1/rooms",
            "query_string": b"",
            "root_path": "",
            "scheme": "http",
            "server": ("admin", 80),
            "headers": [(b"authorization", f"Bearer {TOKEN}".encode()), *headers],
        }
        await ADMIN(scope, receive, send)
        return reads

    # An endless body, with no length given: read up to just past the cap, then answered.
    assert await run([(b"content-type", b"application/json")]) == CAP // len(chunk) + 1
    assert sent[0]["status"] == 413
    declared = (b"content-length", str(100 * CAP).encode())
    assert await run([(b"content-type", b"application/json"), declared]) == 0
    assert sent[0]["status"] == 413


@pytest.fixture(scope="module")
def served_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    # Nothing here reaches Jitsi: the upstream is a port nobody listens on.
    server, proc = start_gateway(
        tmp_path_factory.mktemp("admin-fuzz"),
        upstream="http://127.0.0.1:9",
        extra=f"[limits]\nmax_admin_body_bytes = {CAP}\n",
    )
    yield server
    stop_process(proc)


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send `request` as it is over one socket and read the answer's head, with a deadline."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


@pytest.mark.slow
def test_real_server_refuses_bad_bodies(served_admin: GatewayServer) -> None:
    """Through uvicorn: a chunked body that never ends is answered 413 once past the cap (the
    socket's 10 s timeout fails the test if the server waits for the end), malformed JSON 400."""
    auth = f"authorization: Bearer {served_admin.admin_token}\r\n".encode()
    head = b"POST /api/v1/rooms HTTP/1.1\r\nhost: admin\r\ncontent-type: application/json\r\n"
    chunk = b" " * 8192
    unending = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(CAP // 8192 + 1))
    answer = raw_exchange(
        served_admin.admin_url, head + auth + b"transfer-encoding: chunked\r\n\r\n" + unending
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]

    with served_admin.admin() as client:
        malformed = client.post("/api/v1/rooms", content=b"{", headers=JSON)
        assert_problem(malformed, 400, "malformed_json")
        fine = client.post("/api/v1/rooms", json={"name": "after-the-refusals"})
        assert fine.status_code == 201, fine.text
    assert "Traceback" not in Path(served_admin.log_path).read_text(encoding="utf-8")
