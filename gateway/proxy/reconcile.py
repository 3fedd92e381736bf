"""Reconciliation: this replica's open connections checked against the store, so that a cut
that never arrived (a message published while the pub/sub connection was re-established, a
silent partition, an admission that simply expired) is applied within one interval.

The gate sweeps on every (re)subscription to the cut channel, after Redis confirmed it and
before its messages are read, and every `[revocation] reconcile_seconds`. An admission's
connections are cut when the store says it is revoked, expired or gone (a record that does not
parse reads as gone), when its room is gone, or when its identity is banned from the meeting (a
ban is written before the host's revocations of that identity's admissions, and a lobby ban
revokes none); its signalling connection alone goes when another holds its lease.

A store that cannot answer cuts nothing: running meetings stay up (docs/operations.md), and the
sweep is tried again after `retry_seconds` instead of a whole interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.proxy.leases import REPLACED, SignallingLeases
from gateway.proxy.registry import ConnectionRegistry, SignallingSlot
from gateway.store import Store
from gateway.store.records import Admission, Room

log = logging.getLogger("meetgate.reconcile")

# Store calls a sweep has in flight at once: a replica with thousands of connections is swept
# in a few round trips' time without taking the whole connection pool from the joins.
CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Sweep:
    """One reconciliation: admissions checked, admissions cut, and admissions the store did not
    answer for (left as they were, checked again soon)."""

    checked: int
    cut: int
    unanswered: int


class Reconciler:
    def __init__(
        self,
        store: Store,
        registry: ConnectionRegistry,
        metrics: Metrics,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        *,
        interval_seconds: float,
        retry_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._registry = registry
        self._metrics = metrics
        # Closes run in the background: one slow peer must not hold up the sweep.
        self._spawn = spawn
        self.leases = SignallingLeases(store)
        self.interval_seconds = interval_seconds
        self._retry_seconds = min(retry_seconds, interval_seconds)
        self._lock = asyncio.Lock()
        self._last: Sweep | None = None

    def next_wait(self) -> float:
        """Seconds until the next periodic sweep: sooner after one the store left unfinished."""
        if self._last is not None and self._last.unanswered:
            return self._retry_seconds
        return self.interval_seconds

    async def run_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.next_wait())
            try:
                await self.sweep()
            except Exception:
                # A bug must not end the bound on every later revocation.
                log.exception("reconciliation failed")

    async def sweep(self) -> Sweep:
        """Check every admission with a connection here against the store; cut what must go."""
        async with self._lock:
            result = await self._sweep(time.time())
        if result.unanswered and not (self._last and self._last.unanswered):
            log.warning(
                "reconciliation: the store did not answer for %d of %d admissions; their "
                "connections stay up, retrying every %.1fs",
                result.unanswered,
                result.checked,
                self._retry_seconds,
            )
        elif self._last is not None and self._last.unanswered and not result.unanswered:
            log.info("reconciliation: every admission checked again")
        self._last = result
        return result

    async def _sweep(self, now: float) -> Sweep:
        ids = self._registry.admission_ids()
        slots = {admission_id: self._registry.signalling(admission_id) for admission_id in ids}
        rooms: dict[str, asyncio.Task[Room | None]] = {}
        limit = asyncio.Semaphore(CONCURRENCY)

        def room(name: str) -> asyncio.Task[Room | None]:
            # One read per room, shared by its admissions.
            if name not in rooms:
                rooms[name] = asyncio.ensure_future(self._store.get_room(name))
            return rooms[name]

        async def verdict(admission_id: str) -> str | None:
            async with limit:
                admission = await self._store.get_admission(admission_id)
                reason = await self._reason(admission, now, room)
                slot = slots[admission_id]
                if reason is None and admission is not None and slot is not None:
                    await self._keep_lease(admission, slot, now)
                return reason

        verdicts = await asyncio.gather(*(verdict(i) for i in ids), return_exceptions=True)
        cut = unanswered = 0
        for admission_id, outcome in zip(ids, verdicts, strict=True):
            if isinstance(outcome, StoreUnavailable):
                unanswered += 1
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome is not None:
                cut += 1
                self._metrics.revocations.inc(reason=f"reconciled: {outcome}")
                self._spawn(self._registry.close_admission(admission_id, outcome))
        return Sweep(checked=len(ids), cut=cut, unanswered=unanswered)

    async def _reason(
        self,
        admission: Admission | None,
        now: float,
        room: Callable[[str], Awaitable[Room | None]],
    ) -> str | None:
        """Why this admission's connections must be cut, or None while it is live."""
        if admission is None:
            return "ended"
        if admission.revoked:
            return "revoked"
        if now >= admission.expires_at:
            return "expired"
        found = await room(admission.room)
        if found is None:
            return "room deleted"
        if await self._store.is_banned(found.ban_scope, admission.identity, now):
            return "banned"
        return None

    async def claim(self, admission: Admission, slot: SignallingSlot) -> None:
        """Write a newly opened signalling connection into its admission's lease (in the
        background of the connection); a store that cannot answer leaves it to the next
        sweep."""
        try:
            await self._claim(admission, slot, time.time())
        except StoreUnavailable:
            log.info("signalling lease not written (store unavailable); the next sweep writes it")

    async def _claim(self, admission: Admission, slot: SignallingSlot, now: float) -> None:
        if await self.leases.claim(admission, slot, now):
            slot.claimed = True
        elif self._registry.signalling(admission.id) is slot:
            self._drop(admission.id, slot)

    async def _keep_lease(self, admission: Admission, slot: SignallingSlot, now: float) -> None:
        if not slot.claimed:
            await self._claim(admission, slot, now)
            return
        stored = await self.leases.current(admission.id)
        # No lease at all (the store lost it): nobody newer has claimed it, so this one stays.
        other = stored.corrupt or (stored.lease is not None and stored.lease.holder != slot.holder)
        if other and self._registry.signalling(admission.id) is slot:
            self._drop(admission.id, slot)

    def _drop(self, admission_id: str, slot: SignallingSlot) -> None:
        self._registry.unregister(admission_id, slot.connection)
        self._metrics.revocations.inc(reason="replaced")
        self._spawn(slot.connection.close(REPLACED))
