"""A room's admissions index in Redis (`meetgate:room-admissions:<room>`) lasts exactly as long
as its latest admission, whichever write added to it, so a room nobody reads or joins again
leaves no index behind (found by the attack replay: docs/privacy.md bounds every key)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from gateway.store import InviteJoined, LinkJoined
from gateway.store.redis import RedisStore
from tests.contract.test_store import HOUR, eventually, make_admission, unique
from tests.contract.test_store_joins import (
    join_of,
    look,
    plain_join,
    room_with_invite,
    room_with_planned_invite,
    through_link,
)

INDEX = "meetgate:room-admissions:"
ADMISSION = "meetgate:admission:"


@pytest.fixture
async def redis_store(contract_redis_url: str) -> AsyncIterator[RedisStore]:
    store = await RedisStore.connect(contract_redis_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def client(contract_redis_url: str) -> AsyncIterator[redis.asyncio.Redis[str]]:
    opened: redis.asyncio.Redis[str] = redis.asyncio.Redis.from_url(
        contract_redis_url, decode_responses=True
    )
    try:
        yield opened
    finally:
        await opened.aclose()


async def assert_lasts_as(client: redis.asyncio.Redis[str], room: str, admission_id: str) -> None:
    """The room's index expires when the admission's record does, to the millisecond."""
    assert await client.pttl(INDEX + room) > 0
    expires = await client.pexpiretime(ADMISSION + admission_id)
    assert expires > 0
    assert await client.pexpiretime(INDEX + room) == expires


async def test_the_index_lasts_as_its_latest_admission_added(
    redis_store: RedisStore, client: redis.asyncio.Redis[str]
) -> None:
    room = unique("room")
    first = make_admission(room)
    await redis_store.add_admission(first)
    await assert_lasts_as(client, room, first.id)
    later = make_admission(room, expires_at=time.time() + 2 * HOUR)
    await redis_store.add_admission(later)
    await assert_lasts_as(client, room, later.id)
    # One that ends sooner does not shorten it; nor does one already expired end it.
    await redis_store.add_admission(make_admission(room, expires_at=time.time() + 60))
    await redis_store.add_admission(make_admission(room, expires_at=time.time() - 1))
    await assert_lasts_as(client, room, later.id)
    assert {a.id for a in await redis_store.list_admissions(room)} >= {first.id, later.id}


async def test_an_index_kept_without_expiry_gets_its_latest_admissions(
    redis_store: RedisStore, client: redis.asyncio.Redis[str]
) -> None:
    """An index an earlier release wrote (no TTL) is given one at its next write: the latest of
    its entries', not the new entry's, and not ended by an admission already expired."""
    room = unique("room")
    longest = make_admission(room, expires_at=time.time() + 2 * HOUR)
    await redis_store.add_admission(longest)
    await client.persist(INDEX + room)
    await redis_store.add_admission(make_admission(room, expires_at=time.time() - 1))
    assert [a.id for a in await redis_store.list_admissions(room)] == [longest.id]
    await redis_store.add_admission(make_admission(room))
    await assert_lasts_as(client, room, longest.id)


async def test_every_join_gives_the_index_its_latest_admissions_expiry(
    redis_store: RedisStore, client: redis.asyncio.Redis[str]
) -> None:
    # By invite (join_by_invite.lua).
    room, invite = await room_with_invite(redis_store, max_uses=5)
    await client.persist(INDEX + room.name)
    joined = await redis_store.join_by_invite(join_of(room, invite, "Ada"))
    assert joined.admission is not None
    await assert_lasts_as(client, room.name, joined.admission.id)
    # Through a link (join_link.lua), the admission lasting longer than the first.
    longer = make_admission(room.name, name="", expires_at=time.time() + 2 * HOUR)
    found = await look(redis_store, invite)
    linked = await redis_store.join_through_link(
        through_link(found, join_of(room, invite, "Bob", admission=longer))
    )
    assert isinstance(linked, InviteJoined) and linked.admission is not None
    await assert_lasts_as(client, room.name, longer.id)
    # Plainly (join_plain.lua), in a room of its own.
    other, planned, _ = await room_with_planned_invite(redis_store, max_uses=2)
    plain = await redis_store.join_plainly(plain_join(planned))
    assert isinstance(plain, LinkJoined) and plain.admission is not None
    await assert_lasts_as(client, other.name, plain.admission.id)


async def test_a_move_gives_both_rooms_indexes_their_latest_admissions_expiry(
    redis_store: RedisStore, client: redis.asyncio.Redis[str]
) -> None:
    old, new = unique("room"), unique("room")
    staying = make_admission(old)
    moving = make_admission(old, expires_at=time.time() + 2 * HOUR)
    for admission in (staying, moving):
        await redis_store.add_admission(admission)
    await client.persist(INDEX + old)
    moved = await redis_store.move_admission(moving.id, new)
    assert moved == dataclasses.replace(moving, room=new)
    await assert_lasts_as(client, new, moving.id)
    await assert_lasts_as(client, old, staying.id)
    # The last one moved out, the old room's index is gone.
    assert await redis_store.move_admission(staying.id, new) is not None
    assert await client.exists(INDEX + old) == 0
    await assert_lasts_as(client, new, moving.id)


async def test_an_idle_rooms_index_goes_with_its_last_admission(
    redis_store: RedisStore, client: redis.asyncio.Redis[str]
) -> None:
    room = unique("room")
    await redis_store.add_admission(make_admission(room, expires_at=time.time() + 0.2))
    assert await client.exists(INDEX + room) == 1

    async def gone() -> bool:
        # Not read through the store: a read would prune the index itself.
        return await client.exists(INDEX + room) == 0

    await eventually(gone)
