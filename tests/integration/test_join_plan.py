"""A join through a link in one store call (`AdmissionPipeline.redeem` with a join plan, or with
what a replica kept of the link) refuses whom the step-by-step join refuses: a holder banned
under the pseudonym key the gate uses now, a room whose record is corrupt, a join the room asks
proof-of-work of since the replica read it; and a replica uses what it kept of a link for a
limited time only. On both stores (the `store` fixture)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.admission.flood import ChallengeRequired, FloodGuard
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.invites import NewInvite, make_invite
from gateway.admission.limits import RateLimiter
from gateway.admission.pipeline import KNOWN_LINK_SECONDS, AdmissionPipeline, join_plan
from gateway.errors import AdmissionBanned, InviteUnknown
from gateway.metrics import Metrics
from gateway.settings import ChallengeSettings, Rate, RateSettings
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.records import RecordKind, Role, Room, RoomPolicy, encode_record
from gateway.store.redis import RedisStore
from tests.contract.test_store import unique

OLD_KEY, NEW_KEY = b"o" * 40, b"n" * 40
ADDRESS = "192.0.2.1"


class Gates:
    """Pipelines on one store, each a replica of its own (nothing kept between them)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._limiters: list[RateLimiter] = []

    def make(
        self,
        key: bytes = NEW_KEY,
        *,
        challenge: str = "off",
        clock: Callable[[], float] = time.monotonic,
    ) -> AdmissionPipeline:
        wide = Rate(per_minute=1_000_000, burst=100_000)
        rates = RateSettings(
            address=wide, network=wide, room=wide, identity=wide, invite=wide, gate=wide
        )
        metrics = Metrics()
        limiter = RateLimiter(self.store, rates, metrics)
        self._limiters.append(limiter)
        flood = FloodGuard(self.store, limiter, ChallengeSettings(mode=challenge), key, metrics)
        return AdmissionPipeline(
            self.store,
            pseudonym_key=key,
            admission_ttl_seconds=3600,
            limiter=limiter,
            flood=flood,
            metrics=metrics,
            clock=clock,
        )

    async def aclose(self) -> None:
        for limiter in self._limiters:
            await limiter.aclose()


@pytest.fixture
async def gates(store: Store) -> AsyncIterator[Gates]:
    made = Gates(store)
    yield made
    await made.aclose()


async def planned_invite(store: Store, key: bytes = NEW_KEY) -> tuple[Room, NewInvite]:
    now = time.time()
    room = Room(name=unique("room"), title="Call", created_at=now)
    await store.create_room(room)
    made = make_invite(
        room=room.name, name="Eve", role=Role.ATTENDEE, max_uses=5, lifetime_seconds=3600, now=now
    )
    await store.add_invite(made.invite, join_plan(made.invite, key))
    return room, made


async def test_a_holder_banned_under_the_current_key_is_refused_on_both_paths(
    gates: Gates,
) -> None:
    """Catches the plan's identity, worked out under the key of the invite's making, standing
    for the holder after the key changed: a ban under the name the gate uses now held on the
    step-by-step path only."""
    room, made = await planned_invite(gates.store, OLD_KEY)
    gate = gates.make(NEW_KEY)
    verified = VerifiedIdentity(
        path=Path.INVITE, subject=made.invite.id, name="Eve", role=Role.ATTENDEE
    )
    await gates.store.ban_identity(room.ban_scope, gate.identity_of(verified), None)
    located = await gate.locate(made.token, ADDRESS)
    with pytest.raises(AdmissionBanned):
        await gate.redeem(made.token, ADDRESS, time.time(), None, located)
    with pytest.raises(AdmissionBanned):
        await gates.make(NEW_KEY).redeem(made.token, ADDRESS, time.time())
    stored = await gates.store.get_invite(made.invite.id)
    assert stored is not None and stored.uses == 0


async def test_a_plan_made_under_another_key_admits_under_the_current_one(gates: Gates) -> None:
    """Catches a key change that closes the link (the join goes step by step, and admits)."""
    _, made = await planned_invite(gates.store, OLD_KEY)
    gate = gates.make(NEW_KEY)
    admitted = await gate.redeem(made.token, ADDRESS, time.time())
    verified = VerifiedIdentity(
        path=Path.INVITE, subject=made.invite.id, name="Eve", role=Role.ATTENDEE
    )
    assert admitted.admission.identity == gate.identity_of(verified)


async def test_a_room_whose_policy_is_a_list_admits_nobody(gates: Gates) -> None:
    """Catches join_plain.lua reading `policy: []` (Lua's cjson decodes [] and {} alike) as a
    policy of defaults: refused and counted as corrupt, as the step-by-step join does."""
    room, made = await planned_invite(gates.store)
    record = {**json.loads(encode_record(room)), "policy": []}
    fields = {"record": json.dumps(record, separators=(",", ":"))}
    if isinstance(gates.store, RedisStore):
        await gates.store.write_raw(RecordKind.ROOM, room.name, fields)
    else:
        assert isinstance(gates.store, MemoryStore)
        gates.store.write_raw(RecordKind.ROOM, room.name, fields)
    gates.store.health.take_corrupt_counts()
    with pytest.raises(InviteUnknown):
        await gates.make().redeem(made.token, ADDRESS, time.time())
    assert gates.store.health.take_corrupt_counts() == {RecordKind.ROOM: 1}
    assert not await gates.store.list_admissions(room.name)


async def test_proof_turned_on_after_the_page_is_asked_of_the_next_join(gates: Gates) -> None:
    """Catches a replica that kept the link's room from its page, found the room's record
    changed when it joined, and joined without asking whether proof-of-work is demanded now."""
    room, made = await planned_invite(gates.store)
    gate = gates.make(challenge="auto")
    await gate.locate(made.token, ADDRESS)
    await gates.store.update_room(dataclasses.replace(room, pow_required=True))
    kept = gate.known_link(made.token)
    assert kept is not None and not kept.room.pow_required
    with pytest.raises(ChallengeRequired):
        await gate.redeem(made.token, ADDRESS, time.time(), None, kept)
    assert not await gates.store.list_admissions(room.name)


async def test_a_link_kept_past_its_age_is_not_used(gates: Gates) -> None:
    """Catches a replica using what it found of a link long ago (a room deleted since, its
    records kept in memory without end)."""
    now = [1000.0]
    gate = gates.make(clock=lambda: now[0])
    _, made = await planned_invite(gates.store)
    await gate.locate(made.token, ADDRESS)
    now[0] += KNOWN_LINK_SECONDS - 1
    assert gate.known_link(made.token) is not None
    now[0] += 1
    assert gate.known_link(made.token) is None


async def test_a_kept_link_keeps_no_hosts_or_addresses_of_its_room(gates: Gates) -> None:
    """Catches a replica keeping a room's hosts and the addresses its policy names for every
    link it looked up; the join through the kept link still admits in one store call."""
    now = time.time()
    room = Room(
        name=unique("room"),
        title="Call",
        created_at=now,
        hosts=("host@example.org",),
        policy=RoomPolicy(
            oidc=True,
            allowed_emails=("eve@example.org",),
            host_emails=("host@example.org",),
        ),
    )
    await gates.store.create_room(room)
    made = make_invite(
        room=room.name, name="Eve", role=Role.ATTENDEE, max_uses=5, lifetime_seconds=3600, now=now
    )
    await gates.store.add_invite(made.invite, join_plan(made.invite, NEW_KEY))
    gate = gates.make()
    located = await gate.locate(made.token, ADDRESS)
    assert located.room == room
    kept = gate.known_link(made.token)
    assert kept is not None
    assert kept.room.hosts == () and kept.room.policy == RoomPolicy(invite=True)
    admitted = await gate.redeem(made.token, ADDRESS, time.time(), None, kept)
    assert admitted.admission.room == room.name
