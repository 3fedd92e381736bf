"""Registrations with host review (issue 19): a person registers for a room with a name, an
address and a note, confirms the address with a one-time code, and waits for a host to approve
(an invitation is then sent) or deny.

Plain values in, plain values out; every record lives in the store with an expiry. One
registration per address per room: its id is a keyed hash of the room and the address's key
(`mail_address_key`), so confirming again updates it and racing confirmations cannot make two.
A registration awaiting its code is a record of its own, named by a random id; its browser holds
a secret of which the store keeps a hash. Sending the form answers the same whatever the
address: whether it registered before is only looked at once the code proves the address.

What hosts are shown to judge a registration (flags, worked out when it is confirmed): the
address or its domain was admitted to the room or its series before (`seen_*`: keyed hashes kept
by `remember`, never the addresses), several registrations came from one network in a short time
(`burst`: a day-keyed hash of the network), the name looks like a host's or another registrant's
(`looks_like`: the confusable skeletons of gateway/admission/names.py), a waiting registration
was sent again (`updated`).

Once a registration is answered its address is gone from the store: denying drops it, and
approving (`approve`, the one way to approve, with the queue that sends the invitation) hands it
to the invitation queue first and erases it only once that is queued. Approving marks the
registration approved with its invitation pending (`inviting`, the address kept), queues the
invitation, then erases the address: a failure in between leaves the person waiting or pending,
never approved and uninvited, and the next approval in the room queues what is pending (under a
lease, so two approvals never queue one person twice). Every record of a
registrant goes `kept_after_meeting_seconds` after the meeting's end (`kept_seconds` after its
last change for a room without one). A stored record or mark that does not parse is counted
(kind `registration`) and read as a refusal.

A registrant's name, note and address are sealed in both records (the registration, and the
one awaiting its code): AES-GCM under a key of their own derived from the pseudonym key
(gateway.admission.sealing, `SEAL_PURPOSE`), bound to the record's key, so a dump of the store
shows none of them; a sealed part that does not open there makes the record corrupt. What the
store compares stays out of them as keyed hashes (`address_key`, the shapes of names, the
networks); the address's domain is kept in clear, as hosts are shown it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from gateway.admission.email_codes import (
    SEND_WINDOW_SECONDS,
    CodeMailer,
    CodeSender,
    CodeTry,
    InvalidAddress,
    code_mail_body,
    judge_try,
    new_code,
    normalise_address,
    typed_code,
)
from gateway.admission.flood import FloodGuard, Proof
from gateway.admission.invitations import (
    Invitation,
    InvitationQueue,
    mail_address_key,
    mail_domain_key,
)
from gateway.admission.limits import Attempt, RateLimiter
from gateway.admission.names import host_shape, normalise
from gateway.admission.rooms import clean_text
from gateway.admission.sealing import Sealer
from gateway.client_address import parse_address
from gateway.errors import InvalidInput, MeetgateError, NotAdmitted
from gateway.i18n import ENGLISH, N_, Language, translations
from gateway.settings import EmailCodeSettings, RegistrationSettings
from gateway.store import Store
from gateway.store.record_fields import RecordShape, checked_fields, is_number, is_text
from gateway.store.records import CorruptRecord, RecordKind, Role, Room, parsed_record

log = logging.getLogger("meetgate.registration")

REGISTRATION_ID_SHAPE: Final = re.compile(r"[0-9a-f]{32}")
SECRET_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
# The most registrations one page shows.
MAX_PAGE: Final = 100
# Records read from the store in one round trip when a page is put together.
READ_BATCH: Final = 300
# What a registration's marks (waiting for an answer, part of a burst, a look-alike) hold.
MARK: Final = "1"
DAY_SECONDS: Final = 86_400
# The invitation an approved registration is sent was asked for by that person.
ORIGIN: Final = "registration"
# An approval holds a registration whose invitation it queues this long: far beyond what queueing
# takes; past it, an approval that stopped half-way is taken up by the next one.
INVITING_LEASE_SECONDS: Final = 300.0
# The pending invitations one reading of a room's registrations queues (`resume`): bounded work
# for a page read; what is left is queued by the next reading or approval.
RESUMED_AT_ONCE: Final = 50
# The queue's refusal of an invitation past the room's unsent limit (gateway.admission.outbox.
# OutboxFull: not imported here, as the outbox imports the pipeline, which imports this module).
OUTBOX_FULL: Final = "outbox_full"
# The sealing key's purpose (HKDF info): a registration's sealed part never opens as an outbox
# item's (gateway.admission.outbox.SEAL_PURPOSE), nor the reverse.
SEAL_PURPOSE: Final = b"meetgate registration seal"


class RegistrationState(StrEnum):
    WAITING = "waiting"
    APPROVED = "approved"
    DENIED = "denied"


class RegistrationFlag(StrEnum):
    """What a host is shown beside a registration; each is a field of `Registration`."""

    SEEN_ADDRESS = "seen_address"
    SEEN_DOMAIN = "seen_domain"
    LOOKS_LIKE = "looks_like"
    BURST = "burst"
    UPDATED = "updated"


class ResembledKind(StrEnum):
    """Whose name a look-alike registration's name looks like."""

    HOST = "host"
    PARTICIPANT = "participant"
    REGISTRANT = "registrant"


@dataclass(frozen=True, slots=True)
class Resemblance:
    """The name a registration's name looks like, and whose it is: a host's (on a host invite or
    in the room), a participant's in the room now, or another registrant's of the room; names
    the room's hosts see anyway. Worked out when a page is read, never stored."""

    name: str
    kind: ResembledKind

    def __repr__(self) -> str:
        return f"Resemblance(kind={self.kind.value})"


class RegistrationClosed(NotAdmitted):
    code = "registration_closed"
    title = N_("Registration is closed")
    message = N_("This meeting does not take registrations now.")


class RegistrationEnded(RegistrationClosed):
    code = "registration_ended"
    message = N_("This meeting has ended, so it takes no more registrations.")


class RegistrationsFull(MeetgateError):
    status = 409
    code = "registrations_full"
    title = N_("Registration is full")
    message = N_(
        "This meeting has as many registrations as it can take. Please contact the organisers."
    )


class RegistrationCodeError(MeetgateError):
    """A code that confirms no registration; the code page shows the message, and lets the
    person try another code only when `can_retry`."""

    status = 400
    code = "registration_code_invalid"
    title = N_("That code did not work")
    can_retry = False


class RegistrationUnknown(RegistrationCodeError):
    status = 404
    code = "registration_unknown"
    title = N_("No registration waiting")
    message = N_(
        "This browser has no registration waiting for a code for this meeting; it may have"
        " expired. Please register again."
    )


class RegistrationCodeWrong(RegistrationCodeError):
    code = "registration_code_wrong"
    message = N_("That code is not right.")
    can_retry = True


class RegistrationCodeExpired(RegistrationCodeError):
    status = 410
    code = "registration_code_expired"
    message = N_("This code has expired or has already been used. Please register again.")


class TooManyWrongRegistrationCodes(RegistrationCodeError):
    status = 403
    code = "registration_code_attempts"
    message = N_("Too many wrong codes. Please register again.")


# The e-mail that carries a registration's code.
# Translators: the subject of the e-mail with a code; {room} is a title in any language.
REGISTRATION_SUBJECT = N_("Confirm your registration for {room}")
# Translators: the e-mail's first line; the code follows on a line of its own.
REGISTRATION_INTRO = N_("Your code to confirm your registration for {room}:")
REGISTRATION_IGNORE = N_(
    "If you did not register, ignore this e-mail: without the code nothing is kept."
)
# Translators: {page} is the address of the page that asks for the code.
REGISTRATION_WHERE = N_(
    "Enter it on the registration page, in the browser you registered in: {page}"
)


def registration_code_message(
    language: Language, room_title: str, code: str, minutes: int, page: str = ""
) -> tuple[str, str]:
    """Pure: the subject and plain-text body of the e-mail that carries a registration's
    `code`, in `language`, laid out as an e-mail code's (email_codes.code_message); with the
    `page` to enter it on (its address) when given."""
    catalog = translations(language)
    intro = catalog.gettext(REGISTRATION_INTRO).format(room=room_title)
    notes = (
        *([catalog.gettext(REGISTRATION_WHERE).format(page=page)] if page else []),
        catalog.gettext(REGISTRATION_IGNORE),
    )
    body = code_mail_body(catalog, intro, code, minutes, notes)
    return catalog.gettext(REGISTRATION_SUBJECT).format(room=room_title), body


def network_of_registrant(client_addr: str) -> str:
    """The network a registration counts toward a burst in: an IPv4 /24, an IPv6 /48 (a site's
    allocation), "unknown" for what is no address."""
    parsed = parse_address(client_addr)
    if parsed is None:
        return "unknown"
    bits = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{bits}", strict=False))


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Registration:
    """One person's registration for a room, as hosts see it: never the address (`domain`, the
    address's domain, and `address_key`, its keyed hash, stand for it)."""

    id: str
    room: str
    name: str
    note: str
    # The tag of the language the person registered in (their invitation's).
    language: str
    domain: str
    address_key: str
    state: RegistrationState
    created_at: float
    updated_at: float
    updated: bool = False
    seen_address: bool = False
    seen_domain: bool = False
    burst: bool = False
    looks_like: bool = False
    answered_at: float | None = None
    answered_by: str = ""
    # Approved, and its invitation not yet known to be queued: the address is still kept.
    # `invite_round` names the lease of the approval queueing it (raised when one lets go).
    inviting: bool = False
    invite_round: int = 0
    # Whom the name looks like, when `looks_like` and a page found it (not stored).
    resembles: Resemblance | None = None

    @property
    def flags(self) -> frozenset[RegistrationFlag]:
        return frozenset(flag for flag in RegistrationFlag if getattr(self, flag.value))

    def __repr__(self) -> str:
        # Never a name or a note in a log line or a traceback.
        return f"Registration(id={self.id!r}, room={self.room!r}, state={self.state.value})"


@dataclass(frozen=True, slots=True)
class Registering:
    """A registration awaiting its code, and the secret its browser keeps (only in a cookie)."""

    id: str
    secret: str
    expires_at: float

    @property
    def token(self) -> str:
        return f"{self.id}.{self.secret}"

    def __repr__(self) -> str:
        return f"Registering(id={self.id!r})"


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A registration just confirmed; `approved` when it was approved at once (the room's
    auto-approve lists), its invitation queued."""

    registration: Registration
    approved: bool = False


@dataclass(frozen=True, slots=True)
class Approved:
    """What approving did: the registrations this call approved and whose invitations it
    queued (those an earlier approval left pending among them), and their batch."""

    ids: tuple[str, ...]
    batch: str | None = None
    # The room's outbox took no more: those past it were left as they were (waiting, or pending
    # for the next approval), none of them approved without its invitation queued.
    full: bool = False


@dataclass(frozen=True, slots=True)
class RegistrationPage:
    """One page of a room's registrations, oldest first: `total` match the filter; `states`
    counts every registration of the room by state, `flags` those in the filter's state (every
    state without one) by flag."""

    items: tuple[Registration, ...]
    total: int
    offset: int
    limit: int
    states: Mapping[str, int]
    flags: Mapping[str, int]

    @property
    def counts(self) -> dict[str, int]:
        """`states` and `flags` in one mapping (no flag is named as a state)."""
        return {**self.states, **self.flags}


def _truth(value: object) -> bool:
    return isinstance(value, bool)


def _shaped(shape: re.Pattern[str]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and shape.fullmatch(value) is not None


# A stored registration's fields (required, check), as `_encode` writes them: the public ones,
# and the name, the note and the address (until it is answered) sealed (`_SEALED_JSON`).
_RECORD_JSON: Final[RecordShape] = {
    "id": (True, _shaped(REGISTRATION_ID_SHAPE)),
    "room": (True, is_text),
    "language": (True, is_text),
    "domain": (True, is_text),
    "address_key": (True, is_text),
    "state": (True, lambda value: value in {state.value for state in RegistrationState}),
    "created_at": (True, is_number),
    "updated_at": (True, is_number),
    "updated": (False, _truth),
    "seen_address": (False, _truth),
    "seen_domain": (False, _truth),
    "burst": (False, _truth),
    "looks_like": (False, _truth),
    "answered_at": (False, lambda value: value is None or is_number(value)),
    "answered_by": (False, is_text),
    "inviting": (False, _truth),
    "invite_round": (False, lambda value: isinstance(value, int) and not isinstance(value, bool)),
    "sealed": (True, is_text),
}
# A registration awaiting its code.
_PENDING_JSON: Final[RecordShape] = {
    "id": (True, _shaped(REGISTRATION_ID_SHAPE)),
    "room": (True, is_text),
    "language": (True, is_text),
    "created_at": (True, is_number),
    "expires_at": (True, is_number),
    "holder": (True, is_text),
    "digest": (True, is_text),
    "network": (True, is_text),
    "sealed": (True, is_text),
}
# What a record's sealed part holds: a registrant's own details (the address "" once answered).
_SEALED_JSON: Final[RecordShape] = {
    "name": (True, is_text),
    "note": (True, is_text),
    "address": (True, is_text),
}


def _checked(raw: str | None, shape: RecordShape) -> dict[str, Any]:
    """The JSON object `raw` if it has exactly the fields `shape` allows, each of its type."""
    return _fields(parsed_record(raw, RecordKind.REGISTRATION), shape)


def _fields(data: object, shape: RecordShape) -> dict[str, Any]:
    return checked_fields(data, shape, RecordKind.REGISTRATION)


def _record_key(registration_id: str) -> str:
    return f"registration:record:{registration_id}"


def _pending_key(pending_id: str) -> str:
    return f"registration:pending:{pending_id}"


def _sealed(sealer: Sealer, key: str, name: str, note: str, address: str) -> str:
    """A registrant's details sealed to the record under `key` (its kind and id)."""
    return sealer.seal(key, {"name": name, "note": note, "address": address})


def _opened(sealer: Sealer, key: str, sealed: str) -> dict[str, Any]:
    """The details sealed to the record under `key`; CorruptRecord if they do not open there."""
    return _fields(sealer.open(key, sealed), _SEALED_JSON)


def _encode(sealer: Sealer, registration: Registration, address: str) -> str:
    data = {
        f.name: getattr(registration, f.name)
        for f in dataclasses.fields(registration)
        if f.name not in ("resembles", "name", "note")
    }
    data["state"] = registration.state.value
    key = _record_key(registration.id)
    data["sealed"] = _sealed(sealer, key, registration.name, registration.note, address)
    return json.dumps(data, separators=(",", ":"))


def _decode(sealer: Sealer, raw: str | None) -> tuple[Registration, str]:
    """A stored registration and its address ("" once answered); CorruptRecord otherwise (also
    for a sealed part that does not open as this record's)."""
    data = _checked(raw, _RECORD_JSON)
    details = _opened(sealer, _record_key(data["id"]), data.pop("sealed"))
    data["state"] = RegistrationState(data["state"])
    registration = Registration(**data, name=details["name"], note=details["note"])
    return registration, details["address"]


@dataclass(frozen=True, slots=True)
class _Pending:
    id: str
    room: str
    name: str
    address: str
    note: str
    language: str
    created_at: float
    expires_at: float
    holder: str
    digest: str
    network: str

    def encode(self, sealer: Sealer) -> str:
        data = dataclasses.asdict(self)
        for name in _SEALED_JSON:
            del data[name]
        key = _pending_key(self.id)
        data["sealed"] = _sealed(sealer, key, self.name, self.note, self.address)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, sealer: Sealer, raw: str) -> _Pending:
        data = _checked(raw, _PENDING_JSON)
        details = _opened(sealer, _pending_key(data["id"]), data.pop("sealed"))
        return cls(**data, **details)

    def __repr__(self) -> str:
        return f"_Pending(id={self.id!r}, room={self.room!r})"


@dataclass(frozen=True, slots=True)
class _Flags:
    seen_address: bool
    seen_domain: bool
    burst: bool
    looks_like: bool


class Registrations:
    def __init__(
        self,
        store: Store,
        settings: RegistrationSettings,
        *,
        key: bytes,
        limiter: RateLimiter,
        mailer: CodeMailer,
        flood: FloodGuard | None = None,
        codes: EmailCodeSettings | None = None,
    ) -> None:
        """`key`: `[admission] pseudonym_key`; `codes`: the e-mail codes' settings (digits,
        attempts, the sends to one address per hour; registration codes are counted apart)."""
        self._store = store
        self._settings = settings
        self._codes = codes or EmailCodeSettings()
        self._pseudonym_key = key
        # Keys of its own, so that a registration's hashes can never pass for anything else.
        self._key = hmac.new(key, b"meetgate registrations", hashlib.sha256).digest()
        # A registrant's name, note and address are sealed in every record (a key of its own).
        self._sealer = Sealer(key, SEAL_PURPOSE)
        self._limiter = limiter
        self._mailer = mailer
        self._flood = flood
        self._sender = CodeSender(mailer, log, "registration code")

    @property
    def settings(self) -> RegistrationSettings:
        return self._settings

    @property
    def code_digits(self) -> int:
        return self._codes.digits

    # Keys

    @staticmethod
    def _tries_key(pending_id: str) -> str:
        return f"registration:tries:{pending_id}"

    @staticmethod
    def _pending_index(room: str) -> str:
        return f"registration:pending-room:{room}"

    @staticmethod
    def _waiting_key(registration_id: str) -> str:
        """Set while the registration waits: answering it takes the mark, so of two racing
        answers (or an answer and an update) exactly one goes ahead."""
        return f"registration:waiting:{registration_id}"

    @staticmethod
    def _inviting_index(room: str) -> str:
        """A room's approved registrations whose invitations are not yet known to be queued."""
        return f"registration:inviting:{room}"

    @staticmethod
    def _lease_key(registration_id: str, invite_round: int) -> str:
        return f"registration:lease:{registration_id}:{invite_round}"

    @staticmethod
    def _sends_key(address_key: str) -> str:
        """Registration codes sent to one address (its keyed hash) in SEND_WINDOW_SECONDS."""
        return f"registration:sends:{address_key}"

    @staticmethod
    def _waiting_index(room: str) -> str:
        """A room's registrations that came in waiting: those still waiting count against
        `max_per_room` (answered ones do not, so a flood once denied does not close it)."""
        return f"registration:waiting-room:{room}"

    @staticmethod
    def _burst_key(registration_id: str) -> str:
        return f"registration:burst:{registration_id}"

    @staticmethod
    def _alike_key(registration_id: str) -> str:
        return f"registration:alike:{registration_id}"

    @staticmethod
    def _room_index(room: str) -> str:
        return f"registration:room:{room}"

    @staticmethod
    def _shape_index(room: str) -> str:
        """Members `<keyed hash of the name's shape>.<registration id>`: look-alikes among a
        room's registrations, without the names."""
        return f"registration:shapes:{room}"

    @staticmethod
    def _network_index(room: str, network: str) -> str:
        return f"registration:network:{room}:{network}"

    @staticmethod
    def _seen_key(scope: str, kind: str, key: str) -> str:
        return f"registration:seen:{scope}:{kind}:{key}"

    def _keyed(self, purpose: str, value: str) -> str:
        message = f"{purpose}\0{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def registration_id(self, room: str, address_key: str) -> str:
        """The id of the one registration an address has in a room."""
        return self._keyed("registration", f"{room}\0{address_key}")

    def _shape_tag(self, name: str) -> str:
        return self._keyed("shape", host_shape(name))

    def _digest(self, pending_id: str, room: str, address: str, code: str) -> str:
        return self._keyed("code", f"{pending_id}\0{room}\0{address}\0{code}")

    async def _network_tag(self, client_addr: str) -> str:
        # Under the day's key (never stored): nobody can tell which network a tag stood for.
        day_key = await self._limiter.addresses.today()
        text = f"registration-network\0{network_of_registrant(client_addr)}".encode()
        return hmac.new(day_key, text, hashlib.sha256).hexdigest()[:32]

    def _corrupt(self) -> None:
        self._store.health.corrupt(RecordKind.REGISTRATION)

    @staticmethod
    def series_of(room: Room) -> str:
        """What "seen before" is shared under: the room's series, or its meeting's own name."""
        return room.series or room.ban_scope

    def open_at(self, room: Room, now: float) -> bool:
        """Whether `room` takes registrations (and their codes) at `now`: while registration is
        on, until its meeting's end, if it has one (what is kept after the end is only kept)."""
        return room.registration and (room.ends_at is None or now < room.ends_at)

    def kept_seconds(self, room: Room, now: float) -> float | None:
        """How long a registration of `room` changed at `now` is kept: until a while after the
        meeting's end, or for `kept_seconds`; None when that is already past."""
        if room.ends_at is None:
            return float(self._settings.kept_seconds)
        ttl = room.ends_at + self._settings.kept_after_meeting_seconds - now
        return ttl if ttl > 0 else None

    async def _kept_now(self, room: str, now: float) -> float | None:
        """`kept_seconds` of the room as the store has it now (None: gone, or past)."""
        current = await self._store.get_room(room)
        return None if current is None else self.kept_seconds(current, now)

    async def _room(self, room: Room | str) -> Room | None:
        return room if isinstance(room, Room) else await self._store.get_room(room)

    async def _reject(self, room: Room, error: MeetgateError) -> MeetgateError:
        await self._limiter.note_rejection(room.name, error.code, registration=True)
        return error

    # Registering

    async def register(
        self,
        room: Room,
        name: str,
        raw_address: str,
        note: str,
        client_addr: str,
        now: float,
        proof: Proof | None = None,
        *,
        language: Language = ENGLISH,
        code_page: str = "",
    ) -> Registering:
        """Register for `room` and send a code to the address, written in `language`, saying
        where to enter it (`code_page`, the code page's address, when given). The answer is
        the same whether the address registered before (that is looked at only once the code
        proves the address, in `confirm`).

        Raises RegistrationClosed (the room takes none, or its meeting is over), InvalidAddress,
        InvalidInput (the name or the note), RateLimited, TooManyCodes, and
        ChallengeRequired/ChallengeFailed when the room demands proof-of-work."""
        kept = self.kept_seconds(room, now)
        if not self.open_at(room, now) or kept is None:
            await self._limiter.charge(Attempt(client_addr, registration=room.name))
            raise RegistrationEnded() if room.registration else RegistrationClosed()
        if self._flood is not None:
            await self._flood.check(
                proof, client_addr=client_addr, room=room, now=now, registration=True
            )
        try:
            address = normalise_address(raw_address)
        except InvalidAddress as refused:
            await self._limiter.charge(Attempt(client_addr, registration=room.name))
            raise await self._reject(room, refused) from None
        address_key = mail_address_key(self._pseudonym_key, address)
        await self._limiter.charge(
            Attempt(client_addr, registration=room.name, identity=address_key)
        )
        try:
            shown = normalise(name)
            kept_note = self.clean_note(note)
        except InvalidInput as refused:
            raise await self._reject(room, refused) from None
        # A counter of registration codes of its own: registering cannot lock anyone out of
        # signing in by e-mail code. Past it no code is sent, and the answer is the same (a
        # decoy awaits a code that never comes): it tells nothing of the address's activity.
        sends = await self._store.bump_value(self._sends_key(address_key), SEND_WINDOW_SECONDS)
        send = sends <= self._codes.max_sends_per_address
        if not send:
            await self._limiter.note_rejection(
                room.name, "registration_code_sends", registration=True
            )
        pending_id = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)
        code = new_code(self._codes.digits)
        digest = self._digest(pending_id, room.name, address, code)
        if not send:
            # A decoy's: matched by no code (2^-128 odds).
            digest = secrets.token_hex(16)
        ttl = min(float(self._settings.confirm_ttl_seconds), kept)
        pending = _Pending(
            id=pending_id,
            room=room.name,
            name=shown,
            address=address,
            note=kept_note,
            language=language.tag,
            created_at=now,
            expires_at=now + ttl,
            holder=_secret_hash(secret),
            digest=digest,
            network=await self._network_tag(client_addr),
        )
        await self._store.put_value(_pending_key(pending_id), pending.encode(self._sealer), ttl)
        await self._store.index_add(self._pending_index(room.name), pending_id, ttl)
        if send:
            self._dispatch(address, code, room, language, ttl, code_page)
        return Registering(id=pending_id, secret=secret, expires_at=now + ttl)

    def clean_note(self, note: str) -> str:
        """The note as hosts will read it; InvalidInput if it cannot be shown or is too long."""
        return clean_text(
            note, field=N_("note"), max_chars=self._settings.max_note_chars, required=False
        )

    async def confirm(
        self,
        room: Room,
        registration_id: str,
        secret: str,
        code: str,
        now: float,
        *,
        queue: InvitationQueue | None = None,
    ) -> Confirmed:
        """Check the code sent for the registration `registration_id` (held by the browser's
        `secret`) and count the registration: a new one, or the address's earlier one in this
        room updated (name, note and language, marked `updated`, while it waits; an answered
        one keeps its answer and is returned as it is). Approved at once, its invitation
        queued in `queue`, when the address or its domain is on the room's auto-approve lists
        (`Confirmed.approved`); without a queue it waits for a host.

        Raises RegistrationUnknown (no such registration awaiting a code in this browser),
        RegistrationCodeWrong, RegistrationCodeExpired (also for a code used before),
        TooManyWrongRegistrationCodes (each a RegistrationCodeError), RegistrationClosed,
        RegistrationsFull."""
        if not self.open_at(room, now):
            raise RegistrationEnded() if room.registration else RegistrationClosed()
        pending, raw = await self._held(room, registration_id, secret)
        candidate = typed_code(code, self._codes.digits)
        if candidate is None:
            raise await self._reject(room, RegistrationCodeWrong())
        key = _pending_key(pending.id)
        if now >= pending.expires_at:
            await self._discard(pending, raw)
            raise await self._reject(room, RegistrationCodeExpired())
        ttl = self._settings.confirm_ttl_seconds
        tries = await self._store.bump_value(self._tries_key(pending.id), ttl)
        expected = self._digest(pending.id, room.name, pending.address, candidate)
        judged = judge_try(tries, self._codes.max_attempts, expected, pending.digest)
        if judged is CodeTry.SPENT:
            await self._discard(pending, raw)
            raise await self._reject(room, TooManyWrongRegistrationCodes())
        if judged is CodeTry.WRONG:
            raise await self._reject(room, RegistrationCodeWrong())
        # Works once: of two racing right answers exactly one takes the registration.
        if await self._store.take_value(key) != raw:
            raise await self._reject(room, RegistrationCodeExpired())
        await self._store.index_remove(self._pending_index(pending.room), pending.id)
        return await self._counted(room, pending, now, queue)

    async def _held(self, room: Room, pending_id: str, secret: str) -> tuple[_Pending, str]:
        if REGISTRATION_ID_SHAPE.fullmatch(pending_id) is None or not SECRET_SHAPE.fullmatch(
            secret
        ):
            raise RegistrationUnknown()
        raw = await self._store.get_value(_pending_key(pending_id))
        if raw is None:
            raise RegistrationUnknown()
        try:
            pending = _Pending.decode(self._sealer, raw)
        except CorruptRecord:
            self._corrupt()
            raise RegistrationUnknown() from None
        if pending.id != pending_id:
            self._corrupt()
            raise RegistrationUnknown()
        held = hmac.compare_digest(_secret_hash(secret), pending.holder)
        if not held or pending.room != room.name:
            raise RegistrationUnknown()
        return pending, raw

    async def _discard(self, pending: _Pending, raw: str) -> None:
        key = _pending_key(pending.id)
        if await self._store.get_value(key) == raw:
            await self._store.delete_value(key)
        await self._store.index_remove(self._pending_index(pending.room), pending.id)

    async def _counted(
        self, room: Room, pending: _Pending, now: float, queue: InvitationQueue | None
    ) -> Confirmed:
        """The confirmed registration stored: new, or the address's earlier one updated."""
        kept = self.kept_seconds(room, now)
        if kept is None:
            raise RegistrationClosed()
        address_key = mail_address_key(self._pseudonym_key, pending.address)
        registration_id = self.registration_id(room.name, address_key)
        earlier = await self._read(registration_id)
        if earlier is not None and earlier[0].room != room.name:
            self._corrupt()
            raise RegistrationUnknown()
        if earlier is not None:
            registration, address = earlier
            if registration.state is not RegistrationState.WAITING:
                return Confirmed(registration)
            # Held while it is updated: a host's answer meanwhile finds it taken and leaves it.
            mark = await self._store.take_value(self._waiting_key(registration_id))
            if mark is None:
                return Confirmed(registration)
            if mark != MARK:
                self._corrupt()
            try:
                flags = await self._flags(
                    room, pending, registration_id, registration.name, kept, now
                )
                registration = replace(
                    registration,
                    name=pending.name,
                    note=pending.note,
                    language=pending.language,
                    updated_at=now,
                    updated=True,
                    seen_address=flags.seen_address,
                    seen_domain=flags.seen_domain,
                    burst=registration.burst or flags.burst,
                    looks_like=flags.looks_like,
                )
                await self._write(registration, address or pending.address, kept)
            finally:
                await self._store.put_value(self._waiting_key(registration_id), MARK, kept)
        else:
            registration = await self._first(room, pending, registration_id, address_key, now)
        if queue is not None and self._auto_approved(room, pending.address):
            approved = await self.approve(room, [registration_id], "auto-approve", now, queue=queue)
            answered = await self._read(registration_id)
            if registration_id in approved.ids and answered is not None:
                return Confirmed(answered[0], approved=True)
        return Confirmed(registration)

    async def _first(
        self, room: Room, pending: _Pending, registration_id: str, address_key: str, now: float
    ) -> Registration:
        """A new registration, refused (RegistrationsFull) past the room's limit."""
        kept = self.kept_seconds(room, now)
        if kept is None:
            raise RegistrationClosed()
        index = self._waiting_index(room.name)
        # Counted after adding, so that racing confirmations never leave more than the limit.
        await self._store.index_add(index, registration_id, kept)
        if await self._waiting_count(index, registration_id) > self._settings.max_per_room:
            await self._store.index_remove(index, registration_id)
            raise await self._reject(room, RegistrationsFull())
        flags = await self._flags(room, pending, registration_id, None, kept, now)
        registration = Registration(
            id=registration_id,
            room=room.name,
            name=pending.name,
            note=pending.note,
            language=pending.language,
            domain=domain_of(pending.address),
            address_key=address_key,
            state=RegistrationState.WAITING,
            created_at=now,
            updated_at=now,
            seen_address=flags.seen_address,
            seen_domain=flags.seen_domain,
            burst=flags.burst,
            looks_like=flags.looks_like,
        )
        await self._write(registration, pending.address, kept)
        await self._store.put_value(self._waiting_key(registration_id), MARK, kept)
        return registration

    async def _waiting_count(self, index: str, registration_id: str) -> int:
        """How many of the index's registrations still wait (`registration_id`, being made, is
        one); at the limit, those answered or gone are taken out of it first (their waiting
        marks are gone)."""
        size = await self._store.index_size(index)
        if size <= self._settings.max_per_room:
            return size
        members = [m for m in await self._store.index_members(index) if m != registration_id]
        marks = await self._store.get_values([self._waiting_key(m) for m in members])
        for member, mark in zip(members, marks, strict=True):
            if mark is None:
                await self._store.index_remove(index, member)
        return await self._store.index_size(index)

    async def _write(self, registration: Registration, address: str, kept: float) -> None:
        await self._store.put_value(
            _record_key(registration.id), _encode(self._sealer, registration, address), kept
        )
        await self._store.index_add(self._room_index(registration.room), registration.id, kept)

    async def _flags(
        self,
        room: Room,
        pending: _Pending,
        registration_id: str,
        earlier_name: str | None,
        kept: float,
        now: float,
    ) -> _Flags:
        """The flags of a registration confirmed now: seen before, part of a burst (every
        registration of the burst is marked), a look-alike of a host's or another registrant's
        name (the other one is marked too)."""
        scope = self.series_of(room)
        address_key = mail_address_key(self._pseudonym_key, pending.address)
        domain_key = mail_domain_key(self._pseudonym_key, domain_of(pending.address))
        seen_address, seen_domain = await self._store.get_values(
            [
                self._seen_key(scope, "address", address_key),
                self._seen_key(scope, "domain", domain_key),
            ]
        )
        return _Flags(
            seen_address=self._marked(seen_address),
            seen_domain=self._marked(seen_domain),
            burst=await self._burst(room, pending.network, registration_id, kept),
            looks_like=await self._alike(
                room, pending.name, registration_id, earlier_name, kept, now
            ),
        )

    async def _burst(self, room: Room, network: str, registration_id: str, kept: float) -> bool:
        index = self._network_index(room.name, network)
        # The index is the window: each member lapses `burst_window_seconds` after it came.
        await self._store.index_add(index, registration_id, self._settings.burst_window_seconds)
        members = await self._store.index_members(index)
        if len(members) < self._settings.burst_threshold:
            return False
        for member in members:
            if member != registration_id and REGISTRATION_ID_SHAPE.fullmatch(member):
                await self._store.put_value(self._burst_key(member), MARK, kept)
        return True

    async def _alike(
        self,
        room: Room,
        name: str,
        registration_id: str,
        earlier_name: str | None,
        kept: float,
        now: float,
    ) -> bool:
        shape = host_shape(name)
        index = self._shape_index(room.name)
        if earlier_name is not None:
            await self._store.index_remove(
                index, f"{self._shape_tag(earlier_name)}.{registration_id}"
            )
        tag = self._shape_tag(name)
        await self._store.index_add(index, f"{tag}.{registration_id}", kept)
        alike = False
        for member in await self._store.index_members(index):
            other_tag, _, other = member.partition(".")
            if other_tag == tag and other != registration_id:
                alike = True
                if REGISTRATION_ID_SHAPE.fullmatch(other):
                    await self._store.put_value(self._alike_key(other), MARK, kept)
        return alike or shape in await self._host_shapes(room.name, now)

    async def _host_shapes(self, room: str, now: float) -> frozenset[str]:
        """The shapes of the names of `room`'s hosts: on its usable host invites, and of the
        hosts admitted to it."""
        shapes = {
            host_shape(invite.name)
            for invite in await self._store.list_invites(room)
            if invite.role is Role.HOST and invite.is_usable(now)
        }
        shapes.update(
            host_shape(admission.name)
            for admission in await self._store.list_admissions(room)
            if admission.role is Role.HOST and admission.is_live(now)
        )
        return frozenset(shapes)

    @staticmethod
    def _auto_approved(room: Room, address: str) -> bool:
        domain = domain_of(address)
        emails = {email.strip().lower() for email in room.auto_approve_emails}
        domains = {d.strip().lower().lstrip("@") for d in room.auto_approve_domains}
        return address in emails or domain in domains

    # Reading

    async def _read(self, registration_id: str) -> tuple[Registration, str] | None:
        """A stored registration and its address; None if there is none, or if its record does
        not parse (counted): a corrupt registration is none, so nobody is invited by it."""
        raw = await self._store.get_value(_record_key(registration_id))
        if raw is None:
            return None
        return self._parsed(registration_id, raw)

    def _parsed(self, registration_id: str, raw: str) -> tuple[Registration, str] | None:
        try:
            registration, address = _decode(self._sealer, raw)
        except CorruptRecord:
            self._corrupt()
            return None
        if registration.id != registration_id:
            self._corrupt()
            return None
        return registration, address

    def _marked(self, value: str | None) -> bool:
        if value is None:
            return False
        if value != MARK:
            self._corrupt()
            return False
        return True

    async def _all(self, room: str) -> list[Registration]:
        """Every registration of `room`, with the marks others set on it, oldest first."""
        ids = [
            member
            for member in await self._store.index_members(self._room_index(room))
            if REGISTRATION_ID_SHAPE.fullmatch(member) is not None
        ]
        found: list[Registration] = []
        for start in range(0, len(ids), READ_BATCH):
            batch = ids[start : start + READ_BATCH]
            keys = [
                key
                for registration_id in batch
                for key in (
                    _record_key(registration_id),
                    self._burst_key(registration_id),
                    self._alike_key(registration_id),
                )
            ]
            values = await self._store.get_values(keys)
            for i, registration_id in enumerate(batch):
                raw, burst, alike = values[3 * i : 3 * i + 3]
                if raw is None:
                    continue
                parsed = self._parsed(registration_id, raw)
                if parsed is None or parsed[0].room != room:
                    continue
                registration = parsed[0]
                if self._marked(burst):
                    registration = replace(registration, burst=True)
                if self._marked(alike):
                    registration = replace(registration, looks_like=True)
                found.append(registration)
        found.sort(key=lambda registration: (registration.created_at, registration.id))
        return found

    async def get(self, room: str, registration_id: str) -> Registration | None:
        """One registration of `room`, as a host sees it; None if there is none."""
        if REGISTRATION_ID_SHAPE.fullmatch(registration_id) is None:
            return None
        read = await self._read(registration_id)
        if read is None or read[0].room != room:
            return None
        return read[0]

    async def page(
        self,
        room: Room | str,
        *,
        state: RegistrationState | str | None = None,
        flag: RegistrationFlag | str | None = None,
        offset: int = 0,
        limit: int = 50,
        now: float,
    ) -> RegistrationPage:
        """One page of `room`'s registrations in `state` with `flag` (None: any), oldest first;
        `limit` at most MAX_PAGE. A waiting registration whose name looks like that of someone
        in the room now is flagged `looks_like` too, and each one flagged says whom it resembles
        when a name of the room's still does (`resembles`). InvalidInput for an unknown state or
        flag."""
        name = room.name if isinstance(room, Room) else room
        wanted_state = self._state(state)
        wanted_flag = self._flag(flag)
        limit = max(0, min(limit, MAX_PAGE))
        offset = max(0, offset)
        every = await self._all(name)
        if every:
            every = await self._resembling(name, every, now)
        states = {state.value: 0 for state in RegistrationState}
        for registration in every:
            states[registration.state.value] += 1
        in_state = [r for r in every if wanted_state is None or r.state is wanted_state]
        flags = {flag.value: 0 for flag in RegistrationFlag}
        for registration in in_state:
            for each in registration.flags:
                flags[each.value] += 1
        matching = [r for r in in_state if wanted_flag is None or wanted_flag in r.flags]
        return RegistrationPage(
            items=tuple(matching[offset : offset + limit]),
            total=len(matching),
            offset=offset,
            limit=limit,
            states=states,
            flags=flags,
        )

    async def waiting_ids(
        self,
        room: Room | str,
        *,
        flag: RegistrationFlag | str | None = None,
        most: int,
        now: float,
    ) -> tuple[list[str], int]:
        """The ids of `room`'s waiting registrations with `flag` (None: any), oldest first, at
        most `most`, and how many there are: what `page` would list over every page, read in one
        scan (the room's registrations, its invites and admissions read once). InvalidInput for
        an unknown flag."""
        name = room.name if isinstance(room, Room) else room
        wanted_flag = self._flag(flag)
        every = await self._all(name)
        if every:
            every = await self._resembling(name, every, now)
        matching = [
            r.id
            for r in every
            if r.state is RegistrationState.WAITING
            and (wanted_flag is None or wanted_flag in r.flags)
        ]
        return matching[: max(0, most)], len(matching)

    async def _resembling(
        self, room: str, every: list[Registration], now: float
    ) -> list[Registration]:
        """`every` with whom each look-alike resembles: a host's name first, then a
        participant's in the room now, then the earliest other registrant's of a like name. A
        waiting one like a host's or a participant's is flagged `looks_like` here too."""
        known = await self._known_names(room, now)
        shapes = [host_shape(registration.name) for registration in every]
        alike: dict[str, list[Registration]] = {}
        for shape, registration in zip(shapes, every, strict=True):
            alike.setdefault(shape, []).append(registration)
        found: list[Registration] = []
        for shape, registration in zip(shapes, every, strict=True):
            waiting = registration.state is RegistrationState.WAITING
            if registration.looks_like or (waiting and shape in known):
                resembles = known.get(shape)
                if resembles is None:
                    other = next((r for r in alike[shape] if r.id != registration.id), None)
                    if other is not None:
                        resembles = Resemblance(other.name, ResembledKind.REGISTRANT)
                registration = replace(registration, looks_like=True, resembles=resembles)
            found.append(registration)
        return found

    async def _known_names(self, room: str, now: float) -> dict[str, Resemblance]:
        """The names of `room`'s hosts (on their usable invites, and in the room) and of its
        participants now, by shape; a host's where a participant's is alike."""
        admissions = [a for a in await self._store.list_admissions(room) if a.is_live(now)]
        hosts = [
            invite.name
            for invite in await self._store.list_invites(room)
            if invite.role is Role.HOST and invite.is_usable(now)
        ]
        hosts += [admission.name for admission in admissions if admission.role is Role.HOST]
        known: dict[str, Resemblance] = {}
        for name in hosts:
            known.setdefault(host_shape(name), Resemblance(name, ResembledKind.HOST))
        for admission in admissions:
            known.setdefault(
                host_shape(admission.name),
                Resemblance(admission.name, ResembledKind.PARTICIPANT),
            )
        return known

    @staticmethod
    def _state(value: RegistrationState | str | None) -> RegistrationState | None:
        if value is None or value == "":
            return None
        try:
            return RegistrationState(value)
        except ValueError:
            raise InvalidInput(N_("There is no such state of a registration.")) from None

    @staticmethod
    def _flag(value: RegistrationFlag | str | None) -> RegistrationFlag | None:
        if value is None or value == "":
            return None
        try:
            return RegistrationFlag(value)
        except ValueError:
            raise InvalidInput(N_("There is no such flag of a registration.")) from None

    # Answering

    async def approve(
        self,
        room: Room | str,
        ids: Iterable[str],
        actor: str,
        now: float,
        *,
        queue: InvitationQueue,
    ) -> Approved:
        """Approve each of `ids` that waits in `room` and queue its invitation (an attendee's,
        in the registrant's language) in `queue`, all in one batch; the address leaves the
        store once its invitation is queued. Ids unknown, of another room, answered or being
        answered are passed over. Those an earlier approval of the room left pending (a store
        or queue failure on the way) are queued now too, at most RESUMED_AT_ONCE of them,
        whichever ids are given. Once the room's outbox takes no more (its OutboxFull), the rest
        are left as they were, waiting or pending (`Approved.full`).

        In order, for each: the waiting mark taken (of racing answers one goes ahead) and a
        lease on queueing it; the record rewritten approved with its invitation pending, the
        address kept; then its invitation queued; then the address erased. A failure raises,
        leaving each person waiting, pending (queued by the next approval) or invited; only a
        failure between queueing and erasing may have the next approval queue a second
        invitation (sent, never lost)."""
        current = await self._room(room)
        if current is None:
            return Approved(())
        pending = (await self._pending(current.name))[:RESUMED_AT_ONCE]
        return await self._queue_held(current, [*pending, *ids], actor, now, queue=queue)

    async def resume(
        self, room: Room | str, now: float, *, queue: InvitationQueue, most: int = RESUMED_AT_ONCE
    ) -> Approved:
        """Queue the invitations that approvals of `room` left pending (a queue or a store
        failing on the way, a gate stopped half-way), at most `most`, without waiting for the
        next approval in the room: called when its hosts' page or the admin's list reads the
        room. Each under its lease, as `approve` takes it (one an approval holds now is left to
        it); nobody waiting is approved. None once the meeting has ended (the outbox takes no
        invitation to it then)."""
        current = await self._room(room)
        if current is None or (current.ends_at is not None and current.ends_at <= now):
            return Approved(())
        pending = (await self._pending(current.name))[: max(0, most)]
        if not pending:
            return Approved(())
        return await self._queue_held(current, pending, "", now, queue=queue, waiting=False)

    async def _pending(self, room: str) -> list[str]:
        return [
            member
            for member in await self._store.index_members(self._inviting_index(room))
            if REGISTRATION_ID_SHAPE.fullmatch(member) is not None
        ]

    async def _queue_held(
        self,
        current: Room,
        ids: Iterable[str],
        actor: str,
        now: float,
        *,
        queue: InvitationQueue,
        waiting: bool = True,
    ) -> Approved:
        """Take each of `ids` (pending ones, and with `waiting` waiting ones) and queue their
        invitations in one batch. Once the room's outbox refuses one as full, it and those after
        it are given back as they were (waiting, or pending); any other failure leaves each one
        not queued pending (let go) and raises."""
        kept = self.kept_seconds(current, now)
        held: list[tuple[Registration, str, Registration | None]] = []
        try:
            for registration_id in dict.fromkeys(ids):
                taken = await self._take_for_invitation(
                    current, registration_id, actor, kept, now, waiting=waiting
                )
                if taken is not None:
                    held.append(taken)
            done: list[str] = []
            batch: str | None = None
            while held:
                registration, address, _ = held[0]
                try:
                    batch = await self._invite(current, registration, address, queue, batch, now)
                except MeetgateError as refused:
                    if refused.code != OUTBOX_FULL:
                        raise
                    for each in held:
                        await self._give_back(current, *each, kept, now)
                    held.clear()
                    return Approved(tuple(done), batch, full=True)
                held.pop(0)
                done.append(registration.id)
                try:
                    await self._invited(current, registration, now)
                except Exception:
                    # Invited: its lease stays, so no approval queues it again meanwhile. Tried
                    # once more; failing again, the address goes with the meeting's retention,
                    # and an approval after the lease may send a second invitation (never none).
                    await self._invited(current, registration, now)
            return Approved(tuple(done), batch)
        except BaseException:
            # What is held and not invited is let go, so that the next approval takes it up
            # now rather than once the lease has passed (the lease lets it go otherwise).
            for registration, address, _ in held:
                await self._give_back(current, registration, address, None, kept, now)
            raise

    async def _give_back(
        self,
        room: Room,
        registration: Registration,
        address: str,
        before: Registration | None,
        kept: float | None,
        now: float,
    ) -> None:
        """A registration taken for an invitation that was not queued, given back: one taken
        waiting (`before`, as it was) waits again, its address kept, for a host to answer; one
        left pending before is let go (its round raised), so that the next approval takes it up
        now rather than once the lease has passed."""
        with contextlib.suppress(Exception):
            read = await self._read(registration.id)
            if kept is None or read is None or not read[0].inviting:
                return
            # Re-read: a retime meanwhile passed over this one, held by the approval.
            kept = await self._kept_now(room.name, now)
            if kept is None:
                return
            if before is None:
                let_go = replace(registration, invite_round=registration.invite_round + 1)
                await self._write(let_go, address, kept)
                return
            await self._write(before, address, kept)
            await self._store.index_remove(self._inviting_index(room.name), registration.id)
            await self._store.put_value(self._waiting_key(registration.id), MARK, kept)

    async def _take_for_invitation(
        self,
        room: Room,
        registration_id: str,
        actor: str,
        kept: float | None,
        now: float,
        *,
        waiting: bool = True,
    ) -> tuple[Registration, str, Registration | None] | None:
        """The registration, approved with its invitation pending and held under a lease for
        this approval to queue, its address, and the registration as it was when it waited
        (None: it was pending already); None if it is not one to approve now (with `waiting`
        False, only a pending one is)."""
        if REGISTRATION_ID_SHAPE.fullmatch(registration_id) is None:
            return None
        read = await self._read(registration_id)
        if read is None:
            await self._store.index_remove(self._inviting_index(room.name), registration_id)
            return None
        registration, address = read
        if registration.room != room.name or not address:
            return None
        if registration.inviting:
            # Left pending by an approval that stopped: taken up once its lease is let go.
            lease = self._lease_key(registration_id, registration.invite_round)
            if kept is None or not await self._store.claim_once(lease, INVITING_LEASE_SECONDS):
                return None
            return registration, address, None
        if registration.state is not RegistrationState.WAITING:
            # Answered for good: no longer pending, if an erasure left it in the index.
            await self._store.index_remove(self._inviting_index(room.name), registration_id)
            return None
        if not waiting:
            return None
        mark = await self._store.take_value(self._waiting_key(registration_id))
        if mark is None:
            return None
        if mark != MARK:
            # Nobody is invited on a mark that does not parse (counted).
            self._corrupt()
            return None
        if kept is None:
            # The meeting is over, and with it what was kept of its registrations.
            await self._drop(room.name, registration)
            return None
        approved = replace(
            registration,
            state=RegistrationState.APPROVED,
            updated_at=now,
            answered_at=now,
            answered_by=actor,
            inviting=True,
        )
        written = False
        try:
            leased = await self._store.claim_once(
                self._lease_key(registration_id, approved.invite_round), INVITING_LEASE_SECONDS
            )
            if not leased:
                approved = replace(approved, invite_round=approved.invite_round + 1)
                await self._store.claim_once(
                    self._lease_key(registration_id, approved.invite_round),
                    INVITING_LEASE_SECONDS,
                )
            await self._write(approved, address, kept)
            written = True
            await self._store.index_add(self._inviting_index(room.name), registration_id, kept)
        except BaseException:
            if not written:
                # Still waiting, with its address: answerable again.
                with contextlib.suppress(Exception):
                    await self._store.put_value(self._waiting_key(registration_id), MARK, kept)
            raise
        return approved, address, registration

    async def _invite(
        self,
        room: Room,
        registration: Registration,
        address: str,
        queue: InvitationQueue,
        batch: str | None,
        now: float,
    ) -> str:
        """Queue a held registration's invitation (into `batch`, if given); the batch's id."""
        invitation = Invitation(
            room=registration.room,
            name=registration.name,
            address=address,
            role=Role.ATTENDEE,
            language=registration.language,
            origin=ORIGIN,
        )
        return (await queue.enqueue(room, [invitation], now=now, batch=batch)).batch

    async def _invited(self, room: Room, registration: Registration, now: float) -> None:
        """Its invitation is queued: the address erased, the registration no longer pending,
        kept as the meeting's time says now (`retime` passes over a pending one an approval
        holds; a room deleted meanwhile takes it along)."""
        current = await self._store.get_room(room.name)
        kept = None if current is None else self.kept_seconds(current, now)
        if kept is None:
            await self._drop(room.name, registration)
            return
        await self._write(replace(registration, inviting=False), "", kept)
        await self._store.index_remove(self._inviting_index(room.name), registration.id)

    async def deny(self, room: Room | str, ids: Iterable[str], actor: str, now: float) -> int:
        """Deny each of `ids` that waits in `room` (its address dropped; the same address
        registering again finds it denied). How many were denied."""
        return len(await self._answer(room, ids, RegistrationState.DENIED, actor, now))

    async def _answer(
        self,
        room: Room | str,
        ids: Iterable[str],
        state: RegistrationState,
        actor: str,
        now: float,
    ) -> list[tuple[Registration, str]]:
        current = await self._room(room)
        if current is None:
            return []
        kept = self.kept_seconds(current, now)
        answered: list[tuple[Registration, str]] = []
        for registration_id in dict.fromkeys(ids):
            if REGISTRATION_ID_SHAPE.fullmatch(registration_id) is None:
                continue
            read = await self._read(registration_id)
            if read is None:
                continue
            registration, address = read
            if registration.room != current.name:
                continue
            if registration.state is not RegistrationState.WAITING or not address:
                continue
            mark = await self._store.take_value(self._waiting_key(registration_id))
            if mark is None:
                continue
            if mark != MARK:
                # Counted; denying still is a denial.
                self._corrupt()
            # The room's time as it is now: a retime since the start passed over this one (its
            # mark was taken), and must not be undone with the longer time read before.
            kept = await self._kept_now(current.name, now)
            if kept is None:
                # The meeting is over, and with it what was kept of its registrations.
                await self._drop(current.name, registration)
                continue
            changed = replace(
                registration, state=state, updated_at=now, answered_at=now, answered_by=actor
            )
            await self._write(changed, "", kept)
            answered.append((changed, address))
        return answered

    async def _drop(self, room: str, registration: Registration) -> None:
        await self._store.delete_value(_record_key(registration.id))
        await self._drop_marks(registration.id)
        await self._store.index_remove(self._room_index(room), registration.id)
        await self._store.index_remove(self._inviting_index(room), registration.id)
        await self._store.index_remove(
            self._shape_index(room), f"{self._shape_tag(registration.name)}.{registration.id}"
        )

    async def _drop_marks(self, registration_id: str) -> None:
        """Delete a registration's waiting, burst and look-alike marks."""
        await self._store.delete_value(self._waiting_key(registration_id))
        await self._store.delete_value(self._burst_key(registration_id))
        await self._store.delete_value(self._alike_key(registration_id))

    # Seen before, and forgetting

    async def remember(self, room: Room, address: str, now: float) -> None:
        """Note that `address` was admitted to (or invited into) `room`: its keyed hash and its
        domain's go in the room's series' "seen" index for `seen_kept_days`. An address that is
        not one a code can be sent to is passed over."""
        try:
            address = normalise_address(address)
        except InvalidAddress:
            return
        scope = self.series_of(room)
        ttl = self._settings.seen_kept_days * DAY_SECONDS
        address_key = mail_address_key(self._pseudonym_key, address)
        domain_key = mail_domain_key(self._pseudonym_key, domain_of(address))
        await self._store.put_value(self._seen_key(scope, "address", address_key), MARK, ttl)
        await self._store.put_value(self._seen_key(scope, "domain", domain_key), MARK, ttl)

    async def retime(self, room: Room, now: float) -> int:
        """Keep `room`'s registrations as its meeting's time says now (call it when the end
        time changes): each one's expiry is set anew, and every one is dropped when the
        meeting's retention has passed already. How many were kept or dropped."""
        kept = self.kept_seconds(room, now)
        count = 0
        for registration_id in await self._store.index_members(self._room_index(room.name)):
            if REGISTRATION_ID_SHAPE.fullmatch(registration_id) is None:
                continue
            # Held, as an update holds it: an answer meanwhile must not be written over.
            mark = await self._store.take_value(self._waiting_key(registration_id))
            try:
                read = await self._read(registration_id)
                if read is None or read[0].room != room.name:
                    continue
                registration, address = read
                if registration.state is RegistrationState.WAITING and mark is None:
                    # Being answered right now: its answer is written with the new time.
                    continue
                if registration.inviting:
                    held = await self._hold_pending(registration)
                    if held is None:
                        # An approval is queueing its invitation: it writes the record (its
                        # address erased) with the meeting's time as it reads it then.
                        continue
                    registration, address = held
                count += 1
                if kept is None:
                    await self._drop(room.name, registration)
                    mark = None
                    continue
                await self._write(registration, address, kept)
                if registration.state is RegistrationState.WAITING:
                    await self._store.index_add(
                        self._waiting_index(room.name), registration_id, kept
                    )
                if registration.inviting:
                    await self._store.index_add(
                        self._inviting_index(room.name), registration_id, kept
                    )
                shape = f"{self._shape_tag(registration.name)}.{registration.id}"
                await self._store.index_add(self._shape_index(room.name), shape, kept)
                for key in (self._burst_key(registration_id), self._alike_key(registration_id)):
                    if self._marked(await self._store.get_value(key)):
                        await self._store.put_value(key, MARK, kept)
            finally:
                if mark is not None and kept is not None:
                    await self._store.put_value(self._waiting_key(registration_id), mark, kept)
        return count

    async def _hold_pending(self, registration: Registration) -> tuple[Registration, str] | None:
        """For `retime`, a pending registration to rewrite, read under the lease an approval
        queueing it holds, so that its erased address is never written back: taken (and let go
        again by the round raised, so the next approval queues it at once), or found no longer
        pending; None while an approval holds it."""
        lease = self._lease_key(registration.id, registration.invite_round)
        taken = await self._store.claim_once(lease, INVITING_LEASE_SECONDS)
        read = await self._read(registration.id)
        if read is None or read[0].room != registration.room:
            return None
        again, address = read
        if not again.inviting:
            # Queued meanwhile: approved for good, its address gone; nothing changes it now.
            return again, address
        if not taken or again.invite_round != registration.invite_round:
            return None
        return replace(again, invite_round=again.invite_round + 1), address

    async def forget_room(self, room: str) -> int:
        """Drop every registration of `room` and those awaiting a code (the room is deleted);
        how many registrations there were. The series' "seen" hashes stay."""
        count = 0
        for registration_id in await self._store.index_members(self._room_index(room)):
            read = await self._read(registration_id)
            if read is not None:
                await self._drop(room, read[0])
                count += 1
            else:
                await self._store.index_remove(self._room_index(room), registration_id)
                await self._drop_marks(registration_id)
        for index in (self._shape_index(room), self._inviting_index(room)):
            for member in await self._store.index_members(index):
                await self._store.index_remove(index, member)
        for pending_id in await self._store.index_members(self._pending_index(room)):
            await self._store.delete_value(_pending_key(pending_id))
            await self._store.index_remove(self._pending_index(room), pending_id)
        return count

    # Sending codes

    def _dispatch(
        self, address: str, code: str, room: Room, language: Language, ttl: float, page: str
    ) -> None:
        minutes = max(1, int(ttl // 60))
        title = room.title or room.name
        self._sender.send(
            address,
            code,
            room.name,
            language,
            lambda: registration_code_message(language, title, code, minutes, page),
        )

    async def drain(self) -> None:
        """Wait for the codes being sent now (tests; an orderly shutdown)."""
        await self._sender.drain()
