"""What this replica knows of client addresses, networks and join links that have used up a limit.

A join flood must cost the gate less than it costs the attacker. When the shared limits refuse an
attempt because its address or its /24 or /64 has no budget left, or because a limit every
attempt through its join link shares has none (the link's invite, its room, the gate), the
replica remembers until when; the gate then answers that address's, network's or link's next
attempts itself, before the framework, the store or a log line sees them. It never refuses what
the shared limits would allow: a refused attempt charges nothing, so the budget is exactly as
empty until the wait is over (other replicas can only have made it emptier). Attempts that are
not charged, such as those answered with a proof-of-work challenge, never land here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.client_address import network_of

# Past waits are swept once the table grows past this; if it is still half full afterwards (a
# flood from a vast number of addresses), it starts over: the shared limits still hold.
MAX_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class KnownWait:
    """How long an address's attempts are known to be refused, the room the refused attempt
    was for (its later refusals count toward that room's pressure), and the limit that refused
    it (as `[rates]` names it)."""

    seconds: float
    room: str | None = None
    limit: str = "address"


NO_WAIT = KnownWait(0.0)


class _Waits:
    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until: dict[str, tuple[float, str | None, str]] = {}

    def remember(self, key: str, until: float, room: str | None, limit: str, now: float) -> None:
        if len(self.until) >= MAX_ENTRIES:
            self.until = {k: v for k, v in self.until.items() if v[0] > now}
            if len(self.until) >= MAX_ENTRIES // 2:
                # Mostly live: sweeping again at the next insert would cost a whole table each.
                self.until = {}
        known = self.until.get(key)
        if known is not None and known[0] > until:
            until, limit = known[0], known[2]
        self.until[key] = (until, room, limit)

    def wait(self, key: str, now: float) -> KnownWait:
        known = self.until.get(key)
        if known is None:
            return NO_WAIT
        if known[0] <= now:
            del self.until[key]
            return NO_WAIT
        return KnownWait(known[0] - now, known[1], known[2])


class KnownRefusals:
    def __init__(self) -> None:
        self._addresses = _Waits()
        self._networks = _Waits()
        self._links = _Waits()

    def address_refused(self, client_addr: str, wait: float, room: str | None, now: float) -> None:
        self._addresses.remember(client_addr, now + wait, room, "address", now)

    def network_refused(self, client_addr: str, wait: float, room: str | None, now: float) -> None:
        self._networks.remember(network_of(client_addr), now + wait, room, "network", now)

    def link_refused(
        self, token_hash: str, wait: float, room: str | None, limit: str, now: float
    ) -> None:
        """`limit`: which of the limits every attempt through the link shares refused it."""
        self._links.remember(token_hash, now + wait, room, limit, now)

    def knows_links(self) -> bool:
        return bool(self._links.until)

    def link_wait(self, token_hash: str, now: float) -> KnownWait:
        if not self._links.until:
            return NO_WAIT
        return self._links.wait(token_hash, now)

    def wait(self, client_addr: str, now: float) -> KnownWait:
        """How long an attempt from `client_addr` is known not to fit its address or network
        limit, as far as this replica knows; `NO_WAIT` when it may."""
        address = self._addresses.wait(client_addr, now) if self._addresses.until else NO_WAIT
        if not self._networks.until:
            return address
        network = self._networks.wait(network_of(client_addr), now)
        return network if network.seconds > address.seconds else address
