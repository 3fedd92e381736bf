"""Meetgate in front of Jitsi's own web server: Debian's nginx with the routes of
docker-jitsi-meet's meet.conf and of the Debian jitsi-meet site (tests/fixtures/jitsi_nginx.py),
a real prosody behind it, `jitsi.upstream` and `jitsi.signalling_upstream` both at nginx.

nginx's access log is the witness of what reached prosody: a request it proxied there carries
prosody's address. Tests send their requests byte for byte (raw sockets), since an HTTP client
would normalise the very spellings under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.jitsi_nginx import INDEX_MARKER, LAYOUTS, JitsiNginx, NginxRequest
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.xmpp_client import XmppClient, XmppConnectFailed
from tests.integration.journeys import (
    Admitted,
    admission_id,
    admit,
    host_action,
    new_room,
    signalling_query,
)
from tests.spellings import (
    MALFORMED_SPELLINGS,
    WELL_FORMED_SPELLINGS,
    is_canonical_signalling,
    signalling_spellings,
)

pytestmark = pytest.mark.slow

BOSH_SESSION_REQUEST = (
    b"<body rid='1000' to='meet.test' xml:lang='en' wait='60' hold='1' ver='1.6'"
    b" content='text/xml; charset=utf-8' xmpp:version='1.0'"
    b" xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
)
# Spellings nginx (either site) routes to prosody, and a few it does not: the fixture's check.
NGINX_TO_PROSODY = (
    "/http-bind",
    "/xmpp-websocket",
    "/Rally/http-bind",
    "/foo/http-bindX",
    "/a/b/http-bind",
    "/a/b/c/xmpp-websocket",
    "/foo/http-bind/x",
    "/foo/xmpp-websocket/x",
    "/%68ttp-bind",
    "//http-bind",
    "/x/../http-bind",
    "/foo/http-bind;x",
    "/LIBS/http-bind",
)
NGINX_ELSEWHERE = ("/HTTP-BIND", "/libs/http-bind", "/http-bind;x", "/http-bind/")
# Debian's site also sends `/_api/room-info` and `/<tenant>/_api/room-info…` to prosody.
ROOM_INFO_SPELLINGS = ("/_api/room-info", "/tenant1/_api/room-info", "/a/b/_api/room-infoX")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def gate_port(gateway: GatewayServer) -> int:
    return int(urlsplit(gateway.url).port or 80)


def exchange(port: int, request: bytes, *, upgrade: bool = False, timeout: float = 10) -> Answer:
    """Send one request as given on a new connection and read the answer (status 0: none).
    An upgraded connection is cut at once; any other answer is read to its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        if not received.startswith(b"HTTP/1.1 "):
            return Answer(0, b"")
        status = int(received.split(b" ", 2)[1])
        if not upgrade or status != 101:
            with contextlib.suppress(TimeoutError):
                while chunk := sock.recv(65536):
                    received += chunk
        return Answer(status, received.partition(b"\r\n\r\n")[2])


def http_request(
    port: int, method: str, target: str, *, cookie: str | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: meetgate={cookie}")
    if method == "POST":
        lines += ["Content-Type: text/xml; charset=utf-8", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def upgrade_request(port: int, target: str, *, cookie: str | None = None) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol: xmpp",
        f"Origin: http://127.0.0.1:{port}",
    ]
    if cookie:
        lines.append(f"Cookie: meetgate={cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def probe_all_ways(port: int, target: str, cookie: str | None) -> dict[str, int]:
    """GET, POST with a BOSH session request, and a WebSocket upgrade, of one target."""
    get = http_request(port, "GET", target, cookie=cookie)
    post = http_request(port, "POST", target, cookie=cookie, body=BOSH_SESSION_REQUEST)
    return {
        "GET": exchange(port, get).status,
        "POST": exchange(port, post).status,
        "WebSocket": exchange(
            port, upgrade_request(port, target, cookie=cookie), upgrade=True
        ).status,
    }


@pytest.fixture(scope="module")
def routed_gateways(
    tmp_path_factory: pytest.TempPathFactory, jitsi_nginx: JitsiNginx
) -> Iterator[dict[str, GatewayServer]]:
    """One `meetgate serve` per nginx site, both its upstreams at that site."""
    gateways: dict[str, GatewayServer] = {}
    processes = []
    try:
        for layout in LAYOUTS:
            server, proc = start_gateway(
                tmp_path_factory.mktemp(f"gate-{layout}"),
                upstream=jitsi_nginx.url(layout),
                signalling_upstream=jitsi_nginx.url(layout),
            )
            gateways[layout] = server
            processes.append(proc)
        yield gateways
    finally:
        for proc in processes:
            stop_process(proc)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("path", NGINX_TO_PROSODY)
def test_nginx_routes_these_spellings_to_prosody(
    jitsi_nginx: JitsiNginx, layout: str, path: str
) -> None:
    # The witness is only worth what its routing is: straight to nginx, these reach prosody.
    offset = jitsi_nginx.log_offset()
    port = jitsi_nginx.ports[layout]
    exchange(port, http_request(port, "GET", path))
    jitsi_nginx.wait_idle()
    assert [r.request_uri for r in jitsi_nginx.reached_prosody(offset)] == [path]


@pytest.mark.parametrize("path", ROOM_INFO_SPELLINGS)
def test_debians_site_sends_room_info_to_prosody(jitsi_nginx: JitsiNginx, path: str) -> None:
    reached = {}
    for layout in LAYOUTS:
        offset = jitsi_nginx.log_offset()
        port = jitsi_nginx.ports[layout]
        exchange(port, http_request(port, "GET", path))
        jitsi_nginx.wait_idle()
        reached[layout] = [r.request_uri for r in jitsi_nginx.reached_prosody(offset)]
    assert reached == {"debian": [path], "docker": []}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("path", NGINX_ELSEWHERE)
def test_nginx_serves_these_itself(jitsi_nginx: JitsiNginx, layout: str, path: str) -> None:
    offset = jitsi_nginx.log_offset()
    port = jitsi_nginx.ports[layout]
    exchange(port, http_request(port, "GET", path))
    jitsi_nginx.wait_idle()
    assert jitsi_nginx.reached_prosody(offset) == []
    assert [r.request_uri for r in jitsi_nginx.requests_since(offset)] == [path]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("transport", ["websocket", "bosh"])
async def test_an_attendee_signals_through_jitsis_web_server(
    routed_gateways: dict[str, GatewayServer],
    jitsi_nginx: JitsiNginx,
    prosody: Any,
    layout: str,
    transport: str,
) -> None:
    # Finding 4: with two Host headers on the upstream handshake nginx answered 400, and every
    # WebSocket through Jitsi's web server failed with 502.
    gateway = routed_gateways[layout]
    room = new_room(gateway)
    ada = admit(gateway, room, "Ada")
    offset = jitsi_nginx.log_offset()
    base = gateway.url.replace("http://", "ws://") if transport == "websocket" else gateway.url
    endpoint = "/xmpp-websocket" if transport == "websocket" else "/http-bind"
    async with XmppClient.open(f"{base}{endpoint}?{signalling_query(ada)}") as client:
        presence = await client.join(prosody.room_jid(room), "ada")
        assert presence.is_self
        await client.close()
    jitsi_nginx.wait_idle()
    reached = jitsi_nginx.reached_prosody(offset)
    assert reached and {r.path for r in reached} == {endpoint}
    assert {r.args for r in reached} == {signalling_query(ada)}


def test_a_room_page_passes_through_jitsis_web_server(
    routed_gateways: dict[str, GatewayServer], jitsi_nginx: JitsiNginx
) -> None:
    gateway = routed_gateways["docker"]
    room = new_room(gateway)
    ada = admit(gateway, room, "Ada")
    port = gate_port(gateway)
    offset = jitsi_nginx.log_offset()
    page = exchange(port, http_request(port, "GET", f"/{room}", cookie=ada.cookie))
    assert page.status == 200
    assert INDEX_MARKER.encode() in page.body
    jitsi_nginx.wait_idle()
    assert [(r.path, r.upstream) for r in jitsi_nginx.requests_since(offset)] == [(f"/{room}", "")]


# --- Nothing reaches prosody but canonical, ticket-checked signalling ---------------------------

# Every spelling the issue and the shared corpus name, and the four canonical forms (the witness
# must see those reach prosody, or it proves nothing).
CANONICAL = ("/http-bind", "/xmpp-websocket", "/tenant1/http-bind", "/tenant1/xmpp-websocket")
NAMED_SPELLINGS = (*CANONICAL, *WELL_FORMED_SPELLINGS, *MALFORMED_SPELLINGS, *ROOM_INFO_SPELLINGS)
# A parameter no rule names: the gate's own signalling query never carries it, so a request
# reaching prosody with it was forwarded as something else, on the cookie alone.
UNVERIFIED = "probe=1"
CORPUS_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def prosody_sessions_opened(prosody: Any, offset: int) -> list[str]:
    """prosody's log lines, since `offset`, that each mark a BOSH or WebSocket session opened."""
    with prosody.log_path.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    return [
        line
        for line in lines
        if line.endswith("\tSending WebSocket handshake") or "\tBOSH body open (sid: " in line
    ]


def with_named_spellings(test: Any) -> Any:
    for path in NAMED_SPELLINGS:
        test = example(path=path)(test)
    return test


@dataclass(frozen=True, slots=True)
class Probe:
    """One spelling sent all three ways, and what nginx and prosody saw of it."""

    path: str
    answers: dict[str, int]
    reached: list[NginxRequest]
    sessions_opened: list[str]


def probe(jitsi_nginx: JitsiNginx, prosody: Any, port: int, path: str, admitted: Admitted) -> Probe:
    nginx_offset, prosody_offset = jitsi_nginx.log_offset(), prosody.log_path.stat().st_size
    target = f"{path}?{signalling_query(admitted)}&{UNVERIFIED}"
    answers = probe_all_ways(port, target, admitted.cookie)
    jitsi_nginx.wait_idle()
    return Probe(
        path,
        answers,
        jitsi_nginx.reached_prosody(nginx_offset),
        prosody_sessions_opened(prosody, prosody_offset),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_only_canonical_signalling_reaches_prosody(
    routed_gateways: dict[str, GatewayServer], jitsi_nginx: JitsiNginx, prosody: Any, layout: str
) -> None:
    gateway = routed_gateways[layout]
    room = new_room(gateway)
    ada = admit(gateway, room, "Ada")
    port = gate_port(gateway)
    canonical_seen: set[str] = set()

    @CORPUS_SETTINGS
    @with_named_spellings
    @given(path=signalling_spellings())
    def spelling(path: str) -> None:
        seen = probe(jitsi_nginx, prosody, port, path, ada)
        for request in seen.reached:
            # Reached prosody: then it was canonical signalling, its query the gate's own.
            assert is_canonical_signalling(request.path), (seen, request)
            assert request.args == signalling_query(ada), (seen, request)
            canonical_seen.add(request.path)
        if not seen.reached:
            assert seen.sessions_opened == [], seen

    spelling()
    assert canonical_seen >= set(CANONICAL)


# --- A removed or banned attendee opens no new session by any path ------------------------------


@pytest.mark.parametrize("action", ["revoke", "ban"])
async def test_a_removed_or_banned_attendee_opens_no_session_by_any_path(
    routed_gateways: dict[str, GatewayServer], jitsi_nginx: JitsiNginx, prosody: Any, action: str
) -> None:
    gateway = routed_gateways["docker"]
    room = new_room(gateway)
    host = admit(gateway, room, "Host", role="host")
    troll = admit(gateway, room, "Troll")
    ws_base = gateway.url.replace("http://", "ws://")
    async with XmppClient.open(f"{ws_base}/xmpp-websocket?{signalling_query(troll)}") as client:
        await client.join(prosody.room_jid(room), "troll")
        target = await asyncio.to_thread(admission_id, gateway, host, "Troll")
        fields = {"duration": "forever"} if action == "ban" else {}
        answer = await asyncio.to_thread(
            host_action, gateway, host, action, admission=target, **fields
        )
        assert answer["done"] is True
        end = await client.wait_closed(timeout=5)
        assert end.by_server

    jitsi_nginx.wait_idle()
    nginx_offset, prosody_offset = jitsi_nginx.log_offset(), prosody.log_path.stat().st_size
    for base in (ws_base, gateway.url):
        for endpoint in CANONICAL:
            with pytest.raises(XmppConnectFailed) as refused:
                await XmppClient.connect(f"{base}{endpoint}?{signalling_query(troll)}", timeout=10)
            assert refused.value.status == 403, (base, endpoint)
    port = gate_port(gateway)

    @CORPUS_SETTINGS
    @with_named_spellings
    @given(path=signalling_spellings())
    def spelling(path: str) -> None:
        seen = probe(jitsi_nginx, prosody, port, path, troll)
        assert seen.reached == [], seen
        assert seen.sessions_opened == [], seen

    await asyncio.to_thread(spelling)
    jitsi_nginx.wait_idle()
    assert jitsi_nginx.reached_prosody(nginx_offset) == []
    assert prosody_sessions_opened(prosody, prosody_offset) == []


# --- One admission, one signalling session --------------------------------------------------------


def session_ended(prosody: Any, jid: str) -> bool:
    """prosody let the session's resource go: ended for good (a hibernating one keeps it)."""
    return any(f"\tUnbinding resource for {jid} " in line for line in prosody.session_log(jid))


@pytest.mark.parametrize(
    ("older_path", "newer_path"),
    [
        ("/xmpp-websocket", "/xmpp-websocket"),
        ("/xmpp-websocket", "/http-bind"),
        ("/http-bind", "/xmpp-websocket"),
        ("/tenant1/xmpp-websocket", "/http-bind"),
        ("/http-bind", "/tenant1/http-bind"),
    ],
)
async def test_one_admission_holds_one_signalling_session(
    routed_gateways: dict[str, GatewayServer],
    jitsi_nginx: JitsiNginx,
    prosody: Any,
    older_path: str,
    newer_path: str,
) -> None:
    gateway = routed_gateways["docker"]
    room = new_room(gateway)
    room_jid = prosody.room_jid(room)
    host, ada = admit(gateway, room, "Host", role="host"), admit(gateway, room, "Ada")

    def url(path: str, admitted: Admitted) -> str:
        base = gateway.url.replace("http://", "ws://") if "websocket" in path else gateway.url
        return f"{base}{path}?{signalling_query(admitted)}"

    async with XmppClient.open(url("/xmpp-websocket", host)) as watcher:
        await watcher.join(room_jid, "host")
        older = await XmppClient.connect(url(older_path, ada))
        try:
            await older.join(room_jid, "ada-older")
            await watcher.wait_for_presence(nick="ada-older", type="available")
            async with XmppClient.open(url(newer_path, ada)) as newer:
                await newer.join(room_jid, "ada-newer")
                await watcher.wait_for_presence(nick="ada-older", type="unavailable", timeout=5)
                if older.transport == "websocket":
                    assert (await older.wait_closed(timeout=5)).by_server
                # prosody's side: the older session ended, at once and for good; the newer lives.
                assert older.jid and newer.jid
                await asyncio.to_thread(
                    wait_until, lambda: session_ended(prosody, older.jid or ""), 5, "older's end"
                )
                assert not prosody.session_hibernated(older.jid)
                assert not session_ended(prosody, newer.jid)
                await newer.close()
        finally:
            await older.aclose()
