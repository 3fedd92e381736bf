"""Every waiting registration of a room in one scan (`Registrations.waiting_ids`, what the hosts'
"approve every waiting one" takes): the ids `page` lists over all its pages, with the room's
invites read once, not once a page."""

from __future__ import annotations

import time

from gateway.admission.registrations import MAX_PAGE
from gateway.settings import Rate
from gateway.store.memory import MemoryStore
from gateway.store.records import Invite
from tests.contract.test_registrations import fresh_address, generous, make_desk, stored_room


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.invite_lists = 0

    async def list_invites(self, room: str) -> list[Invite]:
        self.invite_lists += 1
        return await super().list_invites(room)


async def test_every_waiting_one_is_read_in_one_scan() -> None:
    store = CountingStore()
    wide = Rate(per_minute=1_000_000, burst=100_000)
    desk = make_desk(store, rates=generous().model_copy(update={"registration": wide}))
    room = await stored_room(store)
    count = MAX_PAGE + 5
    made = [
        (await desk.registered(room, f"Person {n}", fresh_address())).registration.id
        for n in range(count)
    ]
    answered = made[:2]
    assert await desk.registrations.deny(room.name, answered, "Hilde", time.time()) == 2
    paged: list[str] = []
    while True:
        page = await desk.registrations.page(
            room.name, state="waiting", offset=len(paged), limit=MAX_PAGE, now=time.time()
        )
        paged += [item.id for item in page.items]
        if not page.items:
            break
    store.invite_lists = 0
    ids, total = await desk.registrations.waiting_ids(room.name, most=count, now=time.time())
    assert store.invite_lists == 1
    assert ids == paged and total == count - 2 and set(ids) == set(made) - set(answered)
    fewer, total = await desk.registrations.waiting_ids(room.name, most=3, now=time.time())
    assert fewer == paged[:3] and total == count - 2
