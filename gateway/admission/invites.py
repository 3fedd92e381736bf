"""Personal invites: a random capability bound to a name and role, stored only as its hash."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from gateway.admission.names import normalise
from gateway.admission.rooms import clean_text
from gateway.errors import InvalidInput, InviteMalformed
from gateway.i18n import N_
from gateway.store.records import Invite, Role

# 24 random bytes: 192 bits, 32 URL-safe characters.
TOKEN_BYTES = 24
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32}")
MAX_NAME_CHARS = 64
MAX_USES = 10_000
MAX_LIFETIME_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class NewInvite:
    """An invite just made: the only moment the capability itself exists outside the link."""

    token: str
    invite: Invite


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_token(raw: str) -> str:
    """Return the token if it has the shape Meetgate makes; InviteMalformed otherwise."""
    if TOKEN_SHAPE.fullmatch(raw) is None:
        raise InviteMalformed()
    return raw


def validate_display_name(value: str) -> str:
    # The same rule admission applies, so a bad name is refused when the invite is made,
    # not when it is redeemed.
    return normalise(clean_text(value, field=N_("display name"), max_chars=MAX_NAME_CHARS))


def make_invite(
    *, room: str, name: str, role: Role, max_uses: int, lifetime_seconds: float, now: float
) -> NewInvite:
    """Build a fresh invite for `room`; the caller stores `invite` and hands out `token`."""
    if not 1 <= max_uses <= MAX_USES:
        raise InvalidInput(N_("An invite allows between 1 and {most} uses."), most=MAX_USES)
    if not 60 <= lifetime_seconds <= MAX_LIFETIME_SECONDS:
        raise InvalidInput(N_("An invite lives between one minute and one year."))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invite = Invite(
        id=secrets.token_hex(8),
        token_hash=hash_token(token),
        room=room,
        name=validate_display_name(name),
        role=role,
        max_uses=max_uses,
        uses=0,
        expires_at=now + lifetime_seconds,
        created_at=now,
    )
    return NewInvite(token=token, invite=invite)
