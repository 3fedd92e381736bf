"""The live-connection registry: every open proxied WebSocket, BOSH session and relayed request
of this replica, filed under the admission it uses.

A later revocation closes them by admission id; a new signalling session replaces the old one
here at once, and across replicas through the signalling lease (gateway/proxy/leases.py), whose
holder the registry names for each admission's one signalling connection.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Protocol


class LiveConnection(Protocol):
    @property
    def signalling(self) -> bool: ...

    async def close(self, reason: str) -> None:
        """End the connection: cleanly toward the upstream first, then toward the browser."""


@dataclass(slots=True)
class SignallingSlot:
    """An admission's one signalling connection on this replica, and the lease holder it is:
    a WebSocket is one of its own, a BOSH session is its sid (its requests may reach any
    replica, and are one session on each). `claimed` once its lease is written in the store."""

    connection: LiveConnection
    holder: str
    opened_at: float
    claimed: bool = False


class ConnectionRegistry:
    def __init__(self, replica: str | None = None) -> None:
        # Names this replica's WebSockets in the store's leases: unique among the replicas.
        self.replica = replica or secrets.token_hex(8)
        self._by_admission: dict[str, set[LiveConnection]] = {}
        self._signalling: dict[str, SignallingSlot] = {}
        self._numbers = itertools.count(1)

    def register(
        self, admission_id: str, connection: LiveConnection, holder: str | None = None
    ) -> list[LiveConnection]:
        """File `connection`; return the signalling connections it replaces (caller closes them).
        A signalling connection is its admission's lease `holder` (by default, a name of its
        own on this replica)."""
        live = self._by_admission.setdefault(admission_id, set())
        replaced = [c for c in live if c.signalling] if connection.signalling else []
        for old in replaced:
            live.discard(old)
        live.add(connection)
        if connection.signalling:
            self._signalling[admission_id] = SignallingSlot(
                connection,
                holder or f"ws:{self.replica}:{next(self._numbers)}",
                time.time(),
            )
        return replaced

    def unregister(self, admission_id: str, connection: LiveConnection) -> None:
        slot = self._signalling.get(admission_id)
        if slot is not None and slot.connection is connection:
            del self._signalling[admission_id]
        live = self._by_admission.get(admission_id)
        if live is None:
            return
        live.discard(connection)
        if not live:
            del self._by_admission[admission_id]

    def connections(self, admission_id: str) -> list[LiveConnection]:
        return list(self._by_admission.get(admission_id, ()))

    def signalling(self, admission_id: str) -> SignallingSlot | None:
        """The admission's signalling connection on this replica, if it has one open."""
        return self._signalling.get(admission_id)

    def admission_ids(self) -> list[str]:
        return list(self._by_admission)

    def every(self) -> list[LiveConnection]:
        """Every connection filed here, of every admission."""
        return [c for live in self._by_admission.values() for c in live]

    def count(self, admission_id: str) -> int:
        return len(self._by_admission.get(admission_id, ()))

    def total(self) -> int:
        return sum(len(live) for live in self._by_admission.values())

    async def close_admission(self, admission_id: str, reason: str) -> int:
        """Close every connection of one admission; returns how many were open."""
        live = self._by_admission.pop(admission_id, set())
        self._signalling.pop(admission_id, None)
        await asyncio.gather(*(c.close(reason) for c in live), return_exceptions=True)
        return len(live)

    def drop_signalling(self, admission_id: str, *, keep: str) -> LiveConnection | None:
        """Unfile the admission's signalling connection here unless it is the lease holder
        `keep`; return it for the caller to close (None if there was none to drop)."""
        slot = self._signalling.get(admission_id)
        if slot is None or slot.holder == keep:
            return None
        self.unregister(admission_id, slot.connection)
        return slot.connection
