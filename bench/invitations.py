"""Invitations by e-mail (issue 19): a list of 500 invitees imported with `send` through the
admin API of a running `meetgate serve`, whose outbox delivers them to a local SMTP server
(aiosmtpd, bench/smtp_sink.py), as invitations delivered per second; and the gate's join
latency while they are sent, against the same joins with nothing sending, in the same repeat.

The outbox's rate limit is raised far above what the mail server takes ([outbox] per_minute),
so the figure is the gate's and the mail server's pace, not a setting's. The joins are the
flood section's attendees (bench/flood.py `join`: the invite's landing page, then the join
button's POST, each on a connection of its own, each with a fresh single-use invite), paced by
the clock; while sending, they run from the import's request until the last invitation is
delivered. The mail server runs on the load generator's CPU at the lowest priority (as wrk does
in the flood), so that it neither takes the gate's CPU nor delays the joins' client.

The realistic case besides: the same 500 imported on a gateway left at the default `[outbox]
per_minute` (60, burst 10), and the joins measured for PACED_SECONDS while it sends at that
pace, against its own quiet joins; the room is then deleted, which drops what it had not sent.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.admin import AdminApi, Invites
from bench.flood import join
from bench.machine import process_cpu_seconds
from bench.rawhttp import Connection, host_port
from bench.report import Figure
from bench.roundtrip import percentile
from bench.servers import ROOT, Gateway, Servers
from tests.fixtures.gateway_server import GENEROUS_LIMITS
from tests.fixtures.processes import free_port, port_open, start_process, stop_process, wait_until

INVITATIONS = 500
WARM_UP_INVITATIONS = 50
# Joins a second, in both phases: a steady trickle of attendees, a small share of one core.
JOINS_PER_SECOND = 25
QUIET_JOINS = 150
# Invites made for the joins while sending: enough for this long at the pace above.
SENDING_SECONDS_MAX = 60
JOIN_TIMEOUT_SECONDS = 30
DELIVERY_TIMEOUT_SECONDS = 180
POLL_SECONDS = 0.02
# The mail server's priority on the client CPU (as wrk's in the flood, bench/flood.py).
SINK_NICE = 19
STORES = ("memory", "redis")
# The realistic case: joins measured this long while the default rate sends.
PACED_SECONDS = 30
# What the section's gateways add to the benchmark's: a mail server, and the outbox's rate far
# above it (the largest the settings allow).
SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Meetgate bench <gate@bench.test>"
[outbox]
per_minute = 100000
burst = 10000
"""
# The realistic case's gateways: the mail server, and the outbox at its defaults.
PACED_SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Meetgate bench <gate@bench.test>"
"""


@dataclass(frozen=True, slots=True)
class Gates:
    """The section's gateways by store, and the port their mail server is to listen on."""

    smtp_port: int
    gates: dict[str, Gateway]
    # The same stores' gateways at the default [outbox] rate (60 a minute).
    paced: dict[str, Gateway] = field(default_factory=dict)


def start_gates(servers: Servers, upstream: str, redis_url: str | None) -> Gates:
    """A gateway on the memory store and one on the run's redis-server (if any), both sending
    to one mail server (started when the section runs)."""
    port = free_port()
    extra = GENEROUS_LIMITS + SETTINGS.format(port=port)
    gates = {
        "memory": servers.gateway(
            "gate-invitations-memory", upstream=upstream, store_url="memory://", rates=extra
        )
    }
    paced_extra = GENEROUS_LIMITS + PACED_SETTINGS.format(port=port)
    paced = {
        "memory": servers.gateway(
            "gate-invitations-paced-memory",
            upstream=upstream,
            store_url="memory://",
            rates=paced_extra,
        )
    }
    if redis_url is not None:
        gates["redis"] = servers.gateway(
            "gate-invitations-redis", upstream=upstream, store_url=redis_url, rates=extra
        )
        # A database of its own: gateways on one store are replicas of one gate, sharing its
        # queue and its rate, and the default rate would pace the other's sending.
        paced["redis"] = servers.gateway(
            "gate-invitations-paced-redis",
            upstream=upstream,
            store_url=redis_url.rsplit("/", 1)[0] + "/1",
            rates=paced_extra,
        )
    return Gates(smtp_port=port, gates=gates, paced=paced)


@dataclass(frozen=True, slots=True)
class Phase:
    """The joins of one phase: latencies of those that succeeded, and failures by reason."""

    latencies_ms: list[float]
    failures: dict[str, int]
    seconds: float
    cpu_seconds: float

    def quantile(self, fraction: float) -> float:
        ordered = sorted(int(ms * 1e6) for ms in self.latencies_ms)
        return percentile(ordered, fraction) if ordered else float("nan")

    @property
    def cpu_per_join_ms(self) -> float:
        return self.cpu_seconds / max(1, len(self.latencies_ms)) * 1000


@dataclass(frozen=True, slots=True)
class Sending:
    """One repeat on one store: the batch's delivery and the joins beside it, and the joins of
    the quiet phase."""

    store: str
    delivered: int
    # From the import's request to its answer (every invite made and queued), and to the last
    # invitation the mail server accepted.
    queued_seconds: float
    delivered_seconds: float
    quiet: Phase
    sending: Phase
    # Recipients that received more than one invitation (none expected).
    duplicates: int

    @property
    def per_second(self) -> float:
        return self.delivered / self.delivered_seconds

    @property
    def cpu_per_invitation_ms(self) -> float:
        """The gateway's CPU while sending, less the joins' at the quiet phase's cost, per
        invitation (making its invite, queueing, composing and sending its e-mail)."""
        joins = len(self.sending.latencies_ms) * self.quiet.cpu_per_join_ms / 1000
        return max(0.0, self.sending.cpu_seconds - joins) / self.delivered * 1000


@dataclass(frozen=True, slots=True)
class PacedSending:
    """One repeat of the realistic case on one store: joins for PACED_SECONDS while the 500 go
    out at the default rate, and the quiet joins; how many were delivered in that time."""

    store: str
    delivered: int
    quiet: Phase
    sending: Phase


@dataclass
class Measurements:
    repeats: list[Sending] = field(default_factory=list)
    paced: list[PacedSending] = field(default_factory=list)


class Mailbox:
    """The mail server's file of accepted recipients, read as it grows."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = ""
        # Recipient → moments it was accepted (monotonic clock).
        self.received: dict[str, list[float]] = {}

    def read(self) -> None:
        with self._path.open("r", encoding="ascii") as handle:
            handle.seek(self._offset)
            text = handle.read()
            self._offset = handle.tell()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            moment, _, rcpt = line.partition(" ")
            self.received.setdefault(rcpt, []).append(float(moment))

    def of(self, tag: str) -> dict[str, list[float]]:
        return {rcpt: at for rcpt, at in self.received.items() if rcpt.startswith(f"{tag}-")}


async def call(gate: Gateway, method: str, path: str, body: object = None) -> dict[str, object]:
    """One admin API call on a connection of its own; its JSON answer (RuntimeError otherwise)."""
    headers = {"authorization": f"Bearer {gate.admin_token}", "content-type": "application/json"}
    payload = json.dumps(body).encode() if body is not None else b""
    connection = await Connection.open(*host_port(gate.admin_url))
    try:
        async with asyncio.timeout(60):
            response = await connection.request(method, path, headers, payload)
    finally:
        await connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {response.body[:300]!r}")
    answer = json.loads(response.body)
    assert isinstance(answer, dict)
    return answer


def invitee_list(tag: str, count: int) -> str:
    """A CSV of `count` invitees whose addresses start with `tag`: one per line, a header."""
    rows = "".join(f"Invitee {n} {tag},{tag}-{n}@bench.example\n" for n in range(count))
    return "name,email\n" + rows


async def paced_joins(
    gate: Gateway, tokens: list[str], until: Callable[[], bool] | None = None
) -> Phase:
    """One join every 1/JOINS_PER_SECOND s, each with its own invite, until the tokens run out
    or `until` is true; the gateway's CPU time meanwhile."""
    latencies: list[float] = []
    failures: dict[str, int] = {}

    async def one(token: str) -> None:
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_SECONDS):
                latencies.append(await join(gate, token, "127.0.0.1"))
        except (RuntimeError, OSError, TimeoutError, ValueError) as failure:
            reason = str(failure) or type(failure).__name__
            failures[reason] = failures.get(reason, 0) + 1

    cpu_before = process_cpu_seconds(gate.pid)
    started = time.perf_counter()
    tasks = []
    for number, token in enumerate(tokens):
        if until is not None and until():
            break
        # Paced by the clock, not by the previous join: a slow join does not slow the pace.
        delay = started + number / JOINS_PER_SECOND - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(token)))
    await asyncio.gather(*tasks)
    return Phase(
        latencies_ms=latencies,
        failures=failures,
        seconds=time.perf_counter() - started,
        cpu_seconds=process_cpu_seconds(gate.pid) - cpu_before,
    )


async def send_batch(
    gate: Gateway, room: str, tag: str, count: int, mailbox: Mailbox, join_tokens: list[str]
) -> tuple[float, float, Phase | None, int]:
    """Import `count` invitees with `send` and wait until the mail server has them all, with the
    joins of `join_tokens` paced meanwhile (none: no joins); (seconds to the import's answer,
    seconds to the last delivery, the joins, recipients delivered twice)."""
    delivered = asyncio.Event()

    async def watch() -> None:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            mailbox.read()
            if len(mailbox.of(tag)) >= count:
                delivered.set()
                return
            await asyncio.sleep(POLL_SECONDS)
        raise RuntimeError(f"{len(mailbox.of(tag))} of {count} invitations delivered in time")

    async def joins() -> Phase | None:
        if not join_tokens:
            return None
        return await paced_joins(gate, join_tokens, delivered.is_set)

    started = time.monotonic()
    cpu_before = process_cpu_seconds(gate.pid)
    joining = asyncio.create_task(joins())
    body = {"csv": invitee_list(tag, count), "send": True, "language": "en"}
    answer = await call(gate, "POST", f"/api/v1/rooms/{room}/invites/import", body)
    queued = time.monotonic() - started
    if answer.get("created") != count or answer.get("problems"):
        raise RuntimeError(f"the import made {answer.get('created')} of {count}")
    await watch()
    phase = await joining
    if phase is not None:
        # The whole sending phase's CPU (the joins' tail included), not the joins' alone.
        phase = Phase(
            phase.latencies_ms,
            phase.failures,
            phase.seconds,
            process_cpu_seconds(gate.pid) - cpu_before,
        )
    received = mailbox.of(tag)
    last = max(moment for moments in received.values() for moment in moments)
    progress = await call(gate, "GET", f"/api/v1/outbox/{answer['batch']}")
    if progress.get("sent") != count or progress.get("failed"):
        raise RuntimeError(f"the outbox reports {progress}")
    duplicates = sum(1 for moments in received.values() if len(moments) > 1)
    return queued, last - started, phase, duplicates


async def one_repeat(
    store: str, gate: Gateway, repeat: int, mailbox: Mailbox, room_size: int
) -> Sending:
    api = AdminApi(gate.admin_url, gate.admin_token)
    room = f"bench-send-{store}-{repeat}"
    await api.create_rooms([room])
    invites = Invites(api, f"bench-joins-{store}-{repeat}", room_size)
    quiet_tokens = await invites.make(QUIET_JOINS)
    sending_tokens = await invites.make(SENDING_SECONDS_MAX * JOINS_PER_SECOND)
    tag = f"r{repeat}-{store}"
    # The two phases take turns going first, so a drift of the machine's speed does not always
    # fall on the same one.
    quiet = await paced_joins(gate, quiet_tokens[:QUIET_JOINS]) if repeat % 2 == 0 else None
    queued, took, sending, duplicates = await send_batch(
        gate, room, tag, INVITATIONS, mailbox, sending_tokens
    )
    if quiet is None:
        quiet = await paced_joins(gate, quiet_tokens[:QUIET_JOINS])
    assert sending is not None
    return Sending(
        store=store,
        delivered=INVITATIONS,
        queued_seconds=queued,
        delivered_seconds=took,
        quiet=quiet,
        sending=sending,
        duplicates=duplicates,
    )


async def one_paced_repeat(
    store: str, gate: Gateway, repeat: int, mailbox: Mailbox, room_size: int
) -> PacedSending:
    """The realistic case: 500 imported with send at the default rate, joins for PACED_SECONDS
    meanwhile; then the room deleted (its unsent e-mails go with it) so the next phase is
    quiet. The phases take turns going first."""
    api = AdminApi(gate.admin_url, gate.admin_token)
    room = f"bench-paced-{store}-{repeat}"
    await api.create_rooms([room])
    invites = Invites(api, f"bench-paced-joins-{store}-{repeat}", room_size)
    quiet_tokens = await invites.make(QUIET_JOINS)
    sending_tokens = await invites.make(PACED_SECONDS * JOINS_PER_SECOND)
    tag = f"p{repeat}-{store}"
    quiet = await paced_joins(gate, quiet_tokens[:QUIET_JOINS]) if repeat % 2 == 0 else None
    body = {"csv": invitee_list(tag, INVITATIONS), "send": True, "language": "en"}
    started = time.monotonic()
    answer = await call(gate, "POST", f"/api/v1/rooms/{room}/invites/import", body)
    if answer.get("created") != INVITATIONS or answer.get("problems"):
        raise RuntimeError(f"the import made {answer.get('created')} of {INVITATIONS}")
    sending = await paced_joins(
        gate, sending_tokens, lambda: time.monotonic() - started >= PACED_SECONDS
    )
    mailbox.read()
    delivered = len(mailbox.of(tag))
    await api.delete_rooms([room])
    if quiet is None:
        quiet = await paced_joins(gate, quiet_tokens[:QUIET_JOINS])
    return PacedSending(store=store, delivered=delivered, quiet=quiet, sending=sending)


async def warm_up(
    store: str,
    gate: Gateway,
    mailbox: Mailbox,
    room_size: int,
    *,
    count: int = WARM_UP_INVITATIONS,
    kind: str = "send",
) -> None:
    """A small batch and a few joins: the first e-mail's and join's one-time costs."""
    api = AdminApi(gate.admin_url, gate.admin_token)
    room = f"bench-{kind}-{store}-warm-up"
    await api.create_rooms([room])
    await send_batch(gate, room, f"warm-{kind}-{store}", count, mailbox, [])
    tokens = await Invites(api, f"bench-{kind}-joins-{store}-warm-up", room_size).make(10)
    await paced_joins(gate, tokens[:10])


def _joins_moved(run: Sending | PacedSending) -> str:
    """How the joins' p50 and p99 went from the quiet phase to the one while sending."""
    quiet, sending = run.quiet, run.sending
    return (
        f"joins p50 {quiet.quantile(0.5):.1f} → {sending.quantile(0.5):.1f} ms, "
        f"p99 {quiet.quantile(0.99):.1f} → {sending.quantile(0.99):.1f} ms"
    )


def measure(
    gates: Gates,
    workdir: Path,
    repeats: int,
    room_size: int,
    say: Callable[[str], None],
    m: Measurements,
) -> None:
    """Every repeat on each store, against one mail server of the section's own."""
    received = workdir / "smtp-sink.txt"
    received.touch()
    sink = start_process(
        [
            "nice",
            "-n",
            str(SINK_NICE),
            sys.executable,
            "-m",
            "bench.smtp_sink",
            str(gates.smtp_port),
            str(received),
        ],
        workdir / "smtp-sink.log",
        cwd=ROOT,
    )
    try:
        wait_until(lambda: port_open(gates.smtp_port), timeout=30, what="the SMTP sink")
        mailbox = Mailbox(received)
        for store, gate in gates.gates.items():
            asyncio.run(warm_up(store, gate, mailbox, room_size))
        for repeat in range(repeats):
            line = f"  repeat {repeat + 1}:"
            for store, gate in gates.gates.items():
                found = asyncio.run(one_repeat(store, gate, repeat, mailbox, room_size))
                m.repeats.append(found)
                line += f" {store} {found.per_second:,.0f} invitations/s, {_joins_moved(found)};"
            say(line.rstrip(";"))
        for store, gate in gates.paced.items():
            # Within the default burst (10): no wait for the rate.
            asyncio.run(warm_up(store, gate, mailbox, room_size, count=5, kind="paced"))
        for repeat in range(repeats):
            line = f"  at the default rate, repeat {repeat + 1}:"
            for store, gate in gates.paced.items():
                paced = asyncio.run(one_paced_repeat(store, gate, repeat, mailbox, room_size))
                m.paced.append(paced)
                line += (
                    f" {store} {paced.delivered} sent in {PACED_SECONDS} s, {_joins_moved(paced)};"
                )
            say(line.rstrip(";"))
    finally:
        stop_process(sink)


def _median_worst(values: list[float], unit: str, higher_is_better: bool) -> str:
    worst = min(values) if higher_is_better else max(values)
    return f"{unit.format(statistics.median(values))} (worst {unit.format(worst)})"


def _join_latency_figures(
    runs: Sequence[Sending] | Sequence[PacedSending], sent: str
) -> list[Figure]:
    """The joins' p50 and p99 while `sent` (what was sent, against what), over `runs`."""
    rows = []
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        sending = [r.sending.quantile(fraction) for r in runs]
        quiet = [r.quiet.quantile(fraction) for r in runs]
        ratio = [s / q for s, q in zip(sending, quiet, strict=True)]
        rows.append(
            Figure(
                what=f"join latency {label} while {sent}",
                meetgate=_median_worst(sending, "{:.1f} ms", False),
                baseline=f"{statistics.median(quiet):.1f} ms nothing sending",
                comparison=_median_worst(ratio, "{:.2f}x", False),
            )
        )
    return rows


def figures(m: Measurements) -> list[Figure]:
    rows = []
    for store in STORES:
        found = [s for s in m.repeats if s.store == store]
        if not found:
            continue
        rates = [s.per_second for s in found]
        rows.append(
            Figure(
                what=f"invitations delivered/s, {INVITATIONS} imported with send through the "
                f"admin API to a local aiosmtpd, {store} store (median of {len(found)}, worst)",
                meetgate=_median_worst(rates, "{:,.0f}/s", True),
                baseline="—",
                comparison=", ".join(f"{r:,.0f}" for r in rates) + " by repeat",
            )
        )
        rows += _join_latency_figures(
            found,
            f"the {INVITATIONS} are sent vs nothing sending ({JOINS_PER_SECOND} joins/s through "
            f"invite links), {store} store",
        )
    for store in STORES:
        paced = [p for p in m.paced if p.store == store]
        if not paced:
            continue
        rows += _join_latency_figures(
            paced,
            f"{INVITATIONS} are sent at the default [outbox] per_minute (60) vs nothing "
            f"sending, {store} store",
        )
    return rows


def details(m: Measurements) -> list[str]:
    lines = []
    for s in m.repeats:
        failures = {**s.quiet.failures, **s.sending.failures}
        lines.append(
            f"Invitations, {s.store} store: {s.delivered} made and queued in "
            f"{s.queued_seconds:.2f} s, delivered in {s.delivered_seconds:.2f} s "
            f"({s.per_second:,.0f}/s), gateway CPU {s.cpu_per_invitation_ms:.2f} ms per "
            f"invitation; joins {len(s.quiet.latencies_ms)} quiet (p50 "
            f"{s.quiet.quantile(0.5):.1f}, p99 {s.quiet.quantile(0.99):.1f} ms, "
            f"{s.quiet.cpu_per_join_ms:.1f} ms CPU each), {len(s.sending.latencies_ms)} while "
            f"sending (p50 {s.sending.quantile(0.5):.1f}, p99 {s.sending.quantile(0.99):.1f} ms)"
            + (f"; failed joins {failures}" if failures else "")
            + (f"; {s.duplicates} recipients got two" if s.duplicates else "")
        )
    for p in m.paced:
        failures = {**p.quiet.failures, **p.sending.failures}
        lines.append(
            f"Invitations at the default rate, {p.store} store: {p.delivered} delivered in "
            f"{PACED_SECONDS} s; joins {len(p.quiet.latencies_ms)} quiet (p50 "
            f"{p.quiet.quantile(0.5):.1f}, p99 {p.quiet.quantile(0.99):.1f} ms), "
            f"{len(p.sending.latencies_ms)} while sending (p50 {p.sending.quantile(0.5):.1f}, "
            f"p99 {p.sending.quantile(0.99):.1f} ms)"
            + (f"; failed joins {failures}" if failures else "")
        )
    return lines


def warnings(m: Measurements) -> list[str]:
    found = []
    for s in m.repeats:
        if s.duplicates:
            found.append(f"Invitations, {s.store}: {s.duplicates} recipients received two.")
        if s.quiet.failures or s.sending.failures:
            found.append(f"Invitations, {s.store}: some joins failed (see the details).")
    for p in m.paced:
        if p.quiet.failures or p.sending.failures:
            found.append(
                f"Invitations at the default rate, {p.store}: some joins failed (see the details)."
            )
    return found


def method(repeats: int) -> str:
    return (
        f"Invitations: each repeat and store, a CSV of {INVITATIONS} invitees (name, e-mail) "
        "imported with `send` through the admin API (`POST /api/v1/rooms/{room}/invites/"
        "import`) of a running `meetgate serve`, whose outbox sends them to aiosmtpd on "
        "loopback (bench/smtp_sink.py, its own process on the load generator's CPU at nice "
        f"{SINK_NICE}, writing down each recipient and when it was accepted), `[outbox] "
        "per_minute = 100000` so that the rate limit is not what sets the pace (the outbox "
        "sends 4 messages at once per replica, one SMTP connection each); the rate is the "
        "invitations over the time from the import's request to the last one accepted, each "
        "recipient checked to have received exactly one and the batch's progress to say all "
        f"sent. Joins: {JOINS_PER_SECOND} a second through fresh single-use invite links in "
        "other rooms of the same gateway (the invite's page, then its POST, as the flood "
        f"section's attendees), {QUIET_JOINS} with nothing sending and as many as fit while "
        f"the batch is sent, the two phases taking turns going first; {repeats} "
        f"repeat{'' if repeats == 1 else 's'} per store after a warm-up batch of "
        f"{WARM_UP_INVITATIONS} (bench/invitations.py). At the default rate: the same "
        f"{INVITATIONS} imported with `send` on a gateway of each store left at `[outbox] "
        f"per_minute = 60` (burst 10), the joins measured for {PACED_SECONDS} s from the "
        f"import's request while it sends at that pace, against {QUIET_JOINS} quiet joins; the "
        "room is then deleted (its unsent e-mails with it), the phases taking turns going first."
    )
