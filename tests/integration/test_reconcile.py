"""Reconciliation bounds every revocation: two real `meetgate serve` replicas sharing one real
Redis (AOF on, fsync always), real strophe.js clients over the gate's `/xmpp-websocket` to a real
prosody. Whatever becomes of a cut's pub/sub message, the revoked socket is closed within one
reconcile interval and a second; an outage of the store itself cuts nobody.

Replica B reaches Redis through a forwarder that can hold a re-established pub/sub connection's
SUBSCRIBE (tests/fixtures/tcp_proxy.py), so "revoked while B's pub/sub connection is
reconnecting" happens on every run, not on a lucky one.

The store faults here (`CLIENT KILL TYPE pubsub`, kill -9 and restart, SIGSTOP/SIGCONT) are part
of the chaos suite (test_chaos.py has the rest): each checks that the revoked attendee's socket
is closed within the bound, that an admitted attendee keeps theirs, that a ban made before the
fault still refuses after it, and that every join and host action tried during the fault is
answered within the store's request budget and an allowance.
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

import httpx
import pytest
import redis.asyncio

from gateway.admission.pipeline import admission_id_for
from gateway.store import Store, open_store
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.fixtures.tcp_proxy import SubscribeHoldingProxy
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import (
    Admitted,
    admission_id,
    admit,
    csrf_token,
    host_action,
    new_room,
    signalling_query,
    ws_url,
)
from tests.integration.test_store_deadlines import ALLOWANCE, REQUEST_SECONDS

pytestmark = pytest.mark.slow

RECONCILE_SECONDS = 1.0
# The promise: a revoked socket is closed within the reconcile interval and a second.
BOUND = RECONCILE_SECONDS + 1.0
REVOCATION = f"""
[revocation]
reconcile_seconds = {RECONCILE_SECONDS}
"""
# The longest any request made during a fault may take: the store's request budget ([store]
# request_seconds, default) plus an allowance for a loaded machine.
ANSWER_WITHIN = REQUEST_SECONDS + ALLOWANCE
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


def join_tokens(gateway: GatewayServer, room: str, count: int) -> list[str]:
    """Invite links made before a fault, to try joins with while it lasts."""
    return [gateway.invite_token(gateway.create_invite(room, f"Guest {n}")) for n in range(count)]


def timed_join(gateway: GatewayServer, token: str) -> tuple[int, float]:
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30, verify=TLS) as client:
        started = time.monotonic()
        response = client.post(f"/j/{token}", headers={"origin": gateway.url})
        seconds = time.monotonic() - started
        return response.status_code, seconds


def answered_promptly(answers: list[tuple[int, float]]) -> None:
    """Every join tried during the fault got a clear answer within the budget."""
    assert answers
    for status, seconds in answers:
        assert status in (303, 503), answers
        assert seconds < ANSWER_WITHIN, answers


def timed_revoke(
    gateway: GatewayServer, host: Admitted, admission: str, csrf: str
) -> tuple[httpx.Response, float]:
    """One click on the dashboard's remove button (`csrf` from a dashboard loaded before)."""
    with httpx.Client(
        base_url=gateway.url, trust_env=False, cookies=host.cookies, timeout=30, verify=TLS
    ) as client:
        started = time.monotonic()
        response = client.post(
            f"/_meetgate/host/{host.room}/revoke",
            data={"csrf": csrf, "confirmed": "1", "admission": admission},
            headers={"origin": gateway.url, "accept": "application/json"},
        )
        return response, time.monotonic() - started


def revoke_until_answered(
    gateway: GatewayServer, host: Admitted, admission: str, csrf: str, within: float
) -> tuple[list[int], bool]:
    """Revoke, again after each 503 (a host clicks again) for `within` seconds at most; each
    answer within the budget. The statuses (the last one 200) and whether that last click
    revoked (False: the admission was revoked already)."""
    statuses: list[int] = []
    deadline = time.monotonic() + within
    while True:
        response, seconds = timed_revoke(gateway, host, admission, csrf)
        assert seconds < ANSWER_WITHIN, (statuses, seconds)
        statuses.append(response.status_code)
        if response.status_code == 200:
            return statuses, bool(response.json()["done"])
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, statuses
        time.sleep(0.1)  # a host clicking again, not a wait for a condition


def ban_before_the_fault(gateway: GatewayServer, host: Admitted) -> str:
    """Mallory joins by a link of several uses and the host bans her for good; returns the link,
    with which `still_banned` shows the ban kept after the fault."""
    link = gateway.invite_token(gateway.create_invite(host.room, "Mallory", max_uses=50))
    status, _ = timed_join(gateway, link)
    assert status == 303
    mallory = admission_id(gateway, host, "Mallory")
    assert host_action(gateway, host, "ban", admission=mallory, duration="forever")["done"]
    still_banned(gateway, link)
    return link


def ban_answer(gateway: GatewayServer, link: str) -> tuple[httpx.Response, float]:
    """A join by the banned identity's own link (a ban keys on the identity the link names)."""
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30, verify=TLS) as client:
        started = time.monotonic()
        response = client.post(f"/j/{link}", headers={"origin": gateway.url})
        return response, time.monotonic() - started


def still_banned(gateway: GatewayServer, link: str) -> None:
    """The banned identity's own link is refused as barred, within the budget."""
    response, seconds = ban_answer(gateway, link)
    assert response.status_code == 403 and "barred" in response.text, response.status_code
    assert seconds < ANSWER_WITHIN, seconds


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
    as its subscription is back, by the sweep it runs before reading messages again. Ada, on B
    too, keeps talking; joins on every replica meanwhile are answered promptly; Mallory, banned
    before, is still refused after."""
    a, b, c = deployment.a, deployment.b, deployment.c
    room = new_room(a)
    room_jid = prosody.room_jid(room)
    host = admit(a, room, "Host", role="host")
    ada = admit(a, room, "Ada")
    trolls = admit(a, room, "Troll"), admit(a, room, "Troll 2")
    banned = await asyncio.to_thread(ban_before_the_fault, a, host)
    tokens = join_tokens(a, room, 3)
    async with (
        connected(b, ada) as ada_client,
        connected(b, trolls[0]) as on_b,
        connected(c, trolls[1]) as on_c,
    ):
        await ada_client.join(room_jid, "ada")
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
            # The store itself answers: joins on the replicas without a subscription get in.
            answers = [
                await asyncio.to_thread(timed_join, gateway, token)
                for gateway, token in zip((a, b, c), tokens, strict=True)
            ]
            answered_promptly(answers)
            assert [status for status, _ in answers] == [303, 303, 303]
            await closed_by_the_gate(on_b)
            assert on_c.end is None  # its message was lost: nothing yet
        finally:
            deployment.proxy.release()
        await closed_by_the_gate(on_c, timeout=1.0)
        # B has swept (it cut the troll) and resubscribed: Ada's socket is untouched.
        await still_talking(ada_client, room_jid)
    for gateway in (b, c):
        await asyncio.to_thread(still_banned, gateway, banned)


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


def warnings_of_unanswered_sweeps(gateway: GatewayServer) -> int:
    """How often the replica's sweep has found the store silent (logged once per outage)."""
    return gateway.log_text().count("reconciliation: the store did not answer")


async def test_a_redis_restart_cuts_nobody_and_later_revocations_apply(
    deployment: Deployment, prosody: Any
) -> None:
    """Redis (AOF, fsync always) killed with kill -9 and restarted, Ada on A and the troll on B
    in the meeting, Mallory banned before. While it is down nobody is cut, joins on both
    replicas and the host's revoke get 503 within the budget; once it is back, the revoke
    clicked again cuts the troll within the bound, Ada keeps talking, Mallory is still
    refused."""
    a, b = deployment.a, deployment.b
    room = new_room(a)
    host = admit(a, room, "Host", role="host")
    ada, troll = admit(a, room, "Ada"), admit(a, room, "Troll")
    banned = await asyncio.to_thread(ban_before_the_fault, a, host)
    tokens = join_tokens(a, room, 4)
    dashboard = await asyncio.to_thread(csrf_token, a, host)
    troll_id = admission_id_for(troll.cookie)
    room_jid = prosody.room_jid(room)
    async with connected(a, ada) as ada_client, connected(b, troll) as troll_client:
        await ada_client.join(room_jid, "ada")
        await troll_client.join(room_jid, "troll")
        recovered = {g: g.log_text().count("every admission checked again") for g in (a, b)}
        silent = {g: warnings_of_unanswered_sweeps(g) for g in (a, b)}

        os.kill(deployment.redis.proc.pid, signal.SIGKILL)
        deployment.redis.proc.wait(timeout=10)
        # Both replicas' sweeps have found the store gone...
        await asyncio.to_thread(
            wait_until,
            lambda: (
                all(store_up(g) == 0 for g in (a, b))
                and all(warnings_of_unanswered_sweeps(g) > silent[g] for g in (a, b))
            ),
            10,
            "the outage seen by both replicas' sweeps",
        )
        # ... and cut nobody for it.
        assert ada_client.end is None and troll_client.end is None
        # Joins on both replicas and the host's revoke are answered 503 within the budget.
        answers = [
            await asyncio.to_thread(timed_join, (a, b)[n % 2], token)
            for n, token in enumerate(tokens)
        ]
        answered_promptly(answers)
        assert {status for status, _ in answers} == {503}, answers
        refused, seconds = await asyncio.to_thread(timed_revoke, a, host, troll_id, dashboard)
        assert refused.status_code == 503 and seconds < ANSWER_WITHIN, (refused, seconds)
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

        # The host clicks again: the store wrote nothing while it was down, so this revokes.
        statuses, done = await asyncio.to_thread(
            revoke_until_answered, a, host, troll_id, dashboard, BOUND
        )
        assert done, statuses
        await closed_by_the_gate(troll_client)
        await still_talking(ada_client, room_jid)
    # The ban was on disk (AOF): kept.
    for gateway in (a, b):
        await asyncio.to_thread(still_banned, gateway, banned)


async def test_a_paused_redis_cuts_nobody_and_answers_within_the_budget(
    deployment: Deployment, prosody: Any
) -> None:
    """Redis paused (SIGSTOP) long enough for both replicas to sweep against the silent store,
    then resumed (SIGCONT). Ada on A and the troll on B are in the meeting, Mallory banned
    before. While the store is silent signalling keeps flowing, nobody is cut, joins on both
    replicas and the host's revoke get 503 within the budget; once it answers, the revoke
    (clicked again until answered) has cut the troll within the bound, Ada keeps talking,
    Mallory is still refused."""
    a, b = deployment.a, deployment.b
    room = new_room(a)
    host = admit(a, room, "Host", role="host")
    ada, troll = admit(a, room, "Ada"), admit(a, room, "Troll")
    banned = await asyncio.to_thread(ban_before_the_fault, a, host)
    tokens = join_tokens(a, room, 4)
    dashboard = await asyncio.to_thread(csrf_token, a, host)
    troll_id = admission_id_for(troll.cookie)
    room_jid = prosody.room_jid(room)
    redis_pid = deployment.redis.proc.pid
    async with connected(a, ada) as ada_client, connected(b, troll) as troll_client:
        await ada_client.join(room_jid, "ada")
        await troll_client.join(room_jid, "troll")
        recovered = {g: g.log_text().count("every admission checked again") for g in (a, b)}
        silent = {g: warnings_of_unanswered_sweeps(g) for g in (a, b)}

        os.kill(redis_pid, signal.SIGSTOP)
        try:
            # Joins on both replicas and the host's revoke get 503 within the budget...
            answers = [
                await asyncio.to_thread(timed_join, (a, b)[n % 2], token)
                for n, token in enumerate(tokens)
            ]
            answered_promptly(answers)
            assert {status for status, _ in answers} == {503}, answers
            refused, seconds = await asyncio.to_thread(timed_revoke, a, host, troll_id, dashboard)
            assert refused.status_code == 503 and seconds < ANSWER_WITHIN, (refused, seconds)
            # ... both replicas' sweeps have met the silent store...
            await asyncio.to_thread(
                wait_until,
                lambda: all(warnings_of_unanswered_sweeps(g) > silent[g] for g in (a, b)),
                10,
                "both replicas' sweeps to find the store silent",
            )
            # ... and signalling flows, nobody cut.
            await still_talking(ada_client, room_jid)
            await still_talking(troll_client, room_jid)
        finally:
            os.kill(redis_pid, signal.SIGCONT)

        # The revoke that got 503 may still have reached Redis (its command was sent before the
        # gate gave up on the answer), without its cut message: then the click again finds
        # nothing to do and the sweep cuts. Either way the socket goes within the bound.
        await asyncio.to_thread(revoke_until_answered, a, host, troll_id, dashboard, BOUND)
        await closed_by_the_gate(troll_client)
        await asyncio.to_thread(
            wait_until,
            lambda: all(
                g.log_text().count("every admission checked again") > recovered[g] for g in (a, b)
            ),
            10,
            "a complete reconciliation on both replicas after the pause",
        )
        await still_talking(ada_client, room_jid)
    for gateway in (a, b):
        await asyncio.to_thread(still_banned, gateway, banned)
