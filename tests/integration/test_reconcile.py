"""Reconciliation bounds every revocation: two real `meetgate serve` replicas sharing one real
Redis (AOF on, fsync always), real strophe.js clients over the gate's `/xmpp-websocket` to a real
prosody. Whatever becomes of a cut's pub/sub message, the revoked socket is closed within one
reconcile interval and a second; an outage of the store itself cuts nobody.

Replica B reaches Redis through a forwarder that can hold a re-established pub/sub connection's
SUBSCRIBE (tests/fixtures/tcp_proxy.py), so "revoked while B's pub/sub connection is
reconnecting" happens on every run, not on a lucky one.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
import redis.asyncio

from gateway.admission.pipeline import admission_id_for
from gateway.store import Store, open_store
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.fixtures.tcp_proxy import SubscribeHoldingProxy
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import (
    Admitted,
    admit,
    host_action,
    new_room,
    signalling_query,
    ws_url,
)

pytestmark = pytest.mark.slow

RECONCILE_SECONDS = 1.0
# The promise: a revoked socket is closed within the reconcile interval and a second.
BOUND = RECONCILE_SECONDS + 1.0
REVOCATION = f"""
[revocation]
reconcile_seconds = {RECONCILE_SECONDS}
"""
# Replica C reconciles too seldom to matter in a test: what it cuts, it cuts on resubscribing.
SELDOM = """
[revocation]
reconcile_seconds = 60
"""


@dataclass
class Deployment:
    redis: RedisProcess
    proxy: SubscribeHoldingProxy
    a: GatewayServer
    b: GatewayServer
    c: GatewayServer

    def redis_client(self) -> redis.asyncio.Redis[str]:
        return redis.asyncio.Redis.from_url(self.redis.url, decode_responses=True)

    async def outside_store(self) -> Store:
        """The store as another program would open it (an admin tool, a script)."""
        return await open_store(self.redis.url)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("reconcile")
    server = start_redis(workdir / "redis", "--appendonly", "yes", "--appendfsync", "always")
    proxy = SubscribeHoldingProxy(server.port)
    started = []
    try:
        for name, store_url, revocation in (
            ("a", server.url, REVOCATION),
            ("b", proxy.url(), REVOCATION),
            ("c", proxy.url(), SELDOM),
        ):
            started.append(
                start_gateway(
                    workdir / name,
                    upstream=jitsi_web.url,
                    signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
                    store_url=store_url,
                    extra=GENEROUS_LIMITS + revocation,
                )
            )
        yield Deployment(server, proxy, *(gateway for gateway, _ in started))
    finally:
        for _, proc in started:
            stop_process(proc)
        proxy.close()
        stop_process(server.proc)


@asynccontextmanager
async def connected(gateway: GatewayServer, admitted: Admitted) -> AsyncIterator[XmppClient]:
    async with XmppClient.open(ws_url(gateway, signalling_query(admitted))) as client:
        yield client


async def closed_by_the_gate(client: XmppClient, timeout: float = BOUND) -> None:
    end = await client.wait_closed(timeout=timeout)
    assert end.by_server
    assert end.ws_code == 4403, end


async def still_talking(client: XmppClient, room_jid: str) -> None:
    """The client's signalling still flows both ways: a groupchat message comes back."""
    assert client.end is None
    body = f"still here {time.monotonic()}"
    await client.send_groupchat(room_jid, body)
    await client.wait_for_message(lambda m: m.body == body, timeout=5)


def store_up(gateway: GatewayServer) -> float:
    with gateway.admin() as admin:
        text = admin.get("/metrics").text
    found = re.search(r"^meetgate_store_up (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


async def test_revoked_while_the_other_replicas_pubsub_reconnects(
    deployment: Deployment, prosody: Any
) -> None:
    """B and C reach Redis through the forwarder, which holds their pub/sub connections'
    SUBSCRIBE once `CLIENT KILL TYPE pubsub` has dropped them: A's cut is published while
    neither is subscribed. B cuts within its interval; C (whose interval is a minute) as soon
    as its subscription is back, by the sweep it runs before reading messages again."""
    a, b, c = deployment.a, deployment.b, deployment.c
    room = new_room(a)
    host = admit(a, room, "Host", role="host")
    trolls = admit(a, room, "Troll"), admit(a, room, "Troll 2")
    async with connected(b, trolls[0]) as on_b, connected(c, trolls[1]) as on_c:
        deployment.proxy.hold_subscriptions()
        try:
            async with deployment.redis_client() as client:
                killed = await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert killed >= 3  # every replica's subscription
            for troll in trolls:
                answer = await asyncio.to_thread(
                    host_action, a, host, "revoke", admission=admission_id_for(troll.cookie)
                )
                assert answer["done"] is True
            await closed_by_the_gate(on_b)
            assert on_c.end is None  # its message was lost: nothing yet
        finally:
            deployment.proxy.release()
        await closed_by_the_gate(on_c, timeout=1.0)


async def test_a_cut_whose_message_is_lost_entirely(deployment: Deployment, prosody: Any) -> None:
    room = new_room(deployment.a)
    troll = admit(deployment.a, room, "Troll")
    ada = admit(deployment.a, room, "Ada")
    store = await deployment.outside_store()
    try:
        async with (
            connected(deployment.b, troll) as troll_client,
            connected(deployment.a, ada) as ada_client,
        ):
            await ada_client.join(prosody.room_jid(room), "ada")
            # Revoked in the store, no message published at all.
            assert await store.revoke_admission(admission_id_for(troll.cookie))
            await closed_by_the_gate(troll_client)
            await still_talking(ada_client, prosody.room_jid(room))
    finally:
        await store.close()


async def test_a_ban_alone_cuts_the_identitys_admissions(
    deployment: Deployment, prosody: Any
) -> None:
    """A ban written without the revocations that follow it in a host's ban (the host's request
    died in between; a lobby ban) still cuts the banned identity's sockets."""
    room = new_room(deployment.a)
    troll = admit(deployment.a, room, "Troll")
    store = await deployment.outside_store()
    try:
        admission = await store.get_admission(admission_id_for(troll.cookie))
        assert admission is not None
        async with connected(deployment.b, troll) as troll_client:
            await store.ban_identity(room, admission.identity, None)
            await closed_by_the_gate(troll_client)
    finally:
        await store.close()


async def test_an_admission_that_expires_is_cut(deployment: Deployment, prosody: Any) -> None:
    room = new_room(deployment.a)
    short = admit(deployment.a, room, "Short")
    store = await deployment.outside_store()
    try:
        admission = await store.get_admission(admission_id_for(short.cookie))
        assert admission is not None
        async with connected(deployment.b, short) as client:
            # As an admission with a short TTL would be: its record and its key end in a second.
            expires = time.time() + 1.0
            await store.add_admission(replace(admission, expires_at=expires))
            await closed_by_the_gate(client, timeout=max(0.0, expires - time.time()) + BOUND)
    finally:
        await store.close()


async def test_one_signalling_session_per_admission_across_replicas(
    deployment: Deployment, prosody: Any
) -> None:
    """The newer session replaces the older, wherever each is: the lease in the store names the
    newer, and the replica holding the older closes it."""
    room = new_room(deployment.a)
    ada = admit(deployment.a, room, "Ada")
    async with connected(deployment.a, ada) as older:
        await older.join(prosody.room_jid(room), "ada")
        async with connected(deployment.b, ada) as newer:
            await closed_by_the_gate(older)
            assert older.end is not None and older.end.ws_reason == "replaced by a newer connection"
            await newer.join(prosody.room_jid(room), "ada2")
            # Both replicas reconcile within the bound; the newer is not taken for the older.
            with pytest.raises(TimeoutError):
                await newer.wait_closed(timeout=BOUND)
            await still_talking(newer, prosody.room_jid(room))


async def test_a_redis_restart_cuts_nobody_and_later_revocations_apply(
    deployment: Deployment, prosody: Any
) -> None:
    a, b = deployment.a, deployment.b
    room = new_room(a)
    host = admit(a, room, "Host", role="host")
    ada, troll = admit(a, room, "Ada"), admit(a, room, "Troll")
    room_jid = prosody.room_jid(room)
    async with connected(a, ada) as ada_client, connected(b, troll) as troll_client:
        await ada_client.join(room_jid, "ada")
        await troll_client.join(room_jid, "troll")
        recovered = {g: g.log_text().count("every admission checked again") for g in (a, b)}

        os.kill(deployment.redis.proc.pid, signal.SIGKILL)
        deployment.redis.proc.wait(timeout=10)
        # Both replicas have found the store gone (their sweeps could not answer)...
        await asyncio.to_thread(
            wait_until, lambda: store_up(a) == 0 and store_up(b) == 0, 10, "the outage seen"
        )
        # ... and cut nobody for it.
        assert ada_client.end is None and troll_client.end is None

        await asyncio.to_thread(deployment.redis.restart)
        await asyncio.to_thread(
            wait_until,
            lambda: all(
                g.log_text().count("every admission checked again") > recovered[g] for g in (a, b)
            ),
            15,
            "a complete reconciliation on both replicas after the restart",
        )
        await still_talking(ada_client, room_jid)
        await still_talking(troll_client, room_jid)

        answer = await asyncio.to_thread(
            host_action, a, host, "revoke", admission=admission_id_for(troll.cookie)
        )
        assert answer["done"] is True
        await closed_by_the_gate(troll_client)
        await still_talking(ada_client, room_jid)
