"""The evidence recorder over memory chains: records are appended in order, values no entry may
hold never fail the caller but leave a counted gap, and a stop drains what is queued."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.evidence.entries import Kind, Record
from gateway.evidence.export import verify_export
from gateway.evidence.log import EvidenceLog, SigningPolicy
from gateway.evidence.memory import MemoryChains
from gateway.evidence.pseudonyms import Pseudonyms
from gateway.evidence.recorder import EvidenceRecorder
from gateway.metrics import Metrics

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PSEUDONYMS = Pseudonyms(b"evidence tests' pseudonym key, 32+ bytes")
HOST = PSEUDONYMS.host("board", "identity of a host")


async def test_records_are_appended_in_order_at_the_stop() -> None:
    chains = MemoryChains()
    recorder = EvidenceRecorder(EvidenceLog(chains, KEY), PSEUDONYMS)
    await recorder.start()
    kinds = [Kind.LOCK, Kind.QUIET_ON, Kind.UNLOCK, Kind.QUIET_OFF] * 5
    for kind in kinds:
        recorder.record("board", Record(kind, {"actor": HOST}))
    await recorder.aclose()
    assert [e.kind for e in await chains.entries("board")] == kinds


async def test_values_no_entry_may_hold_leave_a_counted_gap() -> None:
    chains = MemoryChains()
    metrics = Metrics()
    log = EvidenceLog(chains, KEY)
    recorder = EvidenceRecorder(log, PSEUDONYMS, metrics)
    target = PSEUDONYMS.admission("board", "admission")
    # A shown name with a control character, an unknown value, a chain that is no room's.
    recorder.note("board", Kind.REMOVAL, {"actor": HOST, "target": target, "name": "a\x1bb"})
    recorder.note("board", Kind.LOCK, {"actor": HOST, "email": "x@example.org"})
    recorder.note("../etc", Kind.LOCK, {"actor": HOST})
    recorder.note("board", Kind.REMOVAL, {"actor": HOST, "target": target, "name": "Troll"})
    await recorder.flush()
    board = await chains.entries("board")
    assert [e.kind for e in board] == [Kind.REMOVAL, Kind.EVIDENCE_LOST]
    assert board[0].fields["name"] == "Troll"
    assert board[1].fields == {"count": 2, "reason": "unrecordable"}
    gate = await chains.entries("_gate")
    assert [e.fields for e in gate] == [{"count": 1, "reason": "unrecordable"}]
    assert metrics.evidence_dropped.value(reason="unrecordable") == 3
    assert verify_export(await log.export("board")).valid


async def test_a_full_queue_drops_and_says_so_after_what_came_before() -> None:
    chains = MemoryChains()
    recorder = EvidenceRecorder(EvidenceLog(chains, KEY), PSEUDONYMS, bound=3)
    for _ in range(5):
        recorder.record("board", Record(Kind.LOCK, {"actor": HOST}))
    assert recorder.queued == 3
    await recorder.flush()
    board = await chains.entries("board")
    assert [e.kind for e in board] == [Kind.LOCK] * 3 + [Kind.EVIDENCE_LOST]
    assert board[-1].fields == {"count": 2, "reason": "queue-full"}


async def test_due_heads_are_signed_on_schedule() -> None:
    chains = MemoryChains()
    now = [1_796_000_000.0]
    log = EvidenceLog(chains, KEY, SigningPolicy(every=100, seconds=60), clock=lambda: now[0])
    recorder = EvidenceRecorder(log, PSEUDONYMS)
    await recorder.start()
    try:
        recorder.record("board", Record(Kind.LOCK, {"actor": HOST}))
        await poll(lambda: chains.entries("board"), "the entry")
        assert await chains.signatures("board") == []
        now[0] += 60
        await poll(lambda: chains.signatures("board"), "the head signed")
    finally:
        await recorder.aclose()
    assert [s.seq for s in await chains.signatures("board")] == [1]


async def poll(check: Callable[[], Awaitable[list[Any]]], what: str) -> None:
    deadline = time.monotonic() + 10
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_flood_from_many_networks_is_a_bounded_minute_and_never_crowds_out_a_ban() -> None:
    chains = MemoryChains()
    log = EvidenceLog(chains, KEY)
    metrics = Metrics()
    recorder = EvidenceRecorder(log, PSEUDONYMS, metrics, bound=10)
    target = PSEUDONYMS.admission("board", "admission of a troll")
    # 5,000 networks, two of them louder than the rest.
    for _ in range(50):
        recorder.refused_join("board", "loudest")
        recorder.refused_join("board", "network 7")
    for n in range(5_000):
        recorder.refused_join("board", f"network {n}")
    # The minute's flush fills the attackers' queue past its bound of 10 ...
    # (the minute ending while the store is away: the queue holds it, unappended)
    recorder._flush_tallies(everything=True)
    recorder.note("board", Kind.BAN, {"actor": HOST, "target": target, "until": None})
    await recorder.flush()
    board = await chains.entries("board")
    kinds = [e.kind for e in board]
    # ... and the ban is kept all the same, before the floods.
    assert kinds[0] == Kind.BAN
    floods = [e for e in board if e.kind == Kind.FLOOD_REFUSED]
    assert [e.fields["count"] for e in floods[:3]] == [51, 50, 1]
    assert len(floods) + kinds.count(Kind.FLOOD_OTHERS) <= 10
    lost = [e.fields for e in board if e.kind == Kind.EVIDENCE_LOST]
    assert lost == [{"count": 11, "reason": "queue-full"}]
    # With room in the queue, a minute is at most 21 entries and counts every attempt; a room
    # flooded past its own bound of networks does not take the other rooms' share.
    recorder = EvidenceRecorder(log, PSEUDONYMS, metrics)
    for n in range(5_000):
        recorder.refused_join("flooded", f"network {n}")
    recorder.refused_join("quiet-room", "one network")
    await recorder.flush()
    flooded = await chains.entries("flooded")
    assert [e.kind for e in flooded] == [Kind.FLOOD_REFUSED] * 20 + [Kind.FLOOD_OTHERS]
    others = flooded[-1].fields
    # The room's bound of networks told apart (1,000): 980 of them beyond the 20 named, the
    # other 4,000 attempts counted but not as networks.
    assert others["networks"] == 980 and others["count"] == 4_980
    assert sum(int(str(e.fields["count"])) for e in flooded) == 5_000
    assert [e.kind for e in await chains.entries("quiet-room")] == [Kind.FLOOD_REFUSED]
    assert verify_export(await log.export("flooded")).valid


async def test_refused_names_are_counted_per_network_and_minute() -> None:
    chains = MemoryChains()
    log = EvidenceLog(chains, KEY)
    recorder = EvidenceRecorder(log, PSEUDONYMS)
    for _ in range(500):
        recorder.refused_name("board", "a network", "looks-like-a-host")
    recorder.refused_name("board", "a network", "too-many-look-alikes")
    recorder.refused_name("board", "another network", "looks-like-a-host")
    recorder.refused_name("../x", "a network", "looks-like-a-host")
    await recorder.flush()
    board = [dict(e.fields) for e in await chains.entries("board")]
    counts = sorted((f["reason"], f["count"]) for f in board)
    # One entry a network, reason and minute, with the count: 500 tries are one entry.
    assert counts == [
        ("looks-like-a-host", 1),
        ("looks-like-a-host", 500),
        ("too-many-look-alikes", 1),
    ]
    assert {f["network"] for f in board} == {
        PSEUDONYMS.network("board", "a network"),
        PSEUDONYMS.network("board", "another network"),
    }
    assert verify_export(await log.export("board")).valid
