"""Which rate limits a join attempt is charged against, and how hard the gate is being pushed.

Every admission route charges its attempt before any other work: one atomic store call checks
and charges every key that applies (address, its /24 or /64, room, identity, invite, the whole
gate; for a registration, the room's registration key instead of the room's and the gate's).
The store sees an address or a network only as the day's keyed hash of it
(gateway/admission/address_keys.py). Rejections are counted per room and gate-wide; that
pressure switches on proof-of-work. A registration's refusals are counted apart, by room only
(`reject:register:<room>`): a registration flood asks proof of that room's registration form,
never of the invited at the door.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from gateway.admission.address_keys import AddressHasher
from gateway.admission.local_limits import KnownRefusals, KnownWait
from gateway.errors import RateLimited, StoreUnavailable
from gateway.evidence.recorder import EvidenceRecorder
from gateway.metrics import Metrics
from gateway.settings import Rate, RateSettings
from gateway.store import PLAIN_LIMITS, Store
from gateway.store.records import LimitCharge, RateDecision

PRESSURE_WINDOW_SECONDS = 10
# A replica re-reads pressure at most this often: a flood must not double its own cost.
PRESSURE_CACHE_SECONDS = 1.0
# Refusals this replica answered on its own reach the shared pressure at most this often.
LOCAL_FLUSH_SECONDS = 1.0
# ... and the log a line on them at most this often, instead of a line each.
LOCAL_LOG_SECONDS = 60.0
GATE = "gate"
# Rooms remembered as seen to exist, for the evidence (newest kept).
ROOMS_SEEN = 10_000
# What the evidence counts refusals from a network under when its hash is not at hand yet.
UNKNOWN_NETWORK = "unknown network"

log = logging.getLogger("meetgate.limits")


def _tolerance(rate: Rate) -> float:
    """GCRA's burst tolerance: how far ahead of now a key's backlog may run, in seconds."""
    return (rate.burst - 1) / rate.per_second


_T = TypeVar("_T")


def _keep(seen: OrderedDict[str, _T], key: str, value: _T) -> None:
    """Keep `key` as the newest of `seen`, forgetting the oldest past ROOMS_SEEN."""
    seen[key] = value
    seen.move_to_end(key)
    if len(seen) > ROOMS_SEEN:
        seen.popitem(last=False)


def _pressure_key(room: str, registration: bool) -> str:
    """Where a room's refusals are counted: its joins' (which the store's plain join reads too)
    or its registration pages'."""
    return f"reject:register:{room}" if registration else f"reject:room:{room}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What is known about a join attempt when it is charged."""

    client_addr: str
    room: str | None = None
    identity: str | None = None
    invite: str | None = None
    # The join link's token hash, when the attempt came through one: a refusal by the limits
    # every attempt through that link shares (LINK_LIMITS) is remembered by it.
    link: str | None = None
    # The room the request names when it is charged before the room is looked up (a room's
    # gate page): never charged (the limits' keys do not show which rooms exist), only the
    # evidence's, and only once the room is known to exist (`room_seen`).
    named_room: str | None = None
    # The room whose registration page this is (sending the form or its code): charged against
    # that room's registration limit, never the room's nor the gate's, so a registration flood
    # costs no join; the evidence names the room. Not with `room`.
    registration: str | None = None

    def __post_init__(self) -> None:
        if self.room is not None and self.registration is not None:
            raise ValueError("an attempt is a join or a registration, not both")

    @property
    def of_room(self) -> str | None:
        """The room the attempt is charged for (a join's or a registration's)."""
        return self.room if self.room is not None else self.registration


# The limits that close one join link to everyone when they refuse it: the gate's and the room's
# (charged for a look at the landing page and a join alike) and the invite's (charged for joins
# only: looking at the page is not a use; the identity limit, a join's own, closes no link).
LINK_LIMITS = frozenset({"gate", "room", "invite"})


class RateLimiter:
    def __init__(
        self,
        store: Store,
        rates: RateSettings,
        metrics: Metrics,
        *,
        addresses: AddressHasher | None = None,
        evidence: EvidenceRecorder | None = None,
    ) -> None:
        """`evidence` counts refused joins per network and minute in the evidence log."""
        self._store = store
        self.evidence = evidence
        self.addresses = addresses or AddressHasher(store)
        self._rates = rates
        self._metrics = metrics
        self._pressure: dict[str, tuple[float, int]] = {}
        self._unflushed: dict[str | None, int] = {}
        # The gate's own refusals by limit, added to the metrics when they are read.
        self._uncounted: dict[str, int] = {}
        metrics.collectors.append(self._count_local_refusals)
        self._unlogged = 0
        self._flushed_at = self._logged_at = 0.0
        self._flushing: asyncio.Task[None] | None = None
        self._defaults: dict[str, Rate] = {
            "address": rates.address,
            "network": rates.network,
            "gate": rates.gate,
            "room": rates.room,
            "identity": rates.identity,
            "invite": rates.invite,
            "registration": rates.registration,
        }
        self.known = KnownRefusals()
        # Rooms this replica has seen exist (newest last), so that refusals of requests naming
        # them go in their evidence, never in a chain of a name an attacker made up.
        self._rooms_seen: OrderedDict[str, None] = OrderedDict()
        # Join links (token hashes) seen to lead to a room, newest last: the same, for links.
        self._link_rooms: OrderedDict[str, str] = OrderedDict()
        self._most_tolerance = {
            name: max(
                _tolerance(rate)
                for rate in [
                    self._defaults[name],
                    *(getattr(room, name) or self._defaults[name] for room in rates.rooms.values()),
                ]
            )
            for name in ("address", "network")
        }

    def _rate(self, name: str, room: str | None) -> Rate:
        override = self._rates.rooms.get(room) if room else None
        chosen: Rate | None = getattr(override, name, None)
        return chosen or self._defaults[name]

    def _slack(self, name: str, room: str | None) -> float:
        """How much sooner the most lenient `name` limit of any room would let an attempt
        through than `room`'s does, for a key refused by `room`'s: the gate answers on its own
        only while no room's limit would allow the attempt (it does not know the room yet)."""
        return self._most_tolerance[name] - _tolerance(self._rate(name, room))

    @staticmethod
    def _names(attempt: Attempt) -> list[str]:
        """The limits an attempt is charged against, in the order `charges` charges them."""
        names = ["address", "network"]
        if attempt.room is not None:
            # Only attempts that lead to a room share the gate-wide budget: a flood of bogus
            # links from many networks must not use up the real attendees' share of it.
            names += ["gate", "room"]
        elif attempt.registration is not None:
            names.append("registration")
        if attempt.identity is not None:
            names.append("identity")
        if attempt.invite is not None:
            names.append("invite")
        return names

    async def charges(self, attempt: Attempt) -> list[LimitCharge]:
        address, network = await self.addresses.address_and_network(attempt.client_addr)
        keys = {
            "address": f"addr:{address}",
            "network": f"net:{network}",
            "gate": GATE,
            "room": f"room:{attempt.room}",
            "identity": f"id:{attempt.identity}",
            "invite": f"invite:{attempt.invite}",
            "registration": f"register:{attempt.registration}",
        }
        charges = []
        for name in self._names(attempt):
            rate = self._rate(name, attempt.of_room)
            charges.append(
                LimitCharge(key=keys[name], rate_per_second=rate.per_second, burst=rate.burst)
            )
        return charges

    def plain_rates(self) -> tuple[tuple[float, int], ...]:
        """The gate's, a room's, an identity's and an invite's limits (`PlainJoin.rates`), for a
        room without limits of its own (`varied_rooms`)."""
        return tuple(
            (self._defaults[name].per_second, self._defaults[name].burst) for name in PLAIN_LIMITS
        )

    def varied_rooms(self) -> frozenset[str]:
        """The rooms whose join limits differ from the defaults (settings: rates.rooms); a room
        that only sets its registrations' limit is joined as any."""
        return frozenset(
            name
            for name, rates in self._rates.rooms.items()
            if rates.model_dump(exclude={"registration"}, exclude_none=True)
        )

    async def charge(self, attempt: Attempt) -> None:
        """Charge the attempt; RateLimited (with the wait) if any limit is exhausted."""
        if attempt.of_room:
            self.room_seen(attempt.of_room, attempt.link)
        decision = await self._store.charge_limits(await self.charges(attempt))
        if not decision.allowed:
            await self.refuse(attempt, decision)

    async def refuse(self, attempt: Attempt, decision: RateDecision) -> NoReturn:
        """Raise RateLimited for an attempt the store refused when it charged `charges(attempt)`
        (by `charge_limits` or within a larger step), once the refusal is counted and
        remembered."""
        # Each limit's own wait, by name (a limit named twice keeps its longer wait).
        waits: dict[str, float] = {}
        for name, wait in zip(self._names(attempt), decision.waits, strict=True):
            waits[name] = max(wait, waits.get(name, 0.0))
        # The limit the attempt waits longest for is the one that refused it.
        refused_by = max(waits, key=waits.__getitem__)
        self._metrics.rate_limited.inc(limit=refused_by)
        now = time.monotonic()
        room = attempt.of_room
        address_wait = waits["address"] - self._slack("address", room)
        network_wait = waits["network"] - self._slack("network", room)
        # The address's later refusals count toward the pressure of a join's room only: a
        # registration's would switch on proof-of-work for the room's joins.
        if address_wait > 0:
            self.known.address_refused(attempt.client_addr, address_wait, attempt.room, now)
        if network_wait > 0:
            self.known.network_refused(attempt.client_addr, network_wait, attempt.room, now)
        self._witness(room or self._seen(attempt.named_room), attempt.client_addr)
        link_limit = max(LINK_LIMITS, key=lambda name: waits.get(name, 0.0))
        link_wait = waits.get(link_limit, 0.0)
        if attempt.link is not None and link_wait > 0:
            self.known.link_refused(attempt.link, link_wait, attempt.room, link_limit, now)
        await self.note_rejection(
            room, "rate_limited", registration=attempt.registration is not None
        )
        raise RateLimited(decision.retry_after, limit=refused_by)

    def knows_links(self) -> bool:
        """Whether any join link is known to be refused (else there is nothing to look up)."""
        return self.known.knows_links()

    def known_link_wait(self, token_hash: str) -> KnownWait:
        """How long attempts through the join link with this token hash are known to stay
        refused by a limit they all share (its invite's, its room's, the gate's)."""
        return self.known.link_wait(token_hash, time.monotonic())

    def known_wait(self, client_addr: str) -> KnownWait:
        """How long `client_addr`'s address or network limit is known to stay exhausted, from
        this replica's own refusals: the gate answers such attempts itself."""
        return self.known.wait(client_addr, time.monotonic())

    def room_seen(self, room: str, link: str | None = None) -> None:
        """Note that `room` exists (it was looked up), and that the join link with the token
        hash `link` leads to it: later refusals of requests naming either are recorded in its
        evidence."""
        _keep(self._rooms_seen, room, None)
        if link is not None:
            _keep(self._link_rooms, link, room)

    def _seen(self, room: str | None) -> str | None:
        return room if room is not None and room in self._rooms_seen else None

    def _witness(self, room: str | None, client_addr: str) -> None:
        if self.evidence is not None:
            # A network the hasher does not know yet (no day's key at hand) is counted as one.
            network = self.addresses.known_network(client_addr) or UNKNOWN_NETWORK
            self.evidence.refused_join(room, network)

    def note_local_refusal(
        self,
        known: KnownWait,
        client_addr: str | None = None,
        named_room: str | None = None,
        link: str | None = None,
    ) -> None:
        """Count an attempt the gate refused on `known_wait`: in the metrics (added when they are
        read), and in the pressure (the gate's, and the room of the refusal it knew) by a
        background store call a second at most, so a flood's refusals cost no store round trip
        each and wait for none. The evidence records it under the room this request names
        (`named_room`, once seen to exist), or its join link's (`link`, a token hash seen to
        lead to a room); else the gate's."""
        self._uncounted[known.limit] = self._uncounted.get(known.limit, 0) + 1
        if client_addr is not None:
            # A link's refusal is remembered with the link's room: the same for this request.
            room = known.room if known.limit in LINK_LIMITS else self._seen(named_room)
            if room is None and link is not None:
                room = self._link_rooms.get(link)
            self._witness(room, client_addr)
        self._unflushed[known.room] = self._unflushed.get(known.room, 0) + 1
        if self._flushing is None and time.monotonic() - self._flushed_at >= LOCAL_FLUSH_SECONDS:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_local_refusals())

    def _count_local_refusals(self) -> None:
        uncounted, self._uncounted = self._uncounted, {}
        for limit, count in uncounted.items():
            self._metrics.rejections.inc(count, reason="rate_limited")
            self._metrics.rate_limited.inc(count, limit=limit)

    async def _flush_local_refusals(self) -> None:
        try:
            await self._flush_counts()
        except Exception:
            # No request waits on this task to see it fail: the log is where it shows.
            log.exception("counting the gate's own refusals toward the pressure failed")
        finally:
            self._flushing = None

    async def aclose(self) -> None:
        """Wait for a pressure flush under way (at shutdown)."""
        if self._flushing is not None:
            await asyncio.wait([self._flushing])

    async def _flush_counts(self) -> None:
        now = time.monotonic()
        counts, self._unflushed, self._flushed_at = self._unflushed, {}, now
        total = sum(counts.values())
        if not total:
            return
        self._unlogged += total
        if now - self._logged_at >= LOCAL_LOG_SECONDS:
            log.warning(
                "refused %d join attempts over their address or network limit since %.0f s ago",
                self._unlogged,
                now - self._logged_at if self._logged_at else 0,
            )
            self._unlogged, self._logged_at = 0, now
        # A store that is down does not undo the refusals; the pressure only reads the lower.
        with contextlib.suppress(StoreUnavailable):
            await self._store.count_recent(f"reject:{GATE}", PRESSURE_WINDOW_SECONDS, total)
            for name, count in counts.items():
                if name is not None:
                    key = _pressure_key(name, False)
                    await self._store.count_recent(key, PRESSURE_WINDOW_SECONDS, count)

    async def note_rejection(
        self, room: str | None, reason: str, *, registration: bool = False
    ) -> None:
        """Count a refused attempt: in the metrics, and in the pressure that switches on
        proof-of-work for its room and, in numbers, for the whole gate. With `registration`, a
        refusal on the room's registration pages: counted under its room's key of its own, and
        not in the gate's, which every join reads (a registration flood asks proof of that
        room's registrations only)."""
        self._metrics.rejections.inc(reason=reason)
        if registration:
            if room is not None:
                await self._store.count_recent(_pressure_key(room, True), PRESSURE_WINDOW_SECONDS)
            return
        await self._store.count_recent(f"reject:{GATE}", PRESSURE_WINDOW_SECONDS)
        if room is not None:
            await self._store.count_recent(_pressure_key(room, False), PRESSURE_WINDOW_SECONDS)

    async def pressure(self, room: str | None, *, registration: bool = False) -> int:
        """Rejections in the current 10-second window: the room's joins' (with `registration`,
        its registration pages'), or the whole gate's."""
        key = _pressure_key(room, registration) if room else f"reject:{GATE}"
        now = time.monotonic()
        cached = self._pressure.get(key)
        if cached is not None and now - cached[0] < PRESSURE_CACHE_SECONDS:
            return cached[1]
        if self._unflushed:
            # The gate's own refusals since the last flush are part of the pressure.
            await self._flush_counts()
        value = await self._store.read_recent(key, PRESSURE_WINDOW_SECONDS)
        if len(self._pressure) > 10_000:
            self._pressure.clear()
        self._pressure[key] = (now, value)
        self._metrics.pressure.set(value, room=room or GATE)
        return value
