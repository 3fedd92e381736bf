"""The live-connection registry: every open proxied WebSocket, filed under the admission it uses.

A later revocation closes them by admission id; a new signalling session replaces the old one.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class LiveConnection(Protocol):
    @property
    def signalling(self) -> bool: ...

    async def close(self, reason: str) -> None:
        """End the connection: cleanly toward the upstream first, then toward the browser."""


class ConnectionRegistry:
    def __init__(self) -> None:
        self._by_admission: dict[str, set[LiveConnection]] = {}

    def register(self, admission_id: str, connection: LiveConnection) -> list[LiveConnection]:
        """File `connection`; return the signalling connections it replaces (caller closes them)."""
        live = self._by_admission.setdefault(admission_id, set())
        replaced = [c for c in live if c.signalling] if connection.signalling else []
        for old in replaced:
            live.discard(old)
        live.add(connection)
        return replaced

    def unregister(self, admission_id: str, connection: LiveConnection) -> None:
        live = self._by_admission.get(admission_id)
        if live is None:
            return
        live.discard(connection)
        if not live:
            del self._by_admission[admission_id]

    def connections(self, admission_id: str) -> list[LiveConnection]:
        return list(self._by_admission.get(admission_id, ()))

    def admission_ids(self) -> list[str]:
        return list(self._by_admission)

    def count(self, admission_id: str) -> int:
        return len(self._by_admission.get(admission_id, ()))

    def total(self) -> int:
        return sum(len(live) for live in self._by_admission.values())

    async def close_admission(self, admission_id: str, reason: str) -> int:
        """Close every connection of one admission; returns how many were open."""
        live = self._by_admission.pop(admission_id, set())
        await asyncio.gather(*(c.close(reason) for c in live), return_exceptions=True)
        return len(live)
