"""Retention after a meeting's end time moves (issue 19's second review), on the memory store:
an answer holding a room read before the move writes with the room's time as it is now, and a
retime keeps the room's waiting index as the records."""

from __future__ import annotations

import time
from dataclasses import replace

from gateway.store.memory import MemoryStore
from tests.contract.test_registrations import fresh_address, make_desk, stored_room

HOUR = 3600.0


def left(store: MemoryStore, key: str, member: str | None = None) -> float:
    """How long the memory store keeps a value, or an index's member (a test's look at its
    tables: no store call tells)."""
    if member is not None:
        return store._indexes[key][member] - store._short_lived_now()
    return store._values[key][1] - store._short_lived_now()


async def test_a_deny_holding_the_old_end_time_keeps_the_new_one() -> None:
    """Catches an answer that read the room before its end moved earlier writing the record
    with the old, longer retention."""
    store = MemoryStore()
    desk = make_desk(store)
    now = time.time()
    room = await stored_room(store, starts_at=now, ends_at=now + 100 * HOUR)
    registration = (await desk.registered(room, "Ada", fresh_address())).registration
    moved = replace(room, ends_at=now + HOUR)
    await store.update_room(moved)
    await desk.registrations.retime(moved, time.time())
    # The answer was asked with the room as read before the move.
    assert await desk.registrations.deny(room, [registration.id], "Hilde", time.time()) == 1
    kept = desk.registrations.kept_seconds(moved, time.time())
    assert kept is not None
    assert left(store, f"registration:record:{registration.id}") <= kept + 1


async def test_a_retime_keeps_the_waiting_index_as_the_records() -> None:
    """Catches the room's index of waiting registrations kept past the meeting's retention after
    its end moved earlier (its entries kept their first expiry)."""
    store = MemoryStore()
    desk = make_desk(store)
    now = time.time()
    room = await stored_room(store, starts_at=now, ends_at=now + 100 * HOUR)
    registration = (await desk.registered(room, "Ada", fresh_address())).registration
    moved = replace(room, ends_at=now + HOUR)
    await store.update_room(moved)
    assert await desk.registrations.retime(moved, time.time()) == 1
    kept = desk.registrations.kept_seconds(moved, time.time())
    assert kept is not None
    index = f"registration:waiting-room:{room.name}"
    assert left(store, index, registration.id) <= kept + 1
