"""Invitations sent by e-mail: what one is (a name, an address, a role, a language, for a room)
and what a queue that sends them promises. The registrations (gateway/admission/registrations.py),
the CSV import and the hosts' single invites hand invitations over; the queue that makes their
invites and sends them is gateway/admission/outbox.py.

An address is kept only until its invitation is sent; what outlives it is a keyed hash
(`mail_address_key`), enough to recognise the same person again and no more.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.store.records import Role, Room

# The invite an invitation carries works once unless the sender says otherwise: it is personal.
DEFAULT_USES = 1


@dataclass(frozen=True, slots=True)
class Invitation:
    """One person to invite. `name` is a display name already validated
    (gateway.admission.invites.validate_display_name), `address` a normalised address
    (gateway.admission.email_codes.normalise_address), `language` a supported language's tag
    (gateway.i18n: "en", "zh-Hans", "zh-Hant", …) the e-mail is written in. `origin` says where
    it came from, for the hosts' counts only: "registration", "import" or "host"."""

    room: str
    name: str
    address: str
    role: Role
    language: str
    origin: str
    max_uses: int = DEFAULT_USES

    def __repr__(self) -> str:
        # Never an address in a log line or a traceback.
        return f"Invitation(room={self.room!r}, role={self.role.value}, origin={self.origin!r})"


@dataclass(frozen=True, slots=True)
class Queued:
    """What enqueuing made: the batch the invitations went into and each one's invite id, in
    the order they were given."""

    batch: str
    invite_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """How far one batch of invitations got: counts only, never who."""

    batch: str
    room: str
    total: int
    sent: int
    failed: int
    # Queued, being sent or waiting for a retry.
    waiting: int
    # When the next retry is due, if one waits for the mail server to come back.
    retry_at: float | None = None
    # Of the failed, those whose address is still kept (sealed): a host may try them again.
    retryable: int = 0
    # Invitations revoked, sent or not (those not sent are counted failed too).
    revoked: int = 0

    @property
    def revocable(self) -> int:
        """The batch's invitations not revoked yet."""
        return self.total - self.revoked

    @property
    def done(self) -> bool:
        return self.sent + self.failed >= self.total


class InvitationQueue(Protocol):
    """Makes each invitation's invite and queues its e-mail (gateway.admission.outbox.Outbox)."""

    async def enqueue(
        self, room: Room, invitations: Sequence[Invitation], *, now: float, batch: str | None = None
    ) -> Queued:
        """Create every invitation's invite (stored hashed) and queue its e-mail, to go as the
        mail server allows; into `batch` if given (a batch id from an earlier call), else a new
        batch. Returns at once; `progress(batch)` tells how sending goes."""
        ...

    async def progress(self, batch: str) -> BatchProgress | None: ...

    async def batches(self, room: str, limit: int) -> list[str]:
        """The ids of the room's newest batches (`limit` at most), newest first: every batch
        queued for the room, whoever queued it."""
        ...

    async def retry_failed(self, room: str, batch: str, *, now: float) -> int:
        """Queue again the room's batch's failed invitations whose address is still kept, with
        a fresh count of attempts; how many. A sent invitation's address is gone: never sent
        again. BatchUnknown for a batch of another room, or none."""
        ...

    async def revoke_batch(self, room: str, batch: str) -> int:
        """Revoke every invite of the room's batch: the e-mails not sent yet never go (their
        addresses erased), the links sent stop working; how many were revoked. BatchUnknown."""
        ...

    async def revoke(self, invite_id: str) -> bool:
        """Revoke one invite; its e-mail, if not sent yet, never goes (its address erased).
        False if there was no such invite (or it was revoked already)."""
        ...

    async def forget_room(self, room: str) -> int:
        """A deleted room's invitations not sent yet never go: their addresses erased, the
        room's batches forgotten; how many were erased."""
        ...


def _keyed(key: bytes, purpose: str, value: str) -> str:
    secret = hmac.new(key, b"meetgate mail addresses", hashlib.sha256).digest()
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def mail_address_key(key: bytes, address: str) -> str:
    """The keyed hash that stands for a normalised address once the address itself is gone;
    `key` is `[admission] pseudonym_key`. The same address gives the same key in every room,
    so a series of meetings can recognise a person again; without the key nobody can test an
    address against it."""
    return _keyed(key, "address", address)


def mail_domain_key(key: bytes, domain: str) -> str:
    """The keyed hash of an address's domain (lower-case), for "this domain was here before"."""
    return _keyed(key, "domain", domain.lower())
