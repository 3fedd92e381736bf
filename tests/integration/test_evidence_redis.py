"""The evidence chains in a real Redis (gateway/evidence/redis_chains.py) and the recorder in
front of them: replicas racing on one chain never fork it, retention trims the oldest entries
and what is left still verifies, a flushed or restarted Redis is detected (never a silently valid
export of a chain that started over), a Redis that is away delays evidence without losing it
(up to the queue's bound, and then the export shows the hole)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.errors import StoreUnavailable
from gateway.evidence.entries import (
    ChainBroken,
    Kind,
    Record,
    check_links,
    genesis,
    parse_entry,
)
from gateway.evidence.export import verify_export
from gateway.evidence.log import ChainRewound, EvidenceLog, SigningPolicy
from gateway.evidence.pseudonyms import Pseudonyms
from gateway.evidence.recorder import EvidenceRecorder
from gateway.evidence.redis_chains import CHAINS, ENTRIES, HEAD, SIGNED, RedisChains
from gateway.metrics import Metrics
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_sentinel import SentinelRedis
from tests.fixtures.redis_server import RedisProcess, start_redis

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PSEUDONYMS = Pseudonyms(b"evidence tests' pseudonym key, 32+ bytes")
HOST = PSEUDONYMS.host("board", "identity of a host")
DAY = 86_400.0


def quiet() -> Record:
    return Record(Kind.QUIET_ON, {"actor": HOST})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, to flush, stop and start again."""
    process = start_redis(tmp_path / "redis")
    try:
        yield process
    finally:
        stop_process(process.proc)


def chains_on(server: RedisProcess, retention: float = DAY) -> RedisChains:
    return RedisChains.connect(server.url, retention_seconds=retention, max_entries=1000)


@pytest.fixture
async def raw(server: RedisProcess) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def poll(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_appends_chain_and_an_export_verifies(server: RedisProcess) -> None:
    chains = chains_on(server)
    log = EvidenceLog(chains, KEY, SigningPolicy(every=2))
    sealed = [await log.append("board", quiet()) for _ in range(5)]
    assert [e.seq for e in sealed] == [1, 2, 3, 4, 5]
    stored = await chains.entries("board")
    assert [e.line for e in stored] == [e.line for e in sealed]
    check_links(genesis("board"), stored)
    assert [s.seq for s in await chains.signatures("board")] == [2, 4]
    assert await chains.chains() == ["board"]
    verdict = verify_export(await log.export("board"))
    assert verdict.valid, verdict.problem
    assert verdict.summary["entries"] == 5
    await chains.aclose()


async def test_racing_replicas_never_fork_a_chain(server: RedisProcess) -> None:
    replicas = [chains_on(server) for _ in range(3)]
    logs = [EvidenceLog(chains, KEY) for chains in replicas]
    sealed = await asyncio.gather(*(logs[i % 3].append("board", quiet()) for i in range(60)))
    assert sorted(e.seq for e in sealed) == list(range(1, 61))
    stored = await replicas[0].entries("board")
    assert len(stored) == 60
    check_links(genesis("board"), stored)
    for chains in replicas:
        await chains.aclose()


async def test_retention_trims_the_oldest_and_the_rest_verifies(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    chains = chains_on(server, retention=0.3)
    log = EvidenceLog(chains, KEY)
    await log.append("board", quiet())
    await log.append("board", quiet())

    async def first_trimmed() -> bool:
        await log.append("board", quiet())
        return (await chains.entries("board"))[0].seq > 2

    await poll(first_trimmed, "retention to trim the first entries")
    part = await log.read("board")
    assert part.anchor.seq == part.entries[0].seq - 1 >= 2
    verdict = verify_export(await log.export("board"))
    assert verdict.valid, verdict.problem
    # The chain's keys go a retention after its last entry.
    assert 0 < await raw.pttl(HEAD + "board") <= 300
    assert 0 < await raw.pttl(ENTRIES + "board") <= 300


async def test_a_flushed_redis_is_detected_and_the_gap_recorded(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    chains = chains_on(server)
    log = EvidenceLog(chains, KEY)
    for _ in range(5):
        await log.append("board", quiet())
    await raw.flushall()
    # Read: not an empty chain, nor one that starts over.
    with pytest.raises(ChainRewound, match="seq 5"):
        await log.read("board")
    with pytest.raises(ChainRewound):
        await log.append("board", quiet())
    # The recorder goes on from the head it saw, saying what was lost.
    recorder = EvidenceRecorder(log, PSEUDONYMS)
    recorder.record("board", Record(Kind.LOCK, {"actor": HOST}))
    await recorder.flush()
    assert recorder.queued == 0
    part = await log.read("board")
    assert part.anchor.seq == 5
    assert [(e.seq, e.kind) for e in part.entries] == [(6, Kind.EVIDENCE_LOST), (7, Kind.LOCK)]
    assert part.entries[0].fields == {"count": 5, "reason": "store-lost"}
    verdict = verify_export(await log.export("board"))
    assert verdict.valid, verdict.problem
    assert verdict.summary["kinds"] == {"evidence lost": 1, "lock": 1}


async def test_a_restarted_redis_without_its_data_is_detected(server: RedisProcess) -> None:
    chains = chains_on(server)
    log = EvidenceLog(chains, KEY)
    for _ in range(3):
        await log.append("board", quiet())
    stop_process(server.proc)
    with pytest.raises(StoreUnavailable):
        await log.append("board", quiet())
    server.restart()
    with pytest.raises(ChainRewound, match="seq 3"):
        await log.export("board")


async def test_a_partly_restored_chain_breaks_where_entries_were_lost(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    chains = chains_on(server)
    log = EvidenceLog(chains, KEY, SigningPolicy(every=4))
    for _ in range(6):
        await log.append("board", quiet())
    # An older copy: entries 5 and 6 gone, the head back at 4, the signature of 4 kept.
    ids = [entry_id for entry_id, _ in await raw.xrange(ENTRIES + "board")]
    await raw.xdel(ENTRIES + "board", *ids[4:])
    four = parse_entry((await raw.xrange(ENTRIES + "board"))[-1][1]["e"].encode())
    await raw.set(HEAD + "board", f"{four.seq} {four.hash}")
    with pytest.raises(ChainRewound, match="seq 4"):
        await log.read("board")
    recorder = EvidenceRecorder(log, PSEUDONYMS)
    recorder.record("board", quiet())
    await recorder.flush()
    # Entries 1-4 survived, the gap entry follows what was seen (6): the break is named.
    with pytest.raises(ChainBroken, match="entry seq 7 \\(evidence lost"):
        await log.read("board")


async def test_altered_stored_evidence_is_refused(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    log = EvidenceLog(chains_on(server), KEY, SigningPolicy(every=2))
    for _ in range(4):
        await log.append("board", Record(Kind.LOCKDOWN, {"actor": HOST, "removed": 4}))
    # Another process (no memory of the chain) reads what an intruder changed.
    fresh = EvidenceLog(chains_on(server), KEY)
    await raw.xadd(ENTRIES + "board", {"e": "not an entry"})
    with pytest.raises(ChainBroken, match="is not one"):
        await fresh.read("board")
    await raw.xdel(ENTRIES + "board", (await raw.xrange(ENTRIES + "board"))[-1][0])
    # An entry replaced in place (same seq, other content): its link and signature disagree.
    kept = [values["e"] for _, values in await raw.xrange(ENTRIES + "board")]
    await raw.delete(ENTRIES + "board")
    for line in [kept[0].replace('"removed":4', '"removed":0'), *kept[1:]]:
        await raw.xadd(ENTRIES + "board", {"e": line})
    with pytest.raises(ChainBroken):
        await fresh.read("board")
    await raw.lpush(SIGNED + "board", "garbage")
    with pytest.raises(ChainBroken, match="signed head"):
        await fresh.read("board")


async def test_the_recorder_waits_out_a_redis_that_is_away(server: RedisProcess) -> None:
    metrics = Metrics()
    chains, reader = chains_on(server), chains_on(server)
    log = EvidenceLog(chains, KEY)
    recorder = EvidenceRecorder(log, PSEUDONYMS, metrics, bound=5)
    await recorder.start()
    try:
        recorder.record("board", Record(Kind.LOCK, {"actor": HOST}))

        async def kept(count: int) -> bool:
            try:
                return len(await reader.entries("board")) == count
            except (StoreUnavailable, ChainBroken):
                # Away, or back without what it kept until the recorder says so.
                return False

        await poll(lambda: kept(1), "the first record")
        stop_process(server.proc)
        # Never slowed, never failed: recording while Redis is away only queues.
        started = time.perf_counter()
        for _ in range(8):
            recorder.record("board", quiet())
        assert time.perf_counter() - started < 0.05
        assert recorder.queued == 5
        assert metrics.evidence_dropped.value(reason="queue-full") == 3
        server.restart()
        await poll(lambda: kept(7), "the queue to drain and the gap to be said", timeout=40)
    finally:
        await recorder.aclose()
    stored = await reader.entries("board")
    lost = Kind.EVIDENCE_LOST
    assert [e.kind for e in stored] == [lost, *[Kind.QUIET_ON] * 5, lost]
    assert stored[-1].fields == {"count": 3, "reason": "queue-full"}
    # The recorder saw seq 1 before the restart lost it: the hole at the start is said too.
    assert stored[0].seq == 2 and stored[0].fields == {"count": 1, "reason": "store-lost"}


async def test_refused_joins_are_counted_per_network_and_minute(server: RedisProcess) -> None:
    chains = chains_on(server)
    log = EvidenceLog(chains, KEY)
    clock = [1_796_000_000.0]
    recorder = EvidenceRecorder(log, PSEUDONYMS, clock=lambda: clock[0])
    for _ in range(400):
        recorder.refused_join("board", "net-hash-one")
    for _ in range(3):
        recorder.refused_join("board", "net-hash-two")
        recorder.refused_join(None, "net-hash-two")
    clock[0] += 60
    recorder.refused_join("board", "net-hash-one")
    await recorder.flush()
    board = await chains.entries("board")
    counts = sorted((e.fields["minute"], e.fields["count"]) for e in board)
    assert counts == [
        ("2026-11-30T00:53Z", 3),
        ("2026-11-30T00:53Z", 400),
        ("2026-11-30T00:54Z", 1),
    ]
    assert all(e.kind is Kind.FLOOD_REFUSED for e in board)
    networks = {e.fields["network"] for e in board}
    assert len(networks) == 2 and all(str(n).startswith("n-") for n in networks)
    gate = await chains.entries("_gate")
    assert [e.fields["count"] for e in gate] == [3]
    await recorder.aclose()


async def test_chains_behind_sentinel(redis_sentinel: SentinelRedis) -> None:
    # A database of this test's own: the module's Sentinel pair is shared.
    chains = RedisChains.connect(redis_sentinel.url(db=5), retention_seconds=DAY, max_entries=100)
    with redis_sentinel.direct(redis_sentinel.master_port_now(), db=5) as direct:
        direct.flushdb()
    log = EvidenceLog(chains, KEY)
    for _ in range(3):
        await log.append("board", quiet())
    verdict = verify_export(await log.export("board"))
    assert verdict.valid and verdict.summary["entries"] == 3
    with redis_sentinel.direct(redis_sentinel.master_port_now(), db=5) as direct:
        assert direct.xlen(ENTRIES + "board") == 3
    await chains.aclose()


async def test_entries_cut_from_the_front_are_told_from_retention(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    """Redis keeps the first entry its appends' trim left: one removed by anything else (an
    intruder's XDEL) fails a read, where a trimmed chain reads from its first kept entry."""
    log = EvidenceLog(chains_on(server), KEY, SigningPolicy(every=1000))
    for _ in range(4):
        await log.append("board", quiet())
    ids = [entry_id for entry_id, _ in await raw.xrange(ENTRIES + "board")]
    await raw.xdel(ENTRIES + "board", ids[0])
    with pytest.raises(ChainBroken, match="removed from its front"):
        await EvidenceLog(chains_on(server), KEY).read("board")


async def test_the_chains_index_lasts_a_retention_after_the_last_append(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    """Catches an index of the chains kept for ever (found by the attack replay): it names
    rooms, so it goes with the chains it names, and names none whose keys are gone."""
    chains = chains_on(server)
    log = EvidenceLog(chains, KEY, SigningPolicy(every=1000))
    # An index an earlier release kept: no expiry, the name of a chain a retention gone.
    now_ms = int(time.time() * 1000)
    await raw.zadd(CHAINS, {"board": now_ms, "long-gone": now_ms - int(DAY * 1000) - 60_000})
    await log.append("board", quiet())
    assert await chains.chains() == ["board"]
    await log.append("lobby", quiet())
    index_ttl = await raw.pttl(CHAINS)
    assert DAY * 1000 - 60_000 < index_ttl <= DAY * 1000
    for chain in ("board", "lobby"):
        assert 0 < await raw.pttl(HEAD + chain) <= index_ttl
    await chains.aclose()


async def test_an_idle_chains_index_goes_with_its_chains(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    chains = chains_on(server, retention=0.3)
    log = EvidenceLog(chains, KEY, SigningPolicy(every=1000))
    await log.append("board", quiet())
    assert 0 < await raw.pttl(CHAINS) <= 300

    async def gone() -> bool:
        return not await raw.exists(CHAINS, HEAD + "board", ENTRIES + "board")

    await poll(gone, "the chains and their index to expire")
    assert await chains.chains() == []
    await chains.aclose()
