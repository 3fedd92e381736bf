"""Approving registrations when the room's outbox is nearly full (issue 19's second review),
in-process on the memory store with aiosmtpd (tests/integration/test_dashboard_registrations.py's
gate): only as many are approved as the outbox takes, the rest stay waiting, what was done is in
the room's log, and an auto-approval that does not fit leaves the registration waiting."""

from __future__ import annotations

import time
from dataclasses import replace

from gateway.admission.invitations import Invitation
from gateway.admission.outbox import MAX_UNSENT_PER_ROOM
from gateway.admission.registrations import RegistrationState
from gateway.store.records import AuditFacts, AuditKind, Role
from tests.integration.test_dashboard_registrations import (
    BASE,
    ROOM,
    Desk,
    desk,
    json_headers,
    register_many,
)

__all__ = ["desk"]


async def fill_outbox(desk: Desk, room: str, free: int) -> None:
    """Queue invitations (never sent: the gate's sending loop is not running) until the room's
    outbox takes `free` more."""
    queue = desk.gate.invitations
    current = await desk.store.get_room(room)
    assert queue is not None and current is not None
    filler = [
        Invitation(room, f"Filler {i}", f"filler{i}@fill.example", Role.ATTENDEE, "en", "import")
        for i in range(MAX_UNSENT_PER_ROOM - free)
    ]
    for start in range(0, len(filler), 1000):
        await queue.enqueue(current, filler[start : start + 1000], now=time.time())


async def test_approving_more_than_the_outbox_takes_approves_what_fits(desk: Desk) -> None:
    """Catches an approval past the outbox's room leaving everyone "approved, invitation
    pending" with a 409 and nothing in the room's log."""
    await register_many(desk, 3)
    await fill_outbox(desk, ROOM, 2)
    registrations = desk.gate.registrations
    assert registrations is not None
    ids = [r.id for r in (await registrations.page(ROOM, now=time.time())).items]
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        fields = {"csrf": desk.csrf(host), "confirmed": "1", **{f"pick.{rid}": "1" for rid in ids}}
        refused = await host.post(f"{BASE}/approve", data=fields, headers=json_headers())
    assert refused.status_code == 409 and "outbox_full" in refused.text
    after = {r.id: r for r in (await registrations.page(ROOM, now=time.time())).items}
    approved = [rid for rid in ids if after[rid].state is RegistrationState.APPROVED]
    assert len(approved) == 2 and not any(after[rid].inviting for rid in approved)
    (waiting,) = [rid for rid in ids if rid not in approved]
    assert after[waiting].state is RegistrationState.WAITING and not after[waiting].inviting
    facts = [e.facts for e in await desk.store.list_audit(ROOM) if e.action.startswith("approve")]
    assert facts == [AuditFacts(AuditKind.REGISTRATIONS, count=2, refused=1)]
    # The one left waiting is a host's to answer again: denied, here.
    assert await registrations.deny(ROOM, [waiting], "Hilde", time.time()) == 1


async def test_an_auto_approval_the_outbox_cannot_take_waits_for_a_host(desk: Desk) -> None:
    """Catches an auto-approved registrant shown the outbox_full refusal for their code, their
    registration left "approved, invitation pending"."""
    room = await desk.store.get_room(ROOM)
    assert room is not None
    room = replace(room, auto_approve_domains=("uni.example",))
    await desk.store.update_room(room)
    await fill_outbox(desk, ROOM, 0)
    registrations = desk.gate.registrations
    assert registrations is not None
    address = "auto@uni.example"
    started = await registrations.register(
        room, "Auto Person", address, "", "10.9.0.1", time.time()
    )
    await registrations.drain()
    code = desk.smtp.mailbox.wait_for(address, 1)[-1].code()
    confirmed = await registrations.confirm(
        room, started.id, started.secret, code, time.time(), queue=desk.gate.invitations
    )
    assert not confirmed.approved
    assert confirmed.registration.state is RegistrationState.WAITING
    (only,) = (await registrations.page(ROOM, now=time.time())).items
    assert only.state is RegistrationState.WAITING and not only.inviting
