"""The domain records every store keeps: rooms, invites, admissions, limit charges. Plain frozen
values, and their stored forms: how each is written and, in one place for both backends, how it is
read back. A stored form that does not parse raises `CorruptRecord`; the stores read it as a
refusal (see `gateway.store`)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from gateway.i18n import LANGUAGES


class Role(StrEnum):
    HOST = "host"
    ATTENDEE = "attendee"


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """Who may enter a room, and how (docs/identity-providers.md, "Room policies").

    Paths: a personal `invite`; `oidc` sign-in with one of `oidc_providers` (configured names;
    empty: any configured provider); an `email_code` to an allowed address. `allowed_emails`,
    `allowed_domains` (and for sign-in `allowed_groups`) restrict the last two; empty lists
    allow anyone the path verifies. `lobby`: a host approves every attendee who is not invited,
    on top of sign-in or code, or alone for an open-but-moderated room. `host_emails`: signed-in
    or code-verified addresses that enter as hosts.
    """

    invite: bool = True
    oidc: bool = False
    oidc_providers: tuple[str, ...] = ()
    email_code: bool = False
    allowed_emails: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()
    lobby: bool = False
    host_emails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Room:
    """A room and its live state. `locked`: no new admissions. `approval_required`: only hosts
    enter on their own (set by an emergency lockdown). `moved_to`: the meeting continues in that
    room, and joins for this one are sent there. `language`: the tag of the language its pages
    speak to a visitor who chose none of ours (gateway/i18n.py), "" for none.

    Chat rules, enforced on the signalling wire (gateway/proxy/room_rules.py): `quiet`, only
    hosts chat (a host's switch, and every lockdown), with `quiet_private_to_hosts` attendees
    may still write privately to a host. `chat_per_10s`, `chat_burst` and `chat_max_bytes`:
    the room's own chat limits, 0 for the gate's ([guard] settings). `guard_strikes`: refused
    stanzas before a sender is removed; None for the gate's default, 0 for never.

    Registration (gateway/admission/registrations.py): `registration`, the room takes
    registrations at /_meetgate/register/<room>; a confirmed address in `auto_approve_emails`
    or of a domain in `auto_approve_domains` is approved at once. `series`: the rooms of one
    conference share "seen before" under it ("": the room's `ban_scope`). `starts_at` and
    `ends_at`: the meeting's time (UTC epoch seconds, None unknown), for an invitation's
    calendar entry and for how long registrations are kept."""

    name: str
    title: str
    created_at: float
    hosts: tuple[str, ...] = ()
    policy: RoomPolicy = field(default_factory=RoomPolicy)
    locked: bool = False
    approval_required: bool = False
    moved_to: str | None = None
    lineage: str = ""
    # Switched on by a host or an admin: every join attempt must carry a proof-of-work.
    pow_required: bool = False
    language: str = ""
    quiet: bool = False
    quiet_private_to_hosts: bool = True
    chat_per_10s: int = 0
    chat_burst: int = 0
    chat_max_bytes: int = 0
    guard_strikes: int | None = None
    registration: bool = False
    auto_approve_domains: tuple[str, ...] = ()
    auto_approve_emails: tuple[str, ...] = ()
    series: str = ""
    starts_at: float | None = None
    ends_at: float | None = None

    @property
    def ban_scope(self) -> str:
        """Bans hold for the meeting, not the room name: a moved meeting keeps its first name."""
        return self.lineage or self.name


@dataclass(frozen=True, slots=True)
class Invite:
    """A personal join link. The capability itself is never stored, only `token_hash`."""

    id: str
    token_hash: str
    room: str
    name: str
    role: Role
    max_uses: int
    uses: int
    expires_at: float
    created_at: float
    revoked: bool = False
    # When the record (the invitee's name with it) is forgotten, if sooner than a while after
    # its expiry (`invite_kept_seconds`): an invitation to a registrant goes with the meeting's
    # retention. Never before `expires_at`.
    forget_at: float | None = None

    def is_usable(self, now: float) -> bool:
        return not self.revoked and self.uses < self.max_uses and now < self.expires_at


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """What a join through an invite needs that only the gate can work out, worked out when the
    invite is made, so that a store can carry out a join through its link on its own
    (`Store.join_plainly`): the holder's `identity` (a keyed hash; the key stays with the gate),
    the `host_shape` of the invite's name (as `names.host_shape`), and the names the holder
    may show, best first, each with the shape it claims (`shapes[i]` for `names[i]`): the first
    claim a join makes when no host's name is reserved that looks like the invite's. `key`
    tells which pseudonym key made `identity` (a fingerprint, not the key): a store joins
    through the plan only while the gate names the same key (`PlainJoin.key`), since under
    another key the gate names the holder otherwise, and bans and limits are kept under that
    name."""

    identity: str
    key: str
    host_shape: str
    shapes: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Admission:
    """Who was let into which room; `id` is the hash of the secret in the browser's cookie.
    Nothing of where they came from: no address, no network (docs/privacy.md)."""

    id: str
    room: str
    identity: str
    name: str
    role: Role
    via: str
    created_at: float
    expires_at: float
    revoked: bool = False

    def is_live(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass(frozen=True, slots=True)
class NameClaim:
    """An admission's claim on a name in a room: the first of `shapes` (name skeletons, best
    first) that no live claim of another admission holds there.

    `holder` is the admission's id; the claim lasts until `expires_at` or until that admission is
    revoked. `host_shape` is the name's skeleton without Meetgate's markers: a `host`'s claim
    marks it as a host's name; with `first_yields_to_host`, the first shape is passed over while
    a live host claim marks `host_shape`.
    """

    holder: str
    shapes: tuple[str, ...]
    expires_at: float
    host_shape: str
    host: bool = False
    first_yields_to_host: bool = False


@dataclass(frozen=True, slots=True)
class LimitCharge:
    """One request charged against the GCRA limit named `key`: `rate_per_second` on average,
    up to `burst` at once. A bad rate or burst is refused here, before any store sees it."""

    key: str
    rate_per_second: float
    burst: int

    def __post_init__(self) -> None:
        # Written so that NaN fails too; an infinite rate would be no limit at all.
        if not 0 < self.rate_per_second < math.inf or self.burst < 1:
            raise ValueError("rate_per_second must be positive and finite, and burst at least 1")


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after: float
    # When refused: each charge's own wait, in the order charged (0 where it had room).
    waits: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyShape:
    """A room policy as the host actions' log keeps it: its ways in, and how long each list is
    rather than the addresses themselves (the log outlives the policy it tells of)."""

    invite: bool
    oidc: bool
    oidc_providers: tuple[str, ...]
    email_code: bool
    lobby: bool
    allowed_emails: int
    allowed_domains: int
    allowed_groups: int
    host_emails: int

    @classmethod
    def of(cls, policy: RoomPolicy) -> PolicyShape:
        return cls(
            invite=policy.invite,
            oidc=policy.oidc,
            oidc_providers=policy.oidc_providers,
            email_code=policy.email_code,
            lobby=policy.lobby,
            allowed_emails=len(policy.allowed_emails),
            allowed_domains=len(policy.allowed_domains),
            allowed_groups=len(policy.allowed_groups),
            host_emails=len(policy.host_emails),
        )


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """A room's chat limits as a host or an admin sets them (Room's fields of the same names):
    a count of 0 and `strikes` None are the gate's defaults, `strikes` 0 never removes anyone."""

    per_10s: int = 0
    burst: int = 0
    max_bytes: int = 0
    strikes: int | None = None
    private_to_hosts: bool = True

    @classmethod
    def of(cls, room: Room) -> ChatLimits:
        return cls(
            per_10s=room.chat_per_10s,
            burst=room.chat_burst,
            max_bytes=room.chat_max_bytes,
            strikes=room.guard_strikes,
            private_to_hosts=room.quiet_private_to_hosts,
        )

    def applied_to(self, room: Room) -> Room:
        return dataclasses.replace(
            room,
            chat_per_10s=self.per_10s,
            chat_burst=self.burst,
            chat_max_bytes=self.max_bytes,
            guard_strikes=self.strikes,
            quiet_private_to_hosts=self.private_to_hosts,
        )


# The values a room's chat limits may take besides 0 (or None) for the gate's default, as
# [guard] settings bound the gate's own.
CHAT_PER_10S_MAX: Final = 10_000
CHAT_BURST_MAX: Final = 10_000
CHAT_BYTES_MIN: Final = 64
CHAT_BYTES_MAX: Final = 1024 * 1024
STRIKES_MAX: Final = 100_000


class AuditKind(StrEnum):
    """What the values of a host action's log entry tell (`AuditFacts`): the dashboard puts
    them into words in the language of whoever reads the log."""

    NAME = "name"  # whom the action was about: a removal, a ban for good, a lobby answer
    BANNED_UNTIL = "banned until"  # whom, and when the ban ends
    REMOVED = "removed"  # how many attendees a lockdown removed
    MOVED = "moved"  # how many participants a move carried over
    POLICY = "policy"  # the room's new policy
    LANGUAGE = "language"  # the room's new language (a tag, "" for none)
    CHAT_LIMITS = "chat limits"  # the room's new chat limits
    # Issue 19: actions on people say how many they concerned, never whom.
    REGISTRATIONS = "registrations"  # how many answered (or read), and how many were not
    INVITATIONS = "invitations"  # how many made, sent again or revoked; and lines refused
    AUTO_APPROVAL = "auto-approval"  # the domains approved at once, how many addresses
    SERIES = "series"  # the series the room is now in ("" for none)
    MEETING_TIME = "meeting time"  # the meeting's new start and end (None: not set)


# The values each kind of entry holds: exactly these, no others.
AUDIT_VALUES: Final[Mapping[AuditKind, frozenset[str]]] = {
    AuditKind.NAME: frozenset({"name"}),
    AuditKind.BANNED_UNTIL: frozenset({"name", "until"}),
    AuditKind.REMOVED: frozenset({"count"}),
    AuditKind.MOVED: frozenset({"count"}),
    AuditKind.POLICY: frozenset({"policy"}),
    AuditKind.LANGUAGE: frozenset({"language"}),
    AuditKind.CHAT_LIMITS: frozenset({"limits"}),
    AuditKind.REGISTRATIONS: frozenset({"count", "refused"}),
    AuditKind.INVITATIONS: frozenset({"count", "refused"}),
    AuditKind.AUTO_APPROVAL: frozenset({"domains", "count"}),
    AuditKind.SERIES: frozenset({"series"}),
    AuditKind.MEETING_TIME: frozenset({"starts", "ends"}),
}
# Values a kind holds that may be None: a meeting without a start or an end.
_MAY_BE_NONE: Final = frozenset({"starts", "ends"})


@dataclass(frozen=True, slots=True)
class AuditFacts:
    """What a host action did, as values rather than words: `kind` says which of the others it
    holds (AUDIT_VALUES); those it does not hold keep their defaults."""

    kind: AuditKind
    name: str = ""
    count: int = 0
    until: float | None = None
    policy: PolicyShape | None = None
    language: str = ""
    limits: ChatLimits | None = None
    refused: int = 0
    domains: tuple[str, ...] = ()
    series: str = ""
    starts: float | None = None
    ends: float | None = None

    def __post_init__(self) -> None:
        # Checked when written, so that what one store keeps the other reads back the same.
        held = AUDIT_VALUES[self.kind]
        for name, default in _UNHELD.items():
            value = getattr(self, name)
            missing = value is None and name not in _MAY_BE_NONE
            if missing if name in held else value != default:
                raise ValueError(f"audit facts of kind {self.kind} hold exactly {sorted(held)}")


# The values of AuditFacts, each with what it is in facts of a kind that does not hold it.
_UNHELD: Final[Mapping[str, object]] = {
    "name": "",
    "count": 0,
    "until": None,
    "policy": None,
    "language": "",
    "limits": None,
    "refused": 0,
    "domains": (),
    "series": "",
    "starts": None,
    "ends": None,
}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One host action: who (pseudonymous identity and shown name), what, to whom, when.

    `facts`: what it did, as values (None in entries written before there were any). `detail`:
    those older entries' account of it, English text shown as it was written; "" in new ones.
    """

    at: float
    room: str
    actor: str
    actor_name: str
    action: str
    target: str = ""
    detail: str = ""
    facts: AuditFacts | None = None


# Stored forms


class RecordKind(StrEnum):
    """The kinds of stored record, as logs and the corrupt-record metric name them."""

    ADMISSION = "admission"
    INVITE = "invite"
    ROOM = "room"
    BAN = "ban"
    RATE = "rate"
    NAME = "name"
    AUDIT = "audit"
    PRESSURE = "pressure"
    # A lobby request, or one of its marks (waiting, granted, address barred): plain values the
    # lobby reads itself (gateway/admission/lobby.py).
    LOBBY = "lobby"
    # A registration, one awaiting its code, or one of their marks: plain values the
    # registrations read themselves (gateway/admission/registrations.py).
    REGISTRATION = "registration"


class CorruptRecord(ValueError):
    """A stored record that does not parse. Never shown to anyone: the store counts it and reads
    it as a refusal."""

    def __init__(self, kind: RecordKind) -> None:
        super().__init__(f"a stored {kind} record does not parse")
        self.kind = kind


# A GCRA state as both backends write it: a whole number (microseconds in Redis), digits only.
RATE_STATE: Final = re.compile(r"[0-9]{1,20}")


def encode_record(record: Room | Invite | Admission, *, without: tuple[str, ...] = ()) -> str:
    data = dataclasses.asdict(record)
    for name in without:
        del data[name]
    return json.dumps(data, separators=(",", ":"))


def encode_audit(entry: AuditEntry) -> str:
    """An audit entry's stored form: its facts with only the values of their kind, and none at
    all in an entry without (so such an entry is stored as every entry was before facts)."""
    data = dataclasses.asdict(entry)
    del data["facts"]
    if entry.facts is not None:
        facts = dataclasses.asdict(entry.facts)
        data["facts"] = {
            "kind": entry.facts.kind.value,
            **{name: facts[name] for name in sorted(AUDIT_VALUES[entry.facts.kind])},
        }
    return json.dumps(data, separators=(",", ":"))


def flag(value: bool) -> str:
    return "1" if value else "0"


def admission_fields(admission: Admission) -> dict[str, str]:
    """An admission's stored form: its record, and its revocation flag apart (set on its own)."""
    return {
        "record": encode_record(admission, without=("revoked",)),
        "revoked": flag(admission.revoked),
    }


def invite_fields(invite: Invite) -> dict[str, str]:
    """An invite's stored form: its record, and its use count and revocation flag apart (an
    invite forgotten as every invite is, without `forget_at`, stored as before it existed)."""
    without = ("uses", "revoked") + (("forget_at",) if invite.forget_at is None else ())
    return {
        "record": encode_record(invite, without=without),
        "uses": str(invite.uses),
        "revoked": flag(invite.revoked),
    }


def encode_plan(plan: JoinPlan) -> str:
    """A join plan's stored form: JSON, its names as JSON texts (as the admission record that
    takes one holds it)."""
    return json.dumps(
        {
            "identity": plan.identity,
            "key": plan.key,
            "host_shape": plan.host_shape,
            "claims": [
                [shape, json.dumps(name)]
                for shape, name in zip(plan.shapes, plan.names, strict=True)
            ],
        },
        separators=(",", ":"),
    )


def parse_plan(text: str) -> JoinPlan | None:
    """A stored join plan, or None when it does not parse (the join then goes step by step)."""
    try:
        data = json.loads(text)
        claims = data["claims"]
        plan = JoinPlan(
            identity=data["identity"],
            # A plan stored before it named its key matches no key.
            key=data.get("key", ""),
            host_shape=data["host_shape"],
            shapes=tuple(shape for shape, _ in claims),
            names=tuple(json.loads(name) for _, name in claims),
        )
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    texts = (plan.identity, plan.key, plan.host_shape, *plan.shapes, *plan.names)
    if not plan.shapes or not all(isinstance(text, str) for text in texts):
        return None
    return plan


def ban_value(until: float | None) -> str:
    """A ban's stored form: when it ends, or "" for a ban without end."""
    return "" if until is None else repr(until)


def _text(value: object) -> bool:
    return isinstance(value, str)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _truth(value: object) -> bool:
    return isinstance(value, bool)


def _role(value: object) -> bool:
    return value in (Role.HOST.value, Role.ATTENDEE.value)


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _count_or_none(value: object) -> bool:
    return value is None or _count(value)


def _number_or_none(value: object) -> bool:
    return value is None or _number(value)


_Check = Callable[[object], bool]

# Each stored JSON record's fields: (required, check). Fields added since a record was written
# are absent from it and take their defaults, so only the first ones of each are required.
_ADMISSION_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "id": (True, _text),
    "room": (True, _text),
    "identity": (True, _text),
    "name": (True, _text),
    "role": (True, _role),
    "via": (True, _text),
    # Written by earlier releases (the full client address): read, and dropped, never written.
    "client_addr": (False, _text),
    "created_at": (True, _number),
    "expires_at": (True, _number),
}
_INVITE_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "id": (True, _text),
    "token_hash": (True, _text),
    "room": (True, _text),
    "name": (True, _text),
    "role": (True, _role),
    "max_uses": (True, _count),
    "expires_at": (True, _number),
    "created_at": (True, _number),
    "forget_at": (False, _number_or_none),
}
_ROOM_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "name": (True, _text),
    "title": (True, _text),
    "created_at": (True, _number),
    "hosts": (True, _texts),
    "policy": (True, lambda value: isinstance(value, dict)),
    "locked": (False, _truth),
    "approval_required": (False, _truth),
    "moved_to": (False, _text_or_none),
    "lineage": (False, _text),
    "pow_required": (False, _truth),
    "language": (False, _text),
    "quiet": (False, _truth),
    "quiet_private_to_hosts": (False, _truth),
    "chat_per_10s": (False, _count),
    "chat_burst": (False, _count),
    "chat_max_bytes": (False, _count),
    "guard_strikes": (False, _count_or_none),
    "registration": (False, _truth),
    "auto_approve_domains": (False, _texts),
    "auto_approve_emails": (False, _texts),
    "series": (False, _text),
    "starts_at": (False, _number_or_none),
    "ends_at": (False, _number_or_none),
}
_POLICY_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "invite": (False, _truth),
    "oidc": (False, _truth),
    "oidc_providers": (False, _texts),
    "email_code": (False, _truth),
    "allowed_emails": (False, _texts),
    "allowed_domains": (False, _texts),
    "allowed_groups": (False, _texts),
    "lobby": (False, _truth),
    "host_emails": (False, _texts),
}

# The fields of a stored room record, its policy and an invite record, each with its kind as a
# store script checks it before it judges a room on its own (scripts/join_plain.lua): s text,
# n number, m number or null, c count (a whole number, not negative), k count or null, b true
# or false, l list of texts, o object (not empty), z text or null; "!" after the kind:
# required. Kept beside _ROOM_JSON, _POLICY_JSON and _INVITE_JSON (a contract test compares
# them), so that a record the script accepts is one `parse_room` or `parse_invite` reads (the
# script checks an invite's role, its counts and its flags apart, as invite_check.lua does).
ROOM_FIELD_KINDS: Final[Mapping[str, str]] = {
    "name": "s!",
    "title": "s!",
    "created_at": "n!",
    "hosts": "l!",
    "policy": "o!",
    "locked": "b",
    "approval_required": "b",
    "moved_to": "z",
    "lineage": "s",
    "pow_required": "b",
    "language": "s",
    "quiet": "b",
    "quiet_private_to_hosts": "b",
    "chat_per_10s": "c",
    "chat_burst": "c",
    "chat_max_bytes": "c",
    "guard_strikes": "k",
    "registration": "b",
    "auto_approve_domains": "l",
    "auto_approve_emails": "l",
    "series": "s",
    "starts_at": "m",
    "ends_at": "m",
}
INVITE_FIELD_KINDS: Final[Mapping[str, str]] = {
    "id": "s!",
    "token_hash": "s!",
    "room": "s!",
    "name": "s!",
    "role": "s!",
    "max_uses": "c!",
    "expires_at": "n!",
    "created_at": "n!",
    "forget_at": "m",
}
POLICY_FIELD_KINDS: Final[Mapping[str, str]] = {
    "invite": "b",
    "oidc": "b",
    "oidc_providers": "l",
    "email_code": "b",
    "allowed_emails": "l",
    "allowed_domains": "l",
    "allowed_groups": "l",
    "lobby": "b",
    "host_emails": "l",
}
_AUDIT_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "at": (True, _number),
    "room": (True, _text),
    "actor": (True, _text),
    "actor_name": (True, _text),
    "action": (True, _text),
    "target": (False, _text),
    "detail": (False, _text),
    "facts": (False, lambda value: isinstance(value, dict)),
}
AUDIT_KINDS: Final = frozenset(kind.value for kind in AuditKind)
# An entry's facts: its kind, and the values AUDIT_VALUES gives that kind (checked apart).
_AUDIT_FACTS_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "kind": (True, lambda value: isinstance(value, str) and value in AUDIT_KINDS),
    "name": (False, _text),
    "count": (False, _count),
    "until": (False, _number),
    "policy": (False, lambda value: isinstance(value, dict)),
    "language": (False, _text),
    "limits": (False, lambda value: isinstance(value, dict)),
    "refused": (False, _count),
    "domains": (False, _texts),
    "series": (False, _text),
    "starts": (False, _number_or_none),
    "ends": (False, _number_or_none),
}
_CHAT_LIMITS_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "per_10s": (True, _count),
    "burst": (True, _count),
    "max_bytes": (True, _count),
    "strikes": (True, _count_or_none),
    "private_to_hosts": (True, _truth),
}
_POLICY_SHAPE_JSON: Final[Mapping[str, tuple[bool, _Check]]] = {
    "invite": (True, _truth),
    "oidc": (True, _truth),
    "oidc_providers": (True, _texts),
    "email_code": (True, _truth),
    "lobby": (True, _truth),
    "allowed_emails": (True, _count),
    "allowed_domains": (True, _count),
    "allowed_groups": (True, _count),
    "host_emails": (True, _count),
}


def checked_fields(
    data: object, shape: Mapping[str, tuple[bool, _Check]], kind: RecordKind
) -> dict[str, Any]:
    """`data` (a copy) if it is an object with exactly the fields `shape` allows, each of its
    kind and the required ones present; CorruptRecord(kind) otherwise. Every stored JSON
    record's fields pass it (gateway/store/record_fields.py names the shapes' parts)."""
    if not isinstance(data, dict):
        raise CorruptRecord(kind)
    for name, value in data.items():
        rule = shape.get(name)
        if rule is None or not rule[1](value):
            raise CorruptRecord(kind)
    if any(required and name not in data for name, (required, _) in shape.items()):
        raise CorruptRecord(kind)
    return dict(data)


def _checked(
    data: object, shape: Mapping[str, tuple[bool, _Check]], kind: RecordKind
) -> dict[str, Any]:
    """`checked_fields`, its lists made tuples (the records' frozen fields)."""
    return {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in checked_fields(data, shape, kind).items()
    }


def parsed_record(text: str | None, kind: RecordKind) -> object:
    """The JSON a stored record holds; CorruptRecord(kind) if it is missing or not JSON."""
    if text is None:
        raise CorruptRecord(kind)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord(kind) from exc


def _flag(value: str | None, kind: RecordKind) -> bool:
    # Writers store exactly "0" or "1"; anything else (or nothing) is not read as either.
    if value == "0":
        return False
    if value == "1":
        return True
    raise CorruptRecord(kind)


def parse_admission(record: str | None, revoked: str | None) -> Admission:
    kind = RecordKind.ADMISSION
    data = _checked(parsed_record(record, kind), _ADMISSION_JSON, kind)
    data.pop("client_addr", None)
    data["role"] = Role(data["role"])
    return Admission(**data, revoked=_flag(revoked, kind))


def parse_invite(record: str | None, uses: str | None, revoked: str | None) -> Invite:
    kind = RecordKind.INVITE
    data = _checked(parsed_record(record, kind), _INVITE_JSON, kind)
    data["role"] = Role(data["role"])
    if uses is None or not uses.isascii() or not uses.isdigit() or len(uses) > 18:
        raise CorruptRecord(kind)
    return Invite(**data, uses=int(uses), revoked=_flag(revoked, kind))


# The tags a room's `language` may hold.
ROOM_LANGUAGES: Final = frozenset(language.tag for language in LANGUAGES)


def parse_room(record: str | None) -> Room:
    kind = RecordKind.ROOM
    data = _checked(parsed_record(record, kind), _ROOM_JSON, kind)
    data["policy"] = RoomPolicy(**_checked(data["policy"], _POLICY_JSON, kind))
    if data.get("language", "") not in ROOM_LANGUAGES:
        # A text that names none of this release's languages (one since removed, a hand edit)
        # is no default: the visitor's choice and English still answer, so the room is not
        # refused for it and nothing is counted. A value that is not text is corrupt, as any.
        data["language"] = ""
    return Room(**data)


def parse_audit(record: str | None) -> AuditEntry:
    kind = RecordKind.AUDIT
    data = _checked(parsed_record(record, kind), _AUDIT_JSON, kind)
    if "facts" in data:
        data["facts"] = _parse_audit_facts(data["facts"])
    return AuditEntry(**data)


def _parse_audit_facts(stored: object) -> AuditFacts:
    kind = RecordKind.AUDIT
    data = _checked(stored, _AUDIT_FACTS_JSON, kind)
    about = AuditKind(data.pop("kind"))
    # Exactly the values of its kind: facts missing one would be put into words wrongly.
    if set(data) != AUDIT_VALUES[about]:
        raise CorruptRecord(kind)
    for moment in ("until", "starts", "ends"):
        if data.get(moment) is not None:
            data[moment] = float(data[moment])
    if "policy" in data:
        data["policy"] = PolicyShape(**_checked(data["policy"], _POLICY_SHAPE_JSON, kind))
    if "limits" in data:
        data["limits"] = ChatLimits(**_checked(data["limits"], _CHAT_LIMITS_JSON, kind))
    return AuditFacts(about, **data)


def parse_ban(value: str, now: float) -> bool:
    """Whether a stored ban holds at `now`: "" holds for ever, a time until then."""
    if value == "":
        return True
    try:
        until = float(value)
    except ValueError as exc:
        raise CorruptRecord(RecordKind.BAN) from exc
    if not math.isfinite(until):
        raise CorruptRecord(RecordKind.BAN)
    return now < until


def parse_rate_state(value: str) -> int:
    """A GCRA limit's stored state (its theoretical arrival time): a whole number."""
    if RATE_STATE.fullmatch(value) is None:
        raise CorruptRecord(RecordKind.RATE)
    return int(value)
