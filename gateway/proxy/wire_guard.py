"""The signalling wire guard: each stanza a client sends is read (gateway/proxy/stanzas.py) and
judged against the meeting's rules before it reaches prosody; what the server sends back is not
touched.

A stanza is forwarded as sent, forwarded rewritten (presence to the room carries the verified
name from the admission, never a tracking URL), refused (dropped, the sender told why), or the
whole session is ended with a stream error (input that is not XMPP a client would send).

The guard is pure: it takes the stanza's bytes and the time, and returns a verdict. The relay
(gateway/proxy/websocket.py, the BOSH path in gateway/proxy/gate.py) acts on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Traffic(StrEnum):
    """What a stanza counts against."""

    CHAT = "chat"  # a message with a body: group or private chat
    SIGNAL = "signal"  # a message without one: polls, reactions, component requests
    PRESENCE = "presence"
    IQ = "iq"


@dataclass(frozen=True, slots=True)
class Budget:
    """A token bucket: `rate` stanzas per second on average, `burst` at once."""

    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class ChatRules:
    """A room's rules as they stand now: its own settings over the gate's defaults.

    `quiet`: only hosts chat (a host's switch, and every lockdown); with
    `private_to_hosts_when_quiet`, attendees may still write privately to a host.
    `strikes`: refused stanzas before the sender is removed (0: never).
    """

    quiet: bool
    private_to_hosts_when_quiet: bool
    chat: Budget
    chat_max_bytes: int
    strikes: int


@dataclass(frozen=True, slots=True)
class WireBudgets:
    """The gate-wide budgets for what is not chat."""

    presence: Budget
    iq: Budget
    signal: Budget


@dataclass(frozen=True, slots=True)
class Speaker:
    """The session's sender, as the gate admitted it."""

    admission_id: str
    room: str
    name: str
    host: bool


@dataclass(frozen=True, slots=True)
class Addresses:
    """Where a session of `room` may send stanzas, on the XMPP `domain`.

    `muc_domains`: the MUC's domains (`conference.<domain>`, and `conference.<tenant>.<domain>`
    when the session came through a tenant's path); the room's bare JID on each, and its
    occupants, may be addressed. `lobby_domains` likewise for the room's lobby;
    `breakout_domains` for its breakout rooms; `components`: the full component domains
    (`focus.<domain>`, `speakerstats.<domain>`, …). The domain itself (and no `to`) is the
    server: bind, ping, disco, TURN credentials.
    """

    domain: str
    muc_domains: frozenset[str]
    lobby_domains: frozenset[str]
    breakout_domains: frozenset[str]
    components: frozenset[str]


@dataclass(frozen=True, slots=True)
class Forward:
    """Pass `data` on to the server: the stanza as sent, or rewritten."""

    data: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """Drop the stanza. `stand_in` goes to the server in its place (a stanza the server counts
    and ignores, so that XEP-0198's count of handled stanzas stays exact); `reply` goes to the
    sender (an XMPP error stanza Jitsi shows), or nothing. `reason` names the rule (a metric
    label, a log word: never content)."""

    stand_in: str
    reply: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class EndStream:
    """End the session: `error` (an RFC 7395 stream error element) goes to the sender, then the
    connection is closed both ways. `reason` as for Refuse."""

    error: str
    reason: str


Verdict = Forward | Refuse | EndStream


class WireGuard:
    """One signalling session's guard: its budgets and its count of refused stanzas."""

    def __init__(
        self,
        speaker: Speaker,
        addresses: Addresses,
        budgets: WireBudgets,
        rules: Callable[[], ChatRules],
        hosts: Callable[[], frozenset[str]],
    ) -> None:
        """`rules()` is the room's current ChatRules (it may change during the session);
        `hosts()` the MUC occupant JIDs (`room@muc/resource`) of the room's hosts as the
        guard has seen them join, for quiet mode's private messages to hosts."""
        raise NotImplementedError

    @property
    def strikes(self) -> int:
        """Stanzas refused in this session so far."""
        raise NotImplementedError

    @property
    def removable(self) -> bool:
        """Past the room's strike threshold: the sender is to be removed."""
        raise NotImplementedError

    def inspect(self, data: str | bytes, now: float) -> Verdict:
        """Judge one element the client sent: one WebSocket message (RFC 7395 framing: `<open/>`,
        `<close/>`, a stanza, a stream-management or SASL element), or one child of a BOSH
        `<body>` (its exact bytes)."""
        raise NotImplementedError
