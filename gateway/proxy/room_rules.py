"""Each room's chat rules and hosts' occupant addresses as this process last read them from the
store, for the wire guard's synchronous questions (gateway/proxy/wire_guard.py): read when a
signalling session opens, re-read in the background when older than a few seconds, and at once
when a host changes them on any replica (`RulesChanged` on the CUTS channel)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gateway.cuts import RulesChanged
from gateway.errors import StoreUnavailable
from gateway.i18n import DEFAULT, chosen, gettext
from gateway.proxy.wire_guard import QUIET, TOO_FAST, TOO_LONG, Budget, ChatRules
from gateway.settings import GuardSettings
from gateway.store import Store
from gateway.store.records import Room

log = logging.getLogger("meetgate.guard")

# The store's index of a room's hosts' MUC occupant JIDs, as sessions have seen them join.
HOSTS_INDEX: Final = "guard-hosts:"
# Rules this old are re-read (in the background: the guard never waits on the store).
MAX_AGE_SECONDS: Final = 5.0
# A room nobody asked about for this long is forgotten; a session asks at least once per stanza.
IDLE_SECONDS: Final = 600.0
# A room asked about again within this long is not moved in the order nor swept for.
TOUCH_SECONDS: Final = 1.0
# At most this many rooms are kept, the least recently used forgotten first.
MAX_ROOMS: Final = 10_000


def chat_rules(room: Room | None, guard: GuardSettings) -> ChatRules:
    """A room's rules: its own settings over the gate's defaults (a count of 0 and strikes of
    None are the gate's); an unknown room has the gate's. The refusals' texts are in the room's
    language (English for none): the sender's own choice is not known on the wire, and the room's
    is what its pages speak to everyone who made none."""
    if room is None:
        room = Room(name="", title="", created_at=0.0)
    per_10s = room.chat_per_10s or guard.chat_per_10s
    language = chosen(room.language) or DEFAULT
    return ChatRules(
        quiet=room.quiet,
        private_to_hosts_when_quiet=room.quiet_private_to_hosts,
        chat=Budget(rate=per_10s / 10.0, burst=room.chat_burst or guard.chat_burst),
        chat_max_bytes=room.chat_max_bytes or guard.chat_max_bytes,
        strikes=guard.strikes if room.guard_strikes is None else room.guard_strikes,
        too_fast=gettext(language, TOO_FAST),
        too_long=gettext(language, TOO_LONG),
        quiet_text=gettext(language, QUIET),
    )


@dataclass(slots=True)
class _Known:
    rules: ChatRules
    hosts: frozenset[str] = frozenset()
    # Guards holding the room (RoomRules.hold): never forgotten while any does.
    holders: int = 0
    read_at: float = -float("inf")
    used_at: float = 0.0
    # The newest read applied: a slow read that started earlier does not undo a later one.
    applied: int = 0
    refreshing: set[asyncio.Task[None]] = field(default_factory=set)


class RoomRules:
    """The process's cache of room rules; one per process, shared by every session."""

    def __init__(
        self,
        store: Store,
        guard: GuardSettings,
        *,
        hosts_ttl_seconds: float = 12 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`hosts_ttl_seconds`: how long a host's occupant JID is kept (an admission's
        lifetime: a host who stays longer is noted again when a session opens)."""
        self._store = store
        self._guard = guard
        self._hosts_ttl = hosts_ttl_seconds
        self._clock = clock
        self._defaults = chat_rules(None, guard)
        self._rooms: OrderedDict[str, _Known] = OrderedDict()
        self._reads = 0

    def __len__(self) -> int:
        return len(self._rooms)

    async def load(self, room: str) -> None:
        """Read the room's rules now (a session opening: its first stanza sees them). A store
        that does not answer leaves the last known rules, or the gate's defaults."""
        self._use(room)
        await self._read(room)

    def rules(self, room: str) -> ChatRules:
        """The room's rules as last read; older than MAX_AGE_SECONDS, one re-read is started."""
        known = self._use(room)
        self._refresh_if_old(room, known)
        return known.rules

    def hosts(self, room: str) -> frozenset[str]:
        """The MUC occupant JIDs of the room's hosts, as last read with the rules."""
        known = self._use(room)
        self._refresh_if_old(room, known)
        return known.hosts

    def changed(self, room: str) -> None:
        """A RulesChanged message: re-read the room now if any session here uses it."""
        known = self._rooms.get(room)
        if known is not None:
            self._start_read(room, known)

    def hold(self, room: str) -> None:
        """A guard of this room exists here: keep the room's rules, however long its sessions
        stay quiet (a room forgotten would read as the gate's defaults, not quiet, until read
        again)."""
        self._use(room).holders += 1

    def release(self, room: str) -> None:
        known = self._rooms.get(room)
        if known is not None and known.holders > 0:
            known.holders -= 1

    def changed_all(self) -> None:
        """Re-read every room a session here uses (the change channel was lost a while: any
        change may have been missed)."""
        for room, known in list(self._rooms.items()):
            self._start_read(room, known)

    async def note_host(self, room: str, occupant_jid: str) -> None:
        """A host's session joined the room's MUC as `occupant_jid`: every replica's guard
        lets quiet mode's private messages to it pass."""
        known = self._use(room)
        known.hosts = known.hosts | {occupant_jid}
        try:
            await self._store.index_add(HOSTS_INDEX + room, occupant_jid, self._hosts_ttl)
            await RulesChanged(room).send(self._store)
        except StoreUnavailable:
            log.warning("a host's occupant address was not shared: the store is unavailable")

    async def aclose(self) -> None:
        """Wait for the re-reads under way (a process that stops)."""
        tasks = [task for known in self._rooms.values() for task in known.refreshing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _use(self, room: str) -> _Known:
        now = self._clock()
        known = self._rooms.get(room)
        if known is None:
            known = _Known(rules=self._defaults)
            self._rooms[room] = known
        elif now - known.used_at < TOUCH_SECONDS:
            # Asked about a moment ago (a chat message each time): its place in the order and
            # the sweep can wait; this is on every judged chat message.
            return known
        else:
            self._rooms.move_to_end(room)
        known.used_at = now
        self._forget_idle(now)
        return known

    def _forget_idle(self, now: float) -> None:
        # Least recently used first: stop at the first room still in use; a held room is
        # passed over (moved to the end), each at most once.
        for _ in range(len(self._rooms)):
            room, oldest = next(iter(self._rooms.items()))
            if len(self._rooms) <= MAX_ROOMS and now - oldest.used_at < IDLE_SECONDS:
                break
            if oldest.holders > 0:
                # Held: as good as used now (not looked at again for IDLE_SECONDS).
                oldest.used_at = now
                self._rooms.move_to_end(room)
                continue
            del self._rooms[room]

    def _refresh_if_old(self, room: str, known: _Known) -> None:
        if not known.refreshing and self._clock() - known.read_at >= MAX_AGE_SECONDS:
            self._start_read(room, known)

    def _start_read(self, room: str, known: _Known) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self._read(room))
        except RuntimeError:  # no event loop: nothing can be read, the last rules stand
            return
        known.refreshing.add(task)
        task.add_done_callback(known.refreshing.discard)

    async def _read(self, room: str) -> None:
        self._reads += 1
        read = self._reads
        try:
            record, hosts = await asyncio.gather(
                self._store.get_room(room), self._store.index_members(HOSTS_INDEX + room)
            )
        except StoreUnavailable:
            log.warning("a room's chat rules were not read: the store is unavailable")
            known = self._rooms.get(room)
            if known is not None:  # tried again once they are old again, not at every stanza
                known.read_at = self._clock()
            return
        known = self._rooms.get(room)
        if known is None or read < known.applied:
            return
        known.applied = read
        known.rules = chat_rules(record, self._guard)
        known.hosts = frozenset(hosts)
        known.read_at = self._clock()
