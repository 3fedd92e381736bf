"""One signalling session per admission across all replicas: a lease in the store.

The newer session replaces the older, as a replica's registry does locally. A replica that
opens a signalling connection writes it into the admission's lease (`claim`) and, if another
holder had it, publishes a cut that closes the admission's signalling everywhere but at the new
holder; a replica that finds at its reconciliation that the lease names another holder closes
its own (`current`), so a lost message delays the replacement by one interval, never longer.

A lease lives as long as its admission. Its value is `<opened_at> <holder>`: a claim that comes
late (a store outage held it up) does not displace a holder that opened after it did.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cuts import Cut
from gateway.proxy.registry import SignallingSlot
from gateway.store import Store
from gateway.store.records import Admission

LEASE_PREFIX = "signalling-lease:"
REPLACED = "replaced by a newer connection"


def lease_key(admission_id: str) -> str:
    return LEASE_PREFIX + admission_id


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    opened_at: float

    def encode(self) -> str:
        return f"{self.opened_at!r} {self.holder}"

    @classmethod
    def decode(cls, raw: str) -> Lease | None:
        opened_at, _, holder = raw.partition(" ")
        try:
            when = float(opened_at)
        except ValueError:
            return None
        if not holder or when != when:  # NaN
            return None
        return cls(holder=holder, opened_at=when)


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store says of a lease: no lease, a holder, or a value that does not parse
    (`corrupt`, a refusal: the slot that reads it goes, and the next claim rewrites it)."""

    lease: Lease | None
    corrupt: bool = False


class SignallingLeases:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def current(self, admission_id: str) -> Stored:
        return self.read(await self._store.get_value(lease_key(admission_id)))

    @staticmethod
    def read(raw: str | None) -> Stored:
        """A lease's stored value (`get_value` of its `lease_key`) as a Stored."""
        if raw is None:
            return Stored(None)
        lease = Lease.decode(raw)
        return Stored(lease, corrupt=lease is None)

    async def claim(self, admission: Admission, slot: SignallingSlot, now: float) -> bool:
        """Write `slot` into the admission's lease and tell the other replicas; False (and
        nothing written) if a holder that opened later has it: `slot` is the older, and goes.
        StoreUnavailable if the store cannot answer (the next reconciliation claims again)."""
        ttl = admission.expires_at - now
        if ttl <= 0:
            return True  # the reconciliation cuts an expired admission whole
        mine = Lease(slot.holder, slot.opened_at)
        stored = await self.current(admission.id)
        other = stored.lease is not None and stored.lease.holder != mine.holder
        if other and stored.lease is not None and stored.lease.opened_at > mine.opened_at:
            return False
        await self._store.put_value(lease_key(admission.id), mine.encode(), ttl)
        if other or stored.corrupt:
            await Cut(admission.id, REPLACED, keep=mine.holder).send(self._store)
        return True
