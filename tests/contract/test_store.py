"""The `Store` contract: every backend behaves the same, checked through the protocol alone.

Each test runs against `memory` and against `redis` (a real redis-server the fixtures start); the
tests at the end cover what only Redis has: several clients on one database, and an outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admission.address_keys import utc_day
from gateway.admission.names import claim_shown_name, name_choices, skeleton
from gateway.errors import (
    InviteError,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsedUp,
    RoomExists,
    RoomNotFound,
    StoreUnavailable,
)
from gateway.store import (
    INVITE_KEPT_AFTER_EXPIRY,
    Admission,
    AuditEntry,
    Invite,
    LimitCharge,
    NameClaim,
    RateDecision,
    Role,
    Room,
    RoomPolicy,
    Store,
    Subscription,
)
from gateway.store.deadline import StoreOptions
from gateway.store.memory import MemoryStore
from gateway.store.records import (
    AuditFacts,
    AuditKind,
    PolicyShape,
    RecordKind,
    encode_audit,
    encode_record,
)
from gateway.store.redis import RedisStore
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.redis_server import start_redis

HOUR = 3600.0
CYRILLIC_A = "\N{CYRILLIC SMALL LETTER A}"


def subscribe(store: Store, channel: str) -> Subscription:
    return store.subscribe(channel)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def make_room(name: str | None = None, created_at: float | None = None) -> Room:
    return Room(
        name=name or unique("room"),
        title="Strategy meeting",
        created_at=time.time() if created_at is None else created_at,
        hosts=("host-a", "host-b"),
        policy=RoomPolicy(invite=True),
    )


def make_invite(room: str, **changes: Any) -> Invite:
    now = time.time()
    invite = Invite(
        id=unique("inv"),
        token_hash=secrets.token_hex(32),
        room=room,
        name="Ada Lovelace",
        role=Role.ATTENDEE,
        max_uses=1,
        uses=0,
        expires_at=now + HOUR,
        created_at=now,
    )
    return dataclasses.replace(invite, **changes)


def make_admission(room: str, **changes: Any) -> Admission:
    now = time.time()
    admission = Admission(
        id=secrets.token_hex(32),
        room=room,
        identity=unique("who"),
        name="Grace Hopper",
        role=Role.ATTENDEE,
        via="invite",
        created_at=now,
        expires_at=now + HOUR,
    )
    return dataclasses.replace(admission, **changes)


# Audit entries' times: an hour ago (and a second or more later), well within the retention.
AN_HOUR_AGO = time.time() - 3600.0


def make_audit(room: str, at: float, **changes: Any) -> AuditEntry:
    entry = AuditEntry(
        at=at,
        room=room,
        actor=unique("host"),
        actor_name="Ada Lovelace",
        action="revoke",
        target=unique("who"),
        detail="left the meeting",
    )
    return dataclasses.replace(entry, **changes)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def next_message(subscription: Subscription, timeout: float = 5.0) -> str:
    return await asyncio.wait_for(anext(subscription), timeout)


# Rooms


async def test_created_room_reads_back_equal(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    assert await store.get_room(room.name) == room
    assert await store.get_room(unique("nowhere")) is None


async def test_creating_a_room_twice_raises_and_keeps_the_first(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    with pytest.raises(RoomExists):
        await store.create_room(Room(name=room.name, title="Impostor", created_at=time.time()))
    assert await store.get_room(room.name) == room


async def test_rooms_are_listed_oldest_first(store: Store) -> None:
    rooms = [make_room("b", 30.0), make_room("a", 10.0), make_room("c", 20.0)]
    for room in rooms:
        await store.create_room(room)
    assert [room.name for room in await store.list_rooms()] == ["a", "c", "b"]


async def test_deleting_a_room(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    assert await store.delete_room(room.name, time.time()) is True
    assert await store.get_room(room.name) is None
    assert await store.list_rooms() == []
    assert await store.delete_room(room.name, time.time()) is False
    await store.create_room(room)
    assert await store.get_room(room.name) == room


async def test_deleting_a_room_removes_its_invites_and_revokes_its_admissions(
    store: Store,
) -> None:
    doomed, other = make_room(), make_room()
    await store.create_room(doomed)
    await store.create_room(other)
    invites = [make_invite(doomed.name), make_invite(doomed.name, max_uses=5)]
    admissions = [make_admission(doomed.name), make_admission(doomed.name)]
    kept_invite, kept_admission = make_invite(other.name), make_admission(other.name)
    for invite in [*invites, kept_invite]:
        await store.add_invite(invite)
    for admission in [*admissions, kept_admission]:
        await store.add_admission(admission)
    # Looked up before: a store that remembers which invite a token names must not revive them.
    for invite in invites:
        assert await store.find_invite(invite.token_hash) == invite

    assert await store.delete_room(doomed.name, time.time())

    assert await store.list_invites(doomed.name) == []
    for invite in invites:
        assert await store.get_invite(invite.id) is None
        assert await store.find_invite(invite.token_hash) is None
        with pytest.raises(InviteUnknown):
            await store.redeem_invite(invite.token_hash, time.time())
    assert await store.list_admissions(doomed.name) == []
    for admission in admissions:
        assert await store.get_admission(admission.id) == dataclasses.replace(
            admission, revoked=True
        )
    assert await store.get_invite(kept_invite.id) == kept_invite
    assert await store.get_admission(kept_admission.id) == kept_admission
    # A room of the same name starts empty.
    await store.create_room(doomed)
    assert await store.list_invites(doomed.name) == []


async def test_updating_a_room_replaces_its_record(store: Store) -> None:
    room, other = make_room(created_at=10.0), make_room(created_at=20.0)
    await store.create_room(room)
    await store.create_room(other)
    updated = dataclasses.replace(
        room,
        title="Strategy meeting (moved) ✓",
        hosts=("host-c",),
        locked=True,
        approval_required=True,
        moved_to=other.name,
        lineage=unique("room"),
    )
    await store.update_room(updated)
    assert await store.get_room(room.name) == updated
    assert await store.list_rooms() == [updated, other]
    reopened = dataclasses.replace(
        updated, locked=False, approval_required=False, moved_to=None, lineage=""
    )
    await store.update_room(reopened)
    assert await store.get_room(room.name) == reopened
    assert await store.get_room(other.name) == other


async def test_racing_room_changes_are_all_kept(store: Store) -> None:
    # Hosts locking, moving and changing the policy at once: no change undoes another.
    room = make_room()
    await store.create_room(room)

    def add_host(n: int) -> Callable[[Room], Room]:
        return lambda current: dataclasses.replace(current, hosts=(*current.hosts, f"h{n}"))

    changed = await asyncio.gather(*(store.change_room(room.name, add_host(n)) for n in range(10)))
    final = await store.get_room(room.name)
    assert final is not None
    assert sorted(final.hosts) == sorted([*room.hosts, *(f"h{n}" for n in range(10))])
    assert final in changed
    assert final.title == room.title and final.created_at == room.created_at


async def test_a_refused_room_change_writes_nothing(store: Store) -> None:
    room = make_room()
    await store.create_room(room)

    def refuse(current: Room) -> Room:
        raise RoomNotFound()

    with pytest.raises(RoomNotFound):
        await store.change_room(room.name, refuse)
    assert await store.get_room(room.name) == room
    with pytest.raises(RoomNotFound):
        await store.change_room(unique("room"), lambda current: current)
    # The store still answers afterwards (the refused change left no transaction open).
    locked = await store.change_room(room.name, lambda r: dataclasses.replace(r, locked=True))
    assert locked.locked and await store.get_room(room.name) == locked


async def test_updating_a_missing_room_raises_and_creates_nothing(store: Store) -> None:
    room = dataclasses.replace(make_room(), locked=True)
    with pytest.raises(RoomNotFound):
        await store.update_room(room)
    assert await store.get_room(room.name) is None
    await store.create_room(room)
    assert await store.delete_room(room.name, time.time())
    with pytest.raises(RoomNotFound):
        await store.update_room(room)
    assert await store.list_rooms() == []


async def test_a_rooms_default_language_is_kept_and_changed(store: Store) -> None:
    room = dataclasses.replace(make_room(), language="zh-Hant")
    await store.create_room(room)
    assert await store.get_room(room.name) == room
    simplified = await store.change_room(
        room.name, lambda r: dataclasses.replace(r, language="zh-Hans")
    )
    assert simplified.language == "zh-Hans" and await store.get_room(room.name) == simplified
    cleared = await store.change_room(room.name, lambda r: dataclasses.replace(r, language=""))
    assert await store.list_rooms() == [cleared] and cleared.language == ""


async def write_room_record(store: Store, name: str, record: str) -> None:
    if isinstance(store, RedisStore):
        await store.write_raw(RecordKind.ROOM, name, {"record": record})
    else:
        assert isinstance(store, MemoryStore)
        store.write_raw(RecordKind.ROOM, name, {"record": record})


async def test_a_stored_language_of_none_of_ours_is_no_default(store: Store) -> None:
    # A language since dropped from the catalogs, or a hand edit: the room still opens, in the
    # visitor's language or English, and nothing is counted as corrupt.
    room = dataclasses.replace(make_room(), language="zh-Hant")
    await store.create_room(room)
    store.health.take_corrupt_counts()
    for stored in ("fr", "ZH-HANT", " zh-Hant", "<script>", ""):
        data = {**json.loads(encode_record(room)), "language": stored}
        await write_room_record(store, room.name, json.dumps(data))
        assert await store.get_room(room.name) == dataclasses.replace(room, language="")
    assert store.health.take_corrupt_counts() == {}
    # Not text at all: the record was not written by Meetgate, and is refused as any field.
    data = {**json.loads(encode_record(room)), "language": ["zh-Hant"]}
    await write_room_record(store, room.name, json.dumps(data))
    assert await store.get_room(room.name) is None
    assert store.health.take_corrupt_counts() == {RecordKind.ROOM: 1}


async def test_deleting_a_locked_and_moved_room(store: Store) -> None:
    room = dataclasses.replace(
        make_room(),
        locked=True,
        approval_required=True,
        moved_to=unique("room"),
        lineage=unique("room"),
    )
    await store.create_room(room)
    assert await store.get_room(room.name) == room
    assert await store.delete_room(room.name, time.time()) is True
    assert await store.get_room(room.name) is None
    assert await store.delete_room(room.name, time.time()) is False


# Invites


async def test_an_invite_needs_an_existing_room(store: Store) -> None:
    invite = make_invite(unique("nowhere"))
    with pytest.raises(RoomNotFound):
        await store.add_invite(invite)
    assert await store.get_invite(invite.id) is None
    assert await store.find_invite(invite.token_hash) is None


async def test_invites_read_back_by_id_token_hash_and_room(store: Store) -> None:
    room, other = make_room(), make_room()
    await store.create_room(room)
    await store.create_room(other)
    later = make_invite(room.name, created_at=200.0, role=Role.HOST, max_uses=3)
    earlier = make_invite(room.name, created_at=100.0, name="Émilie du Châtelet ✓")
    elsewhere = make_invite(other.name)
    for invite in (later, earlier, elsewhere):
        await store.add_invite(invite)

    assert await store.get_invite(later.id) == later
    assert await store.find_invite(earlier.token_hash) == earlier
    assert await store.get_invite(unique("inv")) is None
    assert await store.find_invite(secrets.token_hex(32)) is None
    assert await store.list_invites(room.name) == [earlier, later]
    assert await store.list_invites(other.name) == [elsewhere]
    assert await store.list_invites(unique("nowhere")) == []


async def test_revoking_an_invite(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    invite = make_invite(room.name)
    await store.add_invite(invite)
    assert await store.revoke_invite(invite.id) is True
    revoked = dataclasses.replace(invite, revoked=True)
    assert await store.get_invite(invite.id) == revoked
    assert await store.find_invite(invite.token_hash) == revoked
    assert await store.revoke_invite(unique("inv")) is False


# Redeeming invites


async def test_redeeming_counts_each_use_until_used_up(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    invite = make_invite(room.name, max_uses=3)
    await store.add_invite(invite)
    for expected_uses in (1, 2, 3):
        redeemed = await store.redeem_invite(invite.token_hash, time.time())
        assert (redeemed.id, redeemed.uses, redeemed.revoked) == (invite.id, expected_uses, False)
        assert await store.get_invite(invite.id) == redeemed
    with pytest.raises(InviteUsedUp):
        await store.redeem_invite(invite.token_hash, time.time())
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 3


@pytest.mark.parametrize(
    ("changes", "revoke", "error"),
    [
        ({"expires_at": 1000.0}, False, InviteExpired),
        ({"max_uses": 2, "uses": 2}, False, InviteUsedUp),
        ({}, True, InviteRevoked),
        # When several reasons apply, the checks run in this order.
        ({"expires_at": 1000.0}, True, InviteRevoked),
        ({"expires_at": 1000.0, "uses": 1}, False, InviteExpired),
    ],
)
async def test_an_unusable_invite_is_refused_and_left_unchanged(
    store: Store, changes: dict[str, object], revoke: bool, error: type[InviteError]
) -> None:
    room = make_room()
    await store.create_room(room)
    invite = make_invite(room.name, **changes)
    await store.add_invite(invite)
    if revoke:
        await store.revoke_invite(invite.id)
    before = await store.get_invite(invite.id)
    with pytest.raises(error):
        await store.redeem_invite(invite.token_hash, time.time())
    assert await store.get_invite(invite.id) == before


async def test_an_unknown_invite_is_refused(store: Store) -> None:
    with pytest.raises(InviteUnknown):
        await store.redeem_invite(secrets.token_hex(32), time.time())


async def test_an_invite_expires_at_its_expiry_time(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    invite = make_invite(room.name, expires_at=5000.0, max_uses=2)
    await store.add_invite(invite)
    assert (await store.redeem_invite(invite.token_hash, 4999.999)).uses == 1
    with pytest.raises(InviteExpired):
        await store.redeem_invite(invite.token_hash, 5000.0)


async def test_an_invite_is_forgotten_at_its_forget_time_with_its_name(store: Store) -> None:
    """Catches a store keeping an invite (its invitee's name) a day past its expiry though it
    is to be forgotten sooner (`Invite.forget_at`: an invitation to a registrant goes with the
    meeting's retention), or a revocation keeping it longer."""
    room = make_room()
    await store.create_room(room)
    now = time.time()
    soon = make_invite(room.name, expires_at=now + 0.4, forget_at=now + 0.4)
    revoked = make_invite(room.name, expires_at=now + 0.4, forget_at=now + 0.4)
    past = make_invite(room.name, expires_at=now - 10, forget_at=now - 10)
    kept = make_invite(room.name, expires_at=now - 10)
    for invite in (soon, revoked, past, kept):
        await store.add_invite(invite)
    assert await store.get_invite(soon.id) == soon
    assert (await store.find_invite(soon.token_hash)) == soon
    await store.revoke_invite(revoked.id)

    async def forgotten() -> bool:
        return all([await store.get_invite(i.id) is None for i in (soon, revoked, past)])

    await eventually(forgotten)
    for invite in (soon, revoked, past):
        assert await store.find_invite(invite.token_hash) is None
        with pytest.raises(InviteUnknown):
            await store.redeem_invite(invite.token_hash, time.time())
    # One without a forget time is kept a day past its expiry, as every invite is.
    assert await store.list_invites(room.name) == [kept]
    with pytest.raises(InviteExpired):
        await store.redeem_invite(kept.token_hash, time.time())


async def _race(redeem: Callable[[], Awaitable[Invite]], racers: int) -> list[Invite]:
    results = await asyncio.gather(*(redeem() for _ in range(racers)), return_exceptions=True)
    losers = [r for r in results if not isinstance(r, Invite)]
    assert all(isinstance(r, InviteUsedUp) for r in losers), losers
    return [r for r in results if isinstance(r, Invite)]


async def test_racing_redemptions_of_a_single_use_invite_have_one_winner(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    invite = make_invite(room.name, max_uses=1)
    await store.add_invite(invite)
    winners = await _race(lambda: store.redeem_invite(invite.token_hash, time.time()), 20)
    assert [w.uses for w in winners] == [1]
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 1


async def test_racing_redemptions_never_exceed_max_uses(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    invite = make_invite(room.name, max_uses=5)
    await store.add_invite(invite)
    winners = await _race(lambda: store.redeem_invite(invite.token_hash, time.time()), 20)
    assert sorted(w.uses for w in winners) == [1, 2, 3, 4, 5]


# Admissions


async def test_admissions_read_back_by_id_and_room(store: Store) -> None:
    room = unique("room")
    later = make_admission(room, created_at=200.0, role=Role.HOST)
    earlier = make_admission(room, created_at=100.0)
    elsewhere = make_admission(unique("room"))
    for admission in (later, earlier, elsewhere):
        await store.add_admission(admission)
    assert await store.get_admission(later.id) == later
    assert await store.get_admission(secrets.token_hex(32)) is None
    assert await store.list_admissions(room) == [earlier, later]
    assert await store.list_admissions(elsewhere.room) == [elsewhere]
    assert await store.list_admissions(unique("room")) == []


async def test_revoking_an_admission_keeps_it_marked(store: Store) -> None:
    admission = make_admission(unique("room"))
    await store.add_admission(admission)
    assert await store.revoke_admission(admission.id) is True
    revoked = dataclasses.replace(admission, revoked=True)
    assert await store.get_admission(admission.id) == revoked
    assert await store.list_admissions(admission.room) == [revoked]
    assert await store.revoke_admission(secrets.token_hex(32)) is False


async def test_an_expired_admission_is_gone(store: Store) -> None:
    room = unique("room")
    expired = make_admission(room, expires_at=time.time() - 1)
    await store.add_admission(expired)
    assert await store.get_admission(expired.id) is None
    assert await store.list_admissions(room) == []
    assert await store.revoke_admission(expired.id) is False


async def test_admissions_expire_at_their_time_revoked_or_not(store: Store) -> None:
    room = unique("room")
    soon = time.time() + 0.3
    live, revoked = make_admission(room, expires_at=soon), make_admission(room, expires_at=soon)
    lasting = make_admission(room)
    for admission in (live, revoked, lasting):
        await store.add_admission(admission)
    await store.revoke_admission(revoked.id)
    assert len(await store.list_admissions(room)) == 3

    async def both_gone() -> bool:
        return (
            await store.get_admission(live.id) is None
            and await store.get_admission(revoked.id) is None
        )

    await eventually(both_gone)
    assert time.time() >= soon
    assert await store.list_admissions(room) == [lasting]


async def test_moving_an_admission_lists_it_under_the_new_room(store: Store) -> None:
    old, new = unique("room"), unique("room")
    moving = make_admission(old, created_at=200.0)
    staying = make_admission(old, created_at=100.0)
    already = make_admission(new, created_at=100.0)
    for admission in (moving, staying, already):
        await store.add_admission(admission)

    moved = await store.move_admission(moving.id, new)

    assert moved == dataclasses.replace(moving, room=new)
    assert await store.get_admission(moving.id) == moved
    assert await store.list_admissions(old) == [staying]
    assert await store.list_admissions(new) == [already, moved]
    # Moved on again, it leaves the room it was moved to.
    back = await store.move_admission(moving.id, old)
    assert back == moving
    assert await store.list_admissions(old) == [staying, moving]
    assert await store.list_admissions(new) == [already]


async def test_a_moved_admission_can_be_revoked_and_goes_with_its_new_room(store: Store) -> None:
    old, new, third = make_room(), make_room(), make_room()
    for room in (old, new, third):
        await store.create_room(room)
    revoked_later, deleted_with_room = make_admission(old.name), make_admission(old.name)
    for admission in (revoked_later, deleted_with_room):
        await store.add_admission(admission)

    await store.move_admission(revoked_later.id, new.name)
    assert await store.revoke_admission(revoked_later.id) is True
    revoked = dataclasses.replace(revoked_later, room=new.name, revoked=True)
    assert await store.get_admission(revoked_later.id) == revoked
    assert await store.list_admissions(new.name) == [revoked]

    await store.move_admission(deleted_with_room.id, third.name)
    assert await store.delete_room(old.name, time.time())
    moved = dataclasses.replace(deleted_with_room, room=third.name)
    assert await store.get_admission(deleted_with_room.id) == moved
    assert await store.delete_room(third.name, time.time())
    assert await store.get_admission(deleted_with_room.id) == dataclasses.replace(
        moved, revoked=True
    )


async def test_only_a_live_admission_can_be_moved(store: Store) -> None:
    old, new = unique("room"), unique("room")
    revoked, expired = make_admission(old), make_admission(old, expires_at=time.time() - 1)
    for admission in (revoked, expired):
        await store.add_admission(admission)
    await store.revoke_admission(revoked.id)

    assert await store.move_admission(revoked.id, new) is None
    assert await store.move_admission(expired.id, new) is None
    assert await store.move_admission(secrets.token_hex(32), new) is None

    assert await store.get_admission(revoked.id) == dataclasses.replace(revoked, revoked=True)
    assert await store.list_admissions(old) == [dataclasses.replace(revoked, revoked=True)]
    assert await store.list_admissions(new) == []


async def test_a_moved_admission_still_expires_at_its_time(store: Store) -> None:
    old, new = unique("room"), unique("room")
    soon = time.time() + 0.3
    admission = make_admission(old, expires_at=soon)
    await store.add_admission(admission)
    moved = await store.move_admission(admission.id, new)
    assert moved is not None and moved.expires_at == soon

    async def gone() -> bool:
        return await store.get_admission(admission.id) is None

    await eventually(gone)
    assert time.time() >= soon
    assert await store.list_admissions(new) == []
    assert await store.move_admission(admission.id, old) is None


# Names shown in a room


def name_claim(*shapes: str, **changes: Any) -> NameClaim:
    claim = NameClaim(
        holder=secrets.token_hex(32),
        shapes=shapes,
        expires_at=time.time() + HOUR,
        host_shape=shapes[0] if shapes else "",
    )
    return dataclasses.replace(claim, **changes)


async def test_a_name_claim_takes_the_first_free_shape(store: Store) -> None:
    room = unique("room")
    first, second, third = name_claim("ada", "ada2"), name_claim("ada", "ada2"), name_claim("ada")
    assert await store.claim_name(room, first) == 0
    assert await store.claim_name(room, second) == 1
    assert await store.claim_name(room, third) is None
    # Other rooms are not concerned, and a holder is not in its own way.
    assert await store.claim_name(unique("room"), name_claim("ada")) == 0
    assert await store.claim_name(room, first) == 0
    assert await store.claim_name(room, name_claim()) is None


async def test_a_name_claim_lapses_at_its_expiry(store: Store) -> None:
    room = unique("room")
    soon = time.time() + 0.3
    assert await store.claim_name(room, name_claim("ada", expires_at=soon)) == 0
    assert await store.claim_name(room, name_claim("ada")) is None

    async def free() -> bool:
        return await store.claim_name(room, name_claim("ada", "ada2")) == 0

    await eventually(free)
    assert time.time() >= soon
    assert await store.claim_name(room, name_claim("ada", expires_at=time.time() - 1)) is None


async def test_a_name_claim_ends_with_its_admissions_revocation(store: Store) -> None:
    room = unique("room")
    admission = make_admission(room)
    claim = name_claim("ada", holder=admission.id)
    # Claimed before its admission is stored, the name is held meanwhile.
    assert await store.claim_name(room, claim) == 0
    assert await store.claim_name(room, name_claim("ada", "ada2")) == 1
    await store.add_admission(admission)
    assert await store.claim_name(room, name_claim("ada", "ada3")) == 1
    await store.revoke_admission(admission.id)
    assert await store.claim_name(room, name_claim("ada")) == 0


async def test_deleting_a_room_frees_its_admissions_names(store: Store) -> None:
    room = make_room()
    await store.create_room(room)
    admission = make_admission(room.name)
    assert await store.claim_name(room.name, name_claim("ada", holder=admission.id)) == 0
    await store.add_admission(admission)
    assert await store.delete_room(room.name, time.time())
    await store.create_room(room)
    assert await store.claim_name(room.name, name_claim("ada")) == 0


async def test_a_name_like_a_hosts_yields_only_its_first_shape(store: Store) -> None:
    room = unique("room")
    host = make_admission(room, role=Role.HOST)
    await store.add_admission(host)
    assert await store.claim_name(room, name_claim("hilde", holder=host.id, host=True)) == 0
    # "Hilde (7)" typed by an attendee: its own shape is free, but it looks like the host's.
    typed = name_claim("hilde7", "hilde2", host_shape="hilde", first_yields_to_host=True)
    assert await store.claim_name(room, typed) == 1
    # Without the flag (a number Meetgate chose), or not like a host's name, the first is taken.
    assert await store.claim_name(room, name_claim("hilde8", host_shape="hilde")) == 0
    other = name_claim("ada", "ada2", host_shape="ada", first_yields_to_host=True)
    assert await store.claim_name(room, other) == 0
    # A host is not in the way of another host.
    second_host = name_claim("hilde9", host_shape="hilde", host=True)
    assert await store.claim_name(room, second_host) == 0
    # Once the host is gone, a claim of its holder no longer marks the name, but the second
    # host's still does; with both gone the name is anybody's.
    await store.revoke_admission(host.id)
    again = name_claim("hilde10", "hilde11", host_shape="hilde", first_yields_to_host=True)
    assert await store.claim_name(room, again) == 1
    second = make_admission(room, id=second_host.holder, role=Role.HOST)
    await store.add_admission(second)
    await store.revoke_admission(second.id)
    last = name_claim("hilde12", "hilde13", host_shape="hilde", first_yields_to_host=True)
    assert await store.claim_name(room, last) == 0


async def test_a_hosts_mark_lapses_with_the_host(store: Store) -> None:
    room = unique("room")
    soon = time.time() + 0.3
    host = name_claim("hilde", host=True, expires_at=soon)
    assert await store.claim_name(room, host) == 0
    look_alike = name_claim("hilde2", "hilde3", host_shape="hilde", first_yields_to_host=True)
    assert await store.claim_name(room, look_alike) == 1

    async def free() -> bool:
        claim = name_claim("hilde4", "hilde5", host_shape="hilde", first_yields_to_host=True)
        return await store.claim_name(room, claim) == 0

    await eventually(free)


async def test_racing_look_alikes_get_one_plain_name_and_distinct_numbers(store: Store) -> None:
    room = unique("room")
    looks = [
        "Wang Dan",
        f"Wang D{CYRILLIC_A}n",
        "WANG DAN",
        "Wang  Dan",
        f"W{CYRILLIC_A}ng D{CYRILLIC_A}n",
    ]
    racers = [looks[i % len(looks)] for i in range(40)]
    shown = await asyncio.gather(*(claim_as_attendee(store, room, name) for name in racers))
    # Each racer asks for its name as given, then for numbered batches: one gets the plain name,
    # every other a number, and no two names look alike.
    assert sum(1 for name in shown if not name.endswith(")")) == 1
    assert len({skeleton(name) for name in shown}) == 40


async def claim_as_attendee(store: Store, room: str, name: str) -> str:
    choices = name_choices(name, role=Role.ATTENDEE, guest=False)
    return await claim_shown_name(store, room, choices, secrets.token_hex(32), time.time() + HOUR)


async def test_racing_hosts_and_attendees_named_alike(store: Store) -> None:
    # However they interleave, no attendee ends up with the plain name once a host is there.
    room = unique("room")
    host = name_choices("Hilde Host", role=Role.HOST, guest=False)

    async def host_claim() -> str:
        return await claim_shown_name(store, room, host, secrets.token_hex(32), time.time() + HOUR)

    shown = await asyncio.gather(
        *(claim_as_attendee(store, room, "Hilde Host") for _ in range(5)), host_claim()
    )
    shown += await asyncio.gather(*(claim_as_attendee(store, room, "Hilde Host") for _ in range(4)))
    assert shown.count("Hilde Host") == 1
    assert len(set(shown)) == 10


# Bans


async def test_a_ban_without_end_lasts(store: Store) -> None:
    room, identity = unique("room"), unique("who")
    now = time.time()
    await store.ban_identity(room, identity, None)
    assert await store.is_banned(room, identity, now)
    assert await store.is_banned(room, identity, now + 10 * 365 * 24 * HOUR)
    assert not await store.is_banned(room, unique("who"), now)
    assert not await store.is_banned(unique("room"), identity, now)


async def test_a_ban_with_end_lasts_until_then(store: Store) -> None:
    room, identity = unique("room"), unique("who")
    until = time.time() + HOUR
    await store.ban_identity(room, identity, until)
    assert await store.is_banned(room, identity, until - 1)
    assert not await store.is_banned(room, identity, until)
    assert not await store.is_banned(room, identity, until + 1)


async def test_a_ban_that_already_ended_bans_nobody(store: Store) -> None:
    room, identity = unique("room"), unique("who")
    await store.ban_identity(room, identity, time.time() - 1)
    assert not await store.is_banned(room, identity, time.time())


async def test_the_latest_ban_decides(store: Store) -> None:
    room, identity = unique("room"), unique("who")
    until = time.time() + HOUR
    await store.ban_identity(room, identity, until)
    await store.ban_identity(room, identity, None)
    assert await store.is_banned(room, identity, until + HOUR)
    await store.ban_identity(room, identity, until)
    assert not await store.is_banned(room, identity, until + HOUR)


# Batch reads (a replica's reconciliation reads every admission with a connection on it)


async def test_batch_reads_equal_the_single_reads_in_order(store: Store) -> None:
    async def write_raw(kind: RecordKind, name: str, fields: dict[str, str]) -> None:
        if isinstance(store, RedisStore):
            await store.write_raw(kind, name, fields)
        else:
            assert isinstance(store, MemoryStore)
            store.write_raw(kind, name, fields)

    room = make_room()
    await store.create_room(room)
    live, revoked, corrupt = (make_admission(room.name) for _ in range(3))
    for admission in (live, revoked, corrupt):
        await store.add_admission(admission)
    await store.revoke_admission(revoked.id)
    await write_raw(RecordKind.ADMISSION, corrupt.id, {"revoked": "maybe"})
    ids = [corrupt.id, unique("missing"), revoked.id, live.id, live.id]
    assert await store.get_admissions(ids) == [await store.get_admission(i) for i in ids]
    marked = dataclasses.replace(revoked, revoked=True)
    assert await store.get_admissions(ids[2:4]) == [marked, live]
    assert await store.get_admissions([]) == []

    now = time.time()
    scope = unique("room")
    forever, lapsed, later, garbled, never = (unique("who") for _ in range(5))
    await store.ban_identity(scope, forever, None)
    await store.ban_identity(scope, lapsed, now - 1)
    await store.ban_identity(scope, later, now + HOUR)
    await store.ban_identity(scope, garbled, None)
    await write_raw(RecordKind.BAN, f"{scope}:{garbled}", {"value": "not a time"})
    pairs = [(scope, who) for who in (forever, lapsed, later, garbled, never)]
    pairs.append((unique("room"), forever))
    assert await store.are_banned(pairs, now) == [True, False, True, True, False, False]
    assert await store.are_banned(pairs, now + 2 * HOUR) == [True, False, False, True, False, False]
    assert await store.are_banned([], now) == []

    kept, lapsing = unique("lease"), unique("lease")
    await store.put_value(kept, "1.5 holder", 60.0)
    await store.put_value(lapsing, "x", 0.05)

    async def lapsed_value() -> bool:
        return await store.get_value(lapsing) is None

    await eventually(lapsed_value)
    keys = [kept, lapsing, unique("missing"), kept]
    assert await store.get_values(keys) == ["1.5 holder", None, None, "1.5 holder"]
    assert await store.get_values([]) == []


# Audit trail


async def test_audit_entries_are_listed_newest_first(store: Store) -> None:
    room = unique("room")
    entries = [
        make_audit(room, AN_HOUR_AGO + 100.0, action="lock"),
        make_audit(room, AN_HOUR_AGO + 200.5, action="ban", actor_name="Émilie ✓", detail=""),
        make_audit(room, AN_HOUR_AGO + 300.25, action="move", target="", detail=unique("room")),
    ]
    for entry in entries:
        await store.append_audit(entry)
    assert await store.list_audit(room) == entries[::-1]
    assert await store.list_audit(room, limit=2) == entries[:0:-1]
    assert await store.list_audit(room, limit=1) == [entries[-1]]
    assert await store.list_audit(room, limit=0) == []
    assert await store.list_audit(unique("room")) == []


async def test_audit_trails_of_rooms_are_kept_apart(store: Store) -> None:
    room, other = unique("room"), unique("room")
    mine = [make_audit(room, AN_HOUR_AGO + at) for at in range(5)]
    theirs = [make_audit(other, AN_HOUR_AGO + at, action="lockdown") for at in range(3)]
    for entry, other_entry in zip(mine, theirs, strict=False):
        await store.append_audit(entry)
        await store.append_audit(other_entry)
    for entry in mine[len(theirs) :]:
        await store.append_audit(entry)
    assert await store.list_audit(room) == mine[::-1]
    assert await store.list_audit(other, limit=100) == theirs[::-1]


def every_kind_of_facts() -> list[AuditFacts]:
    policy = RoomPolicy(
        oidc=True,
        oidc_providers=("campus", "staff"),
        allowed_emails=("ada@example.org", "bo@example.org"),
        allowed_domains=("example.org",),
        lobby=True,
    )
    return [
        AuditFacts(AuditKind.NAME, name="Émilie du Châtelet ✓"),
        AuditFacts(AuditKind.BANNED_UNTIL, name="Troll", until=1767366245.25),
        AuditFacts(AuditKind.REMOVED, count=3),
        AuditFacts(AuditKind.MOVED, count=0),
        AuditFacts(AuditKind.POLICY, policy=PolicyShape.of(policy)),
        AuditFacts(AuditKind.LANGUAGE, language="zh-Hant"),
        AuditFacts(AuditKind.LANGUAGE, language=""),
    ]


async def test_audit_facts_are_read_back_as_written(store: Store) -> None:
    room = unique("room")
    entries = [
        make_audit(room, AN_HOUR_AGO + at, detail="", facts=facts)
        for at, facts in enumerate(every_kind_of_facts())
    ]
    # An entry as every entry was written before facts: English text, shown as it is.
    entries.append(make_audit(room, AN_HOUR_AGO + 99.0, action="lockdown", detail="3 removed"))
    for entry in entries:
        await store.append_audit(entry)
    assert await store.list_audit(room) == entries[::-1]
    # The log keeps how long the policy's lists are, never the addresses on them.
    assert "example.org" not in encode_audit(entries[4])
    # Facts hold exactly their kind's values, so both stores read back the same.
    for wrong in (
        lambda: AuditFacts(AuditKind.REMOVED, count=2, name="Ada"),
        lambda: AuditFacts(AuditKind.BANNED_UNTIL, name="Troll"),
        lambda: AuditFacts(AuditKind.POLICY),
    ):
        with pytest.raises(ValueError):
            wrong()


DAY = 86_400.0


async def test_audit_entries_past_their_retention_are_never_listed(store: Store) -> None:
    # The default retention: 30 days ([privacy] audit_retention_days).
    room, now = unique("room"), time.time()
    old = [make_audit(room, now - 40 * DAY), make_audit(room, now - 31 * DAY)]
    young = make_audit(room, now - 29 * DAY)
    for entry in [*old, young]:
        await store.append_audit(entry)
    # Each entry judged by the one added after it on writing, nothing here was 30 days before
    # another, so all are still kept; but a read judges by the clock (/tmp/rv/retention_read).
    assert await store.list_audit(room) == [young]
    newest = make_audit(room, now)
    await store.append_audit(newest)
    assert await store.list_audit(room) == [newest, young]


async def test_the_audit_log_is_purged_by_room_and_by_age(store: Store) -> None:
    rooms = [unique("room"), unique("room")]
    now = time.time()
    for room in rooms:
        for days in (20, 10, 0):
            await store.append_audit(make_audit(room, now - days * DAY))
    first, second = rooms
    await write_audit_record(store, second, "{not json")
    assert await store.purge_audit(first, now - 15 * DAY) == 1
    assert [e.at for e in await store.list_audit(first)] == [now, now - 10 * DAY]
    assert len(await store.list_audit(second)) == 3
    # Every room's, and what cannot be dated (nobody can show it) with them.
    assert await store.purge_audit(None, now - 5 * DAY) >= 1 + 2 + 1
    assert [e.at for e in await store.list_audit(first)] == [now]
    assert [e.at for e in await store.list_audit(second)] == [now]
    assert await store.purge_audit(first, now + 1) == 1
    assert await store.list_audit(first) == []
    assert await store.purge_audit(unique("room"), now) == 0


async def test_a_rooms_audit_log_goes_a_retention_after_its_last_entry(
    contract_redis_url: str,
) -> None:
    store = await RedisStore.connect(contract_redis_url, StoreOptions(audit_retention_seconds=DAY))
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        room = unique("room")
        await store.append_audit(make_audit(room, time.time()))
        assert DAY - 60 < await client.ttl(f"meetgate:audit:{room}") <= DAY
    finally:
        await client.aclose()
        await store.close()


async def test_a_partly_purged_audit_log_goes_the_retention_after_its_newest_entry(
    contract_redis_url: str,
) -> None:
    options = StoreOptions(audit_retention_seconds=10 * DAY)
    store = await RedisStore.connect(contract_redis_url, options)
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        room, now = unique("room"), time.time()
        for days in (9, 3):
            await store.append_audit(make_audit(room, now - days * DAY))
        # Rewritten by the purge: it keeps an expiry (/tmp/rv/purge_ttl.py), 10 days from the
        # newest entry kept, 3 days old.
        assert await store.purge_audit(room, now - 5 * DAY) == 1
        assert 7 * DAY - 60 < await client.ttl(f"meetgate:audit:{room}") <= 7 * DAY
        # Every room's purge too.
        other = unique("room")
        for days in (9, 1):
            await store.append_audit(make_audit(other, now - days * DAY))
        assert await store.purge_audit(None, now - 5 * DAY) >= 1
        assert 9 * DAY - 60 < await client.ttl(f"meetgate:audit:{other}") <= 9 * DAY
        # A log whose entries are kept all (nothing to drop) keeps an expiry as well.
        assert await store.purge_audit(other, now - 5 * DAY) == 0
        assert 9 * DAY - 60 < await client.ttl(f"meetgate:audit:{other}") <= 9 * DAY
    finally:
        await client.aclose()
        await store.close()


async def test_a_partly_purged_memory_audit_log_goes_the_retention_after_its_newest() -> None:
    store = MemoryStore(StoreOptions(audit_retention_seconds=1.0))
    room, now = unique("room"), time.time()
    for ago in (0.9, 0.5):
        await store.append_audit(make_audit(room, now - ago))
    assert await store.purge_audit(room, now - 0.7) == 1
    assert len(await store.list_audit(room)) == 1
    deadline = time.monotonic() + 5
    while await store.list_audit(room):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    # Gone, not just hidden: a purge finds nothing left to drop.
    assert await store.purge_audit(room, now + 10) == 0


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_an_entry_past_the_retention_is_not_listed_before_anything_drops_it(
    backend: str, request: pytest.FixtureRequest
) -> None:
    options = StoreOptions(audit_retention_seconds=4.0)
    if backend == "memory":
        store: Store = MemoryStore(options)
    else:
        store = await RedisStore.connect(request.getfixturevalue("contract_redis_url"), options)
    try:
        room, now = unique("room"), time.time()
        await store.append_audit(make_audit(room, now - 5.0, action="revoke"))
        await store.append_audit(make_audit(room, now - 2.0, action="lock"))
        assert [e.action for e in await store.list_audit(room)] == ["lock"]
    finally:
        await store.close()


async def test_every_rooms_purge_walks_a_large_keyspace_a_page_a_call(tmp_path: Path) -> None:
    # A walk of the whole keyspace in one call (/tmp/rv/scan.py: 3.3 s for 3 M keys) could
    # outlast a call's longest wait (deadline.LONGEST_CALL): it goes a SCAN page a call, and
    # finds the rooms' logs spread over many pages.
    server = start_redis(tmp_path / "redis")
    client = redis.asyncio.Redis.from_url(server.url)
    store = await RedisStore.connect(server.url)
    try:
        fill = "for i = 1, ARGV[1] do redis.call('SET', 'meetgate:rate:addr:' .. i, 1) end"
        await client.eval(fill, 0, 200_000)
        now = time.time()
        rooms = [unique("room") for _ in range(20)]
        for room in rooms:
            await store.append_audit(make_audit(room, now - 2 * DAY))
            await store.append_audit(make_audit(room, now))
        assert await store.purge_audit(None, now - DAY) == 20
        assert [len(await store.list_audit(room)) for room in rooms] == [1] * 20
    finally:
        await store.close()
        await client.aclose()
        stop_process(server.proc)


async def test_the_memory_stores_audit_log_keeps_its_retention() -> None:
    kept = MemoryStore(StoreOptions(audit_retention_seconds=DAY))
    room, now = unique("room"), time.time()
    await kept.append_audit(make_audit(room, now - 2 * DAY))
    await kept.append_audit(make_audit(room, now))
    assert [e.at for e in await kept.list_audit(room)] == [now]


async def write_audit_record(store: Store, room: str, record: str) -> None:
    if isinstance(store, RedisStore):
        await store.write_raw(RecordKind.AUDIT, room, {"record": record})
    else:
        assert isinstance(store, MemoryStore)
        store.write_raw(RecordKind.AUDIT, room, {"record": record})


async def test_an_audit_entry_that_does_not_parse_is_skipped_and_counted(store: Store) -> None:
    room = unique("room")
    good = make_audit(
        room, AN_HOUR_AGO + 1.0, detail="", facts=AuditFacts(AuditKind.REMOVED, count=2)
    )
    await store.append_audit(good)
    stored = json.loads(encode_audit(good))
    shape = json.loads(
        encode_audit(make_audit(room, AN_HOUR_AGO + 2.0, facts=every_kind_of_facts()[4]))
    )
    policy = shape["facts"]["policy"]
    bad_facts: list[object] = [
        None,
        [],
        {},
        {"kind": "removed"},  # without its count
        {"kind": "removed", "count": 2, "name": "Ada"},  # a value of another kind
        {"kind": "removed", "count": -1},
        {"kind": "removed", "count": True},
        {"kind": "banned until", "name": "Troll", "until": "tomorrow"},
        {"kind": ["removed"], "count": 2},
        {"kind": "Removed", "count": 2},
        {"kind": "policy", "policy": {**policy, "allowed_emails": ["ada@example.org"]}},
        {"kind": "policy", "policy": {k: v for k, v in policy.items() if k != "lobby"}},
        {"kind": "language", "language": 1},
    ]
    store.health.take_corrupt_counts()
    for facts in bad_facts:
        await write_audit_record(store, room, json.dumps({**stored, "facts": facts}))
    # What an earlier release wrote: no facts, the detail in English.
    old = {**stored, "at": AN_HOUR_AGO + 3.0, "detail": "Troll until 1767366245"}
    del old["facts"]
    await write_audit_record(store, room, json.dumps(old))
    assert await store.list_audit(room) == [
        make_audit(
            room, AN_HOUR_AGO + 3.0, actor=good.actor, target=good.target, detail=old["detail"]
        ),
        good,
    ]
    assert store.health.take_corrupt_counts() == {RecordKind.AUDIT: len(bad_facts)}


# The day's address key


async def test_a_days_key_once_made_is_the_one_every_caller_gets(store: Store) -> None:
    day = utc_day(time.time())
    made = await asyncio.gather(*(store.day_key(day, create=True) for _ in range(5)))
    assert len(set(made)) == 1 and made[0] is not None
    assert len(made[0]) == 64 and int(made[0], 16) >= 0
    assert store.held_day_key(day) == made[0]
    assert await store.day_key(day, create=False) == made[0]
    assert await store.day_key(day, create=True) == made[0]


# Rate limits


async def test_a_burst_is_allowed_then_refused_with_a_retry_after(store: Store) -> None:
    key, other = unique("ip"), unique("ip")
    decisions = [await store.rate_limit(key, 1.0, 3) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert all(d.retry_after == 0 for d in decisions[:3])
    assert all(0 < d.retry_after <= 1.0 for d in decisions[3:])
    assert (await store.rate_limit(other, 1.0, 3)).allowed


async def test_a_refused_request_succeeds_after_its_retry_after(store: Store) -> None:
    key = unique("ip")
    assert (await store.rate_limit(key, 20.0, 1)).allowed
    refused = await store.rate_limit(key, 20.0, 1)
    assert not refused.allowed and 0 < refused.retry_after <= 0.05
    started = time.monotonic()
    decision = refused
    # The event loop's timer may wake a hair early, hence a second short wait at most.
    for _ in range(3):
        await asyncio.sleep(decision.retry_after)
        decision = await store.rate_limit(key, 20.0, 1)
        if decision.allowed:
            break
    assert decision.allowed
    assert time.monotonic() - started < refused.retry_after + 0.1


async def test_rate_limit_parameters_are_checked(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.rate_limit(unique("ip"), 0.0, 1)
    with pytest.raises(ValueError):
        await store.rate_limit(unique("ip"), 1.0, 0)


limits = st.lists(
    st.tuples(st.floats(min_value=0.5, max_value=500.0), st.integers(min_value=1, max_value=10)),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limits=limits, data=st.data())
async def test_the_limiter_admits_at_most_rate_times_elapsed_plus_burst(
    store: Store, limits: list[tuple[float, int]], data: st.DataObject
) -> None:
    arrivals = data.draw(st.lists(st.integers(0, len(limits) - 1), min_size=1, max_size=60))
    concurrent = data.draw(st.booleans())
    keys = [unique("key") for _ in limits]

    def charge(limit: int) -> Awaitable[RateDecision]:
        rate, burst = limits[limit]
        return store.rate_limit(keys[limit], rate, burst)

    started = time.monotonic()
    if concurrent:
        decisions = await asyncio.gather(*(charge(limit) for limit in arrivals))
    else:
        decisions = [await charge(limit) for limit in arrivals]
    # Both clocks tick at the same pace; the backend's may count at most a microsecond more.
    elapsed = time.monotonic() - started + 1e-6

    for limit, (rate, burst) in enumerate(limits):
        mine = [d for a, d in zip(arrivals, decisions, strict=True) if a == limit]
        admitted = sum(1 for d in mine if d.allowed)
        assert admitted <= burst + rate * elapsed
        assert admitted >= min(len(mine), burst)


async def test_several_limits_are_charged_together(store: Store) -> None:
    room, address = unique("room"), unique("ip")
    charges = [LimitCharge(room, 1.0, 3), LimitCharge(address, 1.0, 5)]
    decisions = [await store.charge_limits(charges) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert all(d.retry_after == 0 for d in decisions[:3])
    assert all(0 < d.retry_after <= 1.0 for d in decisions[3:])
    # The address was charged with the room three times, so two of its five are left.
    alone = [await store.charge_limits([LimitCharge(address, 1.0, 5)]) for _ in range(3)]
    assert [d.allowed for d in alone] == [True, True, False]


async def test_a_refusing_limit_leaves_the_others_uncharged(store: Store) -> None:
    full, first, second = unique("room"), unique("ip"), unique("net")
    assert (await store.charge_limits([LimitCharge(full, 1.0, 1)])).allowed
    refused = [
        await store.charge_limits(
            [LimitCharge(first, 1.0, 3), LimitCharge(full, 1.0, 1), LimitCharge(second, 1.0, 3)]
        )
        for _ in range(4)
    ]
    assert not any(d.allowed for d in refused)
    for key in (first, second):
        alone = [await store.charge_limits([LimitCharge(key, 1.0, 3)]) for _ in range(4)]
        assert [d.allowed for d in alone] == [True, True, True, False]


async def test_the_longest_wait_among_the_refusing_limits_is_given(store: Store) -> None:
    slow, fast, roomy = unique("room"), unique("ip"), unique("global")
    assert (await store.charge_limits([LimitCharge(slow, 1.0, 1)])).allowed
    assert (await store.charge_limits([LimitCharge(fast, 10.0, 1)])).allowed
    for charges in (
        [LimitCharge(fast, 10.0, 1), LimitCharge(slow, 1.0, 1), LimitCharge(roomy, 1.0, 5)],
        [LimitCharge(roomy, 1.0, 5), LimitCharge(slow, 1.0, 1), LimitCharge(fast, 10.0, 1)],
    ):
        both = await store.charge_limits(charges)
        # Asked later, the slow limit alone can only have less to wait.
        slow_alone = await store.charge_limits([LimitCharge(slow, 1.0, 1)])
        assert not both.allowed and not slow_alone.allowed
        assert 0.5 < slow_alone.retry_after <= both.retry_after <= 1.0
    fast_alone = await store.charge_limits([LimitCharge(fast, 10.0, 1)])
    assert not fast_alone.allowed and 0 < fast_alone.retry_after <= 0.1


async def test_a_refusal_tells_each_limits_own_wait(store: Store) -> None:
    # The gate remembers which of an attempt's limits refused it, and for how long.
    slow, fast, roomy = unique("net"), unique("ip"), unique("room")
    assert (await store.charge_limits([LimitCharge(slow, 1.0, 1)])).allowed
    assert (await store.charge_limits([LimitCharge(fast, 10.0, 1)])).allowed
    refused = await store.charge_limits(
        [LimitCharge(fast, 10.0, 1), LimitCharge(roomy, 1.0, 5), LimitCharge(slow, 1.0, 1)]
    )
    assert not refused.allowed and len(refused.waits) == 3
    fast_wait, roomy_wait, slow_wait = refused.waits
    assert 0 < fast_wait <= 0.1 and roomy_wait == 0 and 0.5 < slow_wait <= 1.0
    assert refused.retry_after == max(refused.waits)
    assert (await store.charge_limits([LimitCharge(unique("ip"), 1.0, 1)])).waits == ()


async def test_limits_of_different_keys_are_independent(store: Store) -> None:
    busy, quiet = unique("ip"), unique("ip")
    for _ in range(3):
        await store.charge_limits([LimitCharge(busy, 1.0, 2)])
    assert not (await store.charge_limits([LimitCharge(busy, 1.0, 2)])).allowed
    decisions = [await store.charge_limits([LimitCharge(quiet, 1.0, 2)]) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]


async def test_a_key_named_twice_is_charged_twice(store: Store) -> None:
    key = unique("ip")
    assert (await store.charge_limits([LimitCharge(key, 1.0, 2)] * 2)).allowed
    assert not (await store.charge_limits([LimitCharge(key, 1.0, 2)])).allowed
    # Twice does not fit into a burst of one, and refused means not charged at all.
    other = unique("ip")
    assert not (await store.charge_limits([LimitCharge(other, 1.0, 1)] * 2)).allowed
    assert (await store.charge_limits([LimitCharge(other, 1.0, 1)])).allowed


async def test_rate_limit_and_charge_limits_share_a_key(store: Store) -> None:
    key = unique("ip")
    assert (await store.rate_limit(key, 1.0, 2)).allowed
    assert (await store.charge_limits([LimitCharge(key, 1.0, 2)])).allowed
    assert not (await store.rate_limit(key, 1.0, 2)).allowed
    assert not (await store.charge_limits([LimitCharge(key, 1.0, 2)])).allowed


async def test_no_charges_are_allowed(store: Store) -> None:
    assert await store.charge_limits([]) == RateDecision(allowed=True, retry_after=0.0)


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1), (-1.0, 1), (math.nan, 1), (math.inf, 1), (1.0, 0), (1.0, -3)]
)
async def test_limit_charges_are_checked(store: Store, rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        await store.charge_limits([LimitCharge(unique("ip"), rate, burst)])


# Small bursts and rates that a few milliseconds refill, so that refusals, and refills, are common.
tight_limits = st.lists(
    st.tuples(st.floats(min_value=1.0, max_value=100.0), st.integers(min_value=1, max_value=4)),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limits=tight_limits, data=st.data())
async def test_charging_several_limits_admits_at_most_rate_times_elapsed_plus_burst(
    store: Store, limits: list[tuple[float, int]], data: st.DataObject
) -> None:
    # Each request charges some of the limits, after a pause of up to 10 ms or none.
    arrival = st.tuples(
        st.sets(st.integers(0, len(limits) - 1), min_size=1).map(sorted),
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.01)),
    )
    arrivals = data.draw(st.lists(arrival, min_size=1, max_size=30))
    keys = [unique("key") for _ in limits]
    admitted = [0 for _ in limits]
    decisions: list[RateDecision] = []
    started = time.monotonic()
    for n, (chosen, pause) in enumerate(arrivals):
        if n and pause:
            await asyncio.sleep(pause)
        decision = await store.charge_limits([LimitCharge(keys[i], *limits[i]) for i in chosen])
        if decision.allowed:
            for i in chosen:
                admitted[i] += 1
        else:
            # A limit charged fewer than `burst` times has room whatever the time; one that
            # refused the request must have used its burst (a refused request charges nothing).
            assert any(admitted[i] >= limits[i][1] for i in chosen)
            assert decision.retry_after > 0
        decisions.append(decision)
    # Both clocks tick at the same pace; the backend's may count at most a microsecond more.
    elapsed = time.monotonic() - started + 1e-6

    assert decisions[0].allowed
    for (rate, burst), count in zip(limits, admitted, strict=True):
        assert count <= burst + rate * elapsed


# Pressure counters


async def test_recent_events_are_counted_in_their_window(store: Store) -> None:
    key, other = unique("room"), unique("room")
    assert await store.read_recent(key, 3600) == 0
    assert [await store.count_recent(key, 3600) for _ in range(3)] == [1, 2, 3]
    assert await store.read_recent(key, 3600) == 3
    assert await store.read_recent(key, 3600) == 3
    assert await store.read_recent(other, 3600) == 0
    assert await store.count_recent(other, 3600) == 1
    assert await store.read_recent(key, 3600) == 3


async def test_events_can_be_counted_in_batches(store: Store) -> None:
    # A replica counts the refusals it answered itself in one call a second.
    key = unique("room")
    assert await store.count_recent(key, 3600, amount=40) == 40
    assert await store.count_recent(key, 3600) == 41
    assert await store.read_recent(key, 3600) == 41
    for nothing in (0, -5):
        with pytest.raises(ValueError):
            await store.count_recent(key, 3600, amount=nothing)
    assert await store.read_recent(key, 3600) == 41


async def test_a_new_window_counts_from_zero(store: Store) -> None:
    key = unique("room")
    assert await store.count_recent(key, 1) >= 1

    async def window_passed() -> bool:
        return await store.read_recent(key, 1) == 0

    await eventually(window_passed, timeout=3.0)
    assert await store.count_recent(key, 1) == 1


async def test_a_window_is_at_least_a_second(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.count_recent(unique("room"), 0)
    with pytest.raises(ValueError):
        await store.read_recent(unique("room"), -1)


# One-time claims


async def test_a_key_is_claimed_once_within_its_ttl(store: Store) -> None:
    key = unique("answer")
    assert await store.claim_once(key, HOUR) is True
    assert await store.claim_once(key, HOUR) is False
    assert await store.claim_once(key, HOUR) is False
    assert await store.claim_once(unique("answer"), HOUR) is True


async def test_a_claim_lapses_after_its_ttl(store: Store) -> None:
    key = unique("answer")
    started = time.monotonic()
    assert await store.claim_once(key, 0.2) is True
    assert await store.claim_once(key, 0.2) is False

    async def claimed_again() -> bool:
        return await store.claim_once(key, 0.2)

    await eventually(claimed_again, timeout=3.0)
    assert time.monotonic() - started >= 0.19
    assert await store.claim_once(key, 0.2) is False


@pytest.mark.parametrize("ttl", [0.0, -1.0, math.nan, math.inf])
async def test_a_claim_needs_a_positive_ttl(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError):
        await store.claim_once(unique("answer"), ttl)


# Short-lived values


async def lapsed(store: Store, ttl: float) -> None:
    """Return once a probe value put now with `ttl` is gone: so has anything put before it."""
    probe = unique("probe")
    await store.put_value(probe, "x", ttl)

    async def gone() -> bool:
        return await store.get_value(probe) is None

    await eventually(gone, timeout=3.0)


async def test_a_value_reads_back_until_replaced(store: Store) -> None:
    key, other = unique("code"), unique("code")
    assert await store.get_value(key) is None
    await store.put_value(key, "123456", HOUR)
    await store.put_value(other, "654321 ✓", HOUR)
    assert await store.get_value(key) == "123456"
    assert await store.get_value(key) == "123456"
    await store.put_value(key, "999999", HOUR)
    assert await store.get_value(key) == "999999"
    assert await store.get_value(other) == "654321 ✓"


async def test_a_value_lapses_after_its_ttl(store: Store) -> None:
    key = unique("code")
    started = time.monotonic()
    await store.put_value(key, "123456", 0.2)

    async def gone() -> bool:
        return await store.get_value(key) is None

    await eventually(gone, timeout=3.0)
    assert time.monotonic() - started >= 0.19
    assert await store.take_value(key) is None
    assert await store.delete_value(key) is False


async def test_replacing_a_value_replaces_its_ttl(store: Store) -> None:
    longer, shorter = unique("code"), unique("code")
    await store.put_value(longer, "first", 0.2)
    await store.put_value(longer, "second", HOUR)
    await store.put_value(shorter, "first", HOUR)
    await store.put_value(shorter, "second", 0.2)
    await lapsed(store, 0.2)
    assert await store.get_value(longer) == "second"
    assert await store.get_value(shorter) is None


async def test_taking_a_value_reads_and_deletes_it(store: Store) -> None:
    key = unique("code")
    assert await store.take_value(key) is None
    await store.put_value(key, "123456", HOUR)
    assert await store.take_value(key) == "123456"
    assert await store.take_value(key) is None
    assert await store.get_value(key) is None


async def test_of_racing_takers_exactly_one_gets_the_value(store: Store) -> None:
    for _ in range(10):
        key = unique("lobby")
        await store.put_value(key, "admit", HOUR)
        results = await asyncio.gather(store.take_value(key), store.take_value(key))
        assert set(results) == {"admit", None}  # two results: one of each


async def test_deleting_a_value(store: Store) -> None:
    key, other = unique("code"), unique("code")
    await store.put_value(key, "123456", HOUR)
    await store.put_value(other, "654321", HOUR)
    assert await store.delete_value(key) is True
    assert await store.delete_value(key) is False
    assert await store.get_value(key) is None
    assert await store.get_value(other) == "654321"


async def test_bumping_counts_from_one(store: Store) -> None:
    key, other = unique("attempts"), unique("attempts")
    assert [await store.bump_value(key, HOUR) for _ in range(3)] == [1, 2, 3]
    assert await store.bump_value(other, HOUR) == 1
    assert await store.bump_value(key, HOUR) == 4


async def test_racing_bumps_each_count_once(store: Store) -> None:
    key = unique("attempts")
    counts = await asyncio.gather(*(store.bump_value(key, HOUR) for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))


async def test_a_counter_lapses_a_ttl_after_its_first_bump(store: Store) -> None:
    key = unique("attempts")
    started = time.monotonic()
    assert await store.bump_value(key, 0.2) == 1
    assert await store.bump_value(key, HOUR) == 2

    # Were later bumps to extend or replace the first TTL, the count would never start over.
    async def started_over() -> bool:
        return await store.bump_value(key, HOUR) == 1

    await eventually(started_over, timeout=3.0)
    assert time.monotonic() - started >= 0.19
    assert await store.bump_value(key, 0.2) == 2


async def test_counters_are_kept_apart_from_values(store: Store) -> None:
    key = unique("code")
    await store.put_value(key, "123456", HOUR)
    assert await store.bump_value(key, HOUR) == 1
    assert await store.get_value(key) == "123456"
    assert await store.take_value(key) == "123456"
    assert await store.delete_value(key) is False
    assert await store.bump_value(key, HOUR) == 2


# Expiring indexes


async def test_index_members_are_listed_oldest_first(store: Store) -> None:
    index, other = unique("lobby"), unique("lobby")
    # Names out of alphabetical order, so that the order cannot come from sorting them.
    members = ["carol", "alice", "dave", "bob"]
    for member in members:
        await store.index_add(index, member, HOUR)
    await store.index_add(other, "erin", HOUR)
    assert await store.index_members(index) == members
    assert await store.index_size(index) == 4
    assert await store.index_members(other) == ["erin"]
    assert await store.index_members(unique("lobby")) == []
    assert await store.index_size(unique("lobby")) == 0


async def test_index_members_are_listed_soonest_to_expire_first(store: Store) -> None:
    index = unique("lobby")
    await store.index_add(index, "alice", HOUR)
    await store.index_add(index, "bob", HOUR / 2)
    await store.index_add(index, "carol", 2 * HOUR)
    assert await store.index_members(index) == ["bob", "alice", "carol"]


async def test_adding_a_member_again_renews_it(store: Store) -> None:
    index = unique("lobby")
    await store.index_add(index, "alice", 0.2)
    await store.index_add(index, "bob", HOUR)
    await store.index_add(index, "alice", HOUR)
    assert await store.index_members(index) == ["bob", "alice"]
    assert await store.index_size(index) == 2
    await lapsed(store, 0.2)
    assert await store.index_members(index) == ["bob", "alice"]


async def test_removing_an_index_member(store: Store) -> None:
    index, other = unique("lobby"), unique("lobby")
    for member in ("alice", "bob", "carol"):
        await store.index_add(index, member, HOUR)
    await store.index_add(other, "bob", HOUR)
    assert await store.index_remove(index, "bob") is True
    assert await store.index_remove(index, "bob") is False
    assert await store.index_remove(index, "nobody") is False
    assert await store.index_remove(unique("lobby"), "bob") is False
    assert await store.index_members(index) == ["alice", "carol"]
    assert await store.index_size(index) == 2
    assert await store.index_members(other) == ["bob"]
    assert await store.index_remove(index, "alice") is True
    assert await store.index_remove(index, "carol") is True
    assert await store.index_members(index) == []
    assert await store.index_size(index) == 0
    await store.index_add(index, "bob", HOUR)
    assert await store.index_members(index) == ["bob"]


async def test_index_members_lapse_one_by_one(store: Store) -> None:
    index = unique("lobby")
    started = time.monotonic()
    await store.index_add(index, "alice", HOUR)
    await store.index_add(index, "bob", 0.2)
    await store.index_add(index, "carol", HOUR)
    assert await store.index_size(index) == 3

    async def bob_lapsed() -> bool:
        return await store.index_size(index) == 2

    await eventually(bob_lapsed, timeout=3.0)
    assert time.monotonic() - started >= 0.19
    assert await store.index_members(index) == ["alice", "carol"]
    assert await store.index_remove(index, "bob") is False


async def test_an_index_whose_members_all_lapsed_is_empty(store: Store) -> None:
    index = unique("lobby")
    await store.index_add(index, "alice", 0.2)
    await store.index_add(index, "bob", 0.2)
    await lapsed(store, 0.2)
    assert await store.index_members(index) == []
    assert await store.index_size(index) == 0
    await store.index_add(index, "carol", HOUR)
    assert await store.index_members(index) == ["carol"]


async def test_racing_index_additions_are_all_kept(store: Store) -> None:
    index = unique("lobby")
    members = [unique("request") for _ in range(20)]
    await asyncio.gather(*(store.index_add(index, member, HOUR) for member in members))
    assert sorted(await store.index_members(index)) == sorted(members)
    assert await store.index_size(index) == 20


@pytest.mark.parametrize("ttl", [0.0, -1.0, math.nan, math.inf])
async def test_short_lived_values_need_a_positive_ttl(store: Store, ttl: float) -> None:
    key = unique("code")
    with pytest.raises(ValueError):
        await store.put_value(key, "123456", ttl)
    with pytest.raises(ValueError):
        await store.bump_value(key, ttl)
    with pytest.raises(ValueError):
        await store.index_add(key, "alice", ttl)
    assert await store.get_value(key) is None
    assert await store.bump_value(key, HOUR) == 1
    assert await store.index_size(key) == 0


# Pub/sub


async def test_subscribers_receive_what_is_published_after_they_subscribed(store: Store) -> None:
    channel = unique("revocations")
    await store.publish(channel, "too early")
    first, second = subscribe(store, channel), subscribe(store, channel)
    try:
        await store.publish(unique("elsewhere"), "not for us")
        await store.publish(channel, "revoke:1")
        await store.publish(channel, "revoke:2 ✓")
        for subscription in (first, second):
            assert await next_message(subscription) == "revoke:1"
            assert await next_message(subscription) == "revoke:2 ✓"
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_closed_subscription_ends_and_receives_nothing(store: Store) -> None:
    channel = unique("revocations")
    closed, open_ = subscribe(store, channel), subscribe(store, channel)
    await closed.ready()
    await closed.aclose()
    await store.publish(channel, "after close")
    with pytest.raises(StopAsyncIteration):
        await next_message(closed)
    assert await next_message(open_) == "after close"
    await open_.aclose()


async def test_closing_the_store_ends_its_subscriptions(store: Store) -> None:
    subscription = subscribe(store, unique("revocations"))
    await subscription.ready()
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await next_message(subscription)


# The memory marker (gateway/store/continuity.py)

MARKER = "0123456789abcdef0123456789abcdef:0:ok"


async def test_the_first_advance_writes_the_marker_given_and_later_ones_count(
    store: Store,
) -> None:
    assert await store.read_marker() is None
    assert await store.advance_marker(MARKER) == (MARKER, True)
    assert await store.advance_marker("ffffffffffffffffffffffffffffffff:0:lost") == (
        "0123456789abcdef0123456789abcdef:1:ok",
        False,
    )
    assert await store.advance_marker(MARKER) == ("0123456789abcdef0123456789abcdef:2:ok", False)
    assert await store.read_marker() == "0123456789abcdef0123456789abcdef:2:ok"


@pytest.mark.parametrize(
    "stored",
    [
        "not a marker",
        "0123456789ABCDEF0123456789ABCDEF:1:ok",  # upper-case epoch
        "0123456789abcdef0123456789abcdef:01:ok",  # a leading zero
        "0123456789abcdef0123456789abcdef:1:gone",
        "0123456789abcdef0123456789abcde:1:ok",  # 31 digits
        "0123456789abcdef0123456789abcdef:1:ok ",
        "0123456789abcdef0123456789abcdef:-1:ok",
    ],
)
async def test_a_marker_that_does_not_parse_is_left_as_it_is(store: Store, stored: str) -> None:
    assert await store.replace_marker(None, stored)
    assert await store.advance_marker(MARKER) == (stored, False)
    assert await store.read_marker() == stored


async def test_a_lost_marker_counts_too(store: Store) -> None:
    assert await store.replace_marker(None, "0123456789abcdef0123456789abcdef:41:lost")
    assert await store.advance_marker(MARKER) == (
        "0123456789abcdef0123456789abcdef:42:lost",
        False,
    )


async def test_a_marker_is_replaced_only_if_it_is_still_what_was_read(store: Store) -> None:
    assert not await store.replace_marker(MARKER, "x")  # there is none
    assert await store.replace_marker(None, MARKER)
    assert not await store.replace_marker(None, "x")  # there is one
    await store.advance_marker(MARKER)
    assert not await store.replace_marker(MARKER, "x")  # it changed
    advanced = "0123456789abcdef0123456789abcdef:1:ok"
    assert await store.replace_marker(advanced, "0123456789abcdef0123456789abcdef:2:lost")
    assert await store.read_marker() == "0123456789abcdef0123456789abcdef:2:lost"


async def test_racing_first_advances_agree_on_one_marker(store: Store) -> None:
    candidates = [f"{secrets.token_hex(16)}:0:ok" for _ in range(20)]
    results = await asyncio.gather(*(store.advance_marker(c) for c in candidates))
    assert sum(created for _, created in results) == 1
    (winner,) = [marker for marker, created in results if created]
    epoch = winner.split(":")[0]
    assert all(marker.startswith(epoch + ":") for marker, _ in results)
    assert await store.read_marker() == f"{epoch}:19:ok"


# Redis only: several clients on one database, and an outage


async def test_racing_redemptions_from_separate_clients_have_one_winner(
    contract_redis_url: str,
) -> None:
    stores = [await RedisStore.connect(contract_redis_url) for _ in range(4)]
    try:
        room = make_room()
        await stores[0].create_room(room)
        invite = make_invite(room.name, max_uses=1)
        await stores[1].add_invite(invite)
        results = await asyncio.gather(
            *(stores[i % 4].redeem_invite(invite.token_hash, time.time()) for i in range(20)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, Invite)]
        assert len(winners) == 1 and winners[0].uses == 1
        assert all(isinstance(r, InviteUsedUp) for r in results if r not in winners)
    finally:
        for store in stores:
            await store.close()


async def test_look_alikes_claimed_from_separate_clients_get_one_plain_name(
    contract_redis_url: str,
) -> None:
    stores = [await RedisStore.connect(contract_redis_url) for _ in range(4)]
    try:
        room = unique("room")
        looks = ["Wang Dan", f"Wang D{CYRILLIC_A}n", "wang dan", "Wang-Dan"]
        shown = await asyncio.gather(
            *(claim_as_attendee(stores[i % 4], room, looks[i % 4]) for i in range(12))
        )
        assert sum(1 for name in shown if not name.endswith(")")) == 1
        assert len({skeleton(name) for name in shown}) == 12
    finally:
        for store in stores:
            await store.close()


async def test_an_invite_and_its_name_go_a_day_after_its_expiry(contract_redis_url: str) -> None:
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        room = make_room()
        await store.create_room(room)
        invite = make_invite(room.name, max_uses=3)
        await store.add_invite(invite)
        expired = make_invite(room.name, expires_at=1000.0)
        await store.add_invite(expired)
        # Used, its record keeps its expiry; revoked, it is kept a day from then at most (to
        # tell its holder): the name goes with it all the same.
        await store.redeem_invite(invite.token_hash, time.time())
        kept = (HOUR + INVITE_KEPT_AFTER_EXPIRY) * 1000
        for key in (f"meetgate:invite:{invite.id}", f"meetgate:invite-token:{invite.token_hash}"):
            assert kept - 60_000 < await client.pttl(key) <= kept
        await store.revoke_invite(invite.id)
        kept = INVITE_KEPT_AFTER_EXPIRY * 1000
        for key in (f"meetgate:invite:{invite.id}", f"meetgate:invite-token:{invite.token_hash}"):
            assert kept - 60_000 < await client.pttl(key) <= kept
        # One stored past its expiry is still told apart from an unknown link, for a day.
        day = INVITE_KEPT_AFTER_EXPIRY * 1000
        assert day - 60_000 < await client.pttl(f"meetgate:invite:{expired.id}") <= day
        with pytest.raises(InviteExpired):
            await store.redeem_invite(expired.token_hash, time.time())
    finally:
        await client.aclose()
        await store.close()


async def test_an_invite_with_a_forget_time_goes_then_not_a_day_after_its_expiry(
    contract_redis_url: str,
) -> None:
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        room = make_room()
        await store.create_room(room)
        now = time.time()
        invite = make_invite(room.name, max_uses=3, expires_at=now + HOUR, forget_at=now + 2 * HOUR)
        await store.add_invite(invite)
        plain = make_invite(room.name)
        await store.add_invite(plain)
        keys = (f"meetgate:invite:{invite.id}", f"meetgate:invite-token:{invite.token_hash}")
        kept = 2 * HOUR * 1000
        # Redeemed and revoked, it is kept no longer.
        for step in ("added", "redeemed", "revoked"):
            if step == "redeemed":
                await store.redeem_invite(invite.token_hash, time.time())
            elif step == "revoked":
                await store.revoke_invite(invite.id)
            for key in keys:
                assert kept - 60_000 < await client.pttl(key) <= kept, (step, key)
        record = json.loads(await client.hget(keys[0], "record") or "")
        assert record["forget_at"] == invite.forget_at
        # An invite without one is stored as every invite was before there were any.
        assert "forget_at" not in json.loads(
            await client.hget(f"meetgate:invite:{plain.id}", "record") or ""
        )
    finally:
        await client.aclose()
        await store.close()


async def test_name_claims_go_with_their_room_when_nobody_is_left(contract_redis_url: str) -> None:
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        room = unique("room")
        await store.claim_name(room, name_claim("ada", expires_at=time.time() + 60))
        await store.claim_name(room, name_claim("bob", expires_at=time.time() + 30))
        # The hash lasts as long as its longest claim, so an abandoned room leaves nothing.
        assert 30_000 < await client.pttl(f"meetgate:names:{room}") <= 60_000
    finally:
        await client.aclose()
        await store.close()


async def test_of_takers_on_separate_clients_exactly_one_gets_the_value(
    contract_redis_url: str,
) -> None:
    first = await RedisStore.connect(contract_redis_url)
    second = await RedisStore.connect(contract_redis_url)
    try:
        for _ in range(20):
            key = unique("lobby")
            await first.put_value(key, "admit", HOUR)
            results = await asyncio.gather(first.take_value(key), second.take_value(key))
            assert set(results) == {"admit", None}  # two results: one of each
        key = unique("attempts")
        counts = await asyncio.gather(
            *(store.bump_value(key, HOUR) for store in [first, second] * 10)
        )
        assert sorted(counts) == list(range(1, 21))
    finally:
        await first.close()
        await second.close()


async def test_short_lived_keys_carry_their_ttl_in_redis(contract_redis_url: str) -> None:
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    key, index = unique("code"), unique("lobby")
    try:
        await store.put_value(key, "123456", 60.0)
        await store.bump_value(key, 30.0)
        await store.bump_value(key, HOUR)
        assert 59_000 < await client.pttl(f"meetgate:value:{key}") <= 60_000
        assert 29_000 < await client.pttl(f"meetgate:counter:{key}") <= 30_000
        # An index key lasts as long as its last member, whatever order they came in.
        index_key = f"meetgate:index:{index}"
        await store.index_add(index, "alice", 60.0)
        assert 59_000 < await client.pttl(index_key) <= 60_001
        await store.index_add(index, "bob", 120.0)
        await store.index_add(index, "carol", 30.0)
        assert 119_000 < await client.pttl(index_key) <= 120_001
        await store.index_add(index, "bob", 30.0)
        assert 59_000 < await client.pttl(index_key) <= 60_001
    finally:
        await client.aclose()
        await store.close()


async def test_messages_reach_subscribers_on_another_client(contract_redis_url: str) -> None:
    publisher = await RedisStore.connect(contract_redis_url)
    listener = await RedisStore.connect(contract_redis_url)
    channel = unique("revocations")
    subscription = listener.subscribe(channel)
    try:
        await subscription.ready()
        await publisher.publish(channel, "revoke:1")
        await publisher.publish(channel, "revoke:2")
        assert await next_message(subscription) == "revoke:1"
        assert await next_message(subscription) == "revoke:2"
    finally:
        await publisher.close()
        await listener.close()


async def test_a_dropped_subscription_ends_even_when_the_client_resubscribes(
    contract_redis_url: str,
) -> None:
    """redis-py re-establishes a killed pub/sub connection and subscribes again by itself; what
    was published in between is lost, so the subscription ends and its owner catches up."""
    store = await RedisStore.connect(contract_redis_url)
    subscription = store.subscribe(unique("revocations"))
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        await subscription.ready()
        assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
        with pytest.raises(StoreUnavailable):
            await next_message(subscription)
    finally:
        await client.aclose()
        await subscription.aclose()
        await store.close()


async def test_a_room_stored_before_its_newer_fields_reads_with_their_defaults(
    contract_redis_url: str,
) -> None:
    # A record as written before rooms could be locked, put into lockdown or moved.
    name = unique("legacy")
    record = {"name": name, "title": "Old", "created_at": 12.5, "hosts": ["h"]}
    client = redis.asyncio.Redis.from_url(contract_redis_url)
    try:
        await client.hset(
            "meetgate:rooms", name, json.dumps({**record, "policy": {"invite": True}})
        )
    finally:
        await client.aclose()
    store = await RedisStore.connect(contract_redis_url)
    try:
        expected = Room(name=name, title="Old", created_at=12.5, hosts=("h",))
        assert await store.get_room(name) == expected
        assert expected in await store.list_rooms()
        locked = dataclasses.replace(expected, locked=True)
        await store.update_room(locked)
        assert await store.get_room(name) == locked
        assert await store.delete_room(name, time.time()) is True
        assert await store.get_room(name) is None
    finally:
        await store.close()


async def test_an_unreachable_redis_raises_store_unavailable() -> None:
    store = await RedisStore.connect(f"redis://127.0.0.1:{free_port()}/0")
    room = make_room()
    operations: list[Callable[[], Awaitable[object]]] = [
        store.ping,
        lambda: store.create_room(room),
        lambda: store.get_room(room.name),
        lambda: store.update_room(room),
        lambda: store.redeem_invite(secrets.token_hex(32), time.time()),
        lambda: store.add_admission(make_admission(room.name)),
        lambda: store.move_admission(secrets.token_hex(32), room.name),
        lambda: store.append_audit(make_audit(room.name, time.time())),
        lambda: store.list_audit(room.name),
        lambda: store.is_banned(room.name, "who", time.time()),
        lambda: store.rate_limit("ip", 1.0, 1),
        lambda: store.charge_limits([LimitCharge("ip", 1.0, 1), LimitCharge("room", 5.0, 10)]),
        lambda: store.count_recent("room", 10),
        lambda: store.read_recent("room", 10),
        lambda: store.claim_once("answer", 60.0),
        lambda: store.put_value("code", "123456", 60.0),
        lambda: store.get_value("code"),
        lambda: store.take_value("code"),
        lambda: store.delete_value("code"),
        lambda: store.bump_value("attempts", 60.0),
        lambda: store.index_add("lobby", "alice", 60.0),
        lambda: store.index_members("lobby"),
        lambda: store.index_remove("lobby", "alice"),
        lambda: store.index_size("lobby"),
        lambda: store.publish("revocations", "revoke:1"),
        lambda: store.advance_marker(MARKER),
        store.read_marker,
        lambda: store.replace_marker(None, MARKER),
    ]
    try:
        for operation in operations:
            # Each operation's own failure is translated; while the store is known down a call
            # fails at once, without asking (and so without a cause): taken for up before each.
            store.health.answered()
            with pytest.raises(StoreUnavailable) as caught:
                await operation()
            assert caught.value.__cause__ is not None
            assert not store.health.up
            with pytest.raises(StoreUnavailable) as caught:
                await operation()
            assert caught.value.__cause__ is None
        subscription = store.subscribe("revocations")
        with pytest.raises(StoreUnavailable):
            await subscription.ready()
        with pytest.raises(StoreUnavailable):
            await next_message(subscription)
    finally:
        await store.close()
