"""A room's chat rules (quiet mode, chat limits, strikes) as both stores keep them: read back
equal, read with their defaults from a record written before them, and judged by join_plain.lua
as `parse_room` judges them."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest

from gateway.store import LinkFound, LinkJoined, Store
from gateway.store.records import (
    AuditEntry,
    AuditFacts,
    AuditKind,
    ChatLimits,
    RecordKind,
    encode_record,
)
from tests.contract.test_store import make_room, write_room_record
from tests.contract.test_store_joins import plain_join, room_with_planned_invite, write_raw

RULES: dict[str, Any] = {
    "quiet": True,
    "quiet_private_to_hosts": False,
    "chat_per_10s": 3,
    "chat_burst": 4,
    "chat_max_bytes": 512,
    "guard_strikes": 0,
}


async def test_a_rooms_chat_rules_read_back_equal(store: Store) -> None:
    room = dataclasses.replace(make_room(), **RULES)
    await store.create_room(room)
    assert await store.get_room(room.name) == room
    default = await store.change_room(
        room.name, lambda r: dataclasses.replace(r, guard_strikes=None, quiet=False)
    )
    assert await store.get_room(room.name) == default and default.guard_strikes is None


async def test_a_room_stored_before_its_chat_rules_reads_with_their_defaults(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    data = json.loads(encode_record(room))
    for name in RULES:
        del data[name]
    await write_room_record(store, room.name, json.dumps(data))
    read = await store.get_room(room.name)
    assert read == room
    assert read is not None and not read.quiet and read.quiet_private_to_hosts
    assert (read.chat_per_10s, read.chat_burst, read.chat_max_bytes) == (0, 0, 0)
    assert read.guard_strikes is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quiet", 1),
        ("chat_per_10s", -1),
        ("chat_burst", 2.5),
        ("chat_max_bytes", "512"),
        ("guard_strikes", -1),
        ("guard_strikes", "default"),
    ],
)
async def test_a_plain_join_admits_nobody_through_a_room_with_bad_chat_rules(
    store: Store, field: str, value: object
) -> None:
    """Catches join_plain.lua letting through a room record `parse_room` refuses."""
    room, invite, _ = await room_with_planned_invite(store)
    store.health.take_corrupt_counts()
    data = {**json.loads(encode_record(room)), field: value}
    await write_raw(store, RecordKind.ROOM, room.name, {"record": json.dumps(data)})
    answer = await store.join_plainly(plain_join(invite))
    assert not isinstance(answer, LinkJoined | LinkFound)
    assert store.health.take_corrupt_counts() == {RecordKind.ROOM: 1}
    assert not await store.list_admissions(room.name)


@pytest.mark.parametrize("strikes", [None, 0, 7])
async def test_a_plain_join_admits_through_a_room_with_chat_rules(
    store: Store, strikes: int | None
) -> None:
    """Catches join_plain.lua refusing a room record with the chat rules set (null included)."""
    room = dataclasses.replace(make_room(), **{**RULES, "guard_strikes": strikes})
    room, invite, _ = await room_with_planned_invite(store, room)
    answer = await store.join_plainly(plain_join(invite))
    assert isinstance(answer, LinkJoined) and answer.admission is not None
    assert await store.get_room(room.name) == room


@pytest.mark.parametrize(
    "limits",
    [ChatLimits(), ChatLimits(3, 4, 512, 0, private_to_hosts=False), ChatLimits(strikes=9)],
)
async def test_an_audit_entry_keeps_the_chat_limits_it_set(
    store: Store, limits: ChatLimits
) -> None:
    room = make_room()
    await store.create_room(room)
    entry = AuditEntry(
        at=time.time(),
        room=room.name,
        actor="h",
        actor_name="Hilde",
        action="change chat limits",
        facts=AuditFacts(AuditKind.CHAT_LIMITS, limits=limits),
    )
    await store.append_audit(entry)
    assert await store.list_audit(room.name) == [entry]
    with pytest.raises(ValueError, match="hold exactly"):
        AuditFacts(AuditKind.CHAT_LIMITS)
    with pytest.raises(ValueError, match="hold exactly"):
        AuditFacts(AuditKind.REMOVED, count=1, limits=limits)


def test_a_rooms_chat_limits_are_its_fields() -> None:
    limits = ChatLimits(3, 4, 512, None, private_to_hosts=False)
    room = limits.applied_to(make_room())
    assert ChatLimits.of(room) == limits
    assert (room.chat_per_10s, room.chat_burst, room.chat_max_bytes) == (3, 4, 512)
    assert room.guard_strikes is None and not room.quiet_private_to_hosts
