"""The gate's allowlist through the real `meetgate serve`: with a valid admission cookie and a
valid ticket in the query, every spelling of signalling but the canonical one is refused (404, or
400 for a malformed path) over HTTP and over WebSocket, and the upstream sees nothing of it.

Here both upstreams are one stand-in Jitsi web server of this module's own, which writes down
every request it receives: whatever the gate forwarded, by any route, would be in its log. The
requests are sent byte for byte as written (a raw socket), so no client library normalises them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.jitsi_web import JitsiWeb, start_jitsi_web
from tests.fixtures.processes import stop_process, wait_until
from tests.integration.journeys import Admitted, admission_id, admit, host_action, new_room
from tests.spellings import ISSUE_SPELLINGS, MALFORMED_SPELLINGS, WELL_FORMED_SPELLINGS

pytestmark = pytest.mark.slow

RELAYED = '["/colibri-ws/", "/conference-request/v1"]'
# Jitsi endpoints this gateway does not relay.
NOT_RELAYED = ("/etherpad/p/x", "/_api/room-info", "/socket.io/x", "/colibri-relay-ws/jvb1/x")


@pytest.fixture(scope="module")
def recording_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JitsiWeb]:
    server, proc = start_jitsi_web(tmp_path_factory.mktemp("recording-web"))
    yield server
    stop_process(proc)


@pytest.fixture(scope="module")
def probed(
    tmp_path_factory: pytest.TempPathFactory, recording_web: JitsiWeb
) -> Iterator[GatewayServer]:
    """A gateway whose Jitsi web server and signalling upstream are `recording_web`, relaying
    /colibri-ws/ and /conference-request/v1 besides signalling."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("probed-gateway"),
        upstream=recording_web.url,
        jitsi=f"relayed_endpoints = {RELAYED}",
    )
    yield server
    stop_process(proc)


async def raw_request(
    gateway: GatewayServer, target: str, cookie: str | None = None, *, websocket: bool = False
) -> int:
    """Send one GET (or WebSocket upgrade) for `target` exactly as written; the answer's status."""
    port = int(gateway.url.rsplit(":", 1)[1])
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if cookie is not None:
        lines.append(f"Cookie: meetgate={cookie}")
    if websocket:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
    else:
        lines.append("Connection: close")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(status_line.split()[1])


def probe_query(admitted: Admitted, marker: str) -> str:
    """What a forwarded request would need to pass as signalling: the room and a valid ticket."""
    return f"room={admitted.room}&token={admitted.ticket}&probe={marker}"


async def assert_refused_and_unseen(
    gateway: GatewayServer,
    web: JitsiWeb,
    admitted: Admitted,
    spellings: tuple[str, ...],
    statuses: tuple[int, ...],
    *,
    websocket: bool,
) -> None:
    before = len(web.requests())
    for spelling in spellings:
        marker = secrets.token_hex(8)
        target = f"{spelling}?{probe_query(admitted, marker)}"
        status = await raw_request(gateway, target, admitted.cookie, websocket=websocket)
        assert status in statuses, (spelling, status)
    # A positive control: the same browser's cookie does pass on a static path (and is seen).
    control = secrets.token_hex(8)
    passed = await raw_request(gateway, f"/static/_test/headers?probe={control}", admitted.cookie)
    assert passed == 200
    wait_until(lambda: web.saw(control), timeout=10, what="the control request upstream")
    assert [r["raw_path"] for r in web.requests()[before:]] == ["/static/_test/headers"]


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_other_spellings_of_signalling_are_refused_and_never_forwarded(
    probed: GatewayServer, recording_web: JitsiWeb, transport: str
) -> None:
    admitted = admit(probed, new_room(probed))
    websocket = transport == "websocket"
    await assert_refused_and_unseen(
        probed, recording_web, admitted, ISSUE_SPELLINGS, (404,), websocket=websocket
    )
    await assert_refused_and_unseen(
        probed, recording_web, admitted, WELL_FORMED_SPELLINGS, (404,), websocket=websocket
    )
    await assert_refused_and_unseen(
        probed, recording_web, admitted, NOT_RELAYED, (404,), websocket=websocket
    )
    await assert_refused_and_unseen(
        probed, recording_web, admitted, MALFORMED_SPELLINGS, (400, 404), websocket=websocket
    )


async def test_canonical_signalling_is_forwarded_with_the_verified_query(
    probed: GatewayServer, recording_web: JitsiWeb
) -> None:
    """The control for the test above: the canonical spellings do reach the upstream."""
    admitted = admit(probed, new_room(probed))
    query = f"room={admitted.room}&token={admitted.ticket}"
    async with httpx.AsyncClient(
        base_url=probed.url, trust_env=False, timeout=10, verify=TLS
    ) as client:
        for path in ("/http-bind", "/xmpp-websocket"):
            response = await client.get(f"{path}?{query}&probe=x")
            assert response.status_code == 200, path
            assert response.json()["query"] == query


async def test_pages_and_static_files_are_not_websockets(
    probed: GatewayServer, recording_web: JitsiWeb
) -> None:
    admitted = admit(probed, new_room(probed))
    before = len(recording_web.requests())
    for path in ("/static/_test/echo-ws", f"/{admitted.room}", "/config.js", "/libs/small.js"):
        assert await raw_request(probed, path, admitted.cookie, websocket=True) == 404, path
    assert recording_web.requests()[before:] == []


def relayed_ws_url(gateway: GatewayServer, query: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/colibri-ws/jvb1/endpoint?{query}"


async def test_a_relayed_websocket_passes_for_a_live_admission_and_is_cut_on_revocation(
    probed: GatewayServer, recording_web: JitsiWeb
) -> None:
    room = new_room(probed)
    host = admit(probed, room, "Host", role="host")
    troll = admit(probed, room, "Troll")
    # No cookie and no ticket, or a room that is not the admission's: refused.
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(relayed_ws_url(probed, "pwd=x"), open_timeout=10)
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(
            relayed_ws_url(probed, f"room={new_room(probed)}"),
            additional_headers={"cookie": f"meetgate={troll.cookie}"},
            open_timeout=10,
        )
    assert refused.value.response.status_code == 403
    # A ticket alone (the mobile apps carry no cookie) passes too.
    async with websockets.connect(
        relayed_ws_url(probed, f"token={troll.ticket}"), open_timeout=10
    ) as socket:
        await socket.send("by ticket")
        assert await asyncio.wait_for(socket.recv(), 10) == "by ticket"

    async with websockets.connect(
        relayed_ws_url(probed, "pwd=secret"),
        additional_headers={"cookie": f"meetgate={troll.cookie}"},
        open_timeout=10,
    ) as socket:
        await socket.send("hello bridge")
        assert await asyncio.wait_for(socket.recv(), 10) == "hello bridge"
        target = await asyncio.to_thread(admission_id, probed, host, "Troll")
        answer = await asyncio.to_thread(host_action, probed, host, "revoke", admission=target)
        assert answer["done"] is True
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(
            relayed_ws_url(probed, "pwd=secret"),
            additional_headers={"cookie": f"meetgate={troll.cookie}"},
            open_timeout=10,
        )
    assert refused.value.response.status_code == 403


async def test_a_relayed_long_poll_is_cut_on_revocation(
    probed: GatewayServer, recording_web: JitsiWeb
) -> None:
    room = new_room(probed)
    host = admit(probed, room, "Host", role="host")
    troll = admit(probed, room, "Troll")
    marker = secrets.token_hex(8)
    async with httpx.AsyncClient(
        base_url=probed.url, trust_env=False, timeout=30, cookies=troll.cookies, verify=TLS
    ) as client:
        echoed = await client.post(f"/conference-request/v1?room={room}", content=b"{}")
        assert echoed.status_code == 200 and echoed.json()["path"] == "/conference-request/v1"
        held = asyncio.create_task(client.get(f"/conference-request/v1?hold=1&probe={marker}"))
        await asyncio.to_thread(
            wait_until, lambda: recording_web.saw(marker), timeout=10, what="the long poll"
        )
        assert not held.done()
        target = await asyncio.to_thread(admission_id, probed, host, "Troll")
        await asyncio.to_thread(host_action, probed, host, "revoke", admission=target)
        # Cut: the response, already started or not, does not complete as a success.
        try:
            response = await asyncio.wait_for(held, 10)
        except httpx.HTTPError:
            pass
        else:
            assert response.status_code == 403, response.text
        refused = await client.get("/conference-request/v1")
        assert refused.status_code == 403


def test_forward_auth_offloads_static_files_only(probed: GatewayServer) -> None:
    admitted = admit(probed, new_room(probed))
    with httpx.Client(
        base_url=probed.url, trust_env=False, cookies=admitted.cookies, verify=TLS
    ) as client:

        def asked(uri: str) -> int:
            headers = {"x-forwarded-uri": uri, "x-forwarded-method": "GET"}
            return client.get("/_meetgate/forward-auth", headers=headers).status_code

        assert asked("/libs/app.bundle.min.js?v=1") == 204
        for uri in ("/LIBS/http-bind", "/libs/../http-bind", "/libs/http-bind", "/Rally"):
            assert asked(uri) == 404, uri
    with httpx.Client(base_url=probed.url, trust_env=False, verify=TLS) as stranger:
        assert stranger.get("/_meetgate/forward-auth").status_code == 401


def test_a_room_page_is_for_the_admissions_room_only(
    probed: GatewayServer, recording_web: JitsiWeb
) -> None:
    room, other = new_room(probed), new_room(probed)
    admitted = admit(probed, room)
    with httpx.Client(
        base_url=probed.url, trust_env=False, cookies=admitted.cookies, verify=TLS
    ) as client:
        assert client.get(f"/{room}").status_code == 200
        assert client.get(f"/tenant1/{room}").status_code == 200
        assert client.get(f"/{other}").status_code == 403
        assert client.get("/etherpad/p").status_code == 404
