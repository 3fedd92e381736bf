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


async def test_an_ok_marker_of_another_master_is_no_acknowledgement(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A split brain (a Sentinel failover without min-replicas-to-write): this replica alternates
    between the new master, whose marker went back and which it marked lost, and the old one,
    whose marker other replicas keep advancing as `ok`, of the epoch before the loss and past the
    lost generation. Only an admin's acknowledgement clears the loss."""
    for _ in range(4):
        assert not await check_memory(store)
    before = parse_marker(await marker_of(store))
    assert before is not None
    epoch, generation = before.epoch, before.generation
    # The new master: a copy from two checks back.
    assert await store.replace_marker(await marker_of(store), f"{epoch}:{generation - 2}:ok")
    with caplog.at_level(logging.INFO, logger="meetgate.store"):
        assert await check_memory(store)
        for switch in range(1, 6):
            new_master = await marker_of(store)
            assert (parse_marker(new_master) or before).lost
            # The old master, advanced by the other replicas meanwhile.
            old_master = f"{epoch}:{generation + 10 * switch}:ok"
            assert await store.replace_marker(new_master, old_master)
            assert await check_memory(store)
            # It writes the loss into that master too, under an epoch of its own.
            written = parse_marker(await marker_of(store))
            assert written is not None and written.lost and written.epoch != epoch
            assert await store.replace_marker(await marker_of(store), new_master)
            assert await check_memory(store)
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "acknowledged" in m], said
    assert len([m for m in said if "lost its memory" in m]) == 1, said

    assert await acknowledge_loss(store) is not None
    assert not store.continuity.lost
    assert not await check_memory(store)


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
        # The loss is written under an epoch of its own.
        assert found is not None and found.lost and not older.startswith(found.epoch + ":")
        # The same copy again, before any admin acknowledged: an ok marker, but of the epoch
        # before the loss, is that copy, not an acknowledgement.
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


async def test_after_a_split_brain_one_acknowledgement_clears_every_replica(
    replicas: list[Store], contract_redis_url: str
) -> None:
    a, b, c = replicas
    for replica in (a, b, c):
        assert not await check_memory(replica)
    older = await marker_of(a)
    for _ in range(3):
        for replica in (a, b, c):
            assert not await check_memory(replica)
    advanced = parse_marker(await marker_of(a))
    assert advanced is not None
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        await client.set("meetgate:memory", older)  # the new master, behind
        assert await check_memory(b)
        # The old master's marker, advanced as `ok` by replicas still writing to it.
        await client.set("meetgate:memory", f"{advanced.epoch}:{advanced.generation + 20}:ok")
        assert await check_memory(b)
        assert await check_memory(a)
        assert await check_memory(c)
    finally:
        await client.aclose()
    # The split is over; every replica has checked the one marker left, and an admin acknowledges.
    for replica in (a, b, c):
        assert await check_memory(replica)
    assert await acknowledge_loss(a) is not None
    for replica in (a, b, c):
        assert not await check_memory(replica)


@pytest.mark.parametrize("seen_before", [False, True])
async def test_a_loss_the_previous_release_wrote_is_acknowledged_as_before(
    replicas: list[Store], contract_redis_url: str, seen_before: bool
) -> None:
    """The previous release wrote a loss under the epoch it found (`<epoch>:<n>:lost`, the same
    shape): after an upgrade it still reads as a loss, and an acknowledgement clears it. A
    replica that saw that epoch `ok` gives the loss an epoch of its own, so that no `ok` marker of
    the old epoch passes for the acknowledgement."""
    a, b, _ = replicas
    epoch = "0123456789abcdef0123456789abcdef"
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        if seen_before:
            await client.set("meetgate:memory", f"{epoch}:7:ok")
            assert not await check_memory(a)
            assert not await check_memory(b)
        await client.set("meetgate:memory", f"{epoch}:9:lost")
        assert await check_memory(a)
        assert await check_memory(b)
        stored = parse_marker(await marker_of(a))
        assert stored is not None and stored.lost and (stored.epoch == epoch) is not seen_before
        if seen_before:
            await client.set("meetgate:memory", f"{epoch}:40:ok")
            assert await check_memory(a)
    finally:
        await client.aclose()
    assert await acknowledge_loss(b) is not None
    for replica in (a, b):
        assert not await check_memory(replica)


def test_the_contract_database_is_not_the_gateways() -> None:
    # The flushes above must never reach the database gateway fixtures share (0).
    assert CONTRACT_DB != 0
