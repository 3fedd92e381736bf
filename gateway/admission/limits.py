"""Which rate limits a join attempt is charged against, and how hard the gate is being pushed.

Every admission route charges its attempt before any other work: one atomic store call checks
and charges every key that applies (address, its /24 or /64, room, identity, invite, the whole
gate). Rejections are counted per room and gate-wide; that pressure switches on proof-of-work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.client_address import network_of
from gateway.errors import RateLimited
from gateway.metrics import Metrics
from gateway.settings import Rate, RateSettings
from gateway.store import Store
from gateway.store.records import LimitCharge

PRESSURE_WINDOW_SECONDS = 10
# A replica re-reads pressure at most this often: a flood must not double its own cost.
PRESSURE_CACHE_SECONDS = 1.0
GATE = "gate"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What is known about a join attempt when it is charged."""

    client_addr: str
    room: str | None = None
    identity: str | None = None
    invite: str | None = None


class RateLimiter:
    def __init__(self, store: Store, rates: RateSettings, metrics: Metrics) -> None:
        self._store = store
        self._rates = rates
        self._metrics = metrics
        self._pressure: dict[str, tuple[float, int]] = {}
        self._defaults: dict[str, Rate] = {
            "address": rates.address,
            "network": rates.network,
            "gate": rates.gate,
            "room": rates.room,
            "identity": rates.identity,
            "invite": rates.invite,
        }

    def _rate(self, name: str, room: str | None) -> Rate:
        override = self._rates.rooms.get(room) if room else None
        chosen: Rate | None = getattr(override, name, None)
        return chosen or self._defaults[name]

    def charges(self, attempt: Attempt) -> list[LimitCharge]:
        room = attempt.room
        wanted: list[tuple[str, str]] = [
            ("address", f"addr:{attempt.client_addr}"),
            ("network", f"net:{network_of(attempt.client_addr)}"),
        ]
        if room is not None:
            # Only attempts that lead to a room share the gate-wide budget: a flood of bogus
            # links from many networks must not use up the real attendees' share of it.
            wanted.append(("gate", GATE))
            wanted.append(("room", f"room:{room}"))
        if attempt.identity is not None:
            wanted.append(("identity", f"id:{attempt.identity}"))
        if attempt.invite is not None:
            wanted.append(("invite", f"invite:{attempt.invite}"))
        charges = []
        for name, key in wanted:
            rate = self._rate(name, room)
            charges.append(LimitCharge(key=key, rate_per_second=rate.per_second, burst=rate.burst))
        return charges

    async def charge(self, attempt: Attempt) -> None:
        """Charge the attempt; RateLimited (with the wait) if any limit is exhausted."""
        decision = await self._store.charge_limits(self.charges(attempt))
        if decision.allowed:
            return
        await self.note_rejection(attempt.room, "rate_limited")
        raise RateLimited(decision.retry_after)

    async def note_rejection(self, room: str | None, reason: str) -> None:
        """Count a refused attempt: in the metrics, and in the pressure that switches on
        proof-of-work for its room and, in numbers, for the whole gate."""
        self._metrics.rejections.inc(reason=reason)
        await self._store.count_recent(f"reject:{GATE}", PRESSURE_WINDOW_SECONDS)
        if room is not None:
            await self._store.count_recent(f"reject:room:{room}", PRESSURE_WINDOW_SECONDS)

    async def pressure(self, room: str | None) -> int:
        """Rejections in the current 10-second window: the room's, or the whole gate's."""
        key = f"reject:room:{room}" if room else f"reject:{GATE}"
        now = time.monotonic()
        cached = self._pressure.get(key)
        if cached is not None and now - cached[0] < PRESSURE_CACHE_SECONDS:
            return cached[1]
        value = await self._store.read_recent(key, PRESSURE_WINDOW_SECONDS)
        if len(self._pressure) > 10_000:
            self._pressure.clear()
        self._pressure[key] = (now, value)
        self._metrics.pressure.set(value, room=room or GATE)
        return value
