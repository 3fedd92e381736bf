"""Chains kept in Redis, for the Redis store: every replica appends to the same chains.

Per chain a stream of entries (`meetgate:evidence:<chain>`, each entry's canonical line in
field `e`), its head (`meetgate:evidence-head:<chain>`, "seq hash token") and a list of signed heads
(`meetgate:evidence-signed:<chain>`); a sorted set names the chains (`meetgate:evidence-chains`).
One Lua script compares the head and appends, so replicas racing on a chain never fork it. Each
append drops entries older than the retention and keeps the chain's keys, and the set naming the
chains, a retention after its last entry; past the bound on a chain's length, entries an attacker
makes (floods, refused names) are refused, never the older entries trimmed.

Redis can lose what it kept (a flush, a restore from an older copy): the heads this process saw
are remembered, and a chain found shorter raises ChainRewound (log.py) rather than starting over
as if nothing had been; signed heads that no kept entry matches say the same on a read.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.errors import StoreUnavailable
from gateway.evidence.entries import (
    BOUNDED_KINDS,
    HASH,
    ChainBroken,
    Head,
    SealedEntry,
    canonical,
    genesis,
    is_seq,
    load_object,
    parse_entry,
)
from gateway.evidence.log import ChainFull, ChainRewound, Kept
from gateway.evidence.signing import SignedHead, parse_signed_head
from gateway.store.redis import client_for, close_client

ENTRIES: Final = "meetgate:evidence:"  # + chain: stream of entries, field e
# + chain: "seq hash" of its last entry, and the token of the append that made it.
HEAD: Final = "meetgate:evidence-head:"
SIGNED: Final = "meetgate:evidence-signed:"  # + chain: list of signed heads, oldest first
# sorted set: chain -> its last append (ms); a chain's name goes at the first append after its
# keys expired, the whole set a retention after the last append.
CHAINS: Final = "meetgate:evidence-chains"
# + chain: "seq prev" of the first entry kept, set by every append after it trims: an entry
# removed from the front by anything but the append's own trim leaves it behind.
START: Final = "meetgate:evidence-start:"
# How long an append waits for a replica to acknowledge it (WAIT), in ms; and how often the
# primary is asked whether it has replicas at all.
WAIT_MS: Final = 1000
REPLICAS_SECONDS: Final = 30.0
# Entries read at once: a long chain is read in pages, never in one reply.
PAGE: Final = 1000
# Signed heads kept per chain, at least: one is made every `sign_every` entries or `sign_seconds`
# (signatures_to_keep counts what a chain's retention needs), and at most (a chain's list is
# bounded whatever the settings).
MAX_SIGNATURES: Final = 20_000
MOST_SIGNATURES: Final = 200_000


def signatures_to_keep(
    retention_seconds: float, max_entries: int, sign_every: int, sign_seconds: float
) -> int:
    """How many signed heads a chain makes within its retention at most (one per `sign_every`
    of its `max_entries`, one per `sign_seconds`, others' chain-full and loss entries aside),
    within MAX_SIGNATURES..MOST_SIGNATURES: so that heads cover the entries kept."""
    made = math.ceil(retention_seconds / sign_seconds) + math.ceil(max_entries / sign_every) + 1
    return min(max(made, MAX_SIGNATURES), MOST_SIGNATURES)


# Every call has a deadline: evidence waits for a store that is away in the recorder's queue,
# never in a request.
CALL_SECONDS: Final = 5.0
_CONNECT_SECONDS: Final = 2.0

# KEYS: head, stream, signed, chains, start. ARGV: expected head, the empty chain's head, new head,
# the entry's line, chain, retention (ms), most entries kept, "1" for an entry of a bounded kind,
# the call's token (kept with the head: the client's retry of a call whose reply was lost finds
# it there, appended). 1 appended, 0 the head moved, 2 refused: the chain holds the most entries
# it keeps. Nothing is ever trimmed by count, only by age: a flood cannot push the hosts' entries
# out (an entry of a bounded kind is refused instead; the recorder says how many, `evidence lost`).
_APPEND: Final = """
local stored = redis.call('GET', KEYS[1])
local head = stored and string.match(stored, '^%d+ %x+') or ARGV[2]
if head ~= ARGV[1] then
  if stored and string.match(stored, '^%d+ %x+ (%x+)$') == ARGV[9] then return 1 end
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local retention = tonumber(ARGV[6])
local function note_start()
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  local line = first and first[2][2]
  if type(line) == 'string' then
    local prev, seq = string.match(line, '"prev":"(%x+)","seq":(%d+)}$')
    if prev then redis.call('SET', KEYS[5], seq .. ' ' .. prev, 'PX', retention) end
  end
end
local trimmed = redis.call('XTRIM', KEYS[2], 'MINID', tostring(now - retention))
if ARGV[8] == '1' and redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[7]) then
  if trimmed > 0 then note_start() end
  return 2
end
redis.call('XADD', KEYS[2], '*', 'e', ARGV[4])
redis.call('SET', KEYS[1], ARGV[3], 'PX', retention)
redis.call('PEXPIRE', KEYS[2], retention)
redis.call('PEXPIRE', KEYS[3], retention)
note_start()
redis.call('ZADD', KEYS[4], now, ARGV[5])
-- The index names a chain only while its keys last, and goes a retention after the last append
-- to any chain (its names, room names among them, are not kept past what they name).
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - retention)
redis.call('PEXPIRE', KEYS[4], retention)
return 1
"""


SEQ_TEXT: Final = re.compile(r"[0-9]{1,16}")


def _head_text(head: Head) -> str:
    return f"{head.seq} {head.hash}"


def _parse_head(chain: str, text: str | None) -> Head:
    if text is None:
        return genesis(chain)
    # "seq hash", and the token of the append that made it.
    seq, _, rest = text.partition(" ")
    hash_ = rest.partition(" ")[0]
    if SEQ_TEXT.fullmatch(seq) is None or not is_seq(int(seq)) or HASH.fullmatch(hash_) is None:
        raise ChainBroken(f"the {chain} chain's head in Redis is not one")
    return Head(int(seq), hash_)


class RedisChains:
    """The `Chains` kept in the Redis at `url` (`redis://`, `rediss://`, `unix://`,
    `redis+sentinel://`). Failures to reach it raise StoreUnavailable, as the store's do."""

    def __init__(
        self,
        client: Redis[str],
        sentinel: Sentinel | None = None,
        *,
        retention_seconds: float,
        max_entries: int,
        signatures_kept: int = MAX_SIGNATURES,
    ) -> None:
        """`signatures_kept`: signed heads kept per chain (signatures_to_keep)."""
        self._client = client
        self._signatures_kept = max(1, signatures_kept)
        self._sentinel = sentinel
        self._retention_ms = max(1, int(retention_seconds * 1000))
        self._max_entries = max_entries
        self._append: AsyncScript = client.register_script(_APPEND)
        # The furthest head this process saw of each chain, and the number of its sighting: a
        # read begun after it that finds a shorter chain found one cut short (a read begun
        # before it may just be older than an append of this process).
        self._seen: dict[str, tuple[Head, int]] = {}
        self._sightings = 0
        # How many replicas the primary had when last asked, and when (monotonic).
        self._replicas = 0
        self._replicas_checked = -REPLICAS_SECONDS

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        retention_seconds: float,
        max_entries: int,
        signatures_kept: int = MAX_SIGNATURES,
    ) -> RedisChains:
        """A client for `url`; no I/O yet."""
        client, sentinel = client_for(
            url, socket_connect_timeout=_CONNECT_SECONDS, socket_timeout=CALL_SECONDS
        )
        return cls(
            client,
            sentinel,
            retention_seconds=retention_seconds,
            max_entries=max_entries,
            signatures_kept=signatures_kept,
        )

    async def aclose(self) -> None:
        async with self._call():
            await close_client(self._client, self._sentinel)

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(CALL_SECONDS):
                yield
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable() from exc

    def _saw(self, chain: str, head: Head) -> None:
        seen = self._seen.get(chain)
        if seen is None or head.seq >= seen[0].seq:
            self._sightings += 1
            self._seen[chain] = (head, self._sightings)

    def _check_kept(self, chain: str, stored: Head, began: int) -> None:
        """ChainRewound when Redis keeps `chain` shorter than, or other than, what was seen
        before the read that found `stored` began (`began`: the sightings by then)."""
        seen = self._seen.get(chain)
        if seen is None or seen[1] > began:
            return
        head = seen[0]
        if stored.seq < head.seq or (stored.seq == head.seq and stored.hash != head.hash):
            raise ChainRewound(chain, head, stored)

    async def head(self, chain: str) -> Head:
        began = self._sightings
        async with self._call():
            text = await self._client.get(HEAD + chain)
        stored = _parse_head(chain, text)
        self._check_kept(chain, stored, began)
        self._saw(chain, stored)
        return stored

    async def append(self, chain: str, expected: Head, entry: SealedEntry) -> bool:
        keys = [HEAD + chain, ENTRIES + chain, SIGNED + chain, CHAINS, START + chain]
        token = secrets.token_hex(8)
        args: list[Any] = [
            _head_text(expected),
            _head_text(genesis(chain)),
            f"{_head_text(entry.head)} {token}",
            entry.line,
            chain,
            self._retention_ms,
            self._max_entries,
            "1" if entry.kind in BOUNDED_KINDS else "0",
            token,
        ]
        async with self._call():
            appended = await self._append(keys=keys, args=args)
        if appended == 2:
            raise ChainFull(
                f"the {chain} chain holds {self._max_entries} entries: a {entry.kind} entry is"
                " not kept"
            )
        if appended == 1:
            self._saw(chain, entry.head)
            return True
        return False

    async def entries(self, chain: str) -> list[SealedEntry]:
        return (await self.kept(chain)).entries

    async def kept(self, chain: str) -> Kept:
        """Read in pages of PAGE entries (no one call holds Redis, or the event loop, for long),
        up to the head read with the first page: entries appended meanwhile are left out."""
        began = self._sightings
        async with self._call(), self._client.pipeline(transaction=True) as pipe:
            pipe.xrange(ENTRIES + chain, count=PAGE)
            pipe.get(HEAD + chain)
            pipe.lrange(SIGNED + chain, 0, -1)
            pipe.get(START + chain)
            page, text, signed_lines, start_text = await pipe.execute()
        stored = _parse_head(chain, text)
        entries: list[SealedEntry] = []
        while page:
            parsed = await asyncio.to_thread(self._parse_page, chain, page)
            entries.extend(entry for entry in parsed if entry.seq <= stored.seq)
            if len(page) < PAGE or parsed[-1].seq >= stored.seq:
                break
            async with self._call():
                page = await self._client.xrange(
                    ENTRIES + chain, min="(" + str(page[-1][0]), count=PAGE
                )
        last = entries[-1].head if entries else None
        if last is not None and last != stored:
            raise ChainBroken(
                f"the {chain} chain's head in Redis (seq {stored.seq}) is not its last kept"
                f" entry ({entries[-1].named()}): the store lost or gained entries"
            )
        self._check_kept(chain, stored, began)
        seen = self._seen.get(chain)
        if seen is not None and seen[1] <= began:
            # The furthest head seen is still the entry of its seq: a chain replaced by another
            # as long or longer (a restore of another copy) is not passed off as this one.
            head = seen[0]
            there = next((e for e in reversed(entries) if e.seq <= head.seq), None)
            if there is not None and there.seq == head.seq and there.hash != head.hash:
                raise ChainBroken(
                    f"the {chain} chain's entry seq {head.seq} is not the one this gate saw"
                    " there: the chain was replaced (restored from another copy)"
                )
        self._saw(chain, stored)
        signed = await asyncio.to_thread(
            lambda: [self._parse_signed(chain, line) for line in signed_lines]
        )
        start = None
        if start_text is not None:
            first_kept = _parse_head(chain, start_text)
            start = Head(first_kept.seq - 1, first_kept.hash) if first_kept.seq >= 1 else None
        return Kept(start, entries, signed)

    @classmethod
    def _parse_page(cls, chain: str, page: list[Any]) -> list[SealedEntry]:
        return [cls._parse_entry(chain, stream_id, values) for stream_id, values in page]

    async def tail(self, chain: str, count: int) -> list[SealedEntry]:
        if count <= 0:
            return []
        async with self._call():
            kept = await self._client.xrevrange(ENTRIES + chain, count=count)
        return [self._parse_entry(chain, stream_id, values) for stream_id, values in kept[::-1]]

    async def last_signature(self, chain: str) -> SignedHead | None:
        async with self._call():
            line = await self._client.lindex(SIGNED + chain, -1)
        return None if line is None else self._parse_signed(chain, line)

    @staticmethod
    def _parse_entry(chain: str, stream_id: str, values: dict[str, str]) -> SealedEntry:
        try:
            return parse_entry(str(values.get("e", "")).encode("utf-8"))
        except ValueError as exc:
            raise ChainBroken(
                f"the {chain} chain's stored entry {stream_id} is not one: {exc}"
            ) from None

    async def add_signature(self, chain: str, signed: SignedHead) -> None:
        async with self._call(), self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(SIGNED + chain, canonical(signed.record()))
            pipe.ltrim(SIGNED + chain, -self._signatures_kept, -1)
            pipe.pexpire(SIGNED + chain, self._retention_ms)
            await pipe.execute()

    async def signatures(self, chain: str) -> list[SignedHead]:
        async with self._call():
            lines = await self._client.lrange(SIGNED + chain, 0, -1)
        return [self._parse_signed(chain, line) for line in lines]

    @staticmethod
    def _parse_signed(chain: str, line: str) -> SignedHead:
        try:
            return parse_signed_head(load_object(line.encode("utf-8")))
        except ValueError as exc:
            raise ChainBroken(
                f"a stored signed head of the {chain} chain is not one: {exc}"
            ) from None

    async def chains(self) -> list[str]:
        async with self._call():
            names = await self._client.zrange(CHAINS, 0, -1)
        return sorted(names)

    async def replicated(self) -> bool:
        """WAIT for one replica to acknowledge every write so far (a failover to a replica that
        lacks them loses them silently); True at once where the primary has no replica (asked
        again every REPLICAS_SECONDS)."""
        now = time.monotonic()
        if now >= self._replicas_checked + REPLICAS_SECONDS:
            async with self._call():
                info = await self._client.info("replication")
            self._replicas = int(info.get("connected_slaves", 0) or 0)
            self._replicas_checked = now
        if not self._replicas:
            return True
        async with self._call():
            acknowledged = await self._client.wait(1, WAIT_MS)
        return int(acknowledged) >= 1

    def forget(self, chain: str) -> None:
        self._seen.pop(chain, None)
