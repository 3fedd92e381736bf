"""Registrations on both stores (issue 19's fix round): whom a look-alike name resembles, the
invitations an approval left pending queued when the room is read (`resume`), and `retime`
racing an approval without writing its erased address back."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.admission.invitations import Invitation, Queued
from gateway.admission.registrations import (
    INVITING_LEASE_SECONDS,
    RegistrationState,
    ResembledKind,
)
from gateway.errors import StoreUnavailable
from gateway.store import Store
from gateway.store.records import Invite, Role, Room
from tests.contract.test_registrations import (
    HOUR,
    Desk,
    Queue,
    fresh_address,
    make_desk,
    opened,
    store_text,
    stored_room,
)
from tests.contract.test_store import make_admission


def host_invite(room: str, name: str) -> Invite:
    now = time.time()
    return Invite(
        id=f"inv-{secrets.token_hex(4)}",
        token_hash=secrets.token_hex(32),
        room=room,
        name=name,
        role=Role.HOST,
        max_uses=1,
        uses=0,
        expires_at=now + HOUR,
        created_at=now,
    )


@pytest.fixture
def desk(store: Store) -> Desk:
    return make_desk(store)


# Whom a name looks like


async def test_a_look_alike_says_whom_it_resembles(desk: Desk) -> None:
    """Catches a page that says only yes or no: each look-alike names the host, participant or
    registrant it resembles, a host's name before a participant's alike."""
    room = await stored_room(desk.store)
    await desk.store.add_invite(host_invite(room.name, "Hilde Host"))
    # A participant of the host's name too: the host's is the one named.
    await desk.store.add_admission(make_admission(room.name, name="Hilde Host (2)"))
    await desk.store.add_admission(make_admission(room.name, name="Clara Zetkin"))
    fake_host = "H1lde \N{CYRILLIC CAPITAL LETTER EN}ost"
    made = {
        name: (await desk.registered(room, name, fresh_address())).registration.id
        for name in (fake_host, "Clara Zetk1n", "Rosa Luxemburg", "Rosa Luxernburg", "Someone")
    }
    listed = await desk.registrations.page(room.name, now=time.time())
    resembles = {
        item.id: (item.resembles.name, item.resembles.kind) if item.resembles else None
        for item in listed.items
    }
    assert resembles == {
        made[fake_host]: ("Hilde Host", ResembledKind.HOST),
        made["Clara Zetk1n"]: ("Clara Zetkin", ResembledKind.PARTICIPANT),
        made["Rosa Luxemburg"]: ("Rosa Luxernburg", ResembledKind.REGISTRANT),
        made["Rosa Luxernburg"]: ("Rosa Luxemburg", ResembledKind.REGISTRANT),
        made["Someone"]: None,
    }
    assert all(item.looks_like for item in listed.items if item.resembles is not None)
    # Never stored: worked out from names the room's hosts see anyway.
    key = f"registration:record:{made['Rosa Luxemburg']}"
    stored = opened(key, await desk.store.get_value(key))
    assert "Rosa Luxemburg" in stored and "Luxernburg" not in stored


async def test_a_look_alike_whose_name_is_gone_still_says_it_looks_like_one(desk: Desk) -> None:
    room = await stored_room(desk.store)
    invite = host_invite(room.name, "Hilde Host")
    await desk.store.add_invite(invite)
    fake = (await desk.registered(room, "Hilde H0st", fresh_address())).registration
    assert fake.looks_like
    await desk.store.revoke_invite(invite.id)
    (item,) = (await desk.registrations.page(room.name, now=time.time())).items
    assert item.looks_like and item.resembles is None


# Pending invitations queued when the room is read


async def pending(desk: Desk, room: Room, count: int) -> list[tuple[str, str]]:
    """`count` registrations approved whose invitations the queue failed to take: (id,
    address) each."""
    made = []
    for n in range(count):
        address = fresh_address("pending.example")
        registration = (await desk.registered(room, f"Person {n}", address)).registration
        made.append((registration.id, address))
    desk.queue.failing = 1
    with pytest.raises(StoreUnavailable):
        await desk.approve(room.name, [i for i, _ in made], "Hilde", time.time())
    for registration_id, _ in made:
        found = await desk.registrations.get(room.name, registration_id)
        assert found is not None and found.inviting
    return made


async def test_reading_the_room_queues_what_an_approval_left_pending(
    desk: Desk, request: pytest.FixtureRequest
) -> None:
    """Catches pending invitations that wait for another approval in the room: reading the
    room (`resume`) queues them, a bounded number at a time, and approves nobody waiting."""
    room = await stored_room(desk.store)
    made = await pending(desk, room, 3)
    waiting = (await desk.registered(room, "Still Waiting", fresh_address())).registration
    first = await desk.registrations.resume(room.name, time.time(), queue=desk.queue, most=2)
    assert len(first.ids) == 2 and len(desk.queue.of(first.batch)) == 2
    second = await desk.registrations.resume(room.name, time.time(), queue=desk.queue)
    assert len(second.ids) == 1
    assert sorted([*first.ids, *second.ids]) == sorted(i for i, _ in made)
    assert (await desk.registrations.resume(room.name, time.time(), queue=desk.queue)).ids == ()
    assert sorted(i.address for _, i in desk.queue.made) == sorted(a for _, a in made)
    text = await store_text(desk.store, request)
    assert not [address for _, address in made if address in text]
    for registration_id, _ in made:
        done = await desk.registrations.get(room.name, registration_id)
        assert done is not None and not done.inviting and done.answered_by == "Hilde"
    still = await desk.registrations.get(room.name, waiting.id)
    assert still is not None and still.state is RegistrationState.WAITING


async def test_reading_the_room_leaves_a_pending_one_an_approval_holds(desk: Desk) -> None:
    room = await stored_room(desk.store)
    ((registration_id, _),) = await pending(desk, room, 1)
    found = await desk.registrations.get(room.name, registration_id)
    assert found is not None
    # As an approval queueing it now holds it.
    lease = f"registration:lease:{registration_id}:{found.invite_round}"
    assert await desk.store.claim_once(lease, INVITING_LEASE_SECONDS)
    assert (await desk.registrations.resume(room, time.time(), queue=desk.queue)).ids == ()
    assert not desk.queue.made


async def test_nothing_is_queued_by_reading_once_the_meeting_is_over(desk: Desk) -> None:
    room = await stored_room(desk.store, ends_at=time.time() + HOUR)
    await pending(desk, room, 1)
    later = time.time() + 2 * HOUR
    assert (await desk.registrations.resume(room, later, queue=desk.queue)).ids == ()
    assert not desk.queue.made


# retime racing an approval


class HeldQueue(Queue):
    """A queue that holds each enqueue until `go` is set (`entered` tells it was reached)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def enqueue(
        self, room: Room, invitations: Sequence[Invitation], *, now: float, batch: str | None = None
    ) -> Queued:
        self.entered.set()
        await self.go.wait()
        return await super().enqueue(room, invitations, now=now, batch=batch)


class PausingStore:
    """The store, but the first read of `key` once `armed` waits for `go` after reading (so the
    caller acts on what it read while others write)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.key = ""
        self.armed = False
        self.paused = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get_value(self, key: str) -> str | None:
        value = await self._store.get_value(key)
        if self.armed and key == self.key:
            self.armed = False
            self.paused.set()
            await self.go.wait()
        return value


async def test_retime_during_an_approval_never_brings_the_address_back(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """Catches retime writing back the pending record it read while the approval queued the
    invitation and erased the address: the address would be stored again, and the person
    pending (invited twice by the next approval)."""
    pausing = PausingStore(store)
    desk = make_desk(pausing)  # type: ignore[arg-type]  # a stand-in with the store's methods
    desk.queue = held = HeldQueue()
    room = await stored_room(store, ends_at=time.time() + 30 * 86_400)
    address = fresh_address("race.example")
    registration = (await desk.registered(room, "Ada", address)).registration
    approving = asyncio.create_task(
        desk.approve(room.name, [registration.id], "Hilde", time.time())
    )
    async with asyncio.timeout(10):
        await held.entered.wait()
    # Pending now, its address kept for the invitation being queued: retime reads that record.
    pausing.key, pausing.armed = f"registration:record:{registration.id}", True
    sooner = dataclasses.replace(room, ends_at=time.time() + 86_400)
    await store.update_room(sooner)
    retiming = asyncio.create_task(desk.registrations.retime(sooner, time.time()))
    async with asyncio.timeout(10):
        await pausing.paused.wait()
        held.go.set()
        assert len(await approving) == 1
    assert address not in await store_text(store, request)
    pausing.go.set()
    async with asyncio.timeout(10):
        await retiming
    assert address not in await store_text(store, request)
    done = await desk.registrations.get(room.name, registration.id)
    assert done is not None and done.state is RegistrationState.APPROVED and not done.inviting
    assert await desk.approve(room.name, [], "Hilde", time.time()) == []
    assert len(held.made) == 1
