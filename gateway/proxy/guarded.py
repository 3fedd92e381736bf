"""A signalling session's wire guard put together from the gate's settings and the admission,
and its verdicts counted: the relays (WebSocket and BOSH) ask `GuardedWire.judge` about each
element the client sends and act on the answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.proxy.room_rules import RoomRules
from gateway.proxy.wire_guard import (
    Addresses,
    Budget,
    EndStream,
    Refuse,
    Verdict,
    WireBudgets,
    WireGuard,
)
from gateway.settings import GuardSettings
from gateway.store import Store
from gateway.store.records import Admission, Role

log = logging.getLogger("meetgate.guard")
# What a binary message on a guarded signalling socket gets.
BINARY_REFUSED = EndStream(
    "<error xmlns='http://etherx.jabber.org/streams'>"
    "<unsupported-encoding xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>",
    "unsupported-encoding",
)


# The store's count of an admission's refused stanzas, kept across its sessions and replicas.
STRIKES_KEY: Final = "guard-strikes:"
# A guard whose admission has no session here is forgotten after this long, the least recently
# used first beyond MAX_WIRES.
IDLE_SECONDS: Final = 900.0
MAX_WIRES: Final = 100_000
# The longest host occupant JID noted for quiet mode's private messages.
MAX_OCCUPANT_CHARS: Final = 256
# The guard's refusals are logged, as counts, at most this often.
REFUSAL_LOG_SECONDS: Final = 60.0


class RefusalLog:
    """The process's log line for the guard's refusals: at most one a minute, counts by rule
    only (a flood would otherwise write a line per stanza; nothing names a person or quotes a
    message)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._since = clock()

    def refused(self, reason: str) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        now = self._clock()
        if now - self._since >= REFUSAL_LOG_SECONDS:
            counts = ", ".join(f"{rule} {n}" for rule, n in sorted(self._counts.items()))
            log.info(
                "wire guard: stanzas refused in the last %.0f s: %s", now - self._since, counts
            )
            self._counts.clear()
            self._since = now


REFUSALS = RefusalLog()


def addresses_for(domain: str, guard: GuardSettings) -> Addresses:
    """Where a session may send stanzas: its room on the MUC of `domain`. A tenant's form
    (`room@conference.<tenant>.<domain>`, which Jitsi's domain mapper turns into another room)
    is never allowed: the tenant would come from a path the client chose, and a Meetgate room
    has none."""
    domain = domain.lower()
    return Addresses(
        domain=domain,
        muc_domains=frozenset(f"{muc}.{domain}" for muc in guard.muc),
        lobby_domains=frozenset({f"{guard.lobby}.{domain}"}),
        breakout_domains=frozenset({f"{guard.breakout}.{domain}"}),
        components=frozenset(f"{name}.{domain}" for name in guard.components),
    )


def budgets_from(guard: GuardSettings) -> WireBudgets:
    return WireBudgets(
        presence=Budget(guard.presence_per_10s / 10, guard.presence_burst),
        iq=Budget(guard.iq_per_10s / 10, guard.iq_burst),
        signal=Budget(guard.signal_per_10s / 10, guard.signal_burst),
    )


class GuardedWire:
    """One admission's guard on this replica, counted in the metrics, kept for its next session
    here (WireStates): past the room's strike threshold the sender is removed once (`remove`,
    given the admission and the rule it broke last). Each strike is also added to the store's
    count for the admission (an atomic increment), so that sessions through other replicas add
    up: the first refusal anywhere past the threshold removes the sender."""

    __slots__ = (
        "_admission",
        "_counting",
        "_guard",
        "_hosts_noted",
        "_metrics",
        "_muc",
        "_note_host",
        "_noted",
        "_pending",
        "_remove",
        "_rules",
        "_store",
        "_ttl",
        "removed",
        "sessions",
        "stored_strikes",
        "used_at",
    )

    def __init__(
        self,
        guard: WireGuard,
        admission: Admission,
        *,
        rules: RoomRules,
        store: Store,
        metrics: Metrics,
        remove: Callable[[Admission, str], None],
        note_host: Callable[[str, str], None] | None = None,
        muc_domains: frozenset[str] = frozenset(),
        strikes_ttl_seconds: float = 12 * 3600,
    ) -> None:
        """`note_host(room, occupant_jid)` is told where a host's session joined the room's
        MUC (one of `muc_domains`; quiet mode lets private messages to it pass)."""
        self._guard = guard
        self._admission = admission
        self._rules = rules
        self._store = store
        self._metrics = metrics
        self._remove = remove
        self._note_host = note_host if admission.role is Role.HOST else None
        self._muc = muc_domains
        self._noted: str | None = None
        self._hosts_noted = 0
        self._counting = False
        self._pending = 0
        self._ttl = strikes_ttl_seconds
        # The admission's strikes as the store last counted them (all replicas, all sessions).
        self.stored_strikes = 0
        self.removed = False
        # Open WebSocket sessions using it, and when it was last used (WireStates).
        self.sessions = 0
        self.used_at = 0.0

    @property
    def admission(self) -> Admission:
        return self._admission

    @property
    def guard(self) -> WireGuard:
        return self._guard

    @property
    def strikes(self) -> int:
        return max(self.stored_strikes, self._guard.strikes)

    def judge(self, data: str | bytes, now: float) -> Verdict:
        verdict = self._guard.inspect(data, now)
        if isinstance(verdict, Refuse):
            self._metrics.guard_refused.inc(reason=verdict.reason)
            REFUSALS.refused(verdict.reason)
            self._count_strike(verdict.reason)
            self._judge_strikes(verdict.reason)
        elif isinstance(verdict, EndStream):
            self._metrics.guard_ended.inc(reason=verdict.reason)
            log.info("wire guard: a session ended for input no client sends (%s)", verdict.reason)
        elif self._note_host is not None and self._guard.occupant != self._noted:
            self._noted = self._guard.occupant
            if self._noted is not None and self._hostlike(self._noted):
                self._hosts_noted += 1
                self._note_host(self._admission.room, self._noted)
        return verdict

    def binary(self) -> EndStream:
        """A binary message on the signalling socket: XMPP over WebSocket is text only (RFC 7395
        §3.2)."""
        self._metrics.guard_ended.inc(reason=BINARY_REFUSED.reason)
        return BINARY_REFUSED

    def _hostlike(self, occupant: str) -> bool:
        # Only the main room's occupants, short, and a few per session: a host's guard must not
        # fill the room's list (each one noted makes every replica read the room again).
        bare, _, _ = occupant.partition("/")
        domain = bare.rpartition("@")[2].lower()
        return domain in self._muc and len(occupant) <= MAX_OCCUPANT_CHARS and self._hosts_noted < 8

    def _judge_strikes(self, reason: str) -> None:
        threshold = self._rules.rules(self._admission.room).strikes
        if threshold > 0 and self.strikes >= threshold and not self.removed:
            self.removed = True
            self._metrics.guard_removals.inc()
            self._remove(self._admission, reason)

    def _count_strike(self, reason: str) -> None:
        # One increment task at a time, adding what is pending one by one.
        self._pending += 1
        if self._counting:
            return
        self._counting = True
        try:
            asyncio.get_running_loop().create_task(self._add_strikes(reason))
        except RuntimeError:  # no loop (a unit test): the count stays in this process
            self._counting = False

    async def _add_strikes(self, reason: str) -> None:
        key = STRIKES_KEY + self._admission.id
        try:
            while self._pending and not self.removed:
                self._pending -= 1
                total = await self._store.bump_value(key, self._ttl)
                self.stored_strikes = max(self.stored_strikes, total)
                self._judge_strikes(reason)
        except StoreUnavailable:
            log.warning("wire guard: a strike was not counted: the store is unavailable")
        finally:
            self._pending = 0
            self._counting = False


class WireStates:
    """This replica's guards, one per admission: a session that comes back here (a reload, a
    resumption, a second tab replacing the first) keeps its budgets, strikes and count of the
    gate's own replies (which XEP-0198's acknowledgements must leave out). A guard holds its
    room's rules (RoomRules.hold) until it is forgotten, IDLE_SECONDS after its last use."""

    def __init__(self, rules: RoomRules, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rules = rules
        self._clock = clock
        self._wires: OrderedDict[str, GuardedWire] = OrderedDict()

    def __len__(self) -> int:
        return len(self._wires)

    def find(self, admission: Admission) -> GuardedWire | None:
        wire = self._wires.get(admission.id)
        if wire is None or wire.admission.room != admission.room or wire.removed:
            return None
        self.touch(wire)
        return wire

    def keep(self, wire: GuardedWire) -> None:
        old = self._wires.pop(wire.admission.id, None)
        if old is not None:
            self._rules.release(old.admission.room)
        self._rules.hold(wire.admission.room)
        self._wires[wire.admission.id] = wire
        now = self._clock()
        wire.used_at = now
        self._forget_idle(now)

    def touch(self, wire: GuardedWire) -> None:
        """`wire` is in use: moved to the end of the order; one forgotten meanwhile (a BOSH
        session's, whose requests came further apart than IDLE_SECONDS) is kept again, with its
        hold on the room's rules."""
        if self._wires.get(wire.admission.id) is not wire:
            if not wire.removed:
                self.keep(wire)
            return
        now = self._clock()
        wire.used_at = now
        self._wires.move_to_end(wire.admission.id)
        self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        for _ in range(len(self._wires)):
            admission_id, oldest = next(iter(self._wires.items()))
            if len(self._wires) <= MAX_WIRES and now - oldest.used_at < IDLE_SECONDS:
                break
            if oldest.sessions > 0 and len(self._wires) <= MAX_WIRES:
                # In use: as good as used now (not looked at again for IDLE_SECONDS).
                oldest.used_at = now
                self._wires.move_to_end(admission_id)
                continue
            del self._wires[admission_id]
            self._rules.release(oldest.admission.room)
