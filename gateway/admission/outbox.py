"""The invitation outbox (`Outbox`, an InvitationQueue): makes each invitation's invite, queues
its e-mail, and sends the queue as the mail server allows, from any replica, each message once.

What the store holds for one invitation (an item, `outbox:item:<id>`) is the batch, the room,
the invite's id, the language, and the address with the link's token *sealed*: AES-GCM under a
key derived from the pseudonym key, the item's id as associated data, so a dump of the store
alone neither shows the address nor gives a working link. Once the e-mail is sent the sealed
part is erased; the item keeps its state and counts for the batch's progress, and the address
lives on only as the keyed hash the `seen` callback keeps (gateway.admission.invitations).

Nothing is half made. An item is written first, *held* (never sent in that state); then its
invite is stored; then the item is rewritten *queued* and put in the queue (`outbox:queue`),
the only place the senders look. An enqueue that stops between those steps leaves a held item
that no sender sees: its invite may be missing, or stored with a token that only the sealed item
knows, so no link to it exists anywhere else; progress counts such an item failed after
`HELD_SECONDS`. A store error in the middle is undone for that item (its invite revoked, the
item deleted) and raised; the items before it are whole and go.

Each room has its queue (`outbox:queue:<room>`, oldest first) of the items due to be sent, and
holds at most `max_unsent_per_room` unsent items: past that an enqueue is refused whole
(OutboxFull, 409), so one room's flood cannot fill the store. The rooms with items to send are in
`outbox:rooms`; a room's batches, newest first, in `outbox:batches:<room>` (what the hosts' page
follows, whoever queued them: the dashboard, an approval, an import). An item waiting to be
tried again is out of its room's queue until its retry time: in `outbox:retrying`, one index for
all rooms, as `<due time in ms>:<item id>:<room>`; each pass puts those that have fallen due back
at the end of their rooms' queues, so items waiting for a retry (a greylisting server's 451) never
stand in front of newer ones, and a pass reads only items it may send.

Sending is fair between rooms: a pass takes items round-robin from the rooms' queues (the rooms
in a new random order each pass), at most what the rate limit may let go in one pass, and reads
only those items, so one room's thousands never hold up another's few. For each item it claims
it for a lease (`claim_once` on the item and its round, a number that grows each time a claimer
lets it go), reads it again, and only then charges the shared rate limit (`[outbox] per_minute`,
`burst`, one limit across replicas), so two replicas reaching for one item spend one charge, not
two. Refused by the limit, the claimer lets the item go (its round raised, so the next claim is
a new one); otherwise only the claimer sends it, and marks it sent or failed well before the
lease ends. Just before writing that mark the sender reads the item again: one revoked or
erased (its room deleted) while its e-mail was with the server keeps what `revoke` or
`forget_room` wrote, so it never regains its address nor returns to the queue (one sent
meanwhile reads "sent", revoked since); and after writing its mark it looks at the invite (and
the room) again, for a revoke or a deletion that came between that read and the write.
A MailFailed is retried after `retry_seconds`, doubled each time up to `retry_max_seconds`;
after `max_attempts` the item is failed, and at once when the server refused it for good (a 5xx
reply to its recipient or its message: `MailFailed.permanent`); an item that can never be sent
(refused for good, its invite or room gone, its seal unreadable) is failed without its address
and link. A replica that dies between the server's acceptance and its mark leaves the item to be
sent again after the lease: at least once then, never twice otherwise.

A batch's hosts may queue its failed items again (`retry_failed`: only those whose address is
still sealed; a sent one's is gone) or revoke the batch whole (`revoke_batch`: the unsent never
go, their sealed parts erased; a sent item revoked keeps state sent and says so). A deleted
room's unsent items are erased at once (`forget_room`), not when a sender comes to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway.admission import sealing
from gateway.admission.calendar import CONTENT_TYPE, FILENAME
from gateway.admission.email_codes import normalise_address
from gateway.admission.invitation_mail import invitation_text, language_of
from gateway.admission.invitations import BatchProgress, Invitation, Queued
from gateway.admission.invites import MAX_LIFETIME_SECONDS, make_invite
from gateway.admission.pipeline import join_plan
from gateway.errors import InvalidInput, MeetgateError, NotFound
from gateway.i18n import N_
from gateway.mail import Attachment, MailFailed, SmtpMailer
from gateway.metrics import Metrics
from gateway.settings import OutboxSettings, Settings
from gateway.store import Store
from gateway.store.records import Invite, Room

log = logging.getLogger("meetgate.outbox")

# An invite made for a meeting whose end is unknown lives this long.
DEFAULT_LIFETIME_SECONDS = 30 * 24 * 3600
# A claimed item is the claimer's this long: far beyond what one SMTP delivery may take.
LEASE_SECONDS = 600.0
# A held item (an enqueue that never finished) counts as failed after this long.
HELD_SECONDS = 300.0
# The longest a sending loop waits before it looks at the queue again (items other replicas
# queued; a retry falling due).
POLL_SECONDS = 5.0
# An enqueue lets the event loop run other work after this many invitations.
YIELD_EVERY = 25
# Items waiting to be tried again one pass puts back in their rooms' queues, at most (more: the
# next pass comes at once).
REQUEUE_PER_PASS = 500
# Messages one replica sends at once.
CONCURRENCY = 4
RATE_KEY = "outbox:send"
# The rooms that have items to send; each room's queue; each room's batches.
ROOMS = "outbox:rooms"
QUEUE = "outbox:queue:"
# The items waiting for their retry time, of every room (see the module's doc).
RETRYING = "outbox:retrying"
BATCHES = "outbox:batches:"
# Unsent items one room may have at once (what an admin's largest import makes).
MAX_UNSENT_PER_ROOM = 5000
CALENDAR_TYPE = f"{CONTENT_TYPE}; method=PUBLISH; charset=UTF-8"
# The items' sealing key's purpose (HKDF info): as items were always sealed, so they still open.
SEAL_PURPOSE = b"meetgate outbox seal"

# An item's states. Held: being made, never sent. Queued: waiting to be sent (or retried).
HELD, QUEUED, SENT, FAILED, REVOKED = "held", "queued", "sent", "failed", "revoked"
_STATES = (HELD, QUEUED, SENT, FAILED, REVOKED)

# Called after each send with the room (as read for the e-mail), the address and the time
# (gateway.admission.registrations.Registrations.remember: "seen before" keeps its keyed hash).
Seen = Callable[[Room, str, float], Awaitable[None]]


class InvitationMailer(Protocol):
    """Delivers one message (gateway.mail.SmtpMailer); raises MailFailed."""

    async def send(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        language: str = "en",
        attachments: Sequence[Attachment] = (),
    ) -> None: ...


class BatchUnknown(NotFound):
    code = "invitation_batch_unknown"
    message = N_("There is no such batch of invitations for this room.")


class InvitationUnknown(NotFound):
    code = "invitation_unknown"
    message = N_("No invitation e-mail was queued for this invite.")


class InvitationSent(MeetgateError):
    status = 409
    code = "invitation_sent"
    title = N_("Already sent")
    message = N_(
        "This invitation was sent already, and its e-mail address is no longer kept: make a new"
        " invite to send the link again."
    )


class InvitationRevoked(MeetgateError):
    status = 410
    code = "invitation_revoked"
    title = N_("Invite no longer works")
    message = N_("This invite was revoked or has expired: make a new one.")


class OutboxFull(MeetgateError):
    status = 409
    code = "outbox_full"
    title = N_("Too many invitations waiting")
    message = N_(
        "This room has too many invitation e-mails waiting to be sent. Wait until more of them"
        " have gone, then try again."
    )


class MeetingOver(InvalidInput):
    code = "meeting_over"
    message = N_("This meeting has ended: there is nothing to invite to.")


@dataclass(frozen=True, slots=True)
class Item:
    """One queued invitation e-mail as stored. `sealed` holds the address and the link's token
    (None once sent); the item is failed when its `attempts` reach `limit`. `round` names the
    lease a sender claims: raised each time a claimer lets the item go, never otherwise."""

    id: str
    batch: str
    room: str
    invite: str
    language: str
    state: str
    created_at: float
    attempts: int = 0
    limit: int = 1
    retry_at: float | None = None
    sealed: str | None = None
    failure: str = ""
    round: int = 0

    def dump(self) -> str:
        return json.dumps(
            {
                "batch": self.batch,
                "room": self.room,
                "invite": self.invite,
                "language": self.language,
                "state": self.state,
                "created_at": self.created_at,
                "attempts": self.attempts,
                "limit": self.limit,
                "retry_at": self.retry_at,
                "sealed": self.sealed,
                "failure": self.failure,
                "round": self.round,
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, item_id: str, raw: str) -> Item | None:
        """The item, or None for a record that does not parse (read as nothing to send)."""
        try:
            data: Any = json.loads(raw)
            item = cls(
                id=item_id,
                batch=str(data["batch"]),
                room=str(data["room"]),
                invite=str(data["invite"]),
                language=str(data["language"]),
                state=str(data["state"]),
                created_at=float(data["created_at"]),
                attempts=int(data["attempts"]),
                limit=int(data["limit"]),
                retry_at=None if data["retry_at"] is None else float(data["retry_at"]),
                sealed=None if data["sealed"] is None else str(data["sealed"]),
                failure=str(data["failure"]),
                round=int(data["round"]),
            )
        except (ValueError, TypeError, KeyError):
            return None
        return item if item.state in _STATES else None

    def waiting(self, now: float) -> bool:
        return self.state == QUEUED or (self.state == HELD and now < self.created_at + HELD_SECONDS)

    def due(self, now: float) -> bool:
        return self.state == QUEUED and (self.retry_at is None or self.retry_at <= now)

    @property
    def revoked(self) -> bool:
        """Revoked: before it was sent (its state), or after (a sent one's `failure` says so)."""
        return self.state == REVOKED or (self.state == SENT and self.failure == REVOKED)

    def stripped(self, state: str, failure: str = "") -> Item:
        """The item without its address and token: what is left once it is done with."""
        return replace(self, state=state, sealed=None, retry_at=None, failure=failure)


def _item_key(item_id: str) -> str:
    return f"outbox:item:{item_id}"


def _batch_key(batch: str) -> str:
    return f"outbox:batch:{batch}"


def _batch_items(batch: str) -> str:
    return f"outbox:items:{batch}"


def _invite_key(invite_id: str) -> str:
    return f"outbox:invite:{invite_id}"


class Sealer:
    """An item's address and token sealed (gateway.admission.sealing), its id bound as associated
    data (a sealed blob copied into another item does not open)."""

    def __init__(self, key: bytes) -> None:
        self._sealer = sealing.Sealer(key, SEAL_PURPOSE)

    def seal(self, item_id: str, address: str, token: str) -> str:
        return self._sealer.seal(item_id, [address, token])

    def open(self, item_id: str, sealed: str) -> tuple[str, str] | None:
        """The address and token, or None if the blob is not this key's for this item."""
        opened = self._sealer.open(item_id, sealed)
        if not isinstance(opened, list) or len(opened) != 2:
            return None
        address, token = opened
        if not isinstance(address, str) or not isinstance(token, str):
            return None
        return address, token


class _Outcome:
    SENT, RETRY, FAILED, SKIPPED, LIMITED = range(5)


class Outbox:
    """The invitation queue (InvitationQueue) and its sending loop (`start`/`aclose`)."""

    def __init__(
        self,
        store: Store,
        settings: OutboxSettings,
        *,
        key: bytes,
        mailer: InvitationMailer,
        public_url: str,
        metrics: Metrics | None = None,
        seen: Seen | None = None,
        admission_ttl_seconds: float = 12 * 3600,
        lease_seconds: float = LEASE_SECONDS,
        concurrency: int = CONCURRENCY,
        max_unsent_per_room: int = MAX_UNSENT_PER_ROOM,
        kept_after_meeting_seconds: float | None = None,
    ) -> None:
        """`kept_after_meeting_seconds` ([registration]'s): an invite made for a room with an
        end time is forgotten that long after it (or at its expiry, if later), as the room's
        registrations are; None: as every invite is."""
        self._store = store
        self._settings = settings
        self._key = key
        self._sealer = Sealer(key)
        self._mailer = mailer
        self._public_url = public_url.rstrip("/")
        self._metrics = metrics
        self._seen = seen
        self._admission_ttl = admission_ttl_seconds
        self._kept_after_meeting = kept_after_meeting_seconds
        self._lease = lease_seconds
        self._concurrency = max(1, concurrency)
        self._max_unsent = max_unsent_per_room
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

        # When this replica should look again: the rate limit's wait, or the next retry.
        self._next_look: float | None = None
        self._random = secrets.SystemRandom()

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, *, metrics: Metrics | None, seen: Seen | None = None
    ) -> Outbox:
        """The outbox a gate's settings describe, sending through [smtp]: the one the gate's
        sending loop runs and the one the admin API only queues into are made alike."""
        return cls(
            store,
            settings.outbox,
            key=settings.admission.pseudonym_key.get_secret_value().encode(),
            mailer=SmtpMailer(settings.smtp),
            public_url=settings.public_url,
            metrics=metrics,
            seen=seen,
            admission_ttl_seconds=settings.admission.ttl_seconds,
            kept_after_meeting_seconds=settings.registration.kept_after_meeting_seconds,
        )

    # Queueing

    def _lifetime(self, room: Room, now: float) -> float:
        if room.ends_at is None:
            return DEFAULT_LIFETIME_SECONDS
        lifetime = room.ends_at + self._admission_ttl - now
        if lifetime < 60:
            raise MeetingOver()
        return min(lifetime, MAX_LIFETIME_SECONDS)

    async def enqueue(
        self, room: Room, invitations: Sequence[Invitation], *, now: float, batch: str | None = None
    ) -> Queued:
        """Make every invitation's invite and queue its e-mail (see the module's doc for the
        order). Everything is checked before anything is written: InvalidInput (a name, an
        address, an invitation for another room), MeetingOver, BatchUnknown, OutboxFull (the
        room's unsent items would pass `max_unsent_per_room`)."""
        lifetime = self._lifetime(room, now)
        made = []
        for number, invitation in enumerate(invitations):
            if number and number % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if invitation.room != room.name:
                raise InvalidInput(N_("An invitation is for another room."))
            address = normalise_address(invitation.address)
            new = make_invite(
                room=room.name,
                name=invitation.name,
                role=invitation.role,
                max_uses=invitation.max_uses,
                lifetime_seconds=lifetime,
                now=now,
            )
            if room.ends_at is not None and self._kept_after_meeting is not None:
                # Nothing of the invitee (their name) outlives the meeting's retention, but the
                # link works until its expiry.
                forget_at = max(room.ends_at + self._kept_after_meeting, new.invite.expires_at)
                new = replace(new, invite=replace(new.invite, forget_at=forget_at))
            made.append((invitation, address, new))
        if made and await self._store.index_size(QUEUE + room.name) + len(made) > self._max_unsent:
            raise OutboxFull()
        kept = self._settings.batch_kept_seconds
        if batch is None:
            batch = secrets.token_hex(8)
            # The room's batches, newest first by the time in front: ids and times, nobody's.
            await self._store.index_add(BATCHES + room.name, f"{now:015.3f}:{batch}", kept)
        else:
            known = await self._store.get_value(_batch_key(batch))
            if known is None or _batch_room(known) != room.name:
                raise BatchUnknown()
        await self._store.put_value(_batch_key(batch), _batch_record(room.name, now), kept)
        ids = []
        for number, (invitation, address, new) in enumerate(made):
            if number and number % YIELD_EVERY == 0:
                # A store that never suspends (memory) would hold the event loop, and every
                # join on it, for the whole list otherwise.
                await asyncio.sleep(0)
            item_id = secrets.token_hex(12)
            item = Item(
                id=item_id,
                batch=batch,
                room=room.name,
                invite=new.invite.id,
                language=invitation.language,
                state=HELD,
                created_at=now,
                limit=self._settings.max_attempts,
                sealed=self._sealer.seal(item_id, address, new.token),
            )
            await self._make(item, new.invite)
            ids.append(new.invite.id)
        log.info(
            "outbox: batch %s: %d invitation(s) queued for room %s", batch, len(ids), room.name
        )
        self._wake.set()
        return Queued(batch=batch, invite_ids=tuple(ids))

    async def _make(self, item: Item, invite: Invite) -> None:
        kept = self._settings.batch_kept_seconds
        store = self._store
        await store.put_value(_item_key(item.id), item.dump(), kept)
        invite_stored = False
        try:
            await store.index_add(_batch_items(item.batch), item.id, kept)
            await store.add_invite(invite, join_plan(invite, self._key))
            invite_stored = True
            await store.put_value(_invite_key(invite.id), item.id, kept)
            await store.put_value(_item_key(item.id), replace(item, state=QUEUED).dump(), kept)
            await self._queue(item.room, item.id)
        except BaseException:
            # Undone as far as the store lets us; what stays is a held item no sender sees.
            with contextlib.suppress(Exception):
                if invite_stored:
                    await store.revoke_invite(invite.id)
                await store.index_remove(QUEUE + item.room, item.id)
                await store.delete_value(_item_key(item.id))
            raise

    async def _queue(self, room: str, item_id: str) -> None:
        """Put the item at the end of its room's queue, and the room among those to send."""
        kept = self._settings.batch_kept_seconds
        await self._store.index_add(QUEUE + room, item_id, kept)
        await self._store.index_add(ROOMS, room, kept)

    async def _unqueue(self, item: Item) -> None:
        """Take the item out of its room's queue and, if it waits for a retry, out of those."""
        await self._store.index_remove(QUEUE + item.room, item.id)
        member = _retry_member(item)
        if member is not None:
            await self._store.index_remove(RETRYING, member)

    async def batches(self, room: str, limit: int) -> list[str]:
        """The ids of the room's newest batches (`limit` at most), newest first."""
        members = sorted(await self._store.index_members(BATCHES + room), reverse=True)
        return [member.partition(":")[2] for member in members[: max(0, limit)]]

    # Progress, revocation, sending again

    async def progress(self, batch: str) -> BatchProgress | None:
        """Counts of the batch (never who); None for a batch unknown or forgotten."""
        record = await self._store.get_value(_batch_key(batch))
        if record is None:
            return None
        now = time.time()
        ids = await self._store.index_members(_batch_items(batch))
        raws = await self._store.get_values([_item_key(i) for i in ids]) if ids else []
        sent = failed = waiting = retryable = revoked = 0
        retry_at: float | None = None
        for item_id, raw in zip(ids, raws, strict=True):
            item = Item.load(item_id, raw) if raw is not None else None
            if item is not None and item.revoked:
                revoked += 1
            if item is None:
                failed += 1
            elif item.state == SENT:
                sent += 1
            elif item.waiting(now):
                waiting += 1
                if item.state == QUEUED and item.retry_at is not None and item.attempts:
                    retry_at = item.retry_at if retry_at is None else min(retry_at, item.retry_at)
            else:
                failed += 1
                retryable += item.state == FAILED and item.sealed is not None
        return BatchProgress(
            batch=batch,
            room=_batch_room(record),
            total=len(ids),
            sent=sent,
            failed=failed,
            waiting=waiting,
            retry_at=retry_at,
            retryable=retryable,
            revoked=revoked,
        )

    # What a batch's hosts do: see its invitations' states, retry the failed, revoke them all

    async def batch_items(self, room: str, batch: str) -> list[tuple[str, str]]:
        """The room's batch's invitations as (invite id, state), never a name or an address:
        "held", "queued", "sent", "failed" or "revoked" (a sent one revoked since reads
        "revoked"). BatchUnknown for a batch of another room, or none."""
        return [
            (item.invite, REVOKED if item.revoked else item.state)
            for item in await self._batch(room, batch)
        ]

    async def retry_failed(self, room: str, batch: str, *, now: float) -> int:
        """Queue again the batch's failed invitations whose address is still sealed, due at
        once with a fresh count of attempts (`resend`); how many. Those refused for good or
        never sendable kept no address, a sent one's is gone, and one whose invite was revoked
        or has expired stays failed. BatchUnknown."""
        count = 0
        for item in await self._batch(room, batch):
            if item.state != FAILED or item.sealed is None:
                continue
            try:
                await self.resend(item.invite, now=now)
            except (InvitationUnknown, InvitationSent, InvitationRevoked):
                continue
            count += 1
        return count

    async def revoke_batch(self, room: str, batch: str) -> int:
        """Revoke every invite of the batch: an e-mail not sent yet never goes (its address and
        token erased, as `revoke` does), a link sent stops working; how many were revoked now.
        An e-mail being handed to the mail server as this runs may still arrive: its link
        refuses. BatchUnknown."""
        count = 0
        for item in await self._batch(room, batch):
            if not item.revoked:
                await self.revoke(item.invite)
                count += 1
        if count:
            log.info("outbox: batch %s: %d invitations revoked", batch, count)
        return count

    async def forget_room(self, room: str) -> int:
        """The room was deleted: its invitations not sent yet never go (each one's address and
        token erased, failed "room deleted"), and its queue and batches are forgotten, so that
        a room made again under the name shows none of them; how many were erased."""
        ids: dict[str, None] = {}
        for member in await self._store.index_members(BATCHES + room):
            batch = member.partition(":")[2]
            ids.update(dict.fromkeys(await self._store.index_members(_batch_items(batch))))
            await self._store.index_remove(BATCHES + room, member)
        ids.update(dict.fromkeys(await self._store.index_members(QUEUE + room)))
        erased = 0
        for item_id in ids:
            item = await self._read(item_id)
            # Held or queued, or failed with its address kept (for a retry): erased.
            unsent = item is not None and (item.state in (HELD, QUEUED) or item.sealed is not None)
            if item is not None and unsent and item.room == room:
                await self._unqueue(item)
                await self._save(item.stripped(FAILED, "room deleted"))
                erased += 1
            await self._store.index_remove(QUEUE + room, item_id)
        await self._store.index_remove(ROOMS, room)
        if erased:
            log.info("outbox: a deleted room's %d unsent invitations were erased", erased)
        return erased

    async def _batch(self, room: str, batch: str) -> list[Item]:
        """The items of the room's batch; BatchUnknown for another room's, or none."""
        record = await self._store.get_value(_batch_key(batch))
        if record is None or _batch_room(record) != room:
            raise BatchUnknown()
        ids = await self._store.index_members(_batch_items(batch))
        raws = await self._store.get_values([_item_key(i) for i in ids]) if ids else []
        items = [Item.load(i, raw) for i, raw in zip(ids, raws, strict=True) if raw is not None]
        return [item for item in items if item is not None and item.room == room]

    async def _item_of_invite(self, invite_id: str) -> Item | None:
        item_id = await self._store.get_value(_invite_key(invite_id))
        return None if item_id is None else await self._read(item_id)

    async def revoke(self, invite_id: str) -> bool:
        """Revoke the invite and, if its e-mail has not gone yet, forget it unsent (its address
        and token erased). False if there was no such invite."""
        revoked = await self._store.revoke_invite(invite_id)
        item = await self._item_of_invite(invite_id)
        if item is not None and item.state in (HELD, QUEUED, FAILED):
            await self._unqueue(item)
            await self._save(item.stripped(REVOKED, "revoked"))
            log.info("outbox: batch %s: an invitation was revoked before it went", item.batch)
        elif item is not None and item.state == SENT and not item.revoked:
            # Its batch's hosts see it revoked (its address went with the e-mail).
            await self._save(replace(item, failure=REVOKED))
        return revoked

    async def resend(self, invite_id: str, *, now: float) -> None:
        """Queue a failed or still waiting invitation's e-mail again, due at once, with a fresh
        count of attempts. InvitationUnknown; InvitationSent (a sent one's address is gone);
        InvitationRevoked (its invite is revoked or expired)."""
        item = await self._item_of_invite(invite_id)
        if item is None:
            raise InvitationUnknown()
        if item.state == SENT:
            raise InvitationSent()
        invite = await self._store.get_invite(invite_id)
        if item.state == REVOKED or item.sealed is None or invite is None:
            raise InvitationRevoked()
        if not invite.is_usable(now):
            raise InvitationRevoked()
        again = replace(
            item,
            state=QUEUED,
            retry_at=None,
            limit=item.attempts + self._settings.max_attempts,
            failure="",
        )
        await self._unqueue(item)
        await self._save(again)
        await self._queue(again.room, again.id)
        self._wake.set()

    async def _save(self, item: Item) -> None:
        """Write the item, and keep its batch as long again from now."""
        kept = self._settings.batch_kept_seconds
        await self._store.put_value(_item_key(item.id), item.dump(), kept)
        await self._store.put_value(_invite_key(item.invite), item.id, kept)
        await self._store.index_add(_batch_items(item.batch), item.id, kept)
        record = await self._store.get_value(_batch_key(item.batch))
        if record is not None:
            await self._store.put_value(_batch_key(item.batch), record, kept)

    # Sending

    async def send_due(self, now: float) -> int:
        """One pass over the queues: put back the items whose retry has fallen due, then send
        what is due, as the rate limit allows, taking items round-robin by room; how many went."""
        next_retry, more_due = await self._requeue_due(now)
        picked, more = await self._pick()
        raws = await self._store.get_values([_item_key(i) for _, i in picked]) if picked else []
        due: list[Item] = []
        for (room, item_id), raw in zip(picked, raws, strict=True):
            item = Item.load(item_id, raw) if raw is not None else None
            if item is None or item.state != QUEUED:
                # Done with (or gone): out of the queue.
                await self._store.index_remove(QUEUE + room, item_id)
            elif item.due(now):
                due.append(item)
            elif item.retry_at is not None:
                # Queued before retries were kept apart, or put back by a replica whose clock
                # runs ahead: apart until it is due.
                await self._wait_for_retry(item)
                next_retry = item.retry_at if next_retry is None else min(next_retry, item.retry_at)
        pending = iter(due)
        sent = 0
        limited: float | None = None
        errors: list[Exception] = []

        async def work() -> None:
            nonlocal sent, limited
            for item in pending:
                if limited is not None or errors:
                    return
                try:
                    outcome, wait = await self._attempt(item, now)
                except Exception as exc:
                    errors.append(exc)
                    return
                if outcome == _Outcome.SENT:
                    sent += 1
                elif outcome == _Outcome.LIMITED:
                    limited = wait

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._concurrency, len(due))):
                group.create_task(work())
        if limited is not None:
            self._next_look = time.time() + limited
        elif (more and picked) or more_due:
            # Items this pass did not read or put back may be due: the next pass comes at once.
            self._next_look = time.time()
        else:
            self._next_look = None if next_retry is None else time.time() + (next_retry - now)
        if errors:
            raise errors[0]
        return sent

    async def _requeue_due(self, now: float) -> tuple[float | None, bool]:
        """Put the items whose retry has fallen due back at the end of their rooms' queues,
        soonest due first, `REQUEUE_PER_PASS` at most; the next retry time of those left, and
        whether some due ones were left for the next pass."""
        entries: list[tuple[float, str, str, str]] = []
        for member in await self._store.index_members(RETRYING):
            entry = _retry_entry(member)
            if entry is None:
                await self._store.index_remove(RETRYING, member)
            else:
                entries.append((*entry, member))
        entries.sort()
        due = [entry for entry in entries if entry[0] <= now]
        for _, item_id, room, member in due[:REQUEUE_PER_PASS]:
            # Queued first, then taken from the retries: a stop between leaves it in both (its
            # entry put back again, harmlessly), never in neither.
            await self._queue(room, item_id)
            await self._store.index_remove(RETRYING, member)
        if len(due) > REQUEUE_PER_PASS:
            return None, True
        return (entries[len(due)][0] if len(entries) > len(due) else None), False

    async def _wait_for_retry(self, item: Item) -> None:
        """Out of its room's queue, among those waiting for their retry time."""
        member = _retry_member(item)
        if member is not None:
            await self._store.index_add(RETRYING, member, self._settings.batch_kept_seconds)
            await self._store.index_remove(QUEUE + item.room, item.id)

    async def _pick(self) -> tuple[list[tuple[str, str]], bool]:
        """The items one pass looks at, as (room, item id): round-robin from the rooms' queues
        (oldest first in each, the rooms in a new random order), no more than the rate limit may
        let go in one pass; and whether any queued item was left out."""
        budget = max(self._concurrency, self._settings.burst)
        rooms = await self._store.index_members(ROOMS)
        self._random.shuffle(rooms)
        queues: list[tuple[str, list[str]]] = []
        for room in rooms:
            ids = await self._store.index_members(QUEUE + room)
            if ids:
                queues.append((room, ids))
            else:
                await self._store.index_remove(ROOMS, room)
        picked: list[tuple[str, str]] = []
        depth = 0
        while len(picked) < budget and any(depth < len(ids) for _, ids in queues):
            for room, ids in queues:
                if depth < len(ids) and len(picked) < budget:
                    picked.append((room, ids[depth]))
            depth += 1
        return picked, sum(len(ids) for _, ids in queues) > len(picked)

    async def _read(self, item_id: str) -> Item | None:
        raw = await self._store.get_value(_item_key(item_id))
        return Item.load(item_id, raw) if raw is not None else None

    async def _attempt(self, item: Item, now: float) -> tuple[int, float]:
        """Claim the due `item` as `send_due` read it, then send it unless the claim or a read
        under it says another sender has it (or has done with it) since."""
        store = self._store
        if not await store.claim_once(f"outbox:lease:{item.id}:{item.round}", self._lease):
            return _Outcome.SKIPPED, 0.0
        # Read again under the claim: another replica may have finished it meanwhile.
        claimed = await self._read(item.id)
        if claimed is None or not claimed.due(now) or claimed.round != item.round:
            return _Outcome.SKIPPED, 0.0
        per_second = self._settings.per_minute / 60
        decision = await store.rate_limit(RATE_KEY, per_second, self._settings.burst)
        if not decision.allowed:
            # Let it go for a later pass, of any replica: the next claim is of the next round.
            await self._mark(replace(claimed, round=claimed.round + 1))
            return _Outcome.LIMITED, decision.retry_after
        return await self._deliver(replace(claimed, round=claimed.round + 1), now), 0.0

    async def _mark(self, marked: Item) -> bool:
        """Write the sender's mark on its claimed item, unless the item was revoked or erased
        (its room deleted) since the sender read it: what `revoke` or `forget_room` wrote stands
        then, and False. A revoke or a deletion that comes between this read and the write is
        caught after it: a mark that keeps the address is undone (the address erased, False),
        a sent one says it was revoked since."""
        current = await self._read(marked.id)
        if current is None or current.state != QUEUED or current.sealed is None:
            return False
        await self._save(marked)
        if marked.sealed is None and marked.state != SENT:
            return True
        invite = await self._store.get_invite(marked.invite)
        revoked = invite is None or invite.revoked
        if marked.state == SENT:
            if revoked:
                await self._save(replace(marked, failure=REVOKED))
            return True
        if invite is None:
            undone = marked.stripped(FAILED, "invite revoked or expired")
        elif invite.revoked:
            undone = marked.stripped(REVOKED, "revoked")
        elif await self._store.get_room(marked.room) is None:
            undone = marked.stripped(FAILED, "room deleted")
        else:
            return True
        await self._unqueue(marked)
        await self._save(undone)
        return False

    async def _deliver(self, item: Item, now: float) -> int:
        invite = await self._store.get_invite(item.invite)
        room = await self._store.get_room(item.room)
        opened = self._sealer.open(item.id, item.sealed) if item.sealed is not None else None
        if invite is None or not invite.is_usable(now):
            return await self._give_up(item, "invite revoked or expired")
        if room is None:
            return await self._give_up(item, "room gone")
        if opened is None:
            # Sealed under another pseudonym key, or tampered with.
            return await self._give_up(item, "sealed item unreadable")
        address, token = opened
        language = language_of(item.language)
        text = invitation_text(
            language,
            room_title=room.title or room.name,
            name=invite.name,
            role=invite.role,
            link=f"{self._public_url}/j/{token}",
            max_uses=invite.max_uses,
            starts_at=room.starts_at,
            ends_at=room.ends_at,
            uid=f"{invite.id}@meetgate",
            now=now,
        )
        files: tuple[Attachment, ...] = ()
        if text.calendar is not None:
            files = ((FILENAME, CALENDAR_TYPE, text.calendar),)
        try:
            await self._mailer.send(
                address, text.subject, text.body, language=language.tag, attachments=files
            )
        except MailFailed as exc:
            reason = _scrubbed(exc.reason, address, token)
            if exc.permanent:
                # Refused for good (the recipient unknown, the message refused): no retry helps.
                item = replace(item, limit=item.attempts + 1)
            return await self._failed_try(item, now, reason, permanent=exc.permanent)
        await self._store.index_remove(QUEUE + item.room, item.id)
        if self._metrics is not None:
            self._metrics.invitations_sent.inc()
        sent = replace(item.stripped(SENT), attempts=item.attempts + 1)
        if not await self._mark(sent):
            await self._sent_after_all(sent)
            return _Outcome.SENT
        log.debug("outbox: batch %s: an invitation was sent", item.batch)
        if self._seen is not None:
            try:
                await self._seen(room, address, now)
            except Exception as exc:
                # The e-mail went: only "seen before" misses it. Never the text (an address).
                log.warning(
                    "outbox: batch %s: seen not recorded: %s", item.batch, type(exc).__name__
                )
        return _Outcome.SENT

    async def _sent_after_all(self, sent: Item) -> None:
        """The e-mail went, but its item was revoked (or its room deleted) while it was with
        the server: a revoked one reads "sent", revoked since (its link refuses); an erased
        one stays as `forget_room` left it. Its invitee is not remembered as seen."""
        log.info("outbox: batch %s: an invitation was revoked while it was being sent", sent.batch)
        current = await self._read(sent.id)
        if current is not None and current.state == REVOKED:
            await self._save(replace(sent, failure=REVOKED))

    async def _failed_try(
        self, item: Item, now: float, reason: str, *, permanent: bool = False
    ) -> int:
        attempts = item.attempts + 1
        if attempts >= item.limit:
            await self._store.index_remove(QUEUE + item.room, item.id)
            failed = replace(item, state=FAILED, attempts=attempts, retry_at=None, failure=reason)
            if permanent:
                # Never to be sent: its address and link are kept no longer.
                failed = replace(item.stripped(FAILED, reason), attempts=attempts)
            if not await self._mark(failed):
                return _Outcome.SKIPPED
            log.warning(
                "outbox: batch %s: an invitation failed after %d attempts: %s",
                item.batch,
                attempts,
                reason,
            )
            if self._metrics is not None:
                self._metrics.invitations_failed.inc()
            return _Outcome.FAILED
        settings = self._settings
        wait = min(settings.retry_seconds * 2 ** (attempts - 1), settings.retry_max_seconds)
        retrying = replace(item, attempts=attempts, retry_at=now + wait, failure=reason)
        if not await self._mark(retrying):
            return _Outcome.SKIPPED
        log.info(
            "outbox: batch %s: sending failed (%s), attempt %d, retried in %.0f s",
            item.batch,
            reason,
            attempts,
            wait,
        )
        # Apart until its retry time: the items behind it come first meanwhile.
        await self._wait_for_retry(retrying)
        if self._metrics is not None:
            self._metrics.invitations_retried.inc()
        return _Outcome.RETRY

    async def _give_up(self, item: Item, reason: str) -> int:
        await self._store.index_remove(QUEUE + item.room, item.id)
        # It can never be sent (its invite or room gone, its seal unreadable): its address and
        # link are kept no longer.
        if not await self._mark(item.stripped(FAILED, reason)):
            return _Outcome.SKIPPED
        log.warning("outbox: batch %s: an invitation was not sent: %s", item.batch, reason)
        if self._metrics is not None:
            self._metrics.invitations_failed.inc()
        return _Outcome.FAILED

    # The loop

    async def start(self) -> None:
        """Begin sending in the background (once; again after `aclose`)."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        """Stop sending. A message being handed to the server finishes in its thread; its item
        is sent again after the lease if its mark was not written."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            self._wake.clear()
            try:
                await self.send_due(time.time())
                backoff = 1.0
                wait = POLL_SECONDS
                if self._next_look is not None:
                    wait = min(wait, max(0.05, self._next_look - time.time()))
            except MeetgateError as exc:
                log.warning("outbox: sending paused: %s", exc.code)
                wait, backoff = backoff, min(backoff * 2, 30.0)
            except Exception as exc:
                log.error("outbox: sending paused: %s", type(exc).__name__)
                wait, backoff = backoff, min(backoff * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()


def _batch_record(room: str, now: float) -> str:
    return json.dumps({"room": room, "created_at": now}, separators=(",", ":"))


def _batch_room(record: str) -> str:
    try:
        data: Any = json.loads(record)
        return str(data["room"])
    except (ValueError, TypeError, KeyError):
        return ""


def _retry_member(item: Item) -> str | None:
    """The item's entry among those waiting for their retry time; None if it has no retry
    time. Its due time in whole milliseconds, rounded up: never due before the item is."""
    if item.retry_at is None:
        return None
    return f"{math.floor(item.retry_at * 1000) + 1}:{item.id}:{item.room}"


def _retry_entry(member: str) -> tuple[float, str, str] | None:
    """(due time, item id, room) of a retry entry; None for one that does not parse."""
    due_ms, _, rest = member.partition(":")
    item_id, _, room = rest.partition(":")
    try:
        due_at = int(due_ms) / 1000
    except ValueError:
        return None
    return (due_at, item_id, room) if item_id and room else None


def _scrubbed(reason: str, address: str, token: str) -> str:
    """The mailer keeps addresses out of its reasons; scrubbed here all the same."""
    return reason.replace(address, "[address]").replace(token, "[link]")
