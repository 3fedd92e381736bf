"""The `Store` contract for a join through an invite in one step (`join_by_invite`), for what
a join link leads to (`find_invite_and_room`), for both in one call (`join_through_link`), and
for a link nothing was known of judged in the store (`join_plainly`): each refusal as the
separate calls give it, each leaving every later step undone, on both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
import time

import pytest
import redis.asyncio

from gateway.errors import (
    AdmissionBanned,
    InviteError,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsedUp,
)
from gateway.store import (
    INVITE_KEPT_AFTER_EXPIRY,
    Admission,
    Invite,
    InviteJoin,
    InviteJoined,
    JoinPlan,
    LimitCharge,
    LinkFound,
    LinkJoin,
    LinkJoined,
    LinkUnknown,
    NameClaim,
    PlainJoin,
    Role,
    Room,
    RoomPolicy,
    Store,
)
from gateway.store.memory import MemoryStore
from gateway.store.records import (
    _INVITE_JSON,
    _POLICY_JSON,
    _ROOM_JSON,
    INVITE_FIELD_KINDS,
    POLICY_FIELD_KINDS,
    ROOM_FIELD_KINDS,
    RecordKind,
    encode_record,
)
from gateway.store.redis import RedisStore
from tests.contract.test_store import (
    HOUR,
    make_admission,
    make_invite,
    make_room,
    unique,
)

DAY = 86_400.0


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


@pytest.mark.parametrize(
    ("field", "text"),
    [("max_uses", "2.5"), ("max_uses", "-1"), ("expires_at", "Infinity"), ("expires_at", "NaN")],
)
async def test_a_join_through_an_invite_record_the_parser_refuses_admits_nobody(
    store: Store, field: str, text: str
) -> None:
    """Catches invite_check.lua using an invite record `parse_invite` refuses (a count that is
    not whole, an expiry that never comes): refused as unknown and counted as corrupt."""
    room, invite = await room_with_invite(store)
    record = encode_record(invite, without=("uses", "revoked"))
    data = json.loads(record)
    written = json.dumps(data, separators=(",", ":")).replace(
        f'"{field}":{json.dumps(data[field])}', f'"{field}":{text}'
    )
    assert written != record
    await write_raw(store, RecordKind.INVITE, invite.id, {"record": written})
    store.health.take_corrupt_counts()
    join = join_of(room, invite)
    with pytest.raises(InviteUnknown):
        await store.join_by_invite(join)
    assert store.health.take_corrupt_counts() == {RecordKind.INVITE: 1}
    assert await store.get_admission(join.admission.id) is None


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


# A join link nothing was known of (`join_plainly`).

# One charge spends a limit of the join's own (address, network, identity, invite); the gate's
# and the room's are shared with other tests and other joins, and left room enough.
PLAIN_RATE = (0.001, 1)
SHARED_RATE = (1000.0, 1000)
# The fingerprint of the pseudonym key the plans and joins of these tests name.
PLAN_KEY = "k" * 16


def plan_for(invite: Invite, *, host_shape: str | None = None) -> JoinPlan:
    """A join plan as the gate makes one, the shapes the names lower-cased."""
    names = (invite.name, *(f"{invite.name} ({n})" for n in range(2, 4)))
    return JoinPlan(
        identity=unique("who"),
        key=PLAN_KEY,
        host_shape=invite.name.lower() if host_shape is None else host_shape,
        shapes=tuple(name.lower() for name in names),
        names=names,
    )


async def room_with_planned_invite(
    store: Store, room: Room | None = None, **changes: object
) -> tuple[Room, Invite, JoinPlan]:
    room = room or make_room()
    if await store.get_room(room.name) is None:
        await store.create_room(room)
    invite = make_invite(room.name, **changes)
    plan = plan_for(invite)
    await store.add_invite(invite, plan)
    return room, invite, plan


def plain_join(
    invite: Invite,
    *,
    varied: frozenset[str] = frozenset(),
    pressure: tuple[int, int] | None = None,
    unknown: tuple[LimitCharge, ...] = (),
    counter: tuple[str, int] | None = None,
    token_hash: str | None = None,
    strict: bool = True,
    key: str = PLAN_KEY,
) -> PlainJoin:
    """A plain join through `invite`'s link from an address of its own; `strict`: the
    identity's and the invite's limits allow one charge (else they are left room enough)."""
    address = unique("addr")
    own = PLAIN_RATE if strict else SHARED_RATE
    blank = make_admission("", identity="", name="", via="")
    return PlainJoin(
        token_hash=invite.token_hash if token_hash is None else token_hash,
        max_moves=16,
        unknown_charges=unknown,
        count_unknown=counter,
        now=time.time(),
        address_charges=(
            LimitCharge(f"addr:{address}", *PLAIN_RATE),
            LimitCharge(f"net:{address}", *PLAIN_RATE),
        ),
        rates=(SHARED_RATE, SHARED_RATE, own, own),
        varied_rooms=varied,
        pressure=pressure,
        admission=blank,
        key=key,
    )


async def charged(store: Store, join: PlainJoin, room: str, identity: str, invite: str) -> int:
    """How many of the join's own limits `join` names are spent (each allows one charge)."""
    spent = 0
    for charge in join.charges(room, identity, invite):
        if charge.burst == PLAIN_RATE[1] and not (await store.charge_limits([charge])).allowed:
            spent += 1
    return spent


async def test_a_plain_join_admits_as_the_plan_says(store: Store) -> None:
    """Catches a join that takes the identity, name, role or room from anywhere but the
    invite's plan and the room the link leads to now, or that skips a limit."""
    room, invite, plan = await room_with_planned_invite(store, max_uses=2)
    later = make_room()
    await store.create_room(later)
    await store.update_room(dataclasses.replace(room, moved_to=later.name))
    join = plain_join(invite)
    joined = await store.join_plainly(join)
    assert isinstance(joined, LinkJoined) and joined.admission is not None
    where = (joined.room, joined.identity, joined.invite_id)
    assert where == (later.name, plan.identity, invite.id)
    admission = joined.admission
    assert (admission.room, admission.identity, admission.name, admission.role, admission.via) == (
        later.name,
        plan.identity,
        invite.name,
        invite.role,
        f"invite:{invite.id}",
    )
    assert await store.get_admission(admission.id) == admission
    assert admission.id in {a.id for a in await store.list_admissions(later.name)}
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 1
    assert await charged(store, join, later.name, plan.identity, invite.id) == 4
    # A namesake gets the plan's next name.
    _, namesake, namesake_plan = await room_with_planned_invite(store, later)
    again = await store.join_plainly(plain_join(namesake))
    assert isinstance(again, LinkJoined) and again.admission is not None
    assert again.admission.name == namesake_plan.names[1]


@pytest.mark.parametrize(
    "why",
    [
        "no plan",
        "locked",
        "lockdown",
        "no invites",
        "varied limits",
        "proof asked",
        "pressure",
        "host name reserved",
        "invite without plan",
        "plan of another key",
        "host invite corrupt",
    ],
)
async def test_a_plain_join_leaves_what_needs_a_decision_undone(store: Store, why: str) -> None:
    """Catches a room judged in the store that needs the gate's decision (its lobby, a lock, a
    proof-of-work, limits of its own, a host's name kept), or a plan made under a pseudonym
    key the gate no longer uses (the gate names the holder otherwise now, and keeps bans under
    that name): nothing charged, nothing used."""
    room = make_room()
    if why in ("locked", "lockdown", "no invites", "proof asked"):
        room = dataclasses.replace(
            room,
            locked=why == "locked",
            approval_required=why == "lockdown",
            policy=RoomPolicy(invite=why != "no invites", lobby=why == "lockdown"),
            pow_required=why == "proof asked",
        )
    await store.create_room(room)
    invite = make_invite(room.name)
    plan = plan_for(invite)
    await store.add_invite(invite, None if why == "no plan" else plan)
    if why in ("host name reserved", "host invite corrupt"):
        host = make_invite(room.name, role=Role.HOST, name="ADA LOVELACE")
        await store.add_invite(host, plan_for(host, host_shape=plan.host_shape))
    if why == "host invite corrupt":
        # A host's invite whose record does not parse may be one whose name is reserved.
        record = encode_record(host, without=("uses", "revoked")).replace('"host"', '"HOST"')
        await write_raw(store, RecordKind.INVITE, host.id, {"record": record})
    if why == "invite without plan":
        await store.add_invite(make_invite(room.name, name="Grace"))
    if why == "pressure":
        await store.count_recent(f"reject:room:{room.name}", 10, 5)
    join = plain_join(
        invite,
        varied=frozenset({room.name}) if why == "varied limits" else frozenset(),
        pressure=(10, 5) if why in ("proof asked", "pressure") else None,
        key="n" * 16 if why == "plan of another key" else PLAN_KEY,
    )
    answer = await store.join_plainly(join)
    assert isinstance(answer, LinkFound)
    assert (answer.invite.id, answer.room.name) == (invite.id, room.name)
    stored = await store.get_invite(invite.id)
    assert stored is not None and stored.uses == 0
    assert await charged(store, join, room.name, plan.identity, invite.id) == 0


async def test_a_plain_join_goes_on_where_nothing_needs_a_decision(store: Store) -> None:
    """Catches a join sent back for what does not hold it: a host's invite into a locked room
    in lockdown, a host's name kept only by a revoked or expired host invite, pressure below
    the threshold."""
    room = dataclasses.replace(make_room(), locked=True, approval_required=True)
    _, host_invite, _ = await room_with_planned_invite(store, room, role=Role.HOST)
    joined = await store.join_plainly(plain_join(host_invite, pressure=(10, 5)))
    assert isinstance(joined, LinkJoined) and joined.admission is not None
    assert joined.admission.role is Role.HOST
    open_room, invite, plan = await room_with_planned_invite(store)
    now = time.time()
    for changes in ({"revoked": True}, {"expires_at": now - 1, "created_at": now - 2}):
        held = make_invite(open_room.name, role=Role.HOST, **changes)
        await store.add_invite(held, plan_for(held, host_shape=plan.host_shape))
    await store.count_recent(f"reject:room:{open_room.name}", 10, 4)
    joined = await store.join_plainly(plain_join(invite, pressure=(10, 5)))
    assert isinstance(joined, LinkJoined) and joined.admission is not None


async def test_a_plain_join_refuses_as_a_join_by_invite(store: Store) -> None:
    """Each refusal told apart, and nothing after it done: the limits, a ban, the invite, every
    name held."""
    room, invite, plan = await room_with_planned_invite(store, max_uses=3)
    spent = plain_join(invite)
    await store.charge_limits([spent.charges(room.name, plan.identity, invite.id)[4]])
    limited = await store.join_plainly(spent)
    assert isinstance(limited, LinkJoined) and not limited.limits.allowed
    assert len(limited.limits.waits) == 6 and limited.limits.waits[4] > 0
    other_room, other, other_plan = await room_with_planned_invite(store, max_uses=3)
    await store.ban_identity(other_room.ban_scope, other_plan.identity, None)
    banned = await store.join_plainly(plain_join(other, strict=False))
    assert isinstance(banned, LinkJoined) and banned.banned and banned.admission is None
    room, invite, plan = await room_with_planned_invite(store, max_uses=3)
    for name in plan.names:
        claim = NameClaim(
            holder=secrets.token_hex(32),
            shapes=(name.lower(),),
            expires_at=time.time() + HOUR,
            host_shape=name.lower(),
        )
        assert await store.claim_name(room.name, claim) == 0
    held = await store.join_plainly(plain_join(invite, strict=False))
    assert isinstance(held, LinkJoined) and held.limits.allowed and held.admission is None
    for unused in (invite, other):
        stored = await store.get_invite(unused.id)
        assert stored is not None and stored.uses == 0
    await store.revoke_invite(invite.id)
    revoked = await store.join_plainly(plain_join(invite, strict=False))
    assert isinstance(revoked, LinkJoined) and isinstance(revoked.invite_refusal, InviteRevoked)


async def test_a_plain_join_reads_a_room_that_takes_registrations(store: Store) -> None:
    """Catches join_plain.lua refusing a room record with the registration fields set (a
    meeting's time, its allow-lists): such a room is joined through its link as any."""
    room = dataclasses.replace(
        make_room(),
        registration=True,
        auto_approve_domains=("example.org",),
        series="conference",
        starts_at=1_900_000_000,
        ends_at=1_900_003_600.5,
    )
    _, invite, _ = await room_with_planned_invite(store, room)
    store.health.take_corrupt_counts()
    joined = await store.join_plainly(plain_join(invite))
    assert isinstance(joined, LinkJoined) and joined.admission is not None
    assert store.health.take_corrupt_counts() == {}
    assert await store.get_room(room.name) == room


async def test_a_plain_join_reads_an_invite_with_a_forget_time(store: Store) -> None:
    """Catches join_plain.lua refusing an invite record with its forget time set (an
    invitation to a registrant): it is joined through as any."""
    _, invite, _ = await room_with_planned_invite(store, forget_at=time.time() + HOUR)
    store.health.take_corrupt_counts()
    joined = await store.join_plainly(plain_join(invite))
    assert isinstance(joined, LinkJoined) and joined.admission is not None
    assert store.health.take_corrupt_counts() == {}
    assert await store.get_invite(invite.id) == dataclasses.replace(invite, uses=1)


async def test_a_plain_join_through_a_link_that_leads_nowhere_is_charged_and_told(
    store: Store,
) -> None:
    limit = spent_limit()
    counter = (unique("rejected"), 10)
    _, invite, _ = await room_with_planned_invite(store)
    nowhere = plain_join(invite, unknown=(limit,), counter=counter, token_hash="0" * 64)
    answer = await store.join_plainly(nowhere)
    assert isinstance(answer, LinkUnknown) and answer.limits.allowed
    assert await store.read_recent(*counter) == 1
    again = await store.join_plainly(nowhere)
    assert isinstance(again, LinkUnknown) and not again.limits.allowed


async def write_raw(store: Store, kind: RecordKind, name: str, fields: dict[str, str]) -> None:
    if isinstance(store, RedisStore):
        await store.write_raw(kind, name, fields)
    else:
        assert isinstance(store, MemoryStore)
        store.write_raw(kind, name, fields)


def _corrupted(record: str, field: str, value: object, within: str | None = None) -> str:
    data = json.loads(record)
    if within is not None:
        data[within][field] = value
    elif value is _MISSING:
        del data[field]
    else:
        data[field] = value
    return json.dumps(data, separators=(",", ":"))


_MISSING = object()
# A room record or an invite record the parsers refuse though it decodes, each as
# (which record, field, value, the object holding it): an empty list for an object and an empty
# object for a list (Lua's cjson reads both as one empty table), a text for a number, a number
# for a text, a count that is not whole, a required field missing.
CORRUPT_FIELDS = [
    ("room", "policy", [], None),
    ("room", "hosts", {}, None),
    ("room", "allowed_emails", {}, "policy"),
    ("room", "invite", "true", "policy"),
    ("room", "created_at", "1", None),
    ("room", "moved_to", 5, None),
    ("room", "title", _MISSING, None),
    ("room", "ends_at", "1", None),
    ("room", "starts_at", False, None),
    ("room", "auto_approve_domains", {}, None),
    ("room", "registration", 1, None),
    ("invite", "max_uses", 2.5, None),
    ("invite", "expires_at", "9e99", None),
    ("invite", "role", 1, None),
    ("invite", "forget_at", "1", None),
]


@pytest.mark.parametrize(("record", "field", "value", "within"), CORRUPT_FIELDS)
async def test_a_plain_join_admits_nobody_through_a_record_the_parsers_refuse(
    store: Store, record: str, field: str, value: object, within: str | None
) -> None:
    """Catches join_plain.lua judging a record the gate would count as corrupt and refuse
    (`policy: []` read as a policy of defaults): nothing admitted, nothing used, the record
    counted as corrupt."""
    room, invite, _ = await room_with_planned_invite(store)
    store.health.take_corrupt_counts()
    if record == "room":
        text = _corrupted(encode_record(room), field, value, within)
        await write_raw(store, RecordKind.ROOM, room.name, {"record": text})
    else:
        text = _corrupted(encode_record(invite, without=("uses", "revoked")), field, value)
        await write_raw(store, RecordKind.INVITE, invite.id, {"record": text})
    answer = await store.join_plainly(plain_join(invite))
    assert not isinstance(answer, LinkJoined)
    assert not isinstance(answer, LinkFound)
    kind = RecordKind.ROOM if record == "room" else RecordKind.INVITE
    assert store.health.take_corrupt_counts() == {kind: 1}
    assert not await store.list_admissions(room.name)


def test_the_fields_a_script_checks_are_those_the_parsers_read() -> None:
    """Catches a field added to a room record, its policy or an invite record that
    join_plain.lua would refuse (or one it would let through unchecked)."""
    for kinds, shape in (
        (ROOM_FIELD_KINDS, _ROOM_JSON),
        (POLICY_FIELD_KINDS, _POLICY_JSON),
        (INVITE_FIELD_KINDS, _INVITE_JSON),
    ):
        assert set(kinds) == set(shape)
        for name, (required, _) in shape.items():
            assert kinds[name].endswith("!") == required, name


async def test_an_expired_host_invites_name_leaves_the_rooms_index(
    contract_redis_url: str,
) -> None:
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        room, host, _ = await room_with_planned_invite(store, role=Role.HOST, name="Hilde")
        _, guest, _ = await room_with_planned_invite(store, room)
        index = f"meetgate:room-hosts:{room.name}"
        assert (await client.hgetall(index)).get(host.id) == "hilde"
        # As when the host invite's record expires (a day past its own expiry).
        await client.delete(f"meetgate:invite:{host.id}")
        await room_with_planned_invite(store, room)
        kept = await client.hgetall(index)
        assert host.id not in kept and "hilde" not in kept.values()
        members = await client.smembers(f"meetgate:room-invites:{room.name}")
        assert host.id not in members and guest.id in members
        # The index still counts every invite of the room: a plain join needs no gate.
        assert int(kept["#"]) == len(members) == 2
    finally:
        await client.aclose()
        await store.close()


async def test_the_rooms_host_name_index_is_kept_as_long_as_its_invites(
    contract_redis_url: str,
) -> None:
    """/tmp/rv/hosts_index.py: the index of host invites' name shapes had no expiry; it is kept
    as long as the longest kept invite of the room (its expiry and a day), with the room's
    invite set, so that both go together and still count the same invites."""
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        room, _, _ = await room_with_planned_invite(
            store, role=Role.HOST, name="Hilde", expires_at=time.time() + 3 * HOUR
        )
        index, members = f"meetgate:room-hosts:{room.name}", f"meetgate:room-invites:{room.name}"
        kept = INVITE_KEPT_AFTER_EXPIRY + 3 * HOUR
        for key in (index, members):
            assert kept - 60 < await client.ttl(key) <= kept
        # A shorter-lived invite added later does not shorten it; a longer-lived one lengthens.
        await room_with_planned_invite(store, room)
        assert kept - 60 < await client.ttl(index) <= kept
        await store.add_invite(make_invite(room.name, expires_at=time.time() + 5 * HOUR))
        longer = INVITE_KEPT_AFTER_EXPIRY + 5 * HOUR
        for key in (index, members):
            assert longer - 60 < await client.ttl(key) <= longer
        # An index an earlier release kept for ever is given its invites' longest keeping.
        await client.persist(index)
        await client.persist(members)
        await room_with_planned_invite(store, room)
        for key in (index, members):
            assert longer - 60 < await client.ttl(key) <= longer
    finally:
        await client.aclose()
        await store.close()


async def test_a_revoked_host_invites_name_leaves_the_index_and_its_record_goes_in_a_day(
    contract_redis_url: str,
) -> None:
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        room, host, _ = await room_with_planned_invite(
            store, role=Role.HOST, name="Hilde Hostovna", expires_at=time.time() + 30 * DAY
        )
        index = f"meetgate:room-hosts:{room.name}"
        assert (await client.hgetall(index)).get(host.id) == "hilde hostovna"
        assert await store.revoke_invite(host.id)
        kept = await client.hgetall(index)
        assert host.id not in kept and "hilde hostovna" not in kept.values()
        # Its record (the name) and its link's index: a day to tell its holder, not 31 days.
        for key in (f"meetgate:invite:{host.id}", f"meetgate:invite-token:{host.token_hash}"):
            assert 0 < await client.ttl(key) <= INVITE_KEPT_AFTER_EXPIRY
        stored = await store.get_invite(host.id)
        assert stored is not None and stored.revoked
        # The index still counts every invite of the room: a plain join needs no gate.
        _, guest, _ = await room_with_planned_invite(store, room)
        joined = await store.join_plainly(plain_join(guest))
        assert isinstance(joined, LinkJoined) and joined.admission is not None
        assert not await store.revoke_invite(unique("inv"))
    finally:
        await client.aclose()
        await store.close()


async def test_a_plain_join_drops_a_gone_host_invites_name_from_the_index(
    contract_redis_url: str,
) -> None:
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        room, host, _ = await room_with_planned_invite(store, role=Role.HOST, name="Ada Lovelace")
        _, guest, _ = await room_with_planned_invite(store, room)
        index = f"meetgate:room-hosts:{room.name}"
        # As when the host invite's record expires (a day past its own expiry).
        await client.delete(f"meetgate:invite:{host.id}")
        # The guest's name has the host's shape: read, the gone host's entry goes, and the join
        # goes on (no host holds the name).
        joined = await store.join_plainly(plain_join(guest))
        assert isinstance(joined, LinkJoined) and joined.admission is not None
        kept = await client.hgetall(index)
        assert host.id not in kept and "ada lovelace" not in kept.values()
        assert host.id not in await client.smembers(f"meetgate:room-invites:{room.name}")
        assert int(kept["#"]) == await client.scard(f"meetgate:room-invites:{room.name}") == 1
    finally:
        await client.aclose()
        await store.close()


async def test_a_revoked_invite_is_kept_a_day_at_most_in_memory_too() -> None:
    store = MemoryStore()
    _, host, _ = await room_with_planned_invite(
        store, role=Role.HOST, expires_at=time.time() + 30 * DAY
    )
    assert await store.revoke_invite(host.id)
    stored = await store.get_invite(host.id)
    assert stored is not None and stored.revoked
    assert store._invite_until[host.id] <= time.time() + INVITE_KEPT_AFTER_EXPIRY
