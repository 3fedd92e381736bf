"""The attack replay's shared vocabulary (issue 20; plan in docs/design/attack-replay.md): one
`Events` record every actor writes into, and the `Stage` every actor reads its addresses from.

Every figure of the report and every panel of its plot is computed from `Events` alone, so that
what the report says and what the scenario did cannot drift apart.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Event kinds. `who` is an actor's name ("attendee-7", "host-0", "troll-2", "flood", "stage").
JOIN_OK = "join_ok"  # an invite redeemed (detail: phase, "quiet" or "attack"; value: latency s)
CHALLENGED = "challenged"  # a legitimate join was asked for proof-of-work first (detail: phase;
#                           value: its difficulty in bits; the solving is in JOIN_OK's latency)
JOIN_WAITED = "join_waited"  # the part of a JOIN_OK's latency that is not the gate's (detail:
#                             phase; value: seconds solving proof-of-work and waiting Retry-After)
JOIN_REFUSED = "join_refused"  # a legitimate redemption refused (detail: the HTTP status)
CONNECTED = "connected"  # an XMPP session bound and the room joined (detail: replica name)
CHAT_SENT = "chat_sent"  # a groupchat message sent (detail: its unique marker)
CHAT_HEARD = "chat_heard"  # a message heard by `who` (detail: the marker; value: unused)
CHAT_REFUSED = "chat_refused"  # the guard answered a sent message with an error
PRESENCE_HEARD = "presence_heard"  # `who` heard a presence (detail: "<occupant>\t<shown name>")
HOST_REMOVE = "host_remove"  # a host sent a removal (who: the troll; detail: "dashboard"/"cli")
GUARD_THRESHOLD = "guard_threshold"  # a troll sent the stanza that is its strike number N
SOCKET_CLOSED = "socket_closed"  # a client's socket ended (detail: "asked" or "unasked")
RETRY = "retry"  # a removed troll's attempt back (detail: "<way>\t<outcome>"; outcome "refused",
#                  "ALIVE" or "error": the attempt itself failed; value: the HTTP status, 0 none)
IMPERSONATION = "impersonation"  # a troll's presence with another's name or a tracker (detail:
#                  "<way>\t<what the room reflected to the troll>", as "verified" or "FORGED")
STORE_BUSY = "store_busy"  # a host's action answered 503 and clicked again (detail: the action;
#                           value: seconds from the first click to the one that was done)
FAULT = "fault"  # detail: "failover", "kill-b", "lockdown", "move"
RECONNECTED = "reconnected"  # an attendee back after an unasked close (value: seconds away)
FLOOD = "flood"  # the flood's summary (detail: "<requests>\t<per second>\t<statuses>")
BENCH_ERROR = "bench_error"  # the bench itself failed: a figure around it cannot be trusted
#                              (detail: "<where>\t<error type>")
LEFT_HEARD = "left_heard"  # `who` heard an occupant leave (detail: its full occupant JID)


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # seconds since the record started (perf_counter based)
    kind: str
    who: str
    detail: str = ""
    value: float = 0.0


class Events:
    """Append-only, in one event loop (no lock needed); `at` is relative to the record's start."""

    def __init__(self) -> None:
        self.origin = time.perf_counter()
        self.items: list[Event] = []

    def now(self) -> float:
        return time.perf_counter() - self.origin

    def add(
        self, kind: str, who: str, detail: str = "", value: float = 0.0, at: float | None = None
    ) -> Event:
        """Record an event; `at` is a perf_counter() reading (now if not given)."""
        when = (time.perf_counter() if at is None else at) - self.origin
        event = Event(at=when, kind=kind, who=who, detail=detail, value=value)
        self.items.append(event)
        return event

    def of(self, kind: str, who: str | None = None) -> list[Event]:
        return [e for e in self.items if e.kind == kind and (who is None or e.who == who)]

    def counts(self) -> Counter[str]:
        return Counter(e.kind for e in self.items)


@dataclass(frozen=True, slots=True)
class Replica:
    """One `meetgate serve` of the stage (bench.servers.Gateway's fields plus its name/log)."""

    name: str  # "a" or "b"
    url: str  # its own public listener, http://127.0.0.1:port (the "other replica" way in)
    admin_url: str
    admin_token: str
    pid: int
    log: Path
    config: Path


@dataclass(slots=True)
class Stage:
    """Everything the actors need to reach the running meeting.

    `front_url` is the TLS front (Debian's nginx with deploy/systemd/meetgate.nginx.conf,
    upstream both replicas); clients reach it with `cafile`. Attendees, hosts and trolls go
    through the front; only a troll's "other replica" retry goes to a replica's own `url`.
    """

    front_url: str  # https://127.0.0.1:<port>
    cafile: Path
    replicas: dict[str, Replica]
    prosody_domain: str  # the XMPP domain (anonymous logins)
    muc_domain: str
    redis_url: str  # the Sentinel URL the replicas use (redis+sentinel://…)
    workdir: Path
    realip: bool  # whether the front believes X-Forwarded-For from 127.0.0.1 (spoofed flood)
    cookie_name: str = "meetgate"
    notes: list[str] = field(default_factory=list)  # what the report must say about the stage

    def room_jid(self, room: str) -> str:
        return f"{room}@{self.muc_domain}"
