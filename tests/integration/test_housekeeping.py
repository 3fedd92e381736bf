"""The store's housekeeping against real redis-servers: audit entries past the retention purged
once an hour by one replica of all, and the append-only file rewritten once a day, so that what
expired leaves the disk; a Redis that refuses the rewrite, or keeps no AOF, is left as it is."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio

from gateway.store import AuditEntry, Compaction
from gateway.store.deadline import StoreOptions
from gateway.store.housekeeping import COMPACT_SECONDS, PURGE_SECONDS, Housekeeping
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    try:
        yield server
    finally:
        stop_process(server.proc)


def aof_text(server: RedisProcess) -> str:
    return "".join(
        path.read_text(errors="replace")
        for path in sorted((server.workdir / "appendonlydir").iterdir())
    )


def lock(room: str, at: float) -> AuditEntry:
    return AuditEntry(at=at, room=room, actor="host-id", actor_name="Ada", action="lock")


async def test_entries_past_the_retention_are_purged_once_an_hour_by_one_replica(
    aof_redis: RedisProcess,
) -> None:
    options = StoreOptions(audit_retention_seconds=4.0)
    stores = [await RedisStore.connect(aof_redis.url, options) for _ in range(2)]
    client = redis.asyncio.Redis.from_url(aof_redis.url, decode_responses=True)
    try:
        now = time.time()
        # Written within the retention of each other (nothing trims them on writing)...
        for room in ("board", "staff"):
            await stores[0].append_audit(lock(room, now - 6.0))
            await stores[0].append_audit(lock(room, now - 3.0))
        await stores[0].append_audit(lock("quiet", now - 6.0))
        clock = Clock(now)
        replicas = [Housekeeping(store, 4.0, clock=clock) for store in stores]
        # ...the hour's purge drops what is past it now: from the lists, and from the disk's
        # view of them (the key of a room with nothing left goes).
        done = [await replica.run_due() for replica in replicas]
        assert [d.purged for d in done] == [3, None]
        lengths = [await client.llen(f"meetgate:audit:{room}") for room in ("board", "staff")]
        assert lengths == [1, 1]
        assert not await client.exists("meetgate:audit:quiet")
        # Not again within the hour, by either; the next hour, by one of them (whichever comes
        # first), by the clock of then: everything here is past the retention by then.
        await stores[1].append_audit(lock("board", now - 5.0))
        assert [(await replica.run_due()).purged for replica in replicas] == [None, None]
        clock.now += PURGE_SECONDS
        assert [(await replica.run_due()).purged for replica in replicas[::-1]] == [3, None]
        assert not await client.keys("meetgate:audit:*")
    finally:
        await client.aclose()
        for store in stores:
            await store.close()


async def test_the_aof_is_rewritten_once_a_day_and_what_expired_leaves_it(
    aof_redis: RedisProcess,
) -> None:
    store = await RedisStore.connect(aof_redis.url)
    client = redis.asyncio.Redis.from_url(aof_redis.url, decode_responses=True)
    try:
        # An invitee's name, in a record that has expired (as an admission or invite does).
        await client.set("meetgate:value:gone", "Hilde Hostovna", px=50)
        await client.set("meetgate:value:kept", "still here")
        assert "Hilde Hostovna" in aof_text(aof_redis)
        deadline = time.monotonic() + 5
        while await client.exists("meetgate:value:gone"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        clock = Clock(time.time())
        housekeeping = Housekeeping(store, 30 * 86_400.0, clock=clock)
        assert (await housekeeping.run_due()).compaction is Compaction.STARTED
        while (await client.info("persistence"))["aof_rewrite_in_progress"]:
            assert time.monotonic() < deadline + 10
            await asyncio.sleep(0.05)
        text = aof_text(aof_redis)
        assert "Hilde Hostovna" not in text and "still here" in text
        # Once a day: not again today, again tomorrow.
        assert (await housekeeping.run_due()).compaction is None
        clock.now += COMPACT_SECONDS
        assert (await housekeeping.run_due()).compaction is Compaction.STARTED
    finally:
        await client.aclose()
        await store.close()


async def test_a_refused_rewrite_is_said_once_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_redis(
        tmp_path / "redis", "--appendonly", "yes", "--rename-command", "BGREWRITEAOF", ""
    )
    store = await RedisStore.connect(server.url)
    try:
        clock = Clock(time.time())
        housekeeping = Housekeeping(store, 86_400.0, clock=clock)
        with caplog.at_level(logging.WARNING, logger="meetgate.store"):
            for _ in range(2):
                done = await housekeeping.run_due()
                assert done.compaction is Compaction.REFUSED
                clock.now += COMPACT_SECONDS
        assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
        assert "BGREWRITEAOF" in caplog.records[0].getMessage()
        # The store is still judged up: a refusal is not an outage.
        assert store.health.up
        await store.ping()
    finally:
        await store.close()
        stop_process(server.proc)


async def test_no_aof_is_written_where_there_was_none(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")  # appendonly no, as the tests' Redis runs
    store = await RedisStore.connect(server.url)
    try:
        await store.append_audit(lock("board", time.time()))
        assert await store.compact() is Compaction.NOTHING_ON_DISK
        assert not (server.workdir / "appendonlydir").exists()
    finally:
        await store.close()
        stop_process(server.proc)
    assert await MemoryStore().compact() is Compaction.NOTHING_ON_DISK
