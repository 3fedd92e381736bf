"""The domain records every store keeps: rooms, invites, admissions, limit charges. Plain frozen
values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


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
    room, and joins for this one are sent there."""

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

    def is_usable(self, now: float) -> bool:
        return not self.revoked and self.uses < self.max_uses and now < self.expires_at


@dataclass(frozen=True, slots=True)
class Admission:
    """Who was let into which room; `id` is the hash of the secret in the browser's cookie."""

    id: str
    room: str
    identity: str
    name: str
    role: Role
    via: str
    client_addr: str
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
class AuditEntry:
    """One host action: who (pseudonymous identity and shown name), what, to whom, when."""

    at: float
    room: str
    actor: str
    actor_name: str
    action: str
    target: str = ""
    detail: str = ""
