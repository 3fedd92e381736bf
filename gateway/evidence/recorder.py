"""Recording evidence without slowing anything down: `EvidenceRecorder.record` only queues; one
background task appends what is queued, in order, retrying with backoff while the backend is
away, signs due chain heads every few seconds, and flushes refused joins counted per network and
minute.

What it keeps is bounded: past `bound` queued records, new ones are dropped and counted (a
metric, one log line a minute, counts only), and an `evidence lost` entry with the count goes
into each chain that lost some once the backend takes entries again, so the export shows the
hole. What attackers make many of (floods, refused names) has a queue of its own, appended after
the hosts' and the guard's records: a flood never crowds out a ban. A minute's refused joins are
written as one entry for each of the FLOOD_NETWORKS networks that sent the most, and one for all
the others. At shutdown it drains what it can within a bounded wait; what is left is lost with the
process (docs/evidence.md says what is lost when).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from gateway.errors import StoreUnavailable
from gateway.evidence.entries import (
    BOUNDED_KINDS,
    GATE_CHAIN,
    MAX_COUNT,
    EvidenceError,
    Kind,
    Record,
    check_chain_name,
    minute,
)
from gateway.evidence.log import ChainFull, ChainRewound, EvidenceLog
from gateway.evidence.pseudonyms import Pseudonyms
from gateway.metrics import Metrics

log = logging.getLogger("meetgate.evidence")

# Records queued at most: a few minutes of a heavy attack's entries while the store is away;
# as many again of the attackers' own (floods, refused names), in a queue of their own.
QUEUE_BOUND: Final = 10_000
# Networks counted at most per minute (refused joins), and per room: past it, a network's
# refusals are counted with the others' (one entry), never dropped.
MAX_TALLIES: Final = 10_000
ROOM_TALLIES: Final = 1_000
# Networks a room's minute of refused joins names, those that sent the most: the rest are one
# `flood refused, other networks` entry.
FLOOD_NETWORKS: Final = 20
# How often due chain heads are signed and finished minutes of refusals flushed.
TICK_SECONDS: Final = 2.0
# Waiting for a backend that is away: from the first, doubling, up to the last.
BACKOFF_FIRST: Final = 0.5
BACKOFF_MOST: Final = 30.0
# How long a stop waits for the queue to drain.
DRAIN_SECONDS: Final = 5.0
LOG_EVERY_SECONDS: Final = 60.0
# Why records were lost, as `evidence lost` entries and the metric say it.
QUEUE_FULL: Final = "queue-full"
STORE_LOST: Final = "store-lost"
UNRECORDABLE: Final = "unrecordable"
# The chain holds as many entries as the store keeps (redis_chains.py): floods and refused names
# past it are not kept, the hosts' entries always are.
CHAIN_FULL: Final = "chain-full"


class EvidenceRecorder:
    """The gate's one way to record evidence. `record` never awaits nor raises."""

    def __init__(
        self,
        log_: EvidenceLog,
        pseudonyms: Pseudonyms,
        metrics: Metrics | None = None,
        *,
        bound: int = QUEUE_BOUND,
        clock: Callable[[], float] = time.time,
        close_backend: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`close_backend` is awaited last at `aclose` (the chains' client)."""
        self._close_backend = close_backend
        self.log = log_
        self.pseudonyms = pseudonyms
        self._metrics = metrics
        self._bound = bound
        self._clock = clock
        # (chain, record, when it happened), oldest first: the hosts', the admins' and the
        # guard's, appended first; and the attackers' own (BOUNDED_KINDS), bounded apart.
        self._queue: deque[tuple[str, Record, float]] = deque()
        self._floods: deque[tuple[str, Record, float]] = deque()
        # A `move` record's id -> the room moved to, and the host as its pseudonyms name them:
        # its `move in` entry follows once the `move` entry is appended (`moved`).
        self._follow_ups: dict[int, tuple[Record, str, str]] = {}
        self._follow_up: tuple[str, Record, float] | None = None
        # Per chain and reason: records dropped and not yet said by an `evidence lost` entry.
        self._dropped: dict[tuple[str, str], int] = {}
        # Records queued and appended so far; drops are said once every record queued before
        # the last of them (`_say_after`) is appended, so the gap sits where they were lost.
        self._queued_total = 0
        self._appended_total = 0
        self._say_after = 0
        self._unlogged = 0
        self._logged_at = 0.0
        self._unreplicated = 0
        self._unreplicated_logged_at = -LOG_EVERY_SECONDS
        # (chain, minute) -> the limiter's hash of a network -> refused joins; and per
        # (chain, minute) the refusals of networks past the bounds.
        self._tallies: dict[tuple[str, str], dict[str, int]] = {}
        self._tallied = 0
        # (room, the limiter's hash of a network, reason, minute) -> names refused.
        self._names: dict[tuple[str, str, str, str], int] = {}
        self._untallied: dict[tuple[str, str], int] = {}
        self._minute_number = -1
        self._minute_text = ""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        if metrics is not None:
            metrics.evidence_queued.read_from(lambda: len(self._queue) + len(self._floods))

    # What the gate calls: never awaits, never raises.

    def record(self, chain: str, record: Record) -> None:
        """Queue `record` for `chain`, stamped now."""
        queue = self._floods if record.kind in BOUNDED_KINDS else self._queue
        if len(queue) >= self._bound:
            self._drop(chain, 1, QUEUE_FULL)
            return
        queue.append((chain, record, self._clock()))
        self._queued_total += 1
        self._wake.set()

    def note(self, chain: str, kind: Kind, fields: Mapping[str, object]) -> None:
        """`record` of a record made here: values it refuses (a name no entry may hold, say)
        are counted as lost instead of failing the action that had them."""
        try:
            check_chain_name(chain)
            made = Record(kind, fields)
        except EvidenceError:
            self._drop(chain if _is_chain(chain) else GATE_CHAIN, 1, UNRECORDABLE)
            return
        self.record(chain, made)

    def refused_name(self, room: str, network: str, reason: str) -> None:
        """Count a name refused in `room` (a look-alike of a host's, every number taken), per
        network (the limiter's keyed hash of it) and reason: one `name refused` entry each,
        with the count, when the minute is over (a flood of look-alikes is no entry a try)."""
        if not _is_chain(room):
            self._drop(GATE_CHAIN, 1, UNRECORDABLE)
            return
        key = (room, network, reason, self._minute())
        if key not in self._names and len(self._names) >= MAX_TALLIES:
            self._drop(room, 1, QUEUE_FULL)
            return
        self._names[key] = self._names.get(key, 0) + 1

    def moved(self, room: str, to: str, actor: str, moved: int) -> None:
        """Record a move: the `move` entry in `room`'s chain, then a `move in` entry in `to`'s
        naming the seq and hash of that `move` entry (never the old room's name): `actor` is
        the host's identity (each room's pseudonyms name them)."""
        try:
            check_chain_name(room)
            check_chain_name(to)
            record = Record(Kind.MOVE, {"actor": self.pseudonyms.host(room, actor), "moved": moved})
        except EvidenceError:
            self._drop(room if _is_chain(room) else GATE_CHAIN, 1, UNRECORDABLE)
            return
        if len(self._queue) < self._bound:
            # (The record is kept with it: its id is never another's while it waits.)
            self._follow_ups[id(record)] = (record, to, self.pseudonyms.host(to, actor))
        self.record(room, record)

    def refused_join(self, room: str | None, network: str) -> None:
        """Count a join refused by a rate limit: per room (the gate's chain for none), network
        (the limiter's keyed hash of it) and minute; one entry each when the minute is over."""
        chain = room if room is not None and _is_chain(room) else GATE_CHAIN
        # The pseudonym is made when the minute is flushed: one hash per network, not per join.
        key = (chain, self._minute())
        networks = self._tallies.get(key)
        if networks is None:
            networks = self._tallies[key] = {}
        count = networks.get(network)
        if count is not None:
            networks[network] = count + 1
        elif len(networks) < ROOM_TALLIES and self._tallied < MAX_TALLIES:
            networks[network] = 1
            self._tallied += 1
        else:
            # Counted, not named: a flood from more networks than a minute's bound.
            self._untallied[key] = self._untallied.get(key, 0) + 1

    # Life

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="meetgate evidence recorder"
            )

    async def drain(self, seconds: float = DRAIN_SECONDS) -> int:
        """Stop the task, then append what is queued (and every minute counted) until nothing
        is left or `seconds` have passed: the stop of the gate begins with it, bounded by the
        stop's deadline. Returns how many records are not kept, and says it in the log. Records
        queued later (requests still finishing) wait for the next drain or `aclose`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._flush_tallies(everything=True)
        self._retry_at = 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                while self.queued or self._dropped:
                    await self._step()
                    if self.queued or self._dropped:
                        await asyncio.sleep(min(self._backoff, 0.2))
                        self._retry_at = 0.0
        left = self.queued + sum(self._dropped.values())
        if left:
            log.warning("evidence: %d record(s) not kept at the stop (the store was away)", left)
        self._log_dropped(force=True)
        return left

    async def aclose(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop, once what is queued (and every minute counted) is appended or `drain_seconds`
        have passed."""
        await self.drain(drain_seconds)
        if self._close_backend is not None:
            with contextlib.suppress(Exception):
                await self._close_backend()

    async def flush(self) -> None:
        """Append what is queued and every minute counted so far, now (tests, exports)."""
        self._flush_tallies(everything=True)
        self._retry_at = 0.0
        await self._step()

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._floods)

    # The task

    async def _run(self) -> None:
        while True:
            wait = TICK_SECONDS
            now = time.monotonic()
            if self._retry_at > now:
                await asyncio.sleep(self._retry_at - now)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
            self._wake.clear()
            try:
                self._flush_tallies(everything=False)
                await self._step()
                await self._sign_due()
            except Exception:
                # Nothing waits on this task: the log is where a fault shows, and it goes on.
                log.exception("evidence: recording failed")
                self._away()
            self._log_dropped()

    async def _step(self) -> None:
        """Append what is queued, oldest first, then say what was dropped; on a backend that is
        away, stop and try again after the backoff."""
        if self._retry_at > time.monotonic():
            return
        while self._queue or self._floods:
            # The hosts' records first: a flood's minute never delays a ban.
            queue = self._queue or self._floods
            chain, record, at = queue[0]
            if not await self._append(chain, record, at):
                return
            queue.popleft()
            self._appended_total += 1
            if self._follow_up is not None:
                # The new room's chain starts with where the old one moved.
                self._queue.appendleft(self._follow_up)
                self._queued_total += 1
                self._follow_up = None
            if (
                self._dropped
                and self._appended_total >= self._say_after
                and not await self._say_dropped()
            ):
                return
        if self._dropped:
            await self._say_dropped()

    async def _say_dropped(self) -> bool:
        """Append an `evidence lost` entry for each chain and reason with drops; False when the
        backend is away."""
        for key, count in list(self._dropped.items()):
            chain, reason = key
            record = Record(Kind.EVIDENCE_LOST, {"count": count, "reason": reason})
            if not await self._append(chain, record, self._clock(), gap=True):
                return False
            # Drops since the entry was sealed stay counted for the next.
            left = self._dropped.get(key, 0) - count
            if left > 0:
                self._dropped[key] = left
            else:
                self._dropped.pop(key, None)
        return True

    async def _append(self, chain: str, record: Record, at: float, *, gap: bool = False) -> bool:
        """True once appended (or refused for good: counted, unless it is itself a `gap`
        entry); False when the backend is away."""
        try:
            try:
                entry = await self.log.append(chain, record, at)
            except ChainRewound as lost:
                hole = Record(Kind.EVIDENCE_LOST, {"count": lost.lost, "reason": STORE_LOST})
                log.warning("evidence: %s; the gap is recorded", lost)
                await self.log.bridge(lost, hole)
                entry = await self.log.append(chain, record, at)
        except (StoreUnavailable, OSError):
            self._away()
            return False
        except ChainFull:
            if not gap:
                self._drop(chain, 1, CHAIN_FULL)
            return True
        except EvidenceError as exc:
            log.error("evidence: a %s record for %s is lost: %s", record.kind, chain, exc)
            if not gap:
                self._drop(chain, 1, UNRECORDABLE)
            return True
        self._backoff = BACKOFF_FIRST
        await self._confirm()
        follow = self._follow_ups.get(id(record))
        if follow is not None and follow[0] is record:
            del self._follow_ups[id(record)]
            _, to, actor = follow
            fields = {"actor": actor, "from_seq": entry.seq, "from_hash": entry.hash}
            # Next in line once this record leaves the queue (`_step`).
            self._follow_up = (to, Record(Kind.MOVE_IN, fields), at)
        return True

    async def _confirm(self) -> None:
        """Wait for a replica of the store to hold what was appended (the store's primary may
        fail over to a replica that lacks it: a loss only the seqs would show); asked twice,
        then said in the log (a minute's count), the record kept as appended."""
        for _ in range(2):
            try:
                if await self.log.replicated():
                    return
            except (StoreUnavailable, OSError):
                pass
        self._unreplicated += 1
        now = time.monotonic()
        if now - self._unreplicated_logged_at >= LOG_EVERY_SECONDS:
            log.warning(
                "evidence: %d append(s) not acknowledged by a replica of the store in time: a"
                " failover now could lose them (an export would then fail at the gap)",
                self._unreplicated,
            )
            self._unreplicated, self._unreplicated_logged_at = 0, now

    async def _sign_due(self) -> None:
        with contextlib.suppress(StoreUnavailable, OSError, EvidenceError):
            await self.log.sign_due()

    def _away(self) -> None:
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MOST)

    def _minute(self) -> str:
        # Written once a minute, not once a refused join (a flood's cost is per join).
        number = int(self._clock() // 60)
        if number != self._minute_number:
            self._minute_number, self._minute_text = number, minute(number * 60)
        return self._minute_text

    def _flush_tallies(self, *, everything: bool) -> None:
        """Queue each room's minute that is over (or every one): a `flood refused` entry for each
        of the FLOOD_NETWORKS networks that sent the most, and one `flood refused, other
        networks` entry for the rest."""
        current = self._minute()
        for named in [k for k in self._names if everything or k[3] != current]:
            room, network, reason, when = named
            named_fields: dict[str, object] = {
                "network": self.pseudonyms.network(room, network),
                "reason": reason,
                "minute": when,
                "count": min(self._names.pop(named), MAX_COUNT),
            }
            try:
                self.record(room, Record(Kind.NAME_REFUSED, named_fields))
            except EvidenceError:
                self._drop(room, 1, UNRECORDABLE)
        over = {k for k in (*self._tallies, *self._untallied) if everything or k[1] != current}
        for key in sorted(over):
            chain, when = key
            networks = self._tallies.pop(key, {})
            self._tallied -= len(networks)
            ranked = sorted(networks.items(), key=lambda item: (-item[1], item[0]))
            for network, count in ranked[:FLOOD_NETWORKS]:
                pseudonym = self.pseudonyms.network(chain, network)
                fields: dict[str, object] = {
                    "network": pseudonym,
                    "minute": when,
                    "count": min(count, MAX_COUNT),
                }
                self.record(chain, Record(Kind.FLOOD_REFUSED, fields))
            rest = ranked[FLOOD_NETWORKS:]
            untallied = self._untallied.pop(key, 0)
            if rest or untallied:
                # Networks past the bounds are counted among the attempts, not the networks.
                others = {
                    "minute": when,
                    "networks": min(len(rest), MAX_COUNT),
                    "count": min(sum(count for _, count in rest) + untallied, MAX_COUNT),
                }
                self.record(chain, Record(Kind.FLOOD_OTHERS, others))

    def _drop(self, chain: str, count: int, reason: str) -> None:
        key = (chain, reason)
        self._dropped[key] = self._dropped.get(key, 0) + count
        self._say_after = self._queued_total
        self._count_dropped(count, reason)

    def _count_dropped(self, count: int, reason: str) -> None:
        self._unlogged += count
        if self._metrics is not None:
            self._metrics.evidence_dropped.inc(count, reason=reason)

    def _log_dropped(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._unlogged and (force or now - self._logged_at >= LOG_EVERY_SECONDS):
            log.warning(
                "evidence: %d record(s) dropped since the last report (queue full while the"
                " store was away, or values no entry may hold)",
                self._unlogged,
            )
            self._unlogged, self._logged_at = 0, now


def _is_chain(name: str) -> bool:
    try:
        check_chain_name(name)
    except EvidenceError:
        return False
    return True
