"""E-mail one-time codes: issue a short numeric code to an address a room allows, and check it.

Only a keyed hash of each code is stored, bound to its room and address. A request for an
address the room does not allow stores a decoy that no code matches and sends nothing, so
neither the answer, nor the attempts that follow, nor the store work tell an allowed address from
another. Codes expire, die after `max_attempts` wrong tries, work once, and at most
`max_sends_per_address` are sent to one address per hour. Sending happens in the background, in
the language of the page the code was asked for on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from gettext import NullTranslations
from typing import Protocol

from gateway.admission.flood import FloodGuard, Proof
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.limits import Attempt, RateLimiter
from gateway.admission.names import normalise
from gateway.admission.policy import email_allowed
from gateway.errors import InvalidInput, MeetgateError, NotAdmitted, RateLimited
from gateway.i18n import ENGLISH, N_, Language, translations
from gateway.settings import EmailCodeSettings
from gateway.store import Store
from gateway.store.records import Room, RoomPolicy

log = logging.getLogger("meetgate.email")

MAX_ADDRESS_CHARS = 254
MAX_LOCAL_CHARS = 64
MAX_NAME_CHARS = 64
SEND_WINDOW_SECONDS = 3600
# Codes waiting for the SMTP server at once; past this a replica drops new ones (and logs it)
# rather than queue without bound.
MAX_PENDING_SENDS = 500

_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
ADDRESS = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>{_LABEL}(?:\.{_LABEL})+)")


class EmailCodeError(MeetgateError):
    """A code that does not let anyone in; the code page shows the message."""

    status = 400
    code = "email_code_invalid"
    title = N_("That code did not work")


class InvalidAddress(InvalidInput):
    code = "email_address_invalid"
    title = N_("Not an e-mail address")
    message = N_(
        "That is not an e-mail address Meetgate can send a code to. Check it and try again."
    )


class CodeWrong(EmailCodeError):
    code = "email_code_wrong"
    message = N_("That code is not right.")


class CodeExpired(EmailCodeError):
    status = 410
    code = "email_code_expired"
    message = N_("This code has expired or has already been used: ask for a new one.")


class TooManyWrongCodes(EmailCodeError):
    status = 403
    code = "email_code_attempts"
    message = N_("Too many wrong codes: ask for a new one.")


class TooManyCodes(RateLimited):
    code = "email_code_sends"
    message = N_("Too many codes were asked for this address. Please wait before asking again.")


class CodeMailer(Protocol):
    """Delivers one plain-text message written in `language`, a BCP 47 tag
    (gateway.mail.SmtpMailer); raises MeetgateError."""

    async def send(self, to: str, subject: str, body: str, *, language: str = "en") -> None: ...


# Translators: the subject of the e-mail with a code; {room} is a title in any language.
CODE_SUBJECT = N_("Your code for {room}")
# Translators: the e-mail's first line; the code follows on a line of its own.
CODE_INTRO = N_("Your code to join {room}:")
CODE_IGNORE = N_(
    "If you did not ask for this code, ignore this e-mail. Nobody can join without the code."
)


def code_message(language: Language, room_title: str, code: str, minutes: int) -> tuple[str, str]:
    """Pure: the subject and plain-text body of the e-mail that carries `code`, in `language`.
    Short, for a phone: what the code is for, the code alone on an indented line (where a mail
    app offers to copy it), how long it works, and what to do if it was not asked for. No
    links."""
    catalog = translations(language)
    intro = catalog.gettext(CODE_INTRO).format(room=room_title)
    body = code_mail_body(catalog, intro, code, minutes, (catalog.gettext(CODE_IGNORE),))
    return catalog.gettext(CODE_SUBJECT).format(room=room_title), body


def code_mail_body(
    catalog: NullTranslations, intro: str, code: str, minutes: int, notes: tuple[str, ...]
) -> str:
    """Pure: the plain-text body of an e-mail that carries a code, the e-mail codes' and the
    registrations' alike: `intro` (translated), the code alone on an indented line, how long
    it works, then the `notes` (translated), a line each."""
    lasts = catalog.ngettext(
        "It works once, for {minutes} minute.", "It works once, for {minutes} minutes.", minutes
    )
    lines = (intro, "", f"    {code}", "", lasts.format(minutes=minutes), *notes)
    return "\n".join(lines) + "\n"


def normalise_address(raw: str) -> str:
    """The address, trimmed and lower-cased, if it is a plain `local@domain.tld` a code can be
    sent to (no quoted local parts, no address literals, no display names); InvalidAddress."""
    address = raw.strip().lower()
    if len(address) > MAX_ADDRESS_CHARS:
        raise InvalidAddress()
    match = ADDRESS.fullmatch(address)
    if match is None or len(match["local"]) > MAX_LOCAL_CHARS:
        raise InvalidAddress()
    return address


def may_receive_code(policy: RoomPolicy, address: str) -> bool:
    """Would this room admit someone who proved this address (as attendee or host)?"""
    if not policy.email_code:
        return False
    return email_allowed(policy, address) or address in (e.lower() for e in policy.host_emails)


def code_address_key(key: bytes, address: str) -> str:
    """The keyed hash that names a normalised address in the codes' store keys and rate limits;
    `key` is `[admission] pseudonym_key`."""
    codes_key = hmac.new(key, b"meetgate e-mail codes", hashlib.sha256).digest()
    digest = hmac.new(codes_key, f"address:{address}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def sent_counter_key(address_key: str) -> str:
    """The counter of e-mail codes sent to one address within SEND_WINDOW_SECONDS:
    `address_key` is `code_address_key`'s. Registration codes are counted apart
    (gateway.admission.registrations), so registering never locks anyone out of signing in."""
    return f"email:sent:{address_key}"


def new_code(digits: int) -> str:
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def typed_code(raw_code: str, digits: int) -> str | None:
    """The code as typed, spaces and dashes dropped, if it is `digits` ASCII digits; else None."""
    candidate = re.sub(r"[\s-]", "", raw_code)
    if len(candidate) != digits or not (candidate.isascii() and candidate.isdigit()):
        return None
    return candidate


class CodeTry(Enum):
    RIGHT = "right"
    WRONG = "wrong"
    # Too many wrong tries: the code is discarded.
    SPENT = "spent"


def judge_try(tries: int, limit: int, expected: str, stored: str) -> CodeTry:
    """Pure: the `tries`-th try at a code that allows `limit` (the try's digest `expected`
    against the `stored` one, in constant time). Past the limit nothing matches, and the last
    allowed try, if wrong, spends the code."""
    if tries > limit:
        return CodeTry.SPENT
    if hmac.compare_digest(expected, stored):
        return CodeTry.RIGHT
    return CodeTry.SPENT if tries >= limit else CodeTry.WRONG


class CodeSender:
    """Sends code e-mails in the background, so a page never waits on the mail server: at most
    MAX_PENDING_SENDS at once (past it a code is dropped, and that logged), and a failure
    logged with neither the address nor the code. `what` names the codes in the log lines."""

    def __init__(self, mailer: CodeMailer, logger: logging.Logger, what: str) -> None:
        self._mailer = mailer
        self._log = logger
        self._what = what
        self._sending: set[asyncio.Task[None]] = set()

    def send(
        self,
        address: str,
        code: str,
        room: str,
        language: Language,
        message: Callable[[], tuple[str, str]],
    ) -> None:
        """Send `message()` (its subject and body, composed in the background) to `address`."""
        if len(self._sending) >= MAX_PENDING_SENDS:
            self._log.warning("%s for room %s not sent: too many sends pending", self._what, room)
            return
        task = asyncio.create_task(self._deliver(address, code, room, language, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(
        self,
        address: str,
        code: str,
        room: str,
        language: Language,
        message: Callable[[], tuple[str, str]],
    ) -> None:
        subject, body = message()
        try:
            await self._mailer.send(address, subject, body, language=language.tag)
        except MeetgateError as exc:
            # The mailer keeps addresses out of its reasons; scrubbed here all the same.
            reason = str(getattr(exc, "reason", exc.code))
            reason = reason.replace(address, "[address]").replace(code, "[code]")
            self._log.warning("%s for room %s not sent: %s", self._what, room, reason)
        except Exception as exc:
            # Never log the exception's text or traceback: it may quote the address or the body.
            self._log.error("%s for room %s not sent: %s", self._what, room, type(exc).__name__)
        else:
            self._log.info("%s sent for room %s", self._what, room)

    async def drain(self) -> None:
        """Wait for the codes being sent now (tests; an orderly shutdown)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class StoredCode:
    """What the store holds for one address in one room: never the code itself."""

    code_id: str
    expires_at: float
    digest: str

    def dump(self) -> str:
        return f"{self.code_id}:{self.expires_at!r}:{self.digest}"

    @classmethod
    def load(cls, raw: str) -> StoredCode | None:
        parts = raw.split(":")
        if len(parts) != 3:
            return None
        try:
            return cls(parts[0], float(parts[1]), parts[2])
        except ValueError:
            return None


class EmailCodes:
    def __init__(
        self,
        store: Store,
        settings: EmailCodeSettings,
        *,
        key: bytes,
        limiter: RateLimiter,
        mailer: CodeMailer,
        flood: FloodGuard | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._pseudonym_key = key
        # A key of its own, so a code hash can never pass for a pseudonym or a challenge.
        self._key = hmac.new(key, b"meetgate e-mail codes", hashlib.sha256).digest()
        self._limiter = limiter
        self._mailer = mailer
        self._flood = flood
        self._sender = CodeSender(mailer, log, "e-mail code")

    @property
    def settings(self) -> EmailCodeSettings:
        return self._settings

    def address_key(self, address: str) -> str:
        """The keyed hash that names an address in store keys and rate limits."""
        return code_address_key(self._pseudonym_key, address)

    def _digest(self, code_id: str, room: str, address: str, code: str) -> str:
        message = f"code:{code_id}:{room}:{address}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _code_key(self, room: str, address_key: str) -> str:
        return f"email:code:{room}:{address_key}"

    async def _reject(self, room: Room, error: MeetgateError) -> MeetgateError:
        await self._limiter.note_rejection(room.name, error.code)
        return error

    async def _address_charged(
        self, room: Room, raw_address: str, client_addr: str, now: float, proof: Proof | None
    ) -> tuple[str, str]:
        """Proof-of-work if demanded, then the rate limits; the address and its key."""
        if self._flood is not None:
            await self._flood.check(proof, client_addr=client_addr, room=room, now=now)
        try:
            address = normalise_address(raw_address)
        except InvalidAddress as refused:
            await self._limiter.charge(Attempt(client_addr, room=room.name))
            raise await self._reject(room, refused) from None
        address_key = self.address_key(address)
        await self._limiter.charge(Attempt(client_addr, room=room.name, identity=address_key))
        return address, address_key

    async def request(
        self,
        room: Room,
        raw_address: str,
        client_addr: str,
        now: float,
        proof: Proof | None = None,
        *,
        language: Language = ENGLISH,
    ) -> str:
        """Issue a code for `raw_address` to enter `room`, and send it, written in `language`,
        if the room allows that address. Returns the normalised address; the caller answers the
        same either way.

        Raises NotAdmitted (the room takes no codes), InvalidAddress, RateLimited, TooManyCodes,
        and ChallengeRequired/ChallengeFailed when the room demands proof-of-work.
        """
        if not room.policy.email_code:
            await self._limiter.charge(Attempt(client_addr, room=room.name))
            raise NotAdmitted()
        address, address_key = await self._address_charged(
            room, raw_address, client_addr, now, proof
        )
        sends = await self._store.bump_value(sent_counter_key(address_key), SEND_WINDOW_SECONDS)
        if sends > self._settings.max_sends_per_address:
            raise await self._reject(room, TooManyCodes(SEND_WINDOW_SECONDS))
        code_id = secrets.token_hex(8)
        code: str | None = None
        if may_receive_code(room.policy, address):
            code = new_code(self._settings.digits)
            digest = self._digest(code_id, room.name, address, code)
        else:
            # A decoy: as long as a real digest, and matched by no code (2^-256 odds).
            digest = secrets.token_hex(32)
        ttl = self._settings.ttl_seconds
        stored = StoredCode(code_id=code_id, expires_at=now + ttl, digest=digest)
        # Replaces any earlier code: only the newest one sent works.
        await self._store.put_value(self._code_key(room.name, address_key), stored.dump(), ttl)
        if code is not None:
            self._dispatch(address, code, room, language)
        return address

    async def verify(
        self,
        room: Room,
        raw_address: str,
        raw_code: str,
        client_addr: str,
        now: float,
        *,
        name: str = "",
        proof: Proof | None = None,
    ) -> VerifiedIdentity:
        """Check a code and consume it; the identity it proves. Raises CodeWrong, CodeExpired
        (also for a code used before), TooManyWrongCodes, InvalidAddress, InvalidInput (the
        name), RateLimited, NotAdmitted (the room takes no codes)."""
        if not room.policy.email_code:
            await self._limiter.charge(Attempt(client_addr, room=room.name))
            raise NotAdmitted()
        address, address_key = await self._address_charged(
            room, raw_address, client_addr, now, proof
        )
        # Checked before the code is touched: a bad name must not burn a good code.
        display_name = self.display_name(address, name)
        candidate = typed_code(raw_code, self._settings.digits)
        if candidate is None:
            raise await self._reject(room, CodeWrong())
        key = self._code_key(room.name, address_key)
        raw = await self._store.get_value(key)
        stored = StoredCode.load(raw) if raw is not None else None
        if raw is None or stored is None or now >= stored.expires_at:
            if raw is not None:
                await self._store.delete_value(key)
            raise await self._reject(room, CodeExpired())
        tries = await self._store.bump_value(
            f"email:tries:{stored.code_id}", self._settings.ttl_seconds
        )
        expected = self._digest(stored.code_id, room.name, address, candidate)
        judged = judge_try(tries, self._settings.max_attempts, expected, stored.digest)
        if judged is CodeTry.SPENT:
            await self._discard(key, raw)
            raise await self._reject(room, TooManyWrongCodes())
        if judged is CodeTry.WRONG:
            raise await self._reject(room, CodeWrong())
        # Single use: of two racing right answers exactly one takes the code.
        if await self._store.take_value(key) != raw:
            raise await self._reject(room, CodeExpired())
        # The address is proven, the name is whatever the person typed (or the address's local
        # part): no host has seen it, so the room sees it marked as a guest's (a host's, named
        # by host_emails, is not).
        return VerifiedIdentity(
            path=Path.EMAIL,
            subject=address,
            name=display_name,
            email=address,
            email_verified=True,
            guest=True,
        )

    def display_name(self, address: str, given: str) -> str:
        """The name the person gave on the code page, under the display-name rules that invite
        and lobby names follow (InvalidInput if it cannot be shown), or the address's local
        part."""
        if given.strip():
            return normalise(given)
        return address.split("@", 1)[0][:MAX_NAME_CHARS]

    async def _discard(self, key: str, raw: str) -> None:
        # Only the code the attempts were counted against: a newer one sent meanwhile stays.
        if await self._store.get_value(key) == raw:
            await self._store.delete_value(key)

    def _dispatch(self, address: str, code: str, room: Room, language: Language) -> None:
        minutes = max(1, self._settings.ttl_seconds // 60)
        title = room.title or room.name
        self._sender.send(
            address, code, room.name, language, lambda: code_message(language, title, code, minutes)
        )

    async def drain(self) -> None:
        """Wait for the codes being sent now (tests; an orderly shutdown)."""
        await self._sender.drain()
