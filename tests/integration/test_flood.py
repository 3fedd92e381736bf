"""Standing up to a flood: rate limits by address, network, room and invite; trusted proxies;
proof-of-work demanded by a host, an admin or the pressure itself; metrics.

Most of it is page logic, against the gateway in the test process
(tests/fixtures/in_process.py); the gate's own answers to repeat attempts (on the wire, and in
the access log) against the real `meetgate serve`."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.in_process import in_process_gateway
from tests.fixtures.oidc import (
    OidcProviderServer,
    authorize,
    callback_path,
    clients_for,
    oidc_table,
    start_oidc_provider,
)
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.proof_of_work import challenge, solve

pytestmark = pytest.mark.slow

TRUST_LOCAL_PROXY = 'trusted_proxies = ["127.0.0.1/32"]'
TIGHT = """
[rates]
address = {{ per_minute = 60, burst = 3 }}
network = {{ per_minute = 60, burst = 30 }}
room = {{ per_minute = 6000, burst = 300 }}
identity = {{ per_minute = 600, burst = 60 }}
invite = {{ per_minute = 600, burst = 60 }}
gate = {{ per_minute = 60000, burst = 3000 }}
[rates.rooms.quiet]
room = {{ per_minute = 60, burst = 2 }}
[rates.rooms.looked-at]
invite = {{ per_minute = 60, burst = 2 }}
[challenge]
mode = "{mode}"
pressure_threshold = 5
base_difficulty = 8
max_difficulty = 10
"""


# Proof-of-work always on. Asking for a challenge and answering one wrongly count against the
# address, so an attendee who asks, gets it wrong and tries again needs a few more than 3.
POW_ON = TIGHT.format(mode="on").replace(
    "address = { per_minute = 60, burst = 3 }", "address = { per_minute = 60, burst = 10 }"
)


@pytest.fixture(scope="module")
def tight_gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any
) -> Iterator[GatewayServer]:
    """A gateway that believes X-Forwarded-For from this machine, with tight limits."""
    with in_process_gateway(
        tmp_path_factory.mktemp("tight"),
        upstream=jitsi_web.url,
        extra=TIGHT.format(mode="auto"),
        top=TRUST_LOCAL_PROXY,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def door_gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any
) -> Iterator[GatewayServer]:
    """The same, served, for the gate's own answers to repeat attempts: their refusals add to
    the pressure, which would switch proof-of-work on for the other tests' gateway."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("door"),
        upstream=jitsi_web.url,
        extra=TIGHT.format(mode="auto"),
        top=TRUST_LOCAL_PROXY,
    )
    yield server
    stop_process(proc)


@pytest.fixture(scope="module")
def pow_gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any
) -> Iterator[GatewayServer]:
    with in_process_gateway(
        tmp_path_factory.mktemp("pow"), upstream=jitsi_web.url, extra=POW_ON, top=TRUST_LOCAL_PROXY
    ) as server:
        yield server


@pytest.fixture(scope="module")
def pow_signin(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any
) -> Iterator[tuple[GatewayServer, OidcProviderServer]]:
    """A gateway that always demands proof-of-work, with one real OpenID provider."""
    port = free_port()
    with in_process_gateway(
        tmp_path_factory.mktemp("pow-signin"),
        upstream=jitsi_web.url,
        extra=POW_ON + oidc_table("idp", "University Login", f"http://127.0.0.1:{port}"),
        top=TRUST_LOCAL_PROXY,
    ) as server:
        provider, provider_proc = start_oidc_provider(
            tmp_path_factory.mktemp("pow-signin-idp"), port, clients=clients_for(server.url, "idp")
        )
        try:
            yield server, provider
        finally:
            stop_process(provider_proc)


counter = iter(range(1, 1_000_000))


def fresh_address() -> str:
    n = next(counter)
    return f"198.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def fresh_network_address() -> str:
    """An address in a /24 no other test uses."""
    n = next(counter)
    return f"172.{16 + n // 256 % 16}.{n % 256}.1"


def client(gateway: GatewayServer, address: str | None = None) -> httpx.Client:
    headers = {"origin": gateway.url}
    if address is not None:
        headers["x-forwarded-for"] = address
    return gateway.client(headers=headers, timeout=30)


def invite_path(gateway: GatewayServer, room: str, **body: Any) -> str:
    return f"/j/{gateway.invite_token(gateway.create_invite(room, 'Ada', **body))}"


def room(gateway: GatewayServer, name: str | None = None) -> str:
    name = name or f"flood-{secrets.token_hex(4)}"
    with gateway.admin() as admin:
        admin.post("/api/v1/rooms", json={"name": name})
    return name


def test_address_limit_answers_429_with_retry_after(tight_gateway: GatewayServer) -> None:
    name = room(tight_gateway)
    path = invite_path(tight_gateway, name, max_uses=10)
    with client(tight_gateway, fresh_address()) as browser:
        statuses = [browser.get(path).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = browser.get(path)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "Too many attempts" in refused.text and "try again in" in refused.text
        assert "from your internet address" in refused.text
        assert browser.post(path).status_code == 429
    # Another address is not affected, and the refused attempts burned no use of the invite.
    with client(tight_gateway, fresh_address()) as other:
        assert other.post(path).status_code == 303
    with tight_gateway.admin() as admin:
        uses = [i["uses"] for i in admin.get(f"/api/v1/rooms/{name}/invites").json()]
    assert uses == [1]


def test_repeat_attempts_are_answered_by_the_gate_itself(door_gateway: GatewayServer) -> None:
    # Once the limits refused an address, its next attempts are answered before the pages app:
    # the same 429 and wait, but no request id and no access-log line each.
    name = room(door_gateway)
    path = invite_path(door_gateway, name, max_uses=10)
    address = fresh_address()
    with client(door_gateway, address) as browser:
        assert [browser.get(path).status_code for _ in range(3)] == [200, 200, 200]
        first = browser.get(path)
        assert first.status_code == 429 and "x-request-id" in first.headers
        repeats = [browser.post(path) for _ in range(20)]
        as_json = browser.get(path, headers={"accept": "application/json"})
        head = browser.head(path)
    for repeat in repeats:
        assert repeat.status_code == 429
        assert "x-request-id" not in repeat.headers
        assert 1 <= int(repeat.headers["retry-after"]) <= int(first.headers["retry-after"])
        assert "Too many attempts" in repeat.text and "try again in" in repeat.text
        assert "from your internet address" in repeat.text
        assert "default-src 'none'" in repeat.headers["content-security-policy"]
    assert as_json.status_code == 429 and as_json.json()["error"] == "rate_limited"
    assert head.status_code == 429 and head.content == b""
    log = door_gateway.log_path.read_text()
    assert log.count(" 429 ") < 5, "one access-log line per refused repeat"
    # Other addresses, even next door, are not affected.
    neighbour = address.rsplit(".", 1)[0] + ".250"
    with client(door_gateway, neighbour) as other:
        assert other.get(path).status_code == 200
    with client(door_gateway, fresh_address()) as other:
        # The repeats count toward the room's pressure: a newcomer is asked for proof-of-work.
        page = other.post(path)
        assert page.status_code == 200 and "data-pow-token" in page.text


def refused_address(gateway: GatewayServer, path: str) -> str:
    """An address the gateway already answers itself: its limit refused it once."""
    address = fresh_address()
    with client(gateway, address) as browser:
        for _ in range(10):
            if browser.get(path).status_code == 429:
                return address
    raise AssertionError("the address limit never refused")


def read_answers(
    sock: socket.socket, methods: list[str]
) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """The answers to requests of `methods` (status line, headers, body) from `sock`."""
    pending = b""
    answers = []
    while len(answers) < len(methods):
        while b"\r\n\r\n" not in pending:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} answers"
            pending += chunk
        head, pending = pending.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        length = int(headers.get(b"content-length", b"0"))
        if methods[len(answers)] == "HEAD":
            length = 0
        while len(pending) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed inside a body"
            pending += chunk
        answers.append((status, headers, pending[:length]))
        pending = pending[length:]
    assert pending == b""
    return answers


def raw(gateway: GatewayServer) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def test_the_gates_own_answers_keep_http_intact(door_gateway: GatewayServer) -> None:
    # Answered by the gate before any other work (Gate._known_refusal): a refused POST's
    # body is skipped, not read as a request; pipelined requests get their answers in order;
    # the connection serves what comes next.
    name = room(door_gateway)
    path = invite_path(door_gateway, name, max_uses=10)
    address = refused_address(door_gateway, path)
    body = b"name=" + b"x" * 3000
    post = (
        f"POST {path} HTTP/1.1\r\nhost: gate\r\nx-forwarded-for: {address}\r\n"
        f"content-type: application/x-www-form-urlencoded\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    head = f"HEAD {path} HTTP/1.1\r\nhost: gate\r\nx-forwarded-for: {address}\r\n\r\n".encode()
    health = b"GET /_meetgate/health HTTP/1.1\r\nhost: gate\r\n\r\n"
    with raw(door_gateway) as sock:
        # The POST's headers and body in separate writes, then three requests in one.
        sock.sendall(post[: post.index(b"\r\n\r\n") + 4])
        [(status, headers, page)] = read_answers(sock, ["POST"])
        assert status.startswith(b"HTTP/1.1 429") and b"Too many attempts" in page
        assert b"date" in headers and b"retry-after" in headers
        assert b"x-request-id" not in headers
        sock.sendall(body[:1000])
        sock.sendall(body[1000:] + post + head + health)
        answers = read_answers(sock, ["POST", "HEAD", "GET"])
    assert [status.split(b" ")[1] for status, _, _ in answers] == [b"429", b"429", b"200"]
    # The HEAD's answer carries its length but no body: the next answer parsed right after it.
    assert int(answers[1][1][b"content-length"]) > 0
    assert b"content-security-policy" in answers[1][1]


def test_the_gates_own_answers_close_what_cannot_go_on(door_gateway: GatewayServer) -> None:
    name = room(door_gateway)
    path = invite_path(door_gateway, name, max_uses=10)
    address = refused_address(door_gateway, path)
    # HTTP/1.0 without keep-alive, and a client waiting for "100 Continue" before its body:
    # answered, then closed (the body it holds back must not be read as the next request).
    for request in (
        f"GET {path} HTTP/1.0\r\nx-forwarded-for: {address}\r\n\r\n",
        f"POST {path} HTTP/1.1\r\nhost: gate\r\nx-forwarded-for: {address}\r\n"
        "expect: 100-continue\r\ncontent-length: 10\r\n\r\n",
    ):
        with raw(door_gateway) as sock:
            sock.sendall(request.encode())
            [(status, headers, _)] = read_answers(sock, [request.split(" ")[0]])
            assert status.split(b" ")[1] == b"429"
            # Closed after the answer (uvicorn's h11 protocol closes without a Connection
            # header when the request's unread body makes the connection unusable).
            assert headers.get(b"connection", b"close") == b"close"
            assert sock.recv(100) == b""


def test_a_leaked_link_flooded_from_many_addresses_is_answered_by_the_gate(
    door_gateway: GatewayServer,
) -> None:
    # Every attempt from a network of its own: no address or network runs out, the room's
    # limit (2 at once in the room "quiet") does.
    name = room(door_gateway, "quiet")
    path = invite_path(door_gateway, name, max_uses=1)
    answers = []
    for _ in range(8):
        with client(door_gateway, fresh_network_address()) as browser:
            answers.append(browser.get(path))
    statuses = [answer.status_code for answer in answers]
    assert 429 in statuses
    first = statuses.index(429)
    assert "x-request-id" in answers[first].headers
    repeats = answers[first + 1 :]
    assert repeats and all(answer.status_code == 429 for answer in repeats)
    assert all("x-request-id" not in answer.headers for answer in repeats)
    # Another meeting's link is not affected.
    with client(door_gateway, fresh_network_address()) as other:
        assert other.get(invite_path(door_gateway, room(door_gateway))).status_code == 200


def test_refused_join_attempts_are_sampled_in_the_access_log(
    door_gateway: GatewayServer,
) -> None:
    # Made-up links from many networks: each is refused (404) after its own charge; the log
    # keeps at most 20 lines a second of them and counts the rest.
    made_up = [f"/j/{secrets.token_urlsafe(24)}" for _ in range(120)]
    started = time.monotonic()
    for path in made_up:
        with client(door_gateway, fresh_network_address()) as browser:
            assert browser.get(path).status_code == 404

    def accounted() -> int:
        # Lines written, plus those a summary line counted (written when the next second's
        # first refused attempt comes in).
        log = read_log(door_gateway)
        unlogged = re.findall(r"(\d+) more refused join attempts not logged", log)
        return log.count("GET /j/[invite] 404") + sum(int(n) for n in unlogged)

    deadline = time.monotonic() + 10
    while accounted() < len(made_up) and time.monotonic() < deadline:
        with client(door_gateway, fresh_network_address()) as browser:
            browser.get(f"/j/{secrets.token_urlsafe(24)}")
    # Every second attempts came in, these included (120 take well under a second now).
    elapsed = time.monotonic() - started
    assert accounted() >= len(made_up)
    log = read_log(door_gateway)
    assert log.count("GET /j/[invite] 404") <= 20 * (int(elapsed) + 2)
    assert "more refused join attempts not logged" in log
    assert not any(path.removeprefix("/j/") in log for path in made_up)


def read_log(gateway: GatewayServer) -> str:
    return gateway.log_path.read_text(errors="replace")


def test_unknown_tokens_are_limited_too(tight_gateway: GatewayServer) -> None:
    with client(tight_gateway, fresh_address()) as browser:
        statuses = [browser.get(f"/j/{'A' * 31}{i}").status_code for i in range(5)]
    assert statuses[:3] == [404, 404, 404]
    assert statuses[3:] == [429, 429]


def test_the_gate_page_tells_nobody_which_rooms_exist(tight_gateway: GatewayServer) -> None:
    # An unknown room's gate page and an invitees-only room's answer alike, and every look is
    # charged against the address: no free oracle for room names.
    invitees_only = room(tight_gateway)
    with client(tight_gateway, fresh_address()) as browser:
        names = (invitees_only, f"no-such-{secrets.token_hex(4)}", "Not_A_Name")
        answers = [browser.get(f"/_meetgate/enter/{name}") for name in names]
        assert [answer.status_code for answer in answers] == [403, 403, 403]
        # Alike but for the request id and the language links, which lead back to the path
        # asked for (the visitor's own words).
        pages = {
            a.text.replace(a.headers["x-request-id"], "").replace(f"/{name}?lang=", "/?lang=")
            for a, name in zip(answers, names, strict=True)
        }
        assert len(pages) == 1 and "<code>not_admitted</code>" in pages.pop()
        # Its address had a burst of 3: the next look waits, whichever room it names.
        assert browser.get(f"/_meetgate/enter/{invitees_only}").status_code == 429
        assert browser.get("/_meetgate/enter/another-one").status_code == 429


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    gateway: GatewayServer, tmp_path: Path, jitsi_web: Any
) -> None:
    # This gateway trusts no proxy: every request is the socket's 127.0.0.1, whatever it claims.
    with in_process_gateway(
        tmp_path, upstream=jitsi_web.url, extra=TIGHT.format(mode="off")
    ) as server:
        path = invite_path(server, room(server), max_uses=10)
        statuses = []
        for _ in range(5):
            with client(server, fresh_address()) as browser:
                statuses.append(browser.get(path).status_code)
        assert statuses == [200, 200, 200, 429, 429]


def test_network_limit_groups_a_slash_24(tight_gateway: GatewayServer) -> None:
    path = invite_path(tight_gateway, room(tight_gateway), max_uses=100)
    n = next(counter)
    net = f"203.{n % 256}.{n // 256 % 256}"
    answers = []
    for host in range(1, 41):
        with client(tight_gateway, f"{net}.{host}") as browser:
            answers.append(browser.get(path))
    statuses = [answer.status_code for answer in answers]
    # The /24's burst of 30, plus at most what refills (1/s) while the test runs (on a busy
    # machine, a refill can land on the last request).
    assert 30 <= statuses.count(200) <= 32
    assert statuses[:30] == [200] * 30 and 429 in statuses[30:]
    refused = answers[statuses.index(429)]
    assert "from your network" in refused.text and "try again in" in refused.text


def test_per_room_override(tight_gateway: GatewayServer) -> None:
    with tight_gateway.admin() as admin:
        admin.post("/api/v1/rooms", json={"name": "quiet"})
    path = invite_path(tight_gateway, "quiet", max_uses=10)
    answers = []
    for _ in range(4):
        with client(tight_gateway, fresh_address()) as browser:
            answers.append(browser.get(path))
    assert [answer.status_code for answer in answers] == [200, 200, 429, 429]
    # The page says it is the meeting that is busy, not this browser's address or network.
    assert "trying to join this meeting" in answers[2].text
    assert "from your" not in answers[2].text


def test_looking_at_a_join_link_is_not_a_use(tight_gateway: GatewayServer) -> None:
    # The invite's limit (2 at once in the room "looked-at") counts joins only: link previewers
    # in chat apps, reloads and second looks do not close the link to the person it is for.
    name = room(tight_gateway, "looked-at")
    path = invite_path(tight_gateway, name, max_uses=10)
    for _ in range(5):
        with client(tight_gateway, fresh_address()) as browser:
            assert browser.get(path).status_code == 200
    for _ in range(2):
        with client(tight_gateway, fresh_address()) as browser:
            assert browser.post(path).status_code == 303
    # Joins do count: the third at once waits, and the page says it is the link's limit.
    with client(tight_gateway, fresh_address()) as browser:
        refused = browser.post(path)
        assert refused.status_code == 429
        assert "join link was tried too many times" in refused.text
        # The gate knows the link is out of joins for now, yet still shows its landing page.
        assert browser.get(path).status_code == 200
        assert browser.post(path).status_code == 429
    with tight_gateway.admin() as admin:
        uses = [i["uses"] for i in admin.get(f"/api/v1/rooms/{name}/invites").json()]
    assert uses == [2]


def challenge_of(page: str) -> tuple[str, int]:
    found = challenge(page)
    assert found is not None, page
    return found


def test_proof_of_work_is_demanded_and_checked(pow_gateway: GatewayServer) -> None:
    name = room(pow_gateway)
    address = fresh_address()
    path = invite_path(pow_gateway, name)
    with client(pow_gateway, address) as browser:
        page = browser.post(path)
        assert page.status_code == 200
        assert 'src="/_meetgate/static/pow.js"' in page.text
        token, difficulty = challenge_of(page.text)
        assert difficulty == 8

        wrong = browser.post(path, data={"pow_token": token, "answer": "x"})
        assert wrong.status_code == 403 and "challenge_failed" in wrong.text
        answer = solve(token, difficulty)
        joined = browser.post(path, data={"pow_token": token, "answer": answer})
        assert joined.status_code == 303, joined.text

        # The same proof cannot be used again, not even for another invite of the room.
        other = invite_path(pow_gateway, name)
        replay = browser.post(other, data={"pow_token": token, "answer": answer})
        assert replay.status_code == 403

    # A proof is bound to the address it was issued to, and to its room.
    with client(pow_gateway, address) as browser:
        token, difficulty = challenge_of(browser.post(other).text)
    answer = solve(token, difficulty)
    with client(pow_gateway, fresh_address()) as elsewhere:
        assert elsewhere.post(other, data={"pow_token": token, "answer": answer}).status_code == 403
    another_room = invite_path(pow_gateway, room(pow_gateway))
    with client(pow_gateway, address) as browser:
        assert (
            browser.post(another_room, data={"pow_token": token, "answer": answer}).status_code
            == 403
        )
        assert browser.post(other, data={"pow_token": token, "answer": answer}).status_code == 303


def test_challenges_and_wrong_answers_count_against_the_address(
    pow_gateway: GatewayServer,
) -> None:
    # Proof-of-work is asked before the room's and the invite's limits count an attempt, but a
    # flood cannot have challenges made (or answers checked) for it without limit.
    path = invite_path(pow_gateway, room(pow_gateway))
    with client(pow_gateway, fresh_address()) as farmer:
        token, _ = challenge_of(farmer.post(path).text)
        wrong = [farmer.post(path, data={"pow_token": token, "answer": "x"}) for _ in range(4)]
        asked = [farmer.post(path) for _ in range(8)]
    assert all(answer.status_code == 403 for answer in wrong)
    statuses = [answer.status_code for answer in asked]
    # The address's burst of 10: the first challenge, four wrong answers, five more challenges
    # (then 1/s, which a busy machine may give one of the last three).
    assert statuses[:5] == [200] * 5 and statuses[5:].count(429) >= 2
    assert any(a.status_code == 429 and "x-request-id" not in a.headers for a in asked[5:])
    # Another address still gets its challenge.
    with client(pow_gateway, fresh_address()) as other:
        assert "data-pow-token" in other.post(path).text


def test_pressure_switches_proof_of_work_on(tight_gateway: GatewayServer) -> None:
    name = room(tight_gateway)
    path = invite_path(tight_gateway, name, max_uses=100)
    flooder = fresh_address()
    with client(tight_gateway, flooder) as browser:
        statuses = [browser.get(path).status_code for _ in range(10)]
    assert statuses.count(429) >= 5
    with client(tight_gateway, fresh_address()) as legit:
        page = legit.post(path)
    assert page.status_code == 200
    assert "data-pow-token" in page.text


def test_admin_switches_proof_of_work_on_for_a_room(tight_gateway: GatewayServer) -> None:
    name = room(tight_gateway)
    with tight_gateway.admin() as admin:
        changed = admin.patch(f"/api/v1/rooms/{name}", json={"pow_required": True})
    assert changed.status_code == 200 and changed.json()["pow_required"] is True
    path = invite_path(tight_gateway, name)
    with client(tight_gateway, fresh_address()) as browser:
        page = browser.post(path)
        assert "data-pow-token" in page.text
        token, difficulty = challenge_of(page.text)
        answer = solve(token, difficulty)
        assert browser.post(path, data={"pow_token": token, "answer": answer}).status_code == 303


def test_metrics_count_rejections_and_proofs(pow_gateway: GatewayServer) -> None:
    name = room(pow_gateway)
    path = invite_path(pow_gateway, name)
    with client(pow_gateway, fresh_address()) as browser:
        token, _ = challenge_of(browser.post(path).text)
        browser.post(path, data={"pow_token": token, "answer": "1"})
    with pow_gateway.admin() as admin:
        text = admin.get("/metrics").text
    assert "meetgate_pow_issued_total" in text
    assert re.search(r"meetgate_pow_failed_total \d+", text)
    with httpx.Client(
        base_url=pow_gateway.admin_url,
        trust_env=False,
        verify=TLS,
        transport=pow_gateway.admin_transport,
    ) as anonymous:
        assert anonymous.get("/metrics").status_code == 401


def test_host_dashboard_shows_the_attack(tight_gateway: GatewayServer) -> None:
    name = room(tight_gateway)
    host_invite = tight_gateway.create_invite(name, "Host", role="host")
    with client(tight_gateway, fresh_address()) as host:
        assert host.post(f"/j/{tight_gateway.invite_token(host_invite)}").status_code == 303
        quiet = host.get(f"/_meetgate/host/{name}/roster").json()["attack"]
        assert quiet["under_attack"] is False
        path = invite_path(tight_gateway, name, max_uses=100)
        # Pressure is counted in fixed 10 s windows and cached for a second per replica, so
        # keep the flood going until the dashboard shows it (a window may roll over).
        deadline = time.monotonic() + 15
        attack = quiet
        with client(tight_gateway, fresh_address()) as flooder:
            while time.monotonic() < deadline and attack["refused_10s"] < 5:
                for _ in range(8):
                    flooder.get(path)
                attack = host.get(f"/_meetgate/host/{name}/roster").json()["attack"]
        assert attack["under_attack"] is True
        assert attack["refused_10s"] >= 5
        assert attack["proof_of_work"] is not None
        assert "Under attack" in host.get(f"/_meetgate/host/{name}").text


def test_sign_in_asks_for_proof_of_work_first(
    pow_signin: tuple[GatewayServer, OidcProviderServer],
) -> None:
    gateway, provider = pow_signin
    name = room(gateway)
    with gateway.admin() as admin:
        admin.put(
            f"/api/v1/rooms/{name}/policy", json={"invite": True, "oidc": True}
        ).raise_for_status()
    login = "/_meetgate/oidc/idp/login"
    address = fresh_address()
    with client(gateway, address) as browser:
        # Without proof, the sign-in does not start: the solver page, posting back to the login.
        page = browser.get(login, params={"room": name})
        assert page.status_code == 200, page.text
        assert 'src="/_meetgate/static/pow.js"' in page.text
        assert f'action="{login}"' in page.text and 'method="post"' in page.text
        assert f'name="room" value="{name}"' in page.text
        assert "meetgate_signin" not in page.headers.get("set-cookie", "")
        token, difficulty = challenge_of(page.text)

        wrong = browser.post(login, data={"room": name, "pow_token": token, "answer": "x"})
        assert wrong.status_code == 403 and "challenge_failed" in wrong.text
        answer = solve(token, difficulty)
        forged = client(gateway, address)
        with forged:
            crossed = forged.post(
                login,
                data={"room": name, "pow_token": token, "answer": answer},
                headers={"origin": "https://evil.example"},
            )
        assert crossed.status_code == 403 and "cross_site_request" in crossed.text

        started = browser.post(login, data={"room": name, "pow_token": token, "answer": answer})
        assert started.status_code in (302, 303), started.text
        location = started.headers["location"]
        assert location.startswith(provider.discovery()["authorization_endpoint"])

        # The proof is spent: the same answer again, or on the GET, starts nothing.
        replay = browser.post(login, data={"room": name, "pow_token": token, "answer": answer})
        assert replay.status_code == 403 and "challenge_failed" in replay.text
        again = browser.get(login, params={"room": name, "pow_token": token, "answer": answer})
        assert again.status_code == 200 and "data-pow-token" in again.text

        # The sign-in the proof started ends in the meeting.
        back = authorize(browser, location, "ada")
        assert back.startswith(gateway.url + callback_path("idp")), back
        finished = browser.get(back)
        assert finished.status_code == 303, finished.text
        assert finished.headers["location"].startswith(f"/{name}#jwt=")

    # A proof is bound to its address and its room.
    with client(gateway, address) as browser:
        token, difficulty = challenge_of(browser.get(login, params={"room": name}).text)
    answer = solve(token, difficulty)
    with client(gateway, fresh_address()) as elsewhere:
        moved = elsewhere.post(login, data={"room": name, "pow_token": token, "answer": answer})
        assert moved.status_code == 403 and "challenge_failed" in moved.text
    other_room = room(gateway)
    with gateway.admin() as admin:
        admin.put(
            f"/api/v1/rooms/{other_room}/policy", json={"invite": True, "oidc": True}
        ).raise_for_status()
    with client(gateway, address) as browser:
        foreign = browser.post(
            login, data={"room": other_room, "pow_token": token, "answer": answer}
        )
        assert foreign.status_code == 403 and "challenge_failed" in foreign.text
        # Where it was issued, it still works.
        own = browser.post(login, data={"room": name, "pow_token": token, "answer": answer})
        assert own.status_code in (302, 303), own.text
