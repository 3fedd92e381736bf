"""A verified identity: what one admission path (invite, sign-in, e-mail code, lobby) proved."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.store.records import Role


class Path(StrEnum):
    INVITE = "invite"
    OIDC = "oidc"
    EMAIL = "email"
    LOBBY = "lobby"


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """`subject` is stable for one person on one path (invite id, `issuer sub`, an address);
    `name` is the display name that was verified (or, through the lobby, seen by a host)."""

    path: Path
    subject: str
    name: str
    role: Role = Role.ATTENDEE
    email: str | None = None
    email_verified: bool = False
    issuer: str | None = None
    provider: str | None = None
    groups: tuple[str, ...] = ()
    # A name nobody vouched for (typed in the lobby or on the e-mail code page): marked in the
    # name the room sees, unless the person enters as a host.
    guest: bool = False
