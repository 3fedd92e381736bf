"""The store's memory is checked (gateway/store/continuity.py): a store that comes back without
what it held — emptied, restarted without its data, restored from an older copy, its marker
garbled — is found so by every replica, stays so whatever replicas start, and is admitted again
only when an admin acknowledges it.

The checks run through the `Store` protocol on both backends; what only a shared store can show
(several replicas, a FLUSHDB, an older copy) runs on a real redis-server, each replica a store of
its own as `meetgate serve` opens it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from gateway.store import Store, open_store
from gateway.store.continuity import acknowledge_loss, check_memory, parse_marker
from tests.fixtures.redis_server import CONTRACT_DB


async def marker_of(store: Store) -> str:
    raw = await store.read_marker()
    assert raw is not None
    return raw


async def test_a_new_store_gets_a_marker_and_keeps_its_memory(store: Store) -> None:
    assert not await check_memory(store)
    first = parse_marker(await marker_of(store))
    assert first is not None and not first.lost
    for _ in range(3):
        assert not await check_memory(store)
    later = parse_marker(await marker_of(store))
    assert later is not None
    assert (later.epoch, later.generation, later.lost) == (first.epoch, first.generation + 3, False)
    assert await acknowledge_loss(store) is None


async def test_a_garbled_marker_is_a_lost_memory_until_acknowledged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    assert not await check_memory(store)
    assert await store.replace_marker(await marker_of(store), "garbled")
    with caplog.at_level(logging.ERROR, logger="meetgate.store"):
        assert await check_memory(store)
        assert await check_memory(store)
    # Told once (a reminder comes minutes later), and written into the store for every replica.
    losses = [r for r in caplog.records if "lost its memory" in r.getMessage()]
    assert len(losses) == 1 and "does not parse" in losses[0].getMessage()
    stored = parse_marker(await marker_of(store))
    assert stored is not None and stored.lost
    assert store.continuity.lost

    assert await acknowledge_loss(store) == "its memory marker does not parse"
    assert not store.continuity.lost
    assert not await check_memory(store)
    stored = parse_marker(await marker_of(store))
    assert stored is not None and not stored.lost


@pytest.fixture
async def replicas(contract_redis_url: str) -> AsyncIterator[list[Store]]:
    """Three replicas' stores on one emptied Redis database, and a raw client to it."""
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    opened = [await open_store(contract_redis_url) for _ in range(3)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def flush(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def test_an_emptied_store_is_lost_for_every_replica_and_for_new_ones(
    replicas: list[Store], contract_redis_url: str
) -> None:
    a, b, c = replicas
    assert not await check_memory(a)
    assert not await check_memory(b)
    await flush(contract_redis_url)
    assert await check_memory(a)
    assert "gone" in a.continuity.reason
    # B has not looked since the flush: it learns it from the marker A left.
    assert await check_memory(b)
    # A replica started only now (C: never saw a marker) does not take the store for a new one.
    assert await check_memory(c)
    # Its check does not clear anything either; only an admin does.
    assert await check_memory(a)
    assert await acknowledge_loss(c) is not None
    for replica in (a, b, c):
        assert not await check_memory(replica)


async def test_a_fresh_replica_writing_a_new_marker_first_does_not_hide_the_loss(
    replicas: list[Store], contract_redis_url: str
) -> None:
    a, b, c = replicas
    assert not await check_memory(a)
    await flush(contract_redis_url)
    # C starts against the emptied store before A looks again: it writes a new store's marker.
    assert not await check_memory(c)
    assert await check_memory(a)
    assert "not the one it held" in a.continuity.reason
    # From then on C, and any other, sees the loss A wrote into the marker.
    assert await check_memory(c)
    assert await check_memory(b)


async def test_a_store_restored_from_an_older_copy_is_lost(
    replicas: list[Store], contract_redis_url: str
) -> None:
    a, b, _ = replicas
    assert not await check_memory(a)
    older = await marker_of(a)
    for _ in range(5):
        assert not await check_memory(b)
        assert not await check_memory(a)
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        await client.set("meetgate:memory", older)
    finally:
        await client.aclose()
    assert await check_memory(a)
    assert "went back" in a.continuity.reason
    assert await check_memory(b)


async def test_an_older_copy_coming_back_while_lost_is_no_acknowledgement(
    replicas: list[Store], contract_redis_url: str
) -> None:
    a, _, _ = replicas
    assert not await check_memory(a)
    older = await marker_of(a)
    for _ in range(5):
        assert not await check_memory(a)
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        await client.set("meetgate:memory", older)
        assert await check_memory(a)
        found = parse_marker(await marker_of(a))
        assert found is not None and found.lost and older.startswith(found.epoch)
        # The same copy again, before any admin acknowledged: an ok marker of the same epoch,
        # but not past the lost one's generation, is that copy, not an acknowledgement.
        await client.set("meetgate:memory", older)
    finally:
        await client.aclose()
    assert await check_memory(a)
    stored = parse_marker(await marker_of(a))
    assert stored is not None and stored.lost
    assert await acknowledge_loss(a) is not None
    assert not a.continuity.lost


async def test_acknowledging_an_intact_store_changes_nothing(replicas: list[Store]) -> None:
    a, b, _ = replicas
    assert not await check_memory(a)
    assert await acknowledge_loss(b) is None
    assert not await check_memory(a)
    stored = parse_marker(await marker_of(a))
    assert stored is not None and not stored.lost


def test_the_contract_database_is_not_the_gateways() -> None:
    # The flushes above must never reach the database gateway fixtures share (0).
    assert CONTRACT_DB != 0
