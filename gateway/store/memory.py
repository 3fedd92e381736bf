"""The in-process `Store`: plain dictionaries, for a single replica and for development.

asyncio runs one coroutine at a time, so a method that does not await between its read and its
write is atomic; every method here is written that way, which is what the Redis Lua scripts buy.

Records are kept as objects, which cannot be corrupt. So that the contract suite can show both
backends refuse alike on a record that does not parse, `write_raw` (a test seam, used by no
production code) replaces a record by a stored form as Redis would hold it; such a record is read
back through the same parsers (gateway/store/records.py) as Redis's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import secrets
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from itertools import islice
from typing import Final

from gateway.errors import (
    AdmissionBanned,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsedUp,
    RoomExists,
    RoomNotFound,
    StoreUnavailable,
)
from gateway.store import (
    INVITE_KEPT_AFTER_EXPIRY,
    Compaction,
    InviteJoin,
    InviteJoined,
    LinkFound,
    LinkJoin,
    LinkJoined,
    LinkUnknown,
    PlainJoin,
    invite_kept_seconds,
)
from gateway.store.continuity import Continuity, parse_marker
from gateway.store.deadline import StoreOptions
from gateway.store.health import StoreHealth
from gateway.store.records import (
    Admission,
    AuditEntry,
    CorruptRecord,
    Invite,
    JoinPlan,
    LimitCharge,
    NameClaim,
    RateDecision,
    RecordKind,
    Role,
    Room,
    admission_fields,
    encode_audit,
    encode_record,
    invite_fields,
    parse_admission,
    parse_audit,
    parse_ban,
    parse_invite,
    parse_rate_state,
    parse_room,
)

# Rate-limit entries whose theoretical arrival time has passed carry no state (a fresh key behaves
# the same), nor do counters of past windows, nor claims, values, counters or index members past
# their TTL, so they are swept every so often to keep the tables from growing without bound.
_SWEEP_EVERY: Final = 1024

# The most recent audit entries kept per room; older ones are dropped as new ones arrive.
_AUDIT_KEEP: Final = 10_000


class _End:
    """Marks the end of a subscription in its queue."""


_END: Final = _End()


class MemorySubscription(AsyncIterator[str]):
    """Messages published on one channel of a `MemoryStore`, from the moment it was created.

    End it with `aclose()`; one that is dropped without closing stops receiving once collected.
    """

    def __init__(self, channel: str, registry: weakref.WeakSet[MemorySubscription] | None) -> None:
        self.channel = channel
        self._registry = registry
        self._queue: asyncio.Queue[str | _End] = asyncio.Queue()
        self._ended = False
        if registry is None:
            self._deliver(_END)
        else:
            registry.add(self)

    async def ready(self) -> None:
        """Return once the subscription receives messages; in memory that is at creation."""

    def _deliver(self, message: str | _End) -> None:
        self._queue.put_nowait(message)

    async def __anext__(self) -> str:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._ended = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if self._registry is not None:
            self._registry.discard(self)
            self._registry = None
            self._deliver(_END)


def _audit_older(text: str, cutoff: float) -> bool:
    """Whether a stored audit entry's time is before `cutoff`, or cannot be read (as
    scripts/audit_trim.lua judges it)."""
    try:
        at = json.loads(text).get("at")
    except (ValueError, AttributeError, RecursionError):
        return True
    return not isinstance(at, int | float) or isinstance(at, bool) or at < cutoff


class MemoryStore:
    """Every record in dictionaries of this process; lost when it exits."""

    def __init__(self, options: StoreOptions | None = None) -> None:
        self._closed = False
        self._audit_retention = (options or StoreOptions()).audit_retention_seconds
        self._rooms: dict[str, Room] = {}
        self._invites: dict[str, Invite] = {}
        self._invite_by_token: dict[str, str] = {}
        self._room_invites: dict[str, set[str]] = {}
        # invite id -> when its record goes (wall clock): `invite_kept_seconds`, as in Redis.
        self._invite_until: dict[str, float] = {}
        # invite id -> its join plan (Store.join_plainly), for invites stored with one.
        self._plans: dict[str, JoinPlan] = {}
        self._admissions: dict[str, Admission] = {}
        self._room_admissions: dict[str, set[str]] = {}
        # room -> ("n", shape) or ("h", host shape) -> [(expires_at, holder admission id)]
        self._names: dict[str, dict[tuple[str, str], list[tuple[float, str]]]] = {}
        self._name_calls = 0
        self._bans: dict[tuple[str, str], float | None] = {}
        # Each room's trail in its stored form, as Redis keeps it, so it is read back the same.
        self._audit: dict[str, deque[str]] = {}
        # room -> when its whole trail goes (monotonic): the retention after its newest entry.
        self._audit_until: dict[str, float] = {}
        self._rate_tat: dict[str, float] = {}
        self._rate_calls = 0
        self._recent: dict[tuple[str, int], tuple[int, int]] = {}  # -> (window index, count)
        self._recent_calls = 0
        self._claims: dict[str, float] = {}  # key -> when the claim lapses (monotonic)
        self._day_keys: dict[int, str] = {}  # UTC day -> that day's address key
        self._claim_calls = 0
        # The short-lived values, counters and indexes: each entry with when it lapses (monotonic).
        self._values: dict[str, tuple[str, float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._indexes: dict[str, dict[str, float]] = {}  # index -> member -> when it lapses
        self._short_lived_calls = 0
        self._subscriptions: dict[str, weakref.WeakSet[MemorySubscription]] = {}
        self.health = StoreHealth("memory")
        # This process is the store: its memory is lost only with the process itself.
        self.continuity = Continuity("memory")
        self._marker: str | None = None
        # Records replaced by a stored form (`write_raw`): read back through the parsers.
        self._raw: dict[tuple[RecordKind, str], dict[str, str]] = {}

    def write_raw(self, kind: RecordKind, name: str, fields: Mapping[str, str]) -> None:
        """Test seam: replace the stored form of a record by `fields`, merged over its stored
        form as Redis keeps it (fields `record`, `revoked`, and `uses` for an invite; `record`
        for a room; `value` for a ban, named `<room>:<identity>`, and for a rate limit's state,
        in microseconds of this store's clock; `record` for an audit entry, added as the newest
        of the room `name`'s trail). ValueError for a kind kept in no such form."""
        base: dict[str, str] = {}
        if kind is RecordKind.ADMISSION and name in self._admissions:
            base = admission_fields(self._admissions[name])
        elif kind is RecordKind.INVITE and name in self._invites:
            base = invite_fields(self._invites[name])
        elif kind is RecordKind.ROOM and name in self._rooms:
            base = {"record": encode_record(self._rooms[name])}
        elif kind is RecordKind.AUDIT:
            entries = self._audit.setdefault(name, deque(maxlen=_AUDIT_KEEP))
            entries.append(fields["record"])
            return
        elif kind not in (
            RecordKind.ADMISSION,
            RecordKind.INVITE,
            RecordKind.ROOM,
            RecordKind.BAN,
            RecordKind.RATE,
        ):
            raise ValueError(f"the memory store keeps no stored form of {kind} records")
        self._raw[(kind, name)] = {**base, **self._raw.get((kind, name), {}), **fields}

    def _raw_form(self, kind: RecordKind, name: str) -> dict[str, str] | None:
        return self._raw.get((kind, name)) if self._raw else None

    def _room(self, name: str) -> Room | None:
        raw = self._raw_form(RecordKind.ROOM, name)
        if raw is None:
            return self._rooms.get(name)
        try:
            return parse_room(raw.get("record"))
        except CorruptRecord as corrupt:
            self.health.corrupt(corrupt.kind)
            return None

    def _expired_invite(self, invite_id: str) -> bool:
        """Whether the invite's record is past its keeping (`invite_kept_seconds`): then it is
        forgotten, with its name, its plan and its link's index, as Redis lets them expire."""
        if self._invite_until.get(invite_id, math.inf) > time.time():
            return False
        self._invite_until.pop(invite_id, None)
        self._plans.pop(invite_id, None)
        self._raw.pop((RecordKind.INVITE, invite_id), None)
        invite = self._invites.pop(invite_id, None)
        if invite is not None:
            self._invite_by_token.pop(invite.token_hash, None)
            self._room_invites.get(invite.room, set()).discard(invite_id)
        return True

    def _invite(self, invite_id: str) -> Invite | None:
        if self._expired_invite(invite_id):
            return None
        raw = self._raw_form(RecordKind.INVITE, invite_id)
        if raw is None:
            return self._invites.get(invite_id)
        try:
            return parse_invite(raw.get("record"), raw.get("uses"), raw.get("revoked"))
        except CorruptRecord as corrupt:
            self.health.corrupt(corrupt.kind)
            return None

    def _admission(self, admission_id: str) -> Admission | None:
        raw = self._raw_form(RecordKind.ADMISSION, admission_id)
        if raw is None:
            return self._admissions.get(admission_id)
        try:
            return parse_admission(raw.get("record"), raw.get("revoked"))
        except CorruptRecord as corrupt:
            self.health.corrupt(corrupt.kind)
            return None

    def _revoke_raw(self, kind: RecordKind, name: str) -> bool:
        """Mark a replaced record revoked, as Redis does (its other fields as they are)."""
        raw = self._raw_form(kind, name)
        if raw is None:
            return False
        raw["revoked"] = "1"
        return True

    async def ping(self) -> None:
        if self._closed:
            raise StoreUnavailable()

    async def close(self) -> None:
        self._closed = True
        for subscriptions in self._subscriptions.values():
            for subscription in list(subscriptions):
                await subscription.aclose()
        self._subscriptions.clear()

    # The memory marker (gateway/store/continuity.py)

    async def advance_marker(self, if_absent: str) -> tuple[str, bool]:
        if self._marker is None:
            self._marker = if_absent
            return if_absent, True
        marker = parse_marker(self._marker)
        if marker is not None:
            self._marker = dataclasses.replace(marker, generation=marker.generation + 1).encode()
        return self._marker, False

    async def read_marker(self) -> str | None:
        return self._marker

    async def replace_marker(self, expected: str | None, new: str) -> bool:
        if self._marker != expected:
            return False
        self._marker = new
        return True

    # Rooms

    async def create_room(self, room: Room) -> None:
        if room.name in self._rooms or self._raw_form(RecordKind.ROOM, room.name) is not None:
            raise RoomExists()
        self._rooms[room.name] = room

    async def get_room(self, name: str) -> Room | None:
        return self._room(name)

    async def list_rooms(self) -> list[Room]:
        names = set(self._rooms) | {n for kind, n in self._raw if kind is RecordKind.ROOM}
        rooms = [room for name in names if (room := self._room(name)) is not None]
        return sorted(rooms, key=lambda room: (room.created_at, room.name))

    async def update_room(self, room: Room) -> None:
        if room.name not in self._rooms and self._raw_form(RecordKind.ROOM, room.name) is None:
            raise RoomNotFound()
        self._raw.pop((RecordKind.ROOM, room.name), None)
        self._rooms[room.name] = room

    async def change_room(self, name: str, change: Callable[[Room], Room]) -> Room:
        # Nothing awaits between the read and the write: no other change can come between.
        room = self._room(name)
        if room is None:
            raise RoomNotFound()
        changed = change(room)
        self._raw.pop((RecordKind.ROOM, name), None)
        self._rooms[name] = changed
        return changed

    async def delete_room(self, name: str, now: float) -> bool:
        replaced = self._raw.pop((RecordKind.ROOM, name), None)
        if self._rooms.pop(name, None) is None and replaced is None:
            return False
        for invite_id in self._room_invites.pop(name, set()):
            self._raw.pop((RecordKind.INVITE, invite_id), None)
            self._plans.pop(invite_id, None)
            self._invite_until.pop(invite_id, None)
            invite = self._invites.pop(invite_id, None)
            if invite is not None:
                self._invite_by_token.pop(invite.token_hash, None)
        # Revoked admissions outlive the room so that a browser still holding the cookie is told
        # it was removed; they leave the room's listing, as the room no longer exists.
        for admission_id in self._room_admissions.pop(name, set()):
            admission = self._admissions.get(admission_id)
            if self._revoke_raw(RecordKind.ADMISSION, admission_id) or admission is None:
                continue
            if now >= admission.expires_at:
                del self._admissions[admission_id]
            else:
                self._admissions[admission_id] = dataclasses.replace(admission, revoked=True)
        return True

    # Invites

    async def add_invite(self, invite: Invite, plan: JoinPlan | None = None) -> None:
        if invite.room not in self._rooms:
            raise RoomNotFound()
        if plan is None:
            self._plans.pop(invite.id, None)
        else:
            self._plans[invite.id] = plan
        self._raw.pop((RecordKind.INVITE, invite.id), None)
        self._invites[invite.id] = invite
        now = time.time()
        self._invite_until[invite.id] = now + invite_kept_seconds(invite, now)
        self._invite_by_token[invite.token_hash] = invite.id
        self._room_invites.setdefault(invite.room, set()).add(invite.id)

    async def get_invite(self, invite_id: str) -> Invite | None:
        return self._invite(invite_id)

    async def find_invite(self, token_hash: str) -> Invite | None:
        return self._find_invite(token_hash)

    def _find_invite(self, token_hash: str) -> Invite | None:
        invite_id = self._invite_by_token.get(token_hash)
        invite = None if invite_id is None else self._invite(invite_id)
        # An invite re-added under its id with another token leaves the old index entry behind.
        return invite if invite is not None and invite.token_hash == token_hash else None

    async def find_invite_and_room(
        self, token_hash: str, max_moves: int
    ) -> tuple[Invite | None, Room | None]:
        invite = self._find_invite(token_hash)
        if invite is None:
            return None, None
        room = self._room(invite.room)
        for _ in range(max_moves):
            if room is None or room.moved_to is None:
                break
            room = self._room(room.moved_to)
        return invite, room

    async def list_invites(self, room: str) -> list[Invite]:
        found = [self._invite(i) for i in list(self._room_invites.get(room, ()))]
        invites = [invite for invite in found if invite is not None]
        return sorted(invites, key=lambda invite: (invite.created_at, invite.id))

    async def revoke_invite(self, invite_id: str) -> bool:
        if self._revoke_raw(RecordKind.INVITE, invite_id):
            return True
        invite = None if self._expired_invite(invite_id) else self._invites.get(invite_id)
        if invite is None:
            return False
        self._invites[invite_id] = dataclasses.replace(invite, revoked=True)
        # As Redis does (scripts/revoke_invite.lua): the record, the invitee's name with it, is
        # kept a grace from now at most, long enough to tell its holder it was revoked.
        until = time.time() + INVITE_KEPT_AFTER_EXPIRY
        self._invite_until[invite_id] = min(self._invite_until.get(invite_id, until), until)
        return True

    async def redeem_invite(self, token_hash: str, now: float) -> Invite:
        return self._use_invite(self._usable_invite(token_hash, now))

    def _usable_invite(self, token_hash: str, now: float) -> Invite:
        invite = self._find_invite(token_hash)
        if invite is None:
            raise InviteUnknown()
        if invite.revoked:
            raise InviteRevoked()
        if now >= invite.expires_at:
            raise InviteExpired()
        if invite.uses >= invite.max_uses:
            raise InviteUsedUp()
        return invite

    def _use_invite(self, invite: Invite) -> Invite:
        redeemed = dataclasses.replace(invite, uses=invite.uses + 1)
        self._raw.pop((RecordKind.INVITE, invite.id), None)
        self._invites[invite.id] = redeemed
        return redeemed

    async def join_by_invite(self, join: InviteJoin) -> InviteJoined:
        # Nothing below awaits anything that yields: no other task runs in between.
        decision = await self.charge_limits(join.charges)
        if not decision.allowed:
            return InviteJoined(limits=decision)
        if await self.is_banned(join.ban_scope, join.admission.identity, join.now):
            raise AdmissionBanned()
        invite = self._usable_invite(join.token_hash, join.now)
        if invite.id != join.invite_id:
            raise InviteUnknown()
        index = await self.claim_name(join.admission.room, join.claim)
        if index is None:
            return InviteJoined(limits=decision)
        self._use_invite(invite)
        admission = dataclasses.replace(join.admission, name=join.names[index])
        await self.add_admission(admission)
        return InviteJoined(limits=decision, admission=admission)

    async def join_through_link(self, link: LinkJoin) -> InviteJoined | LinkFound | LinkUnknown:
        # As join_by_invite: nothing below yields to another task.
        invite, room = await self.find_invite_and_room(link.token_hash, link.max_moves)
        if invite is None or room is None:
            decision = await self.charge_limits(link.unknown_charges)
            if decision.allowed and link.count_unknown is not None:
                await self.count_recent(*link.count_unknown)
            return LinkUnknown(decision)
        found = LinkFound(invite, room, encode_record(room))
        expected = link.expected
        if (
            link.join is None
            or expected is None
            or (expected.invite.id, expected.stamp) != (invite.id, found.stamp)
        ):
            return found
        return await self.join_by_invite(link.join)

    async def join_plainly(self, join: PlainJoin) -> LinkJoined | LinkFound | LinkUnknown:
        # As join_by_invite: nothing below yields to another task.
        found = await self.join_through_link(
            LinkJoin(
                join.token_hash,
                join.max_moves,
                join.unknown_charges,
                count_unknown=join.count_unknown,
            )
        )
        if not isinstance(found, LinkFound):
            assert isinstance(found, LinkUnknown)  # no join was asked for
            return found
        invite, room = found.invite, found.room
        plan = self._plans.get(invite.id)
        if plan is None or plan.key != join.key:
            return found
        pressure = 0
        if join.pressure is not None:
            pressure = await self.read_recent(f"reject:room:{room.name}", join.pressure[0])
        reserved = self._reserved(room.name, plan.host_shape, join.now)
        if join.leaves_to_caller(invite, room, reserved=reserved, room_pressure=pressure):
            return found
        through = join.through(invite, room, plan)
        allowed = RateDecision(allowed=True, retry_after=0.0)
        joined = LinkJoined(invite.id, room.name, plan.identity, room.language, limits=allowed)
        try:
            done = await self.join_by_invite(through)
        except AdmissionBanned:
            return dataclasses.replace(joined, banned=True)
        except (InviteUnknown, InviteRevoked, InviteExpired, InviteUsedUp) as refused:
            return dataclasses.replace(joined, invite_refusal=refused)
        return dataclasses.replace(joined, limits=done.limits, admission=done.admission)

    def _reserved(self, room: str, shape: str, now: float) -> bool:
        """Whether a usable host invite to `room` has a name that looks like `shape`, or may
        have: an invite stored without a join plan (as Redis's index of hosts' names, which
        cannot tell then), or one that does not parse."""
        for invite_id in list(self._room_invites.get(room, ())):
            if self._expired_invite(invite_id):
                continue
            plan = self._plans.get(invite_id)
            if plan is None:
                return True
            made = self._invites.get(invite_id)
            if made is None or made.role is not Role.HOST:
                continue
            invite = self._invite(invite_id)
            if invite is None:
                return True
            if not invite.revoked and now < invite.expires_at and plan.host_shape == shape:
                return True
        return False

    # Admissions

    async def add_admission(self, admission: Admission) -> None:
        self._raw.pop((RecordKind.ADMISSION, admission.id), None)
        self._admissions[admission.id] = admission
        self._room_admissions.setdefault(admission.room, set()).add(admission.id)

    async def get_admission(self, admission_id: str) -> Admission | None:
        return self._unexpired_admission(admission_id, time.time())

    async def get_admissions(self, admission_ids: Sequence[str]) -> list[Admission | None]:
        return [await self.get_admission(admission_id) for admission_id in admission_ids]

    async def list_admissions(self, room: str) -> list[Admission]:
        now = time.time()
        ids = self._room_admissions.get(room, set())
        admissions = [a for i in list(ids) if (a := self._unexpired_admission(i, now)) is not None]
        return sorted(admissions, key=lambda admission: (admission.created_at, admission.id))

    async def revoke_admission(self, admission_id: str) -> bool:
        if self._revoke_raw(RecordKind.ADMISSION, admission_id):
            return True
        admission = self._unexpired_admission(admission_id, time.time())
        if admission is None:
            return False
        self._admissions[admission_id] = dataclasses.replace(admission, revoked=True)
        return True

    async def move_admission(self, admission_id: str, room: str) -> Admission | None:
        admission = self._unexpired_admission(admission_id, time.time())
        if admission is None or admission.revoked:
            return None
        self._unlist_admission(admission)
        moved = dataclasses.replace(admission, room=room)
        self._raw.pop((RecordKind.ADMISSION, admission_id), None)
        self._admissions[admission_id] = moved
        self._room_admissions.setdefault(room, set()).add(admission_id)
        return moved

    def _unexpired_admission(self, admission_id: str, now: float) -> Admission | None:
        """The admission, or None once it has expired (it is dropped then, revoked or not) or
        when its stored form does not parse."""
        admission = self._admission(admission_id)
        if admission is None or now < admission.expires_at:
            return admission
        self._raw.pop((RecordKind.ADMISSION, admission_id), None)
        self._admissions.pop(admission_id, None)
        self._unlist_admission(admission)
        return None

    def _unlist_admission(self, admission: Admission) -> None:
        room_ids = self._room_admissions.get(admission.room)
        if room_ids is not None:
            room_ids.discard(admission.id)
            if not room_ids:
                del self._room_admissions[admission.room]

    # Names shown in a room

    async def claim_name(self, room: str, claim: NameClaim) -> int | None:
        now = time.time()
        self._name_calls += 1
        if self._name_calls % _SWEEP_EVERY == 0:
            self._sweep_names(now)
        fields = self._names.setdefault(room, {})

        def held(field: tuple[str, str]) -> bool:
            return any(who != claim.holder for _, who in self._live_claims(fields, field, now))

        chosen = None
        for index, shape in enumerate(claim.shapes):
            yields = index == 0 and claim.first_yields_to_host
            if not held(("n", shape)) and not (yields and held(("h", claim.host_shape))):
                chosen = index
                break
        if chosen is None:
            if not fields:
                del self._names[room]
            return None
        fields[("n", claim.shapes[chosen])] = [(claim.expires_at, claim.holder)]
        if claim.host:
            mark = ("h", claim.host_shape)
            others = [e for e in self._live_claims(fields, mark, now) if e[1] != claim.holder]
            fields[mark] = [*others, (claim.expires_at, claim.holder)]
        return chosen

    def _live_claims(
        self,
        fields: dict[tuple[str, str], list[tuple[float, str]]],
        field: tuple[str, str],
        now: float,
    ) -> list[tuple[float, str]]:
        """A field's live claims: not expired, and their admission not revoked (or not stored
        yet)."""
        live = []
        for until, holder in fields.get(field, ()):
            admission = self._admissions.get(holder)
            if until > now and (admission is None or not admission.revoked):
                live.append((until, holder))
        return live

    def _sweep_names(self, now: float) -> None:
        for room in list(self._names):
            fields = self._names[room]
            for field in list(fields):
                if not self._live_claims(fields, field, now):
                    del fields[field]
            if not fields:
                del self._names[room]

    # Bans

    async def ban_identity(self, room: str, identity: str, until: float | None) -> None:
        self._raw.pop((RecordKind.BAN, f"{room}:{identity}"), None)
        self._bans[(room, identity)] = until

    async def are_banned(self, bans: Sequence[tuple[str, str]], now: float) -> list[bool]:
        return [await self.is_banned(room, identity, now) for room, identity in bans]

    async def unban_identity(self, room: str, identity: str) -> bool:
        raw = self._raw.pop((RecordKind.BAN, f"{room}:{identity}"), None)
        if (room, identity) not in self._bans:
            return raw is not None
        until = self._bans.pop((room, identity))
        # As Redis, whose key goes when the ban ends: an ended ban is none.
        return raw is not None or until is None or until > time.time()

    async def is_banned(self, room: str, identity: str, now: float) -> bool:
        raw = self._raw_form(RecordKind.BAN, f"{room}:{identity}")
        if raw is not None:
            try:
                return parse_ban(raw.get("value", ""), now)
            except CorruptRecord as corrupt:
                # A ban that does not parse still bans: a refusal, never a way in.
                self.health.corrupt(corrupt.kind)
                return True
        key = (room, identity)
        if key not in self._bans:
            return False
        until = self._bans[key]
        if until is None or now < until:
            return True
        del self._bans[key]
        return False

    # Audit trail

    async def append_audit(self, entry: AuditEntry) -> None:
        entries = self._live_audit(entry.room, time.monotonic())
        if entries is None:
            entries = self._audit[entry.room] = deque(maxlen=_AUDIT_KEEP)
        entries.append(encode_audit(entry))
        self._audit_until[entry.room] = time.monotonic() + self._audit_retention
        # As Redis does (scripts/audit_trim.lua): from the oldest end, while too old.
        cutoff = entry.at - self._audit_retention
        while entries and _audit_older(entries[0], cutoff):
            entries.popleft()

    def _live_audit(self, room: str, now: float) -> deque[str] | None:
        """The room's trail, unless the retention has passed since its newest entry."""
        if self._audit_until.get(room, math.inf) <= now:
            self._audit.pop(room, None)
            del self._audit_until[room]
        return self._audit.get(room)

    async def purge_audit(self, room: str | None, before: float) -> int:
        dropped = 0
        for name in list(self._audit) if room is None else [room]:
            entries = self._live_audit(name, time.monotonic())
            if entries is None:
                continue
            kept = [text for text in entries if not _audit_older(text, before)]
            dropped += len(entries) - len(kept)
            # As Redis does: kept the retention past the newest entry kept.
            newest = max((float(json.loads(text)["at"]) for text in kept), default=-math.inf)
            left = newest + self._audit_retention - time.time()
            if kept and left > 0:
                self._audit[name] = deque(kept, maxlen=_AUDIT_KEEP)
                self._audit_until[name] = time.monotonic() + left
            else:
                del self._audit[name]
                self._audit_until.pop(name, None)
        return dropped

    async def compact(self) -> Compaction:
        return Compaction.NOTHING_ON_DISK

    async def list_audit(self, room: str, limit: int = 100) -> list[AuditEntry]:
        if limit <= 0:
            return []
        # An entry past the retention is not shown, even before a write or a purge drops it.
        cutoff = time.time() - self._audit_retention
        entries = []
        for text in islice(reversed(self._live_audit(room, time.monotonic()) or ()), limit):
            try:
                entry = parse_audit(text)
            except CorruptRecord as corrupt:
                self.health.corrupt(corrupt.kind)
                continue
            if entry.at >= cutoff:
                entries.append(entry)
        return entries

    # Rate limits and pressure

    async def rate_limit(self, key: str, rate_per_second: float, burst: int) -> RateDecision:
        return await self.charge_limits([LimitCharge(key, rate_per_second, burst)])

    async def charge_limits(self, charges: Sequence[LimitCharge]) -> RateDecision:
        now = time.monotonic()
        self._rate_calls += 1
        if self._rate_calls % _SWEEP_EVERY == 0:
            self._rate_tat = {key: tat for key, tat in self._rate_tat.items() if tat > now}
        # GCRA: a key's `tat` is when it would be idle again; a request fits while the backlog it
        # adds stays within `burst` intervals of now. Every charge is checked before any is kept;
        # a key named twice sees its earlier charge in `charged`.
        charged: dict[str, float] = {}
        waits = []
        for charge in charges:
            interval = 1.0 / charge.rate_per_second
            stored = charged.get(charge.key)
            if stored is None:
                stored = self._rate_state(charge.key, now, charge.burst * interval)
            tat = max(stored, now)
            # Written so that a free key's wait is exactly 0: `tat + interval - burst * interval`
            # rounds to a few 1e-13 s above `now` for some clocks, refusing a first request.
            allow_at = tat - (charge.burst - 1) * interval
            waits.append(max(0.0, allow_at - now))
            charged[charge.key] = tat + interval
        wait = max(waits, default=0.0)
        if wait > 0:
            return RateDecision(allowed=False, retry_after=wait, waits=tuple(waits))
        self._rate_tat.update(charged)
        for key in charged if self._raw else ():
            self._raw.pop((RecordKind.RATE, key), None)
        return RateDecision(allowed=True, retry_after=0.0)

    def _rate_state(self, key: str, now: float, full: float) -> float:
        """A limit's theoretical arrival time; one whose stored form does not parse is a full
        bucket's time (`full`) ahead: garbage never lets a request through."""
        raw = self._raw_form(RecordKind.RATE, key)
        if raw is None:
            return self._rate_tat.get(key, now)
        try:
            return parse_rate_state(raw.get("value", "")) / 1_000_000
        except CorruptRecord as corrupt:
            self.health.corrupt(corrupt.kind)
            return now + full

    async def count_recent(self, key: str, window_seconds: int, amount: int = 1) -> int:
        if amount < 1:
            raise ValueError("amount must be at least 1")
        window = self._recent_window(window_seconds)
        self._recent_calls += 1
        if self._recent_calls % _SWEEP_EVERY == 0:
            self._recent = {
                (k, seconds): (index, count)
                for (k, seconds), (index, count) in self._recent.items()
                if index == self._recent_window(seconds)
            }
        index, count = self._recent.get((key, window_seconds), (window, 0))
        count = count + amount if index == window else amount
        self._recent[(key, window_seconds)] = (window, count)
        return count

    async def read_recent(self, key: str, window_seconds: int) -> int:
        window = self._recent_window(window_seconds)
        index, count = self._recent.get((key, window_seconds), (window, 0))
        return count if index == window else 0

    @staticmethod
    def _recent_window(window_seconds: int) -> int:
        if window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        return int(time.monotonic() // window_seconds)

    async def claim_once(self, key: str, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        now = time.monotonic()
        self._claim_calls += 1
        if self._claim_calls % _SWEEP_EVERY == 0:
            self._claims = {k: until for k, until in self._claims.items() if until > now}
        if self._claims.get(key, now) > now:
            return False
        self._claims[key] = now + ttl_seconds
        return True

    async def day_key(self, day: int, *, create: bool) -> str | None:
        # This process is every replica there is: the key lives here, and nowhere else.
        # Only today's and yesterday's are ever asked for: older days are dropped.
        for old in [d for d in self._day_keys if d < day - 1]:
            del self._day_keys[old]
        if create:
            self._day_keys.setdefault(day, secrets.token_hex(32))
        return self._day_keys.get(day)

    def held_day_key(self, day: int) -> str | None:
        return self._day_keys.get(day)

    # Short-lived values

    async def put_value(self, key: str, value: str, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        now = self._short_lived_now()
        self._values[key] = (value, now + ttl_seconds)

    async def get_value(self, key: str) -> str | None:
        return self._live_value(key, self._short_lived_now())

    async def get_values(self, keys: Sequence[str]) -> list[str | None]:
        now = self._short_lived_now()
        return [self._live_value(key, now) for key in keys]

    async def take_value(self, key: str) -> str | None:
        value = self._live_value(key, self._short_lived_now())
        if value is not None:
            del self._values[key]
        return value

    async def delete_value(self, key: str) -> bool:
        return await self.take_value(key) is not None

    async def bump_value(self, key: str, ttl_seconds: float) -> int:
        _check_ttl(ttl_seconds)
        now = self._short_lived_now()
        count, until = self._counters.get(key, (0, now))
        if until <= now:
            count, until = 0, now + ttl_seconds
        self._counters[key] = (count + 1, until)
        return count + 1

    def _live_value(self, key: str, now: float) -> str | None:
        """The value, or None once it has lapsed (it is dropped then)."""
        entry = self._values.get(key)
        if entry is None:
            return None
        value, until = entry
        if until > now:
            return value
        del self._values[key]
        return None

    # Expiring indexes

    async def index_add(self, index: str, member: str, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        now = self._short_lived_now()
        members = self._live_members(index, now)
        members[member] = now + ttl_seconds
        self._indexes[index] = members

    async def index_members(self, index: str) -> list[str]:
        members = self._live_members(index, self._short_lived_now())
        return sorted(members, key=lambda member: (members[member], member))

    async def index_remove(self, index: str, member: str) -> bool:
        members = self._live_members(index, self._short_lived_now())
        if members.pop(member, None) is None:
            return False
        if not members:
            del self._indexes[index]
        return True

    async def index_size(self, index: str) -> int:
        return len(self._live_members(index, self._short_lived_now()))

    def _live_members(self, index: str, now: float) -> dict[str, float]:
        """The index's live members (lapsed ones are dropped here), or a new empty index."""
        members = self._indexes.get(index)
        if members is None:
            return {}
        live = {member: until for member, until in members.items() if until > now}
        if live:
            self._indexes[index] = live
        else:
            del self._indexes[index]
        return live

    def _short_lived_now(self) -> float:
        """The clock of values, counters and indexes; every so often it sweeps what has lapsed."""
        now = time.monotonic()
        self._short_lived_calls += 1
        if self._short_lived_calls % _SWEEP_EVERY == 0:
            self._values = {k: entry for k, entry in self._values.items() if entry[1] > now}
            self._counters = {k: entry for k, entry in self._counters.items() if entry[1] > now}
            for index in list(self._indexes):
                self._live_members(index, now)
        return now

    # Pub/sub

    async def publish(self, channel: str, message: str) -> None:
        for subscription in list(self._subscriptions.get(channel, ())):
            subscription._deliver(message)

    def subscribe(self, channel: str) -> MemorySubscription:
        """Receive every message published on `channel` from this call on."""
        if self._closed:
            return MemorySubscription(channel, None)
        return MemorySubscription(
            channel, self._subscriptions.setdefault(channel, weakref.WeakSet())
        )


def _check_ttl(ttl_seconds: float) -> None:
    if not 0 < ttl_seconds < math.inf:
        raise ValueError("ttl_seconds must be positive and finite")
