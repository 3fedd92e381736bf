"""The names a room keeps for its hosts before they arrive: read from its host invites, kept by
each replica for a few seconds."""

from __future__ import annotations

import dataclasses
import time

from gateway.admission.host_names import HostNames
from gateway.admission.invites import make_invite
from gateway.admission.names import host_shape
from gateway.store.memory import MemoryStore
from gateway.store.records import Invite, Role, Room


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def room_with_invites() -> tuple[MemoryStore, float]:
    store = MemoryStore()
    now = time.time()
    await store.create_room(Room(name="agora", title="Agora", created_at=now))
    for name, role in [("Hilde Host", Role.HOST), ("Ada", Role.ATTENDEE)]:
        made = make_invite(
            room="agora", name=name, role=role, max_uses=1, lifetime_seconds=3600, now=now
        )
        await store.add_invite(made.invite)
    revoked = make_invite(
        room="agora", name="Gone Host", role=Role.HOST, max_uses=1, lifetime_seconds=3600, now=now
    )
    await store.add_invite(revoked.invite)
    await store.revoke_invite(revoked.invite.id)
    short = make_invite(
        room="agora", name="Brief Host", role=Role.HOST, max_uses=1, lifetime_seconds=60, now=now
    )
    # Used up: still kept, as long as it has not expired.
    await store.add_invite(dataclasses.replace(short.invite, uses=1))
    return store, now


async def test_only_usable_host_invites_keep_a_name() -> None:
    store, now = await room_with_invites()
    names = HostNames(store)
    assert await names.reserved("agora", now) == {
        host_shape("Hilde Host"),
        host_shape("Brief Host"),
    }
    assert await names.reserved("agora", now + 61) == {host_shape("Hilde Host")}
    assert await names.reserved("elsewhere", now) == frozenset()


async def test_a_rooms_names_are_read_again_after_a_few_seconds() -> None:
    store, now = await room_with_invites()
    clock = Clock()
    names = HostNames(store, max_age_seconds=5, clock=clock)
    before = await names.reserved("agora", now)
    late = make_invite(
        room="agora", name="Late Host", role=Role.HOST, max_uses=1, lifetime_seconds=600, now=now
    )
    await store.add_invite(late.invite)
    clock.now += 4.9
    assert await names.reserved("agora", now) == before
    clock.now += 0.1
    assert await names.reserved("agora", now) == before | {host_shape("Late Host")}


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def list_invites(self, room: str) -> list[Invite]:
        self.reads.append(room)
        return await super().list_invites(room)


async def test_only_so_many_rooms_are_kept() -> None:
    store = CountingStore()
    names = HostNames(store, max_rooms=2)
    for room in ("a", "b", "a", "c", "a", "b"):
        await names.reserved(room, time.time())
    # "a", used most recently, stays; "b" made way for "c" and is read again.
    assert store.reads == ["a", "b", "c", "b"]
