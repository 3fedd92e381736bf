"""The admin API's registrations (issue 19): a room's registrations a page at a time, and
approving or denying them, by id (or a unique prefix of one) or by a filter. Mounted by
gateway/admin_api.py (`create_admin_app`), behind the same token and error answers.

Nothing here becomes a list to leak: a page holds at most 100 registrations, and no answer
carries an address (its domain stands for it); there is no export. Approving hands the
approved people's invitations to the InvitationQueue (the outbox the gate sends invitations
with, the same one an import uses) and answers the batch whose progress
`GET /api/v1/outbox/{batch}` tells. The room's log keeps counts of what the admin did, never a
name or an address; reading the registrations is logged as reading the roster is (once per room
in 5 minutes per replica).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.admission.invitations import InvitationQueue
from gateway.admission.registrations import (
    MAX_PAGE,
    Registration,
    RegistrationFlag,
    Registrations,
    RegistrationState,
)
from gateway.errors import MeetgateError
from gateway.host.actions import ADMIN, ADMIN_NAME, HostDesk
from gateway.host.invitations import resume_pending
from gateway.i18n import N_
from gateway.store import Store
from gateway.store.records import AuditEntry, AuditFacts, AuditKind, Room

# The shortest id prefix taken: 8 hex digits tell apart some 4 billion ids, and a room keeps at
# most [registration] max_per_room (2,000 by default).
MIN_PREFIX = 8
ID_CHARS = 32
# Ids one call answers; a filter answers every registration it matches.
MAX_IDS = 1000
DEFAULT_PAGE = 50
# A reading of a room's registrations is logged at most this often per room and replica.
READING_LOGGED_SECONDS = 300.0

STATES = tuple(state.value for state in RegistrationState)
FLAGS = tuple(flag.value for flag in RegistrationFlag)


class RegistrationsUnavailable(MeetgateError):
    """Registrations asked of a gate that takes none: without an SMTP server nobody can confirm
    an address, and no invitation could be sent."""

    status = 409
    code = "mail_not_configured"
    title = N_("E-mail is not configured")
    message = N_(
        "This Meetgate has no SMTP server configured ([smtp] host), so it takes no"
        " registrations and sends no invitations."
    )


class MeetingEnded(MeetgateError):
    status = 409
    code = "meeting_over"
    title = N_("The meeting is over")
    message = N_(
        "This meeting has ended: there is nothing to invite to (its registrations are kept only"
        " a while after its end)."
    )


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ResemblanceOut(BaseModel):
    """Whom a look-alike's name resembles: a name of the room's (its hosts see it anyway)."""

    name: str
    kind: Literal["host", "participant", "registrant"] = Field(
        description="A host's name (on a host invite or in the room), a participant's in the room"
        " now, or another registrant's of the room"
    )


class RegistrationOut(BaseModel):
    """One registration as a host sees it: the address's domain, never the address."""

    id: str = Field(description="What approve and deny take (or a unique prefix of 8 or more)")
    name: str = Field(description="The name the person gave (their invitation's)")
    domain: str = Field(description="The confirmed address's domain")
    note: str = Field(description="The person's note to the organisers; may be empty")
    state: Literal["waiting", "approved", "denied"]
    flags: list[str] = Field(
        description="What may help judge it: seen_address, seen_domain (admitted to this room or"
        " its series before), looks_like (a name like a host's, a participant's or another"
        " registrant's), burst (one of many from one network at once), updated (sent again)"
    )
    language: str = Field(description="The language the person registered in (a tag)")
    created_at: float
    updated_at: float
    answered_at: float | None = Field(description="When it was approved or denied")
    invitation_pending: bool = Field(
        default=False,
        description="Approved, its invitation not yet queued (an approval stopped half-way):"
        " the address is kept until it is, and reading the room's registrations queues it",
    )
    resembles: ResemblanceOut | None = Field(
        default=None,
        description="With looks_like: whom the name looks like, when a name of the room's"
        " still does",
    )


class RegistrationCounts(BaseModel):
    states: dict[str, int] = Field(description="Every registration of the room, by state")
    flags: dict[str, int] = Field(
        description="Those in the asked state (every state without one), by flag"
    )


class RegistrationPageOut(BaseModel):
    """One page of a room's registrations, oldest first."""

    items: list[RegistrationOut]
    total: int = Field(description="How many match the state and flag asked for")
    offset: int
    limit: int
    counts: RegistrationCounts


RegistrationId = Annotated[
    str,
    Field(
        min_length=MIN_PREFIX,
        max_length=ID_CHARS,
        pattern=r"^[0-9a-fA-F]+$",
        description=f"A registration's id, or a prefix of it ({MIN_PREFIX} hex digits or more)"
        " that no other registration of the room shares",
    ),
]


class AnswerFilter(_Body):
    """Every waiting registration of the room (with `flag`: every one that has it)."""

    state: Literal["waiting"] = Field(
        default="waiting", description="Only waiting registrations can be answered"
    )
    # Lax for this one: an enum is sent as its JSON string.
    flag: RegistrationFlag | None = Field(default=None, strict=False)


class AnswerByIds(_Body):
    """These registrations (each id or unique prefix once)."""

    ids: list[RegistrationId] = Field(min_length=1, max_length=MAX_IDS)


class AnswerByFilter(_Body):
    """Every registration the filter matches when the call is made."""

    filter: AnswerFilter


# Which registrations: `ids`, or a `filter`, never both.
AnswerIn = AnswerByIds | AnswerByFilter


Reason = Literal["unknown", "ambiguous", "approved", "denied", "changed"]


class RefusedOut(BaseModel):
    id: str = Field(description="As it was given")
    reason: Reason = Field(
        description="unknown: no registration of the room has this id; ambiguous: several do;"
        " approved, denied: answered already; changed: answered or gone meanwhile"
    )
    message: str


class AnsweredOut(BaseModel):
    answered: int = Field(description="How many this call approved or denied")
    ids: list[str] = Field(description="Their ids")
    refused: list[RefusedOut] = Field(description="Each given id not answered, and why")
    batch: str | None = Field(
        description="Approve: the outbox batch the invitations went into (GET"
        " /api/v1/outbox/{batch}); null when none was sent"
    )


REFUSALS: dict[Reason, str] = {
    "unknown": "no registration of this room has this id",
    "ambiguous": "several registrations of this room have ids that start so: give more of it",
    "approved": "approved already",
    "denied": "denied already",
    "changed": "answered or gone meanwhile",
}


def registration_out(registration: Registration) -> RegistrationOut:
    return RegistrationOut(
        id=registration.id,
        name=registration.name,
        domain=registration.domain,
        note=registration.note,
        state=registration.state.value,
        flags=sorted(flag.value for flag in registration.flags),
        language=registration.language,
        created_at=registration.created_at,
        updated_at=registration.updated_at,
        answered_at=registration.answered_at,
        invitation_pending=registration.state is RegistrationState.APPROVED
        and registration.inviting,
        resembles=(
            None
            if registration.resembles is None
            else ResemblanceOut(
                name=registration.resembles.name, kind=registration.resembles.kind.value
            )
        ),
    )


async def every_registration(
    registrations: Registrations, room: str, now: float, *, flag: RegistrationFlag | None = None
) -> list[Registration]:
    """Every registration of `room` (with `flag`: only the waiting ones that have it), read a
    page at a time; a room holds at most [registration] max_per_room."""
    state = None if flag is None else RegistrationState.WAITING
    found: list[Registration] = []
    while True:
        page = await registrations.page(
            room, state=state, flag=flag, offset=len(found), limit=MAX_PAGE, now=now
        )
        found += page.items
        if not page.items or len(found) >= page.total:
            return found


def resolve(
    given: Sequence[str], known: Sequence[Registration]
) -> tuple[list[str], list[RefusedOut]]:
    """The ids of the waiting registrations `given` names (each an id or a unique prefix, in
    any case), each once; and each given one that names none, several or an answered one."""
    chosen: dict[str, None] = {}
    refused = []
    for each in dict.fromkeys(given):
        prefix = each.strip().lower()
        found = [registration for registration in known if registration.id.startswith(prefix)]
        reason: Reason | None = None
        if not found:
            reason = "unknown"
        elif len(found) > 1:
            reason = "ambiguous"
        elif found[0].state is RegistrationState.APPROVED:
            reason = "approved"
        elif found[0].state is RegistrationState.DENIED:
            reason = "denied"
        if reason is None:
            chosen[found[0].id] = None
        else:
            refused.append(RefusedOut(id=each, reason=reason, message=REFUSALS[reason]))
    return list(chosen), refused


def registration_routes(
    store: Store,
    desk: HostDesk,
    registrations: Registrations | None,
    queue: InvitationQueue | None,
    *,
    guarded: Sequence[Any],
    errors: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """The routes, for `create_admin_app` to include. `registrations` and `queue`: the gate's
    (None when it has no SMTP server: every call then answers 409 mail_not_configured, after
    the room is found)."""
    router = APIRouter()
    read_logged: dict[str, float] = {}

    async def audit(room: str, action: str, now: float, facts: AuditFacts | None = None) -> None:
        # As the admin's other actions: no identity, the admin's name; counts only.
        await store.append_audit(
            AuditEntry(
                at=now, room=room, actor="", actor_name=ADMIN_NAME, action=action, facts=facts
            )
        )

    def usable() -> Registrations:
        if registrations is None:
            raise RegistrationsUnavailable()
        return registrations

    @router.get("/api/v1/rooms/{name}/registrations", dependencies=list(guarded), responses=errors)
    async def list_registrations(
        name: str,
        state: Annotated[
            Literal["waiting", "approved", "denied"] | None,
            Query(description="Only those in this state"),
        ] = None,
        flag: Annotated[
            Literal["seen_address", "seen_domain", "looks_like", "burst", "updated"] | None,
            Query(description="Only those with this flag"),
        ] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> RegistrationPageOut:
        """One page of the room's registrations, oldest first (at most 100: there is no
        export), with how many match and the room's counts by state and flag. Each shows the
        address's domain, never the address."""
        now = time.time()
        room = await desk.room(ADMIN, name, now)
        if queue is not None:
            # What approvals left pending is queued now (a bounded number), not at the next one.
            await resume_pending(usable(), room, queue, now)
        found = await usable().page(
            name, state=state, flag=flag, offset=offset, limit=limit, now=now
        )
        if now - read_logged.get(name, -READING_LOGGED_SECONDS) >= READING_LOGGED_SECONDS:
            read_logged[name] = now
            await audit(name, "view registrations", now)
        return RegistrationPageOut(
            items=[registration_out(r) for r in found.items],
            total=found.total,
            offset=found.offset,
            limit=found.limit,
            counts=RegistrationCounts(states=dict(found.states), flags=dict(found.flags)),
        )

    async def chosen(room: Room, body: AnswerIn, now: float) -> tuple[list[str], list[RefusedOut]]:
        if isinstance(body, AnswerByFilter):
            matching = await every_registration(usable(), room.name, now, flag=body.filter.flag)
            return [r.id for r in matching if r.state is RegistrationState.WAITING], []
        return resolve(body.ids, await every_registration(usable(), room.name, now))

    async def answered(
        room: str, ids: Sequence[str], state: RegistrationState, now: float
    ) -> tuple[list[str], list[RefusedOut]]:
        """Which of `ids` this call answered (`state` at `now`), and the others, refused."""
        done, refused = [], []
        for registration_id in ids:
            found = await usable().get(room, registration_id)
            if found is not None and found.state is state and found.answered_at == now:
                done.append(registration_id)
            else:
                refused.append(
                    RefusedOut(id=registration_id, reason="changed", message=REFUSALS["changed"])
                )
        return done, refused

    @router.post(
        "/api/v1/rooms/{name}/registrations/approve",
        dependencies=list(guarded),
        responses=errors,
    )
    async def approve(name: str, body: AnswerIn) -> AnsweredOut:
        """Approve waiting registrations: each person is sent a personal invitation by e-mail
        (the answer's `batch` tells how sending goes), and their address leaves the store.
        `ids` (or unique prefixes) or `filter`; what is not approved is in `refused`, with why.
        409 room_moved, mail_not_configured or meeting_over."""
        now = time.time()
        room = await desk.current(ADMIN, name, now)
        usable()
        if queue is None:
            raise RegistrationsUnavailable()
        if room.ends_at is not None and room.ends_at <= now:
            raise MeetingEnded()
        ids, refused = await chosen(room, body, now)
        # Approved and invited in one step: nobody is approved without their invitation queued.
        approved = await usable().approve(room, ids, ADMIN_NAME, now, queue=queue)
        batch = approved.batch
        done, changed = await answered(name, ids, RegistrationState.APPROVED, now)
        refused += changed
        if done:
            await audit(name, "approve registrations", now, _counted(len(done), len(refused)))
        return AnsweredOut(answered=len(done), ids=done, refused=refused, batch=batch)

    @router.post(
        "/api/v1/rooms/{name}/registrations/deny",
        dependencies=list(guarded),
        responses=errors,
    )
    async def deny(name: str, body: AnswerIn) -> AnsweredOut:
        """Deny waiting registrations: nobody is told, the address leaves the store, and the
        same address registering again finds its registration denied. `ids` (or unique
        prefixes) or `filter`; what is not denied is in `refused`, with why. 409 room_moved or
        mail_not_configured."""
        now = time.time()
        room = await desk.current(ADMIN, name, now)
        ids, refused = await chosen(room, body, now)
        if ids:
            await usable().deny(room, ids, ADMIN_NAME, now)
        done, changed = await answered(name, ids, RegistrationState.DENIED, now)
        refused += changed
        if done:
            await audit(name, "deny registrations", now, _counted(len(done), len(refused)))
        return AnsweredOut(answered=len(done), ids=done, refused=refused, batch=None)

    return router


def _counted(done: int, refused: int) -> AuditFacts:
    """A log entry's facts: how many were answered and how many not, never who."""
    return AuditFacts(AuditKind.REGISTRATIONS, count=done, refused=refused)
