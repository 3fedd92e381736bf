"""Revocation latency (issue 3): from a host's revoke request to the revoked client's socket
closed and to its `unavailable` presence at another occupant, on one replica and across two;
and a gate holding thousands of idle proxied WebSockets: memory per connection, time to cut one.

Everything goes through the gateways' public surface: invites from the admin API, redemptions
as a browser posts them, XMPP over the gate's `/xmpp-websocket` to a real prosody, the revoke as
the dashboard's script sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from websockets.asyncio.client import ClientConnection, connect

from bench import upstream
from bench.admin import AdminApi, Admitted, Invites, SetupError, admit
from bench.host import HostDesk, revoked
from bench.machine import process_rss_bytes
from bench.report import Figure, Goal
from bench.roundtrip import percentile
from bench.servers import Gateway, Prosody
from bench.xmpp import XmppClient, XmppFailed
from gateway.admission.pipeline import admission_id_for

ONE_REPLICA = "one replica (memory store)"
TWO_REPLICAS = "two replicas sharing one Redis, revoked on the one not holding the socket"
SOCKET_CLOSED_TARGET_MS = {ONE_REPLICA: 50.0, TWO_REPLICAS: 100.0}
PRESENCE_TARGET_MS = 1000.0
# Waits past the targets, so that a slow revocation is measured rather than cut short.
CLOSE_WAIT_SECONDS = 5.0
PRESENCE_WAIT_SECONDS = 5.0
# A run with this many revocations that never completed stops early: it stays bounded.
MAX_MISSES = 5
WARM_UP_REVOCATIONS = 5
CUT_CLOSE_CODE = 4403
SETUP_CONCURRENCY = 16
SOCKET_CONCURRENCY = 32
ECHO_CHECKS = 20

T = TypeVar("T")


def quantiles(samples_ms: list[float]) -> tuple[float, float]:
    """(p50, p99) of millisecond samples; NaN for none."""
    ordered = sorted(int(ms * 1e6) for ms in samples_ms)
    if not ordered:
        return float("nan"), float("nan")
    return percentile(ordered, 0.50), percentile(ordered, 0.99)


@dataclass(frozen=True, slots=True)
class Timing:
    """One revocation, from just before the host's request was written: when its answer came,
    when the revoked client's socket closed and when the other occupant saw it leave (None:
    not within the wait), and the close code the client got."""

    answered_ms: float
    closed_ms: float | None
    gone_ms: float | None
    close_code: int | None


@dataclass(frozen=True, slots=True)
class Revocations:
    """`count` revocations, each timed from just before the host's request was written."""

    setup: str
    count: int
    answered_ms: list[float]
    closed_ms: list[float]
    gone_ms: list[float]
    # Revocations whose socket did not close, or whose presence did not arrive, in the wait.
    not_closed: int
    not_gone: int
    # Close codes other than the gate's 4403, by code.
    other_codes: dict[int, int]


@dataclass(frozen=True, slots=True)
class IdleSockets:
    count: int
    rss_before: int
    rss_after: int
    cuts: int
    cut_ms: list[float]
    other_codes: dict[int, int]

    @property
    def bytes_per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.count


def signalling_url(gate: Gateway, admitted: Admitted) -> str:
    """The gate's XMPP WebSocket as Jitsi's client opens it: the room and the ticket."""
    base = "ws" + gate.url.removeprefix("http")
    return f"{base}/xmpp-websocket?room={admitted.room}&token={admitted.ticket}"


async def bounded_gather(jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    """Run `jobs` with at most `concurrency` at once; their results in order."""
    results: dict[int, T] = {}
    pending = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in pending:
            results[index] = await job()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [results[index] for index in range(len(jobs))]


async def _one_revocation(
    desk: HostDesk,
    watcher: XmppClient,
    socket_gate: Gateway,
    prosody: Prosody,
    victim: Admitted,
    nick: str,
    close_wait: float = CLOSE_WAIT_SECONDS,
) -> Timing:
    """Join `victim` to its room as `nick`, wait until the watcher sees it, revoke it."""
    client = await XmppClient.connect(
        signalling_url(socket_gate, victim), domain=prosody.domain, stream_management=True
    )
    try:
        await client.join(prosody.room_jid(victim.room), nick)
        await watcher.wait_for(nick, "available", PRESENCE_WAIT_SECONDS)
        await desk.ready()
        started = time.perf_counter()
        answer = await desk.revoke(admission_id_for(victim.cookie))
        answered = time.perf_counter()
        if not revoked(answer):
            raise SetupError(f"the revoke was not done: {answer.status} {answer.body[:300]!r}")
        closed = gone = None
        with contextlib.suppress(TimeoutError):
            closed = await client.wait_closed(close_wait)
        with contextlib.suppress(TimeoutError, XmppFailed):
            gone = await watcher.wait_for(nick, "unavailable", PRESENCE_WAIT_SECONDS)
        return Timing(
            answered_ms=(answered - started) * 1000,
            closed_ms=None if closed is None else (closed - started) * 1000,
            gone_ms=None if gone is None else (gone - started) * 1000,
            close_code=client.close_code,
        )
    finally:
        await client.abort()


async def measure_revocations(
    setup: str,
    host_gate: Gateway,
    socket_gate: Gateway,
    prosody: Prosody,
    count: int,
    close_wait: float = CLOSE_WAIT_SECONDS,
) -> Revocations:
    """`count` revocations one after the other (after a few untimed ones). The host revokes on
    `host_gate`, where the watching occupant is connected too; each revoked client is redeemed
    on and connected through `socket_gate` (another replica, or the same). A socket not closed
    within `close_wait` seconds counts as never closed."""
    api = AdminApi(host_gate.admin_url, host_gate.admin_token)
    room = f"revoke-{secrets.token_hex(4)}"
    await api.create_rooms([room])
    [host_token] = await api.create_invites([room], 1, name="Host", role="host")
    [watcher_token] = await api.create_invites([room], 1, name="Watcher")
    victims = await api.create_invites([room], count + WARM_UP_REVOCATIONS, name="Victim")
    host = await admit(host_gate.url, host_token)
    desk = await HostDesk.open(host_gate.url, host)
    watcher: XmppClient | None = None
    answered: list[float] = []
    closed: list[float] = []
    gone: list[float] = []
    not_closed = not_gone = 0
    other_codes: dict[int, int] = {}
    try:
        seen = await admit(host_gate.url, watcher_token)
        watcher = await XmppClient.connect(
            signalling_url(host_gate, seen), domain=prosody.domain, stream_management=False
        )
        await watcher.join(prosody.room_jid(room), "watcher")
        for number, token in enumerate(victims):
            victim = await admit(socket_gate.url, token)
            if number == 0:
                ids = {str(p["id"]) for p in await desk.participants()}
                if admission_id_for(victim.cookie) not in ids:
                    raise SetupError("a victim's admission is not on the host's roster")
            timing = await _one_revocation(
                desk, watcher, socket_gate, prosody, victim, f"victim-{number}", close_wait
            )
            if number < WARM_UP_REVOCATIONS:
                continue
            answered.append(timing.answered_ms)
            if timing.closed_ms is None:
                not_closed += 1
            else:
                closed.append(timing.closed_ms)
            if timing.gone_ms is None:
                not_gone += 1
            else:
                gone.append(timing.gone_ms)
            if timing.close_code != CUT_CLOSE_CODE:
                code = -1 if timing.close_code is None else timing.close_code
                other_codes[code] = other_codes.get(code, 0) + 1
            if not_closed + not_gone >= MAX_MISSES:
                break
    finally:
        if watcher is not None:
            await watcher.close()
        await desk.close()
    return Revocations(
        setup=setup,
        count=len(answered),
        answered_ms=answered,
        closed_ms=closed,
        gone_ms=gone,
        not_closed=not_closed,
        not_gone=not_gone,
        other_codes=other_codes,
    )


async def _open_socket(gate: Gateway, cookie: str) -> ClientConnection:
    url = "ws" + gate.url.removeprefix("http") + upstream.ECHO_PATH
    return await connect(
        url,
        additional_headers={"cookie": f"meetgate={cookie}"},
        compression=None,
        open_timeout=30,
        proxy=None,
        # Idle for the whole measurement: no keepalive pings adding traffic.
        ping_interval=None,
    )


async def _close_all(sockets: list[ClientConnection]) -> None:
    async def close(socket: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(socket.close(), 5)

    await bounded_gather([partial(close, socket) for socket in sockets], 200)


async def measure_idle_sockets(gate: Gateway, count: int, cuts: int) -> IdleSockets:
    """Open `count` proxied WebSockets to the upstream's echo, each with an admission of its
    own; the gateway's resident memory before and after; then revoke `cuts` of them (after an
    untimed one) one at a time, each timed to its socket closed, with all the others open."""
    api = AdminApi(gate.admin_url, gate.admin_token)
    host_room = f"sockets-{secrets.token_hex(4)}"
    await api.create_rooms([host_room])
    [host_token] = await api.create_invites([host_room], 1, name="Host", role="host")
    # One more target than timed cuts: the first cut is untimed (the first revoke on a fresh
    # gateway runs cold code paths).
    revoked_first = cuts + 1
    targets = await api.create_invites([host_room], revoked_first, name="Target")
    others = await Invites(api, f"{host_room}-x", 100).make(count - revoked_first)
    tokens = targets + others[: count - revoked_first]
    admitted = await bounded_gather(
        [partial(admit, gate.url, token) for token in tokens], SETUP_CONCURRENCY
    )
    host = await admit(gate.url, host_token)
    sockets: list[ClientConnection] = []
    desk: HostDesk | None = None
    try:
        rss_before = process_rss_bytes(gate.pid)
        # Filled in as they open, so that a failure half-way still closes the opened ones.
        opened: dict[int, ClientConnection] = {}

        async def open_one(index: int, cookie: str) -> None:
            opened[index] = await _open_socket(gate, cookie)

        try:
            await bounded_gather(
                [partial(open_one, i, a.cookie) for i, a in enumerate(admitted)],
                SOCKET_CONCURRENCY,
            )
        finally:
            sockets = [opened[i] for i in sorted(opened)]
        rss_after = process_rss_bytes(gate.pid)
        for socket in sockets[revoked_first : revoked_first + ECHO_CHECKS]:
            await socket.send("ping")
            if await asyncio.wait_for(socket.recv(), 10) != "ping":
                raise SetupError("a proxied WebSocket did not echo")
        desk = await HostDesk.open(gate.url, host)
        cut_ms: list[float] = []
        other_codes: dict[int, int] = {}
        pairs = zip(admitted[:revoked_first], sockets[:revoked_first], strict=True)
        for number, (target, socket) in enumerate(pairs):
            await desk.ready()
            started = time.perf_counter()
            answer = await desk.revoke(admission_id_for(target.cookie))
            if not revoked(answer):
                raise SetupError(f"the revoke was not done: {answer.status}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(socket.wait_closed(), CLOSE_WAIT_SECONDS)
                if number > 0:
                    cut_ms.append((time.perf_counter() - started) * 1000)
            if socket.close_code != CUT_CLOSE_CODE:
                key = -1 if socket.close_code is None else socket.close_code
                other_codes[key] = other_codes.get(key, 0) + 1
        return IdleSockets(
            count=len(sockets),
            rss_before=rss_before,
            rss_after=rss_after,
            cuts=cuts,
            cut_ms=cut_ms,
            other_codes=other_codes,
        )
    finally:
        if desk is not None:
            await desk.close()
        await _close_all(sockets)


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def revocation_figures(results: list[Revocations]) -> list[Figure]:
    """Two rows per set-up: to the socket closed, and to the presence gone."""
    figures = []
    for r in results:
        p50, p99 = quantiles(r.closed_ms)
        target = SOCKET_CLOSED_TARGET_MS[r.setup]
        missing = f", {r.not_closed} never closed" if r.not_closed else ""
        figures.append(
            Figure(
                what=f"revoke → revoked client's socket closed, {r.setup}",
                meetgate=f"p99 {_ms(p99)}",
                baseline=f"p50 {_ms(p50)}, max {_ms(max(r.closed_ms, default=float('nan')))}",
                comparison=f"{r.count} revocations{missing}",
                target=f"p99 ≤ {target:g} ms",
                met=not r.not_closed and p99 <= target,
            )
        )
        p50, p99 = quantiles(r.gone_ms)
        worst = max(r.gone_ms, default=float("nan"))
        missing = f", {r.not_gone} never seen" if r.not_gone else ""
        figures.append(
            Figure(
                what=f"revoke → `unavailable` presence at another occupant, {r.setup}",
                meetgate=f"max {_ms(worst)}",
                baseline=f"p50 {_ms(p50)}, p99 {_ms(p99)}",
                comparison=f"{r.count} revocations{missing}",
                target=f"every one ≤ {PRESENCE_TARGET_MS / 1000:g} s",
                met=not r.not_gone and worst <= PRESENCE_TARGET_MS,
            )
        )
    return figures


IDLE_TARGET_KIB = 20.0


def idle_goal(idles: list[IdleSockets]) -> Goal:
    """Issue 15's row: the gateway's memory per idle relayed WebSocket, one fresh gateway per
    repeat."""
    return Goal(
        what=f"idle relayed WebSocket ({idles[0].count:,} open): gateway memory each",
        meetgate=[idle.bytes_per_connection / 1024 for idle in idles],
        baseline=[],
        unit="{:,.1f} KiB",
        baseline_name="—",
        scores=[idle.bytes_per_connection / 1024 for idle in idles],
        score_unit="{:,.1f} KiB",
        target=IDLE_TARGET_KIB,
        higher_is_better=False,
        target_text=f"≤ {IDLE_TARGET_KIB:g} KiB",
    )


def idle_figures(idles: list[IdleSockets]) -> list[Figure]:
    """Revoking one of the idle sockets, over every repeat's cuts."""
    cut_ms = [ms for idle in idles for ms in idle.cut_ms]
    cuts = sum(idle.cuts for idle in idles)
    p50, _ = quantiles(cut_ms)
    missing = cuts - len(cut_ms)
    return [
        Figure(
            what=f"revoke one of {idles[0].count:,} open WebSockets → its socket closed",
            meetgate=f"p50 {_ms(p50)}",
            baseline=f"max {_ms(max(cut_ms, default=float('nan')))}",
            comparison=f"{cuts} revocations" + (f", {missing} never closed" if missing else ""),
        ),
    ]


def details(results: list[Revocations], idles: list[IdleSockets]) -> list[str]:
    lines = []
    for r in results:
        p50, p99 = quantiles(r.answered_ms)
        codes = ", ".join(f"{n} closed with {code}" for code, n in sorted(r.other_codes.items()))
        lines.append(
            f"Revocations, {r.setup}: the host's request answered in p50 {_ms(p50)}, "
            f"p99 {_ms(p99)}" + (f"; {codes} instead of {CUT_CLOSE_CODE}" if codes else "")
        )
    if idles:
        other: dict[int, int] = {}
        for idle in idles:
            for code, n in idle.other_codes.items():
                other[code] = other.get(code, 0) + n
        codes = ", ".join(f"{n} with {code}" for code, n in sorted(other.items()))
        rss = "; ".join(
            f"{idle.rss_before / 2**20:,.0f} → {idle.rss_after / 2**20:,.0f} MiB" for idle in idles
        )
        lines.append(
            f"Idle WebSockets: {idles[0].count:,} open through the gate to the upstream's echo, "
            f"each with an admission of its own, {ECHO_CHECKS} checked to echo, on a fresh "
            "gateway each repeat; the gateway's RSS (VmRSS) read before opening them and once "
            f"all were open ({rss})"
            + (f"; cut sockets closed {codes} instead of {CUT_CLOSE_CODE}" if codes else "")
        )
    return lines


METHOD = (
    "Revocations: a host revokes, through the dashboard's JSON API (`POST "
    "/_meetgate/host/<room>/revoke` with the CSRF token, `confirmed=1`), one attendee at a time, "
    "each freshly admitted (an invite redeemed as a browser does) and joined to the meeting's "
    "MUC room on a real prosody through the gate's `/xmpp-websocket` with stream management "
    "on (resumable, as Jitsi's client asks, so a cut without `<close/>` would leave the "
    "occupant in the room for prosody's 60 s hibernation); another occupant, connected through "
    "the replica the host uses, watches the room's presence. Times run from just before the "
    "revoke request is written to the revoked client's socket closed (TCP end after the close "
    "frame) and to the `unavailable` presence arriving at the other occupant. The XMPP clients "
    "are the benchmark's own minimal RFC 7395 client (bench/xmpp.py, `websockets`, anonymous "
    "SASL, bind, XEP-0198, MUC join) in the benchmark's event loop, so every time is on one "
    "clock; the tests' strophe.js client needs a Node process per client. "
    f"{WARM_UP_REVOCATIONS} untimed revocations first; prosody logs warnings only."
)
