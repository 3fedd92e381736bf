"""Proves the signalling fixtures work on their own, with no gateway in between: prosody accepts
real XMPP clients over WebSocket and BOSH, and the stand-in Jitsi web server serves its files."""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import httpx
import pytest
import websockets

from tests.fixtures.http_clients import TLS
from tests.fixtures.jitsi_web import INDEX_MARKER, SMALL_SIZE, JitsiWeb
from tests.fixtures.processes import wait_until
from tests.fixtures.prosody import ProsodyServer
from tests.fixtures.xmpp_client import XmppClient, XmppConnectFailed

pytestmark = pytest.mark.slow


def fresh_room() -> str:
    return "selfcheck-" + secrets.token_hex(4)


async def test_two_websocket_clients_see_each_other_and_a_clean_leave(
    prosody: ProsodyServer,
) -> None:
    room = prosody.room_jid(fresh_room())
    url = prosody.websocket_url + "?room=r&token=anything"
    async with XmppClient.open(url) as alice, XmppClient.open(url) as bob:
        assert alice.transport == "websocket"
        own = await alice.join(room, "alice")
        assert own.is_self and own.type == "available"
        await bob.join(room, "bob")
        assert (await alice.wait_for_presence(nick="bob", type="available")).room == room
        assert (await bob.wait_for_presence(nick="alice", type="available")).room == room

        await bob.close()
        end = await bob.wait_closed()
        assert not end.by_server
        # A clean close ends the session at once: no wait for smacks hibernation (60 s).
        gone = await alice.wait_for_presence(nick="bob", type="unavailable", timeout=5)
        assert gone.room == room
        assert bob.jid is not None and not prosody.session_hibernated(bob.jid)
        await alice.close()


async def test_dropped_websocket_session_stays_in_the_room(prosody: ProsodyServer) -> None:
    room = prosody.room_jid(fresh_room())
    async with (
        XmppClient.open(prosody.websocket_url) as alice,
        XmppClient.open(prosody.websocket_url) as bob,
    ):
        await alice.join(room, "alice")
        await bob.join(room, "bob")
        await bob.drop()
        assert bob.jid is not None
        await asyncio.to_thread(
            wait_until, lambda: prosody.session_hibernated(str(bob.jid)), 5, "hibernation"
        )
        # Hibernating, bob is still an occupant: no unavailable presence arrives meanwhile.
        with pytest.raises(TimeoutError):
            await alice.wait_for_presence(nick="bob", type="unavailable", timeout=1.5)


async def test_groupchat_message_reaches_the_other_occupant(prosody: ProsodyServer) -> None:
    room = prosody.room_jid(fresh_room())
    async with (
        XmppClient.open(prosody.websocket_url) as alice,
        XmppClient.open(prosody.bosh_url) as bob,
    ):
        await alice.join(room, "alice")
        await bob.join(room, "bob")
        await alice.send_groupchat(room, "hello over websocket")
        message = await bob.wait_for_message(lambda m: m.body == "hello over websocket")
        assert message.from_jid == f"{room}/alice"


async def test_bosh_client_joins_and_leaves_cleanly(prosody: ProsodyServer) -> None:
    room = prosody.room_jid(fresh_room())
    async with (
        XmppClient.open(prosody.websocket_url) as alice,
        XmppClient.open(prosody.bosh_url + "?room=r&token=anything") as carol,
    ):
        assert carol.transport == "bosh"
        await alice.join(room, "alice")
        await carol.join(room, "carol")
        await alice.wait_for_presence(nick="carol", type="available")
        await carol.close()
        await alice.wait_for_presence(nick="carol", type="unavailable", timeout=5)


async def test_refused_upgrade_reports_the_http_status(prosody: ProsodyServer) -> None:
    with pytest.raises(XmppConnectFailed) as refused:
        await XmppClient.connect(f"ws://127.0.0.1:{prosody.http_port}/no-such-path?room=r")
    assert refused.value.status == 404


async def test_refused_bosh_request_reports_the_http_status(prosody: ProsodyServer) -> None:
    with pytest.raises(XmppConnectFailed) as refused:
        await XmppClient.connect(f"http://127.0.0.1:{prosody.http_port}/no-such-path?room=r")
    assert refused.value.status == 404


async def test_jitsi_web_serves_the_bundle_rooms_and_echoes(jitsi_web: JitsiWeb) -> None:
    async with httpx.AsyncClient(
        base_url=jitsi_web.url, trust_env=False, timeout=10, verify=TLS
    ) as client:
        bundle = await client.get("/libs/app.bundle.min.js")
        assert bundle.status_code == 200
        assert len(bundle.content) == 3 * 1024 * 1024
        assert hashlib.sha256(bundle.content).hexdigest() == jitsi_web.bundle_sha256
        assert len((await client.get("/libs/small.js")).content) == SMALL_SIZE

        for path in ("/", "/someroom", "/tenant/someroom"):
            page = await client.get(path)
            assert page.status_code == 200 and INDEX_MARKER in page.text, path
        assert "var config" in (await client.get("/config.js")).text
        assert (await client.get("/libs/missing.js")).status_code == 404

        echoed = await client.get(
            "/static/_test/headers?room=r&token=a&token=b", headers={"X-Probe": "1"}
        )
        seen = echoed.json()
        assert seen["query"] == "room=r&token=a&token=b"
        assert ["x-probe", "1"] in seen["headers"]
        # Every request is written down, as sent.
        marker = secrets.token_hex(8)
        await client.get(f"/libs/missing.js?probe={marker}")
        assert [(r["raw_path"], r["query"]) for r in jitsi_web.saw(marker)] == [
            ("/libs/missing.js", f"probe={marker}")
        ]

    async with websockets.connect(jitsi_web.echo_ws_url) as socket:
        await socket.send("ping")
        assert await asyncio.wait_for(socket.recv(), 5) == "ping"
        await socket.send(b"\x00\x01")
        assert await asyncio.wait_for(socket.recv(), 5) == b"\x00\x01"
