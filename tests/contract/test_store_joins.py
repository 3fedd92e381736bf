"""The `Store` contract for a join through an invite in one step (`join_by_invite`), for what
a join link leads to (`find_invite_and_room`), and for both in one call (`join_through_link`):
each refusal as the separate calls give it, each leaving every later step undone, on both
backends."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
import time

import pytest

from gateway.errors import (
    AdmissionBanned,
    InviteError,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsedUp,
)
from gateway.store import (
    Admission,
    Invite,
    InviteJoin,
    InviteJoined,
    LimitCharge,
    LinkFound,
    LinkJoin,
    LinkUnknown,
    NameClaim,
    Room,
    Store,
)
from gateway.store.memory import MemoryStore
from gateway.store.records import RecordKind
from gateway.store.redis import RedisStore
from tests.contract.test_store import HOUR, make_admission, make_invite, make_room, unique


async def room_with_invite(store: Store, **changes: object) -> tuple[Room, Invite]:
    room = make_room()
    await store.create_room(room)
    invite = make_invite(room.name, **changes)
    await store.add_invite(invite)
    return room, invite


def join_of(
    room: Room,
    invite: Invite,
    *names: str,
    charges: tuple[LimitCharge, ...] = (),
    token_hash: str | None = None,
    now: float | None = None,
    admission: Admission | None = None,
) -> InviteJoin:
    """A join of `invite`'s holder to `room`, claiming the first free of `names` (each its own
    shape: the name lower-cased)."""
    admission = admission or make_admission(room.name, name="")
    names = names or ("Ada",)
    return InviteJoin(
        token_hash=invite.token_hash if token_hash is None else token_hash,
        invite_id=invite.id,
        now=time.time() if now is None else now,
        charges=charges,
        ban_scope=room.ban_scope,
        claim=NameClaim(
            holder=admission.id,
            shapes=tuple(name.lower() for name in names),
            expires_at=admission.expires_at,
            host_shape=names[0].lower(),
            first_yields_to_host=True,
        ),
        names=names,
        admission=admission,
    )


def spent_limit() -> LimitCharge:
    return LimitCharge(unique("spent"), rate_per_second=0.001, burst=1)


async def assert_nothing_after_the_limits(store: Store, join: InviteJoin, uses: int) -> None:
    """The invite's uses as they were, no admission, and the join's first name still free."""
    stored = await store.get_invite(join.invite_id)
    assert stored is not None and stored.uses == uses
    assert await store.get_admission(join.admission.id) is None
    other = NameClaim(secrets.token_hex(32), join.claim.shapes[:1], time.time() + HOUR, "")
    assert await store.claim_name(join.admission.room, other) == 0


async def test_a_join_charges_uses_claims_and_admits(store: Store) -> None:
    """Catches a step of the join left out: the limits, the use, the name or the admission."""
    room, invite = await room_with_invite(store, max_uses=2)
    limit = LimitCharge(unique("addr"), rate_per_second=0.001, burst=1)
    taken = NameClaim(secrets.token_hex(32), ("ada",), time.time() + HOUR, "ada")
    assert await store.claim_name(room.name, taken) == 0
    join = join_of(room, invite, "Ada", "Ada (2)", charges=(limit,))
    joined = await store.join_by_invite(join)
    assert joined.limits.allowed
    expected = dataclasses.replace(join.admission, name="Ada (2)")
    assert joined.admission == expected
    assert await store.get_admission(expected.id) == expected
    assert await store.list_admissions(room.name) == [expected]
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 1
    # The limit is charged (its burst of one is spent) and the name is the admission's.
    assert not (await store.charge_limits([limit])).allowed
    assert (
        await store.claim_name(room.name, dataclasses.replace(taken, shapes=("ada (2)",))) is None
    )


async def test_a_join_the_limits_refuse_does_nothing_else(store: Store) -> None:
    room, invite = await room_with_invite(store)
    limit = spent_limit()
    assert (await store.charge_limits([limit])).allowed
    other = LimitCharge(unique("addr"), rate_per_second=1.0, burst=5)
    join = join_of(room, invite, charges=(other, limit))
    joined = await store.join_by_invite(join)
    assert joined == InviteJoined(limits=joined.limits)
    assert not joined.limits.allowed and joined.limits.retry_after > 0
    assert joined.limits.waits[0] == 0 and joined.limits.waits[1] > 0
    await assert_nothing_after_the_limits(store, join, uses=0)
    # All or nothing: the limit that had room was not charged either.
    assert [(await store.charge_limits([other])).allowed for _ in range(5)] == [True] * 5


@pytest.mark.parametrize("until", [None, "later"])
async def test_a_banned_holder_is_refused_after_the_limits(store: Store, until: str | None) -> None:
    room, invite = await room_with_invite(store)
    join = join_of(room, invite, charges=(LimitCharge(unique("addr"), 0.001, 1),))
    ends = None if until is None else time.time() + HOUR
    await store.ban_identity(room.ban_scope, join.admission.identity, ends)
    with pytest.raises(AdmissionBanned):
        await store.join_by_invite(join)
    await assert_nothing_after_the_limits(store, join, uses=0)
    assert not (await store.charge_limits(list(join.charges))).allowed


async def test_a_ban_that_ended_holds_nobody_back(store: Store) -> None:
    room, invite = await room_with_invite(store)
    join = join_of(room, invite)
    await store.ban_identity(room.ban_scope, join.admission.identity, time.time() + 0.05)
    joined = await store.join_by_invite(dataclasses.replace(join, now=time.time() + 1))
    assert joined.admission is not None


async def test_a_ban_that_does_not_parse_bans(store: Store) -> None:
    """Catches a corrupt ban read as no ban by the one-step join (it must refuse, as is_banned
    does)."""
    room, invite = await room_with_invite(store)
    join = join_of(room, invite)
    name = f"{room.ban_scope}:{join.admission.identity}"
    if isinstance(store, RedisStore):
        await store.write_raw(RecordKind.BAN, name, {"value": "0x10"})
    else:
        assert isinstance(store, MemoryStore)
        store.write_raw(RecordKind.BAN, name, {"value": "0x10"})
    store.health.take_corrupt_counts()
    with pytest.raises(AdmissionBanned):
        await store.join_by_invite(join)
    assert store.health.take_corrupt_counts() == {RecordKind.BAN: 1}
    await assert_nothing_after_the_limits(store, join, uses=0)


@pytest.mark.parametrize(
    ("changes", "revoke", "error"),
    [
        ({"expires_at": 1000.0}, False, InviteExpired),
        ({"max_uses": 2, "uses": 2}, False, InviteUsedUp),
        ({}, True, InviteRevoked),
        ({"expires_at": 1000.0}, True, InviteRevoked),
    ],
)
async def test_an_unusable_invite_is_refused_as_redeem_invite_refuses_it(
    store: Store, changes: dict[str, object], revoke: bool, error: type[InviteError]
) -> None:
    room, invite = await room_with_invite(store, **changes)
    if revoke:
        await store.revoke_invite(invite.id)
    join = join_of(room, invite)
    with pytest.raises(error):
        await store.join_by_invite(join)
    await assert_nothing_after_the_limits(store, join, uses=invite.uses)


async def test_a_token_that_is_not_the_invites_is_unknown(store: Store) -> None:
    room, invite = await room_with_invite(store)
    with pytest.raises(InviteUnknown):
        await store.join_by_invite(join_of(room, invite, token_hash=secrets.token_hex(32)))
    _, other = await room_with_invite(store)
    with pytest.raises(InviteUnknown):
        await store.join_by_invite(join_of(room, dataclasses.replace(invite, id=other.id)))
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 0


async def test_every_name_held_leaves_the_invite_and_admission_undone(store: Store) -> None:
    """Catches an invite use burnt (or an admission stored) for a join that got no name."""
    room, invite = await room_with_invite(store)
    holder = secrets.token_hex(32)
    taken = NameClaim(holder, ("ada", "ada (2)"), time.time() + HOUR, "ada")
    assert await store.claim_name(room.name, taken) == 0
    assert await store.claim_name(room.name, dataclasses.replace(taken, shapes=("ada (2)",))) == 0
    join = join_of(room, invite, "Ada", "Ada (2)")
    joined = await store.join_by_invite(join)
    assert joined == InviteJoined(limits=joined.limits) and joined.limits.allowed
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 0
    assert await store.get_admission(join.admission.id) is None
    # With the next names: admitted.
    later = await store.join_by_invite(join_of(room, invite, "Ada (3)"))
    assert later.admission is not None and later.admission.name == "Ada (3)"


async def test_racing_joins_on_a_single_use_invite_admit_one(store: Store) -> None:
    room, invite = await room_with_invite(store, max_uses=1)
    results = await asyncio.gather(
        *(store.join_by_invite(join_of(room, invite)) for _ in range(10)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, InviteJoined) and r.admission is not None]
    refused = [r for r in results if isinstance(r, InviteUsedUp)]
    assert (len(admitted), len(refused)) == (1, 9), results
    assert len(await store.list_admissions(room.name)) == 1


async def test_racing_namesakes_get_distinct_names(store: Store) -> None:
    room, invite = await room_with_invite(store, max_uses=10)
    names = ("Ada", "Ada (2)", "Ada (3)")
    results = await asyncio.gather(
        *(store.join_by_invite(join_of(room, invite, *names)) for _ in range(4))
    )
    shown = sorted(r.admission.name for r in results if r.admission is not None)
    assert shown == sorted(names)


# What a join link leads to


async def test_a_token_leads_to_its_invite_and_room(store: Store) -> None:
    room, invite = await room_with_invite(store)
    assert await store.find_invite_and_room(invite.token_hash, 16) == (invite, room)
    assert await store.find_invite_and_room(secrets.token_hex(32), 16) == (None, None)


async def test_a_token_follows_its_rooms_moves_up_to_the_bound(store: Store) -> None:
    """Catches moves not followed (a join into the room the meeting left) or followed past the
    bound (a loop of moves read for ever)."""
    rooms = [make_room() for _ in range(4)]
    for room in rooms:
        await store.create_room(room)
    invite = make_invite(rooms[0].name)
    await store.add_invite(invite)
    for room, onward in itertools.pairwise(rooms):
        await store.update_room(dataclasses.replace(room, moved_to=onward.name))
    moved = [await store.get_room(room.name) for room in rooms]
    assert await store.find_invite_and_room(invite.token_hash, 16) == (invite, moved[3])
    assert await store.find_invite_and_room(invite.token_hash, 2) == (invite, moved[2])
    assert await store.find_invite_and_room(invite.token_hash, 0) == (invite, moved[0])
    # A loop ends at the bound too.
    await store.update_room(dataclasses.replace(rooms[3], moved_to=rooms[0].name))
    found = await store.find_invite_and_room(invite.token_hash, 5)
    assert found[1] is not None and found[1].name == rooms[1].name


async def test_a_token_whose_room_is_gone_leads_nowhere(store: Store) -> None:
    room, invite = await room_with_invite(store)
    gone = make_room()
    await store.create_room(gone)
    await store.update_room(dataclasses.replace(room, moved_to=gone.name))
    await store.delete_room(gone.name, time.time())
    assert await store.find_invite_and_room(invite.token_hash, 16) == (invite, None)


# A join link in one call


def through_link(
    found: LinkFound | None,
    join: InviteJoin | None = None,
    *,
    token_hash: str | None = None,
    unknown: tuple[LimitCharge, ...] = (),
    counter: tuple[str, int] | None = None,
) -> LinkJoin:
    token_hash = token_hash or (found.invite.token_hash if found else secrets.token_hex(32))
    return LinkJoin(token_hash, 16, unknown, expected=found, join=join, count_unknown=counter)


async def look(store: Store, invite: Invite) -> LinkFound:
    found = await store.join_through_link(through_link(None, token_hash=invite.token_hash))
    assert isinstance(found, LinkFound)
    return found


async def test_a_link_that_leads_nowhere_is_charged_and_told(store: Store) -> None:
    """Catches a made-up link that costs nothing (a flood of them would be free) or that is
    charged against anything but the limits given for it."""
    limit = spent_limit()
    counter = (unique("rejected"), 10)
    answer = await store.join_through_link(through_link(None, unknown=(limit,), counter=counter))
    assert isinstance(answer, LinkUnknown) and answer.limits.allowed
    assert await store.read_recent(*counter) == 1
    again = await store.join_through_link(through_link(None, unknown=(limit,), counter=counter))
    assert isinstance(again, LinkUnknown) and not again.limits.allowed
    assert len(again.limits.waits) == 1
    # Refused by its limits, it is not counted here (the caller counts that refusal).
    assert await store.read_recent(*counter) == 1
    # An invite whose room is gone leads nowhere too.
    room, invite = await room_with_invite(store)
    await store.delete_room(room.name, time.time())
    gone = await store.join_through_link(through_link(None, token_hash=invite.token_hash))
    assert isinstance(gone, LinkUnknown) and gone.limits.allowed


async def test_a_look_finds_the_invite_and_the_room_now(store: Store) -> None:
    room, invite = await room_with_invite(store)
    later = make_room()
    await store.create_room(later)
    await store.update_room(dataclasses.replace(room, moved_to=later.name))
    limit = spent_limit()
    counter = (unique("rejected"), 10)
    found = await store.join_through_link(
        through_link(None, token_hash=invite.token_hash, unknown=(limit,), counter=counter)
    )
    assert isinstance(found, LinkFound)
    assert (found.invite, found.room) == (invite, later)
    # A look charges and counts nothing.
    assert (await store.charge_limits([limit])).allowed
    assert await store.read_recent(*counter) == 0


async def test_a_join_through_the_link_as_expected_admits_in_one_call(store: Store) -> None:
    room, invite = await room_with_invite(store, max_uses=2)
    found = await look(store, invite)
    limit = LimitCharge(unique("addr"), rate_per_second=0.001, burst=1)
    join = join_of(room, invite, "Ada", charges=(limit,))
    joined = await store.join_through_link(through_link(found, join))
    assert isinstance(joined, InviteJoined) and joined.admission is not None
    assert await store.get_admission(join.admission.id) == joined.admission
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 1
    assert not (await store.charge_limits([limit])).allowed
    # Refusals are join_by_invite's: a ban after the limits.
    banned = join_of(room, invite)
    await store.ban_identity(room.ban_scope, banned.admission.identity, None)
    with pytest.raises(AdmissionBanned):
        await store.join_through_link(through_link(found, banned))


async def test_a_join_through_a_changed_room_is_sent_back_undone(store: Store) -> None:
    """Catches a join decided on a room record that changed since (locked, its policy changed,
    moved): the caller must decide again on the room as it is now."""
    room, invite = await room_with_invite(store, max_uses=2)
    found = await look(store, invite)
    locked = dataclasses.replace(room, locked=True)
    await store.update_room(locked)
    limit = spent_limit()
    join = join_of(room, invite, charges=(limit,))
    answer = await store.join_through_link(through_link(found, join))
    assert isinstance(answer, LinkFound) and answer.room == locked
    assert answer.stamp != found.stamp
    await assert_nothing_after_the_limits(store, join, uses=0)
    assert (await store.charge_limits([limit])).allowed
    # With what it found now: admitted.
    joined = await store.join_through_link(through_link(answer, join_of(room, invite, "Grace")))
    assert isinstance(joined, InviteJoined) and joined.admission is not None


async def test_a_join_expecting_another_invite_is_sent_back_undone(store: Store) -> None:
    room, invite = await room_with_invite(store)
    _, other = await room_with_invite(store)
    found = await look(store, invite)
    # The stamp of the room is right; the invite is not the link's.
    wrong = dataclasses.replace(found, invite=dataclasses.replace(invite, id=other.id))
    join = join_of(room, dataclasses.replace(invite, id=other.id))
    answer = await store.join_through_link(through_link(wrong, join))
    assert isinstance(answer, LinkFound) and answer.invite == invite
    for stored in (await store.get_invite(invite.id), await store.get_invite(other.id)):
        assert stored is not None and stored.uses == 0
