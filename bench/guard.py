"""The wire guard's cost (issue 16): Jitsi stanzas through the gate's signalling relay with the
guard on and with it off, as messages per second, round-trip latency and gateway CPU per message.

Two gateways, configured alike but for `[guard] enabled`, relay `/xmpp-websocket` to the bench
upstream's echo (bench/upstream.py), so the figures hold the gate's work and not prosody's. Each
connection is an admission of its own, opened as Jitsi's client opens it (the room and the
ticket in the query), and sends, after its `<open/>`, a presence update to its room, a group
chat message and a ping to the domain, over and over. The guard's budgets are raised so that
nothing is refused: every echo is checked byte for byte against what the guard forwarded when
the connection began (the presence's nick rewritten to the verified name, all else as sent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial

from websockets.asyncio.client import ClientConnection, connect

from bench import upstream, ws_throughput
from bench.admin import AdminApi, Admitted, SetupError, admit
from bench.machine import process_cpu_seconds
from bench.report import Figure, Goal
from bench.roundtrip import Latency, added_latency_goals, echo_ns, percentile
from bench.servers import GATEWAY_ENV, Gateway, Servers
from bench.ws_throughput import Conversation, Throughput, text_frame
from gateway.proxy.guarded import addresses_for, budgets_from
from gateway.proxy.room_rules import chat_rules
from gateway.proxy.wire_guard import Forward, Speaker, WireGuard
from gateway.settings import GuardSettings
from tests.fixtures.prosody import DOMAIN, MUC_DOMAIN

# Issue 16's goals.
THROUGHPUT_TARGET = 0.80
CONNECTIONS = ws_throughput.CONNECTIONS
# Sequential round trips per target and block, as bench/roundtrip.py takes them.
BLOCK = 100
WARM_UP_ROUND_TRIPS = 200
NICK_NS = "http://jabber.org/protocol/nick"
FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
# What the client sends as its presence's nick: not its verified name, so that every presence
# is rewritten (the guard's costlier path) and the rewrite can be seen in the echo.
FORGED_NICK = "Somebody Else"
# The occupant's resource in the MUC, as Jitsi's client makes one (eight hex digits).
RESOURCE = "4a7c2e1f"
GUARD_BUDGETS = {
    # As high as the settings allow, so that the bench's load is never refused: chat at most
    # 1,000/s a session (a session here sends about a third of its stanzas as chat, and each
    # of the 32 sessions carries about a thirty-second of the relay's rate); strikes 0: never
    # removed.
    "MEETGATE_GUARD__CHAT_PER_10S": "10000",
    "MEETGATE_GUARD__CHAT_BURST": "10000",
    **{
        f"MEETGATE_GUARD__{kind}_{what}": "100000"
        for kind in ("PRESENCE", "IQ", "SIGNAL")
        for what in ("PER_10S", "BURST")
    },
    "MEETGATE_GUARD__STRIKES": "0",
}
GUARD_ENV = {
    **GATEWAY_ENV,
    # A run's sessions reopen with the tickets they were given at the start.
    "MEETGATE_TICKETS__TTL_SECONDS": "3600",
    **GUARD_BUDGETS,
}
SIDES = {"on": "guard on", "off": "guard off", "direct": "straight to the echo"}
KINDS = ("presence", "chat", "ping")
# In-process timing of the guard alone: cycles of the three stanzas per batch, batches.
INSPECT_CYCLES = 20_000
INSPECT_BATCHES = 5


def open_element() -> str:
    return f'<open xmlns="{FRAMING_NS}" to="{DOMAIN}" version="1.0"/>'


def stanzas(room: str) -> tuple[str, str, str]:
    """A Jitsi client's presence update to its room (about 400 bytes), a group chat message
    (about 200) and a ping to the domain, in lib-jitsi-meet's shapes (ChatRoom.ts sendPresence
    and sendMessage, strophe.ping.ts; as tests/fixtures/jitsi_stanzas.py has them)."""
    room_jid = f"{room}@{MUC_DOMAIN}"
    presence = (
        f"<presence xmlns='jabber:client' to='{room_jid}/{RESOURCE}'>"
        "<stats-id>Kirsten-Xyd</stats-id>"
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
        "node='https://jitsi.org/jitsi-meet' ver='e7Tk1cH8yQ8oF2Kz0vW6Q6Yq3dE='/>"
        "<audiomuted>true</audiomuted><videomuted>false</videomuted>"
        "<videoType>camera</videoType>"
        f"<nick xmlns='{NICK_NS}'>{FORGED_NICK}</nick></presence>"
    )
    chat = (
        f"<message xmlns='jabber:client' to='{room_jid}' type='groupchat' id='a1f3c9e2'>"
        "<body>Can everyone see my screen now? The slides are on page four.</body></message>"
    )
    ping = (
        f"<iq xmlns='jabber:client' to='{DOMAIN}' type='get' id='4e1b7c2d:sendIQ'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    return presence, chat, ping


def verified_name(ticket: str) -> str:
    """The display name the ticket carries (its payload, not verified: the gate did that)."""
    payload = ticket.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["context"]["user"]["name"])


def signalling_path(admitted: Admitted) -> str:
    return f"{upstream.SIGNALLING_PATH}?room={admitted.room}&token={admitted.ticket}"


def _children(element: ET.Element) -> list[tuple[str, dict[str, str], str]]:
    return [(child.tag, dict(child.attrib), child.text or "") for child in element]


def check_forwarded(sent: str, back: str, name: str, *, guarded: bool) -> None:
    """What came back is what the guard should forward: with the guard on, a presence to the
    room carries the verified `name` as its nick and otherwise its children as sent; anything
    else (and everything with the guard off) comes back as sent. SetupError if not."""
    if back == sent and not (guarded and sent.startswith("<presence")):
        return
    if not guarded or not sent.startswith("<presence"):
        raise SetupError("a stanza came back changed through a relay that should not change it")
    got = ET.fromstring(back)  # noqa: S314 (the bench's own echo of its own stanza)
    wanted = ET.fromstring(sent)  # noqa: S314 (the bench's own stanza)
    nick = f"{{{NICK_NS}}}nick"
    rest = [child for child in _children(got) if child[0] != nick]
    nicks = [child.text for child in got if child.tag == nick]
    if nicks != [name] or rest != [c for c in _children(wanted) if c[0] != nick]:
        raise SetupError("the guarded presence did not come back with the verified name alone")
    if got.attrib != wanted.attrib:
        raise SetupError("the guarded presence came back addressed differently")


async def prepare(
    url: str, admitted: Admitted, *, guarded: bool
) -> tuple[Conversation, tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open one raw signalling socket, send `<open/>` and each stanza once, and check what comes
    back; the conversation to repeat (the echoes as they came) and the open socket."""
    reader, writer = await ws_throughput.open_socket(url, signalling_path(admitted))
    name = verified_name(admitted.ticket)
    try:
        writer.write(text_frame(open_element(), masked=True))
        if await ws_throughput.read_frame(reader) != text_frame(open_element(), masked=False):
            raise SetupError("the stream's <open/> did not come back as sent")
        frames, echoes = [], []
        for stanza in stanzas(admitted.room):
            frame = text_frame(stanza, masked=True)
            writer.write(frame)
            echo = await asyncio.wait_for(ws_throughput.read_frame(reader), 10)
            payload = _payload(echo)
            check_forwarded(stanza, payload, name, guarded=guarded)
            frames.append(frame)
            echoes.append(echo)
    except BaseException:
        writer.close()
        raise
    return Conversation(signalling_path(admitted), tuple(frames), tuple(echoes)), (reader, writer)


def _payload(frame: bytes) -> str:
    size = frame[1] & 0x7F
    start = 2 + {126: 2, 127: 8}.get(size, 0)
    return frame[start:].decode()


async def throughput(
    url: str, admissions: list[Admitted], *, guarded: bool, pid: int | None, options: Timing
) -> Throughput:
    """Messages/s on one connection per admission (the gate's CPU too, given its `pid`)."""
    prepared = []
    try:
        for admitted in admissions:
            prepared.append(await prepare(url, admitted, guarded=guarded))
    except BaseException:
        for _, (_, writer) in prepared:
            writer.close()
        raise
    return await ws_throughput.measure_conversations(
        url,
        [conversation for conversation, _ in prepared],
        [stream for _, stream in prepared],
        warm_up=options.warm_up,
        seconds=options.seconds,
        server_cpu=None if pid is None else partial(process_cpu_seconds, pid),
    )


def inspect_cost(room: str, name: str) -> dict[str, float]:
    """µs per `WireGuard.inspect` of each stanza, called in this process as the relay calls it
    (the gateway's settings with the bench's budgets, the room's rules the gate's defaults):
    the median of INSPECT_BATCHES batches. The guard's own cost, without relay or machine."""
    settings = GuardSettings.model_validate(
        {
            key.removeprefix("MEETGATE_GUARD__").lower(): value
            for key, value in GUARD_BUDGETS.items()
        }
    )
    rules = chat_rules(None, settings)
    guard = WireGuard(
        Speaker("bench-admission", room, name, host=False),
        addresses_for(DOMAIN, settings),
        budgets_from(settings),
        lambda: rules,
        frozenset,
    )
    sent = stanzas(room)
    now = 0.0
    for stanza in sent:
        if not isinstance(guard.inspect(stanza, now), Forward):
            raise SetupError("the guard did not forward a stanza of the bench's")
    batches: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(INSPECT_BATCHES):
        for kind, stanza in zip(KINDS, sent, strict=True):
            inspect = guard.inspect
            started = time.perf_counter_ns()
            for _ in range(INSPECT_CYCLES):
                # A few stanzas a millisecond, well within the raised budgets.
                now += 0.001
                inspect(stanza, now)
            batches[kind].append((time.perf_counter_ns() - started) / INSPECT_CYCLES / 1000)
        if guard.strikes:
            raise SetupError("the guard refused a stanza of the bench's")
    return {kind: statistics.median(found) for kind, found in batches.items()}


async def round_trips(
    targets: dict[str, tuple[str, Admitted, bool]], *, count: int
) -> dict[str, Latency]:
    """p50/p99 of `count` sequential round trips per target (the three stanzas in turn), the
    targets taking turns in blocks of BLOCK, one `websockets` client connection each; a
    target is (base URL, admission, guarded)."""
    connections: dict[str, ClientConnection] = {}
    exchanges: dict[str, list[tuple[str, str]]] = {}
    samples: dict[str, list[int]] = {name: [] for name in targets}
    try:
        for name, (url, admitted, guarded) in targets.items():
            connection = await connect(
                "ws" + url.removeprefix("http") + signalling_path(admitted),
                compression=None,
                open_timeout=10,
                proxy=None,
            )
            connections[name] = connection
            await connection.send(open_element())
            if await connection.recv() != open_element():
                raise SetupError("the stream's <open/> did not come back as sent")
            exchange = []
            who = verified_name(admitted.ticket)
            for stanza in stanzas(admitted.room):
                await connection.send(stanza)
                back = str(await connection.recv())
                check_forwarded(stanza, back, who, guarded=guarded)
                exchange.append((stanza, back))
            exchanges[name] = exchange
            for n in range(WARM_UP_ROUND_TRIPS):
                await echo_ns(connection, *exchange[n % len(exchange)])
        while any(len(taken) < count for taken in samples.values()):
            for name, connection in connections.items():
                exchange, taken = exchanges[name], samples[name]
                for _ in range(min(BLOCK, count - len(taken))):
                    taken.append(await echo_ns(connection, *exchange[len(taken) % len(exchange)]))
    finally:
        for connection in connections.values():
            await connection.close()
    result = {}
    for name, taken in samples.items():
        taken.sort()
        result[name] = Latency(
            samples=len(taken), p50_ms=percentile(taken, 0.50), p99_ms=percentile(taken, 0.99)
        )
    return result


@dataclass(frozen=True, slots=True)
class Timing:
    warm_up: float
    seconds: float
    round_trips: int


@dataclass(frozen=True, slots=True)
class Gates:
    on: Gateway
    off: Gateway
    upstream: str


@dataclass
class GuardMeasurements:
    """Every repeat's figures: round trips by side, messages/s by side ("direct" once)."""

    latency: list[dict[str, Latency]] = field(default_factory=list)
    relay: dict[str, list[Throughput]] = field(default_factory=dict)
    # µs per WireGuard.inspect by stanza kind, in this process, one dict per repeat.
    inspect: list[dict[str, float]] = field(default_factory=list)

    def rates(self, side: str) -> list[float]:
        return [t.per_second for t in self.relay.get(side, [])]

    def cpu_us(self, side: str) -> list[float]:
        return [
            us for t in self.relay.get(side, []) if (us := t.server_cpu_per_message_us) is not None
        ]


def start_gates(servers: Servers, upstream_url: str) -> Gates:
    """Two gateways in front of `upstream_url` for pages and signalling alike: the guard on,
    and off; the same settings otherwise."""
    on = servers.gateway(
        "gate-guard-on", upstream=upstream_url, store_url="memory://", env=GUARD_ENV
    )
    off = servers.gateway(
        "gate-guard-off",
        upstream=upstream_url,
        store_url="memory://",
        env={**GUARD_ENV, "MEETGATE_GUARD__ENABLED": "false"},
    )
    return Gates(on=on, off=off, upstream=upstream_url)


async def admissions(gate: Gateway, room: str, count: int) -> list[Admitted]:
    """`count` admissions to `room` on `gate`, each from an invite of its own."""
    api = AdminApi(gate.admin_url, gate.admin_token)
    await api.create_rooms([room])
    tokens = await api.create_invites([room], count, connections=4)
    return [await admit(gate.url, token) for token in tokens]


def measure(
    gates: Gates,
    room: str,
    repeats: int,
    timing: Timing,
    say: Callable[[str], None],
    m: GuardMeasurements,
    sampled: Callable[[str, Gateway], AbstractContextManager[None]] | None = None,
) -> None:
    """Round trips, then messages/s with the guard off and on (the two taking turns going
    first; straight to the echo in the first repeat), `repeats` times. `sampled(side, gateway)`
    wraps each gateway's messages/s run (the profiler of `--profile`)."""
    on = asyncio.run(admissions(gates.on, room, CONNECTIONS + 1))
    off = asyncio.run(admissions(gates.off, room, CONNECTIONS + 1))
    gateways = {"on": gates.on, "off": gates.off}
    # The echo ignores the query; the admission only makes the request alike.
    latency_targets = {
        "on": (gates.on.url, on[-1], True),
        "off": (gates.off.url, off[-1], False),
        "direct": (gates.upstream, off[-1], False),
    }
    for repeat in range(repeats):
        latency = asyncio.run(round_trips(latency_targets, count=timing.round_trips))
        m.latency.append(latency)
        line = f"  repeat {repeat + 1}: p50 " + ", ".join(
            f"{name} {found.p50_ms:.3f} ms" for name, found in latency.items()
        )
        order = ["off", "on"] if repeat % 2 == 0 else ["on", "off"]
        for side in [*order, "direct"] if repeat == 0 else order:
            gateway = gateways.get(side)
            sampling = (
                sampled(side, gateway)
                if sampled is not None and gateway is not None
                else contextlib.nullcontext()
            )
            with sampling:
                found = asyncio.run(
                    throughput(
                        gates.upstream if gateway is None else gateway.url,
                        (on if side == "on" else off)[:CONNECTIONS],
                        guarded=side == "on",
                        pid=None if gateway is None else gateway.pid,
                        options=timing,
                    )
                )
            m.relay.setdefault(side, []).append(found)
            cpu = found.server_cpu_per_message_us
            line += f"; {side} {found.per_second:,.0f} messages/s" + (
                f" ({cpu:.1f} µs gateway CPU each)" if cpu is not None else ""
            )
        say(line)
        m.inspect.append(inspect_cost(room, verified_name(on[0].ticket)))
        say(
            "    in-process WireGuard.inspect: "
            + ", ".join(f"{kind} {us:.1f} µs" for kind, us in m.inspect[-1].items())
        )


def goals(m: GuardMeasurements) -> list[Goal]:
    on, off = m.rates("on"), m.rates("off")
    result = [
        Goal(
            what="wire guard: signalling relay messages/s with the guard on vs off (Jitsi "
            f"stanzas: presence, group chat, ping in turn; {CONNECTIONS} connections, "
            f"{ws_throughput.IN_FLIGHT} in flight each)",
            meetgate=on,
            baseline=off,
            unit="{:,.0f}/s",
            baseline_name="guard off",
            scores=[a / b for a, b in zip(on, off, strict=True)],
            score_unit="{:.0%}",
            target=THROUGHPUT_TARGET,
            higher_is_better=True,
            target_text=f"≥ {THROUGHPUT_TARGET:.0%} of off",
        )
    ]
    result += added_latency_goals(
        m.latency,
        "on",
        lambda label: (
            f"wire guard: signalling relay with the guard on, added round-trip latency "
            f"{label} (the same stanzas, one at a time)"
        ),
    )
    return result


def figures(m: GuardMeasurements) -> list[Figure]:
    result = []
    for label, attr in (("p50", "p50_ms"), ("p99", "p99_ms")):
        off = [r["off"] for r in m.latency]
        direct = [r["direct"] for r in m.latency]
        added_off = [getattr(o, attr) - getattr(d, attr) for o, d in zip(off, direct, strict=True)]
        guard_own = [getattr(r["on"], attr) - getattr(r["off"], attr) for r in m.latency]
        result.append(
            Figure(
                what=f"signalling relay with the guard off, added round-trip latency {label} "
                "(for comparison)",
                meetgate=f"{statistics.median(added_off):+.3f} ms",
                baseline=f"{statistics.median(getattr(d, attr) for d in direct):.3f} ms "
                "straight to the echo",
                comparison="guard on less off: "
                + ", ".join(f"{x:+.3f}" for x in guard_own)
                + " ms by repeat",
            )
        )
    on_us, off_us = m.cpu_us("on"), m.cpu_us("off")
    if on_us and off_us:
        added = [a - b for a, b in zip(on_us, off_us, strict=True)]
        result.append(
            Figure(
                what="gateway CPU per relayed stanza (user + system over the timed window, over "
                "the messages echoed), guard on vs off",
                meetgate=f"{statistics.median(on_us):.1f} µs on",
                baseline=f"{statistics.median(off_us):.1f} µs off",
                comparison=f"+{statistics.median(added):.1f} µs judging each (by repeat: "
                + ", ".join(f"{x:+.1f}" for x in added)
                + "); off/on "
                + f"{statistics.median(b / a for a, b in zip(on_us, off_us, strict=True)):.0%}",
            )
        )
    if m.inspect:
        by_kind = {kind: [found[kind] for found in m.inspect] for kind in KINDS}
        result.append(
            Figure(
                what="the guard alone: `WireGuard.inspect` called in the benchmark's process "
                f"on the same stanzas (median of {INSPECT_BATCHES} batches of "
                f"{INSPECT_CYCLES:,} each, per repeat)",
                meetgate=", ".join(
                    f"{kind} {statistics.median(us):.1f} µs" for kind, us in by_kind.items()
                ),
                baseline="—",
                comparison="by repeat: "
                + "; ".join(", ".join(f"{us:.1f}" for us in found.values()) for found in m.inspect),
            )
        )
    return result


def details(m: GuardMeasurements) -> list[str]:
    if not m.relay:
        return []
    each = "; ".join(
        f"{side} " + ", ".join(f"{t.per_second:,.0f}" for t in found)
        for side, found in m.relay.items()
    )
    busiest = max(t.client_cpu_share for found in m.relay.values() for t in found)
    lines = [
        f"Wire guard, signalling messages/s repeat by repeat: {each} (straight to the echo in "
        f"the first repeat only); the client used at most {busiest:.0%} of its core"
    ]
    lines.append(
        "Wire guard, round trips p50 / p99 repeat by repeat: "
        + "; ".join(
            ", ".join(f"{side} {r[side].p50_ms:.3f} / {r[side].p99_ms:.3f} ms" for side in SIDES)
            for r in m.latency
        )
    )
    return lines


def method(round_trips: int) -> str:
    sizes = ", ".join(f"{len(s.encode())} B" for s in stanzas("bench-guard-00000000"))
    return (
        "Wire guard: two gateways alike but for `[guard] enabled` (memory store), signalling "
        "(`/xmpp-websocket?room=…&token=…`, as Jitsi's client opens it) relayed to the "
        f"upstream's echo; {CONNECTIONS} connections, one admission each, each sending "
        f"`<open/>` and then a presence update to its room, a group chat message and a ping to "
        f"the domain in turn ({sizes}), {ws_throughput.IN_FLIGHT} in flight, every echo checked "
        "byte for byte against what the guard forwarded when the connection began (the "
        "presence's nick rewritten to the ticket's verified name; the rest as sent); the "
        "guard's budgets raised so that nothing is refused (bench/guard.py). The guard off and "
        "on take turns going first; the echo shares the server CPU with either gateway, so the "
        "ratio of messages/s holds the echo's cost too; the gateway's CPU per stanza, on less "
        "off, is the guard's cost without it. Round trips: "
        f"{round_trips} sequential per side after {WARM_UP_ROUND_TRIPS} warm-up, the guard on, "
        "off and the echo itself alternating in "
        f"blocks of {BLOCK}, one `websockets` client connection each; added latency is the "
        "gateway's percentile less the echo's own."
    )
