"""The hosts' invitations page (in-process on the memory store, with aiosmtpd) after issue 19's
fix round: a look-alike names whom it resembles, an approval the queue failed shows as
"invitation pending", and reading the page queues that invitation (delivered once) without
another approval in the room."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

from gateway.admission.invitations import BatchProgress, Invitation, Queued
from gateway.errors import StoreUnavailable
from gateway.store.records import Role, Room
from tests.integration.test_dashboard_registrations import (
    BASE,
    ROOM,
    Desk,
    desk,
    json_headers,
    register_confirmed,
)

__all__ = ["desk"]


class BrokenQueue:
    """An InvitationQueue whose store is down."""

    async def enqueue(
        self, room: Room, invitations: Sequence[Invitation], *, now: float, batch: str | None = None
    ) -> Queued:
        raise StoreUnavailable()

    async def progress(self, batch: str) -> BatchProgress | None:
        return None


async def test_a_look_alike_names_whom_it_resembles_on_the_hosts_page(desk: Desk) -> None:
    await register_confirmed(desk, "H1lde Host", "fake@x.example", network=1)
    await register_confirmed(desk, "Someone Else", "else@y.example", network=2)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        page = await host.get(BASE)
        as_json = await host.get(f"{BASE}/registrations", headers=json_headers())
    assert page.status_code == 200, page.text
    shown = re.sub(r"<[^>]+>", "", page.text)
    assert "looks like Hilde Host (host)" in shown
    assert shown.count("looks like Hilde") == 1
    items = {item["name"]: item for item in as_json.json()["items"]}
    assert items["H1lde Host"]["resembles"] == {"name": "Hilde Host", "kind": "host"}
    assert items["Someone Else"]["resembles"] is None


async def test_an_approval_left_pending_is_shown_so_and_sent_when_the_page_is_read(
    desk: Desk,
) -> None:
    """Catches an approval whose queue failed staying "approved" and unsent until another
    approval in the room: the page says "invitation pending", and reading it queues the
    invitation, which the person receives once."""
    address = "pending@x.example"
    await register_confirmed(desk, "Pending Person", address, network=3)
    code_mails = len(desk.smtp.mailbox.to(address))
    registrations = desk.gate.registrations
    assert registrations is not None
    (registration_id,) = [r.id for r in (await registrations.page(ROOM, now=time.time())).items]
    try:
        await registrations.approve(
            ROOM, [registration_id], "Hilde", time.time(), queue=BrokenQueue()
        )
    except StoreUnavailable:
        pass
    else:
        raise AssertionError("the broken queue took the invitation")
    pending = await registrations.get(ROOM, registration_id)
    assert pending is not None and pending.inviting
    # As an approval queueing it right now holds it: the page leaves it, and shows it pending.
    lease = f"registration:lease:{registration_id}:{pending.invite_round}"
    # (for a second: then it is as if that approval stopped half-way, its lease lapsed).
    assert await desk.store.claim_once(lease, 1.0)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        held = await host.get(BASE, params={"state": "approved"})
        held_json = await host.get(
            f"{BASE}/registrations", params={"state": "approved"}, headers=json_headers()
        )
        deadline = time.monotonic() + 10
        while True:
            read = await host.get(BASE, params={"state": "approved"})
            if "invitation pending" not in read.text:
                break
            assert time.monotonic() < deadline, "still pending"
            await asyncio.sleep(0.1)
    assert held.status_code == 200, held.text
    assert "invitation pending" in held.text
    assert held_json.json()["items"][0]["pending"] is True
    # Reading the page queued it: approved, no longer pending, the address gone.
    assert read.status_code == 200 and "invitation pending" not in read.text
    done = await registrations.get(ROOM, registration_id)
    assert done is not None and not done.inviting
    await desk.send_all()
    assert len(desk.smtp.mailbox.wait_for(address, code_mails + 1)) == code_mails + 1
    await desk.send_all()
    assert len(desk.smtp.mailbox.to(address)) == code_mails + 1
