"""The admission pipeline: limit → identify → policy → admit; and the admission a browser holds.

Every join attempt is charged against the rate limits before any work beyond one keyed read
that tells which room it is for; a flooded room first asks for proof-of-work.

An admission's id is the SHA-256 of the secret in the browser's cookie, so the store (and a ticket,
which names the admission) never holds anything a thief could replay as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from gateway.admission.flood import FloodGuard, Proof
from gateway.admission.invites import hash_token, parse_token
from gateway.admission.limits import Attempt, RateLimiter
from gateway.admission.rooms import current_room
from gateway.errors import (
    AdmissionBanned,
    AdmissionRevoked,
    ApprovalRequired,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsedUp,
    MeetgateError,
    NotAdmitted,
    RoomLocked,
)
from gateway.metrics import Metrics
from gateway.store import Store
from gateway.store.records import Admission, Invite, Role, Room

COOKIE_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class Admitted:
    cookie_secret: str
    admission: Admission


def admission_id_for(cookie_secret: str) -> str:
    return hashlib.sha256(cookie_secret.encode("ascii")).hexdigest()


class AdmissionPipeline:
    def __init__(
        self,
        store: Store,
        *,
        pseudonym_key: bytes,
        admission_ttl_seconds: int,
        limiter: RateLimiter,
        flood: FloodGuard,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._pseudonym_key = pseudonym_key
        self._ttl = admission_ttl_seconds
        self._limiter = limiter
        self._flood = flood
        self._metrics = metrics

    async def _locate(self, raw_token: str, client_addr: str) -> tuple[str, Invite, Room]:
        """Find the invite and the room its meeting is in now. A token that leads nowhere is
        charged against the address, network and gate limits before it is refused."""
        try:
            token_hash = hash_token(parse_token(raw_token))
            invite = await self._store.find_invite(token_hash)
            room = await current_room(self._store, invite.room) if invite else None
            if invite is None or room is None:
                raise InviteUnknown()
        except InviteUnknown as refused:
            await self._limiter.charge(Attempt(client_addr))
            await self._limiter.note_rejection(None, refused.code)
            raise
        return token_hash, invite, room

    def pseudonym(self, kind: str, subject: str) -> str:
        """A stable identity that names nobody outside this deployment (keyed hash)."""
        digest = hmac.new(self._pseudonym_key, f"{kind}:{subject}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    async def preview(self, raw_token: str, client_addr: str, now: float) -> tuple[Invite, Room]:
        """The invite behind a join link and its room, if it can still be used; counts no use."""
        _, invite, room = await self._locate(raw_token, client_addr)
        await self._limiter.charge(Attempt(client_addr, room=room.name, invite=invite.id))
        if invite.revoked:
            raise InviteRevoked()
        if invite.uses >= invite.max_uses or now >= invite.expires_at:
            raise InviteExpired() if now >= invite.expires_at else InviteUsedUp()
        return invite, room

    async def redeem(
        self, raw_token: str, client_addr: str, now: float, proof: Proof | None = None
    ) -> Admitted:
        """Count one use of the invite and admit its holder to the room the meeting is in now.

        Proof-of-work (when demanded) is checked before the attempt is charged; the room's state
        before the use is counted, so a locked room or a banned identity does not burn the invite.
        """
        token_hash, found, room = await self._locate(raw_token, client_addr)
        await self._flood.check(proof, client_addr=client_addr, room=room, now=now)
        identity = self.pseudonym("invite", found.id)
        await self._limiter.charge(
            Attempt(client_addr, room=room.name, identity=identity, invite=found.id)
        )
        try:
            await self._check_entry(room, identity, found.role, now)
        except MeetgateError as refused:
            await self._limiter.note_rejection(room.name, refused.code)
            raise
        invite = await self._store.redeem_invite(token_hash, now)
        cookie_secret = secrets.token_urlsafe(32)
        admission = Admission(
            id=admission_id_for(cookie_secret),
            room=room.name,
            identity=identity,
            name=invite.name,
            role=invite.role,
            via=f"invite:{invite.id}",
            client_addr=client_addr,
            created_at=now,
            expires_at=now + self._ttl,
        )
        await self._store.add_admission(admission)
        self._metrics.admissions.inc(via="invite")
        return Admitted(cookie_secret=cookie_secret, admission=admission)

    async def _check_entry(self, room: Room, identity: str, role: Role, now: float) -> None:
        if await self._store.is_banned(room.ban_scope, identity, now):
            raise AdmissionBanned()
        if role is Role.HOST:
            return
        if room.approval_required:
            raise ApprovalRequired()
        if room.locked:
            raise RoomLocked()

    async def from_cookie(self, cookie_secret: str | None, now: float) -> Admission:
        """The live admission a cookie names; NotAdmitted or AdmissionRevoked otherwise."""
        if not cookie_secret or COOKIE_SECRET_SHAPE.fullmatch(cookie_secret) is None:
            raise NotAdmitted()
        return await self.live(admission_id_for(cookie_secret), now)

    async def live(self, admission_id: str, now: float) -> Admission:
        admission = await self._store.get_admission(admission_id)
        if admission is None or now >= admission.expires_at:
            raise NotAdmitted()
        if admission.revoked:
            raise AdmissionRevoked()
        return admission
