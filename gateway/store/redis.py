"""The Redis `Store`: state shared by any number of replicas. The only module that imports redis.

Records are JSON in hashes under `meetgate:`; every change that must not be seen half-done or be
interleaved with another replica's is one Lua script from `scripts/`. Every call runs within a
deadline (gateway/store/deadline.py) on a pool that makes a call wait for a free connection rather
than fail; a record that does not parse is read as a refusal (gateway/store/records.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from importlib import resources
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import EqualJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import (
    AdmissionBanned,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsedUp,
    MeetgateError,
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
from gateway.store.continuity import Continuity
from gateway.store.day_keys import DayKeys
from gateway.store.deadline import StoreOptions, store_deadline
from gateway.store.health import StoreHealth, store_address
from gateway.store.records import (
    INVITE_FIELD_KINDS,
    POLICY_FIELD_KINDS,
    ROOM_FIELD_KINDS,
    ROOM_LANGUAGES,
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
    ban_value,
    encode_audit,
    encode_plan,
    encode_record,
    invite_fields,
    parse_admission,
    parse_audit,
    parse_ban,
    parse_invite,
    parse_room,
)
from gateway.store.sentinel_url import is_sentinel_url, parse_sentinel_url

# Key layout. Ban keys join room and identity with ':', unambiguous because room names cannot
# contain it.
_ROOMS: Final = "meetgate:rooms"  # hash: room name -> Room JSON
_INVITE: Final = "meetgate:invite:"  # + id: hash record (JSON), uses, revoked
_INVITE_INDEX: Final = "meetgate:invite-token:"  # + token hash: invite id
# Token hash → invite id answers a replica keeps (RedisStore._invite_ids); past that it starts
# over.
MAX_KNOWN_INVITE_IDS: Final = 10_000
_ROOM_INVITES: Final = "meetgate:room-invites:"  # + room: set of invite ids
# + room: hash of its host invites' name shapes, and how many invites had a plan (add_invite.lua)
_ROOM_HOSTS: Final = "meetgate:room-hosts:"
_ADMISSION: Final = "meetgate:admission:"  # + id: hash record (JSON), revoked; expires with it
# + room: sorted set id -> expires_at; lasts as long as its latest entry (room_admissions.lua)
_ROOM_ADMISSIONS: Final = "meetgate:room-admissions:"
_NAMES: Final = "meetgate:names:"  # + room: hash of name claims (scripts/claim_name.lua)
_BAN: Final = "meetgate:ban:"  # + room:identity: until, or "" for ever
_AUDIT: Final = "meetgate:audit:"  # + room: list of AuditEntry JSON, newest first
# How often `change_room` tries again when another change came between its read and its write.
_CHANGE_ATTEMPTS: Final = 20
_RATE: Final = "meetgate:rate:"  # + limit key: GCRA theoretical arrival time (microseconds)
_RECENT: Final = "meetgate:recent:"  # + window seconds:key: hash of window index and count
_ONCE: Final = "meetgate:once:"  # + key: present while the claim holds
_VALUE: Final = "meetgate:value:"  # + key: a short-lived value; expires with it
_COUNTER: Final = "meetgate:counter:"  # + key: a count; expires a TTL after its first bump
_INDEX: Final = "meetgate:index:"  # + index: sorted set member -> expiry (microseconds)
_CHANNEL: Final = "meetgate:channel:"  # + channel: pub/sub channel
_MARKER: Final = "meetgate:memory"  # the memory marker (gateway/store/continuity.py); no TTL

# A few quick retries ride out a failover blip; beyond that a join fails closed at once instead
# of hanging while Redis is away.
_RETRIES: Final = 3
_RETRY_BACKOFF_CAP: Final = 0.25
_CONNECT_TIMEOUT: Final = 2.0
_COMMAND_TIMEOUT: Final = 5.0
# While the store is down, how often a replica asks whether it is back (to log and to tell the
# metrics when it is, even with no request to notice).
RECOVERY_PROBE_SECONDS: Final = 1.0

# The most recent audit entries kept per room; older ones are trimmed as new ones arrive.
_AUDIT_KEEP: Final = 10_000
# How many keys one SCAN call looks at (a walk of every room's audit log: many calls).
_SCAN_PAGE: Final = 10_000

# The parts join_invite (scripts/invite_join.lua) calls, itself last.
_JOIN_PARTS: Final = ("gcra", "invite_check", "name_claims", "room_admissions", "invite_join")
# ... and those a join through a link calls, itself last.
_LINK_PARTS: Final = ("recent", *_JOIN_PARTS, "link_lookup")
# What stands in an admission's record for what join_plain.lua fills in, in the record's order.
_PLAIN_BLANKS: Final = ("\0room", "\0identity", "\0name", "\0role", "\0via")
_INVITE_FIELDS: Final = ("record", "uses", "revoked")
_ALLOWED: Final = RateDecision(allowed=True, retry_after=0.0)
_ADMISSION_FIELDS: Final = ("record", "revoked")


@contextmanager
def _translate_errors() -> Iterator[None]:
    """The one place where the client's failures become `StoreUnavailable`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable() from exc


def _script_text(name: str, *parts: str) -> str:
    """The script `name`, after the `parts` it calls (files that define Lua functions: Redis
    runs one text per script, so the functions several scripts share are put in front)."""
    scripts = resources.files("gateway.store").joinpath("scripts")
    return "\n".join(scripts.joinpath(f"{file}.lua").read_text("utf-8") for file in (*parts, name))


def _stamp(room_record: str) -> str:
    """What join_link.lua compares a room's stored record by (`LinkFound.stamp`): a version
    marker, not a secret."""
    return hashlib.sha1(room_record.encode(), usedforsecurity=False).hexdigest()


def _milliseconds(timestamp: float) -> int:
    # Rounded up: a record must not vanish (and a revocation with it) before its time.
    return math.ceil(timestamp * 1000)


def _check_ttl(ttl_seconds: float) -> None:
    if not 0 < ttl_seconds < math.inf:
        raise ValueError("ttl_seconds must be positive and finite")


def _ttl_milliseconds(ttl_seconds: float) -> int:
    """A checked TTL in milliseconds for PX; at least 1, as Redis refuses 0."""
    _check_ttl(ttl_seconds)
    return max(1, _milliseconds(ttl_seconds))


# types-redis declares these pools generic; the runtime classes are not subscriptable.
class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):  # type: ignore[type-arg]
    """Connections to the master the Sentinels name, waited for (like BlockingConnectionPool)
    when they are all in use."""


def client_for(
    url: str, pool: StoreOptions | None = None, **options: Any
) -> tuple[Redis[str], Sentinel | None]:
    """A client for a store URL, and the Sentinels behind it for `redis+sentinel://`; no I/O yet.

    `options` (timeouts, retry) apply to every connection, to the Sentinels' too. With Sentinel,
    each new connection asks the Sentinels where the master is, so a failover is followed.
    With `pool`, at most `pool.pool_size` connections are opened; a command that finds them all
    in use waits up to `pool.pool_wait_seconds` for one.
    """
    pooling: dict[str, Any] = {}
    if pool is not None:
        pooling = {"max_connections": pool.pool_size, "timeout": pool.pool_wait_seconds}
    if not is_sentinel_url(url):
        if pool is None:
            return Redis.from_url(url, decode_responses=True, **options), None
        connections: BlockingConnectionPool[Any] = BlockingConnectionPool.from_url(
            url, decode_responses=True, **pooling, **options
        )
        pooled: Redis[str] = Redis.from_pool(connections)  # type: ignore[attr-defined]  # types-redis predates from_pool
        return pooled, None
    where = parse_sentinel_url(url)
    sentinel_options = {**options}
    if where.sentinel_password is not None:
        sentinel_options["password"] = where.sentinel_password
        if where.sentinel_username is not None:
            sentinel_options["username"] = where.sentinel_username
    sentinel = Sentinel(list(where.sentinels), sentinel_kwargs=sentinel_options)
    if pool is not None:
        pooling["connection_pool_class"] = _BlockingSentinelPool
    client: Redis[str] = sentinel.master_for(
        where.master_name,
        db=where.db,
        username=where.username,
        password=where.password,
        decode_responses=True,
        **pooling,
        **options,
    )
    return client, sentinel


async def close_client(client: Redis[str], sentinel: Sentinel | None) -> None:
    """Close what `client_for` made (raises RedisError or OSError like any command)."""
    try:
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
    finally:
        for node in sentinel.sentinels if sentinel is not None else []:
            await node.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


class _End:
    """Marks the end of a subscription in its queue."""


_END: Final = _End()


class RedisSubscription(AsyncIterator[str]):
    """Messages published on one channel by any replica, read over a connection of its own.

    SUBSCRIBE is sent as soon as this object is made. `ready()` returns once Redis has confirmed
    it; a publish through the same store waits for that first, so it is never missed. A publish
    from another replica is delivered if it reaches Redis after the confirmation. A dropped
    connection ends the iteration with StoreUnavailable, also when the client re-established it
    and subscribed again by itself (a second confirmation), as messages published meanwhile
    are lost: subscribe again, and catch up. End it with `aclose()`.
    """

    def __init__(self, pubsub: PubSub, channel: str, registry: set[RedisSubscription]) -> None:
        self.channel = channel
        self._pubsub = pubsub
        self._registry = registry
        self._queue: asyncio.Queue[str | StoreUnavailable | _End] = asyncio.Queue()
        self._settled = asyncio.Event()
        self._failure: StoreUnavailable | None = None
        self._finished = False
        registry.add(self)
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"meetgate subscription {channel}"
        )

    async def _read(self) -> None:
        try:
            with _translate_errors():
                await self._pubsub.subscribe(_CHANNEL + self.channel)
                async for message in self._pubsub.listen():
                    if message["type"] == "subscribe":
                        if self._settled.is_set():
                            # Subscribed again by the client after a drop: what was published
                            # in between never reached this subscription.
                            raise StoreUnavailable()
                        self._settled.set()
                    elif message["type"] == "message":
                        self._queue.put_nowait(str(message["data"]))
        except StoreUnavailable as exc:
            self._failure = exc
            self._queue.put_nowait(exc)
        finally:
            self._settled.set()
            self._queue.put_nowait(_END)

    async def ready(self) -> None:
        """Return once Redis confirmed the subscription; raise StoreUnavailable if it failed."""
        await self._settled.wait()
        if self._failure is not None:
            raise self._failure

    async def __anext__(self) -> str:
        if self._finished:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, str):
            return item
        self._finished = True
        if isinstance(item, StoreUnavailable):
            raise item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._registry.discard(self)
        self._reader.cancel()
        # asyncio.wait, unlike awaiting the task, leaves a cancellation of aclose() itself intact.
        await asyncio.wait([self._reader])
        # Closing is best effort: the connection is dropped either way.
        with suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        # A reader cancelled before it ever ran has not marked the end itself.
        self._settled.set()
        self._queue.put_nowait(_END)


class RedisStore:
    """Rooms, invites, admissions, bans, audit trails, rate limits, pressure counters, one-time
    claims, short-lived values and indexes, and pub/sub in one Redis database."""

    def __init__(
        self,
        client: Redis[str],
        sentinel: Sentinel | None = None,
        options: StoreOptions | None = None,
        address: str = "redis",
    ) -> None:
        self._client = client
        self._sentinel = sentinel
        self._options = options or StoreOptions()
        self.health = StoreHealth(address)
        self.continuity = Continuity(address)
        self._probe: asyncio.Task[None] | None = None
        self._subscriptions: set[RedisSubscription] = set()
        # The day's address key: in the replicas' memory only, never in Redis (day_keys.py).
        self._day_keys = DayKeys(
            self.publish, self.subscribe, subscribe_wait=self._options.deadline_seconds
        )
        # Which invite a token hash names: fixed for the invite's life (a token is made for one
        # invite and never moves), so a lookup here saves the index read. Whatever is read by
        # it is checked against the token hash, as after an index read, so a deleted or
        # replaced invite is still "unknown".
        self._invite_ids: dict[str, str] = {}
        self._add_invite: AsyncScript = client.register_script(_script_text("add_invite"))
        self._audit_trim: AsyncScript = client.register_script(_script_text("audit_trim"))
        self._redeem_invite: AsyncScript = client.register_script(
            _script_text("redeem_invite", "invite_check")
        )
        self._revoke: AsyncScript = client.register_script(_script_text("revoke"))
        self._revoke_invite: AsyncScript = client.register_script(_script_text("revoke_invite"))
        self._update_room: AsyncScript = client.register_script(_script_text("update_room"))
        self._delete_room: AsyncScript = client.register_script(_script_text("delete_room"))
        self._add_admission: AsyncScript = client.register_script(
            _script_text("add_admission", "room_admissions")
        )
        self._move_admission: AsyncScript = client.register_script(
            _script_text("move_admission", "room_admissions")
        )
        self._charge_limits: AsyncScript = client.register_script(
            _script_text("charge_limits", "gcra")
        )
        self._count_recent: AsyncScript = client.register_script(
            _script_text("count_recent", "recent")
        )
        self._bump_value: AsyncScript = client.register_script(_script_text("bump_value"))
        self._index: AsyncScript = client.register_script(_script_text("index"))
        self._claim_name: AsyncScript = client.register_script(
            _script_text("claim_name", "name_claims")
        )
        self._locate_invite: AsyncScript = client.register_script(_script_text("locate_invite"))
        self._join_by_invite: AsyncScript = client.register_script(
            _script_text("join_by_invite", *_JOIN_PARTS)
        )
        self._join_link: AsyncScript = client.register_script(
            _script_text("join_link", *_LINK_PARTS)
        )
        self._join_plain: AsyncScript = client.register_script(
            _script_text("join_plain", *_LINK_PARTS)
        )
        self._advance_marker: AsyncScript = client.register_script(_script_text("advance_marker"))
        self._replace_marker: AsyncScript = client.register_script(_script_text("replace_marker"))

    @classmethod
    async def connect(cls, url: str, options: StoreOptions | None = None) -> RedisStore:
        """Make a client for `url`; no I/O yet, so a Redis that is down shows on first use.

        `redis://`, `rediss://`, `unix://`, or `redis+sentinel://` (gateway/store/sentinel_url.py).
        Timeouts and retries can be overridden in a plain URL's query (`?socket_timeout=…`);
        `options` bound every call and size the pool.
        """
        options = options or StoreOptions()
        client, sentinel = client_for(
            url,
            options,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_COMMAND_TIMEOUT,
            retry=Retry(EqualJitterBackoff(cap=_RETRY_BACKOFF_CAP), _RETRIES),
        )
        return cls(client, sentinel, options, store_address(url))

    @asynccontextmanager
    async def _call(self, *, probe: bool = False) -> AsyncIterator[None]:
        """One store call: within its deadline, the client's failures translated into
        StoreUnavailable (the one place), the store's health noted. While the store is known
        to be down, a call fails at once (the probe alone asks) instead of waiting its deadline
        again."""
        if not self.health.up and not probe:
            raise StoreUnavailable()
        try:
            async with store_deadline(self._options.deadline_seconds, self._last_answer):
                yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._unreachable()
            raise StoreUnavailable() from exc
        except RedisError as exc:
            raise StoreUnavailable() from exc
        except StoreUnavailable:
            # The deadline or the request's budget ran out.
            self._unreachable()
            raise
        self.health.answered()

    def _last_answer(self) -> float:
        return self.health.last_answer

    def _unreachable(self) -> None:
        self.health.failed()
        if self._probe is None or self._probe.done():
            # A context of its own: not the request's budget, which may be spent.
            self._probe = asyncio.get_running_loop().create_task(
                self._watch_recovery(), name="meetgate store probe", context=contextvars.Context()
            )

    async def _watch_recovery(self) -> None:
        while not self.health.up:
            await asyncio.sleep(RECOVERY_PROBE_SECONDS)
            with suppress(StoreUnavailable):
                async with self._call(probe=True):
                    await self._client.ping()

    def _corrupt(self, error: CorruptRecord) -> None:
        self.health.corrupt(error.kind)

    async def ping(self) -> None:
        async with self._call():
            await self._client.ping()

    # The memory marker (gateway/store/continuity.py)

    async def advance_marker(self, if_absent: str) -> tuple[str, bool]:
        async with self._call():
            marker, created = await self._advance_marker(keys=[_MARKER], args=[if_absent])
        return str(marker), bool(created)

    async def read_marker(self) -> str | None:
        async with self._call():
            marker: str | None = await self._client.get(_MARKER)
        return marker

    async def replace_marker(self, expected: str | None, new: str) -> bool:
        read = "0" if expected is None else "1"
        async with self._call():
            written = await self._replace_marker(keys=[_MARKER], args=[read, expected or "", new])
        return bool(written)

    async def write_raw(self, kind: RecordKind, name: str, fields: Mapping[str, str]) -> None:
        """Test seam (as MemoryStore.write_raw): overwrite fields of a record's stored form, to
        show what a record that does not parse does. `name` is the id (admission, invite), the
        room (room, name claims: fields are the claim hash's), `<room>:<identity>` (ban) or the
        limit key (rate); `value` is the field of a plain value (ban, rate). An audit entry's
        `record` is added as the newest of the room `name`'s trail."""
        mapping: dict[str | bytes, bytes | float | int | str] = dict(fields.items())
        async with self._call():
            if kind is RecordKind.ADMISSION:
                await self._client.hset(_ADMISSION + name, mapping=mapping)
            elif kind is RecordKind.INVITE:
                await self._client.hset(_INVITE + name, mapping=mapping)
            elif kind is RecordKind.ROOM:
                await self._client.hset(_ROOMS, name, fields["record"])
            elif kind is RecordKind.NAME:
                await self._client.hset(_NAMES + name, mapping=mapping)
            elif kind is RecordKind.BAN:
                await self._client.set(_BAN + name, fields["value"])
            elif kind is RecordKind.RATE:
                await self._client.set(_RATE + name, fields["value"])
            elif kind is RecordKind.AUDIT:
                await self._client.lpush(_AUDIT + name, fields["record"])
            else:
                raise ValueError(f"no stored form of {kind} records to write")

    async def close(self) -> None:
        await self._day_keys.close()
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.wait([self._probe])
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        with _translate_errors():
            await close_client(self._client, self._sentinel)

    # Rooms

    async def create_room(self, room: Room) -> None:
        async with self._call():
            created = await self._client.hsetnx(_ROOMS, room.name, encode_record(room))
        if not created:
            raise RoomExists()

    async def get_room(self, name: str) -> Room | None:
        async with self._call():
            text: str | None = await self._client.hget(_ROOMS, name)
        return None if text is None else self._room(text)

    async def list_rooms(self) -> list[Room]:
        async with self._call():
            texts: list[str] = await self._client.hvals(_ROOMS)
        rooms = [room for text in texts if (room := self._room(text)) is not None]
        return sorted(rooms, key=lambda room: (room.created_at, room.name))

    async def update_room(self, room: Room) -> None:
        async with self._call():
            updated = await self._update_room(keys=[_ROOMS], args=[room.name, encode_record(room)])
        if not updated:
            raise RoomNotFound()

    async def change_room(self, name: str, change: Callable[[Room], Room]) -> Room:
        # Optimistic: watch the rooms hash, apply `change`, write in a transaction that fails
        # if any room changed meanwhile; then try again on the newer record.
        async with self._call(), self._client.pipeline(transaction=True) as pipe:
            for _ in range(_CHANGE_ATTEMPTS):
                try:
                    await pipe.watch(_ROOMS)
                    text: str | None = await pipe.hget(_ROOMS, name)
                    if text is None:
                        raise RoomNotFound()
                    current = self._room(text)
                    if current is None:
                        raise RoomNotFound()
                    changed = change(current)
                    pipe.multi()
                    pipe.hset(_ROOMS, name, encode_record(changed))
                    await pipe.execute()
                    return changed
                except WatchError:
                    continue
                finally:
                    await pipe.reset()
        raise StoreUnavailable()

    def _room(self, text: str) -> Room | None:
        """A stored room; one that does not parse is as good as none (nobody joins it)."""
        try:
            return parse_room(text)
        except CorruptRecord as corrupt:
            self._corrupt(corrupt)
            return None

    async def delete_room(self, name: str, now: float) -> bool:
        async with self._call():
            deleted = await self._delete_room(
                keys=[_ROOMS, _ROOM_INVITES + name, _ROOM_ADMISSIONS + name, _ROOM_HOSTS + name],
                args=[name, repr(now), _INVITE, _INVITE_INDEX, _ADMISSION],
            )
        return bool(deleted)

    # Invites

    async def add_invite(self, invite: Invite, plan: JoinPlan | None = None) -> None:
        hosts = plan is not None and invite.role is Role.HOST
        async with self._call():
            added = await self._add_invite(
                keys=[
                    _ROOMS,
                    _INVITE + invite.id,
                    _INVITE_INDEX + invite.token_hash,
                    _ROOM_INVITES + invite.room,
                    _ROOM_HOSTS + invite.room,
                ],
                args=[
                    invite.room,
                    invite.id,
                    *invite_fields(invite).values(),
                    "" if plan is None else encode_plan(plan),
                    plan.host_shape if plan is not None and hosts else "",
                    _ttl_milliseconds(invite_kept_seconds(invite, time.time())),
                ],
            )
        if not added:
            raise RoomNotFound()

    async def get_invite(self, invite_id: str) -> Invite | None:
        async with self._call():
            fields: list[str | None] = await self._client.hmget(_INVITE + invite_id, _INVITE_FIELDS)
        return self._invite_from_fields(fields)

    async def find_invite(self, token_hash: str) -> Invite | None:
        invite_id = await self._invite_id(token_hash)
        if invite_id is None:
            return None
        invite = await self.get_invite(invite_id)
        # The index is read apart from the invite, which may have been replaced in between.
        return invite if invite is not None and invite.token_hash == token_hash else None

    async def find_invite_and_room(
        self, token_hash: str, max_moves: int
    ) -> tuple[Invite | None, Room | None]:
        async with self._call():
            found: list[str | None] = await self._locate_invite(
                keys=[_INVITE_INDEX + token_hash, _ROOMS], args=[_INVITE, max_moves]
            )
        if not found or found[0] is None:
            return None, None
        invite = self._invite_from_fields(found[1:4])
        # The index is read apart from the invite, which may have been replaced in between.
        if invite is None or invite.token_hash != token_hash:
            return None, None
        self._remember_invite_id(token_hash, found[0])
        # The rooms the script read, in the order it followed their moves.
        read = list(zip(found[4::2], found[5::2], strict=True))
        name = invite.room
        for step in range(max_moves + 1):
            if step < len(read) and read[step][0] == name:
                text = read[step][1]
                room = None if text is None else self._room(text)
            else:
                # Where the script could not tell the way on (a record it did not parse).
                room = await self.get_room(name)
            if room is None or room.moved_to is None:
                break
            name = room.moved_to
        return invite, room

    def _remember_invite_id(self, token_hash: str, invite_id: str) -> None:
        if len(self._invite_ids) >= MAX_KNOWN_INVITE_IDS:
            self._invite_ids.clear()
        self._invite_ids[token_hash] = invite_id

    async def _invite_id(self, token_hash: str) -> str | None:
        invite_id = self._invite_ids.get(token_hash)
        if invite_id is None:
            async with self._call():
                invite_id = await self._client.get(_INVITE_INDEX + token_hash)
            if invite_id is not None:
                self._remember_invite_id(token_hash, invite_id)
        return invite_id

    async def list_invites(self, room: str) -> list[Invite]:
        async with self._call():
            invite_ids: set[str] = await self._client.smembers(_ROOM_INVITES + room)
            pipe = self._client.pipeline(transaction=False)
            for invite_id in invite_ids:
                pipe.hmget(_INVITE + invite_id, _INVITE_FIELDS)
            rows: list[list[str | None]] = await pipe.execute()
        invites = [i for fields in rows if (i := self._invite_from_fields(fields)) is not None]
        return sorted(invites, key=lambda invite: (invite.created_at, invite.id))

    async def revoke_invite(self, invite_id: str) -> bool:
        async with self._call():
            revoked = await self._revoke_invite(
                keys=[_INVITE + invite_id],
                args=[
                    invite_id,
                    _ROOM_HOSTS,
                    _INVITE_INDEX,
                    _ttl_milliseconds(INVITE_KEPT_AFTER_EXPIRY),
                ],
            )
        return bool(revoked)

    async def redeem_invite(self, token_hash: str, now: float) -> Invite:
        invite_id = await self._invite_id(token_hash)
        if invite_id is None:
            raise InviteUnknown()
        async with self._call():
            result: list[Any] = await self._redeem_invite(
                keys=[_INVITE + invite_id], args=[token_hash, repr(now)]
            )
        match result:
            case ["ok", str(record), int(uses)]:
                try:
                    return parse_invite(record, str(uses), "0")
                except CorruptRecord as corrupt:
                    self._corrupt(corrupt)
                    raise InviteUnknown() from corrupt
            case [str(code)]:
                raise self._invite_refusal(code)
            case _:
                raise InviteUnknown()

    def _invite_refusal(self, code: str) -> MeetgateError:
        """What check_invite's (scripts/invite_check.lua) refusal `code` is raised as."""
        if code == "corrupt":
            self._corrupt(CorruptRecord(RecordKind.INVITE))
        refusals: dict[str, type[MeetgateError]] = {
            "revoked": InviteRevoked,
            "expired": InviteExpired,
            "used_up": InviteUsedUp,
        }
        return refusals.get(code, InviteUnknown)()

    async def join_by_invite(self, join: InviteJoin) -> InviteJoined:
        keys, args = self._join_keys_args(join)
        async with self._call():
            result: list[Any] = await self._join_by_invite(keys=keys, args=args)
        return self._joined(join, result)

    async def join_through_link(self, link: LinkJoin) -> InviteJoined | LinkFound | LinkUnknown:
        expected = link.expected
        index = _INVITE_INDEX + link.token_hash
        counter, window = link.count_unknown or (None, 0)
        keys: list[str] = [
            index,
            _ROOMS,
            index if counter is None else f"{_RECENT}{window}:{counter}",
        ]
        args: list[str | int] = [
            _INVITE,
            link.max_moves,
            link.token_hash,
            len(link.unknown_charges),
            expected.invite.id if expected else "",
            expected.stamp if expected else "",
            window,
        ]
        keys += (_RATE + charge.key for charge in link.unknown_charges)
        for charge in link.unknown_charges:
            args += [repr(1_000_000 / charge.rate_per_second), charge.burst]
        if link.join is not None:
            join_keys, join_args = self._join_keys_args(link.join)
            keys += join_keys
            args += join_args
        async with self._call():
            result: list[Any] = await self._join_link(keys=keys, args=args)
        return await self._link_answer(link, result)

    async def _link_answer(
        self, link: LinkJoin, result: list[Any]
    ) -> InviteJoined | LinkFound | LinkUnknown:
        """What join_link.lua's (or join_plain.lua's) answer `result` to `link` means."""
        match result:
            case [
                "unknown",
                int(counter_corrupt),
                int(allowed),
                int(retry_after_us),
                int(corrupt),
                *waits_us,
            ]:
                if counter_corrupt:
                    self._corrupt(CorruptRecord(RecordKind.PRESSURE))
                return LinkUnknown(self._rate_decision(allowed, retry_after_us, corrupt, waits_us))
            case ["found", str(invite_id), *fields]:
                found = await self._link_found(link, invite_id, fields)
                if found is None:
                    # A record the script read but that does not parse here: nowhere, charged
                    # and counted apart.
                    decision = await self.charge_limits(link.unknown_charges)
                    if decision.allowed and link.count_unknown is not None:
                        await self.count_recent(*link.count_unknown)
                    return LinkUnknown(decision)
                return found
            case _ if link.join is not None:
                return self._joined(link.join, result)
            case _:
                raise StoreUnavailable()

    async def join_plainly(self, join: PlainJoin) -> LinkJoined | LinkFound | LinkUnknown:
        index = _INVITE_INDEX + join.token_hash
        counter, window = join.count_unknown or (None, 0)
        admission = join.admission
        keys: list[str] = [
            index,
            _ROOMS,
            index if counter is None else f"{_RECENT}{window}:{counter}",
            *(_RATE + charge.key for charge in join.unknown_charges),
            _ADMISSION + admission.id,
        ]
        args: list[str | int] = [
            _INVITE,
            join.max_moves,
            join.token_hash,
            len(join.unknown_charges),
            window,
        ]
        for charge in join.unknown_charges:
            args += [repr(1_000_000 / charge.rate_per_second), charge.burst]
        args.append(json.dumps(self._plain_terms(join), separators=(",", ":")))
        async with self._call():
            result: list[Any] = await self._join_plain(keys=keys, args=args)
        match result:
            case [
                "joined",
                str(room),
                str(language),
                str(invite_id),
                str(identity),
                str(role),
                *rest,
            ]:
                # A tag of no language of this release is none, as `parse_room` reads it.
                known = language if language in ROOM_LANGUAGES else ""
                joined = LinkJoined(invite_id, room, identity, known, limits=_ALLOWED)
                return self._plain_joined(join, joined, role, rest)
            case _:
                link = LinkJoin(
                    join.token_hash,
                    join.max_moves,
                    join.unknown_charges,
                    count_unknown=join.count_unknown,
                )
                found = await self._link_answer(link, result)
                assert not isinstance(found, InviteJoined)  # no join was asked for
                return found

    @staticmethod
    def _plain_terms(join: PlainJoin) -> dict[str, Any]:
        """The join as join_plain.lua reads it (its last argument, as JSON)."""
        admission = join.admission
        blank = dataclasses.replace(
            admission,
            room=_PLAIN_BLANKS[0],
            identity=_PLAIN_BLANKS[1],
            name=_PLAIN_BLANKS[2],
            via=_PLAIN_BLANKS[4],
        )
        record = encode_record(blank, without=("revoked",))
        # The role is not text in the dataclass: cut where its JSON value stands.
        record = record.replace(json.dumps(admission.role.value), json.dumps(_PLAIN_BLANKS[3]), 1)
        pieces = [record]
        for placeholder in _PLAIN_BLANKS:
            head, cut, tail = pieces[-1].partition(json.dumps(placeholder))
            if not cut:
                raise ValueError("an admission's record without one of its fields")
            pieces[-1:] = [head, tail]
        return {
            "now": repr(join.now),
            "admission": admission.id,
            "expires_ms": str(_milliseconds(admission.expires_at)),
            "expires_s": repr(admission.expires_at),
            "record": pieces,
            "address": [
                [_RATE + charge.key, repr(1_000_000 / charge.rate_per_second), str(charge.burst)]
                for charge in join.address_charges
            ],
            "rates": [
                [repr(1_000_000 / per_second), str(burst)] for per_second, burst in join.rates
            ],
            "varied": sorted(join.varied_rooms),
            "pressure": False if join.pressure is None else list(join.pressure),
            "key": join.key,
            "room_fields": ROOM_FIELD_KINDS,
            "invite_fields": INVITE_FIELD_KINDS,
            "policy_fields": POLICY_FIELD_KINDS,
            "prefixes": {
                "admission": _ADMISSION,
                "ban": _BAN,
                "names": _NAMES,
                "rate": _RATE,
                "recent": _RECENT,
                "room_admissions": _ROOM_ADMISSIONS,
                "room_hosts": _ROOM_HOSTS,
                "room_invites": _ROOM_INVITES,
            },
        }

    def _plain_joined(
        self,
        join: PlainJoin,
        joined: LinkJoined,
        role: str,
        answer: list[Any],
    ) -> LinkJoined:
        """What join_plain.lua's answer after 'joined' (join_invite's, and the name) means for
        `joined`, the join as far as the answer's head tells."""
        match answer:
            case ["limited", int(retry_after_us), int(corrupt), *waits_us]:
                limits = self._rate_decision(0, retry_after_us, corrupt, waits_us)
                return dataclasses.replace(joined, limits=limits)
            case ["banned", int(corrupt)]:
                if corrupt:
                    self._corrupt(CorruptRecord(RecordKind.BAN))
                return dataclasses.replace(joined, banned=True)
            case ["invite", str(code)]:
                return dataclasses.replace(joined, invite_refusal=self._invite_refusal(code))
            case ["names", int(corrupt)]:
                self._names_corrupt(corrupt)
                return joined
            case ["ok", int(_index), int(_uses), int(corrupt), str(name)]:
                self._names_corrupt(corrupt)
                admission = dataclasses.replace(
                    join.admission,
                    room=joined.room,
                    identity=joined.identity,
                    name=json.loads(name),
                    role=Role(role),
                    via=f"invite:{joined.invite_id}",
                )
                return dataclasses.replace(joined, admission=admission)
            case _:
                raise StoreUnavailable()

    async def _link_found(
        self, link: LinkJoin, invite_id: str, fields: list[str | None]
    ) -> LinkFound | None:
        """What join_link.lua found: the invite, and the room its meeting is in now."""
        invite = self._invite_from_fields(fields[0:3])
        if invite is None or invite.token_hash != link.token_hash:
            return None
        self._remember_invite_id(link.token_hash, invite_id)
        read = list(zip(fields[3::2], fields[4::2], strict=True))
        name, stamp = invite.room, ""
        for step in range(link.max_moves + 1):
            if step < len(read) and read[step][0] == name:
                text = read[step][1]
                room = None if text is None else self._room(text)
                stamp = "" if text is None else _stamp(text)
            else:
                # Where the script could not tell the way on (a record it did not parse): a
                # stamp no record has, so a join through this link goes step by step.
                room, stamp = await self.get_room(name), ""
            if room is None or room.moved_to is None:
                break
            name = room.moved_to
        return None if room is None else LinkFound(invite, room, stamp)

    def _rate_decision(
        self, allowed: int, retry_after_us: int, corrupt: int, waits_us: Sequence[int]
    ) -> RateDecision:
        for _ in range(corrupt):
            self._corrupt(CorruptRecord(RecordKind.RATE))
        if allowed:
            return _ALLOWED
        return RateDecision(
            allowed=False,
            retry_after=retry_after_us / 1_000_000,
            waits=tuple(int(wait) / 1_000_000 for wait in waits_us),
        )

    def _join_keys_args(self, join: InviteJoin) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of join_invite (scripts/invite_join.lua) for `join`."""
        admission = join.admission
        claim = join.claim
        # The admission's record as add_admission stores it, cut where its name goes.
        placeholder = json.dumps("\0")
        record = admission_fields(dataclasses.replace(admission, name="\0"))["record"]
        before, after = record.split(placeholder)
        args: list[str | int] = [
            join.token_hash,
            repr(join.now),
            admission.id,
            _milliseconds(admission.expires_at),
            repr(admission.expires_at),
            _ADMISSION,
            claim.host_shape,
            int(claim.host),
            int(claim.first_yields_to_host),
            before,
            after,
        ]
        for charge in join.charges:
            args += [repr(1_000_000 / charge.rate_per_second), charge.burst]
        for shape, name in zip(claim.shapes, join.names, strict=True):
            args += [shape, json.dumps(name)]
        keys = [
            _INVITE + join.invite_id,
            f"{_BAN}{join.ban_scope}:{admission.identity}",
            _NAMES + admission.room,
            _ADMISSION + admission.id,
            _ROOM_ADMISSIONS + admission.room,
            *(_RATE + charge.key for charge in join.charges),
        ]
        return keys, args

    def _joined(self, join: InviteJoin, result: list[Any]) -> InviteJoined:
        """What join_invite's answer `result` means for `join`."""
        match result:
            case ["limited", int(retry_after_us), int(corrupt), *waits_us]:
                return InviteJoined(
                    limits=self._rate_decision(0, retry_after_us, corrupt, waits_us)
                )
            case ["banned", int(corrupt)]:
                if corrupt:
                    self._corrupt(CorruptRecord(RecordKind.BAN))
                raise AdmissionBanned()
            case ["invite", str(code)]:
                raise self._invite_refusal(code)
            case ["names", int(corrupt)]:
                self._names_corrupt(corrupt)
                return InviteJoined(limits=_ALLOWED)
            case ["ok", int(index), int(_uses), int(corrupt)]:
                self._names_corrupt(corrupt)
                named = dataclasses.replace(join.admission, name=join.names[index])
                return InviteJoined(limits=_ALLOWED, admission=named)
            case _:
                raise StoreUnavailable()

    def _names_corrupt(self, count: int) -> None:
        for _ in range(count):
            self._corrupt(CorruptRecord(RecordKind.NAME))

    def _invite_from_fields(self, fields: list[str | None]) -> Invite | None:
        """A stored invite; one that does not parse is as good as none (its link is unknown)."""
        record, uses, revoked = fields
        if record is None:
            return None
        try:
            return parse_invite(record, uses, revoked)
        except CorruptRecord as corrupt:
            self._corrupt(corrupt)
            return None

    # Admissions

    async def add_admission(self, admission: Admission) -> None:
        stored = admission_fields(admission)
        async with self._call():
            await self._add_admission(
                keys=[_ADMISSION + admission.id, _ROOM_ADMISSIONS + admission.room],
                args=[
                    stored["record"],
                    stored["revoked"],
                    _milliseconds(admission.expires_at),
                    admission.id,
                    repr(admission.expires_at),
                    repr(time.time()),
                ],
            )

    async def get_admission(self, admission_id: str) -> Admission | None:
        async with self._call():
            fields: list[str | None] = await self._client.hmget(
                _ADMISSION + admission_id, _ADMISSION_FIELDS
            )
        return self._admission_from_fields(fields)

    async def get_admissions(self, admission_ids: Sequence[str]) -> list[Admission | None]:
        if not admission_ids:
            return []
        async with self._call():
            pipe = self._client.pipeline(transaction=False)
            for admission_id in admission_ids:
                pipe.hmget(_ADMISSION + admission_id, _ADMISSION_FIELDS)
            rows: list[list[str | None]] = await pipe.execute()
        return [self._admission_from_fields(fields) for fields in rows]

    async def list_admissions(self, room: str) -> list[Admission]:
        room_key = _ROOM_ADMISSIONS + room
        async with self._call():
            # Ids of expired admissions are pruned here, as their keys expire by themselves.
            await self._client.zremrangebyscore(room_key, "-inf", time.time())
            admission_ids: list[str] = await self._client.zrange(room_key, 0, -1)
            pipe = self._client.pipeline(transaction=False)
            for admission_id in admission_ids:
                pipe.hmget(_ADMISSION + admission_id, _ADMISSION_FIELDS)
            rows: list[list[str | None]] = await pipe.execute()
        admissions = [
            a for fields in rows if (a := self._admission_from_fields(fields)) is not None
        ]
        return sorted(admissions, key=lambda admission: (admission.created_at, admission.id))

    async def revoke_admission(self, admission_id: str) -> bool:
        async with self._call():
            return bool(await self._revoke(keys=[_ADMISSION + admission_id]))

    async def move_admission(self, admission_id: str, room: str) -> Admission | None:
        key = _ADMISSION + admission_id
        while True:
            async with self._call():
                fields: list[str | None] = await self._client.hmget(key, _ADMISSION_FIELDS)
            record = fields[0]
            admission = self._admission_from_fields(fields)
            if record is None or admission is None or not admission.is_live(time.time()):
                return None
            moved = dataclasses.replace(admission, room=room)
            async with self._call():
                outcome: str = await self._move_admission(
                    keys=[key, _ROOM_ADMISSIONS + admission.room, _ROOM_ADMISSIONS + room],
                    args=[
                        record,
                        admission_fields(moved)["record"],
                        admission_id,
                        repr(admission.expires_at),
                        repr(time.time()),
                    ],
                )
            if outcome == "moved":
                return moved
            if outcome != "changed":
                return None
            # The record changed between the read and the script (another move): read it again.

    def _admission_from_fields(self, fields: list[str | None]) -> Admission | None:
        """A stored admission; one that does not parse is as good as none: nobody is admitted
        by it, and its sockets are cut."""
        record, revoked = fields
        if record is None:
            return None
        try:
            return parse_admission(record, revoked)
        except CorruptRecord as corrupt:
            self._corrupt(corrupt)
            return None

    # Names shown in a room

    async def claim_name(self, room: str, claim: NameClaim) -> int | None:
        async with self._call():
            index, corrupt = await self._claim_name(
                keys=[_NAMES + room],
                args=[
                    claim.holder,
                    _milliseconds(claim.expires_at),
                    _ADMISSION,
                    claim.host_shape,
                    int(claim.host),
                    int(claim.first_yields_to_host),
                    *claim.shapes,
                ],
            )
        for _ in range(int(corrupt)):
            self._corrupt(CorruptRecord(RecordKind.NAME))
        return None if int(index) < 0 else int(index)

    # Bans

    async def ban_identity(self, room: str, identity: str, until: float | None) -> None:
        key = f"{_BAN}{room}:{identity}"
        async with self._call():
            if until is None:
                await self._client.set(key, ban_value(None))
            elif until <= time.time():
                await self._client.delete(key)
            else:
                # The TTL only clears the key away; is_banned compares `until` with its `now`.
                await self._client.set(key, ban_value(until), pxat=_milliseconds(until))

    async def is_banned(self, room: str, identity: str, now: float) -> bool:
        async with self._call():
            until: str | None = await self._client.get(f"{_BAN}{room}:{identity}")
        return self._ban_holds(until, now)

    async def unban_identity(self, room: str, identity: str) -> bool:
        async with self._call():
            deleted: int = await self._client.delete(f"{_BAN}{room}:{identity}")
        return deleted > 0

    async def are_banned(self, bans: Sequence[tuple[str, str]], now: float) -> list[bool]:
        if not bans:
            return []
        async with self._call():
            pipe = self._client.pipeline(transaction=False)
            for room, identity in bans:
                pipe.get(f"{_BAN}{room}:{identity}")
            values: list[str | None] = await pipe.execute()
        return [self._ban_holds(until, now) for until in values]

    def _ban_holds(self, until: str | None, now: float) -> bool:
        if until is None:
            return False
        try:
            return parse_ban(until, now)
        except CorruptRecord as corrupt:
            # A ban that does not parse still bans: a refusal, never a way in.
            self._corrupt(corrupt)
            return True

    # Audit trail

    async def append_audit(self, entry: AuditEntry) -> None:
        keep = self._options.audit_retention_seconds
        async with self._call():
            await self._audit_trim(
                keys=[_AUDIT + entry.room],
                args=[
                    encode_audit(entry),
                    repr(entry.at - keep),
                    _AUDIT_KEEP,
                    _ttl_milliseconds(keep),
                    "tail",
                ],
            )

    async def purge_audit(self, room: str | None, before: float) -> int:
        keep = _ttl_milliseconds(self._options.audit_retention_seconds)
        dropped = 0
        async for keys in self._audit_keys(room):
            # A call a room: each within its own deadline, however many rooms there are.
            for key in keys:
                async with self._call():
                    trimmed = await self._audit_trim(
                        keys=[key], args=["", repr(before), _AUDIT_KEEP, keep, "all"]
                    )
                dropped += int(trimmed)
        return dropped

    async def _audit_keys(self, room: str | None) -> AsyncIterator[list[str]]:
        """The audit lists of `room`, or of every room a page of SCAN at a time: each page a
        call of its own, so a large keyspace is never walked within one deadline."""
        if room is not None:
            yield [_AUDIT + room]
            return
        cursor = 0
        while True:
            async with self._call():
                cursor, keys = await self._client.scan(cursor, match=_AUDIT + "*", count=_SCAN_PAGE)
            yield list(keys)
            if int(cursor) == 0:
                return

    async def compact(self) -> Compaction:
        async with self._call():
            try:
                persistence = await self._client.info("persistence")
                if str(persistence.get("aof_enabled")) != "1":
                    # BGREWRITEAOF would write the whole data set to a disk that had none of it.
                    return Compaction.NOTHING_ON_DISK
                await self._client.bgrewriteaof()
            except ResponseError:
                # Renamed away (`rename-command`), refused by an ACL, or one already running.
                return Compaction.REFUSED
        return Compaction.STARTED

    async def list_audit(self, room: str, limit: int = 100) -> list[AuditEntry]:
        # LRANGE counts a negative stop from the end: a limit of 0 would read the whole list.
        if limit <= 0:
            return []
        async with self._call():
            texts: list[str] = await self._client.lrange(_AUDIT + room, 0, limit - 1)
        # An entry past the retention is not shown, even before a write or a purge drops it.
        cutoff = time.time() - self._options.audit_retention_seconds
        entries = []
        for text in texts:
            try:
                entry = parse_audit(text)
            except CorruptRecord as corrupt:
                self._corrupt(corrupt)
                continue
            if entry.at >= cutoff:
                entries.append(entry)
        return entries

    # Rate limits and pressure

    async def rate_limit(self, key: str, rate_per_second: float, burst: int) -> RateDecision:
        return await self.charge_limits([LimitCharge(key, rate_per_second, burst)])

    async def charge_limits(self, charges: Sequence[LimitCharge]) -> RateDecision:
        if not charges:
            return RateDecision(allowed=True, retry_after=0.0)
        args: list[str | int] = []
        for charge in charges:
            args += [repr(1_000_000 / charge.rate_per_second), charge.burst]
        async with self._call():
            allowed, retry_after_us, corrupt, *waits_us = await self._charge_limits(
                keys=[_RATE + charge.key for charge in charges], args=args
            )
        for _ in range(int(corrupt)):
            self._corrupt(CorruptRecord(RecordKind.RATE))
        return RateDecision(
            allowed=bool(allowed),
            retry_after=int(retry_after_us) / 1_000_000,
            waits=tuple(int(wait) / 1_000_000 for wait in waits_us),
        )

    async def count_recent(self, key: str, window_seconds: int, amount: int = 1) -> int:
        if amount < 1:
            raise ValueError("amount must be at least 1")
        return await self._recent(key, window_seconds, add=amount)

    async def read_recent(self, key: str, window_seconds: int) -> int:
        return await self._recent(key, window_seconds, add=0)

    async def _recent(self, key: str, window_seconds: int, *, add: int) -> int:
        if window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        async with self._call():
            count, corrupt = await self._count_recent(
                keys=[f"{_RECENT}{window_seconds}:{key}"], args=[window_seconds, add]
            )
        if corrupt:
            self._corrupt(CorruptRecord(RecordKind.PRESSURE))
        return int(count)

    async def claim_once(self, key: str, ttl_seconds: float) -> bool:
        async with self._call():
            claimed = await self._client.set(
                _ONCE + key, "1", nx=True, px=_ttl_milliseconds(ttl_seconds)
            )
        return bool(claimed)

    async def day_key(self, day: int, *, create: bool) -> str | None:
        return await self._day_keys.key(day, create=create)

    def held_day_key(self, day: int) -> str | None:
        return self._day_keys.held(day)

    # Short-lived values

    async def put_value(self, key: str, value: str, ttl_seconds: float) -> None:
        px = _ttl_milliseconds(ttl_seconds)
        async with self._call():
            await self._client.set(_VALUE + key, value, px=px)

    async def get_value(self, key: str) -> str | None:
        async with self._call():
            value: str | None = await self._client.get(_VALUE + key)
        return value

    async def get_values(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        async with self._call():
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.get(_VALUE + key)
            values: list[str | None] = await pipe.execute()
        return values

    async def take_value(self, key: str) -> str | None:
        async with self._call():
            value: str | None = await self._client.getdel(_VALUE + key)
        return value

    async def delete_value(self, key: str) -> bool:
        async with self._call():
            return bool(await self._client.delete(_VALUE + key))

    async def bump_value(self, key: str, ttl_seconds: float) -> int:
        px = _ttl_milliseconds(ttl_seconds)
        async with self._call():
            count = await self._bump_value(keys=[_COUNTER + key], args=[px])
        return int(count)

    # Expiring indexes

    async def index_add(self, index: str, member: str, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        ttl_us = max(1, math.ceil(ttl_seconds * 1_000_000))
        async with self._call():
            await self._index(keys=[_INDEX + index], args=["add", member, ttl_us])

    async def index_members(self, index: str) -> list[str]:
        async with self._call():
            members: list[str] = await self._index(keys=[_INDEX + index], args=["members"])
        return members

    async def index_remove(self, index: str, member: str) -> bool:
        async with self._call():
            return bool(await self._index(keys=[_INDEX + index], args=["remove", member]))

    async def index_size(self, index: str) -> int:
        async with self._call():
            size = await self._index(keys=[_INDEX + index], args=["size"])
        return int(size)

    # Pub/sub

    async def publish(self, channel: str, message: str) -> None:
        # This replica's own subscriptions to the channel must see the message.
        # Bounded: a subscription Redis never confirms (a stalled connection) must not hold the
        # message back; its own sweep makes up for what it misses.
        for subscription in [s for s in self._subscriptions if s.channel == channel]:
            with suppress(StoreUnavailable, TimeoutError):
                async with asyncio.timeout(self._options.deadline_seconds):
                    await subscription.ready()
        async with self._call():
            await self._client.publish(_CHANNEL + channel, message)

    def subscribe(self, channel: str) -> RedisSubscription:
        """Subscribe to `channel` at once; see `RedisSubscription` for what is delivered."""
        return RedisSubscription(self._client.pubsub(), channel, self._subscriptions)
