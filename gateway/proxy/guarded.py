"""A signalling session's wire guard put together from the gate's settings and the admission,
and its verdicts counted: the relays (WebSocket and BOSH) ask `GuardedWire.judge` about each
element the client sends and act on the answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final
from xml.sax.saxutils import escape

from gateway.cuts import Cut
from gateway.errors import StoreUnavailable
from gateway.evidence.entries import Kind
from gateway.evidence.recorder import EvidenceRecorder
from gateway.metrics import Metrics
from gateway.proxy.room_rules import RoomRules
from gateway.proxy.wire_guard import (
    Addresses,
    Budget,
    EndStream,
    Forward,
    Refuse,
    Speaker,
    Verdict,
    WireBudgets,
    WireGuard,
)
from gateway.settings import GuardSettings, Settings
from gateway.store import Store
from gateway.store.records import Admission, AuditEntry, AuditFacts, AuditKind, Role

log = logging.getLogger("meetgate.guard")
# What a binary message on a guarded signalling socket gets.
BINARY_REFUSED = EndStream(
    "<error xmlns='http://etherx.jabber.org/streams'>"
    "<unsupported-encoding xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>",
    "unsupported-encoding",
)


# The wire guard's removals: the cut's reason, and who the log says acted.
GUARD_REMOVAL: Final = "guard removal"
GUARD_ACTOR: Final = "meetgate"
GUARD_ACTOR_NAME: Final = "Meetgate"
# The log's action for a removal names the rule broken last (the guard's Refuse.reason: rate,
# size, quiet, address), so that the dashboard says why in its reader's language
# (gateway/host/dashboard.py, AUDIT_ACTIONS). Entries written before say GUARD_REMOVAL.
GUARD_ACTION: Final = "guard: {rule}"
# Removals remembered as recorded in the evidence, so each is recorded once.
RECORDED_REMOVALS: Final = 10_000
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


def note_ended(metrics: Metrics, condition: str) -> None:
    """A signalling session ended for input no client sends: counted, and logged with its stream
    error condition only (never the input, nor whose it was)."""
    metrics.guard_ended.inc(reason=condition)
    log.info("wire guard: a session ended for input no client sends (%s)", condition)


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

    def judge(self, data: str | bytes, now: float) -> Verdict:
        return self.judged(self._guard.inspect(data, now))

    @property
    def inspect(self) -> Callable[[str | bytes, float], Verdict]:
        """The guard's own judgement, with nothing counted: a caller that saves a call a stanza
        hands every verdict to `judged`, a Forward too when `notes_hosts`."""
        return self._guard.inspect

    @property
    def notes_hosts(self) -> bool:
        """Whether a forwarded stanza is noted too (a host's guard notes where it joined)."""
        return self._note_host is not None

    def judged(self, verdict: Verdict) -> Verdict:
        """`verdict` counted: refusals as strikes (and the removal past the threshold), ends in
        the metrics, a host's joins noted."""
        if type(verdict) is Forward:
            # The common case first: only a host's guard notes where it joined.
            if self._note_host is not None and self._guard.occupant != self._noted:
                self._noted = self._guard.occupant
                if self._noted is not None and self._hostlike(self._noted):
                    self._hosts_noted += 1
                    self._note_host(self._admission.room, self._noted)
        elif isinstance(verdict, Refuse):
            self._metrics.guard_refused.inc(reason=verdict.reason)
            REFUSALS.refused(verdict.reason)
            self._count_strike(verdict.reason)
            self._judge_strikes(verdict.reason)
        elif isinstance(verdict, EndStream):
            note_ended(self._metrics, verdict.reason)
        return verdict

    def connected(self) -> None:
        """A new connection uses this guard (WireGuard.connected)."""
        self._guard.connected()

    def binary(self) -> EndStream:
        """A binary message on the signalling socket: XMPP over WebSocket is text only (RFC 7395
        §3.2)."""
        note_ended(self._metrics, BINARY_REFUSED.reason)
        return BINARY_REFUSED

    def _hostlike(self, occupant: str) -> bool:
        # Only the main room's occupants, short, and a few per session: a host's guard must not
        # fill the room's list (each one noted makes every replica read the room again).
        bare, _, _ = occupant.partition("/")
        domain = bare.rpartition("@")[2].lower()
        return domain in self._muc and len(occupant) <= MAX_OCCUPANT_CHARS and self._hosts_noted < 8

    def _judge_strikes(self, reason: str) -> None:
        # This guard's own count, or the store's for all the admission's guards.
        threshold = self._rules.rules(self._admission.room).strikes
        over = self._guard.removable or 0 < threshold <= self.stored_strikes
        if over and not self.removed:
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


class WireGuarding:
    """The gate's wire guard as a whole: each room's rules (RoomRules), each admission's guard on
    this replica (WireStates), a BOSH body judged stanza by stanza, and the removal of a sender
    past its room's threshold. The gate holds one when `[guard] enabled`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        in_background: Callable[[Coroutine[Any, Any, Any]], None],
        cut_here: Callable[[str, str], Coroutine[Any, Any, Any]],
        *,
        evidence: EvidenceRecorder | None = None,
    ) -> None:
        """`in_background` runs a coroutine without waiting for it; `cut_here(admission_id,
        reason)` closes an admission's connections on this replica; `evidence` records each
        removal in the room's evidence log."""
        self._settings = settings
        self._evidence = evidence
        # The admissions whose removal is in the evidence already (newest last).
        self._recorded: OrderedDict[str, None] = OrderedDict()
        self._store = store
        self._metrics = metrics
        self._in_background = in_background
        self._cut_here = cut_here
        self.rules = RoomRules(
            store, settings.guard, hosts_ttl_seconds=settings.admission.ttl_seconds
        )
        self._wires = WireStates(self.rules)
        self._addresses = addresses_for(settings.jitsi.xmpp_domain, settings.guard)
        self._budgets = budgets_from(settings.guard)
        # A BOSH body's stand-in for a refused stanza whose error is waiting: a ping to the
        # server, which prosody answers at once (its answer is ignored by clients).
        self._bosh_ping = (
            "<iq xmlns='jabber:client' type='get' id='meetgate-answer' to='"
            + escape(settings.jitsi.xmpp_domain, {"'": "&apos;"})
            + "'><ping xmlns='urn:xmpp:ping'/></iq>"
        ).encode()

    async def wire(self, admission: Admission) -> GuardedWire:
        """The guard for a signalling session of `admission`: the one its earlier sessions here
        used, or a new one once the room's rules are known here."""
        known = self._wires.find(admission)
        if known is not None:
            return known
        rules, room = self.rules, admission.room
        await rules.load(room)
        guard = WireGuard(
            Speaker(admission.id, room, admission.name, admission.role is Role.HOST),
            self._addresses,
            self._budgets,
            lambda: rules.rules(room),
            lambda: rules.hosts(room),
        )
        wire = GuardedWire(
            guard,
            admission,
            rules=rules,
            store=self._store,
            metrics=self._metrics,
            remove=lambda admission, reason: self._in_background(self._remove(admission, reason)),
            note_host=lambda room, jid: self._in_background(rules.note_host(room, jid)),
            muc_domains=self._addresses.muc_domains,
            strikes_ttl_seconds=self._settings.admission.ttl_seconds,
        )
        self._wires.keep(wire)
        return wire

    async def wire_of_body(self, admission: Admission, kept: GuardedWire | None) -> GuardedWire:
        """The guard for a BOSH body: the session's own (`kept`), used again, or another."""
        if kept is None or kept.removed:
            return await self.wire(admission)
        self._wires.touch(kept)
        return kept

    def ended(self, condition: str) -> None:
        """A BOSH session ended for a body no client sends (refused before its stanzas are
        judged, with the stream error `condition` it earns)."""
        note_ended(self._metrics, condition)

    def opened(self, wire: GuardedWire) -> None:
        wire.sessions += 1
        wire.connected()

    def closed(self, wire: GuardedWire) -> None:
        wire.sessions -= 1
        self._wires.touch(wire)

    def judge_body(
        self,
        wire: GuardedWire,
        body: bytes,
        children: Iterable[tuple[int, int]],
        reply: Callable[[str], None] | None,
    ) -> bytes | None:
        """A BOSH body (its stanzas' spans, `children`) with each stanza as the guard lets it
        through; None if the guard ends the session. Errors for the sender go to `reply` (the
        session's next response), or nowhere for a body outside a tracked session."""
        now = asyncio.get_running_loop().time()
        pieces: list[bytes] = []
        at = 0
        answered = False
        for start, end in children:
            verdict = wire.judge(body[start:end], now)
            if isinstance(verdict, EndStream):
                return None
            pieces.append(body[at:start])
            if isinstance(verdict, Refuse):
                if verdict.reply is not None and reply is not None:
                    reply(verdict.reply)
                    if not answered:
                        # A stand-in prosody answers at once: the request it holds for the
                        # session is answered now, carrying the error (a stand-in it ignores
                        # would leave the error waiting out a long poll in a silent meeting).
                        answered = True
                        pieces.append(self._bosh_ping)
                        at = end
                        continue
                pieces.append(verdict.stand_in.encode())
            else:
                pieces.append(verdict.data)
            at = end
        pieces.append(body[at:])
        return b"".join(pieces)

    async def _remove(self, admission: Admission, reason: str) -> None:
        """Past the room's strike threshold the sender goes as a host's removal would: revoked,
        its connections cut on every replica, and the room's log says why."""
        try:
            revoked = await self._store.revoke_admission(admission.id)
            if revoked and self._evidence is not None and admission.id not in self._recorded:
                # Once an admission, however many of its connections broke the rule at once.
                self._recorded[admission.id] = None
                if len(self._recorded) > RECORDED_REMOVALS:
                    self._recorded.popitem(last=False)
                target = self._evidence.pseudonyms.admission(admission.room, admission.id)
                fields: dict[str, object] = {"target": target, "rule": reason}
                self._evidence.note(admission.room, Kind.GUARD_REMOVAL, fields)
            await Cut(admission.id, GUARD_REMOVAL).send(self._store)
            await self._store.append_audit(
                AuditEntry(
                    at=time.time(),
                    room=admission.room,
                    actor=GUARD_ACTOR,
                    actor_name=GUARD_ACTOR_NAME,
                    action=GUARD_ACTION.format(rule=reason),
                    target=admission.identity,
                    detail=reason,
                    facts=AuditFacts(AuditKind.NAME, name=admission.name),
                )
            )
        except StoreUnavailable:
            # The session is still cut here; the admission stays until a host removes it.
            log.warning("wire guard: could not record a removal (%s): the store is away", reason)
            self._in_background(self._cut_here(admission.id, GUARD_REMOVAL))
            return
        log.info("wire guard: removed an attendee past the strike threshold (%s)", reason)
