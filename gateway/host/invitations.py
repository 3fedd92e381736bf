"""What a room's hosts do about who is invited (issue 19): review the registrations a page at a
time, invite one person, import a list, follow the sending of each batch of invitations.

No HTTP here (gateway/host/invitation_pages.py is the dashboard's side). Every call first checks
that the actor is a live host of the room through HostDesk, and nothing here returns a list of
addresses: the registrations' pages show a domain, the batches counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.admission.email_codes import normalise_address
from gateway.admission.invitations import BatchProgress, Invitation, InvitationQueue
from gateway.admission.invite_import import RowProblem, read_invite_list
from gateway.admission.invites import make_invite, validate_display_name
from gateway.admission.outbox import MeetingOver, OutboxFull
from gateway.admission.registrations import Registration, RegistrationPage, Registrations
from gateway.errors import InvalidInput, MeetgateError, RateLimited
from gateway.host.actions import Actor, HostDesk, MeetingSettings
from gateway.i18n import N_
from gateway.store import Store
from gateway.store.records import Admission, AuditKind, Role, Room

log = logging.getLogger("meetgate.host")

# Registrations on one page of the dashboard.
PAGE_SIZE = 25
# "All matching the filter" answers at most this many at once (a room holds at most
# [registration] max_per_room; the host presses again for the rest, told how many are left).
MOST_AT_ONCE = 2000
# A link shown to a host (no address given, or "show links") works this long when the meeting
# has no end time; with one, until the end and a day after.
LINK_LIFETIME_SECONDS = 30 * 86_400
AFTER_MEETING_SECONDS = 86_400
# Batches of a room the dashboard follows (the newest first).
BATCHES_SHOWN = 10
# What a room's hosts may invite, together, as (per second, burst): people one at a time (by
# e-mail or a link), and lists imported. The outbox caps what waits to be sent besides.
HOST_RATES = {"invite": (120 / 3600, 30), "import": (6 / 3600, 3)}


class SendingUnavailable(MeetgateError):
    """No mail server is configured: invitations cannot go by e-mail."""

    status = 409
    code = "sending_unavailable"
    title = N_("Invitations cannot be sent by e-mail")
    message = N_(
        "Meetgate has no mail server configured, so invitations cannot be sent by e-mail."
        " Leave the address empty (or choose 'show links') and give the links yourself, or ask"
        " the admin to configure [smtp]."
    )


class RegistrationUnavailable(MeetgateError):
    """The gate was started without registrations (no mail server: codes and invitations are
    mail)."""

    status = 409
    code = "registration_unavailable"
    title = N_("Registration is not available")
    message = N_(
        "Registration needs a mail server (confirmation codes and invitations go by e-mail),"
        " and Meetgate has none configured. Ask the admin to configure [smtp]."
    )


@dataclass(frozen=True, slots=True)
class Answered:
    """What approving or denying registrations did: how many changed, how many of those asked
    were left as they were (answered already, or gone), the invitations' batch (approving), and
    how many matching the filter are still waiting (past MOST_AT_ONCE)."""

    count: int
    unchanged: int
    batch: str | None = None
    left: int = 0


@dataclass(frozen=True, slots=True)
class Link:
    """A personal link made for a host to hand over themselves: shown once, never stored."""

    name: str
    role: Role
    url: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Imported:
    """What importing a list made: a batch of invitations to send, or links to show, and the
    lines refused."""

    created: int
    problems: tuple[RowProblem, ...]
    batch: str | None = None
    links: tuple[Link, ...] = ()


class InvitationDesk:
    """The hosts' registrations, invitations and sending. `registrations` and `queue` are None
    when the gate has no mail server: the review and every e-mail are refused then, and links
    are still made."""

    def __init__(
        self,
        store: Store,
        desk: HostDesk,
        *,
        public_url: str,
        registrations: Registrations | None = None,
        queue: InvitationQueue | None = None,
        batch_kept_seconds: float = 7 * 86_400,
    ) -> None:
        self._store = store
        self._desk = desk
        self._public_url = public_url.rstrip("/")
        self._registrations = registrations
        self._queue = queue
        self._batch_kept = batch_kept_seconds

    @property
    def sends_mail(self) -> bool:
        return self._queue is not None

    @property
    def reviews(self) -> bool:
        return self._registrations is not None

    async def room(self, actor: Actor, room: str, now: float) -> Room:
        """The room, if `actor` is its host."""
        return await self._desk.room(actor, room, now)

    async def set_meeting(
        self, actor: Actor, room: str, meeting: MeetingSettings, now: float
    ) -> bool:
        """Set the room's registration and the meeting's time; False if it already has them."""
        updated = await self._desk.set_meeting(actor, room, meeting, now)
        if updated is None:
            return False
        if self._registrations is not None:
            # Its registrations are kept as the meeting's time says now (an end moved earlier
            # shortens what is kept; one already past drops them).
            await self._registrations.retime(updated, now)
        return True

    # Registrations

    async def registrations(
        self,
        actor: Actor,
        room: str,
        *,
        state: str | None,
        flag: str | None,
        offset: int,
        now: float,
    ) -> RegistrationPage:
        """One page (PAGE_SIZE) of the room's registrations in `state`, with `flag`; the
        invitations an approval left pending are queued first (a bounded number)."""
        current = await self._desk.current(actor, room, now)
        reviewing = self._reviewing()
        if self._queue is not None:
            await resume_pending(reviewing, current, self._queue, now)
        return await reviewing.page(
            room, state=state, flag=flag, offset=max(0, offset), limit=PAGE_SIZE, now=now
        )

    async def answer(
        self,
        actor: Actor,
        room: str,
        ids: Sequence[str],
        *,
        approve: bool,
        now: float,
        flag: str | None = None,
        every_waiting: bool = False,
    ) -> Answered:
        """Approve or deny the waiting registrations `ids`, or (`every_waiting`) every waiting
        one with `flag` (None: every waiting one), at most MOST_AT_ONCE. Approving queues each
        one's invitation in one batch; OutboxFull (logged with how many were approved) once the
        room's outbox takes no more, the rest left waiting."""
        current = await self._desk.current(actor, room, now)
        reviewing = self._reviewing()
        if approve and self._queue is None:
            raise SendingUnavailable()
        wanted = list(dict.fromkeys(ids))
        left = 0
        if every_waiting:
            wanted, left = await self._every_waiting(room, flag, now)
        if not wanted:
            return Answered(0, 0, left=left)
        by = _actor_name(actor)
        if not approve:
            count = await reviewing.deny(room, wanted, by, now)
            await self._desk.log_count(
                actor,
                room,
                "deny registrations",
                count,
                now,
                kind=AuditKind.REGISTRATIONS,
                refused=len(wanted) - count,
            )
            return Answered(count, len(wanted) - count, left=left)
        if current.ends_at is not None and current.ends_at <= now:
            # Approving takes each address out of its registration for its invitation: checked
            # first, so that none is taken for an invitation the outbox would refuse.
            raise MeetingOver()
        queue = self._queue
        if queue is None:
            raise SendingUnavailable()
        # Approved and invited in one step: nobody is approved without their invitation queued.
        approved = await reviewing.approve(room, wanted, by, now, queue=queue)
        invitations = approved.ids
        batch = None
        if approved.batch is not None:
            batch = await self._keep_batch(current, approved.batch, len(invitations), now)
        await self._desk.log_count(
            actor,
            room,
            "approve registrations",
            len(invitations),
            now,
            kind=AuditKind.REGISTRATIONS,
            refused=len(wanted) - len(invitations),
        )
        if approved.full:
            # Logged first, what was done: the rest wait, and the host is told why.
            raise OutboxFull()
        return Answered(len(invitations), len(wanted) - len(invitations), batch, left)

    async def _every_waiting(
        self, room: str, flag: str | None, now: float
    ) -> tuple[list[str], int]:
        # One scan of the room's registrations, not a page read (each listing the room's
        # invites and admissions) per hundred.
        ids, total = await self._reviewing().waiting_ids(
            room, flag=flag, most=MOST_AT_ONCE, now=now
        )
        return ids, max(0, total - len(ids))

    def _reviewing(self) -> Registrations:
        if self._registrations is None:
            raise RegistrationUnavailable()
        return self._registrations

    # Invitations

    async def invite_one(
        self,
        actor: Actor,
        room: str,
        *,
        name: str,
        address: str,
        role: Role,
        language: str,
        now: float,
    ) -> Link | str:
        """Invite one person: with an address, their invitation goes by e-mail (the batch's id
        is returned); without, a personal link for the host to hand over (shown once)."""
        current = await self._desk.current(actor, room, now)
        name = validate_display_name(name)
        await self._charge("invite", current)
        if address.strip():
            if self._queue is None:
                raise SendingUnavailable()
            invitation = Invitation(
                room=current.name,
                name=name,
                address=normalise_address(address),
                role=role,
                language=language,
                origin="host",
            )
            batch = await self._enqueue(current, [invitation], now)
            await self._desk.log_count(actor, room, "invite by e-mail", 1, now)
            return batch
        link = await self._make_link(current, name, role, now)
        await self._desk.log_count(actor, room, "invite with a link", 1, now)
        return link

    async def import_list(
        self, actor: Actor, room: str, data: bytes, *, send: bool, language: str, now: float
    ) -> Imported:
        """Read a list (CSV: name, e-mail, optional role) and invite each good line: by e-mail
        in one batch (`send`), or as links for the host to hand over. Refused lines are told by
        number and reason. Nothing is made unless the file as a whole could be read."""
        current = await self._desk.current(actor, room, now)
        if send and self._queue is None:
            raise SendingUnavailable()
        await self._charge("import", current)
        read = read_invite_list(data)
        problems = read.problems
        if not read.invitees:
            return Imported(0, problems)
        if send:
            invitations = [
                Invitation(
                    room=current.name,
                    name=row.name,
                    address=row.address,
                    role=row.role,
                    language=language,
                    origin="import",
                )
                for row in read.invitees
            ]
            batch = await self._enqueue(current, invitations, now)
            await self._desk.log_count(
                actor, room, "import and send", len(invitations), now, refused=len(problems)
            )
            return Imported(len(invitations), problems, batch=batch)
        links = [
            replace(await self._make_link(current, row.name, row.role, now), line=row.line)
            for row in read.invitees
        ]
        await self._desk.log_count(
            actor, room, "import as links", len(links), now, refused=len(problems)
        )
        return Imported(len(links), problems, links=tuple(links))

    async def _charge(self, kind: str, room: Room) -> None:
        """Charge the room's hosts for one invitation or one list (HOST_RATES); RateLimited."""
        per_second, burst = HOST_RATES[kind]
        decision = await self._store.rate_limit(f"host:{kind}:{room.name}", per_second, burst)
        if not decision.allowed:
            raise RateLimited(
                decision.retry_after,
                N_(
                    "This room's hosts have invited many people in a short time. Please wait,"
                    " then try again."
                ),
            )

    async def _make_link(self, room: Room, name: str, role: Role, now: float) -> Link:
        lifetime = float(LINK_LIFETIME_SECONDS)
        if room.ends_at is not None and room.ends_at > now:
            lifetime = min(room.ends_at + AFTER_MEETING_SECONDS - now, lifetime * 12)
        made = make_invite(
            room=room.name,
            name=name,
            role=role,
            max_uses=1,
            lifetime_seconds=max(60.0, lifetime),
            now=now,
        )
        await self._store.add_invite(made.invite)
        return Link(made.invite.name, role, f"{self._public_url}/j/{made.token}")

    async def _enqueue(self, room: Room, invitations: Sequence[Invitation], now: float) -> str:
        assert self._queue is not None
        queued = await self._queue.enqueue(room, invitations, now=now)
        return await self._keep_batch(room, queued.batch, len(invitations), now)

    async def _keep_batch(self, room: Room, batch: str, count: int, now: float) -> str:
        """Log a batch queued for the room (the outbox keeps the room's batches for the page)."""
        log.info("host queued invitations: batch %s, %d", batch, count)
        return batch

    # Sending

    async def batches(self, actor: Actor, room: str, now: float) -> list[BatchProgress]:
        """How the room's newest batches of invitations are going (BATCHES_SHOWN at most)."""
        await self._desk.current(actor, room, now)
        if self._queue is None:
            return []
        found: list[BatchProgress] = []
        # The outbox keeps the room's batches, whoever queued them (this page, an approval on
        # the registration page or the admin API, an import).
        for batch in await self._queue.batches(room, BATCHES_SHOWN):
            progress = await self._queue.progress(batch)
            if progress is not None and progress.room == room:
                found.append(progress)
        return found

    async def retry_failed(self, actor: Actor, room: str, batch: str, now: float) -> int:
        """Send the batch's failed invitations again (those whose address is still kept), logged
        by how many; InvalidInput for a batch of another room or none."""
        await self.batch(actor, room, batch, now)
        queue = self._sending()
        count = await queue.retry_failed(room, batch, now=now)
        await self._desk.log_count(actor, room, "resend invitations", count, now)
        return count

    async def revoke_batch(self, actor: Actor, room: str, batch: str, now: float) -> int:
        """Revoke every invitation of the batch (those not sent never go, the links sent stop
        working), logged by how many; InvalidInput for a batch of another room or none."""
        await self.batch(actor, room, batch, now)
        queue = self._sending()
        count = await queue.revoke_batch(room, batch)
        await self._desk.log_count(actor, room, "revoke invitations", count, now)
        return count

    def _sending(self) -> InvitationQueue:
        if self._queue is None:
            raise SendingUnavailable()
        return self._queue

    async def batch(self, actor: Actor, room: str, batch: str, now: float) -> BatchProgress:
        """One batch of this room; InvalidInput for a batch of another room or none."""
        await self._desk.current(actor, room, now)
        progress = None if self._queue is None else await self._queue.progress(batch)
        if progress is None or progress.room != room:
            raise InvalidInput(N_("There is no such batch of invitations in this room."))
        return progress


async def resume_pending(
    registrations: Registrations, room: Room, queue: InvitationQueue, now: float
) -> None:
    """Queue what approvals of `room` left pending (Registrations.resume), for a reading of its
    registrations: a refusal (the outbox full, the store failing) leaves them pending for the
    next reading or approval, and the reading goes on."""
    try:
        resumed = await registrations.resume(room, now, queue=queue)
    except MeetgateError as exc:
        log.warning("pending invitations of room %s not queued: %s", room.name, exc.code)
        return
    if resumed.ids:
        log.info("pending invitations queued: batch %s, %d", resumed.batch, len(resumed.ids))


def registration_flags(item: Registration) -> list[str]:
    """The flags a registration carries, by their names on the page's filter."""
    return [flag for flag in FLAGS if flag in item.flags]


# The flags a host filters by, in the order the page shows them.
FLAGS = ("seen_address", "seen_domain", "looks_like", "burst", "updated")
STATES = ("waiting", "approved", "denied")


def _actor_name(actor: Actor) -> str:
    return actor.name if isinstance(actor, Admission) else "admin"
