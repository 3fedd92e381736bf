"""The room rules cache on the memory store: a room's settings over the gate's defaults, re-read
when old (injected clock) or when told, hosts shared between replicas, a silent store never
raising, rooms nobody uses forgotten; and the RulesChanged message beside Cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from gateway.cuts import CUTS, Cut, RulesChanged
from gateway.errors import InvalidInput, NotHost, StoreUnavailable
from gateway.host.actions import HostDesk
from gateway.proxy import room_rules
from gateway.proxy.room_rules import RoomRules, chat_rules
from gateway.proxy.wire_guard import Budget, ChatRules
from gateway.settings import GuardSettings
from gateway.store.memory import MemoryStore
from gateway.store.records import Admission, ChatLimits, Role, Room

GUARD = GuardSettings(chat_per_10s=5, chat_burst=10, chat_max_bytes=2048, strikes=30)
DEFAULTS = ChatRules(
    quiet=False,
    private_to_hosts_when_quiet=True,
    chat=Budget(rate=0.5, burst=10),
    chat_max_bytes=2048,
    strikes=30,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyStore(MemoryStore):
    """A memory store that can stop answering."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.reads = 0

    async def get_room(self, name: str) -> Room | None:
        self.reads += 1
        if self.down:
            raise StoreUnavailable()
        return await super().get_room(name)

    async def index_add(self, index: str, member: str, ttl_seconds: float) -> None:
        if self.down:
            raise StoreUnavailable()
        await super().index_add(index, member, ttl_seconds)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def settle() -> None:
    # Let the background re-reads started so far finish (the memory store answers at once).
    for _ in range(10):
        await asyncio.sleep(0)


def a_room(name: str = "standup", **changes: Any) -> Room:
    return Room(name=name, title="Stand-up", created_at=1.0, **changes)


def test_a_rooms_settings_stand_over_the_gates_and_zero_is_the_gates() -> None:
    assert chat_rules(None, GUARD) == DEFAULTS
    assert chat_rules(a_room(), GUARD) == DEFAULTS
    own = a_room(
        quiet=True,
        quiet_private_to_hosts=False,
        chat_per_10s=20,
        chat_burst=3,
        chat_max_bytes=100,
        guard_strikes=0,
    )
    assert chat_rules(own, GUARD) == ChatRules(
        quiet=True,
        private_to_hosts_when_quiet=False,
        chat=Budget(rate=2.0, burst=3),
        chat_max_bytes=100,
        strikes=0,
    )
    assert chat_rules(a_room(guard_strikes=4), GUARD).strikes == 4


async def test_a_loaded_room_has_its_rules_and_an_unknown_one_the_gates() -> None:
    store = MemoryStore()
    await store.create_room(a_room(quiet=True, chat_burst=2))
    rules = RoomRules(store, GUARD, clock=Clock())
    await rules.load("standup")
    assert rules.rules("standup") == replace(DEFAULTS, quiet=True, chat=Budget(0.5, 2))
    await rules.load("nowhere")
    assert rules.rules("nowhere") == DEFAULTS
    assert rules.hosts("standup") == frozenset()


async def test_rules_are_reread_in_the_background_once_old() -> None:
    store = FlakyStore()
    await store.create_room(a_room())
    clock = Clock()
    rules = RoomRules(store, GUARD, clock=clock)
    await rules.load("standup")
    await store.change_room("standup", lambda room: replace(room, quiet=True))
    clock.now += room_rules.MAX_AGE_SECONDS - 0.1
    reads = store.reads
    assert not rules.rules("standup").quiet
    await settle()
    assert store.reads == reads and not rules.rules("standup").quiet
    clock.now += 0.1
    # The old rules answer at once; one re-read is started however often they are asked for.
    assert not rules.rules("standup").quiet
    assert not rules.rules("standup").quiet
    await eventually(lambda: rules.rules("standup").quiet)
    assert store.reads == reads + 1


async def test_a_change_is_read_at_once_when_told() -> None:
    store = FlakyStore()
    await store.create_room(a_room())
    rules = RoomRules(store, GUARD, clock=Clock())
    await rules.load("standup")
    await store.change_room("standup", lambda room: replace(room, quiet=True, chat_per_10s=1))
    rules.changed("standup")
    await eventually(lambda: rules.rules("standup").quiet)
    assert rules.rules("standup").chat == Budget(0.1, 10)
    # A room no session here uses is not read.
    reads = store.reads
    rules.changed("elsewhere")
    await settle()
    assert len(rules) == 1
    assert store.reads == reads


async def test_a_host_noted_on_one_replica_is_known_to_another_at_once() -> None:
    store = MemoryStore()
    await store.create_room(a_room())
    here = RoomRules(store, GUARD, clock=Clock())
    there = RoomRules(store, GUARD, clock=Clock())
    await here.load("standup")
    await there.load("standup")
    subscription = store.subscribe(CUTS)
    await subscription.ready()
    jid = "standup@conference.meet.example/abcd1234"
    await here.note_host("standup", jid)
    assert here.hosts("standup") == {jid}
    message = await asyncio.wait_for(subscription.__anext__(), 5)
    assert RulesChanged.decode(message) == RulesChanged("standup")
    assert Cut.decode(message) is None
    there.changed("standup")
    await eventually(lambda: there.hosts("standup") == {jid})
    await subscription.aclose()


async def test_a_silent_store_leaves_the_last_rules_and_never_raises() -> None:
    store = FlakyStore()
    await store.create_room(a_room(quiet=True))
    clock = Clock()
    rules = RoomRules(store, GUARD, clock=clock)
    store.down = True
    await rules.load("standup")
    assert rules.rules("standup") == DEFAULTS
    store.down = False
    await rules.load("standup")
    assert rules.rules("standup").quiet
    store.down = True
    await rules.load("standup")
    rules.changed("standup")
    clock.now += room_rules.MAX_AGE_SECONDS
    assert rules.rules("standup").quiet
    await settle()
    assert rules.rules("standup").quiet
    # A failed re-read is not tried again at every stanza, only once the rules are old again.
    reads = store.reads
    for _ in range(5):
        rules.rules("standup")
    await settle()
    assert store.reads == reads
    await rules.note_host("standup", "standup@conference.meet.example/host")
    assert rules.hosts("standup") == {"standup@conference.meet.example/host"}


async def test_rooms_nobody_asks_about_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    clock = Clock()
    rules = RoomRules(store, GUARD, clock=clock)
    await rules.load("a")
    await rules.load("b")
    clock.now += room_rules.IDLE_SECONDS / 2
    rules.rules("b")
    clock.now += room_rules.IDLE_SECONDS / 2
    rules.rules("b")
    # "a" idle for IDLE_SECONDS; "b" loaded as long ago, but asked about since: asking keeps it.
    assert len(rules) == 1
    assert list(rules._rooms) == ["b"]
    monkeypatch.setattr(room_rules, "MAX_ROOMS", 3)
    for name in ("c", "d", "e", "f"):
        await rules.load(name)
    assert len(rules) == 3
    await settle()
    await rules.aclose()


def test_the_rules_message_and_a_cut_are_told_apart() -> None:
    assert RulesChanged.decode(RulesChanged("r").encode()) == RulesChanged("r")
    assert RulesChanged.decode(Cut("id", "revoked").encode()) is None
    assert Cut.decode(Cut("id", "revoked").encode()) == Cut("id", "revoked")
    for raw in ("", "[]", "5", '"rules"', '{"rules": 5}', "{"):
        assert RulesChanged.decode(raw) is None
        assert Cut.decode(raw) is None


async def test_a_host_s_switches_reach_the_rules_of_every_gate_at_once() -> None:
    """HostDesk's quiet switch, chat limits and lockdown each publish a RulesChanged, and a
    gate told of it applies the room's new rules to the next stanza."""
    store = MemoryStore()
    await store.create_room(a_room())
    now = time.time()
    host = Admission(
        id="h" * 64,
        room="standup",
        identity="hid",
        name="Hilde",
        role=Role.HOST,
        via="invite",
        created_at=now,
        expires_at=now + 3600,
    )
    desk = HostDesk(store)
    rules = RoomRules(store, GUARD, clock=Clock())
    await rules.load("standup")
    subscription = store.subscribe(CUTS)
    await subscription.ready()

    async def told() -> None:
        message = await asyncio.wait_for(subscription.__anext__(), 5)
        change = RulesChanged.decode(message)
        assert change == RulesChanged("standup")
        rules.changed(change.room)

    await desk.set_quiet(host, "standup", True, now)
    await told()
    await eventually(lambda: rules.rules("standup").quiet)
    await desk.set_chat_limits(host, "standup", ChatLimits(per_10s=1, strikes=0), now)
    await told()
    await eventually(lambda: rules.rules("standup").strikes == 0)
    assert rules.rules("standup").chat == Budget(0.1, 10)
    same = ChatLimits(per_10s=1, strikes=0)
    assert await desk.set_chat_limits(host, "standup", same, now) is None
    await desk.set_quiet(host, "standup", False, now)
    await told()
    await eventually(lambda: not rules.rules("standup").quiet)
    await desk.lockdown(host, "standup", now)
    await told()
    await eventually(lambda: rules.rules("standup").quiet)
    actions = [entry.action for entry in await store.list_audit("standup")]
    assert actions == ["lockdown", "quiet off", "change chat limits", "quiet on"]
    for wrong in (
        ChatLimits(per_10s=10_001),
        ChatLimits(burst=-1),
        ChatLimits(max_bytes=63),
        ChatLimits(max_bytes=1024 * 1024 + 1),
        ChatLimits(strikes=-1),
    ):
        with pytest.raises(InvalidInput):
            await desk.set_chat_limits(host, "standup", wrong, now)
    attendee = replace(host, id="a" * 64, role=Role.ATTENDEE)
    with pytest.raises(NotHost):
        await desk.set_quiet(attendee, "standup", False, now)
    await subscription.aclose()


async def test_a_held_room_is_never_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """A room forgotten would read as the gate's defaults (not quiet) until read again: a room
    a guard holds stays, however long its sessions are silent, and goes once released."""
    store = MemoryStore()
    await store.create_room(a_room("hushed", quiet=True))
    clock = Clock()
    rules = RoomRules(store, GUARD, clock=clock)
    await rules.load("hushed")
    rules.hold("hushed")
    monkeypatch.setattr(room_rules, "MAX_ROOMS", 2)
    clock.now += 2 * room_rules.IDLE_SECONDS
    for name in ("a", "b", "c"):
        await rules.load(name)
    await store.delete_room("hushed", clock.now)  # no re-read could bring "quiet" back
    assert rules.rules("hushed").quiet
    rules.release("hushed")
    clock.now += 2 * room_rules.IDLE_SECONDS
    await rules.load("d")
    assert "hushed" not in rules._rooms
    await settle()
    await rules.aclose()
