"""One benchmark run: start every server, measure each Meetgate figure and its baseline with the
same client, and report the ratios (docs/performance.md says what each figure means)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import flood, profiling, revocation, upstream
from bench.admin import AdminApi, Invites, redeem
from bench.flood import Attack, Flood
from bench.load import (
    REDEEM_SCRIPT,
    LoadResult,
    ensure_tools,
    ensure_wrk,
    run_wrk,
    wrk_version,
)
from bench.machine import busy_cpu_seconds, own_cpu_seconds, this_machine
from bench.rawhttp import Connection, host_port
from bench.report import Figure, Report, ratio, write_docs
from bench.revocation import IdleSockets, Revocations
from bench.roundtrip import MESSAGE_BYTES, Latency, measure
from bench.servers import ROOT, Gateway, Prosody, Servers, raise_open_files

REDEEM_CONNECTIONS = 32
SMALL_CONNECTIONS = 32
LARGE_CONNECTIONS = 4
WS_WARM_UP = 200
# Invites made for the warm-up per warm-up second: more than the redemption rate to expect.
CALIBRATION_PER_SECOND = 4000
TOKEN_HEADROOM = 1.3
TIMED_ATTEMPTS = 2
BASELINE_TOKENS = 20_000
REDEMPTION_TARGET = 0.30
WS_P50_TARGET_MS = 1.0
# Above this share of one core used by processes outside the run, the figures are suspect.
OTHER_LOAD_WARNING = 0.10
# A flooded gateway should be using a whole core; below this share, something else took it.
SATURATED_SHARE = 0.85
COOKIE = "meetgate"
FORWARD_AUTH_PATH = "/_meetgate/forward-auth"
FORWARD_AUTH_CONNECTIONS = 32
# What a front says it is about to serve: the gate answers 204 only for a GET or HEAD of one of
# Jitsi's static files (404 for anything else, or when the front does not say).
FORWARD_AUTH_FRONT = {"x-forwarded-method": "GET", "x-forwarded-uri": "/libs/app.bundle.min.js"}
FORWARD_AUTH_TARGET = 0.70
IDLE_CUTS = 20
# What `meetgate serve` runs on, and so every server here (bench/serve.py).
EVENT_LOOP = "uvloop's" if importlib.util.find_spec("uvloop") else "asyncio's"
# The parts of a run, in the order they run (`--only` picks some).
SECTIONS = ("redemption", "proxy", "websocket", "forward-auth", "revocation", "flood")


@dataclass(frozen=True, slots=True)
class Options:
    seconds: int
    warm_up: int
    round_trips: int
    redis_url: str | None
    start_redis: bool
    write_docs: bool
    pin: bool
    profile: bool
    room_size: int
    command: str
    sections: frozenset[str] = frozenset(SECTIONS)
    revocations: int = 200
    idle_sockets: int = 2000


@dataclass(frozen=True, slots=True)
class Redemptions:
    store: str
    result: LoadResult
    invites: int


@dataclass(frozen=True, slots=True)
class OtherLoad:
    """CPU that processes outside this run used while it ran: the noise in its figures."""

    cpu_seconds: float
    wall_seconds: float

    @property
    def share_of_a_core(self) -> float:
        return max(0.0, self.cpu_seconds) / self.wall_seconds

    def describe(self) -> str:
        return (
            f"Other processes on the machine used {max(0.0, self.cpu_seconds):.1f} CPU-seconds "
            f"during the {self.wall_seconds:.0f} s run ({self.share_of_a_core:.0%} of one core "
            "on average)."
        )


@dataclass
class Measurements:
    """Every timed run, filled in as the run goes."""

    runs: list[tuple[str, LoadResult]] = field(default_factory=list)
    redemptions: list[Redemptions] = field(default_factory=list)
    latency: dict[str, Latency] = field(default_factory=dict)
    profiles: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    revocations: list[Revocations] = field(default_factory=list)
    idle: IdleSockets | None = None
    # The flood is measured FLOOD_REPEATS times; `flood` is the repeat with the median p99 ratio.
    flood: Flood | None = None
    flood_repeats: list[Flood] = field(default_factory=list)
    attacks: list[Attack] = field(default_factory=list)
    # Seconds each section took, for keeping the whole run within its budget.
    took: dict[str, float] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return any(run_name == name for run_name, _ in self.runs)

    def timed(self, name: str, result: LoadResult) -> LoadResult:
        self.runs.append((name, result))
        return result

    def result(self, name: str) -> LoadResult:
        return next(result for run_name, result in self.runs if run_name == name)


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(load generator's CPUs, servers' CPUs); None for both when not pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def say(text: str) -> None:
    print(text, flush=True)


def write_tokens(path: Path, tokens: list[str]) -> Path:
    path.write_text("".join(f"{token}\n" for token in tokens), encoding="ascii")
    return path


@contextlib.contextmanager
def profiled(
    name: str,
    gateway: Gateway,
    workdir: Path,
    options: Options,
    measurements: Measurements,
    *,
    sampled: bool = True,
) -> Iterator[None]:
    """With --profile, sample the gateway with py-spy while the body runs a timed run (unless
    the run is not the gateway's: `sampled` false)."""
    if not options.profile or not sampled:
        yield
        return
    raw = workdir / f"profile-{name}.txt"
    sampler = profiling.start(gateway.pid, options.seconds, raw)
    try:
        yield
    except BaseException:
        sampler.kill()
        raise
    finally:
        sampler.wait(timeout=options.seconds + 30)
    measurements.profiles[name] = profiling.breakdown(raw)


def redeem_load(wrk: str, url: str, tokens: Path, seconds: int) -> LoadResult:
    return run_wrk(
        wrk,
        url,
        seconds=seconds,
        connections=REDEEM_CONNECTIONS,
        script=REDEEM_SCRIPT,
        script_args=(str(tokens), url),
    )


def measure_baseline(wrk: str, url: str, workdir: Path, options: Options) -> LoadResult:
    """A redemption baseline, driven by the same script with made-up tokens of the same shape."""
    tokens = [secrets.token_urlsafe(24) for _ in range(BASELINE_TOKENS)]
    path = write_tokens(workdir / "baseline.tokens", tokens)
    redeem_load(wrk, url, path, options.warm_up)
    return redeem_load(wrk, url, path, options.seconds)


def measure_redemptions(
    wrk: str,
    gateway: Gateway,
    invites: Invites,
    store: str,
    workdir: Path,
    options: Options,
    measurements: Measurements,
) -> Redemptions:
    """Redemptions/s, each of a fresh single-use invite made through the admin API beforehand.

    A warm-up on a first batch estimates the rate, so that the timed run gets enough invites
    (with headroom) without spending minutes making ones it never uses.
    """
    batch = asyncio.run(invites.make(CALIBRATION_PER_SECOND * options.warm_up))
    path = write_tokens(workdir / f"{store}-warm-up.tokens", batch)
    warm = redeem_load(wrk, gateway.url, path, options.warm_up)
    # Refusals in the warm-up mean the batch ran out: the rate is higher than measured.
    estimate = warm.per_second * (1.5 if warm.refused else 1)
    count = int(estimate * options.seconds * TOKEN_HEADROOM) + 500
    say(f"  {store}: warm-up {warm.per_second:,.0f}/s, making {count:,} invites for the timed run")
    for attempt in range(TIMED_ATTEMPTS):
        tokens = asyncio.run(invites.make(count))
        path = write_tokens(workdir / f"{store}-timed-{attempt}.tokens", tokens)
        with profiled(f"redeem-{store}", gateway, workdir, options, measurements):
            result = redeem_load(wrk, gateway.url, path, options.seconds)
        if not result.refused:
            break
        # The invites ran out (the warm-up underestimated, e.g. on a busy machine): again,
        # with twice as many.
        count *= 2
        say(f"  {store}: the invites ran out; again with {count:,}")
    return Redemptions(store=store, result=result, invites=len(tokens))


async def check_bodies(gateway_url: str, upstream_url: str, cookie: str) -> None:
    """Both ways give the upstream's exact bytes; else a ratio would compare different work."""
    for base in (gateway_url, upstream_url):
        connection = await Connection.open(*host_port(base))
        try:
            for path, body in upstream.BODIES.items():
                response = await connection.request("GET", path, {"cookie": f"{COOKIE}={cookie}"})
                if response.status != 200 or response.body != body:
                    raise RuntimeError(f"GET {base}{path} gave {response.status}, not the body")
        finally:
            await connection.close()


def measure_proxy(
    wrk: str,
    size: str,
    path: str,
    connections: int,
    gate: Gateway,
    upstream_url: str,
    cookie: str,
    workdir: Path,
    options: Options,
    measurements: Measurements,
) -> None:
    """The same GET straight to the upstream and through the gate: warm-ups, then timed runs."""
    headers = (f"Cookie: {COOKIE}={cookie}",)
    direct, gated = upstream_url + path, gate.url + path
    for url in (direct, gated):
        run_wrk(wrk, url, seconds=options.warm_up, connections=connections, headers=headers)
    result = run_wrk(wrk, direct, seconds=options.seconds, connections=connections, headers=headers)
    measurements.timed(f"direct-{size}", result)
    with profiled(f"gate-{size}", gate, workdir, options, measurements):
        result = run_wrk(
            wrk, gated, seconds=options.seconds, connections=connections, headers=headers
        )
    measurements.timed(f"gate-{size}", result)


@dataclass(frozen=True, slots=True)
class Lab:
    """The servers a run's sections need, started side by side before any is measured."""

    upstream: str
    bare: str | None
    framework: str | None
    gateways: dict[str, Gateway]
    prosody: Prosody | None


def start_lab(servers: Servers, options: Options) -> Lab:
    wanted = options.sections
    # One redis-server of the run's own: the two replicas of the revocation section share it,
    # and the Redis store's redemptions use it when --redis-server asked for it.
    own_redis = (options.start_redis and "redemption" in wanted) or "revocation" in wanted
    started = servers.redis() if own_redis else None
    redis_url = started if options.start_redis else options.redis_url
    servers.wait_ready()  # Redis gateways connect to it as they start
    prosody = servers.prosody() if "revocation" in wanted else None
    upstream_url = servers.bench_app("upstream")
    bare_url = servers.bench_app("bare") if wanted & {"redemption", "forward-auth"} else None
    framework_url = servers.bench_app("framework") if "redemption" in wanted else None
    gateways: dict[str, Gateway] = {}
    if wanted & {"redemption", "proxy", "websocket", "forward-auth"}:
        gateways["memory"] = servers.gateway(
            "gate-memory", upstream=upstream_url, store_url="memory://"
        )
    if "redemption" in wanted and redis_url is not None:
        gateways["redis"] = servers.gateway(
            "gate-redis", upstream=upstream_url, store_url=redis_url
        )
    if prosody is not None and started is not None:
        for name, store_url in (
            ("revoke-one", "memory://"),
            ("revoke-a", started),
            ("revoke-b", started),
        ):
            gateways[name] = servers.gateway(
                f"gate-{name}",
                upstream=upstream_url,
                store_url=store_url,
                signalling=prosody.http_url,
            )
        gateways["sockets"] = servers.gateway(
            "gate-sockets", upstream=upstream_url, store_url="memory://"
        )
    if "flood" in wanted:
        for name, rates in (("flood", flood.RATES), ("flood-pow", flood.POW_RATES)):
            gateways[name] = servers.gateway(
                f"gate-{name}",
                upstream=upstream_url,
                store_url="memory://",
                env=flood.ENV,
                top=flood.TRUSTED_PROXIES,
                rates=rates,
            )
    servers.wait_ready()
    return Lab(
        upstream=upstream_url,
        bare=bare_url,
        framework=framework_url,
        gateways=gateways,
        prosody=prosody,
    )


def measure_redemption_section(
    lab: Lab, wrk: str, workdir: Path, options: Options, measurements: Measurements
) -> None:
    say("measuring redemptions")
    assert lab.bare is not None and lab.framework is not None
    for name, url in (("bare", lab.bare), ("framework", lab.framework)):
        result = measurements.timed(name, measure_baseline(wrk, url, workdir, options))
        say(f"  {name}: {result.per_second:,.0f}/s")
    for store in ("memory", "redis"):
        gateway = lab.gateways.get(store)
        if gateway is None:
            continue
        api = AdminApi(gateway.admin_url, gateway.admin_token)
        # On a Redis this run did not start, rooms of their own names keep the run's records
        # apart from whatever else is there, and deleting them at the end removes them.
        external = store == "redis" and not options.start_redis
        prefix = f"bench-{secrets.token_hex(4)}" if external else "bench"
        invites = Invites(api, prefix, options.room_size)
        try:
            measured = measure_redemptions(
                wrk, gateway, invites, store, workdir, options, measurements
            )
        finally:
            if external:
                asyncio.run(api.delete_rooms(invites.rooms))
        measurements.redemptions.append(measured)
        measurements.timed(f"redeem-{store}", measured.result)
        say(f"  {store}: {measured.result.per_second:,.0f}/s")


def admitted_cookie(gate: Gateway, room: str) -> str:
    """An admission cookie for the proxy's and the forward-auth check's requests."""
    api = AdminApi(gate.admin_url, gate.admin_token)
    asyncio.run(api.create_rooms([room]))
    [token] = asyncio.run(api.create_invites([room], 1, connections=1))
    return asyncio.run(redeem(gate.url, token, COOKIE))


def measure_proxy_section(
    lab: Lab, wrk: str, cookie: str, workdir: Path, options: Options, measurements: Measurements
) -> None:
    gate = lab.gateways["memory"]
    asyncio.run(check_bodies(gate.url, lab.upstream, cookie))
    say("measuring the proxy")
    for size, path, connections in (
        ("2k", upstream.SMALL_PATH, SMALL_CONNECTIONS),
        ("3m", upstream.LARGE_PATH, LARGE_CONNECTIONS),
    ):
        measure_proxy(
            wrk,
            size,
            path,
            connections,
            gate,
            lab.upstream,
            cookie,
            workdir,
            options,
            measurements,
        )


def measure_websocket_section(
    lab: Lab, cookie: str, options: Options, measurements: Measurements
) -> None:
    gate = lab.gateways["memory"]
    say("measuring WebSocket round trips")
    measurements.latency = asyncio.run(
        measure(
            {
                "gate": "ws" + gate.url.removeprefix("http") + upstream.ECHO_PATH,
                "direct": "ws" + lab.upstream.removeprefix("http") + upstream.ECHO_PATH,
            },
            cookie=f"{COOKIE}={cookie}",
            round_trips=options.round_trips,
            warm_up=WS_WARM_UP,
        )
    )


async def check_forward_auth(gate_url: str, bare_url: str, cookie: str) -> None:
    """Both sides answer the check's request with 204; the gate refuses it without a cookie."""
    for base, headers, expected in (
        (gate_url, {"cookie": f"{COOKIE}={cookie}", **FORWARD_AUTH_FRONT}, 204),
        (bare_url, {"cookie": f"{COOKIE}={cookie}", **FORWARD_AUTH_FRONT}, 204),
        (gate_url, FORWARD_AUTH_FRONT, 401),
    ):
        connection = await Connection.open(*host_port(base))
        try:
            response = await connection.request("GET", FORWARD_AUTH_PATH, headers)
        finally:
            await connection.close()
        if response.status != expected:
            raise RuntimeError(f"GET {base}{FORWARD_AUTH_PATH} gave {response.status}")


def measure_forward_auth_section(
    lab: Lab, wrk: str, cookie: str, workdir: Path, options: Options, measurements: Measurements
) -> None:
    gate = lab.gateways["memory"]
    assert lab.bare is not None
    asyncio.run(check_forward_auth(gate.url, lab.bare, cookie))
    say("measuring the forward-auth check")
    headers = (
        f"Cookie: {COOKIE}={cookie}",
        *(f"{name}: {value}" for name, value in FORWARD_AUTH_FRONT.items()),
    )
    gated, bare = gate.url + FORWARD_AUTH_PATH, lab.bare + FORWARD_AUTH_PATH
    for name, url in (("bare-204", bare), ("forward-auth", gated)):
        run_wrk(
            wrk,
            url,
            seconds=options.warm_up,
            connections=FORWARD_AUTH_CONNECTIONS,
            headers=headers,
        )
        sampled = name == "forward-auth"
        with profiled(name, gate, workdir, options, measurements, sampled=sampled):
            result = run_wrk(
                wrk,
                url,
                seconds=options.seconds,
                connections=FORWARD_AUTH_CONNECTIONS,
                headers=headers,
            )
        measurements.timed(name, result)
        say(f"  {name}: {result.per_second:,.0f}/s")


def measure_revocation_section(lab: Lab, options: Options, measurements: Measurements) -> None:
    assert lab.prosody is not None
    gates = lab.gateways
    for setup, host_gate, socket_gate in (
        (revocation.ONE_REPLICA, gates["revoke-one"], gates["revoke-one"]),
        (revocation.TWO_REPLICAS, gates["revoke-a"], gates["revoke-b"]),
    ):
        say(f"measuring {options.revocations} revocations, {setup}")
        measured = asyncio.run(
            revocation.measure_revocations(
                setup, host_gate, socket_gate, lab.prosody, options.revocations
            )
        )
        measurements.revocations.append(measured)
        p50, p99 = revocation.quantiles(measured.closed_ms)
        say(f"  socket closed p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    say(f"measuring {options.idle_sockets:,} idle WebSockets")
    measurements.idle = asyncio.run(
        revocation.measure_idle_sockets(gates["sockets"], options.idle_sockets, IDLE_CUTS)
    )
    say(f"  {measurements.idle.bytes_per_connection / 1024:,.1f} KiB per connection")


def measure_flood_section(
    lab: Lab, wrk: str, workdir: Path, options: Options, measurements: Measurements
) -> None:
    gate = lab.gateways["flood"]
    for repeat in range(flood.FLOOD_REPEATS):
        say(f"measuring joins under a flood ({repeat + 1} of {flood.FLOOD_REPEATS})")
        # Only the first repeat is sampled (py-spy would slow the others alike): the profile
        # is the first repeat's, whichever repeat the figures come from.
        profiler = profiled("flood", gate, workdir, options, measurements, sampled=repeat == 0)
        measured = asyncio.run(flood.measure_flood(wrk, gate, options.seconds, profiler))
        measurements.flood_repeats.append(measured)
        say(
            f"  {measured.attack.requests / measured.attack.seconds:,.0f} attack requests/s; "
            f"{measured.flooded.succeeded}/{measured.flooded.attempted} joins; "
            f"p99 {measured.p99_ratio:.1f}x quiet"
        )
    measurements.flood = flood.median_flood(measurements.flood_repeats)
    for name, what in (("flood", flood.LEAKED_LINK), ("flood-pow", flood.POW_ON)):
        say(f"measuring an attack alone: {what}")
        attack = asyncio.run(flood.measure_attack(wrk, lab.gateways[name], options.seconds, what))
        measurements.attacks.append(attack)
        say(f"  {attack.result.requests / attack.result.seconds:,.0f}/s")


def measure_everything(
    servers: Servers, wrk: str, workdir: Path, options: Options, measurements: Measurements
) -> None:
    lab = start_lab(servers, options)
    say("servers up")
    wanted = options.sections
    cookie = (
        admitted_cookie(lab.gateways["memory"], "proxy")
        if wanted & {"proxy", "websocket", "forward-auth"}
        else ""
    )
    steps: dict[str, Callable[[], None]] = {
        "redemption": lambda: measure_redemption_section(lab, wrk, workdir, options, measurements),
        "proxy": lambda: measure_proxy_section(lab, wrk, cookie, workdir, options, measurements),
        "websocket": lambda: measure_websocket_section(lab, cookie, options, measurements),
        "forward-auth": lambda: measure_forward_auth_section(
            lab, wrk, cookie, workdir, options, measurements
        ),
        "revocation": lambda: measure_revocation_section(lab, options, measurements),
        "flood": lambda: measure_flood_section(lab, wrk, workdir, options, measurements),
    }
    for section in SECTIONS:
        if section in wanted:
            began = time.monotonic()
            steps[section]()
            measurements.took[section] = time.monotonic() - began


def redemption_figures(measured: Redemptions, bare: LoadResult, floor: LoadResult) -> list[Figure]:
    result = measured.result
    bound = "≥ " if result.refused else ""
    rate = f"{bound}{result.per_second:,.0f}/s"
    return [
        Figure(
            what=f"invite redemptions/s, {measured.store} store",
            meetgate=rate,
            baseline=f"{bare.per_second:,.0f}/s bare ASGI 303",
            comparison=ratio(result.per_second, bare.per_second),
            target=f"≥ {REDEMPTION_TARGET:.0%} of bare",
            met=result.per_second >= REDEMPTION_TARGET * bare.per_second,
        ),
        Figure(
            what=f"the same, against an empty FastAPI join route ({measured.store})",
            meetgate=rate,
            baseline=f"{floor.per_second:,.0f}/s FastAPI 303",
            comparison=ratio(result.per_second, floor.per_second),
        ),
    ]


def proxy_figures(m: Measurements) -> list[Figure]:
    small_gate, small_direct = m.result("gate-2k"), m.result("direct-2k")
    large_gate, large_direct = m.result("gate-3m"), m.result("direct-3m")
    return [
        Figure(
            what=f"proxied 2 KiB GET, {SMALL_CONNECTIONS} connections",
            meetgate=f"{small_gate.per_second:,.0f} req/s",
            baseline=f"{small_direct.per_second:,.0f} req/s direct",
            comparison=ratio(small_gate.per_second, small_direct.per_second),
        ),
        Figure(
            what=f"proxied 3 MiB GET, {LARGE_CONNECTIONS} connections",
            meetgate=f"{large_gate.mib_per_second:,.0f} MiB/s",
            baseline=f"{large_direct.mib_per_second:,.0f} MiB/s direct",
            comparison=ratio(large_gate.mib_per_second, large_direct.mib_per_second),
        ),
    ]


def websocket_figures(gate: Latency, direct: Latency) -> list[Figure]:
    p50_overhead = gate.p50_ms - direct.p50_ms
    return [
        Figure(
            what=f"WebSocket round trip p50, {MESSAGE_BYTES} B",
            meetgate=f"{gate.p50_ms:.3f} ms",
            baseline=f"{direct.p50_ms:.3f} ms direct",
            comparison=f"+{p50_overhead:.3f} ms",
            target=f"overhead ≤ {WS_P50_TARGET_MS:g} ms",
            met=p50_overhead <= WS_P50_TARGET_MS,
        ),
        Figure(
            what=f"WebSocket round trip p99, {MESSAGE_BYTES} B",
            meetgate=f"{gate.p99_ms:.3f} ms",
            baseline=f"{direct.p99_ms:.3f} ms direct",
            comparison=f"+{gate.p99_ms - direct.p99_ms:.3f} ms",
        ),
    ]


RUN_LABELS = {
    "bare": "bare ASGI 303",
    "bare-204": "bare ASGI 204 (the forward-auth baseline)",
    "forward-auth": "forward-auth check, through the gate",
    "flood": "the gateway under the join flood",
    "framework": "empty FastAPI join route",
    "redeem-memory": "Meetgate redemptions, memory store",
    "redeem-redis": "Meetgate redemptions, Redis store",
    "direct-2k": "2 KiB GET, direct",
    "gate-2k": "2 KiB GET, through the gate",
    "direct-3m": "3 MiB GET, direct",
    "gate-3m": "3 MiB GET, through the gate",
}


def profile_lines(m: Measurements) -> list[str]:
    lines = []
    for name, parts in m.profiles.items():
        shares = ", ".join(f"{share:.0%} {part}" for part, share in parts if share >= 0.02)
        lines.append(f"{RUN_LABELS.get(name, name)}: {shares or 'no samples'}")
    return lines


def run_details(m: Measurements) -> list[str]:
    lines = []
    for name, r in m.runs:
        errors = f", {r.refused} refused" if r.refused else ""
        errors += f", {r.socket_errors} socket errors" if r.socket_errors else ""
        lines.append(
            f"{RUN_LABELS.get(name, name)}: {r.succeeded:,} responses in {r.seconds:.1f} s, "
            f"{r.per_second:,.0f}/s, {r.mib_per_second:,.1f} MiB/s, "
            f"latency p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms{errors}"
        )
    return lines


def method_notes(options: Options, pinned: bool, m: Measurements) -> list[str]:
    placement = (
        "the load generator runs on CPU 0 and every server under test (gate, upstream, "
        "baselines, redis-server, prosody) on the other CPUs, so a ratio compares server CPU "
        "per request"
        if pinned
        else "processes are not pinned to CPUs"
    )
    made = ", ".join(f"{r.invites:,} for {r.store}" for r in m.redemptions)
    notes = [
        f"Client: wrk, 1 thread, the same connections and script for both sides of a ratio; "
        f"{options.warm_up} s warm-up, then {options.seconds} s timed, per side; {placement}.",
    ]
    if m.redemptions:
        notes.append(
            "Redemptions: `POST /j/<token>` with `Origin`, each with a fresh single-use invite "
            f"made through the admin API before timing ({made}), in rooms of "
            f"{options.room_size} invites each: "
            "rate-limit charge, invite lookup, atomic redeem, room policy and name checks, "
            "admission write, ticket signing, 303 with Set-Cookie; rate limits raised to their "
            "maximum (one client address makes all the load) and proof-of-work off; Meetgate's "
            "access log on (log level info). "
            f"{REDEEM_CONNECTIONS} connections. Baselines: a bare ASGI app answering 303 with "
            "Location and Set-Cookie, and an empty FastAPI route of the join route's shape, "
            "both on the same server, limits and event loop as `meetgate serve` (Meetgate's own "
            f"HTTP server, gateway/edge/server.py, one process, {EVENT_LOOP} event loop; "
            "bench/serve.py) and driven by the same wrk script."
        )
    if m.has("gate-2k"):
        notes.append(
            "Proxy: the same GET (deterministic body, checked byte for byte first) with an "
            "admission cookie, through the gate vs straight to the upstream (a pure ASGI app on "
            "the same server as `meetgate serve`); through the gate, gate and upstream share "
            "the server CPU."
        )
    if m.latency:
        notes.append(
            f"WebSocket: {options.round_trips} sequential echoes of a {MESSAGE_BYTES}-byte text "
            f"message per target after {WS_WARM_UP} warm-up, alternating in blocks of 100, one "
            "`websockets` client connection per target."
        )
    if m.has("forward-auth"):
        notes.append(
            f"Forward-auth: `GET {FORWARD_AUTH_PATH}` with a live admission's cookie and "
            "`X-Forwarded-Method`/`X-Forwarded-Uri` naming a static file, as Caddy's "
            "`forward_auth` or nginx's `auth_request` sends it (checked first: 204, and 401 "
            "without the cookie), vs the bare ASGI app answering the same request with 204 and "
            f"`Cache-Control: no-store`; {FORWARD_AUTH_CONNECTIONS} connections, the same "
            "wrk script for both."
        )
    if m.revocations or m.idle is not None:
        notes.append(revocation.METHOD)
    if m.flood is not None:
        notes.append(flood.METHOD)
        notes.append(flood.ATTACK_METHOD)
    return notes


def warnings_of(m: Measurements, other: OtherLoad) -> list[str]:
    warnings = []
    if m.profiles:
        warnings.append(
            "--profile: py-spy sampled the gateway during its timed runs, which lowers "
            "Meetgate's figures a little; compare ratios from runs without it."
        )
    if other.share_of_a_core > OTHER_LOAD_WARNING:
        warnings.append(
            f"{other.describe()} They competed with the servers and the client: expect lower "
            "and noisier figures than on an idle machine."
        )
    shares = [f.gateway_core_share for f in m.flood_repeats or ([m.flood] if m.flood else [])]
    if shares and min(shares) < SATURATED_SHARE:
        warnings.append(
            f"In a flood repeat the flooded gateway used only {min(shares):.0%} of a core: "
            "other processes took the rest of its CPU, so the flood's latencies and rate are "
            "worse than the code's own."
        )
    for name, r in m.runs:
        if r.refused or r.socket_errors:
            warnings.append(
                f"{RUN_LABELS.get(name, name)}: {r.refused} refused and {r.socket_errors} "
                "socket errors in the timed run (for redemptions, refusals past the pre-made "
                "invites: the figure is then a lower bound)"
            )
    return warnings


def all_figures(m: Measurements) -> list[Figure]:
    figures = []
    if m.redemptions:
        bare, floor = m.result("bare"), m.result("framework")
        figures += [f for r in m.redemptions for f in redemption_figures(r, bare, floor)]
    if m.has("gate-2k"):
        figures += proxy_figures(m)
    if m.latency:
        figures += websocket_figures(m.latency["gate"], m.latency["direct"])
    if m.has("forward-auth"):
        figures += forward_auth_figures(m)
    figures += revocation.revocation_figures(m.revocations)
    if m.idle is not None:
        figures += revocation.idle_figures(m.idle)
    if m.flood is not None:
        figures += flood.flood_figures(m.flood, m.flood_repeats)
        figures += flood.attack_figures(m.flood_repeats or [m.flood], m.attacks)
    return figures


def forward_auth_figures(m: Measurements) -> list[Figure]:
    gated, bare = m.result("forward-auth"), m.result("bare-204")
    return [
        Figure(
            what=f"forward-auth checks/s (`GET {FORWARD_AUTH_PATH}`, live admission → 204), "
            f"{FORWARD_AUTH_CONNECTIONS} connections",
            meetgate=f"{gated.per_second:,.0f}/s",
            baseline=f"{bare.per_second:,.0f}/s bare ASGI 204",
            comparison=ratio(gated.per_second, bare.per_second),
            target=f"≥ {FORWARD_AUTH_TARGET:.0%} of bare",
            met=gated.per_second >= FORWARD_AUTH_TARGET * bare.per_second,
        )
    ]


def detail_lines(m: Measurements) -> list[str]:
    lines = revocation.details(m.revocations, m.idle)
    if m.flood is not None:
        lines += flood.details(m.flood, m.flood_repeats)
    if m.took:
        lines.append(
            "Sections took: "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in m.took.items())
        )
    return lines


def run(options: Options) -> Report:
    wrk = ensure_wrk()
    if "revocation" in options.sections:
        ensure_tools("redis-server", "prosody")
    elif options.start_redis:
        ensure_tools("redis-server")
    if options.profile:
        profiling.py_spy()  # fail now, not after the servers have started
    machine = this_machine(wrk_version(wrk))
    client_cpus, server_cpus = cpu_split(options.pin)
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)
    say(f"machine: {machine.describe()}")
    if "revocation" in options.sections:
        # Each idle WebSocket is a socket here, two in the gateway (the browser's and the
        # upstream's) and one in the upstream; the servers inherit this process's limit.
        raise_open_files(2 * options.idle_sockets + 1024)
    workdir = Path(tempfile.mkdtemp(prefix="meetgate-bench-"))
    measurements = Measurements()
    started, busy, own = time.monotonic(), busy_cpu_seconds(), own_cpu_seconds()
    try:
        with Servers(workdir, server_cpus) as servers:
            measure_everything(servers, wrk, workdir, options, measurements)
    except BaseException:
        say(f"the servers' logs are kept in {workdir}")
        raise
    other = OtherLoad(
        cpu_seconds=(busy_cpu_seconds() - busy) - (own_cpu_seconds() - own),
        wall_seconds=time.monotonic() - started,
    )
    if options.profile:
        say(f"py-spy's raw profiles are kept in {workdir}")
    else:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    figures = all_figures(measurements)
    report = Report(
        command=options.command,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine,
        method=[*method_notes(options, client_cpus is not None, measurements), other.describe()],
        figures=figures,
        runs=run_details(measurements),
        details=detail_lines(measurements),
        profiles=profile_lines(measurements),
        warnings=warnings_of(measurements, other),
    )
    if options.write_docs:
        write_docs(ROOT / "docs" / "performance.md", report)
    return report
