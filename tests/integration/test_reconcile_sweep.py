"""One reconciliation sweep against each store backend (memory, a real redis-server): which
admissions' connections it cuts, which it leaves, and what a store that cannot answer does.

The connections are stand-ins that record their close; the gate's own sockets are exercised
through real replicas in test_reconcile.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError, StoreUnavailable
from gateway.metrics import Metrics
from gateway.proxy.leases import LEASE_PREFIX, REPLACED
from gateway.proxy.reconcile import Reconciler
from gateway.proxy.registry import ConnectionRegistry
from gateway.settings import load_settings
from gateway.store import Admission, Role, Room, RoomPolicy, Store
from gateway.store.records import RecordKind
from tests.contract.test_store_faults import write_raw

HOUR = 3600.0


class Connection:
    def __init__(self, *, signalling: bool = True) -> None:
        self._signalling = signalling
        self.closed: str | None = None

    @property
    def signalling(self) -> bool:
        return self._signalling

    async def close(self, reason: str) -> None:
        self.closed = reason


class Background:
    """The gate's background closes, awaited here so a test sees their outcome."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def __call__(self, work: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.create_task(work))

    async def settle(self) -> None:
        await asyncio.gather(*self.tasks)


@dataclasses.dataclass
class Replica:
    registry: ConnectionRegistry
    reconciler: Reconciler
    background: Background
    metrics: Metrics

    async def sweep(self) -> Any:
        result = await self.reconciler.sweep()
        await self.background.settle()
        return result


def replica(store: Store) -> Replica:
    registry = ConnectionRegistry()
    background = Background()
    metrics = Metrics()
    reconciler = Reconciler(store, registry, metrics, background, interval_seconds=5)
    return Replica(registry, reconciler, background, metrics)


async def make_room(store: Store) -> Room:
    room = Room(
        name=f"room-{secrets.token_hex(4)}",
        title="",
        created_at=time.time(),
        hosts=(),
        policy=RoomPolicy(invite=True),
    )
    await store.create_room(room)
    return room


async def admitted(store: Store, room: Room, **changes: Any) -> Admission:
    now = time.time()
    admission = Admission(
        id=secrets.token_hex(32),
        room=room.name,
        identity=f"who-{secrets.token_hex(4)}",
        name="Grace Hopper",
        role=Role.ATTENDEE,
        via="invite",
        created_at=now,
        expires_at=now + HOUR,
    )
    admission = dataclasses.replace(admission, **changes)
    await store.add_admission(admission)
    return admission


async def test_live_admissions_keep_their_connections(store: Store) -> None:
    here = replica(store)
    room = await make_room(store)
    admission = await admitted(store, room)
    page, socket = Connection(signalling=False), Connection()
    here.registry.register(admission.id, page)
    here.registry.register(admission.id, socket)
    result = await here.sweep()
    assert (result.checked, result.cut, result.unanswered) == (1, 0, 0)
    assert page.closed is None and socket.closed is None
    assert here.registry.count(admission.id) == 2


async def test_revoked_expired_vanished_banned_and_roomless_admissions_are_cut(
    store: Store,
) -> None:
    here = replica(store)
    room = await make_room(store)
    gone_room = await make_room(store)
    revoked = await admitted(store, room)
    await store.revoke_admission(revoked.id)
    # Expired: the memory store keeps the record, Redis's key has ended with it.
    expired = await admitted(store, room, expires_at=time.time() - 1)
    vanished_id = secrets.token_hex(32)
    banned = await admitted(store, room)
    await store.ban_identity(room.ban_scope, banned.identity, None)
    roomless = await admitted(store, gone_room)
    await store.delete_room(gone_room.name, time.time())
    live = await admitted(store, room)
    connections = {
        name: Connection()
        for name in ("revoked", "expired", "vanished", "banned", "roomless", "live")
    }
    ids = {
        "revoked": revoked.id,
        "expired": expired.id,
        "vanished": vanished_id,
        "banned": banned.id,
        "roomless": roomless.id,
        "live": live.id,
    }
    for name, connection in connections.items():
        here.registry.register(ids[name], connection)
    result = await here.sweep()
    assert result.cut == 5 and result.unanswered == 0
    assert connections["live"].closed is None
    assert connections["revoked"].closed == "revoked"
    assert connections["banned"].closed == "banned"
    # A deleted room revokes its admissions; either way they go.
    assert connections["roomless"].closed in ("revoked", "room deleted")
    assert connections["expired"].closed in ("expired", "ended")
    assert connections["vanished"].closed == "ended"
    assert here.registry.admission_ids() == [live.id]
    assert here.metrics.revocations.value(reason="reconciled: banned") == 1


async def test_a_record_that_does_not_parse_counts_as_revoked(store: Store) -> None:
    here = replica(store)
    room = await make_room(store)
    admission = await admitted(store, room)
    connection = Connection()
    here.registry.register(admission.id, connection)
    await write_raw(store, RecordKind.ADMISSION, admission.id, {"revoked": "maybe"})
    await here.sweep()
    assert connection.closed == "ended"


class Unanswering:
    """A store whose reads of one kind fail as an unreachable store's do."""

    def __init__(self, store: Store, failing: str) -> None:
        self._store = store
        self._failing = failing

    def __getattr__(self, name: str) -> Any:
        if name == self._failing:

            async def unavailable(*_: Any, **__: Any) -> Any:
                raise StoreUnavailable()

            return unavailable
        return getattr(self._store, name)


@pytest.mark.parametrize("failing", ["get_admissions", "get_room", "are_banned", "get_values"])
async def test_a_store_that_cannot_answer_cuts_nobody_and_is_asked_again_soon(
    store: Store, failing: str
) -> None:
    room = await make_room(store)
    admissions = [await admitted(store, room) for _ in range(3)]
    revoked = await admitted(store, room)
    await store.revoke_admission(revoked.id)
    here = replica(Unanswering(store, failing))  # type: ignore[arg-type]  # a Store by delegation
    connections = [Connection() for _ in admissions]
    for admission, connection in zip(admissions, connections, strict=True):
        here.registry.register(admission.id, connection)
        slot = here.registry.signalling(admission.id)
        assert slot is not None
        slot.claimed = True  # the lease is read, not written, by this sweep
    result = await here.sweep()
    assert all(c.closed is None for c in connections)
    assert result.unanswered == 3
    assert here.reconciler.next_wait() < here.reconciler.interval_seconds
    # The store answers again: the next sweep checks them all.
    healthy = replica(store)
    for admission, connection in zip(admissions, connections, strict=True):
        healthy.registry.register(admission.id, connection)
    assert (await healthy.sweep()).unanswered == 0
    assert healthy.reconciler.next_wait() == healthy.reconciler.interval_seconds


async def test_the_newer_signalling_session_holds_the_lease(store: Store) -> None:
    """Two replicas, one admission: the newer connection's claim closes the older's (by its
    published cut, and by the sweep when that message is lost)."""
    room = await make_room(store)
    admission = await admitted(store, room)
    first, second = replica(store), replica(store)
    older, newer = Connection(), Connection()
    first.registry.register(admission.id, older)
    older_slot = first.registry.signalling(admission.id)
    assert older_slot is not None
    await first.reconciler.claim(admission, older_slot)
    second.registry.register(admission.id, newer)
    newer_slot = second.registry.signalling(admission.id)
    assert newer_slot is not None
    await second.reconciler.claim(admission, newer_slot)
    # The cut message is not delivered here: the sweep finds the lease is another's.
    await first.sweep()
    await second.sweep()
    assert older.closed == REPLACED
    assert newer.closed is None
    assert first.registry.signalling(admission.id) is None
    # A claim that comes late (held up by an outage) does not displace the newer holder.
    await first.reconciler.claim(admission, older_slot)
    stored = await store.get_value(LEASE_PREFIX + admission.id)
    assert stored is not None and stored.endswith(newer_slot.holder)


async def test_a_bosh_session_seen_by_two_replicas_is_one_holder(store: Store) -> None:
    room = await make_room(store)
    admission = await admitted(store, room)
    first, second = replica(store), replica(store)
    sessions = Connection(), Connection()
    for here, session in zip((first, second), sessions, strict=True):
        here.registry.register(admission.id, session, holder="bosh:the-sid")
        slot = here.registry.signalling(admission.id)
        assert slot is not None
        await here.reconciler.claim(admission, slot)
    await first.sweep()
    await second.sweep()
    assert all(session.closed is None for session in sessions)


async def test_a_lease_that_does_not_parse_is_a_refusal(store: Store) -> None:
    room = await make_room(store)
    admission = await admitted(store, room)
    here = replica(store)
    connection = Connection()
    here.registry.register(admission.id, connection)
    slot = here.registry.signalling(admission.id)
    assert slot is not None
    await here.reconciler.claim(admission, slot)
    await store.put_value(LEASE_PREFIX + admission.id, "not a lease", 60)
    await here.sweep()
    assert connection.closed == REPLACED


def test_reconcile_seconds_is_validated(tmp_path: Path) -> None:
    config = tmp_path / "meetgate.toml"
    config.write_text(
        f"""
[admin]
token = "{"t" * 40}"
[tickets]
[[tickets.keys]]
secret = "{"s" * 48}"
[admission]
pseudonym_key = "{"s" * 48}"
[revocation]
reconcile_seconds = 0
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"\[revocation\] reconcile_seconds"):
        load_settings(config, environ={})
    assert load_settings(environ={}).revocation.reconcile_seconds <= 5
