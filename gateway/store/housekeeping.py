"""The store's periodic tidying, run by the gate's reconciliation loop: every room's audit
entries past the retention purged once an hour, and the store asked once a day to rewrite what
it keeps on disk, so that what expired leaves Redis's append-only file (docs/privacy.md). Of
all replicas, one does each (a claim in the store), whichever comes first."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.store import Compaction, Store

log = logging.getLogger("meetgate.store")

PURGE_SECONDS: Final = 3_600
COMPACT_SECONDS: Final = 86_400


@dataclass(frozen=True, slots=True)
class Tidied:
    """What one `run_due` did: audit entries purged (None: no purge was due to this replica),
    and what became of a compaction (None: none was due to it)."""

    purged: int | None = None
    compaction: Compaction | None = None


class Housekeeping:
    """`retention_seconds`: how long an audit entry is kept after its time. `clock`: the wall
    clock, in seconds."""

    def __init__(
        self, store: Store, retention_seconds: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._retention = retention_seconds
        self._clock = clock
        self._purged_in: int | None = None  # the hour this replica last saw to
        self._compacted_on: int | None = None  # the day likewise
        self._refusal_told = False

    async def run_due(self) -> Tidied:
        """Do what is due and not yet done by any replica; StoreUnavailable leaves it due."""
        now = self._clock()
        purged = compaction = None
        hour = int(now // PURGE_SECONDS)
        if hour != self._purged_in:
            if await self._store.claim_once(f"housekeeping:audit:{hour}", PURGE_SECONDS):
                purged = await self._store.purge_audit(None, now - self._retention)
            self._purged_in = hour
        day = int(now // COMPACT_SECONDS)
        if day != self._compacted_on:
            if await self._store.claim_once(f"housekeeping:compact:{day}", COMPACT_SECONDS):
                compaction = await self._store.compact()
                self._tell(compaction)
            self._compacted_on = day
        return Tidied(purged, compaction)

    def _tell(self, compaction: Compaction) -> None:
        if compaction is Compaction.REFUSED and not self._refusal_told:
            self._refusal_told = True
            log.warning(
                "the store refused BGREWRITEAOF (renamed, not allowed, or already running): "
                "expired data stays in its append-only file until Redis rewrites it; see "
                "docs/privacy.md"
            )
        elif compaction is Compaction.STARTED:
            self._refusal_told = False
