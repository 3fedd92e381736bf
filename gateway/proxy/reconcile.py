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
sweep is tried again after `retry_seconds` instead of a whole interval. After each periodic
sweep the store's housekeeping runs what is due (gateway/store/housekeeping.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.proxy.leases import REPLACED, SignallingLeases, lease_key
from gateway.proxy.registry import ConnectionRegistry, SignallingSlot
from gateway.store import Store
from gateway.store.continuity import check_memory
from gateway.store.housekeeping import Housekeeping
from gateway.store.records import Admission, Room

log = logging.getLogger("meetgate.reconcile")

# Reasons a store that lost its memory would give for what it forgot.
FORGETTABLE = frozenset({"ended", "room deleted"})
# Admissions judged per batch: a few pipelined round trips each, small enough that a replica
# with thousands of connections never holds the event loop long on one reply.
BATCH = 200


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
        housekeeping: Housekeeping | None = None,
    ) -> None:
        self._store = store
        self._housekeeping = housekeeping
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
            if self._housekeeping is not None:
                try:
                    await self._housekeeping.run_due()
                except StoreUnavailable:
                    pass  # still due: tried again after the next sweep
                except Exception:
                    log.exception("the store's housekeeping failed")

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
        rooms: dict[str, Room | None] = {}
        cut = unanswered = 0
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            try:
                reasons = await self._judge(batch, rooms, now)
            except StoreUnavailable:
                unanswered += len(batch)
                continue
            for admission_id, reason in reasons.items():
                if reason is not None:
                    cut += 1
                    self._metrics.revocations.inc(reason=f"reconciled: {reason}")
                    self._spawn(self._registry.close_admission(admission_id, reason))
        return Sweep(checked=len(ids), cut=cut, unanswered=unanswered)

    async def _judge(
        self, ids: list[str], rooms: dict[str, Room | None], now: float
    ) -> dict[str, str | None]:
        """Why each admission's connections must be cut (None: it is live), in a few round
        trips for the whole batch; a live admission's signalling lease is checked on the way.
        StoreUnavailable if the store did not answer: nothing is judged then."""
        admissions = await self._store.get_admissions(ids)
        reasons = {i: self._record_reason(a, now) for i, a in zip(ids, admissions, strict=True)}
        # Paired with the ids the registry files them under, whatever a record says.
        live = [(i, a) for i, a in zip(ids, admissions, strict=True) if a and not reasons[i]]
        unread = sorted({a.room for _, a in live} - rooms.keys())
        found = await asyncio.gather(*(self._store.get_room(name) for name in unread))
        rooms.update(zip(unread, found, strict=True))
        scopes: list[tuple[str, Admission, str]] = []
        for admission_id, admission in live:
            room = rooms[admission.room]
            if room is None:
                reasons[admission_id] = "room deleted"
            else:
                scopes.append((admission_id, admission, room.ban_scope))
        bans = [(scope, admission.identity) for _, admission, scope in scopes]
        banned = await self._store.are_banned(bans, now)
        kept: list[tuple[str, Admission, SignallingSlot]] = []
        for (admission_id, admission, _), is_banned in zip(scopes, banned, strict=True):
            if is_banned:
                reasons[admission_id] = "banned"
            elif (slot := self._registry.signalling(admission_id)) is not None:
                kept.append((admission_id, admission, slot))
        claimed = [(i, slot) for i, _, slot in kept if slot.claimed]
        stored = await self._store.get_values([lease_key(i) for i, _ in claimed])
        for (admission_id, slot), raw in zip(claimed, stored, strict=True):
            self._keep_lease(admission_id, slot, raw)
        for _, admission, slot in kept:
            if not slot.claimed:
                # Its claim failed when it opened: written now (or at the next sweep).
                with contextlib.suppress(StoreUnavailable):
                    await self._claim(admission, slot, now)
        # Asked after the reads: a store that lost its memory may have forgotten an admission
        # or a room, not ended it; their connections stay up (docs/operations.md).
        if FORGETTABLE & set(reasons.values()) and await check_memory(self._store):
            return {i: None if r in FORGETTABLE else r for i, r in reasons.items()}
        return reasons

    @staticmethod
    def _record_reason(admission: Admission | None, now: float) -> str | None:
        if admission is None:
            return "ended"  # deleted, expired with its key, or a record that does not parse
        if admission.revoked:
            return "revoked"
        if now >= admission.expires_at:
            return "expired"
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

    def _keep_lease(self, admission_id: str, slot: SignallingSlot, raw: str | None) -> None:
        stored = SignallingLeases.read(raw)
        # No lease at all (the store lost it): nobody newer has claimed it, so this one stays.
        other = stored.corrupt or (stored.lease is not None and stored.lease.holder != slot.holder)
        if other and self._registry.signalling(admission_id) is slot:
            self._drop(admission_id, slot)

    def _drop(self, admission_id: str, slot: SignallingSlot) -> None:
        self._registry.unregister(admission_id, slot.connection)
        self._metrics.revocations.inc(reason="replaced")
        self._spawn(slot.connection.close(REPLACED))
