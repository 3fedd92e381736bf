"""The admin HTTP API (the CLI's server side), on its own listener, behind the admin token.

Every answer that is not a success is a `Problem` (JSON), whatever went wrong: a refused token,
a body too large or not JSON, values the call does not take, an unknown path or method.
The schema (`/openapi.json`) and the optional `/docs` page are behind the token too, and load
nothing from another origin (FastAPI's own docs pages would fetch their scripts from a CDN).
"""

from __future__ import annotations

import hmac
import html
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admin_invitations import invitation_routes
from gateway.admin_registrations import registration_routes
from gateway.admission.invitations import InvitationQueue
from gateway.admission.invites import make_invite
from gateway.admission.limits import RateLimiter
from gateway.admission.meeting import MeetingChange, MeetingRefused, meeting_audit, meeting_changed
from gateway.admission.outbox import Outbox
from gateway.admission.pipeline import join_plan
from gateway.admission.policy import (
    MAX_ADDRESS_CHARS,
    MAX_DOMAINS,
    MAX_EMAILS,
    MAX_GROUPS,
    MAX_HOST_EMAILS,
    MAX_PROVIDERS,
    make_policy,
)
from gateway.admission.registrations import Registrations
from gateway.admission.rooms import (
    MAX_TITLE_CHARS,
    RESERVED_NAMES,
    ROOM_NAME,
    validate_room_name,
    validate_title,
)
from gateway.cuts import Cut
from gateway.edge.headers import security_headers
from gateway.edge.requests import request_id
from gateway.errors import (
    AdminAuthFailed,
    BadRequest,
    InvalidInput,
    MalformedJson,
    MeetgateError,
    MethodNotAllowed,
    NotFound,
    RequestInvalid,
    RequestTooLarge,
    RoomNotFound,
    UnsupportedMediaType,
)
from gateway.evidence.entries import Kind
from gateway.evidence.recorder import EvidenceRecorder
from gateway.host.actions import (
    ADMIN,
    ADMIN_EVIDENCE_ACTOR,
    ADMIN_NAME,
    HostDesk,
    check_chat_limits,
    evidence_limits,
    name_matches,
    reaches,
    rules_changed,
)
from gateway.host.dashboard import audit_detail
from gateway.i18n import DEFAULT, LANGUAGES, N_
from gateway.mail import SmtpMailer
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.continuity import acknowledge_loss, check_memory
from gateway.store.records import (
    CHAT_BURST_MAX,
    CHAT_BYTES_MAX,
    CHAT_PER_10S_MAX,
    STRIKES_MAX,
    Admission,
    AuditEntry,
    AuditFacts,
    AuditKind,
    ChatLimits,
    Invite,
    Role,
    Room,
    RoomPolicy,
)


def _json_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be a valid integer")
    return value


# JSON Schema's integer: 60 and 60.0 (a number without a fraction), never "60" or true.
JsonInt = Annotated[int, BeforeValidator(_json_number), Field(strict=False)]

LANGUAGE_TAGS = tuple(language.tag for language in LANGUAGES)


def _language_tag(value: str) -> str:
    if value != "" and value not in LANGUAGE_TAGS:
        raise ValueError(f'Input should be one of {", ".join(LANGUAGE_TAGS)}, or "" for none')
    return value


# A room's default language: the tag of one of the pages' languages, exactly as written.
LanguageTag = Annotated[
    str,
    AfterValidator(_language_tag),
    Field(
        description="The language of the room's pages for a visitor who chose none of Meetgate's"
        ' (their switcher choice or browser\'s language still comes first); "" for none',
        json_schema_extra={"enum": ["", *LANGUAGE_TAGS]},
    ),
]


class _Body(BaseModel):
    # Strict: the schema says boolean and integer, so "false", 0 or "5" are refused (422), not
    # read as what they might mean.
    model_config = ConfigDict(extra="forbid", strict=True)


class RoomIn(_Body):
    # The route checks the name (InvalidRoomName, 400, says the rule); the schema states it too.
    name: str = Field(
        max_length=64,
        description="Jitsi room name: a-z, 0-9, '-', '_'; not one of Jitsi's own paths",
        json_schema_extra={
            "pattern": f"^{ROOM_NAME.pattern}$",
            "not": {"enum": [name for name in sorted(RESERVED_NAMES)]},
        },
    )
    title: str = Field(default="", max_length=MAX_TITLE_CHARS, description="Shown on the join page")
    language: LanguageTag | None = None


class RoomOut(BaseModel):
    name: str
    title: str
    created_at: float
    policy: list[str] = Field(description="The ways in: invite, oidc, email_code, lobby")
    locked: bool
    approval_required: bool
    pow_required: bool
    moved_to: str | None
    language: str | None = Field(description="The room's default language (a tag), null for none")
    rules: PolicyOut
    quiet: bool = Field(description="Quiet mode: only hosts can chat")
    chat: ChatLimitsOut
    registration: bool = Field(
        description="The room takes registrations (/_meetgate/register/<room>), for hosts to review"
    )
    auto_approve_domains: list[str] = Field(
        description="A registration confirmed from an address at one of these is approved at once"
    )
    auto_approve_email_count: int = Field(
        description="How many addresses `auto_approve_emails` lists (never listed: they are"
        " people's)"
    )
    series: str = Field(
        description='The series whose rooms share "seen before" for registrations; "" for the'
        " room's own meeting"
    )
    starts_at: float | None = Field(description="The meeting's start (seconds since the epoch)")
    ends_at: float | None = Field(description="The meeting's end (seconds since the epoch)")
    registration_page: str | None = Field(
        default=None,
        description="The page to announce, where people register (the public URL's"
        " /_meetgate/register/<room>); null while the room takes no registrations",
    )


class ChatLimitsOut(BaseModel):
    """A room's chat limits; 0 (and `guard_strikes` "default") is the gate's [guard] setting."""

    quiet_private_to_hosts: bool = Field(
        description="In quiet mode, attendees may still write privately to a host"
    )
    chat_per_10s: int = Field(description="Chat messages per 10 seconds, per participant")
    chat_burst: int = Field(description="Chat messages at once")
    chat_max_bytes: int = Field(description="The longest chat message, in bytes")
    guard_strikes: int | Literal["default"] = Field(
        description="Refused messages before the sender is removed; 0: never"
    )


class PolicyIn(_Body):
    """A room's policy (docs/identity-providers.md, "Room policies"). Addresses and domains are
    stored lower-cased, group names as given (compared exactly); empty lists do not restrict."""

    invite: bool = True
    oidc: bool = False
    oidc_providers: list[str] = Field(default_factory=list, max_length=MAX_PROVIDERS)
    email_code: bool = False
    allowed_emails: list[str] = Field(default_factory=list, max_length=MAX_EMAILS)
    allowed_domains: list[str] = Field(default_factory=list, max_length=MAX_DOMAINS)
    allowed_groups: list[str] = Field(default_factory=list, max_length=MAX_GROUPS)
    lobby: bool = False
    host_emails: list[str] = Field(default_factory=list, max_length=MAX_HOST_EMAILS)


class PolicyOut(BaseModel):
    """A room's policy as the API shows it: the e-mail addresses it lists are counted, never
    listed (they are people's; `GET /api/v1/rooms/{name}/policy/emails/{address}` says whether
    one is listed). Domains, groups and providers are shown: they name no one."""

    invite: bool
    oidc: bool
    oidc_providers: list[str]
    email_code: bool
    allowed_email_count: int = Field(description="How many addresses `allowed_emails` lists")
    allowed_domains: list[str]
    allowed_groups: list[str]
    lobby: bool
    host_email_count: int = Field(description="How many addresses `host_emails` lists")

    @classmethod
    def of(cls, policy: RoomPolicy) -> PolicyOut:
        return cls(
            invite=policy.invite,
            oidc=policy.oidc,
            oidc_providers=list(policy.oidc_providers),
            email_code=policy.email_code,
            allowed_email_count=len(policy.allowed_emails),
            allowed_domains=list(policy.allowed_domains),
            allowed_groups=list(policy.allowed_groups),
            lobby=policy.lobby,
            host_email_count=len(policy.host_emails),
        )


class EmailListedOut(BaseModel):
    """Whether a room's policy lists one e-mail address (compared as stored: trimmed and
    lower-cased)."""

    allowed: bool = Field(description="The address is in `allowed_emails`")
    host: bool = Field(description="The address is in `host_emails`")


# An address as a path segment: as long as the policy lets one be (longer ones are on no list).
EmailAddress = Annotated[str, FastApiPath(min_length=1, max_length=MAX_ADDRESS_CHARS + 2)]


# JsonInt with bounds, the bounds first: within a union (`| None`), the schema states them as
# JSON Schema's minimum and maximum only so.
_ChatPer10s = Annotated[
    int, Field(ge=0, le=CHAT_PER_10S_MAX), BeforeValidator(_json_number), Field(strict=False)
]
_ChatBurst = Annotated[
    int, Field(ge=0, le=CHAT_BURST_MAX), BeforeValidator(_json_number), Field(strict=False)
]
_ChatBytes = Annotated[
    int, Field(ge=0, le=CHAT_BYTES_MAX), BeforeValidator(_json_number), Field(strict=False)
]
_Strikes = Annotated[
    int, Field(ge=0, le=STRIKES_MAX), BeforeValidator(_json_number), Field(strict=False)
]


# A meeting's time as text (parse_moment): ISO 8601 is at most some 40 characters.
_MomentText = Annotated[str, Field(max_length=64)]


class RoomChange(_Body):
    locked: bool | None = Field(default=None, description="No new admissions (hosts excepted)")
    pow_required: bool | None = Field(
        default=None, description="Every join attempt must carry a proof-of-work"
    )
    # null or absent: unchanged; "": no default any more.
    language: LanguageTag | None = None
    # The chat rules (docs/hosts.md): null or absent, unchanged; a count of 0 and
    # "default" for the strikes, the gate's [guard] setting.
    quiet: bool | None = Field(default=None, description="Only hosts can chat")
    quiet_private_to_hosts: bool | None = Field(
        default=None, description="In quiet mode, attendees may still write privately to a host"
    )
    chat_per_10s: _ChatPer10s | None = Field(default=None, description="0: the gate's default")
    chat_burst: _ChatBurst | None = Field(default=None, description="0: the gate's default")
    chat_max_bytes: _ChatBytes | None = Field(
        default=None, description="0: the gate's default; else 64 or more"
    )
    guard_strikes: _Strikes | Literal["default"] | None = Field(
        default=None, description="Refused messages before removal; 0: never"
    )
    # Registration (docs/operations.md, "Registration"): null or absent, unchanged; a list
    # replaces the room's ([] empties it); "" clears a series or a time.
    registration: bool | None = Field(
        default=None,
        description="Take registrations for hosts to review; needs an SMTP server ([smtp] host)"
        " and personal invites in the room's policy",
    )
    auto_approve_domains: list[str] | None = Field(
        default=None,
        max_length=MAX_DOMAINS,
        description="Replaces the list: a registration confirmed from an address at one of these"
        " domains is approved at once; [] for none",
    )
    auto_approve_emails: list[str] | None = Field(
        default=None,
        max_length=MAX_EMAILS,
        description="Replaces the list: a registration confirmed from one of these addresses is"
        " approved at once; [] for none",
    )
    series: str | None = Field(
        default=None,
        max_length=64,
        description="Rooms of one series share \"seen before\" for registrations: a-z, 0-9, '-',"
        " '_'; \"\" for none",
    )
    starts_at: float | _MomentText | None = Field(
        default=None,
        description="The meeting's start: ISO 8601 with an offset (2026-12-20T14:00+08:00, or Z)"
        ' or seconds since the epoch; "" for none',
    )
    ends_at: float | _MomentText | None = Field(
        default=None,
        description="The meeting's end, as `starts_at`: after it, at most 7 days after the start,"
        ' not past; "" for none',
    )

    def chat_limits(self, room: Room) -> ChatLimits:
        """The room's chat limits with this change's applied."""
        was = ChatLimits.of(room)
        strikes = was.strikes if self.guard_strikes is None else self.guard_strikes
        return ChatLimits(
            per_10s=was.per_10s if self.chat_per_10s is None else self.chat_per_10s,
            burst=was.burst if self.chat_burst is None else self.chat_burst,
            max_bytes=was.max_bytes if self.chat_max_bytes is None else self.chat_max_bytes,
            strikes=None if strikes == "default" else strikes,
            private_to_hosts=was.private_to_hosts
            if self.quiet_private_to_hosts is None
            else self.quiet_private_to_hosts,
        )


class RoomValuesRefused(InvalidInput):
    """Values of a room change that the schema allows and Meetgate's rules refuse (400), each
    named in the Problem's `fields` as the body names it."""

    message = N_("The room's new values are refused: {listed}.")

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(listed="; ".join(f"{p.where}: {p.problem}" for p in problems))


def registration_changed(
    body: RoomChange, room: Room, *, now: float, mail_configured: bool
) -> Room:
    """`room` with the change's meeting settings applied, by the meeting's rules (gateway/
    admission/meeting.py, as the hosts' dashboard); RoomValuesRefused naming every refused
    value at once, as the body names it, in English."""
    change = MeetingChange(
        registration=body.registration,
        auto_approve_domains=body.auto_approve_domains,
        auto_approve_emails=body.auto_approve_emails,
        series=body.series,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
    )
    try:
        return meeting_changed(change, room, now=now, mail_configured=mail_configured)
    except MeetingRefused as refused:
        problems = [
            FieldProblem(where=f"body.{each.setting}", problem=each.problem.shown())
            for each in refused.problems
        ]
        raise RoomValuesRefused(problems) from None


class InviteIn(_Body):
    name: str = Field(max_length=200, description="The verified display name of the invitee")
    # Lax for this one: a role is sent as its JSON string.
    role: Role = Field(default=Role.ATTENDEE, strict=False)
    max_uses: JsonInt = Field(default=1, ge=1, le=10_000)
    expires_in_seconds: JsonInt = Field(default=7 * 24 * 3600, ge=60, le=366 * 24 * 3600)


class InviteListed(BaseModel):
    """An invite as a room's list shows it: without the invitee's name, so that no list of who
    was invited can be read out (docs/privacy.md); the name is shown once, when it is made."""

    id: str
    room: str
    role: Role
    max_uses: int
    uses: int
    expires_at: float
    created_at: float
    revoked: bool


class InviteOut(InviteListed):
    name: str


class NewInviteOut(InviteOut):
    link: str = Field(description="The personal join link; shown only once")


class StoreMemoryOut(BaseModel):
    lost: bool = Field(
        description="The store lost its memory and no admin has acknowledged it yet: joins and"
        " ticket refreshes are refused (docs/operations.md)"
    )
    reason: str = Field(description="How the loss was found; empty when nothing is lost")
    acknowledged: bool = Field(
        default=False, description="This call acknowledged a loss (acknowledge-loss only)"
    )


class FieldProblem(BaseModel):
    where: str = Field(description="The value at fault: body.name, body, path.name, query.x")
    problem: str


class Problem(BaseModel):
    """What every error of the admin API answers."""

    error: str = Field(description="A stable code, e.g. room_not_found or request_invalid")
    message: str = Field(description="For a person: what is wrong (each field's problem too)")
    request_id: str = Field(description="The same id is in the server's log line")
    fields: list[FieldProblem] = Field(
        default_factory=list, description="request_invalid: each value that was refused"
    )


# Every operation can answer these; routes add what only they can (404, 409).
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    # 422: what the schema states; 400: Meetgate's rules it cannot (an address's syntax, a
    # title's characters, the providers this config names), and bodies that are not JSON.
    400: {
        "model": Problem,
        "description": "Not valid JSON, or a value one of Meetgate's rules refuses",
    },
    401: {"model": Problem, "description": "The admin token is missing or wrong"},
    413: {"model": Problem, "description": "The body is larger than [limits] max_admin_body_bytes"},
    415: {"model": Problem, "description": "A body that is not application/json"},
    422: {"model": Problem, "description": "A value not of the type or range the call takes"},
    503: {"model": Problem, "description": "The store cannot answer; try again (Retry-After)"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such room or invite"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "A room with this name exists"}
}
IMPORT_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": Problem,
        "description": "room_moved: the meeting moved on; mail_not_configured: `send` without"
        " [smtp]",
    }
}
REGISTRATION_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": Problem,
        "description": "room_moved: the meeting moved on; mail_not_configured: no [smtp], so no"
        " registrations; meeting_over: approve after the meeting's end",
    }
}
PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every metric, in Prometheus' text format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}
# Reported per value, each capped: a 422 says what was refused, never echoes what was sent.
MAX_FIELD_PROBLEMS = 20
MAX_KEY_CHARS = 64
JSON_TYPES = ("application/json",)

log = logging.getLogger("meetgate.admin")


# The ways into a room, in the order `RoomOut.policy` lists those its policy allows.
WAYS_IN = ("invite", "oidc", "email_code", "lobby")


def _room_out(room: Room, public_url: str) -> RoomOut:
    return RoomOut(
        name=room.name,
        title=room.title,
        created_at=room.created_at,
        policy=[way for way in WAYS_IN if getattr(room.policy, way)],
        locked=room.locked,
        approval_required=room.approval_required,
        pow_required=room.pow_required,
        moved_to=room.moved_to,
        language=room.language or None,
        rules=PolicyOut.of(room.policy),
        quiet=room.quiet,
        chat=ChatLimitsOut(
            quiet_private_to_hosts=room.quiet_private_to_hosts,
            chat_per_10s=room.chat_per_10s,
            chat_burst=room.chat_burst,
            chat_max_bytes=room.chat_max_bytes,
            guard_strikes="default" if room.guard_strikes is None else room.guard_strikes,
        ),
        registration=room.registration,
        auto_approve_domains=list(room.auto_approve_domains),
        auto_approve_email_count=len(room.auto_approve_emails),
        series=room.series,
        starts_at=room.starts_at,
        ends_at=room.ends_at,
        registration_page=f"{public_url}/_meetgate/register/{room.name}"
        if room.registration
        else None,
    )


# The emergency calls (docs/operations.md, "In an emergency"): what a host does on the dashboard.

# Whom a call is about: an admission's id, or a shown name (look-alikes and " (2)" match too).
Who = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="An admission's id (as the roster shows it), or a shown name: look-alikes"
        ' and Meetgate\'s markers match too ("Ada" names "Ada (2)"); a name that names several'
        " is refused (400) with their ids",
    ),
]
WhoQuery = Annotated[
    str | None, Query(min_length=1, max_length=200, description="Only the one this names")
]
# A ban's length: a minute to a year and a day (the bounds first, as _ChatPer10s's).
MAX_BAN_SECONDS = 366 * 24 * 3600
_BanSeconds = Annotated[
    int, Field(ge=60, le=MAX_BAN_SECONDS), BeforeValidator(_json_number), Field(strict=False)
]


class ParticipantOut(BaseModel):
    """One live admission of a room, as the host dashboard's roster shows it."""

    id: str = Field(description="The admission's id: what `who` takes")
    name: str = Field(description="The name everyone sees")
    role: Role
    via: str = Field(description="How they came in: invite:<id>, oidc:<provider>, email, lobby")
    since: float = Field(description="When they were admitted (seconds since the epoch)")


class RemoveIn(_Body):
    who: Who
    ban: bool = Field(
        default=False, description="Also bar their identity from the meeting (for good)"
    )
    ban_seconds: _BanSeconds | None = Field(
        default=None, description="Also bar their identity from the meeting, for this long"
    )


class RemovedOut(BaseModel):
    id: str
    name: str
    banned: bool
    banned_until: float | None = Field(description="The ban's end; null for good or no ban")


class UnbanIn(_Body):
    who: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            description="The id or shown name of a banned admission of this room, while its"
            " record lives (until it would have expired)",
        ),
    ]


class UnbannedOut(BaseModel):
    id: str
    name: str


class LockdownOut(BaseModel):
    room: RoomOut
    removed: int = Field(description="How many attendees it removed")


class MoveIn(_Body):
    # The route checks the name (InvalidRoomName, 400), as a new room's.
    to: str = Field(
        max_length=64,
        description="The new room's name: a-z, 0-9, '-', '_'; no room may have it",
        json_schema_extra={"pattern": f"^{ROOM_NAME.pattern}$"},
    )


class AuditOut(BaseModel):
    """One entry of a room's log of host actions, newest first."""

    at: float
    actor_name: str = Field(description="The host's shown name, or admin")
    by_admin: bool = Field(
        description='The admin did it (a host may be shown as "admin" too: this tells them apart)'
    )
    action: str
    target: str = Field(description="Whom it was about, as the room's evidence names them")
    detail: str = Field(description="What came of it, in words (English)")


class InviteRevokeIn(_Body):
    name: str = Field(
        min_length=1,
        max_length=200,
        description="The invitee's name, as the invite was made for (look-alikes match too)",
    )


class InviteRevokedOut(BaseModel):
    id: str
    name: str = Field(description="The name the revoked invite was made for")


InviteNameQuery = Annotated[
    str | None,
    Query(
        alias="name",
        min_length=1,
        max_length=200,
        description="Only the invites that still work made for this name (look-alikes match"
        " too), with their names",
    ),
]


def _working_invites(
    invites: Iterable[Invite], name: str, now: float | None = None
) -> list[Invite]:
    """The invites that still work (not revoked, expired or used up) made for a name that
    `name` names."""
    at = time.time() if now is None else now
    return [
        invite for invite in invites if invite.is_usable(at) and name_matches(name, invite.name)
    ]


def _refused(where: tuple[str, ...], problem: str) -> RequestValidationError:
    """A value the call cannot take, answered as the schema's refusals are (422, its field
    named): the problem in English, as pydantic's are."""
    return RequestValidationError([{"loc": where, "msg": problem, "type": "value_error"}])


def _several(count: int, what: str, found: Sequence[Admission | Invite]) -> str:
    listed = "; ".join(
        f"{one.id} ({one.name})" if isinstance(one, Admission) else one.id for one in found
    )
    return f"names {count} {what}, give one of their ids: {listed}"


def _the_one(found: list[Admission], what: str) -> Admission | None:
    """The one admission `who` names; None if none; refused (422) listing them if several."""
    if len(found) > 1:
        raise _refused(("body", "who"), _several(len(found), what, found))
    return found[0] if found else None


def _participant_out(admission: Admission) -> ParticipantOut:
    return ParticipantOut(
        id=admission.id,
        name=admission.name,
        role=admission.role,
        via=admission.via,
        since=admission.created_at,
    )


def _audit_out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        at=entry.at,
        actor_name=entry.actor_name,
        # The admin has no identity; a host and the wire guard have one.
        by_admin=entry.actor == "" and entry.actor_name == ADMIN_NAME,
        action=entry.action,
        target=entry.target,
        detail=audit_detail(entry, DEFAULT),
    )


def _invite_out(invite: Invite) -> InviteOut:
    return InviteOut(
        id=invite.id,
        room=invite.room,
        name=invite.name,
        role=invite.role,
        max_uses=invite.max_uses,
        uses=invite.uses,
        expires_at=invite.expires_at,
        created_at=invite.created_at,
        revoked=invite.revoked,
    )


def problem_response(
    error: MeetgateError,
    rid: str,
    fields: Sequence[FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """The admin API's answer to `error`: a Problem, with the headers its status calls for."""
    body = Problem(error=error.code, message=error.shown(), request_id=rid, fields=list(fields))
    all_headers = {"x-request-id": rid, **(headers or {})}
    if error.retry_after is not None:
        all_headers["retry-after"] = str(error.retry_after)
    if isinstance(error, AdminAuthFailed):
        all_headers["www-authenticate"] = "Bearer"
    return Response(
        body.model_dump_json(), error.status, headers=all_headers, media_type="application/json"
    )


def field_problems(errors: Iterable[Any]) -> list[FieldProblem]:
    """pydantic's errors as `where: problem`, without the values sent (they may be anything)."""
    problems = []
    for error in errors:
        # An unknown key is named as sent, so it is cut short.
        where = ".".join(str(part)[:MAX_KEY_CHARS] for part in error.get("loc", ()))
        problems.append(FieldProblem(where=where or "request", problem=str(error.get("msg", ""))))
    return problems[:MAX_FIELD_PROBLEMS]


def invalid_request(problems: Sequence[FieldProblem]) -> RequestInvalid:
    listed = "; ".join(f"{p.where}: {p.problem}" for p in problems)
    return RequestInvalid(
        N_("The request's values are not what this call takes: {listed}."), listed=listed
    )


class AdminAuth:
    """Pure ASGI guard: every path needs the admin token (the schema and the docs page too),
    checked before the body is read. Only the Authorization header counts: a token anywhere
    else (a query string, a cookie) is not looked at."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self._app = app
        self._expected = b"Bearer " + token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
            if not hmac.compare_digest(given, self._expected):
                answer = problem_response(AdminAuthFailed(), request_id(scope))
                await answer(scope, receive, send)
                return
        await self._app(scope, receive, send)


class JsonBodies:
    """Pure ASGI: a request body is at most `max_bytes` of application/json, or it is answered
    413 (as soon as it is known to be larger: from Content-Length, else while it arrives, never
    read to its end) or 415, before any route parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = b""
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_type = value
        if declared.isdigit() and int(declared) > self._max_bytes:
            await self._refuse(scope, receive, send, RequestTooLarge())
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self._max_bytes:
                await self._refuse(scope, receive, send, RequestTooLarge())
                return
            more = message.get("more_body", False)
        media_type = content_type.split(b";", 1)[0].strip().decode("latin-1").lower()
        if body and media_type not in JSON_TYPES:
            await self._refuse(scope, receive, send, UnsupportedMediaType())
            return
        whole: Message | None = {"type": "http.request", "body": bytes(body), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is None:
                return await receive()
            message, whole = whole, None
            return message

        await self._app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, error: MeetgateError) -> None:
        await problem_response(error, request_id(scope))(scope, receive, send)


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route takes at this path (Starlette's 405 names the first route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def docs_page(schema: dict[str, Any]) -> str:
    """The admin API's operations as a plain HTML page: no script, no style, nothing fetched."""
    rows = []
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            summary = operation.get("summary", "")
            details = (operation.get("description") or "").strip()
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td>"
                f"<td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(summary)}</td><td>{html.escape(details)}</td></tr>"
            )
    info = schema.get("info", {})
    title = html.escape(f"{info.get('title', '')} {info.get('version', '')}".strip())
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body><h1>{title}</h1><p>{html.escape(info.get('description', ''))}</p>"
        "<p>The whole schema, with every body and answer: <code>GET /openapi.json</code> with"
        " the same <code>Authorization: Bearer</code> header.</p>"
        "<table><thead><tr><th>method</th><th>path</th><th>summary</th><th>details</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></body></html>"
    )


def create_admin_app(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    evidence: EvidenceRecorder | None = None,
    invitations: InvitationQueue | None = None,
    registrations: Registrations | None = None,
) -> AdminAuth:
    """The admin API; `evidence` records its locks and chat rules in each room's evidence (the
    actor: the admin API, one pseudonym per room); `invitations`: the queue that sends invitation
    e-mails (the gate's; None: one of its own with an SMTP server, without one an import with
    `send` is refused); `registrations`: the gate's (None: one of its own with an SMTP server,
    which reviews what the store holds; without one the registration calls answer 409)."""
    app = FastAPI(
        title="Meetgate admin API",
        version="1",
        description=(
            "Manage rooms and invites. Every call needs `Authorization: Bearer <token>`. Every"
            " error is a `Problem`: a stable `error` code, a `message` for a person and the"
            " `request_id` of the server's log line."
        ),
        responses=COMMON_ERRORS,
        # FastAPI's Swagger UI and ReDoc load their scripts from a CDN: never served.
        docs_url=None,
        redoc_url=None,
    )

    def room_out(room: Room) -> RoomOut:
        return _room_out(room, settings.public_url)

    pseudonym_key = settings.admission.pseudonym_key.get_secret_value().encode()
    if invitations is None and settings.mail_configured:
        # Queues into the store only: the gate's sending loop (its own Outbox) sends them.
        invitations = Outbox.from_settings(store, settings, metrics=metrics)
    if registrations is None and settings.mail_configured:
        # Reviewing reads and answers what the store holds: nothing here sends a code.
        registrations = Registrations(
            store,
            settings.registration,
            key=pseudonym_key,
            limiter=RateLimiter(store, settings.rates, metrics),
            mailer=SmtpMailer(settings.smtp),
            codes=settings.email_codes,
        )
    # Declared for the OpenAPI document; the check itself is AdminAuth, before any parsing.
    guarded = [Depends(HTTPBearer(auto_error=False))]
    # The admin's emergency calls act as a host does on the dashboard (gateway/host/actions.py).
    desk = HostDesk(store, None, evidence)

    @app.exception_handler(MeetgateError)
    async def _error(request: Request, error: MeetgateError) -> Response:
        fields = error.problems if isinstance(error, RoomValuesRefused) else ()
        return problem_response(error, request_id(request.scope), fields)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        rid = request_id(request.scope)
        if any(detail.get("type") == "json_invalid" for detail in error.errors()):
            return problem_response(MalformedJson(), rid)
        problems = field_problems(error.errors())
        return problem_response(invalid_request(problems), rid, problems)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        rid = request_id(request.scope)
        if error.status_code == 404:
            return problem_response(NotFound(N_("The admin API has no such address.")), rid)
        if error.status_code == 405:
            allow = ", ".join(allowed_methods(app, request.scope))
            return problem_response(MethodNotAllowed(), rid, headers={"allow": allow})
        if error.status_code == 400:
            # FastAPI's answer to a body its JSON parser gave up on (nesting too deep, a number
            # too long) other than by a decode error.
            return problem_response(MalformedJson(), rid)
        return problem_response(BadRequest(), rid)

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> Response:
        rid = request_id(request.scope)
        log.error("unexpected error [%s]: %s", rid, type(error).__name__)
        return problem_response(MeetgateError(), rid)

    if settings.admin.docs:

        @app.get("/docs", include_in_schema=False)
        async def docs() -> Response:
            return Response(
                docs_page(app.openapi()),
                headers={k.decode(): v.decode() for k, v in security_headers(secure=False)},
                media_type="text/html",
            )

    @app.get("/api/v1/health", dependencies=guarded)
    async def health() -> dict[str, str]:
        await store.ping()
        return {"status": "ok"}

    @app.post("/api/v1/rooms", status_code=201, dependencies=guarded, responses=CONFLICT)
    async def create_room(body: RoomIn) -> RoomOut:
        name = validate_room_name(body.name)
        room = Room(
            name=name,
            title=validate_title(body.title or name),
            created_at=time.time(),
            language=body.language or "",
        )
        await store.create_room(room)
        return room_out(room)

    @app.get("/api/v1/rooms", dependencies=guarded)
    async def list_rooms() -> list[RoomOut]:
        return [room_out(room) for room in await store.list_rooms()]

    @app.get("/api/v1/rooms/{name}", dependencies=guarded, responses=NOT_FOUND)
    async def get_room(name: str) -> RoomOut:
        room = await store.get_room(name)
        if room is None:
            raise RoomNotFound()
        return room_out(room)

    @app.patch("/api/v1/rooms/{name}", dependencies=guarded, responses=NOT_FOUND)
    async def change_room(name: str, body: RoomChange) -> RoomOut:
        """Change a room's settings; 409 room_moved if its meeting moved on (a change there
        would reach nobody)."""
        now = time.time()
        await desk.current(ADMIN, name, now)
        before: list[Room] = []

        def change(room: Room) -> Room:
            limits = body.chat_limits(room)
            check_chat_limits(limits)
            registering = registration_changed(
                body, room, now=now, mail_configured=settings.mail_configured
            )
            before[:] = [room]
            return limits.applied_to(
                replace(
                    registering,
                    locked=room.locked if body.locked is None else body.locked,
                    # Unlocking also lifts a lockdown's approval requirement, as on the dashboard.
                    approval_required=room.approval_required and body.locked is not False,
                    pow_required=room.pow_required
                    if body.pow_required is None
                    else body.pow_required,
                    language=room.language if body.language is None else body.language,
                    quiet=room.quiet if body.quiet is None else body.quiet,
                )
            )

        changed = await store.change_room(name, change)
        if before[0].locked != changed.locked:
            _record(name, Kind.LOCK if changed.locked else Kind.UNLOCK)
            # The hosts' log says it too, as for `meetgate room unlock`.
            await desk.audit_admin(name, "lock" if changed.locked else "unlock", time.time())
        await _tell_rules(before[0], changed)
        for action, facts in meeting_audit(before[0], changed):
            await desk.audit_admin(name, action, now, facts)
        if registrations is not None and before[0].ends_at != changed.ends_at:
            # Its registrations are kept as the meeting's new time says (gone at once if that
            # is past already).
            await registrations.retime(changed, now)
        return room_out(changed)

    def _record(room: str, kind: Kind, **values: object) -> None:
        if evidence is not None:
            actor = evidence.pseudonyms.host(room, ADMIN_EVIDENCE_ACTOR)
            evidence.note(room, kind, {"actor": actor, **values})

    async def _tell_rules(was: Room, now: Room) -> None:
        """A change of the chat rules reaches every replica's gate at once, and the room's log
        (the dashboard's) says an admin made it."""
        limits = ChatLimits.of(now)
        if was.quiet == now.quiet and ChatLimits.of(was) == limits:
            return
        await rules_changed(store, now.name)
        entry = partial(AuditEntry, at=time.time(), room=now.name, actor="", actor_name=ADMIN_NAME)
        if was.quiet != now.quiet:
            _record(now.name, Kind.QUIET_ON if now.quiet else Kind.QUIET_OFF)
            await store.append_audit(entry(action="quiet on" if now.quiet else "quiet off"))
        if ChatLimits.of(was) != limits:
            _record(now.name, Kind.CHAT_LIMITS, limits=evidence_limits(limits))
            facts = AuditFacts(AuditKind.CHAT_LIMITS, limits=limits)
            await store.append_audit(entry(action="change chat limits", facts=facts))

    @app.put("/api/v1/rooms/{name}/policy", dependencies=guarded, responses=NOT_FOUND)
    async def set_policy(name: str, body: PolicyIn) -> RoomOut:
        """Takes effect for the next join attempt, on every replica, without a restart."""
        policy = make_policy(
            **body.model_dump(),
            known_providers={provider.name for provider in settings.oidc},
            mail_configured=settings.mail_configured,
        )
        changed = await store.change_room(name, lambda room: replace(room, policy=policy))
        return room_out(changed)

    @app.get(
        "/api/v1/rooms/{name}/policy/emails/{address:path}",
        dependencies=guarded,
        responses=NOT_FOUND,
    )
    async def email_listed(name: str, address: EmailAddress) -> EmailListedOut:
        """Whether the room's policy lists this address, as allowed or as a host: the only way
        the API tells of one, since it never lists them."""
        room = await store.get_room(name)
        if room is None:
            raise RoomNotFound()
        wanted = address.strip().lower()
        return EmailListedOut(
            allowed=wanted in room.policy.allowed_emails, host=wanted in room.policy.host_emails
        )

    # A response class without a media type: the schema says text/plain for the metrics (as
    # PROMETHEUS_TEXT declares) and JSON for the errors.
    @app.get(
        "/metrics",
        dependencies=guarded,
        response_class=Response,
        responses=PROMETHEUS_TEXT,
        response_model=None,
    )
    async def prometheus() -> Response:
        """Prometheus text format. Scrape with `authorization: {credentials: <admin token>}`."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.delete("/api/v1/rooms/{name}", status_code=204, dependencies=guarded, responses=NOT_FOUND)
    async def delete_room(name: str) -> Response:
        admissions = await store.list_admissions(name)
        if not await store.delete_room(name, time.time()):
            raise RoomNotFound()
        for admission in admissions:
            # Every replica cuts the deleted room's open connections at once.
            await Cut(admission.id, "room deleted").send(store)
        # Its hosts' log goes with it (all of it: a day ahead covers a clock a little off), so
        # that a room made again under the name does not show its hosts the old one. Its bans
        # stay (docs/privacy.md): the same name made again keeps its trolls out.
        await store.purge_audit(name, time.time() + 86_400)
        # Its registrations go with it: names, notes and the addresses of those waiting.
        if registrations is not None:
            await registrations.forget_room(name)
        # And its invitations not sent yet: never sent, their addresses erased.
        if invitations is not None:
            await invitations.forget_room(name)
        # Its evidence stays (it may be needed after the room is gone); the chain says where
        # the room ended, and a room made again under the name exports from its own start.
        _record(name, Kind.ROOM_DELETED)
        return Response(status_code=204)

    @app.post(
        "/api/v1/rooms/{name}/invites", status_code=201, dependencies=guarded, responses=NOT_FOUND
    )
    async def create_invite(name: str, body: InviteIn) -> NewInviteOut:
        if await store.get_room(name) is None:
            raise RoomNotFound()
        made = make_invite(
            room=name,
            name=body.name,
            role=body.role,
            max_uses=body.max_uses,
            lifetime_seconds=body.expires_in_seconds,
            now=time.time(),
        )
        # What a join through the link needs from the gate, worked out now so that a join can
        # be one store call (Store.join_plainly).
        await store.add_invite(made.invite, join_plan(made.invite, pseudonym_key))
        link = f"{settings.public_url}/j/{made.token}"
        return NewInviteOut(**_invite_out(made.invite).model_dump(), link=link)

    @app.get("/api/v1/rooms/{name}/invites", dependencies=guarded, responses=NOT_FOUND)
    async def list_invites(
        name: str, named: InviteNameQuery = None
    ) -> list[InviteOut | InviteListed]:
        """The room's invites, without names. With `name`: only the invites that
        `invites/revoke` would revoke for it (still working, made for a name it names), with
        their names, so that a revocation can say whose invite it is before it is done."""
        if await store.get_room(name) is None:
            raise RoomNotFound()
        if named is not None:
            return [_invite_out(i) for i in _working_invites(await store.list_invites(name), named)]
        return [
            InviteListed(**_invite_out(invite).model_dump(exclude={"name"}))
            for invite in await store.list_invites(name)
        ]

    @app.delete(
        "/api/v1/invites/{invite_id}", status_code=204, dependencies=guarded, responses=NOT_FOUND
    )
    async def revoke_invite(invite_id: str) -> Response:
        """Revoke an invite by its id, logged in its room's audit log as the admin's."""
        invite = await store.get_invite(invite_id)
        if invite is None or not await desk.revoke_invite(ADMIN, invite.room, invite, time.time()):
            raise NotFound(N_("No invite has this id."))
        if invitations is not None:
            # Its invitation e-mail, if one waits to be sent, never goes (its address erased).
            await invitations.revoke(invite_id)
        return Response(status_code=204)

    @app.get("/api/v1/rooms/{name}/participants", dependencies=guarded, responses=NOT_FOUND)
    async def roster(name: str, who: WhoQuery = None) -> list[ParticipantOut]:
        """Who is in the meeting (live admissions), hosts first; with `who`, those it names:
        the one whose id it is, else those whose shown name it names, newest first (none, one,
        or several to choose from)."""
        now = time.time()
        if who is not None:
            return [_participant_out(a) for a in await desk.named(ADMIN, name, who, now)]
        return [_participant_out(a) for a in await desk.roster(ADMIN, name, now)]

    @app.post("/api/v1/rooms/{name}/remove", dependencies=guarded, responses=NOT_FOUND)
    async def remove(name: str, body: RemoveIn) -> RemovedOut:
        """Remove a participant at once (every replica cuts their connections), and with
        `ban` bar their identity from the meeting, even if it moves. 404 not_found: nobody in
        the room is `who`; 422 (body.who) with their ids: a name that names several, or a
        host named by anything but their id or their shown name exactly."""
        now = time.time()
        found = await desk.named(ADMIN, name, body.who, now, reading=False)
        target = _the_one(found, "participants")
        if target is None:
            raise NotFound(N_("Nothing to do: this participant is no longer in the meeting."))
        if not reaches(body.who, target):
            raise _refused(
                ("body", "who"),
                f"is like the name of a host, {target.name} ({target.id}): to act on a host,"
                " give their id or their shown name exactly",
            )
        until = None if body.ban_seconds is None else now + body.ban_seconds
        banning = body.ban or body.ban_seconds is not None
        if banning:
            done = await desk.ban(ADMIN, name, target.id, until, now)
        else:
            done = await desk.revoke(ADMIN, name, target.id, now)
        if not done:
            raise NotFound(N_("Nothing to do: this participant is no longer in the meeting."))
        return RemovedOut(
            id=target.id,
            name=target.name,
            banned=banning,
            banned_until=until,
        )

    @app.post("/api/v1/rooms/{name}/unban", dependencies=guarded, responses=NOT_FOUND)
    async def unban(name: str, body: UnbanIn) -> UnbannedOut:
        """Lift a ban: the person may come back (with a new invite or sign-in; what was revoked
        stays revoked). 404 not_found: no banned admission of the room is `who`; 422 (body.who)
        with their ids: a name that names several people."""
        now = time.time()
        target = _the_one(await desk.banned(ADMIN, name, body.who, now), "banned people")
        if target is None or not await desk.unban(ADMIN, name, target.id, now):
            raise NotFound(N_("Nothing to do: this participant is not known in this meeting."))
        return UnbannedOut(id=target.id, name=target.name)

    @app.post("/api/v1/rooms/{name}/lockdown", dependencies=guarded, responses=NOT_FOUND)
    async def lockdown(name: str) -> LockdownOut:
        """Emergency: lock the room, remove every attendee at once (hosts stay), quiet mode on;
        attendees come back only once the room is unlocked."""
        now = time.time()
        removed = await desk.lockdown(ADMIN, name, now)
        return LockdownOut(room=room_out(await desk.room(ADMIN, name, now)), removed=removed)

    @app.post("/api/v1/rooms/{name}/lock", dependencies=guarded, responses=NOT_FOUND)
    async def lock(name: str) -> RoomOut:
        """Nobody new is admitted (hosts excepted); who is in stays."""
        return room_out(await desk.set_locked(ADMIN, name, True, time.time()))

    @app.post("/api/v1/rooms/{name}/unlock", dependencies=guarded, responses=NOT_FOUND)
    async def unlock(name: str) -> RoomOut:
        """Let people join again; this also ends a lockdown (its approval requirement)."""
        return room_out(await desk.set_locked(ADMIN, name, False, time.time()))

    @app.post(
        "/api/v1/rooms/{name}/move", dependencies=guarded, responses={**NOT_FOUND, **CONFLICT}
    )
    async def move(name: str, body: MoveIn) -> RoomOut:
        """Continue the meeting in the new room `to`: everyone still admitted is carried over
        and their browsers reconnect there; removed and banned people stay behind, and the old
        room stays locked. Answers the new room."""
        return room_out(await desk.move(ADMIN, name, time.time(), to=body.to))

    @app.get("/api/v1/rooms/{name}/audit", dependencies=guarded, responses=NOT_FOUND)
    async def audit(name: str) -> list[AuditOut]:
        """The room's log of host actions (the admin's too), newest first."""
        return [_audit_out(e) for e in await desk.audit(ADMIN, name, time.time())]

    @app.post("/api/v1/rooms/{name}/invites/revoke", dependencies=guarded, responses=NOT_FOUND)
    async def revoke_invite_by_name(name: str, body: InviteRevokeIn) -> InviteRevokedOut:
        """Revoke the room's one invite made for `name` (look-alikes match too) that still
        works (not revoked, expired or used up), logged in the room's audit log as the admin's.
        404 not_found if none is; 422 (body.name) with their ids if several are."""
        now = time.time()
        await desk.room(ADMIN, name, now)
        found = _working_invites(await store.list_invites(name), body.name, now)
        if not found:
            raise NotFound()
        if len(found) > 1:
            raise _refused(("body", "name"), _several(len(found), "invites", found))
        if not await desk.revoke_invite(ADMIN, name, found[0], now):
            raise NotFound(N_("No invite has this id."))
        if invitations is not None:
            await invitations.revoke(found[0].id)
        return InviteRevokedOut(id=found[0].id, name=found[0].name)

    app.include_router(
        invitation_routes(
            settings,
            store,
            desk,
            invitations,
            guarded=guarded,
            import_errors={**NOT_FOUND, **IMPORT_CONFLICT},
            progress_errors=NOT_FOUND,
        )
    )
    app.include_router(
        registration_routes(
            store,
            desk,
            registrations,
            invitations,
            guarded=guarded,
            errors={**NOT_FOUND, **REGISTRATION_CONFLICT},
        )
    )

    @app.get("/api/v1/store/memory", dependencies=guarded)
    async def store_memory() -> StoreMemoryOut:
        """Whether the store is known to have lost its memory (checked now)."""
        lost = await check_memory(store)
        return StoreMemoryOut(lost=lost, reason=store.continuity.reason)

    @app.post("/api/v1/store/memory/acknowledge-loss", dependencies=guarded)
    async def acknowledge_store_loss(request: Request) -> StoreMemoryOut:
        """An admin's word that the store's lost memory has been dealt with (bans and locks
        checked, set again where needed): every replica admits again within a second or two."""
        reason = await acknowledge_loss(store)
        if reason is not None:
            log.warning(
                "an admin acknowledged that store %s lost its memory (%s); joins are admitted"
                " again [%s]",
                store.continuity.address,
                reason,
                request_id(request.scope),
            )
        return StoreMemoryOut(
            lost=store.continuity.lost,
            reason=store.continuity.reason,
            acknowledged=reason is not None,
        )

    return AdminAuth(
        JsonBodies(app, settings.limits.max_admin_body_bytes),
        settings.admin.token.get_secret_value().encode(),
    )
