"""A signalling session's wire guard put together from the gate's settings and the admission,
and its verdicts counted: the relays (WebSocket and BOSH) ask `GuardedWire.judge` about each
element the client sends and act on the answer."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.metrics import Metrics
from gateway.proxy.room_rules import RoomRules
from gateway.proxy.wire_guard import (
    Addresses,
    Budget,
    EndStream,
    Refuse,
    Speaker,
    Verdict,
    WireBudgets,
    WireGuard,
)
from gateway.settings import GuardSettings
from gateway.store.records import Admission, Role

log = logging.getLogger("meetgate.guard")
# What a binary message on a guarded signalling socket gets.
BINARY_REFUSED = EndStream(
    "<error xmlns='http://etherx.jabber.org/streams'>"
    "<unsupported-encoding xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>",
    "unsupported-encoding",
)


def addresses_for(domain: str, guard: GuardSettings, tenant: str | None) -> Addresses:
    """Where a session may send stanzas: on `domain`, and for a session opened under a
    tenant's path (`/<tenant>/xmpp-websocket`) also the MUC on `<tenant>.<domain>`, as Jitsi's
    domain mapper names a tenant's rooms (lobby and breakout rooms have no tenant form)."""
    domain = domain.lower()
    bases = (domain,) if tenant is None else (domain, f"{tenant.lower()}.{domain}")
    return Addresses(
        domain=domain,
        muc_domains=frozenset(f"{muc}.{base}" for muc in guard.muc for base in bases),
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
    """One session's guard, counted in the metrics; past the room's strike threshold the
    sender is removed once (`remove`, given the admission and the rule it broke last)."""

    __slots__ = ("_admission", "_guard", "_metrics", "_note_host", "_noted", "_remove", "removed")

    def __init__(
        self,
        guard: WireGuard,
        admission: Admission,
        metrics: Metrics,
        remove: Callable[[Admission, str], None],
        note_host: Callable[[str, str], None] | None = None,
    ) -> None:
        """`note_host(room, occupant_jid)` is told where a host's session joined the room's
        MUC (quiet mode lets private messages to it pass)."""
        self._guard = guard
        self._admission = admission
        self._metrics = metrics
        self._remove = remove
        self._note_host = note_host if admission.role is Role.HOST else None
        self._noted: str | None = None
        self.removed = False

    @classmethod
    def open(
        cls,
        admission: Admission,
        *,
        settings: GuardSettings,
        domain: str,
        tenant: str | None,
        rules: RoomRules,
        metrics: Metrics,
        remove: Callable[[Admission, str], None],
        note_host: Callable[[str, str], None] | None = None,
    ) -> GuardedWire:
        room = admission.room
        guard = WireGuard(
            Speaker(admission.id, room, admission.name, admission.role is Role.HOST),
            addresses_for(domain, settings, tenant),
            budgets_from(settings),
            lambda: rules.rules(room),
            lambda: rules.hosts(room),
        )
        return cls(guard, admission, metrics, remove, note_host)

    @property
    def guard(self) -> WireGuard:
        return self._guard

    def judge(self, data: str | bytes, now: float) -> Verdict:
        verdict = self._guard.inspect(data, now)
        if isinstance(verdict, Refuse):
            self._metrics.guard_refused.inc(reason=verdict.reason)
            if self._guard.removable and not self.removed:
                self.removed = True
                self._metrics.guard_removals.inc()
                self._remove(self._admission, verdict.reason)
        elif isinstance(verdict, EndStream):
            self._metrics.guard_ended.inc(reason=verdict.reason)
        elif self._note_host is not None and self._guard.occupant != self._noted:
            self._noted = self._guard.occupant
            if self._noted is not None:
                self._note_host(self._admission.room, self._noted)
        return verdict

    def binary(self) -> EndStream:
        """A binary message on the signalling socket: XMPP over WebSocket is text only (RFC 7395
        §3.2)."""
        self._metrics.guard_ended.inc(reason=BINARY_REFUSED.reason)
        return BINARY_REFUSED
