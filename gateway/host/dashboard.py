"""The host dashboard: a room's live roster and the host actions on it, as pages and as JSON.

Routes only parse, check the request (same origin, host admission, CSRF token), call HostDesk and
render; every decision about who may do what lives in gateway/host/actions.py. Each action works
without script: a form without `confirmed=1` gets a confirmation page repeating it with that field.
What it says (questions, outcomes, the page's script's messages) is in the request's language.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from babel.dates import format_date, format_time, get_datetime_format
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.admission.lobby import REQUEST_ID_SHAPE, LobbyRequest, LobbyState
from gateway.admission.pipeline import AdmissionPipeline
from gateway.admission.policy import describe_policy
from gateway.edge.languages import current
from gateway.edge.rendering import wants_json
from gateway.edge.requests import cookie_name, read_cookie, request_id, same_origin
from gateway.edge.templating import render
from gateway.errors import (
    CrossSiteRequest,
    CsrfFailed,
    InvalidInput,
    MeetgateError,
    NotFound,
    NotHost,
    retry_after_seconds,
)
from gateway.evidence.entries import EvidenceError
from gateway.evidence.entries import moment as evidence_moment
from gateway.evidence.log import EvidenceLog, ExportBusy
from gateway.host.actions import ADMISSION_ID_SHAPE, HostDesk
from gateway.host.policy_form import (
    POLICY_FORM_BYTES,
    max_policy_fields,
    passed_on,
    policy_from_form,
    policy_view,
)
from gateway.i18n import DEFAULT, N_, Language, chosen, gettext, translations
from gateway.settings import Settings
from gateway.store.records import (
    Admission,
    AuditEntry,
    AuditFacts,
    AuditKind,
    ChatLimits,
    Role,
    Room,
    RoomPolicy,
)
from gateway.web.forms import MAX_FORM_BYTES, MAX_FORM_FIELDS, read_form

HOST_PREFIX = "/_meetgate/host"
# A room's evidence export, as its hosts download it: /_meetgate/host/<room>/evidence.
EVIDENCE_PATH = "evidence"
EVIDENCE_TYPE = "application/x-ndjson"


class EvidenceBroken(MeetgateError):
    """The room's stored evidence does not hold together: no file is made of it."""

    code = "evidence_broken"
    title = N_("The evidence cannot be exported")
    message = N_(
        "This room's evidence log does not hold together (entries were lost or changed where it"
        " is kept), so no file was made. An admin can see why with meetgate evidence export."
    )


class EvidenceBeingPrepared(MeetgateError):
    """An export of this room's evidence is being made (one at a time), or this host made one a
    moment ago: not a second read and signature of the chain, a retry shortly."""

    status = 429
    code = "evidence_being_prepared"
    title = N_("The evidence is being prepared")
    message = N_(
        "An export of this room's evidence is being prepared, or was made a moment ago. Please"
        " try again in a moment."
    )

    def __init__(self, retry_after: float) -> None:
        super().__init__()
        self.retry_after = retry_after_seconds(retry_after)


# The hosts' download holds the last days of the room's evidence (an admin exports any stretch
# with meetgate evidence export), and a host downloads it once in so many seconds.
EVIDENCE_DAYS = 7
EVIDENCE_COOLDOWN_SECONDS = 3.0
# Hosts remembered for the cool-down at most (entries past it are forgotten early).
EVIDENCE_COOLDOWN_HOSTS = 10_000

# How long a ban lasts, as the form offers it (seconds, None for good; choice; phrase).
BAN_DURATIONS: dict[str, tuple[float | None, str, str]] = {
    "1h": (3600.0, N_("1 hour"), N_("for 1 hour")),
    "1d": (86400.0, N_("1 day"), N_("for 1 day")),
    "7d": (7 * 86400.0, N_("7 days"), N_("for 7 days")),
    "forever": (None, N_("for good"), N_("for good")),
}
AUDIT_SHOWN = 50
# The lobby's answers, by the action that gives them.
LOBBY_ANSWERS = {
    "approve": LobbyState.APPROVED,
    "deny": LobbyState.DENIED,
    "deny-ban": LobbyState.BANNED,
}

# What the dashboard says after a form without script led back to it (`?done=<key>`): fixed
# texts only, so a link cannot make the page say anything else.
NOTICES = {
    "policy": N_(
        "The new policy is saved: it decides every join attempt from now on."
        " People already in the meeting stay."
    ),
    "language": N_(
        "The room's language is saved: its pages speak it to everyone who has not chosen"
        " a language of their own."
    ),
    "chat-limits": N_("The chat limits are saved: they hold from the next message on."),
}
# Actions done as soon as asked: nothing in them needs a second thought.
WITHOUT_CONFIRMATION = frozenset({"language", "chat-limits"})
# The chat limits form's fields, each a whole number; empty is the gate's default.
CHAT_LIMIT_FIELDS = ("chat_per_10s", "chat_burst", "chat_max_bytes", "guard_strikes")
# What the page shows for a participant's role, the way they came in and each entry of the
# host actions' log (the roster's JSON keeps the values themselves).
ROLE_LABELS = {
    # Translators: a participant's role on the host dashboard
    "host": N_("host"),
    "attendee": N_("attendee"),
}
VIA_LABELS = {
    # Translators: how a participant was admitted, on the host dashboard: with an invite link,
    # by signing in with an organisation's account (OpenID Connect), with an e-mail code, or
    # let in from the lobby
    "invite": N_("invite"),
    "oidc": N_("oidc"),
    "email": N_("email"),
    "lobby": N_("lobby"),
}
AUDIT_ACTIONS = {
    # Translators: an entry of the host dashboard's log reads "<host> revoke: <person>"
    "revoke": N_("revoke"),
    "ban": N_("ban"),
    # Translators: an admin let a banned person come back (`meetgate room unban`)
    "unban": N_("lift ban"),
    # Translators: an entry of the host dashboard's log reads "admin viewed the roster": an
    # admin read the list of who is in the meeting (`meetgate room roster`)
    "view roster": N_("viewed the roster"),
    "lock": N_("lock"),
    "unlock": N_("unlock"),
    "lockdown": N_("lockdown"),
    "move": N_("move"),
    "change policy": N_("change policy"),
    "change language": N_("change language"),
    "quiet on": N_("quiet mode on"),
    "quiet off": N_("quiet mode off"),
    "change chat limits": N_("change chat limits"),
    "approve": N_("approve"),
    "deny": N_("deny"),
    "deny and ban": N_("deny and ban"),
    # Issue 19's invitations page (gateway/host/invitation_pages.py): each entry says how many
    # people it concerned, never whom.
    # Translators: the host dashboard's log reads "<host> approved registrations: 5"
    "approve registrations": N_("approved registrations"),
    "deny registrations": N_("denied registrations"),
    # Translators: the host dashboard's log reads "<host> invited by e-mail: 1"
    "invite by e-mail": N_("invited by e-mail"),
    # Translators: the host dashboard's log reads "<host> made a personal link: 1"
    "invite with a link": N_("made a personal link"),
    # Translators: the host dashboard's log reads "<host> imported a list to send: 120"
    "import and send": N_("imported a list to send"),
    "import as links": N_("imported a list as links"),
    # Entries written before each setting had its own: a host changed the room's registration
    # or the meeting's time.
    # Translators: a host changed the room's registration or the meeting's time
    "change meeting": N_("change the meeting's registration or time"),
    # Translators: the host dashboard's log reads "admin viewed the registrations": an admin
    # read a page of the room's registrations (`meetgate registration list`)
    "view registrations": N_("viewed the registrations"),
    # Translators: the room started taking registrations on its registration page
    "registration on": N_("registration on"),
    "registration off": N_("registration off"),
    # Translators: the host dashboard's log reads "<host> change auto-approval: uni.example;
    # 2 addresses": the domains and addresses whose registrations are approved at once
    "change auto-approval": N_("change auto-approval"),
    # Translators: the host dashboard's log reads "admin change series: conf-2026": rooms of
    # one series share what registrations were seen before
    "change series": N_("change series"),
    # Translators: the host dashboard's log reads "<host> change the meeting's time: from … to …"
    "change meeting time": N_("change the meeting's time"),
    # The admin's lists of invitees (`meetgate invite import`), as the hosts' above.
    "import invites": N_("imported a list as links"),
    "send invites": N_("imported a list to send"),
    # Translators: the host dashboard's log reads "<host> sent failed invitations again: 3"
    "resend invitations": N_("sent failed invitations again"),
    # Translators: the host dashboard's log reads "<host> revoked a batch's invitations: 40":
    # their links stop working
    "revoke invitations": N_("revoked a batch's invitations"),
    # The wire guard's removals (gateway/proxy/gate.py, GUARD_ACTION: "guard: " and the rule
    # broken), in the log as "Meetgate <action>: <person>".
    # Translators: the host dashboard's log reads "Meetgate removed automatically for flooding
    # the meeting: <person>": Meetgate removed someone who sent far too much, too fast (chat,
    # reactions, raised hands)
    "guard: rate": N_("removed automatically for flooding the meeting"),
    # Translators: the host dashboard's log reads "Meetgate removed automatically …: <person>",
    # for someone who kept sending messages longer than the room allows
    "guard: size": N_("removed automatically for sending overlong messages"),
    # Translators: the host dashboard's log reads "Meetgate removed automatically …: <person>",
    # for an attendee who kept writing while only hosts could chat
    "guard: quiet": N_("removed automatically for writing in quiet mode"),
    # Translators: the host dashboard's log reads "Meetgate removed automatically …: <person>",
    # for someone whose browser kept sending to places outside this meeting (other rooms,
    # other servers), which no normal Jitsi client does
    "guard: address": N_("removed automatically for sending outside the meeting"),
    # Entries written before the log named the rule.
    # Translators: the host dashboard's log reads "Meetgate removed automatically: <person>"
    "guard removal": N_("removed automatically"),
}
# What the dashboard's script says (templates/static/host.js), translated into the page.
SCRIPT_MESSAGES = {
    "revoke": N_("Remove {name} from the meeting?"),
    "ban": N_("Remove and ban {name} {duration}?"),
    "approve": N_("Let {name} in?"),
    "deny": N_("Turn {name} away?"),
    "deny-ban": N_("Turn {name} away and ban them from this meeting?"),
    "proof_of_work": N_(
        "Browsers must solve a proof-of-work (difficulty {difficulty}) before they are counted."
    ),
    "not_host": N_("You are no longer a host of this room."),
    "roster_failed": N_("Could not update the roster ({status}); retrying."),
    "updated": N_("Updated {time}"),
    "lost_contact": N_("Lost contact with Meetgate; retrying."),
    "action_failed": N_("The action failed ({status})."),
    "action_lost": N_(
        "Lost contact with Meetgate: the action may not have happened. Check the roster."
    ),
    # Translators: an entry of the host dashboard's log after the host's name: what they did
    # and, after it, whom it was about or what came of it ("revoke: Ada", "lockdown: 3 removed")
    "audit_entry": N_("{action}: {detail}"),
}

RegistryCounts = Callable[[str], int]


def shown(message: str, **values: object) -> str:
    """`message` in the current request's language, its `{named}` values filled in after."""
    translated = gettext(current.get(), message)
    return translated.format(**values) if values else translated


def script_messages() -> dict[str, Any]:
    """The dashboard script's messages and labels in the current request's language."""
    language = current.get()

    def translated(messages: dict[str, str]) -> dict[str, str]:
        return {key: gettext(language, message) for key, message in messages.items()}

    return {
        **translated(SCRIPT_MESSAGES),
        "roles": translated(ROLE_LABELS),
        "via": translated(VIA_LABELS),
        "actions": translated(AUDIT_ACTIONS),
    }


def dashboard_path(room: str) -> str:
    return f"{HOST_PREFIX}/{room}"


class CsrfTokens:
    """Stateless CSRF tokens: a keyed hash over the host's admission id and the room, so a token
    is good only for that host's session and that room (and dies with the admission)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"meetgate host dashboard csrf v1", hashlib.sha256).digest()

    def issue(self, admission_id: str, room: str) -> str:
        message = f"{admission_id}\n{room}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def check(self, token: str | None, admission_id: str, room: str) -> None:
        expected = self.issue(admission_id, room).encode()
        given = (token or "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            raise CsrfFailed()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did: `room` is the dashboard to show next (a move changes it)."""

    done: bool
    message: str
    room: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Confirmation:
    question: str
    explanation: str
    button: str
    danger: bool = False


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """A parsed, checked action request: the action, the acting host, the room, the form's
    fields."""

    action: str
    host: Admission
    room: str
    fields: dict[str, str]
    target: Admission | None
    now: float
    waiting: LobbyRequest | None = None
    policy: RoomPolicy | None = None

    @property
    def target_name(self) -> str:
        if self.waiting is not None:
            return self.waiting.name
        if self.target is not None:
            return self.target.name
        return shown(N_("this participant"))


def participant_view(admission: Admission, connections: int) -> dict[str, Any]:
    return {
        "id": admission.id,
        "name": admission.name,
        "role": admission.role.value,
        "via": admission.via,
        "since": admission.created_at,
        "connections": connections,
    }


def lobby_view(request: LobbyRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "name": request.name,
        "message": request.message,
        "via": request.via,
        "since": request.created_at,
        "guest": request.guest,
    }


def audit_view(entry: AuditEntry, language: Language) -> dict[str, Any]:
    return {
        "at": entry.at,
        "actor_name": entry.actor_name,
        "action": entry.action,
        "target": entry.target,
        "detail": audit_detail(entry, language),
    }


def audit_detail(entry: AuditEntry, language: Language) -> str:
    """What a host action's log entry says after the action, in `language`. An entry written
    before entries kept their facts as values has English text, shown as it was written."""
    facts = entry.facts
    if facts is None:
        return entry.detail
    words = translations(language)
    if facts.kind is AuditKind.BANNED_UNTIL and facts.until is not None:
        # Translators: the host dashboard's log, after "ban: ": whom, and when the ban ends (a
        # date and time in UTC, as the language writes them)
        message = words.gettext("{name} until {until} UTC")
        return message.format(name=facts.name, until=moment(facts.until, language))
    if facts.kind is AuditKind.REMOVED:
        # Translators: the host dashboard's log, after "lockdown: ": how many attendees it removed
        message = words.ngettext("{count} removed", "{count} removed", facts.count)
        return message.format(count=facts.count)
    if facts.kind is AuditKind.MOVED:
        # Translators: the host dashboard's log, after "move: ": how many participants the move
        # carried over to the new room
        message = words.ngettext("{count} moved", "{count} moved", facts.count)
        return message.format(count=facts.count)
    if facts.kind is AuditKind.POLICY and facts.policy is not None:
        return describe_policy(facts.policy, language)
    if facts.kind is AuditKind.LANGUAGE:
        named = chosen(facts.language)
        return facts.language if named is None else named.name
    if facts.kind is AuditKind.CHAT_LIMITS and facts.limits is not None:
        return describe_chat_limits(facts.limits, language)
    if facts.kind in COUNTED:
        return counted(facts, language)
    if facts.kind is AuditKind.AUTO_APPROVAL:
        # Translators: the host dashboard's log, after "change auto-approval: " when no domain
        # is approved at once
        domains = words.gettext(", ").join(facts.domains) or words.gettext("no domain")
        # Translators: the host dashboard's log, after "change auto-approval: ": the domains,
        # then how many addresses are approved at once (never which)
        addresses = words.ngettext("{count} address", "{count} addresses", facts.count)
        return words.gettext("{domains}; {addresses}").format(
            domains=domains, addresses=addresses.format(count=facts.count)
        )
    if facts.kind is AuditKind.SERIES:
        # Translators: the host dashboard's log, after "change series: " when the room left its
        # series
        return facts.series or words.gettext("no series")
    if facts.kind is AuditKind.MEETING_TIME:
        # Translators: the host dashboard's log, a meeting without a start or an end
        unset = words.gettext("not set")
        starts = unset if facts.starts is None else moment(facts.starts, language)
        ends = unset if facts.ends is None else moment(facts.ends, language)
        # Translators: the host dashboard's log, after "change the meeting's time: ": its start
        # and end (dates and times in UTC, as the language writes them, or "not set")
        return words.gettext("from {starts} to {ends} UTC").format(starts=starts, ends=ends)
    return facts.name


# The kinds of entry that say how many people an action concerned (never whom).
COUNTED = frozenset({AuditKind.REGISTRATIONS, AuditKind.INVITATIONS})


def counted(facts: AuditFacts, language: Language) -> str:
    """How many registrations or invitations an entry concerned, and how many asked for were
    not (registrations not answered, lines of a list refused), in `language`."""
    words = translations(language)
    if facts.kind is AuditKind.REGISTRATIONS:
        # Translators: the host dashboard's log, after "approved registrations: "
        text = words.ngettext("{count} registration", "{count} registrations", facts.count)
        # Translators: the host dashboard's log: "3 registrations, 1 not answered" (it had
        # been answered or changed meanwhile)
        more = words.ngettext(
            "{done}, {refused} not answered", "{done}, {refused} not answered", facts.refused
        )
    else:
        # Translators: the host dashboard's log, after "imported a list to send: "
        text = words.ngettext("{count} invitation", "{count} invitations", facts.count)
        # Translators: the host dashboard's log: "120 invitations, 3 lines refused" (lines of
        # an imported list that were not an invitee)
        more = words.ngettext(
            "{done}, {refused} line refused", "{done}, {refused} lines refused", facts.refused
        )
    text = text.format(count=facts.count)
    return more.format(done=text, refused=facts.refused) if facts.refused else text


def describe_chat_limits(limits: ChatLimits, language: Language) -> str:
    """A room's chat limits in words, in `language`: each limit, or that it is the gate's."""
    words = translations(language)
    default = words.gettext("the gate's default")
    parts = [
        # Translators: the host dashboard, a room's chat limits; each value is a number or
        # "the gate's default"
        words.gettext("messages per 10 seconds: {value}").format(value=limits.per_10s or default),
        words.gettext("at once: {value}").format(value=limits.burst or default),
        words.gettext("longest message: {value} bytes").format(value=limits.max_bytes or default)
        if limits.max_bytes
        else words.gettext("longest message: {value}").format(value=default),
    ]
    if limits.strikes is None:
        parts.append(words.gettext("removal after refused messages: {value}").format(value=default))
    elif limits.strikes == 0:
        parts.append(words.gettext("never removed automatically"))
    else:
        parts.append(
            words.gettext("removal after refused messages: {value}").format(value=limits.strikes)
        )
    parts.append(
        words.gettext("in quiet mode, private messages to hosts allowed")
        if limits.private_to_hosts
        else words.gettext("in quiet mode, no private messages")
    )
    # Translators: the separator between the items of a list of chat limits
    return words.gettext("; ").join(parts)


def chat_limits_view(room: Room) -> dict[str, Any]:
    """The chat limits form's values: empty for the gate's default."""
    return {
        "chat_per_10s": room.chat_per_10s or "",
        "chat_burst": room.chat_burst or "",
        "chat_max_bytes": room.chat_max_bytes or "",
        "guard_strikes": "" if room.guard_strikes is None else room.guard_strikes,
        "private_to_hosts": room.quiet_private_to_hosts,
        "summary": describe_chat_limits(ChatLimits.of(room), current.get()),
    }


def chat_limits_from_form(fields: dict[str, str]) -> ChatLimits:
    """The chat limits a form asks for; InvalidInput for a value that is not a whole number."""
    numbers: dict[str, int | None] = {}
    for name in CHAT_LIMIT_FIELDS:
        text = fields.get(name, "").strip()
        if text == "":
            numbers[name] = None
        elif text.isascii() and text.isdigit() and len(text) <= 9:
            numbers[name] = int(text)
        else:
            raise InvalidInput(N_("Each chat limit is a whole number, or empty for the default."))
    return ChatLimits(
        per_10s=numbers["chat_per_10s"] or 0,
        burst=numbers["chat_burst"] or 0,
        max_bytes=numbers["chat_max_bytes"] or 0,
        strikes=numbers["guard_strikes"],
        private_to_hosts=fields.get("quiet_private_to_hosts") == "1",
    )


def moment(at: float, language: Language) -> str:
    """A date and time (to the minute) as `language` writes them, in UTC: the page is the same
    for every host, wherever they are, so it says which time it means."""
    try:
        when = datetime.fromtimestamp(at, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{at:.0f}"  # no date a calendar holds (a hand edit): the number as it is
    # Babel's own way of joining a date and a time (format_datetime), with a shorter time.
    return (
        str(get_datetime_format("medium", locale=language.locale))
        .replace("'", "")
        .replace("{0}", format_time(when, "short", tzinfo=UTC, locale=language.locale))
        .replace("{1}", format_date(when, "medium", locale=language.locale))
    )


def room_view(room: Room) -> dict[str, Any]:
    return {
        "name": room.name,
        "title": room.title,
        "locked": room.locked,
        "approval_required": room.approval_required,
        "moved_to": room.moved_to,
        "quiet": room.quiet,
    }


def clock(at: float) -> str:
    """A time for the page before its script shows it in the viewer's own time zone."""
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M UTC")


def iso_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _ban_duration(fields: dict[str, str]) -> tuple[float | None, str]:
    choice = BAN_DURATIONS.get(fields.get("duration", ""))
    if choice is None:
        raise InvalidInput(N_("Choose how long the ban lasts: 1h, 1d, 7d or forever."))
    seconds, _, phrase = choice
    return seconds, shown(phrase)


@dataclass(frozen=True, slots=True)
class Question:
    """How an action's confirmation reads, as messages: translated, and filled in with the
    action's values (a name, a duration, a policy), when a page or the script asks it."""

    question: str
    explanation: str
    button: str
    danger: bool = False


# What each action that needs a second thought asks before it is done.
QUESTIONS = {
    "revoke": Question(
        SCRIPT_MESSAGES["revoke"],
        N_("They drop out at once. Their invite cannot bring them back with this admission."),
        N_("Remove"),
        danger=True,
    ),
    "ban": Question(
        SCRIPT_MESSAGES["ban"],
        N_(
            "They drop out at once and cannot come back into this meeting, even if it moves,"
            " while the ban lasts."
        ),
        N_("Remove and ban"),
        danger=True,
    ),
    "approve": Question(
        SCRIPT_MESSAGES["approve"],
        N_("They go straight into the meeting under the name shown here."),
        N_("Let in"),
    ),
    "deny": Question(
        SCRIPT_MESSAGES["deny"],
        N_("They see that a host did not let them in. They may ask again."),
        N_("Turn away"),
        danger=True,
    ),
    "deny-ban": Question(
        N_("Turn {name} away and ban them?"),
        N_(
            "They see that a host did not let them in, and cannot ask again or come in by any"
            " other way while the meeting lasts, even if it moves."
        ),
        N_("Turn away and ban"),
        danger=True,
    ),
    "lock": Question(
        N_("Lock the room?"),
        N_("Nobody new can join. Everyone already in the meeting stays."),
        N_("Lock"),
    ),
    "unlock": Question(
        N_("Unlock the room?"),
        N_("People with a valid invite can join again; this also ends a lockdown."),
        N_("Unlock"),
    ),
    "policy": Question(
        N_("Change who may enter this room?"),
        N_("From the next join attempt on: {policy}. People already in the meeting stay."),
        N_("Save the policy"),
    ),
    "quiet": Question(
        N_("Switch on quiet mode?"),
        N_(
            "Only hosts can chat. Attendees' group and private messages are refused, except"
            " private messages to hosts if the chat limits allow them."
        ),
        N_("Quiet mode on"),
    ),
    "unquiet": Question(
        N_("Switch off quiet mode?"),
        N_("Everyone can chat again, within the chat limits."),
        N_("Quiet mode off"),
    ),
    "lockdown": Question(
        N_("Declare an emergency lockdown?"),
        N_(
            "The room is locked, every attendee is removed at once and only hosts can chat."
            " Hosts stay. Attendees cannot come back on their own until a host unlocks the room."
        ),
        N_("Lockdown now"),
        danger=True,
    ),
    "move": Question(
        N_("Move the meeting to a fresh room?"),
        N_(
            "Everyone still admitted is carried over to a new room with an unguessable"
            " name; their browsers reconnect by themselves. Removed and banned people stay"
            " behind."
        ),
        N_("Move the meeting"),
    ),
}


def _confirmation(request: ActionRequest) -> Confirmation:
    """The question asking a host to confirm the request's action, in the request's language."""
    asked = QUESTIONS[request.action]
    values = _question_values(request)
    return Confirmation(
        shown(asked.question, **values),
        shown(asked.explanation, **values),
        shown(asked.button),
        danger=asked.danger,
    )


def _question_values(request: ActionRequest) -> dict[str, str]:
    """What an action's question names: whom it is about, for how long, which policy."""
    if request.action == "ban":
        return {"name": request.target_name, "duration": _ban_duration(request.fields)[1]}
    if request.action == "policy" and request.policy is not None:
        return {"policy": describe_policy(request.policy, current.get())}
    if request.action == "revoke" or request.action in LOBBY_ANSWERS:
        return {"name": request.target_name}
    return {}


def _confirmed_fields(request: ActionRequest) -> dict[str, str]:
    """The fields the confirmation page posts again, with `confirmed=1` added by the page."""
    if request.action == "policy":
        return passed_on(request.fields)
    kept = ("admission", "duration", "request", "record_name")
    return {k: v for k, v in request.fields.items() if k in kept}


def _record_name(request: ActionRequest) -> bool:
    """The host chose to keep the shown name in the evidence (the form's box, off unless
    ticked)."""
    return request.fields.get("record_name") == "1"


def evidence_filename(room: str, at: float, *, after_break: bool = False) -> str:
    """What a room's export is saved as: the room (a-z, 0-9, - and _ only), `after-break` when
    it holds only what follows a break in the chain, and the time."""
    what = "evidence-after-break" if after_break else "evidence"
    return f"{room}-{what}-{datetime.fromtimestamp(at, UTC).strftime('%Y%m%dT%H%M%SZ')}.jsonl"


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """An action asked without `confirmed=1`: nothing is done, the host is asked first."""

    confirmation: Confirmation


ActionAnswer = Unconfirmed | Outcome


class DashboardActions:
    """The host actions as the dashboard offers them: each calls HostDesk and says what came of
    it in the request's language."""

    def __init__(self, desk: HostDesk, providers: list[tuple[str, str]]) -> None:
        self._desk = desk
        self._providers = providers
        self.by_name: dict[str, Callable[[ActionRequest], Awaitable[Outcome]]] = {
            "revoke": self.revoke,
            "ban": self.ban,
            "lock": self.lock,
            "unlock": self.unlock,
            "lockdown": self.lockdown,
            "move": self.move,
            "approve": self.answer_lobby,
            "deny": self.answer_lobby,
            "deny-ban": self.answer_lobby,
            "policy": self.change_policy,
            "language": self.change_language,
            "quiet": self.quiet,
            "unquiet": self.unquiet,
            "chat-limits": self.change_chat_limits,
        }

    async def revoke(self, request: ActionRequest) -> Outcome:
        admission_id = request.fields.get("admission", "")
        done = ADMISSION_ID_SHAPE.fullmatch(admission_id) is not None and await self._desk.revoke(
            request.host, request.room, admission_id, request.now, record_name=_record_name(request)
        )
        message = (
            shown(N_("{name} was removed from the meeting."), name=request.target_name)
            if done
            else shown(N_("Nothing to do: this participant is no longer in the meeting."))
        )
        return Outcome(done, message, request.room)

    async def ban(self, request: ActionRequest) -> Outcome:
        admission_id = request.fields.get("admission", "")
        seconds, label = _ban_duration(request.fields)
        until = None if seconds is None else request.now + seconds
        done = ADMISSION_ID_SHAPE.fullmatch(admission_id) is not None and await self._desk.ban(
            request.host,
            request.room,
            admission_id,
            until,
            request.now,
            record_name=_record_name(request),
        )
        message = (
            shown(
                N_("{name} was removed and banned {duration}."),
                name=request.target_name,
                duration=label,
            )
            if done
            else shown(N_("Nothing to do: this participant is not known in this meeting."))
        )
        return Outcome(done, message, request.room, {"until": until})

    async def lock(self, request: ActionRequest) -> Outcome:
        room = await self._desk.set_locked(request.host, request.room, True, request.now)
        message = shown(N_("The room is locked: nobody new can join."))
        return Outcome(True, message, room.name, {"locked": True})

    async def unlock(self, request: ActionRequest) -> Outcome:
        room = await self._desk.set_locked(request.host, request.room, False, request.now)
        message = shown(N_("The room is open again."))
        return Outcome(True, message, room.name, {"locked": False})

    async def quiet(self, request: ActionRequest) -> Outcome:
        room = await self._desk.set_quiet(request.host, request.room, True, request.now)
        message = shown(N_("Quiet mode is on: only hosts can chat."))
        return Outcome(True, message, room.name, {"quiet": True})

    async def unquiet(self, request: ActionRequest) -> Outcome:
        room = await self._desk.set_quiet(request.host, request.room, False, request.now)
        message = shown(N_("Quiet mode is off: everyone can chat."))
        return Outcome(True, message, room.name, {"quiet": False})

    async def change_chat_limits(self, request: ActionRequest) -> Outcome:
        limits = chat_limits_from_form(request.fields)
        changed = await self._desk.set_chat_limits(request.host, request.room, limits, request.now)
        if changed is None:
            message = shown(N_("Nothing to do: the room already has these chat limits."))
            return Outcome(False, message, request.room)
        return Outcome(True, shown(NOTICES["chat-limits"]), request.room)

    async def lockdown(self, request: ActionRequest) -> Outcome:
        removed = await self._desk.lockdown(request.host, request.room, request.now)
        message = (
            translations(current.get())
            .ngettext(
                "Lockdown: the room is locked and {count} attendee was removed.",
                "Lockdown: the room is locked and {count} attendees were removed.",
                removed,
            )
            .format(count=removed)
        )
        return Outcome(True, message, request.room, {"removed": removed})

    async def move(self, request: ActionRequest) -> Outcome:
        successor = await self._desk.move(request.host, request.room, request.now)
        message = shown(N_("The meeting moved to the room {room}."), room=successor.name)
        return Outcome(True, message, successor.name, {"room": successor.name})

    async def change_policy(self, request: ActionRequest) -> Outcome:
        if request.policy is None:
            raise InvalidInput(N_("The policy form could not be read."))
        changed = await self._desk.set_policy(
            request.host, request.room, request.policy, request.fields["was"], request.now
        )
        view = policy_view(request.policy, self._providers)
        if changed is None:
            message = shown(N_("Nothing to do: the room already has this policy."))
            return Outcome(False, message, request.room, {"policy": view})
        message = shown(N_("The new policy is saved ({policy})."), policy=view["summary"])
        return Outcome(True, message, request.room, {"policy": view})

    async def change_language(self, request: ActionRequest) -> Outcome:
        language = request.fields.get("language", "")
        changed = await self._desk.set_language(request.host, request.room, language, request.now)
        if changed is None:
            message = shown(N_("Nothing to do: the room already has this language."))
            return Outcome(False, message, request.room, {"language": language})
        return Outcome(True, shown(NOTICES["language"]), request.room, {"language": language})

    async def answer_lobby(self, request: ActionRequest) -> Outcome:
        """Approve, deny, or deny and ban a request waiting in the lobby."""
        request_id = request.fields.get("request", "")
        answer = LOBBY_ANSWERS[request.action]
        answered = None
        if REQUEST_ID_SHAPE.fullmatch(request_id) is not None:
            answered = await self._desk.answer_lobby(
                request.host, request.room, request_id, answer, request.now
            )
        if answered is None:
            message = shown(N_("Nothing to do: this request was already answered or expired."))
            return Outcome(False, message, request.room)
        if answer is LobbyState.APPROVED:
            message = shown(N_("{name} was let in."), name=answered.name)
        elif answer is LobbyState.DENIED:
            message = shown(N_("{name} was turned away."), name=answered.name)
        else:
            message = shown(N_("{name} was turned away and banned."), name=answered.name)
        return Outcome(True, message, request.room)


class Dashboard:
    """The dashboard's routes, one method each, and what they share. `registry_counts(id)` is
    the number of connections an admission has open on this replica."""

    def __init__(
        self,
        settings: Settings,
        pipeline: AdmissionPipeline,
        desk: HostDesk,
        registry_counts: RegistryCounts,
        attack_status: Callable[[Room], Awaitable[dict[str, Any]]],
        evidence: EvidenceLog | None = None,
    ) -> None:
        self._settings = settings
        self._evidence = evidence
        # Host admission id -> when (monotonic) they last downloaded the evidence.
        self._downloaded: dict[str, float] = {}
        self._pipeline = pipeline
        self._desk = desk
        self._registry_counts = registry_counts
        self._attack_status = attack_status
        self._cookie = cookie_name(settings)
        self._csrf = CsrfTokens(settings.admission.pseudonym_key.get_secret_value().encode())
        self._providers = [(provider.name, provider.label) for provider in settings.oidc]
        self._actions = DashboardActions(desk, self._providers)

    async def own_dashboard(self, request: Request) -> Response:
        """Where a host's admission is now (after a co-host moved the meeting, for instance)."""
        host = await self._pipeline.from_cookie(
            read_cookie(request.scope, self._cookie), time.time()
        )
        if host.role is not Role.HOST:
            raise NotHost()
        return RedirectResponse(dashboard_path(host.room), status_code=303)

    async def dashboard(
        self, request: Request, room: str, done: Annotated[str, Query()] = ""
    ) -> HTMLResponse:
        now = time.time()
        host, current = await self._host_of(request, room, now)
        view = await self._roster_of(host, current, now)
        page = render(
            "host.html",
            notice=shown(NOTICES[done]) if done in NOTICES else "",
            policy=policy_view(current.policy, self._providers),
            room=view["room"],
            room_language=current.language or DEFAULT.tag,
            chat=chat_limits_view(current),
            participants=view["participants"],
            lobby=view["lobby"],
            audit=view["audit"],
            attack=view["attack"],
            you=host.id,
            csrf=self._csrf.issue(host.id, current.name),
            prefix=HOST_PREFIX,
            ban_durations=[
                (key, shown(choice), shown(phrase))
                for key, (_, choice, phrase) in BAN_DURATIONS.items()
            ],
            labels=script_messages(),
            evidence=self._evidence is not None,
            clock=clock,
            iso_time=iso_time,
            request_id=request_id(request.scope),
        )
        return HTMLResponse(page)

    async def roster(self, request: Request, room: str) -> JSONResponse:
        now = time.time()
        host, current = await self._host_of(request, room, now)
        return JSONResponse(await self._roster_of(host, current, now))

    async def evidence(self, request: Request, room: str) -> Response:
        """The room's evidence export as a file, for its hosts only, from the gate's own pages
        only (a link elsewhere cannot make a host's browser fetch it)."""
        if self._evidence is None:
            raise NotFound()
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        now = time.time()
        host = await self._pipeline.from_cookie(read_cookie(request.scope, self._cookie), now)
        if host.room == room:
            current = await self._desk.room(host, room, now)
        else:
            # A room the meeting moved away from: its hosts who moved with it download the
            # evidence of what made them move.
            current = await self._desk.moved_from(host, room, now)
        self._cool_down(host.id)
        # The last EVIDENCE_DAYS days, and nothing from before the room was made (a room
        # deleted and made again under its name keeps one chain: the old room's is not theirs).
        since = evidence_moment(max(current.created_at, now - EVIDENCE_DAYS * 86_400))
        try:
            made = await self._evidence.export_one(current.name, since)
        except ExportBusy as exc:
            # One file of a room at a time, not one a click: a clear "wait, then try again".
            raise EvidenceBeingPrepared(exc.retry_after) from None
        except EvidenceError as exc:
            raise EvidenceBroken() from exc
        name = evidence_filename(current.name, now, after_break=made.after_break)
        return Response(
            made.data,
            media_type=EVIDENCE_TYPE,
            headers={
                "content-disposition": f'attachment; filename="{name}"',
                "cache-control": "no-store",
                "x-content-type-options": "nosniff",
            },
        )

    def _cool_down(self, host_id: str) -> None:
        """EvidenceBeingPrepared if this host downloaded the evidence a moment ago."""
        now = time.monotonic()
        last = self._downloaded.get(host_id)
        if last is not None and now - last < EVIDENCE_COOLDOWN_SECONDS:
            raise EvidenceBeingPrepared(EVIDENCE_COOLDOWN_SECONDS - (now - last))
        if len(self._downloaded) >= EVIDENCE_COOLDOWN_HOSTS:
            self._downloaded = {
                k: t for k, t in self._downloaded.items() if now - t < EVIDENCE_COOLDOWN_SECONDS
            }
        self._downloaded[host_id] = now

    async def act(self, request: Request, room: str, action: str) -> Response:
        """A host action from the page's script (JSON) or a form without script (pages)."""
        perform = self._actions.by_name.get(action)
        if perform is None:
            raise NotFound()
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        asked, current = await self._action_request(request, room, action)
        if asked.fields.get("confirmed") != "1" and action not in WITHOUT_CONFIRMATION:
            answer: ActionAnswer = Unconfirmed(_confirmation(asked))
        else:
            answer = await perform(asked)
        return self._action_response(request, asked, current, answer)

    async def _host_of(self, request: Request, room: str, now: float) -> tuple[Admission, Room]:
        host = await self._pipeline.from_cookie(read_cookie(request.scope, self._cookie), now)
        return host, await self._desk.room(host, room, now)

    async def _roster_of(self, host: Admission, room: Room, now: float) -> dict[str, Any]:
        admissions = await self._desk.roster(host, room.name, now)
        audit = await self._desk.audit(host, room.name, now)
        counts = self._registry_counts
        return {
            "room": room_view(room),
            "participants": [participant_view(a, counts(a.id)) for a in admissions],
            "audit": [audit_view(entry, current.get()) for entry in audit[:AUDIT_SHOWN]],
            "attack": await self._attack_status(room),
            "lobby": [lobby_view(r) for r in await self._desk.waiting(host, room.name, now)],
        }

    async def _action_request(
        self, request: Request, room: str, action: str
    ) -> tuple[ActionRequest, Room]:
        """The checked action request and the room it is about. Hosts first, then the token:
        someone who is not a host learns only that."""
        now = time.time()
        host, current = await self._host_of(request, room, now)
        fields = await self._read_fields(request, action)
        self._csrf.check(fields.get("csrf"), host.id, current.name)
        policy = (
            policy_from_form(
                fields,
                [name for name, _ in self._providers],
                mail_configured=self._settings.mail_configured,
            )
            if action == "policy"
            else None
        )
        target = None
        if action in ("revoke", "ban"):
            target = await self._target(host, room, fields, now)
        waiting = None
        if action in LOBBY_ANSWERS:
            waiting = await self._waiting(host, room, fields, now)
        asked = ActionRequest(action, host, current.name, fields, target, now, waiting, policy)
        return asked, current

    async def _read_fields(self, request: Request, action: str) -> dict[str, str]:
        if action == "policy":
            limit, max_fields = POLICY_FORM_BYTES, max_policy_fields(len(self._providers))
        else:
            limit, max_fields = MAX_FORM_BYTES, MAX_FORM_FIELDS
        return await read_form(request, limit=limit, max_fields=max_fields)

    async def _target(
        self, host: Admission, room: str, fields: dict[str, str], now: float
    ) -> Admission | None:
        if "admission" not in fields:
            raise InvalidInput(N_("Say whose admission this is about (field 'admission')."))
        return await self._desk.participant(host, room, fields["admission"], now)

    async def _waiting(
        self, host: Admission, room: str, fields: dict[str, str], now: float
    ) -> LobbyRequest | None:
        if "request" not in fields:
            raise InvalidInput(N_("Say which request this is about (field 'request')."))
        wanted = fields["request"]
        return next((r for r in await self._desk.waiting(host, room, now) if r.id == wanted), None)

    def _action_response(
        self, request: Request, asked: ActionRequest, current: Room, answer: ActionAnswer
    ) -> Response:
        """The one place an action's answer becomes HTTP: JSON for the page's script; without
        script, the confirmation page, the dashboard again, or a page saying nothing was done."""
        if wants_json(request.scope):
            if isinstance(answer, Unconfirmed):
                question = answer.confirmation.question
                return JSONResponse({"ok": True, "done": False, "confirm": question})
            return JSONResponse(
                {"ok": True, "done": answer.done, "message": answer.message, **answer.extra}
            )
        if isinstance(answer, Outcome) and answer.done:
            after = f"?done={asked.action}" if asked.action in NOTICES else ""
            return RedirectResponse(dashboard_path(answer.room) + after, status_code=303)
        if isinstance(answer, Unconfirmed):
            said: dict[str, Any] = {
                "confirmation": answer.confirmation,
                "fields": _confirmed_fields(asked),
                "csrf": asked.fields["csrf"],
            }
        else:
            said = {"confirmation": None, "message": answer.message}
        page = render(
            "host_confirm.html",
            room=room_view(current),
            action=asked.action,
            prefix=HOST_PREFIX,
            request_id=request_id(request.scope),
            **said,
        )
        return HTMLResponse(page)


def create_dashboard_router(
    settings: Settings,
    pipeline: AdmissionPipeline,
    desk: HostDesk,
    registry_counts: RegistryCounts,
    attack_status: Callable[[Room], Awaitable[dict[str, Any]]],
    *,
    evidence: EvidenceLog | None = None,
) -> APIRouter:
    """The dashboard's routes under /_meetgate/host/…; see `Dashboard`. `evidence`: the log its
    hosts download their room's export from (None: no download)."""
    routes = Dashboard(settings, pipeline, desk, registry_counts, attack_status, evidence)
    router = APIRouter()
    router.add_api_route(HOST_PREFIX, routes.own_dashboard, methods=["GET"])
    router.add_api_route(
        HOST_PREFIX + "/{room}", routes.dashboard, methods=["GET"], response_class=HTMLResponse
    )
    router.add_api_route(HOST_PREFIX + "/{room}/roster", routes.roster, methods=["GET"])
    router.add_api_route(HOST_PREFIX + "/{room}/" + EVIDENCE_PATH, routes.evidence, methods=["GET"])
    router.add_api_route(HOST_PREFIX + "/{room}/{action}", routes.act, methods=["POST"])
    return router
