"""The Redis store through Sentinel (`redis+sentinel://`): a real master, replica and Sentinel
(tests/fixtures/redis_sentinel.py). The store finds the master by asking the Sentinel, its data
lands there, a bad master name or Sentinel password fails closed as StoreUnavailable, and after a
failover the same store writes to the new master."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from gateway.doctor import redis_persistence
from gateway.errors import StoreUnavailable
from gateway.store import Room, open_store
from gateway.store.redis import RedisStore
from tests.fixtures.processes import wait_until
from tests.fixtures.redis_sentinel import MASTER_NAME, SentinelRedis

pytestmark = pytest.mark.slow

DB = 2


def room(prefix: str = "room") -> Room:
    return Room(name=f"{prefix}-{secrets.token_hex(4)}", title="Sentinel", created_at=time.time())


async def test_store_finds_the_master_through_the_sentinel(redis_sentinel: SentinelRedis) -> None:
    store = await open_store(redis_sentinel.url(DB))
    assert isinstance(store, RedisStore)
    try:
        await store.ping()
        made = room()
        await store.create_room(made)
        assert await store.get_room(made.name) == made
        # Lua scripts, counters and pub/sub go to the master too.
        decision = await store.rate_limit(f"sentinel-{made.name}", 1.0, 2)
        assert decision.allowed
        assert await store.bump_value(f"sentinel-{made.name}", 60) == 1
        subscription = store.subscribe("sentinel-test")
        try:
            await subscription.ready()
            await store.publish("sentinel-test", "hello")
            assert await anext(aiter(subscription)) == "hello"
        finally:
            await subscription.aclose()
    finally:
        await store.close()
    # Written to the master the Sentinel names, in the URL's database, and replicated.
    with redis_sentinel.direct(redis_sentinel.master_port_now(), DB) as master:
        assert master.hexists("meetgate:rooms", made.name)
    with redis_sentinel.direct(redis_sentinel.master_port, 0) as other_db:
        assert not other_db.hexists("meetgate:rooms", made.name)


async def test_unknown_master_name_fails_closed(redis_sentinel: SentinelRedis) -> None:
    url = redis_sentinel.url(DB).replace(f"/{MASTER_NAME}/", "/no-such-master/")
    store = await open_store(url)
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.get_room("anything")
    finally:
        await store.close()


@pytest.mark.parametrize("query", ["sentinel_password=wrong", "sentinel_password="])
async def test_wrong_sentinel_password_fails_closed(
    redis_sentinel: SentinelRedis, query: str
) -> None:
    store = await open_store(redis_sentinel.url(DB, query))
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()


async def test_doctor_reads_persistence_through_the_sentinel(
    redis_sentinel: SentinelRedis,
) -> None:
    persistence = await redis_persistence(redis_sentinel.url(DB), 5.0)
    assert persistence.appendonly == "no"


async def test_the_store_follows_a_failover(redis_sentinel: SentinelRedis) -> None:
    store = await open_store(redis_sentinel.url(DB))
    try:
        before = room("before")
        await store.create_room(before)
        old_master = redis_sentinel.master_port_now()
        with redis_sentinel.sentinel() as sentinel:
            # The Sentinel learns about the replica from the master's INFO (every second here).
            wait_until(
                lambda: len(sentinel.sentinel_slaves(MASTER_NAME)) == 1,
                timeout=30,
                what="the Sentinel to discover the replica",
            )
        redis_sentinel.request_failover()
        wait_until(
            lambda: redis_sentinel.master_port_now() != old_master,
            timeout=30,
            what="the failover",
        )
        new_master = redis_sentinel.master_port_now()

        def roles() -> tuple[str, str]:
            with redis_sentinel.direct(new_master) as new, redis_sentinel.direct(old_master) as old:
                return new.info("replication")["role"], old.info("replication")["role"]

        # Until the Sentinel has turned the old master into a replica, it still takes writes
        # (and loses them when it resyncs): Sentinel's asynchronous replication, which
        # deploy/kubernetes narrows with min-replicas-to-write.
        wait_until(lambda: roles() == ("master", "slave"), timeout=30, what="the role swap")
        after = room("after")
        # The store's pooled connection still points at the old master: its READONLY answer
        # makes the client ask the Sentinel again and retry on the new master. If the retries
        # run out first, the store fails closed (StoreUnavailable) until its probe finds the
        # master (within a second or so), and the next call succeeds.
        deadline = time.monotonic() + 30
        while True:
            try:
                await store.create_room(after)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store never followed the failover"
                await asyncio.sleep(0.1)  # polling: the probe runs on this loop
        assert await store.get_room(before.name) == before
    finally:
        await store.close()
    with redis_sentinel.direct(new_master, DB) as master:
        assert master.hexists("meetgate:rooms", after.name)
