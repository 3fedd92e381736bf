"""Whether the store still remembers what this replica has seen it hold.

A Redis that restarts without its data (persistence off, a lost volume), or from an older
snapshot, forgets bans, revocations and locks without a word: a banned troll would simply be let
in again. So the store keeps a marker, `<epoch>:<generation>:<ok|lost>`: a random epoch written
when the first replica finds no marker (and anew with each loss), and a generation every replica
raises by one at each check (every `CHECK_SECONDS`). Each replica remembers the last marker it
saw. The store has lost its memory when a replica that has seen a marker finds none, one of
another epoch, one whose generation went back (a rollback), or one that does not parse. The
replica then writes the loss into the marker itself (`lost`), so every replica, `meetgate doctor`
and the admin API agree, and it stays so until an admin acknowledges it (`acknowledge_loss`),
whatever replicas start or stop meanwhile.

A loss is written under a new epoch, and only an acknowledgement turns a `lost` marker into an
`ok` one of the same epoch: so an `ok` marker of the epoch a replica knows as lost can only be an
admin's acknowledgement. Keeping the old epoch (as the previous release did) let any `ok` marker of
that epoch pass for one: in a split brain (two masters taking writes), a replica alternating
between the master it marked lost and the other, whose marker other replicas kept advancing as
`ok`, cleared the loss and admitted joins at every switch. The marker's shape is unchanged, so
replicas of both releases read each other's markers.

What it cannot see (docs/operations.md): a loss while no replica runs (a replica that starts
against a store without a marker takes it for a new store), and writes lost from less than one
check before a rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway.errors import StoreUnavailable

if TYPE_CHECKING:
    from gateway.store import Store

log = logging.getLogger("meetgate.store")

# How often each replica checks (and advances) the marker.
CHECK_SECONDS: Final = 1.0
# While the loss is not acknowledged, the log says so again this often.
REMINDER_SECONDS: Final = 300.0
# How often an acknowledgement retries its compare-and-set against other replicas' checks.
_ACKNOWLEDGE_ATTEMPTS: Final = 20

_MARKER: Final = re.compile(r"([0-9a-f]{32}):(0|[1-9][0-9]{0,15}):(ok|lost)")


@dataclass(frozen=True, slots=True)
class Marker:
    """The store's memory marker: its epoch, how many checks it has seen, and whether a loss of
    memory was found and not yet acknowledged."""

    epoch: str
    generation: int
    lost: bool

    @classmethod
    def fresh(cls, *, lost: bool) -> Marker:
        return cls(secrets.token_hex(16), 0, lost)

    def encode(self) -> str:
        return f"{self.epoch}:{self.generation}:{'lost' if self.lost else 'ok'}"


def parse_marker(text: str) -> Marker | None:
    """The marker `text` holds, or None if it does not have the marker's exact shape."""
    match = _MARKER.fullmatch(text)
    if match is None:
        return None
    epoch, generation, state = match.groups()
    return Marker(epoch, int(generation), state == "lost")


class Continuity:
    """This replica's view of the store's memory: the last marker seen, and whether the store is
    known to have lost its memory (then joins and refreshes are refused)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.lost = False
        self.reason = ""
        self._known: Marker | None = None
        # A loss found here that is not yet written into the store's marker.
        self._pending = False
        self._reminded = 0.0
        # One check at a time: two of this replica's advances judged out of order would look
        # like a rollback.
        self.checking = asyncio.Lock()

    def if_absent(self) -> Marker:
        """The marker to write when the store has none: a new store's, or, once this replica has
        seen a marker, a lost one."""
        return Marker.fresh(lost=self._known is not None or self.lost)

    def observe(self, raw: str, created: bool) -> Marker | None:
        """Judge the marker as a check left it (`created`: written from `if_absent()`); return the
        marker to put in place of `raw` when this replica found a loss the store does not yet
        show, else None."""
        marker = parse_marker(raw)
        if marker is None:
            return self._found("its memory marker does not parse", Marker.fresh(lost=True))
        known = self._known
        if marker.lost:
            reason = (
                "its memory marker is gone: it restarted without its data or was emptied"
                if created
                else "its memory marker says so (found by a replica, not yet acknowledged)"
            )
            if known is not None and not known.lost and marker.epoch == known.epoch:
                # A loss under an epoch this replica saw `ok`: an older copy from before an
                # acknowledgement, or a loss the previous release wrote (it kept the epoch). `ok`
                # markers of that epoch may be about (another master's): give it an epoch of its
                # own, so that none of them passes for its acknowledgement.
                return self._found(reason, Marker.fresh(lost=True))
            self._known, self._pending = marker, False
            self._lose(reason)
            return None
        if created:
            self._known = marker
            log.info(
                "store %s had no memory marker: wrote one, so that a loss of its data is noticed",
                self.address,
            )
            return None
        if self.lost:
            # Only an acknowledgement writes an `ok` marker of a lost marker's epoch (each loss
            # gets an epoch of its own), raising its generation; the same epoch with a generation
            # not past the lost one's is an older copy of the store again. An `ok` marker of any
            # other epoch (another master's, in a split brain) acknowledges nothing.
            acknowledged = (
                known is not None
                and known.lost
                and marker.epoch == known.epoch
                and marker.generation > known.generation
            )
            if acknowledged and not self._pending:
                self._known = marker
                self._clear()
                return None
            return self._found(self.reason, Marker.fresh(lost=True))
        if known is None:
            self._known = marker
            return None
        if marker.epoch != known.epoch:
            return self._found(
                "its memory marker is not the one it held: it was emptied or replaced",
                Marker.fresh(lost=True),
            )
        if marker.generation <= known.generation:
            return self._found(
                f"its memory marker went back from generation {known.generation} to"
                f" {marker.generation}: it was restored from an older copy",
                Marker.fresh(lost=True),
            )
        self._known = marker
        return None

    def reported(self, written: bool) -> None:
        """Whether the loss `observe` asked for was written into the store."""
        if written:
            self._pending = False

    def remind(self) -> None:
        """Say again, now and then, that the loss waits for an admin."""
        if self.lost and time.monotonic() - self._reminded >= REMINDER_SECONDS:
            self._reminded = time.monotonic()
            log.error(
                "store %s lost its memory (%s) and no admin has acknowledged it: joins, ticket"
                " refreshes and new signalling connections are refused; check the bans, then run"
                " `meetgate store acknowledge-loss`",
                self.address,
                self.reason,
            )

    def _found(self, reason: str, report: Marker) -> Marker:
        self._known, self._pending = report, True
        self._lose(reason)
        return report

    def _lose(self, reason: str) -> None:
        if self.lost:
            return
        self.lost, self.reason = True, reason
        self._reminded = time.monotonic()
        log.error(
            "store %s lost its memory (%s): bans, revocations and locks may be forgotten, so"
            " joins, ticket refreshes and new signalling connections are refused until an admin"
            " acknowledges it (`meetgate store acknowledge-loss`); open meetings keep their"
            " sockets",
            self.address,
            reason,
        )

    def _clear(self) -> None:
        self.lost, self.reason = False, ""
        log.warning(
            "store %s: the loss of its memory was acknowledged; joins are admitted again",
            self.address,
        )


async def check_memory(store: Store) -> bool:
    """Advance the store's marker and judge it; write a loss found here into it. True if the
    store's memory is lost. StoreUnavailable if the store cannot answer (nothing changes)."""
    continuity = store.continuity
    async with continuity.checking:
        raw, created = await store.advance_marker(continuity.if_absent().encode())
        report = continuity.observe(raw, created)
        if report is not None:
            continuity.reported(await store.replace_marker(raw, report.encode()))
    return continuity.lost


async def watch_memory(store: Store, interval_seconds: float = CHECK_SECONDS) -> None:
    """Check the store's memory every `interval_seconds`, for as long as the task runs."""
    while True:
        # The store's health logs an outage; the marker is judged when it answers again.
        with contextlib.suppress(StoreUnavailable):
            await check_memory(store)
        store.continuity.remind()
        await asyncio.sleep(interval_seconds)


async def acknowledge_loss(store: Store) -> str | None:
    """An admin's word that the store's lost memory has been dealt with: joins are admitted again
    on every replica (at its next check). Return how the loss was found, or None if the store's
    memory was not lost."""
    await check_memory(store)
    reason = store.continuity.reason or "found by another replica"
    for _ in range(_ACKNOWLEDGE_ATTEMPTS):
        raw = await store.read_marker()
        marker = parse_marker(raw) if raw is not None else None
        if raw is None or marker is None or not marker.lost:
            return None
        accepted = dataclasses.replace(marker, generation=marker.generation + 1, lost=False)
        if await store.replace_marker(raw, accepted.encode()):
            await check_memory(store)
            return reason
    # Other replicas' checks kept changing the marker between the read and the write.
    raise StoreUnavailable()
