"""The `Store` protocol every stateful operation goes through, and `open_store(url)`.

Two backends implement it: `memory` (one process) and `redis` (any number of replicas). Both pass
the same contract suite in `tests/contract/`. Backends translate their own failures into
`StoreUnavailable`; domain failures are the `errors.py` classes named on each method.

Every call runs within a deadline, and the calls of one request within a shared budget
(`deadline.py`). A stored record that does not parse (`records.py` reads them, for both backends)
is counted in `health` and read as a refusal: an admission, invite or room as absent (nobody
enters by it), a ban as holding, a rate limit as spent, a name claim as held by someone else.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from gateway.errors import MeetgateError
from gateway.store.continuity import Continuity
from gateway.store.deadline import StoreOptions, begin_request
from gateway.store.health import StoreHealth
from gateway.store.records import (
    Admission,
    AuditEntry,
    Invite,
    JoinPlan,
    LimitCharge,
    NameClaim,
    RateDecision,
    Role,
    Room,
    RoomPolicy,
)

__all__ = [
    "Admission",
    "AuditEntry",
    "Compaction",
    "Continuity",
    "Invite",
    "InviteJoin",
    "InviteJoined",
    "JoinPlan",
    "LimitCharge",
    "LinkFound",
    "LinkJoin",
    "LinkJoined",
    "LinkUnknown",
    "NameClaim",
    "PlainJoin",
    "RateDecision",
    "Role",
    "Room",
    "RoomPolicy",
    "Store",
    "StoreHealth",
    "StoreOptions",
    "Subscription",
    "begin_request",
    "open_store",
]


@dataclass(frozen=True, slots=True)
class InviteJoin:
    """A join through an invite, for `Store.join_by_invite`: the limits to charge, the ban to
    check, the invite to use (found by `token_hash` as `invite_id`), the names the admission may
    show (`names[i]` is the name `claim.shapes[i]` stands for) and the admission to store, its
    name to be replaced by the one claimed. `claim.holder` is `admission.id`, and `claim`
    expires with it."""

    token_hash: str
    invite_id: str
    now: float
    charges: tuple[LimitCharge, ...]
    ban_scope: str
    claim: NameClaim
    names: tuple[str, ...]
    admission: Admission

    def __post_init__(self) -> None:
        if len(self.names) != len(self.claim.shapes) or not self.names:
            raise ValueError("one name for each shape claimed, and at least one")
        if (self.claim.holder, self.claim.expires_at) != (
            self.admission.id,
            self.admission.expires_at,
        ):
            raise ValueError("the claim must be the admission's")


@dataclass(frozen=True, slots=True)
class InviteJoined:
    """What `Store.join_by_invite` did: refused by the limits (`limits.allowed` false, nothing
    else done); found every name held (`admission` None: only the limits were charged); or
    admitted (`admission` as stored, with the name it claimed)."""

    limits: RateDecision
    admission: Admission | None = None


@dataclass(frozen=True, slots=True)
class LinkFound:
    """Where a join link leads: its invite, the room its meeting is in now (following moves),
    and `stamp`, which stands for that room's record as read (opaque, the backend's own): a
    later `join_through_link` with this as `expected` admits only while the invite is the same
    and the room's record is unchanged."""

    invite: Invite
    room: Room
    stamp: str


@dataclass(frozen=True, slots=True)
class LinkUnknown:
    """A join link that leads nowhere (no invite has its token hash, or its room is gone):
    `limits` is what charging the link's `unknown_charges` decided."""

    limits: RateDecision


@dataclass(frozen=True, slots=True)
class LinkJoin:
    """One store call for a join link (`Store.join_through_link`): find where `token_hash`
    leads, following at most `max_moves` moves; charge `unknown_charges` if it leads nowhere,
    and then, if they allowed it, count it by one in the `count_recent` counter
    `count_unknown` (key, window seconds); carry out `join` (as `join_by_invite`) if it leads to
    what `expected` says. Without `join` the call only looks (and charges and counts a link that
    leads nowhere)."""

    token_hash: str
    max_moves: int
    unknown_charges: tuple[LimitCharge, ...]
    expected: LinkFound | None = None
    join: InviteJoin | None = None
    count_unknown: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.join is not None:
            if self.expected is None:
                raise ValueError("a join needs the invite and room it expects")
            if (self.join.token_hash, self.join.invite_id, self.join.admission.room) != (
                self.token_hash,
                self.expected.invite.id,
                self.expected.room.name,
            ):
                raise ValueError("the join must be through the expected invite, into its room")


@dataclass(frozen=True, slots=True)
class PlainJoin:
    """One store call for a join link nothing was known of (`Store.join_plainly`): find where
    `token_hash` leads, as `LinkJoin` does (charging and counting a link that leads nowhere
    alike); then, when the invite has a join plan (`JoinPlan`, stored with it) and the room
    is one the store can judge on its own, join through it as `join_by_invite` would.

    The limits it charges are those `limits.RateLimiter.charges` names for the join, in its
    order: `address_charges` (the client's address and network, known before the call), then
    the gate's, the room's, the identity's and the invite's, with the keys it names for them
    (`GATE_LIMIT` and the prefixes below, completed by the room, the plan's identity and the
    invite's id) and the rates of `rates` (per second, burst; in that order). A room whose
    limits differ from those (`varied_rooms`) is left to the caller. So is a room where the
    attendee's join needs a decision: an invite that is not a host's into a room whose policy
    takes no invites, which is locked or in lockdown, or where a usable host invite's name
    looks like the invite's; and, with `pressure` (window seconds, threshold), a room that
    asks for proof-of-work or whose rejections in the window (`count_recent`'s counter
    "reject:room:<room>") reach the threshold. `admission` is the admission to store, its room,
    identity, name, role and `via` to be filled in ("invite:<invite id>"). `key` names the
    pseudonym key the gate uses now (as `JoinPlan.key`): a plan made under another is left to
    the caller too."""

    token_hash: str
    max_moves: int
    unknown_charges: tuple[LimitCharge, ...]
    count_unknown: tuple[str, int] | None
    now: float
    address_charges: tuple[LimitCharge, ...]
    rates: tuple[tuple[float, int], ...]
    varied_rooms: frozenset[str]
    pressure: tuple[int, int] | None
    admission: Admission
    key: str

    def __post_init__(self) -> None:
        if len(self.rates) != len(PLAIN_LIMITS):
            raise ValueError("one rate for each of the gate, room, identity and invite limits")

    def charges(self, room: str, identity: str, invite_id: str) -> tuple[LimitCharge, ...]:
        """The limits the join is charged against once its room, identity and invite are
        known, in the order `RateLimiter.charges` names them."""
        keys = (
            GATE_LIMIT,
            ROOM_LIMIT_PREFIX + room,
            IDENTITY_LIMIT_PREFIX + identity,
            INVITE_LIMIT_PREFIX + invite_id,
        )
        return self.address_charges + tuple(
            LimitCharge(key=key, rate_per_second=per_second, burst=burst)
            for key, (per_second, burst) in zip(keys, self.rates, strict=True)
        )

    def through(self, invite: Invite, room: Room, plan: JoinPlan) -> InviteJoin:
        """The join through `invite` into `room` as `plan` has it (`join_by_invite`)."""
        host = invite.role is Role.HOST
        admission = dataclasses.replace(
            self.admission,
            room=room.name,
            identity=plan.identity,
            role=invite.role,
            via=f"invite:{invite.id}",
        )
        return InviteJoin(
            token_hash=self.token_hash,
            invite_id=invite.id,
            now=self.now,
            charges=self.charges(room.name, plan.identity, invite.id),
            ban_scope=room.ban_scope,
            claim=NameClaim(
                holder=admission.id,
                shapes=plan.shapes,
                expires_at=admission.expires_at,
                host_shape=plan.host_shape,
                host=host,
                first_yields_to_host=not host,
            ),
            names=plan.names,
            admission=admission,
        )

    def leaves_to_caller(
        self, invite: Invite, room: Room, *, reserved: bool, room_pressure: int
    ) -> bool:
        """Whether the join through `invite` into `room` needs a decision the store does not
        make: `reserved` when a usable host invite's name to the room looks like the invite's
        (or the store cannot tell), `room_pressure` the room's rejections in the window."""
        if room.name in self.varied_rooms:
            return True
        if self.pressure is not None and (room.pow_required or room_pressure >= self.pressure[1]):
            return True
        if invite.role is Role.HOST:
            return False
        return not room.policy.invite or room.locked or room.approval_required or reserved


# The limits `PlainJoin` completes, in the order it charges them after the address's and the
# network's, and the key each is charged by ("" + room, identity or invite id).
PLAIN_LIMITS = ("gate", "room", "identity", "invite")
GATE_LIMIT = "gate"
ROOM_LIMIT_PREFIX = "room:"
IDENTITY_LIMIT_PREFIX = "id:"
INVITE_LIMIT_PREFIX = "invite:"


@dataclass(frozen=True, slots=True)
class LinkJoined:
    """What `Store.join_plainly` did once it judged the room itself: the invite it went through,
    the room (and its language) and the identity it joined as; then, as `InviteJoined`, refused
    by the limits (`limits.allowed` false), refused by a ban (`banned`) or by the invite
    (`invite_refusal`), every name held (`admission` None), or admitted."""

    invite_id: str
    room: str
    identity: str
    # The room's `language` (its pages speak it).
    language: str
    limits: RateDecision
    banned: bool = False
    # Why the invite cannot be used (InviteUnknown, InviteRevoked, InviteExpired or
    # InviteUsedUp, as `redeem_invite` raises them), for the caller to raise.
    invite_refusal: MeetgateError | None = None
    admission: Admission | None = None


class Subscription(Protocol):
    """Messages of one channel, from the moment `subscribe()` returned (Redis: once `ready()`)."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    async def ready(self) -> None:
        """Wait until the backend confirms the subscription."""

    async def aclose(self) -> None: ...


class Compaction(enum.Enum):
    """What became of `Store.compact`."""

    STARTED = "started"
    # Nothing kept on disk to rewrite (memory; a Redis without the append-only file).
    NOTHING_ON_DISK = "nothing on disk"
    # The store would not do it (BGREWRITEAOF renamed away, refused, or one already running).
    REFUSED = "refused"


class Store(Protocol):
    # Whether the store answers, and the corrupt records it found (for logs and metrics).
    health: StoreHealth
    # Whether the store still remembers what this replica saw it hold (continuity.py).
    continuity: Continuity

    async def ping(self) -> None:
        """Raise StoreUnavailable if the backend cannot answer."""

    async def close(self) -> None: ...

    # The memory marker: one short string, `<epoch>:<generation>:<ok|lost>` (continuity.py).
    async def advance_marker(self, if_absent: str) -> tuple[str, bool]:
        """Atomically: with no marker, write `if_absent`; with a marker that parses, raise its
        generation by one; leave any other as it is. Return the marker as it is now, and whether
        it was written from `if_absent`."""

    async def read_marker(self) -> str | None: ...

    async def replace_marker(self, expected: str | None, new: str) -> bool:
        """Write `new` if the marker is still `expected` (None: there is none), atomically;
        False, and nothing written, if it changed meanwhile."""

    # Rooms
    async def create_room(self, room: Room) -> None:
        """Raise RoomExists if a room of that name exists."""

    async def get_room(self, name: str) -> Room | None: ...

    async def list_rooms(self) -> list[Room]: ...

    async def update_room(self, room: Room) -> None:
        """Replace the stored record of an existing room (RoomNotFound otherwise)."""

    async def change_room(self, name: str, change: Callable[[Room], Room]) -> Room:
        """Replace room `name`'s record with `change(record)`, atomically: a change made by
        anyone meanwhile is never overwritten (on a conflict, `change` is applied again to the
        newer record). Return the new record. RoomNotFound if there is no such room; whatever
        `change` raises propagates, and nothing is written then."""

    async def delete_room(self, name: str, now: float) -> bool:
        """Delete the room and its invites and revoke its admissions. False if it did not exist."""

    # Invites
    async def add_invite(self, invite: Invite, plan: JoinPlan | None = None) -> None:
        """Store a new invite for an existing room (RoomNotFound otherwise), with the `plan`
        for a join through it (`join_plainly`), if given."""

    async def get_invite(self, invite_id: str) -> Invite | None: ...

    async def find_invite(self, token_hash: str) -> Invite | None: ...

    async def find_invite_and_room(
        self, token_hash: str, max_moves: int
    ) -> tuple[Invite | None, Room | None]:
        """`find_invite`, and the room its meeting is in now, in one round trip: the invite's
        room, or the room its `moved_to` names, and so on for at most `max_moves` moves (the
        last one read is the answer). (None, None) when no invite has that token hash."""

    async def list_invites(self, room: str) -> list[Invite]: ...

    async def revoke_invite(self, invite_id: str) -> bool: ...

    async def redeem_invite(self, token_hash: str, now: float) -> Invite:
        """Atomically count one use and return the invite as it is after that use.

        Raise InviteUnknown, InviteRevoked, InviteExpired or InviteUsedUp and change nothing.
        Two racing redemptions of the last use: exactly one wins.
        """

    async def join_by_invite(self, join: InviteJoin) -> InviteJoined:
        """Everything a join through an invite writes, atomically and in this order, each step
        only if the one before let the join through: charge `join.charges` (as
        `charge_limits`); check the ban on `join.admission.identity` in `join.ban_scope` at
        `join.now` (AdmissionBanned); check the invite (InviteUnknown, InviteRevoked,
        InviteExpired or InviteUsedUp, as `redeem_invite`); claim the first free name (as
        `claim_name` in `join.admission.room`); then count the invite's use and store the
        admission with that name (as `add_admission`). A refusal leaves every later step undone;
        limits that allowed the join stay charged."""

    async def join_through_link(self, link: LinkJoin) -> InviteJoined | LinkFound | LinkUnknown:
        """A join link in one round trip, atomically. Find where `link.token_hash` leads (as
        `find_invite_and_room`). If it leads nowhere, charge `link.unknown_charges` (as
        `charge_limits`), count it in `link.count_unknown` if they allowed it (as
        `count_recent`), and answer LinkUnknown. If there is no `link.join`, or the invite is
        not `link.expected`'s or the room's record is not the one `link.expected.stamp` stands
        for, answer LinkFound (nothing charged or written). Otherwise carry out `link.join` as
        `join_by_invite` does, with its answers and refusals."""

    async def join_plainly(self, join: PlainJoin) -> LinkJoined | LinkFound | LinkUnknown:
        """A join link in one round trip, atomically, with nothing known of it before
        (`PlainJoin`). If it leads nowhere: as `join_through_link`. If its invite has no join
        plan, or the room is one `PlainJoin` leaves to the caller: LinkFound, nothing charged
        or written. Otherwise `join_by_invite` with the plan's identity, the first claim of
        its names and the limits `PlainJoin` names, answered as LinkJoined (a ban and an
        invite that cannot be used as values, not raised)."""

    # Admissions
    async def add_admission(self, admission: Admission) -> None:
        """Keep the admission until its `expires_at`."""

    async def get_admission(self, admission_id: str) -> Admission | None: ...

    async def get_admissions(self, admission_ids: Sequence[str]) -> list[Admission | None]:
        """`get_admission` of each id, in order, in one round trip (a replica's reconciliation
        reads every admission with a connection on it)."""

    async def list_admissions(self, room: str) -> list[Admission]: ...

    async def revoke_admission(self, admission_id: str) -> bool:
        """Mark it revoked (kept until it would have expired). False if unknown."""

    async def move_admission(self, admission_id: str, room: str) -> Admission | None:
        """Carry a live admission over to `room` (same id, same expiry); None if it is unknown,
        expired or revoked. It is listed under `room` from then on, no longer under the old."""

    # Names shown in a room
    async def claim_name(self, room: str, claim: NameClaim) -> int | None:
        """Claim for `claim.holder` the first of `claim.shapes` that no live claim of another
        holder in `room` holds (the holder's own claims do not stand in its way); return its
        index, or None when every shape is held. With `first_yields_to_host`, the first shape is
        also passed over while a live host claim of another holder marks `claim.host_shape`;
        a `host` claim marks `host_shape` (several hosts can mark one shape).

        A claim lives until its `expires_at`, or until its holder's admission is revoked (also
        when its room is deleted); one made before its admission is stored holds meanwhile.
        Atomic: of racing claims on one shape, exactly one wins.
        """

    # Bans
    async def ban_identity(self, room: str, identity: str, until: float | None) -> None: ...

    async def is_banned(self, room: str, identity: str, now: float) -> bool: ...

    async def unban_identity(self, room: str, identity: str) -> bool:
        """Lift the ban on `identity` in `room` (a ban scope); False if there was none."""

    async def are_banned(self, bans: Sequence[tuple[str, str]], now: float) -> list[bool]:
        """`is_banned(room, identity, now)` of each (room, identity), in order, in one round
        trip."""

    # Audit trail of host actions (read by the evidence log)
    async def append_audit(self, entry: AuditEntry) -> None:
        """Add `entry` as the room's newest; entries of the room older than the retention
        (`StoreOptions.audit_retention_seconds`) before it go, and the room's whole log goes
        once that long has passed without a new entry."""

    async def purge_audit(self, room: str | None, before: float) -> int:
        """Delete the audit entries older than `before` (seconds since the epoch) of `room`,
        or of every room for None, and those whose time cannot be read; how many went. A room's
        log left then goes the retention after its newest entry kept."""

    async def compact(self) -> Compaction:
        """Ask the store to rewrite what it keeps on disk, so that what was deleted or expired
        leaves it (Redis: BGREWRITEAOF, started in the background)."""

    async def list_audit(self, room: str, limit: int = 100) -> list[AuditEntry]:
        """The room's most recent entries, newest first; none past the retention, even before
        a write or a purge drops it."""

    # Rate limits and pressure
    async def rate_limit(self, key: str, rate_per_second: float, burst: int) -> RateDecision:
        """Charge one request against a GCRA limit; the backend's clock decides.

        The same as `charge_limits` with one charge (ValueError for a bad rate or burst).
        """

    async def charge_limits(self, charges: Sequence[LimitCharge]) -> RateDecision:
        """Charge one request against every limit at once, all or nothing, atomically.

        If each limit has room, each is charged and the decision allows. Otherwise none is
        charged and `retry_after` is the longest wait among the limits that refused. A key named
        twice is charged twice. No charges: allowed. The backend's clock decides.
        """

    async def count_recent(self, key: str, window_seconds: int, amount: int = 1) -> int:
        """Count `amount` events (at least 1) in the current fixed window of `window_seconds`;
        return the window's count so far, these included. ValueError if `window_seconds` is
        below 1."""

    async def read_recent(self, key: str, window_seconds: int) -> int:
        """The current window's count, as `count_recent` keeps it, without counting."""

    async def claim_once(self, key: str, ttl_seconds: float) -> bool:
        """True for the first claim of `key` within `ttl_seconds`, False for any other claim
        before that time has passed. ValueError if the TTL is not positive."""

    async def day_key(self, day: int, *, create: bool) -> str | None:
        """The secret every replica hashes client addresses with on UTC day `day` (days since
        the epoch; gateway/admission/address_keys.py), held only in memory, never in the
        store's data (memory: this process's; Redis: the replicas', agreed over pub/sub by
        day_keys.py). With `create`, one is made when no replica holds one; without, None
        then. Replicas that made keys at the same moment converge on one within
        day_keys.ANNOUNCE_SECONDS: ask again rather than keep the answer. Only today's,
        yesterday's and tomorrow's are kept."""

    def held_day_key(self, day: int) -> str | None:
        """`day_key`'s answer if this replica holds the day's key now, without asking."""

    # Short-lived values (e-mail codes, lobby requests). Every TTL below must be positive and
    # finite (ValueError otherwise); a value, counter or member is gone once its TTL has passed.
    async def put_value(self, key: str, value: str, ttl_seconds: float) -> None:
        """Set `key` to `value` for `ttl_seconds`, replacing any value and expiry it had."""

    async def get_value(self, key: str) -> str | None: ...

    async def get_values(self, keys: Sequence[str]) -> list[str | None]:
        """`get_value` of each key, in order, in one round trip."""

    async def take_value(self, key: str) -> str | None:
        """Read and delete the value at once: of racing takers, exactly one gets it."""

    async def delete_value(self, key: str) -> bool:
        """Delete the value; False if there was none."""

    async def bump_value(self, key: str, ttl_seconds: float) -> int:
        """Add one to the counter `key` and return its count, this bump included.

        A missing counter starts at 1 and lasts `ttl_seconds` from then; later bumps do not
        extend it. Counters are kept apart from the values above: `get_value`, `take_value` and
        `delete_value` neither see nor touch a counter of the same key.
        """

    # Expiring indexes (a room's waiting lobby requests)
    async def index_add(self, index: str, member: str, ttl_seconds: float) -> None:
        """Put `member` in `index` for `ttl_seconds`; a member added again starts its TTL anew."""

    async def index_members(self, index: str) -> list[str]:
        """The live members, soonest to expire first: with one TTL for all, oldest first.
        Members expiring at the same time come in the order of their names."""

    async def index_remove(self, index: str, member: str) -> bool:
        """Take `member` out of `index`; False if it was not a live member."""

    async def index_size(self, index: str) -> int:
        """How many live members `index` has."""

    # Pub/sub: revocations reach every replica
    async def publish(self, channel: str, message: str) -> None: ...

    def subscribe(self, channel: str) -> Subscription:
        """Subscribe now; iterate the result for every message published on `channel`."""
        ...


# An invite's record (with the invitee's name) and its link's index are kept this long past the
# invite's expiry, so that its holder learns the link expired rather than that it is unknown.
INVITE_KEPT_AFTER_EXPIRY = 86_400


# What is left of a record's keeping once its `forget_at` has passed: a TTL must be positive.
INVITE_FORGOTTEN_SECONDS = 0.001


def invite_kept_seconds(invite: Invite, now: float) -> float:
    """How long from `now` a store keeps `invite`: to its expiry, then INVITE_KEPT_AFTER_EXPIRY,
    but no later than its `forget_at`, if it has one."""
    kept = max(invite.expires_at - now, 0.0) + INVITE_KEPT_AFTER_EXPIRY
    if invite.forget_at is not None:
        kept = min(kept, max(invite.forget_at - now, INVITE_FORGOTTEN_SECONDS))
    return kept


async def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """Open the backend the URL names: `memory://` or `redis://…` (also `rediss://`, `unix://`,
    and `redis+sentinel://` for a Redis whose master Sentinels name). `options`: deadlines and
    the connection pool (defaults when None); the memory store never waits, so it needs none."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from gateway.store.memory import MemoryStore

        return MemoryStore(options)
    from gateway.store.redis import RedisStore

    return await RedisStore.connect(url, options)
