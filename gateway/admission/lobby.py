"""The lobby: people a host must let in wait here as requests, which a host approves, denies, or
denies and bans; an approved request is collected once, by the browser that made it.

Plain values in, plain values out; every record lives in the store with an expiry. A request's id
names it to hosts; the waiting browser holds a separate secret, of which the store keeps a hash.
Of the knocker's address the store keeps only the day's keyed hash (`AddressHasher`).
A stored request or mark that does not parse is counted (kind `lobby`) and read as a refusal: no
request, no grant, the address barred.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from gateway.admission.address_keys import AddressHasher
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.names import normalise
from gateway.admission.rooms import clean_text
from gateway.errors import AdmissionBanned, NotFound, RateLimited
from gateway.i18n import N_
from gateway.settings import LobbySettings
from gateway.store import Store
from gateway.store.record_fields import RecordShape, checked_fields, is_number, is_text
from gateway.store.records import CorruptRecord, RecordKind, Role, Room

GUEST_MARKER = " (guest)"
MAX_NAME_CHARS = 64
REQUEST_ID_SHAPE = re.compile(r"[0-9a-f]{32}")
SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# An answered request is kept this long, so that its browser sees the answer and can collect it.
ANSWER_KEPT_SECONDS = 600
# An unanswered request's record outlives its waiting time by this much, to say it expired.
EXPIRED_KEPT_SECONDS = 300
# A guest proves nothing but an address, so denying and banning one bars the address from this
# meeting's lobby; not for good, since an address may be shared (a university, a mobile carrier).
GUEST_ADDRESS_BAN_SECONDS = 12 * 3600
# How long a knocker is told to wait when the lobby has no room for them.
FULL_RETRY_SECONDS = 60
# What the lobby's marks (waiting, granted, address barred) hold; anything else is corrupt.
MARK: Final = "1"


class LobbyState(StrEnum):
    WAITING = "waiting"
    APPROVED = "approved"
    # Approved, and the approval collected: the browser holds an admission now.
    ADMITTED = "admitted"
    DENIED = "denied"
    BANNED = "banned"
    EXPIRED = "expired"


ANSWERS = (LobbyState.APPROVED, LobbyState.DENIED, LobbyState.BANNED)


class LobbyRequestUnknown(NotFound):
    code = "lobby_request_unknown"
    title = N_("No request waiting")
    message = N_(
        "This browser has no request waiting for this meeting; it may have expired."
        " Open the meeting's link to ask again."
    )


class LobbyFull(RateLimited):
    code = "lobby_full"
    title = N_("Too many waiting requests")
    message = N_(
        "Too many requests to join are waiting from your address already."
        " Wait for a host to answer them, or try again later."
    )


class LobbyRoomFull(LobbyFull):
    message = N_(
        "Too many people are waiting for this meeting's hosts right now."
        " Please try again in a few minutes."
    )


def request_lifetime(settings: LobbySettings) -> int:
    """How long after it was made a request's record may still be read: its wait, then its
    answer (or the news that it expired) kept for its browser. The waiting browser's cookie
    lives as long, so that it always learns how its request ended, even one answered at the
    last moment."""
    return settings.ttl_seconds + max(ANSWER_KEPT_SECONDS, EXPIRED_KEPT_SECONDS)


def clean_name(value: str) -> str:
    """The name a guest typed, as a host will see it; InvalidInput if it cannot be shown. The
    display-name rules every name passes (`normalise`: no stacked marks, blank look-alikes,
    runs of space), checked at the knock: a host must not approve a name the meeting refuses."""
    return normalise(clean_text(value, field=N_("name"), max_chars=MAX_NAME_CHARS))


def shown_name(verified: VerifiedIdentity) -> str:
    """The name everyone sees: a guest's carries a visible marker, since nobody verified it."""
    if verified.guest and not verified.name.endswith(GUEST_MARKER):
        return verified.name + GUEST_MARKER
    return verified.name


def new_request_id() -> str:
    return secrets.token_hex(16)


def address_key(client_addr: str) -> str:
    """What one waiting 'address' is: an IPv4 address, or an IPv6 /64 (one subscriber's)."""
    try:
        address = ipaddress.ip_address(client_addr)
    except ValueError:
        return client_addr
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _identity_to_json(verified: VerifiedIdentity) -> dict[str, Any]:
    data = dataclasses.asdict(verified)
    data["groups"] = list(verified.groups)
    return data


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _one_of(values: type[StrEnum]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and value in {v.value for v in values}


# A stored request's fields, and its identity's: (required, check), as `encode` writes them.
_REQUEST_JSON: Final[RecordShape] = {
    "id": (True, lambda value: isinstance(value, str) and bool(REQUEST_ID_SHAPE.fullmatch(value))),
    "room": (True, is_text),
    "verified": (True, lambda value: isinstance(value, dict)),
    "identity": (True, is_text),
    "message": (True, is_text),
    # The day's hash of `address_key`: what the lobby's per-address index counts it under.
    "address": (False, is_text),
    # Written by earlier releases (the full address): read, and dropped, never written.
    "client_addr": (False, is_text),
    "created_at": (True, is_number),
    "expires_at": (True, is_number),
    "waiter": (True, is_text),
    "state": (True, _one_of(LobbyState)),
    "answered_at": (False, lambda value: value is None or is_number(value)),
    "answered_by": (False, is_text),
}
_IDENTITY_JSON: Final[RecordShape] = {
    "path": (True, _one_of(Path)),
    "subject": (True, is_text),
    "name": (True, is_text),
    "role": (False, _one_of(Role)),
    "email": (False, _text_or_none),
    "email_verified": (False, lambda value: isinstance(value, bool)),
    "issuer": (False, _text_or_none),
    "provider": (False, _text_or_none),
    "groups": (False, _texts),
    "guest": (False, lambda value: isinstance(value, bool)),
}


def _checked(data: object, shape: RecordShape) -> dict[str, Any]:
    return checked_fields(data, shape, RecordKind.LOBBY)


def _identity_from_json(data: object) -> VerifiedIdentity:
    values = _checked(data, _IDENTITY_JSON)
    values["path"] = Path(values["path"])
    values["role"] = Role(values.get("role", Role.ATTENDEE.value))
    values["groups"] = tuple(values.get("groups", ()))
    return VerifiedIdentity(**values)


@dataclass(frozen=True, slots=True)
class LobbyRequest:
    """One person waiting for a host. `identity` is the pseudonymous identity they would be
    admitted (and banned) as; `waiter` the hash of the waiting browser's secret; `address` the
    day's keyed hash of where they knock from (`address_key`), "" when unknown."""

    id: str
    room: str
    verified: VerifiedIdentity
    identity: str
    message: str
    created_at: float
    expires_at: float
    waiter: str
    address: str = ""
    state: LobbyState = LobbyState.WAITING
    answered_at: float | None = None
    answered_by: str = ""

    @property
    def name(self) -> str:
        return shown_name(self.verified)

    @property
    def guest(self) -> bool:
        return self.verified.guest

    @property
    def via(self) -> str:
        """How the person was identified, for the host: 'lobby' for a guest's typed name."""
        verified = self.verified
        via = verified.path.value
        if verified.provider:
            via += f":{verified.provider}"
        if verified.email and (verified.email_verified or verified.path is Path.EMAIL):
            via += f" <{verified.email}>"
        return via

    def state_at(self, now: float) -> LobbyState:
        if self.state is LobbyState.WAITING and now >= self.expires_at:
            return LobbyState.EXPIRED
        return self.state

    def held_by(self, secret: str) -> bool:
        return hmac.compare_digest(_secret_hash(secret), self.waiter)

    def encode(self) -> str:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["verified"] = _identity_to_json(self.verified)
        data["state"] = self.state.value
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str) -> LobbyRequest:
        """The request `encode` wrote; CorruptRecord (kind `lobby`) for anything else."""
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise CorruptRecord(RecordKind.LOBBY) from exc
        data = _checked(parsed, _REQUEST_JSON)
        data.pop("client_addr", None)
        data["verified"] = _identity_from_json(data["verified"])
        data["state"] = LobbyState(data["state"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Queued:
    """A request just queued, and the secret its browser keeps (only ever in a cookie)."""

    request: LobbyRequest
    secret: str

    @property
    def token(self) -> str:
        return f"{self.request.id}.{self.secret}"


class Lobby:
    def __init__(
        self, store: Store, settings: LobbySettings, *, addresses: AddressHasher | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._addresses = addresses or AddressHasher(store)

    @staticmethod
    def _record_key(request_id: str) -> str:
        return f"lobby:request:{request_id}"

    @staticmethod
    def _pending_key(request_id: str) -> str:
        return f"lobby:pending:{request_id}"

    @staticmethod
    def _grant_key(request_id: str) -> str:
        return f"lobby:grant:{request_id}"

    @staticmethod
    def _room_index(room: str) -> str:
        return f"lobby:room:{room}"

    @staticmethod
    def _address_index(address: str) -> str:
        """`address`: a request's `address`, the day's hash of its `address_key`."""
        return f"lobby:address:{address}"

    @staticmethod
    def _guest_ban_key(ban_scope: str, address: str) -> str:
        return f"lobby:barred:{ban_scope}:{address}"

    def _corrupt(self) -> None:
        self._store.health.corrupt(RecordKind.LOBBY)

    def _is_mark(self, value: str | None) -> bool:
        """Whether a mark read from the store is set: only ever to MARK; anything else there is
        counted, and read as not set (no request pending, no grant)."""
        if value is None:
            return False
        if value != MARK:
            self._corrupt()
            return False
        return True

    def clean_message(self, value: str) -> str:
        return clean_text(
            value, field=N_("message"), max_chars=self._settings.max_message_chars, required=False
        )

    async def queue(
        self,
        verified: VerifiedIdentity,
        *,
        identity: str,
        room: Room,
        client_addr: str,
        message: str,
        now: float,
    ) -> Queued:
        """Put a request in `room`'s lobby. LobbyFull when the address, LobbyRoomFull when the
        room has as many waiting as allowed; AdmissionBanned for a guest from a barred address.

        A guest's request id is the subject of its identity (one guest, one request)."""
        address, *earlier = await self._addresses.addresses_since_yesterday(
            address_key(client_addr)
        )
        if verified.guest:
            # A bar is kept under the hash of its day: one set before midnight holds after it.
            bars = [self._guest_ban_key(room.ban_scope, tag) for tag in (address, *earlier)]
            for barred in await self._store.get_values(bars):
                # Any value bars: a bar that does not parse still holds (counted).
                if barred is not None:
                    if barred != MARK:
                        self._corrupt()
                    raise AdmissionBanned()
        if verified.path is Path.LOBBY and REQUEST_ID_SHAPE.fullmatch(verified.subject):
            request_id = verified.subject
        else:
            request_id = new_request_id()
        secret = secrets.token_urlsafe(32)
        ttl = self._settings.ttl_seconds
        request = LobbyRequest(
            id=request_id,
            room=room.name,
            verified=verified,
            identity=identity,
            message=message,
            created_at=now,
            expires_at=now + ttl,
            waiter=_secret_hash(secret),
            address=address,
        )
        await self._store.put_value(
            self._record_key(request_id), request.encode(), ttl + EXPIRED_KEPT_SECONDS
        )
        # Counted after adding, so that racing knocks never leave more than the limit waiting.
        by_address = self._address_index(address)
        by_room = self._room_index(room.name)
        await self._store.index_add(by_address, request_id, ttl)
        if await self._store.index_size(by_address) > self._settings.max_waiting_per_address:
            await self._forget(request)
            raise LobbyFull(FULL_RETRY_SECONDS)
        await self._store.index_add(by_room, request_id, ttl)
        if await self._store.index_size(by_room) > self._settings.max_waiting_per_room:
            await self._forget(request)
            raise LobbyRoomFull(FULL_RETRY_SECONDS)
        await self._store.put_value(self._pending_key(request_id), MARK, ttl)
        return Queued(request=request, secret=secret)

    async def _forget(self, request: LobbyRequest) -> None:
        await self._leave_address_index(request)
        await self._store.index_remove(self._room_index(request.room), request.id)
        await self._store.delete_value(self._pending_key(request.id))
        await self._store.delete_value(self._record_key(request.id))

    async def get(self, request_id: str) -> LobbyRequest | None:
        """The request `request_id` names; None if there is none, or if its record does not
        parse (counted): a corrupt request is no request, so nobody is let in by it."""
        if REQUEST_ID_SHAPE.fullmatch(request_id) is None:
            return None
        raw = await self._store.get_value(self._record_key(request_id))
        if raw is None:
            return None
        try:
            request = LobbyRequest.decode(raw)
        except CorruptRecord:
            self._corrupt()
            return None
        if request.id != request_id:
            self._corrupt()
            return None
        return request

    async def held(self, token: str | None, room: str) -> LobbyRequest:
        """The request of `room` that a browser's token (`<id>.<secret>`) names and proves;
        LobbyRequestUnknown for anything else, forged or foreign alike."""
        request_id, _, secret = (token or "").partition(".")
        if SECRET_SHAPE.fullmatch(secret) is None:
            raise LobbyRequestUnknown()
        request = await self.get(request_id)
        if request is None or not request.held_by(secret) or request.room != room:
            raise LobbyRequestUnknown()
        return request

    async def waiting(self, room: str, now: float) -> list[LobbyRequest]:
        """The room's unanswered, unexpired requests, oldest first."""
        found = []
        for request_id in await self._store.index_members(self._room_index(room)):
            if REQUEST_ID_SHAPE.fullmatch(request_id) is None:
                self._corrupt()
                continue
            request = await self.get(request_id)
            if request is not None and request.state_at(now) is LobbyState.WAITING:
                found.append(request)
        return found

    async def answer(
        self, room: Room, request_id: str, answer: LobbyState, host_name: str, now: float
    ) -> LobbyRequest | None:
        """A host's answer to a waiting request of `room`: APPROVED, DENIED or BANNED (denied,
        and the identity barred from the meeting for good; a guest's address for a while).
        None, and nothing changed, if the request is unknown, of another room, expired, or
        already answered: of two racing answers exactly one counts."""
        if answer not in ANSWERS:
            raise ValueError(f"not an answer: {answer}")
        request = await self.get(request_id)
        if request is None or request.room != room.name:
            return None
        if request.state_at(now) is not LobbyState.WAITING:
            return None
        pending = await self._store.take_value(self._pending_key(request.id))
        if pending is None:
            return None
        if not self._is_mark(pending) and answer is LobbyState.APPROVED:
            # Nobody is let in on a mark that does not parse. Taken, the mark cannot let anyone
            # in later either; the request goes, and its browser may knock again.
            await self._forget(request)
            return None
        answered = replace(request, state=answer, answered_at=now, answered_by=host_name)
        if answer is LobbyState.APPROVED:
            await self._store.put_value(self._grant_key(request.id), MARK, ANSWER_KEPT_SECONDS)
        if answer is LobbyState.BANNED:
            await self._store.ban_identity(room.ban_scope, request.identity, None)
            if request.guest and request.address:
                await self._store.put_value(
                    self._guest_ban_key(room.ban_scope, request.address),
                    MARK,
                    GUEST_ADDRESS_BAN_SECONDS,
                )
        await self._store.put_value(
            self._record_key(request.id), answered.encode(), ANSWER_KEPT_SECONDS
        )
        await self._store.index_remove(self._room_index(request.room), request.id)
        await self._leave_address_index(request)
        return answered

    async def _leave_address_index(self, request: LobbyRequest) -> None:
        # A request an earlier release stored has no hash: its entry there lapses on its own.
        if request.address:
            await self._store.index_remove(self._address_index(request.address), request.id)

    async def collect(self, request: LobbyRequest, now: float) -> bool:
        """Take an approved request's approval, once: True for the one collector that gets it."""
        if request.state_at(now) is not LobbyState.APPROVED:
            return False
        # Only a grant that parses lets anyone in; one that does not is counted and refused.
        if not self._is_mark(await self._store.take_value(self._grant_key(request.id))):
            return False
        await self._store.put_value(
            self._record_key(request.id),
            replace(request, state=LobbyState.ADMITTED).encode(),
            ANSWER_KEPT_SECONDS,
        )
        return True

    async def withdraw(self, request: LobbyRequest, now: float) -> bool:
        """The waiting person gives up: the request leaves the lobby. False if it was answered."""
        if request.state_at(now) is not LobbyState.WAITING:
            return False
        pending = await self._store.take_value(self._pending_key(request.id))
        if pending is None:
            return False
        # Leaving lets nobody in: a mark that does not parse (counted) does not keep anyone
        # on the hosts' list.
        self._is_mark(pending)
        await self._forget(request)
        return True
