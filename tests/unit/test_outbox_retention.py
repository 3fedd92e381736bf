"""What the outbox's invites keep of their invitee, and for how long: an invite made for a room with
an end time is forgotten (its invitee's name with it) with the meeting's retention, `[registration]
kept_after_meeting_seconds` after its end, or at the invite's own expiry if that is later; never
the day after its expiry every other invite is kept (INVITE_KEPT_AFTER_EXPIRY)."""

from __future__ import annotations

import secrets
import time

import pytest

from gateway.admission.invitations import Invitation
from gateway.admission.outbox import Outbox
from gateway.mail import SmtpMailer
from gateway.settings import OutboxSettings, SmtpSettings
from gateway.store import INVITE_KEPT_AFTER_EXPIRY, invite_kept_seconds
from gateway.store.memory import MemoryStore
from gateway.store.records import Role, Room

HOUR = 3600.0
DAY = 24 * HOUR
ADMISSION_TTL = 12 * HOUR
ENDS = time.time() + 7 * DAY


async def invite_made(ends_at: float | None, kept_after_meeting: float | None) -> tuple[float, ...]:
    """The invite the outbox makes for one invitation: its expiry, its forget time (or -1) and
    how long a store keeps it, each from the meeting's end (or from now, without one)."""
    store = MemoryStore()
    room = Room(
        name="assembly-" + secrets.token_hex(3),
        title="Assembly",
        created_at=time.time(),
        ends_at=ends_at,
    )
    await store.create_room(room)
    outbox = Outbox(
        store,
        OutboxSettings(),
        key=b"k" * 32,
        # Never sends: nothing here starts the sending loop.
        mailer=SmtpMailer(SmtpSettings(host="127.0.0.1")),
        public_url="https://meet.example.org",
        admission_ttl_seconds=ADMISSION_TTL,
        kept_after_meeting_seconds=kept_after_meeting,
    )
    now = time.time()
    person = Invitation(
        room=room.name,
        name="Ada Lovelace",
        address="ada@example.org",
        role=Role.ATTENDEE,
        language="en",
        origin="registration",
    )
    (invite_id,) = (await outbox.enqueue(room, [person], now=now)).invite_ids
    invite = await store.get_invite(invite_id)
    assert invite is not None
    since = ends_at if ends_at is not None else now
    forget = -1.0 if invite.forget_at is None else round(invite.forget_at - since)
    kept = round(now + invite_kept_seconds(invite, now) - since)
    return round(invite.expires_at - since), forget, kept


@pytest.mark.parametrize(
    ("kept_after_meeting", "expected"),
    [
        # The default: the name goes with the registrations, a day after the end.
        (DAY, (ADMISSION_TTL, DAY, DAY)),
        # Kept shorter than the admission time: the link works to its expiry, then goes.
        (0.0, (ADMISSION_TTL, ADMISSION_TTL, ADMISSION_TTL)),
        (2 * HOUR, (ADMISSION_TTL, ADMISSION_TTL, ADMISSION_TTL)),
        # Not told (an outbox made without it): as every invite.
        (None, (ADMISSION_TTL, -1, ADMISSION_TTL + INVITE_KEPT_AFTER_EXPIRY)),
    ],
    ids=["a-day", "nothing", "two-hours", "not-told"],
)
async def test_an_invite_for_a_meeting_goes_with_its_retention(
    kept_after_meeting: float | None, expected: tuple[float, float, float]
) -> None:
    assert await invite_made(ENDS, kept_after_meeting) == expected


async def test_an_invite_for_a_room_without_an_end_is_kept_as_every_invite() -> None:
    expires, forget, kept = await invite_made(None, DAY)
    assert forget == -1
    assert kept == expires + INVITE_KEPT_AFTER_EXPIRY
