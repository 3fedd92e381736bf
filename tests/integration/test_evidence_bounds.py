"""The evidence log's bounds against a real Redis (issue 17, second review): a flood never pushes
the hosts' entries out of a room's chain (entries an attacker makes are refused past the chain's
bound, nothing is trimmed by count, and an `evidence lost` entry says how many), and a reply lost
on the way back from Redis never makes the recorder append one record twice."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.evidence.entries import Kind, Record
from gateway.evidence.export import verify_export
from gateway.evidence.log import EvidenceLog
from gateway.evidence.recorder import EvidenceRecorder
from gateway.evidence.redis_chains import ENTRIES, RedisChains
from tests.fixtures.processes import free_port
from tests.fixtures.redis_server import RedisProcess
from tests.integration.test_evidence_redis import DAY, HOST, KEY, PSEUDONYMS, raw, server

__all__ = ["raw", "server"]

TARGET = PSEUDONYMS.admission("board", "admission of a troll")


def ban() -> Record:
    return Record(Kind.BAN, {"actor": HOST, "target": TARGET, "until": None})


async def test_a_flood_never_pushes_the_hosts_entries_out(
    server: RedisProcess, raw: redis.asyncio.Redis
) -> None:
    chains = RedisChains.connect(server.url, retention_seconds=DAY, max_entries=100)
    log = EvidenceLog(chains, KEY)
    recorder = EvidenceRecorder(log, PSEUDONYMS)
    recorder.record("board", ban())
    await recorder.flush()
    # Fifteen minutes of a flood from a thousand networks each: 21 entries a minute, 315 in all,
    # three times what the chain keeps.
    for minute in range(15):
        for n in range(1000):
            recorder.refused_join("board", f"network {minute} {n}")
        await recorder.flush()
    recorder.record("board", Record(Kind.LOCKDOWN, {"actor": HOST, "removed": 3}))
    await recorder.flush()
    part = await log.read("board")
    kinds = [e.kind for e in part.entries]
    # Nothing trimmed: the first ban is still the chain's first entry, the lockdown its last.
    assert part.entries[0].seq == 1 and kinds[0] == Kind.BAN
    assert Kind.LOCKDOWN in kinds
    # The floods stop at the bound, and the chain says how many were not kept.
    floods = [k for k in kinds if k in (Kind.FLOOD_REFUSED, Kind.FLOOD_OTHERS)]
    assert len(floods) == 99
    lost = [e.fields for e in part.entries if e.kind == Kind.EVIDENCE_LOST]
    assert lost and {f["reason"] for f in lost} == {"chain-full"}
    assert sum(int(str(f["count"])) for f in lost) == 15 * 21 - 99
    assert verify_export(await log.export("board")).valid
    await chains.aclose()


class ReplyDropper:
    """A TCP forwarder before a Redis that, while `drops` is above zero, forwards a script call
    (EVAL/EVALSHA) but drops its reply and cuts the connection: the append ran, its caller
    never heard."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.drops = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        script = asyncio.Event()

        async def upward() -> None:
            while data := await reader.read(65536):
                if b"EVAL" in data and self.drops > 0:
                    script.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downward() -> None:
            while data := await up_reader.read(65536):
                if script.is_set():
                    # The script ran (this is its reply): the caller never gets it.
                    self.drops -= 1
                    self.dropped += 1
                    writer.close()
                    up_writer.close()
                    return
                writer.write(data)
                await writer.drain()

        tasks = {asyncio.create_task(upward()), asyncio.create_task(downward())}
        self._tasks |= tasks
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        writer.close()
        up_writer.close()


async def test_a_lost_reply_never_appends_a_record_twice(server: RedisProcess) -> None:
    dropper = ReplyDropper(server.port)
    await dropper.start()
    url = f"redis://127.0.0.1:{dropper.port}/0"
    # A client that tries again by itself on a new connection (as a URL or Sentinel set-up may
    # make it), and one that does not (the recorder is told the store is away).
    retrying = redis.asyncio.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 3))
    for chains, drops in (
        (RedisChains(retrying, retention_seconds=DAY, max_entries=1000), 1),
        (RedisChains.connect(url, retention_seconds=DAY, max_entries=1000), 1),
        (RedisChains.connect(url, retention_seconds=DAY, max_entries=1000), 20),
    ):
        log = EvidenceLog(chains, KEY)
        recorder = EvidenceRecorder(log, PSEUDONYMS)
        try:
            recorder.record("board", Record(Kind.LOCK, {"actor": HOST}))
            await recorder.flush()
            dropper.drops = drops
            recorder.record("board", ban())
            await recorder.flush()
            assert dropper.dropped >= 1
            dropper.drops, dropper.dropped = 0, 0
            while recorder.queued:
                await recorder.flush()
                await asyncio.sleep(0.05)
            kinds = [e.kind for e in (await log.read("board")).entries]
            assert kinds[-2:] == [Kind.LOCK, Kind.BAN]
            assert kinds.count(Kind.BAN) == kinds.count(Kind.LOCK)
            assert verify_export(await log.export("board")).valid
        finally:
            await chains.aclose()
    await dropper.close()


async def test_no_entry_is_trimmed_by_count(server: RedisProcess, raw: redis.asyncio.Redis) -> None:
    # The hosts' own entries past the bound are all kept (a bound for floods, not for them).
    chains = RedisChains.connect(server.url, retention_seconds=DAY, max_entries=100)
    log = EvidenceLog(chains, KEY)
    for _ in range(150):
        await log.append("board", Record(Kind.QUIET_ON, {"actor": HOST}))
    assert await raw.xlen(ENTRIES + "board") == 150
    assert (await log.read("board")).entries[0].seq == 1
    await chains.aclose()
