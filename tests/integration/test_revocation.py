"""Revocation that bites: a host's decision reaches prosody at once and sticks.

Real prosody (stream management on, `smacks_hibernation_time = 60`), real strophe.js clients
joined through the gate, the real `meetgate serve` — one replica, or two sharing one Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process
from tests.fixtures.xmpp_client import XmppClient, XmppConnectFailed
from tests.integration.journeys import (
    Admitted,
    admission_id,
    admit,
    bosh_url,
    fresh_ticket,
    host_action,
    latecomer_lands_in_meeting,
    new_room,
    signalling_query,
    ws_url,
)

pytestmark = pytest.mark.slow

# The bar: the other occupants see the revoked one leave within a second, not after the
# 60 s prosody would keep an uncleanly dropped session for resumption.
PRESENCE_GONE_WITHIN = 1.0


@asynccontextmanager
async def in_room(
    gateway: GatewayServer, prosody: Any, admitted: Admitted, nick: str, *, bosh: bool = False
) -> AsyncIterator[XmppClient]:
    url = (bosh_url if bosh else ws_url)(gateway, signalling_query(admitted))
    async with XmppClient.open(url) as client:
        await client.join(prosody.room_jid(admitted.room), nick)
        yield client


@pytest.fixture(scope="module")
def second_replica(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any, redis_server: str
) -> Iterator[GatewayServer]:
    """Another gateway process on the same Redis as `redis_gateway`."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("replica-b"),
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        store_url=redis_server,
    )
    yield server
    stop_process(proc)


async def assert_gone_quickly(watcher: XmppClient, nick: str, since: float) -> None:
    await watcher.wait_for_presence(nick=nick, type="unavailable", timeout=PRESENCE_GONE_WITHIN)
    assert time.monotonic() - since <= PRESENCE_GONE_WITHIN + 0.2


@pytest.mark.parametrize("transport", ["websocket", "bosh"])
async def test_revoked_participant_leaves_at_once(
    any_gateway: GatewayServer, prosody: Any, transport: str
) -> None:
    room = new_room(any_gateway)
    host = admit(any_gateway, room, "Host", role="host")
    ada, troll = admit(any_gateway, room, "Ada"), admit(any_gateway, room, "Troll")
    bosh = transport == "bosh"
    async with (
        in_room(any_gateway, prosody, ada, "ada") as ada_client,
        in_room(any_gateway, prosody, troll, "troll", bosh=bosh) as troll_client,
    ):
        await ada_client.wait_for_presence(nick="troll", type="available")
        participants = await asyncio.to_thread(
            lambda: host_action(
                any_gateway, host, "revoke", admission=admission_id(any_gateway, host, "Troll")
            )
        )
        started = time.monotonic()
        assert participants["done"] is True
        await assert_gone_quickly(ada_client, "troll", started)
        if not bosh:
            end = await troll_client.wait_closed(timeout=PRESENCE_GONE_WITHIN)
            assert end.by_server
        assert not prosody.session_hibernated(troll_client.jid)

    # The revoked browser cannot come back by any path.
    with pytest.raises(XmppConnectFailed) as refused:
        await XmppClient.connect(ws_url(any_gateway, signalling_query(troll)), timeout=10)
    assert refused.value.status == 403
    refresh = await asyncio.to_thread(fresh_ticket, any_gateway, troll, room)
    assert refresh.status_code == 403
    assert "removed" in refresh.text


async def test_revocation_on_one_replica_cuts_a_socket_on_another(
    redis_gateway: GatewayServer, second_replica: GatewayServer, prosody: Any
) -> None:
    room = new_room(redis_gateway)
    host = admit(redis_gateway, room, "Host", role="host")
    ada, troll = admit(redis_gateway, room, "Ada"), admit(redis_gateway, room, "Troll")
    async with (
        in_room(redis_gateway, prosody, ada, "ada") as ada_client,
        in_room(second_replica, prosody, troll, "troll") as troll_client,
    ):
        await ada_client.wait_for_presence(nick="troll", type="available")
        target = admission_id(redis_gateway, host, "Troll")
        answer = await asyncio.to_thread(
            host_action, redis_gateway, host, "revoke", admission=target
        )
        started = time.monotonic()
        assert answer["done"] is True
        end = await troll_client.wait_closed(timeout=PRESENCE_GONE_WITHIN)
        assert end.by_server
        await assert_gone_quickly(ada_client, "troll", started)


async def test_ban_kills_every_ticket_and_bars_the_identity(
    gateway: GatewayServer, prosody: Any
) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Host", role="host")
    invite = gateway.create_invite(room, "Troll", max_uses=3)
    token = gateway.invite_token(invite)

    def redeem() -> httpx.Response:
        with httpx.Client(base_url=gateway.url, trust_env=False, verify=TLS) as client:
            return client.post(f"/j/{token}", headers={"origin": gateway.url})

    first = redeem()
    troll = Admitted(
        room=room,
        ticket=first.headers["location"].split("#jwt=")[1],
        cookie=first.cookies["meetgate"],
    )
    async with in_room(gateway, prosody, troll, "troll") as troll_client:
        answer = await asyncio.to_thread(
            host_action,
            gateway,
            host,
            "ban",
            admission=admission_id(gateway, host, "Troll"),
            duration="forever",
        )
        assert answer["done"] is True
        await troll_client.wait_closed(timeout=PRESENCE_GONE_WITHIN)
    again = redeem()
    assert again.status_code == 403
    assert "barred" in again.text
    with pytest.raises(XmppConnectFailed):
        await XmppClient.connect(ws_url(gateway, signalling_query(troll)), timeout=10)


async def test_lockdown_empties_the_room_but_for_the_host(
    gateway: GatewayServer, prosody: Any
) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Host", role="host")
    attendees = [admit(gateway, room, f"Person {i}") for i in range(10)]
    async with AsyncExitStack() as stack:
        host_client = await stack.enter_async_context(in_room(gateway, prosody, host, "host"))
        clients = [
            await stack.enter_async_context(in_room(gateway, prosody, a, f"p{i}"))
            for i, a in enumerate(attendees)
        ]
        for i in range(10):
            await host_client.wait_for_presence(nick=f"p{i}", type="available")
        answer = await asyncio.to_thread(host_action, gateway, host, "lockdown")
        started = time.monotonic()
        assert answer["done"] is True
        for i in range(10):
            await host_client.wait_for_presence(
                nick=f"p{i}",
                type="unavailable",
                timeout=max(0.05, PRESENCE_GONE_WITHIN - (time.monotonic() - started)),
            )
        for client in clients:
            assert (await client.wait_closed(timeout=1)).by_server
        assert host_client.end is None  # the host is still connected
    assert not latecomer_lands_in_meeting(gateway, room)


async def test_move_carries_everyone_but_the_removed(
    any_gateway: GatewayServer, prosody: Any, tmp_path: Path
) -> None:
    gateway = any_gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Host", role="host")
    ada, bob, troll = (admit(gateway, room, n) for n in ("Ada", "Bob", "Troll"))
    async with (
        in_room(gateway, prosody, ada, "ada") as ada_client,
        in_room(gateway, prosody, bob, "bob") as bob_client,
        in_room(gateway, prosody, troll, "troll") as troll_client,
    ):
        await asyncio.to_thread(
            host_action, gateway, host, "revoke", admission=admission_id(gateway, host, "Troll")
        )
        await troll_client.wait_closed(timeout=PRESENCE_GONE_WITHIN)
        moved = await asyncio.to_thread(host_action, gateway, host, "move")
        new = moved["room"]
        assert new != room and new.startswith(room[:20])
        # Their signalling is cut so their browsers reconnect into the new room.
        await ada_client.wait_closed(timeout=PRESENCE_GONE_WITHIN)
        await bob_client.wait_closed(timeout=PRESENCE_GONE_WITHIN)

    # Old tickets are dead in both rooms; the refresh endpoint hands out tickets for the new one.
    for person in (ada, troll):
        for query_room in (room, new):
            with pytest.raises(XmppConnectFailed):
                await XmppClient.connect(
                    ws_url(gateway, f"room={query_room}&token={person.ticket}"), timeout=10
                )
    carried = []
    for person in (host, ada, bob):
        refreshed = await asyncio.to_thread(fresh_ticket, gateway, person, room)
        assert refreshed.status_code == 303
        location = refreshed.headers["location"]
        assert location.startswith(f"/{new}#jwt=")
        carried.append(Admitted(room=new, ticket=location.split("#jwt=")[1], cookie=person.cookie))
    refused = await asyncio.to_thread(fresh_ticket, gateway, troll, room)
    assert refused.status_code == 403
    async with (
        in_room(gateway, prosody, carried[0], "host") as host_client,
        in_room(gateway, prosody, carried[1], "ada"),
        in_room(gateway, prosody, carried[2], "bob"),
    ):
        await host_client.wait_for_presence(nick="ada", type="available")
        await host_client.wait_for_presence(nick="bob", type="available")
