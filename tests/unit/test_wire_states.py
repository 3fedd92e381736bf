"""The guards a replica keeps, one per admission (gateway/proxy/guarded.py WireStates): a session
that comes back finds its budgets and strikes; guards are forgotten once idle, never while a
session uses them; strikes reach the store for another replica to start from."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.metrics import Metrics
from gateway.proxy import guarded
from gateway.proxy.guarded import GuardedWire, WireStates, addresses_for, budgets_from
from gateway.proxy.room_rules import RoomRules
from gateway.proxy.wire_guard import EndStream, Refuse, Speaker, WireGuard
from gateway.settings import GuardSettings
from gateway.store.memory import MemoryStore
from gateway.store.records import Admission, Role

GUARD = GuardSettings(strikes=3)
DOMAIN = "meet.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def an_admission(admission_id: str = "a1", room: str = "standup") -> Admission:
    return Admission(
        id=admission_id,
        room=room,
        identity="id-" + admission_id,
        name="Mallory",
        role=Role.ATTENDEE,
        via="invite",
        created_at=0.0,
        expires_at=1e12,
    )


def a_wire(
    store: MemoryStore, rules: RoomRules, admission: Admission, removed: list[str]
) -> GuardedWire:
    room = admission.room
    guard = WireGuard(
        Speaker(admission.id, room, admission.name, False),
        addresses_for(DOMAIN, GUARD),
        budgets_from(GUARD),
        lambda: rules.rules(room),
        lambda: rules.hosts(room),
    )
    return GuardedWire(
        guard,
        admission,
        rules=rules,
        store=store,
        metrics=Metrics(),
        remove=lambda a, reason: removed.append(reason),
    )


def elsewhere(n: int) -> str:
    return (
        f"<message xmlns='jabber:client' to='other@conference.{DOMAIN}' id='m{n}'>"
        "<body>x</body></message>"
    )


async def test_a_returning_admission_finds_its_guard_and_another_room_does_not() -> None:
    store = MemoryStore()
    rules = RoomRules(store, GUARD)
    states = WireStates(rules)
    admission = an_admission()
    wire = a_wire(store, rules, admission, [])
    states.keep(wire)
    assert states.find(admission) is wire
    assert states.find(an_admission("a2")) is None
    moved = an_admission(room="elsewhere")
    assert states.find(moved) is None


async def test_idle_guards_are_forgotten_but_never_one_in_use() -> None:
    store = MemoryStore()
    clock = Clock()
    rules = RoomRules(store, GUARD, clock=clock)
    states = WireStates(rules, clock=clock)
    busy, idle = an_admission("busy"), an_admission("idle")
    busy_wire, idle_wire = a_wire(store, rules, busy, []), a_wire(store, rules, idle, [])
    states.keep(busy_wire)
    states.keep(idle_wire)
    busy_wire.sessions = 1
    clock.now += guarded.IDLE_SECONDS + 1
    states.keep(a_wire(store, rules, an_admission("new"), []))
    assert states.find(busy) is busy_wire
    assert states.find(idle) is None
    assert len(states) == 2


async def test_strikes_add_up_in_the_store_across_guards() -> None:
    """Two replicas' guards of one admission (or a guard forgotten and made again): each
    refusal is one increment of the store's count, so the threshold holds for their sum."""
    store = MemoryStore()
    rules = RoomRules(store, GUARD)
    await rules.load("standup")
    admission = an_admission()
    removed: list[str] = []
    here, there = a_wire(store, rules, admission, removed), a_wire(store, rules, admission, removed)
    for n, wire in enumerate((here, there, here)):
        assert isinstance(wire.judge(elsewhere(n), 0.0), Refuse)
        for _ in range(10):
            await asyncio.sleep(0)
    # Each guard refused at most two (under the threshold of 3); together three.
    assert removed == ["address"]
    assert await store.bump_value(guarded.STRIKES_KEY + admission.id, 60) == 4


def test_refusals_are_logged_as_counts_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = guarded.RefusalLog(clock)
    with caplog.at_level(logging.INFO, logger="meetgate.guard"):
        for _ in range(50):
            refusals.refused("rate")
        refusals.refused("quiet")
        assert not caplog.records
        clock.now += guarded.REFUSAL_LOG_SECONDS
        refusals.refused("rate")
    assert [r.getMessage() for r in caplog.records] == [
        "wire guard: stanzas refused in the last 60 s: quiet 1, rate 51"
    ]


def test_a_session_ended_for_malformed_input_is_logged_with_its_condition_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    rules = RoomRules(store, GUARD)
    wire = a_wire(store, rules, an_admission(), [])
    with caplog.at_level(logging.INFO, logger="meetgate.guard"):
        verdict = wire.judge("<message xmlns='jabber:client'><body>secret words</message>", 0.0)
    assert isinstance(verdict, EndStream) and verdict.reason == "not-well-formed"
    assert [r.getMessage() for r in caplog.records] == [
        "wire guard: a session ended for input no client sends (not-well-formed)"
    ]
    assert "secret" not in caplog.text and "Mallory" not in caplog.text
