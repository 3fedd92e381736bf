"""Lifting a ban (`Store.unban_identity`, for `meetgate room unban`) as both stores do it: the
identity may come back at once, the answer says whether a ban held, and no other ban is touched.
"""

from __future__ import annotations

import secrets
import time

from gateway.store import Store

HOUR = 3600.0


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


async def test_an_unban_lifts_a_ban_for_good_and_a_ban_with_an_end(store: Store) -> None:
    room, forever, later = unique("room"), unique("who"), unique("who")
    now = time.time()
    await store.ban_identity(room, forever, None)
    await store.ban_identity(room, later, now + HOUR)
    assert await store.are_banned([(room, forever), (room, later)], now) == [True, True]
    assert await store.unban_identity(room, forever)
    assert await store.are_banned([(room, forever), (room, later)], now) == [False, True]
    assert await store.unban_identity(room, later)
    assert not await store.is_banned(room, later, now)


async def test_an_unban_says_when_there_was_no_ban_and_touches_no_other(store: Store) -> None:
    room, identity, other = unique("room"), unique("who"), unique("who")
    await store.ban_identity(room, other, None)
    assert not await store.unban_identity(room, identity)
    assert not await store.unban_identity(unique("room"), other)  # another meeting's
    await store.ban_identity(room, identity, time.time() - 1)  # already over
    assert not await store.unban_identity(room, identity)
    await store.ban_identity(room, identity, None)
    assert await store.unban_identity(room, identity)
    assert not await store.unban_identity(room, identity)  # twice: nothing left
    assert await store.is_banned(room, other, time.time())


async def test_a_ban_set_again_after_an_unban_holds(store: Store) -> None:
    room, identity = unique("room"), unique("who")
    await store.ban_identity(room, identity, None)
    assert await store.unban_identity(room, identity)
    await store.ban_identity(room, identity, time.time() + HOUR)
    assert await store.is_banned(room, identity, time.time())
