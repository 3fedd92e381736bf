"""One benchmark run: start every server, measure each of issue 15's goals (and issue 16's wire
guard) against its baseline in the same run, several times over, and report each goal's median
and worst; the figures of the earlier issues (revocation, the flood's costs) beside them.
docs/performance.md says what each figure means."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    flood,
    guard,
    invitations,
    nginx,
    profiling,
    revocation,
    upstream,
    workers,
    ws_throughput,
)
from bench.admin import AdminApi, Invites, redeem
from bench.flood import Attack, Flood
from bench.load import REDEEM_SCRIPT, LoadResult, ensure_tools, ensure_wrk, run_wrk, wrk_version
from bench.machine import busy_cpu_seconds, own_cpu_seconds, this_machine
from bench.rawhttp import Connection, host_port
from bench.report import Figure, Goal, Report, ratio, write_docs
from bench.revocation import IdleSockets, Revocations
from bench.roundtrip import MESSAGE_BYTES, Latency, added_latency_goals, measure
from bench.servers import (
    GATEWAY_ENV,
    ROOT,
    Gateway,
    Prosody,
    Servers,
    open_files_up_to,
    redis_commands_processed,
    redis_version,
)
from bench.workers import Scaling
from bench.ws_throughput import Throughput

REDEEM_CONNECTIONS = 32
SMALL_CONNECTIONS = 32
LARGE_CONNECTIONS = 4
WS_WARM_UP = 200
# Invites made for the warm-up per warm-up second: more than the redemption rate to expect.
CALIBRATION_PER_SECOND = 4000
TOKEN_HEADROOM = 1.3
TIMED_ATTEMPTS = 2
BASELINE_TOKENS = 20_000
# Issue 15's goals.
REDEMPTION_TARGETS = {"memory": 0.30, "redis": 0.20}
FORWARD_AUTH_TARGET = 0.50
PAGE_TARGET = 0.50
RELAY_TARGET = 0.60
WORKERS_TARGET = 1.7
# Above this share of one core used by processes outside the run, the figures are suspect.
OTHER_LOAD_WARNING = 0.10
# A flooded gateway should be using a whole core; below this share, something else took it.
SATURATED_SHARE = 0.85
# Above this share of its core, the WebSocket load client may be what sets the rate.
CLIENT_BUSY_SHARE = 0.80
COOKIE = "meetgate"
# The forward-auth side whose every check reads the store.
UNCACHED = "forward-auth-uncached"
FORWARD_AUTH_PATH = "/_meetgate/forward-auth"
FORWARD_AUTH_CONNECTIONS = 32
# What a front says it is about to serve: the gate answers 204 only for a GET or HEAD of one of
# Jitsi's static files (404 for anything else, or when the front does not say).
FORWARD_AUTH_FRONT = {"x-forwarded-method": "GET", "x-forwarded-uri": "/libs/app.bundle.min.js"}
IDLE_CUTS = 20
# Open files a gateway needs besides two per relayed WebSocket: listeners, its log, the event
# loop's own (a few dozen).
SPARE_FILES = 128
# What `meetgate serve` runs on, and so every server here (bench/serve.py).
EVENT_LOOP = "uvloop's" if importlib.util.find_spec("uvloop") else "asyncio's"
# The parts of a run, in the order they run (`--only` picks some).
SECTIONS = (
    "redemption",
    "forward-auth",
    "proxy",
    "websocket",
    "guard",
    "idle",
    "revocation",
    "flood",
    "workers",
    "invitations",
)


@dataclass(frozen=True, slots=True)
class Options:
    seconds: int
    warm_up: int
    round_trips: int
    redis_url: str | None
    write_docs: bool
    pin: bool
    profile: bool
    room_size: int
    command: str
    sections: frozenset[str] = frozenset(SECTIONS)
    revocations: int = 200
    idle_sockets: int = 10_000
    # Timed runs of each goal's figure and its baseline; the flood's repeats and length apart.
    repeats: int = 3
    flood_repeats: int = flood.FLOOD_REPEATS
    flood_seconds: int = 10


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

    # wrk's timed runs by name, one per repeat, in order.
    runs: dict[str, list[LoadResult]] = field(default_factory=dict)
    # Invites made for the timed redemptions, by store.
    invites: dict[str, int] = field(default_factory=dict)
    # One dict per repeat: "gate", "nginx", "direct".
    latency: list[dict[str, Latency]] = field(default_factory=list)
    # WebSocket messages/s by target ("gate", "nginx"; "direct" in the first repeat only).
    relay: dict[str, list[Throughput]] = field(default_factory=dict)
    profiles: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    revocations: list[Revocations] = field(default_factory=list)
    idle: list[IdleSockets] = field(default_factory=list)
    flood_repeats: list[Flood] = field(default_factory=list)
    attacks: list[Attack] = field(default_factory=list)
    scaling: list[Scaling] = field(default_factory=list)
    # The wire guard on and off (issue 16).
    guard: guard.GuardMeasurements = field(default_factory=guard.GuardMeasurements)
    # Invitations by e-mail and the joins beside them (issue 19).
    invitations: invitations.Measurements = field(default_factory=invitations.Measurements)
    # Seconds each section took, for keeping the whole run within its budget.
    took: dict[str, float] = field(default_factory=dict)
    # Commands the run's redis-server processed during each timed Redis redemption run.
    redis_commands: list[tuple[int, LoadResult]] = field(default_factory=list)
    # What the run had to change from what it was asked, said in the report.
    warnings: list[str] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return bool(self.runs.get(name))

    def timed(self, name: str, result: LoadResult) -> LoadResult:
        self.runs.setdefault(name, []).append(result)
        return result

    def rates(self, name: str) -> list[float]:
        return [result.per_second for result in self.runs[name]]

    @property
    def flood(self) -> Flood | None:
        """The repeat with the median p99 ratio (the figures other than the p99 goal's)."""
        return flood.median_flood(self.flood_repeats) if self.flood_repeats else None


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
    the run is not the gateway's, or a profile of `name` is already taken: `sampled` false)."""
    if not options.profile or not sampled or name in measurements.profiles:
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


@dataclass(frozen=True, slots=True)
class Lab:
    """The servers a run's sections need, started side by side before any is measured."""

    servers: Servers
    upstream: str
    static: str | None
    nginx_page: str | None
    nginx_ws: str | None
    bare: str | None
    gateways: dict[str, Gateway]
    prosody: Prosody | None
    # This run's own redis-server, where one was started.
    own_redis: str | None
    # Every CPU the run may use, for the sections that are not pinned (workers).
    every_cpu: set[int]
    # The two gateways of the wire guard's section, the guard on and off.
    guard_gates: guard.Gates | None = None
    # The invitations section's gateways, which send to a mail server of the section's own.
    invitation_gates: invitations.Gates | None = None


def start_lab(servers: Servers, options: Options, every_cpu: set[int]) -> Lab:
    wanted = options.sections
    # One redis-server of the run's own: the Redis store's redemptions and forward-auth (unless
    # --redis names another), the two replicas of the revocation section, the workers.
    needs_redis = bool(wanted & {"redemption", "forward-auth"})
    own = (needs_redis and options.redis_url is None) or bool(
        wanted & {"revocation", "workers", "invitations"}
    )
    own_redis = servers.redis() if own else None
    redis_url = options.redis_url or own_redis
    servers.wait_ready()  # Redis gateways connect to it as they start
    prosody = servers.prosody() if "revocation" in wanted else None
    upstream_url = servers.bench_app("upstream")
    bare_url = servers.bench_app("bare") if wanted & {"redemption", "forward-auth"} else None
    static = servers.nginx_static() if "proxy" in wanted else None
    servers.wait_ready()
    nginx_page = servers.nginx_proxy(static) if static is not None else None
    nginx_ws = servers.nginx_proxy(upstream_url) if "websocket" in wanted else None
    gateways: dict[str, Gateway] = {}
    if wanted & {"redemption", "websocket", "forward-auth"}:
        gateways["memory"] = servers.gateway(
            "gate-memory", upstream=upstream_url, store_url="memory://"
        )
    if needs_redis and redis_url is not None:
        gateways["redis"] = servers.gateway(
            "gate-redis", upstream=upstream_url, store_url=redis_url
        )
    if static is not None:
        gateways["page"] = servers.gateway("gate-page", upstream=static, store_url="memory://")
    if prosody is not None and own_redis is not None:
        for name, store_url in (
            ("revoke-one", "memory://"),
            ("revoke-a", own_redis),
            ("revoke-b", own_redis),
        ):
            gateways[name] = servers.gateway(
                f"gate-{name}",
                upstream=upstream_url,
                store_url=store_url,
                signalling=prosody.http_url,
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
    guard_gates = guard.start_gates(servers, upstream_url) if "guard" in wanted else None
    invitation_gates = (
        invitations.start_gates(servers, upstream_url, own_redis)
        if "invitations" in wanted
        else None
    )
    if "workers" in wanted and own_redis is not None:
        # Jitsi's web server has cores of its own to use: not pinned, like the workers.
        shared_static = servers.nginx_static(pinned=False)
        servers.wait_ready()
        gateways["workers-one"], gateways["workers-two"] = workers.start_gates(
            servers, shared_static, own_redis
        )
    servers.wait_ready()
    return Lab(
        servers=servers,
        upstream=upstream_url,
        static=static,
        nginx_page=nginx_page,
        nginx_ws=nginx_ws,
        bare=bare_url,
        gateways=gateways,
        prosody=prosody,
        own_redis=own_redis,
        every_cpu=every_cpu,
        guard_gates=guard_gates,
        invitation_gates=invitation_gates,
    )


def redeem_load(wrk: str, url: str, tokens: Path, seconds: int) -> LoadResult:
    return run_wrk(
        wrk,
        url,
        seconds=seconds,
        connections=REDEEM_CONNECTIONS,
        script=REDEEM_SCRIPT,
        script_args=(str(tokens), url),
    )


@dataclass
class Redeeming:
    """One store's redemptions: where its invites come from and how many a timed run needs."""

    store: str
    gateway: Gateway
    api: AdminApi
    invites: Invites
    count: int = 0
    # On a Redis this run did not start, the run's rooms are deleted at the end.
    external: bool = False
    # The redis-server to count the timed redemptions' commands on (the run's own).
    counted: str | None = None


def calibrate(wrk: str, r: Redeeming, workdir: Path, options: Options) -> None:
    """A warm-up on a first batch of invites estimates the rate, so that each timed run gets
    enough invites (with headroom) without spending minutes making ones it never uses."""
    batch = asyncio.run(r.invites.make(CALIBRATION_PER_SECOND * options.warm_up))
    path = write_tokens(workdir / f"{r.store}-warm-up.tokens", batch)
    warm = redeem_load(wrk, r.gateway.url, path, options.warm_up)
    # Refusals in the warm-up mean the batch ran out: the rate is higher than measured.
    estimate = warm.per_second * (1.5 if warm.refused else 1)
    r.count = int(estimate * options.seconds * TOKEN_HEADROOM) + 500
    say(f"  {r.store}: warm-up {warm.per_second:,.0f}/s, {r.count:,} invites per timed run")


def timed_redemptions(
    wrk: str, r: Redeeming, repeat: int, workdir: Path, options: Options, m: Measurements
) -> LoadResult:
    """Redemptions/s, each of a fresh single-use invite made through the admin API beforehand;
    again with twice the invites if they ran out."""
    for attempt in range(TIMED_ATTEMPTS):
        tokens = asyncio.run(r.invites.make(r.count))
        m.invites[r.store] = m.invites.get(r.store, 0) + len(tokens)
        path = write_tokens(workdir / f"{r.store}-{repeat}-{attempt}.tokens", tokens)
        before = redis_commands_processed(r.counted) if r.counted else 0
        with profiled(f"redeem-{r.store}", r.gateway, workdir, options, m):
            result = redeem_load(wrk, r.gateway.url, path, options.seconds)
        if r.counted and not result.refused:
            m.redis_commands.append((redis_commands_processed(r.counted) - before, result))
        if not result.refused:
            break
        # The invites ran out (the warm-up underestimated, e.g. on a busy machine).
        r.count *= 2
        say(f"  {r.store}: the invites ran out; again with {r.count:,}")
    return result


def measure_redemption_section(
    lab: Lab, wrk: str, workdir: Path, options: Options, m: Measurements
) -> None:
    say("measuring redemptions")
    assert lab.bare is not None
    # The baseline is driven by the same script with made-up tokens of the same shape.
    baseline = [secrets.token_urlsafe(24) for _ in range(BASELINE_TOKENS)]
    baseline_path = write_tokens(workdir / "baseline.tokens", baseline)
    redeem_load(wrk, lab.bare, baseline_path, options.warm_up)
    stores = []
    for store in ("memory", "redis"):
        gateway = lab.gateways.get(store)
        if gateway is None:
            continue
        api = AdminApi(gateway.admin_url, gateway.admin_token)
        # On a Redis this run did not start, rooms of their own names keep the run's records
        # apart from whatever else is there, and deleting them at the end removes them.
        external = store == "redis" and options.redis_url is not None
        prefix = f"bench-{secrets.token_hex(4)}" if external else "bench"
        invites = Invites(api, prefix, options.room_size)
        counted = lab.own_redis if store == "redis" and not external else None
        stores.append(Redeeming(store, gateway, api, invites, external=external, counted=counted))
    try:
        for r in stores:
            calibrate(wrk, r, workdir, options)
        for repeat in range(options.repeats):
            bare = m.timed("bare", redeem_load(wrk, lab.bare, baseline_path, options.seconds))
            line = f"  repeat {repeat + 1}: bare {bare.per_second:,.0f}/s"
            for r in stores:
                result = m.timed(
                    f"redeem-{r.store}", timed_redemptions(wrk, r, repeat, workdir, options, m)
                )
                line += f", {r.store} {result.per_second:,.0f}/s"
            say(line)
    finally:
        for r in stores:
            if r.external:
                asyncio.run(r.api.delete_rooms(r.invites.rooms))


def admitted_cookie(gate: Gateway, room: str) -> str:
    """An admission cookie for the proxy's and the forward-auth check's requests."""
    api = AdminApi(gate.admin_url, gate.admin_token)
    asyncio.run(api.create_rooms([room]))
    [token] = asyncio.run(api.create_invites([room], 1, connections=1))
    return asyncio.run(redeem(gate.url, token, COOKIE))


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


@dataclass(frozen=True, slots=True)
class Checked:
    """One side of the forward-auth figures: a run name, a base URL, the cookie it is sent."""

    name: str
    url: str
    cookie: str
    gate: Gateway | None


def measure_forward_auth_section(
    lab: Lab, wrk: str, workdir: Path, options: Options, m: Measurements
) -> None:
    """The bare endpoint, then the check on the memory store, then on Redis, each repeat."""
    assert lab.bare is not None
    say("measuring the forward-auth check")
    gates: list[Checked] = []
    made: list[tuple[Gateway, str]] = []
    try:
        for store, name in (("memory", "forward-auth-memory"), ("redis", "forward-auth")):
            gate = lab.gateways.get(store)
            if gate is None:
                continue
            room = f"bench-auth-{secrets.token_hex(4)}"
            made.append((gate, room))
            cookie = admitted_cookie(gate, room)
            asyncio.run(check_forward_auth(gate.url, lab.bare, cookie))
            gates.append(Checked(name, gate.url, cookie, gate))
        redis_gate = lab.gateways.get("redis")
        if redis_gate is not None:
            # The same check when the admission cache cannot answer: a cookie of the right shape
            # that names no admission is read from Redis every time (nothing unknown is kept),
            # and answered 401. "Measured both ways", as issue 15 asks.
            unknown = secrets.token_urlsafe(32)
            gates.append(Checked(UNCACHED, redis_gate.url, unknown, redis_gate))
        # The bare endpoint ignores the cookie; it gets one all the same, so that every side
        # is sent the same request.
        every = [Checked("bare-204", lab.bare, gates[0].cookie, None), *gates]
        for side in every:
            forward_auth_load(wrk, side, options.warm_up)
        for repeat in range(options.repeats):
            line = f"  repeat {repeat + 1}:"
            for side in every:
                sampling = (
                    contextlib.nullcontext()
                    if side.gate is None
                    else profiled(side.name, side.gate, workdir, options, m)
                )
                with sampling:
                    result = m.timed(side.name, forward_auth_load(wrk, side, options.seconds))
                rate = (
                    result.requests / result.seconds if side.name == UNCACHED else result.per_second
                )
                line += f" {side.name} {rate:,.0f}/s"
            say(line)
    finally:
        # On a Redis this run did not start, its room goes again.
        redis_gate = lab.gateways.get("redis")
        if options.redis_url is not None and redis_gate is not None:
            api = AdminApi(redis_gate.admin_url, redis_gate.admin_token)
            asyncio.run(api.delete_rooms([room for gate, room in made if gate is redis_gate]))


def forward_auth_load(wrk: str, side: Checked, seconds: int) -> LoadResult:
    headers = (
        f"Cookie: {COOKIE}={side.cookie}",
        *(f"{name}: {value}" for name, value in FORWARD_AUTH_FRONT.items()),
    )
    return run_wrk(
        wrk,
        side.url + FORWARD_AUTH_PATH,
        seconds=seconds,
        connections=FORWARD_AUTH_CONNECTIONS,
        headers=headers,
    )


async def check_bodies(bases: list[str], cookie: str) -> None:
    """Every way gives the upstream's exact bytes; else a ratio would compare different work."""
    for base in bases:
        connection = await Connection.open(*host_port(base))
        try:
            for path, body in upstream.BODIES.items():
                response = await connection.request("GET", path, {"cookie": f"{COOKIE}={cookie}"})
                if response.status != 200 or response.body != body:
                    raise RuntimeError(f"GET {base}{path} gave {response.status}, not the body")
        finally:
            await connection.close()


def measure_proxy_section(
    lab: Lab, wrk: str, workdir: Path, options: Options, m: Measurements
) -> None:
    """The same GETs through nginx's `proxy_pass` and through the gate, both to one nginx
    serving the files: the 2 KiB page each repeat, the 3 MiB file once."""
    gate = lab.gateways["page"]
    assert lab.nginx_page is not None and lab.static is not None
    cookie = admitted_cookie(gate, f"bench-page-{secrets.token_hex(4)}")
    asyncio.run(check_bodies([gate.url, lab.nginx_page, lab.static], cookie))
    say("measuring the proxy")
    headers = (f"Cookie: {COOKIE}={cookie}",)

    def load(base: str, path: str, connections: int, seconds: int) -> LoadResult:
        return run_wrk(wrk, base + path, seconds=seconds, connections=connections, headers=headers)

    for base in (lab.nginx_page, gate.url):
        load(base, upstream.SMALL_PATH, SMALL_CONNECTIONS, options.warm_up)
    sides = [("nginx-2k", lab.nginx_page), ("gate-2k", gate.url)]
    for repeat in range(options.repeats):
        # The two sides take turns going first (see measure_websocket_section).
        line = f"  repeat {repeat + 1}:"
        for name, base in sides if repeat % 2 == 0 else sides[::-1]:
            sampling = (
                profiled(name, gate, workdir, options, m)
                if name == "gate-2k"
                else contextlib.nullcontext()
            )
            with sampling:
                result = m.timed(
                    name, load(base, upstream.SMALL_PATH, SMALL_CONNECTIONS, options.seconds)
                )
            line += f" {name} {result.per_second:,.0f}/s"
        say(line)
    for name, base in (("nginx-3m", lab.nginx_page), ("gate-3m", gate.url)):
        load(base, upstream.LARGE_PATH, LARGE_CONNECTIONS, options.warm_up)
        m.timed(name, load(base, upstream.LARGE_PATH, LARGE_CONNECTIONS, options.seconds))


def measure_websocket_section(lab: Lab, options: Options, m: Measurements) -> None:
    """Round trips (gate, nginx and direct, alternating), then messages/s through nginx and the
    gate (and straight to the echo once), each repeat."""
    gate = lab.gateways["memory"]
    assert lab.nginx_ws is not None
    cookie = f"{COOKIE}=" + admitted_cookie(gate, f"bench-ws-{secrets.token_hex(4)}")
    bases = {"gate": gate.url, "nginx": lab.nginx_ws, "direct": lab.upstream}
    say("measuring the WebSocket relay")
    urls = {
        name: "ws" + base.removeprefix("http") + upstream.ECHO_PATH for name, base in bases.items()
    }
    for repeat in range(options.repeats):
        latency = asyncio.run(
            measure(
                urls,
                cookie=cookie,
                round_trips=options.round_trips,
                warm_up=WS_WARM_UP,
            )
        )
        m.latency.append(latency)
        line = f"  repeat {repeat + 1}: p50 gate {latency['gate'].p50_ms:.3f} ms, nginx "
        line += f"{latency['nginx'].p50_ms:.3f} ms, direct {latency['direct'].p50_ms:.3f} ms;"
        # The two sides take turns going first, so that a drift of the machine's speed within
        # a repeat does not always fall on the same one.
        order = ["nginx", "gate"] if repeat % 2 == 0 else ["gate", "nginx"]
        for name in [*order, "direct"] if repeat == 0 else order:
            found = asyncio.run(
                ws_throughput.measure(
                    bases[name],
                    upstream.ECHO_PATH,
                    cookie,
                    warm_up=options.warm_up,
                    seconds=options.seconds,
                )
            )
            m.relay.setdefault(name, []).append(found)
            line += f" {name} {found.per_second:,.0f} messages/s"
        say(line)


def measure_guard_section(lab: Lab, workdir: Path, options: Options, m: Measurements) -> None:
    """Jitsi stanzas through the signalling relay with the wire guard on and off."""
    assert lab.guard_gates is not None
    say("measuring the wire guard")
    guard.measure(
        lab.guard_gates,
        f"bench-guard-{secrets.token_hex(4)}",
        options.repeats,
        guard.Timing(
            warm_up=options.warm_up, seconds=options.seconds, round_trips=options.round_trips
        ),
        say,
        m.guard,
        lambda side, gate: profiled(f"guard-{side}", gate, workdir, options, m),
    )


def idle_gateway_env(count: int) -> dict[str, str]:
    """The benchmark gateway's settings, with room for `count` connections from one address."""
    room = str(count + 1024)
    return {
        **GATEWAY_ENV,
        "MEETGATE_LIMITS__MAX_CONNECTIONS": room,
        "MEETGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS": room,
    }


def measure_idle_section(lab: Lab, options: Options, m: Measurements) -> None:
    """`idle_sockets` idle relayed WebSockets on a fresh gateway each repeat (memory a gateway
    has freed stays in its heap, so a second batch on the same one would cost less)."""
    # The echo behind them, holding every one (the other sections' upstream keeps the default
    # limits, as Jitsi's would).
    echo = lab.servers.bench_app("upstream", max_connections=options.idle_sockets + 1024)
    for repeat in range(options.repeats):
        count = options.idle_sockets
        say(f"measuring {count:,} idle WebSockets ({repeat + 1} of {options.repeats})")
        gate = lab.servers.gateway(
            f"gate-idle-{repeat}",
            upstream=echo,
            store_url="memory://",
            env=idle_gateway_env(options.idle_sockets),
        )
        lab.servers.wait_ready()
        try:
            idle = asyncio.run(
                revocation.measure_idle_sockets(gate, options.idle_sockets, IDLE_CUTS)
            )
        finally:
            lab.servers.stop(gate.pid)
        m.idle.append(idle)
        say(f"  {idle.bytes_per_connection / 1024:,.1f} KiB per connection")


def measure_revocation_section(lab: Lab, options: Options, m: Measurements) -> None:
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
        m.revocations.append(measured)
        p50, p99 = revocation.quantiles(measured.closed_ms)
        say(f"  socket closed p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def measure_flood_section(
    lab: Lab, wrk: str, workdir: Path, options: Options, m: Measurements
) -> None:
    gate = lab.gateways["flood"]
    for repeat in range(options.flood_repeats):
        say(f"measuring joins under a flood ({repeat + 1} of {options.flood_repeats})")
        # Only the first repeat is sampled (py-spy would slow the others alike).
        profiler = profiled("flood", gate, workdir, options, m, sampled=repeat == 0)
        measured = asyncio.run(flood.measure_flood(wrk, gate, options.flood_seconds, profiler))
        m.flood_repeats.append(measured)
        say(
            f"  {measured.attack.requests / measured.attack.seconds:,.0f} attack requests/s; "
            f"{measured.flooded.succeeded}/{measured.flooded.attempted} joins; "
            f"p99 {measured.p99_ratio:.1f}x quiet"
        )
    for name, what in (("flood", flood.LEAKED_LINK), ("flood-pow", flood.POW_ON)):
        say(f"measuring an attack alone: {what}")
        attack = asyncio.run(
            flood.measure_attack(wrk, lab.gateways[name], options.flood_seconds, what)
        )
        m.attacks.append(attack)
        say(f"  {attack.result.requests / attack.result.seconds:,.0f}/s")


def measure_workers_section(lab: Lab, wrk: str, options: Options, m: Measurements) -> None:
    """One worker against two on every CPU: the load generator leaves its own CPU for this."""
    say("measuring two workers against one")
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, lab.every_cpu)
    try:
        m.scaling = workers.measure_scaling(
            wrk,
            lab.gateways["workers-one"],
            lab.gateways["workers-two"],
            seconds=options.seconds,
            runs=options.repeats,
            warm_up=options.warm_up,
        )
    finally:
        os.sched_setaffinity(0, pinned)
    for scaling in m.scaling:
        say(f"  {scaling.route}: " + ", ".join(f"{r:.2f}x" for r in scaling.ratios))


def measure_invitations_section(lab: Lab, workdir: Path, options: Options, m: Measurements) -> None:
    """500 invitations sent through each store's gateway, and the joins beside them."""
    assert lab.invitation_gates is not None
    say(f"measuring {invitations.INVITATIONS} invitations by e-mail and the joins meanwhile")
    invitations.measure(
        lab.invitation_gates, workdir, options.repeats, options.room_size, say, m.invitations
    )


def measure_everything(
    servers: Servers,
    wrk: str,
    workdir: Path,
    options: Options,
    m: Measurements,
    every_cpu: set[int],
) -> None:
    lab = start_lab(servers, options, every_cpu)
    say("servers up")
    steps: dict[str, Callable[[], None]] = {
        "redemption": lambda: measure_redemption_section(lab, wrk, workdir, options, m),
        "forward-auth": lambda: measure_forward_auth_section(lab, wrk, workdir, options, m),
        "proxy": lambda: measure_proxy_section(lab, wrk, workdir, options, m),
        "websocket": lambda: measure_websocket_section(lab, options, m),
        "guard": lambda: measure_guard_section(lab, workdir, options, m),
        "idle": lambda: measure_idle_section(lab, options, m),
        "revocation": lambda: measure_revocation_section(lab, options, m),
        "flood": lambda: measure_flood_section(lab, wrk, workdir, options, m),
        "workers": lambda: measure_workers_section(lab, wrk, options, m),
        "invitations": lambda: measure_invitations_section(lab, workdir, options, m),
    }
    for section in SECTIONS:
        if section in options.sections:
            began = time.monotonic()
            steps[section]()
            m.took[section] = time.monotonic() - began


def ratio_goal(
    m: Measurements,
    what: str,
    name: str,
    baseline: str,
    baseline_name: str,
    target: float,
    target_text: str,
) -> Goal:
    """A goal on requests/s: each repeat's figure over its own baseline's."""
    gate, base = m.rates(name), m.rates(baseline)
    return Goal(
        what=what,
        meetgate=gate,
        baseline=base,
        unit="{:,.0f}/s",
        baseline_name=baseline_name,
        scores=[g / b for g, b in zip(gate, base, strict=True)],
        score_unit="{:.0%}",
        target=target,
        higher_is_better=True,
        target_text=target_text,
    )


def relay_goals(m: Measurements) -> list[Goal]:
    gate = [t.per_second for t in m.relay["gate"]]
    proxied = [t.per_second for t in m.relay["nginx"]]
    goals = [
        Goal(
            what=f"WebSocket relay, messages/s ({MESSAGE_BYTES} B echoes, "
            f"{ws_throughput.CONNECTIONS} connections, {ws_throughput.IN_FLIGHT} in flight each)",
            meetgate=gate,
            baseline=proxied,
            unit="{:,.0f}/s",
            baseline_name="nginx WebSocket proxy",
            scores=[g / n for g, n in zip(gate, proxied, strict=True)],
            score_unit="{:.0%}",
            target=RELAY_TARGET,
            higher_is_better=True,
            target_text=f"≥ {RELAY_TARGET:.0%} of nginx",
        )
    ]
    goals += added_latency_goals(
        m.latency,
        "gate",
        lambda label: (
            f"WebSocket relay, added round-trip latency {label} ({MESSAGE_BYTES} B, one "
            "message at a time)"
        ),
    )
    return goals


def workers_goal(scaling: Scaling) -> Goal:
    route = {
        "forward-auth": "forward-auth check on a live cookie",
        "page": "proxied 2 KiB page",
    }.get(scaling.route, scaling.route)
    return Goal(
        what=f"two processes vs one: {route} ({workers.CONNECTIONS} connections, nothing pinned)",
        meetgate=scaling.two,
        baseline=scaling.one,
        unit="{:,.0f}/s",
        baseline_name="one process",
        scores=scaling.ratios,
        score_unit="{:.2f}x",
        target=WORKERS_TARGET,
        higher_is_better=True,
        target_text=f"≥ {WORKERS_TARGET:g}x",
    )


def all_goals(m: Measurements) -> list[Goal]:
    """Issue 15's table, in its order: one row per goal measured in this run."""
    goals = []
    for store, label in (("memory", "memory store"), ("redis", "Redis store")):
        if m.has(f"redeem-{store}"):
            target = REDEMPTION_TARGETS[store]
            goals.append(
                ratio_goal(
                    m,
                    f"join redemption (POST join link → 303 with ticket), {label}, "
                    f"{REDEEM_CONNECTIONS} connections",
                    f"redeem-{store}",
                    "bare",
                    "bare ASGI 303",
                    target,
                    f"≥ {target:.0%} of bare",
                )
            )
    if m.has("forward-auth"):
        goals.append(
            ratio_goal(
                m,
                f"forward-auth check, Redis store, {FORWARD_AUTH_CONNECTIONS} connections",
                "forward-auth",
                "bare-204",
                "bare ASGI 204",
                FORWARD_AUTH_TARGET,
                f"≥ {FORWARD_AUTH_TARGET:.0%} of bare",
            )
        )
    if m.has("gate-2k"):
        goals.append(
            ratio_goal(
                m,
                f"proxied 2 KiB page, {SMALL_CONNECTIONS} connections",
                "gate-2k",
                "nginx-2k",
                "nginx proxy_pass",
                PAGE_TARGET,
                f"≥ {PAGE_TARGET:.0%} of nginx",
            )
        )
    if m.relay:
        goals += relay_goals(m)
    if m.guard.relay:
        goals += guard.goals(m.guard)
    if m.idle:
        goals.append(revocation.idle_goal(m.idle))
    if m.flood_repeats:
        goals.append(flood.p99_goal(m.flood_repeats))
    goals += [workers_goal(scaling) for scaling in m.scaling]
    return goals


def _median_ratio(m: Measurements, name: str, baseline: str) -> str:
    ratios = [g / b for g, b in zip(m.rates(name), m.rates(baseline), strict=True)]
    return f"{statistics.median(ratios):.0%} (median of {len(ratios)})"


def other_figures(m: Measurements) -> list[Figure]:
    figures = []
    if m.has("forward-auth-memory"):
        figures.append(
            Figure(
                what=f"forward-auth check, memory store, {FORWARD_AUTH_CONNECTIONS} connections",
                meetgate=f"{statistics.median(m.rates('forward-auth-memory')):,.0f}/s",
                baseline=f"{statistics.median(m.rates('bare-204')):,.0f}/s bare ASGI 204",
                comparison=_median_ratio(m, "forward-auth-memory", "bare-204"),
            )
        )
    if m.has(UNCACHED):
        # Every answer counts here: the uncached side's are all 401s.
        answered = [result.requests / result.seconds for result in m.runs[UNCACHED]]
        ratios = [a / b for a, b in zip(answered, m.rates("bare-204"), strict=True)]
        figures.append(
            Figure(
                what=(
                    f"forward-auth check, Redis store, the admission cache bypassed (a cookie "
                    f"naming no admission: one Redis read each, 401), "
                    f"{FORWARD_AUTH_CONNECTIONS} connections"
                ),
                meetgate=f"{statistics.median(answered):,.0f}/s",
                baseline=f"{statistics.median(m.rates('bare-204')):,.0f}/s bare ASGI 204",
                comparison=f"{statistics.median(ratios):.0%} (median of {len(ratios)})",
            )
        )
    if m.has("gate-3m"):
        [gate], [proxied] = m.runs["gate-3m"], m.runs["nginx-3m"]
        figures.append(
            Figure(
                what=f"proxied 3 MiB GET, {LARGE_CONNECTIONS} connections",
                meetgate=f"{gate.mib_per_second:,.0f} MiB/s",
                baseline=f"{proxied.mib_per_second:,.0f} MiB/s nginx proxy_pass",
                comparison=ratio(gate.mib_per_second, proxied.mib_per_second),
            )
        )
    if m.redis_commands:
        per_join = [commands / result.succeeded for commands, result in m.redis_commands]
        figures.append(
            Figure(
                what="Redis commands executed per join, Redis store (the redis-server's "
                "total_commands_processed over each timed run, per 303; the commands Lua "
                "scripts call are counted too, so this is work, not round trips: "
                "tests/integration/test_join_round_trips.py counts those)",
                meetgate=f"{statistics.median(per_join):.2f}",
                baseline="—",
                comparison=", ".join(f"{n:.2f}" for n in per_join) + " by repeat",
            )
        )
    if m.guard.relay:
        figures += guard.figures(m.guard)
    figures += revocation.revocation_figures(m.revocations)
    if m.idle:
        figures += revocation.idle_figures(m.idle)
    if m.flood is not None:
        figures += flood.flood_figures(m.flood, m.flood_repeats)
        figures += flood.attack_figures(m.flood_repeats, m.attacks)
    figures += invitations.figures(m.invitations)
    return figures


RUN_LABELS = {
    "bare": "bare ASGI 303",
    "bare-204": "bare ASGI 204 (the forward-auth baseline)",
    "forward-auth": "forward-auth check, through the gate on Redis",
    "forward-auth-memory": "forward-auth check, through the gate on the memory store",
    UNCACHED: "forward-auth check on Redis, a cookie the admission cache cannot answer (401)",
    "flood": "the gateway under the join flood",
    "redeem-memory": "Meetgate redemptions, memory store",
    "redeem-redis": "Meetgate redemptions, Redis store",
    "nginx-2k": "2 KiB GET through nginx proxy_pass",
    "gate-2k": "2 KiB GET through the gate",
    "nginx-3m": "3 MiB GET through nginx proxy_pass",
    "gate-3m": "3 MiB GET through the gate",
    "guard-on": "signalling relay, wire guard on",
    "guard-off": "signalling relay, wire guard off",
}


def profile_lines(m: Measurements) -> list[str]:
    lines = []
    for name, parts in m.profiles.items():
        shares = ", ".join(f"{share:.0%} {part}" for part, share in parts if share >= 0.02)
        lines.append(f"{RUN_LABELS.get(name, name)} (first repeat): {shares or 'no samples'}")
    return lines


def run_details(m: Measurements) -> list[str]:
    lines = []
    for name, results in m.runs.items():
        expected_401 = name == UNCACHED
        each = "; ".join(
            (f"{r.requests / r.seconds:,.0f}/s (401)" if expected_401 else f"{r.per_second:,.0f}/s")
            + (f" ({r.mib_per_second:,.0f} MiB/s)" if r.mib_per_second >= 100 else "")
            + f", p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms"
            + (f", {r.refused} refused" if r.refused and not expected_401 else "")
            + (f", {r.socket_errors} socket errors" if r.socket_errors else "")
            for r in results
        )
        lines.append(f"{RUN_LABELS.get(name, name)}, {results[0].seconds:.0f} s each: {each}")
    return lines


def relay_details(m: Measurements) -> list[str]:
    lines = []
    if m.relay:
        each = "; ".join(
            f"{name} " + ", ".join(f"{t.per_second:,.0f}" for t in found)
            for name, found in m.relay.items()
        )
        busiest = max(t.client_cpu_share for found in m.relay.values() for t in found)
        lines.append(
            f"WebSocket messages/s, repeat by repeat: {each} (straight to the echo in the "
            f"first repeat only); the client used at most {busiest:.0%} of its core"
        )
    if m.latency:
        added = "; ".join(
            f"gate {r['gate'].p50_ms - r['direct'].p50_ms:+.3f} / "
            f"{r['gate'].p99_ms - r['direct'].p99_ms:+.3f} ms, nginx "
            f"{r['nginx'].p50_ms - r['direct'].p50_ms:+.3f} / "
            f"{r['nginx'].p99_ms - r['direct'].p99_ms:+.3f} ms"
            for r in m.latency
        )
        lines.append(f"WebSocket round trips, added p50 / p99, repeat by repeat: {added}")
    return lines


def method_notes(options: Options, pinned: bool, m: Measurements) -> list[str]:
    placement = (
        "the load generator runs on CPU 0 and every server under test (gate, upstream, "
        "baselines, nginx, redis-server, prosody) on the other CPUs, so a ratio compares server "
        "CPU per request (but for the workers, which use every CPU)"
        if pinned
        else "processes are not pinned to CPUs"
    )
    notes = [
        f"Client: wrk, 1 thread, the same connections and script for both sides of a ratio; a "
        f"warm-up of {options.warm_up} s, then {options.seconds} s timed per side and repeat, "
        f"{options.repeats} repeat{'' if options.repeats == 1 else 's'}, each repeat's baseline "
        "measured next to its figure (for the proxy and the WebSocket relay, the two taking "
        "turns going first), "
        f"the ratios taken repeat by repeat; {placement}.",
    ]
    if m.has("bare"):
        made = ", ".join(f"{n:,} for {store}" for store, n in m.invites.items())
        notes.append(
            "Redemptions: `POST /j/<token>` with `Origin`, each with a fresh single-use invite "
            f"made through the admin API before timing ({made}), in rooms of "
            f"{options.room_size} invites each: rate-limit charge, invite lookup, atomic redeem, "
            "room policy and name checks, admission write, ticket signing, 303 with Set-Cookie; "
            "rate limits raised to their maximum (one client address makes all the load) and "
            "proof-of-work off; Meetgate's access log on (log level info). "
            f"{REDEEM_CONNECTIONS} connections. Baseline: a bare ASGI app answering 303 with "
            "Location and Set-Cookie on the same server, limits and event loop as `meetgate "
            "serve` (Meetgate's own HTTP server, gateway/edge/server.py, one process, "
            f"{EVENT_LOOP} event loop; bench/serve.py), driven by the same wrk script. The "
            "Redis store is a redis-server of the run's own unless `--redis` names one."
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
    if m.has("gate-2k"):
        notes.append(
            "Proxy: the same GET (checked byte for byte first) with an admission cookie, through "
            "the gate vs through nginx's `proxy_pass` (Debian's nginx, one process, access log "
            "on, kept-alive upstream connections; bench/nginx.py), both to one nginx serving "
            "the files as Jitsi's web server does; the proxy and the upstream share the server "
            "CPU."
        )
    if m.relay:
        notes.append(
            f"WebSocket relay: {ws_throughput.CONNECTIONS} connections to the upstream's echo "
            f"(bench/upstream.py), each keeping {ws_throughput.IN_FLIGHT} {MESSAGE_BYTES}-byte "
            "text messages in flight, every echo checked byte for byte (bench/ws_throughput.py, "
            "raw sockets), through the gate vs through nginx's WebSocket proxy on the same "
            "upstream, which shares the server CPU with either: the echo is a Python ASGI app "
            "on Meetgate's server, so it takes most of that CPU on nginx's side (compare the "
            "messages/s straight to the echo in the details), and a faster upstream would "
            f"lower the ratio. Round trips: {options.round_trips} sequential echoes per target "
            f"after {WS_WARM_UP} warm-up, the gate, nginx and the echo itself alternating in "
            "blocks of 100, one `websockets` client connection each; added latency is the gate's "
            "percentile less the echo's own."
        )
    if m.guard.relay:
        notes.append(guard.method(options.round_trips))
    if m.idle:
        notes.append(
            f"Idle WebSockets: {options.idle_sockets:,} relayed WebSockets held open on a fresh "
            "gateway each repeat (the run raises its limit on open files to twice that plus "
            f"{SPARE_FILES}, and the gateway's connection limits to that plus 1,024)."
        )
    if m.revocations:
        notes.append(revocation.METHOD)
    if m.flood_repeats:
        notes.append(flood.method(len(m.flood_repeats)))
        notes.append(flood.ATTACK_METHOD)
    if m.invitations.repeats:
        notes.append(invitations.method(options.repeats))
    if m.scaling:
        notes.append(
            "Workers: `meetgate serve` with `[listen] workers = 1` and `= 2` on the run's "
            f"redis-server, in front of an nginx serving the files; wrk, one thread, "
            f"{workers.CONNECTIONS} connections, runs alternated one, two, one, two…; nothing "
            "pinned (bench/workers.py)."
        )
    return notes


def warnings_of(m: Measurements, other: OtherLoad) -> list[str]:
    warnings = list(m.warnings) + invitations.warnings(m.invitations)
    if m.profiles:
        warnings.append(
            "--profile: py-spy sampled the gateway during its first timed runs, which lowers "
            "Meetgate's figures a little; compare ratios from runs without it."
        )
    if other.share_of_a_core > OTHER_LOAD_WARNING:
        warnings.append(
            f"{other.describe()} They competed with the servers and the client: expect lower "
            "and noisier figures than on an idle machine."
        )
    shares = [f.gateway_core_share for f in m.flood_repeats]
    if shares and min(shares) < SATURATED_SHARE:
        warnings.append(
            f"In a flood repeat the flooded gateway used only {min(shares):.0%} of a core: "
            "other processes took the rest of its CPU, so the flood's latencies and rate are "
            "worse than the code's own."
        )
    busy = [
        t.client_cpu_share
        for relay in (m.relay, m.guard.relay)
        for found in relay.values()
        for t in found
    ]
    if busy and max(busy) > CLIENT_BUSY_SHARE:
        warnings.append(
            f"The WebSocket load client used {max(busy):.0%} of its core in a run: it may have "
            "set that run's rate rather than the relay."
        )
    for name, results in m.runs.items():
        for r in results:
            if (r.refused and name != UNCACHED) or r.socket_errors:
                warnings.append(
                    f"{RUN_LABELS.get(name, name)}: {r.refused} refused and {r.socket_errors} "
                    "socket errors in a timed run (for redemptions, refusals past the pre-made "
                    "invites: the figure is then a lower bound)"
                )
    for scaling in m.scaling:
        warnings += [f"Workers, {scaling.route}, {error}" for error in scaling.errors]
    return warnings


def detail_lines(m: Measurements) -> list[str]:
    lines = relay_details(m)
    lines += guard.details(m.guard)
    lines += revocation.details(m.revocations, m.idle)
    if m.flood is not None:
        lines += flood.details(m.flood, m.flood_repeats)
    lines += invitations.details(m.invitations)
    if m.took:
        lines.append(
            "Sections took: "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in m.took.items())
        )
    return lines


def tools_in_use(wrk: str, sections: frozenset[str]) -> str:
    tools = [wrk_version(wrk)]
    if sections & {"proxy", "websocket", "workers"}:
        tools.append(nginx.version())
    tools.append(redis_version())
    return ", ".join(tools)


def fit_idle_sockets(options: Options, m: Measurements) -> Options:
    """Raise the limit on open files for the idle WebSockets: each is a socket here, two in the
    gateway (the browser's and the upstream's) and one in the upstream, and the servers inherit
    this process's limit. Where the hard limit is too low and may not be raised, fewer sockets,
    and a warning saying so."""
    limit = open_files_up_to(2 * options.idle_sockets + SPARE_FILES)
    fits = (limit - SPARE_FILES) // 2
    if fits >= options.idle_sockets:
        return options
    m.warnings.append(
        f"The limit on open files is {limit:,} and this process may not raise it (ulimit -Hn): "
        f"{fits:,} idle WebSockets were held open instead of {options.idle_sockets:,}."
    )
    say(f"the limit on open files allows {fits:,} idle WebSockets, not {options.idle_sockets:,}")
    return dataclasses.replace(options, idle_sockets=fits)


def run(options: Options) -> Report:
    wrk = ensure_wrk()
    wanted = options.sections
    tools = ["redis-server"]
    if wanted & {"proxy", "websocket", "workers"}:
        tools.append("nginx")
    if "revocation" in wanted:
        tools.append("prosody")
    ensure_tools(*tools)
    if options.profile:
        profiling.py_spy()  # fail now, not after the servers have started
    machine = this_machine(tools_in_use(wrk, wanted))
    every_cpu = os.sched_getaffinity(0)
    client_cpus, server_cpus = cpu_split(options.pin)
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)
    say(f"machine: {machine.describe()}")
    m = Measurements()
    if "idle" in wanted:
        options = fit_idle_sockets(options, m)
    workdir = Path(tempfile.mkdtemp(prefix="meetgate-bench-"))
    started, busy, own = time.monotonic(), busy_cpu_seconds(), own_cpu_seconds()
    try:
        with Servers(workdir, server_cpus, every_cpu) as servers:
            measure_everything(servers, wrk, workdir, options, m, every_cpu)
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
    report = Report(
        command=options.command,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine,
        method=[*method_notes(options, client_cpus is not None, m), other.describe()],
        goals=all_goals(m),
        figures=other_figures(m),
        runs=run_details(m),
        details=detail_lines(m),
        profiles=profile_lines(m),
        warnings=warnings_of(m, other),
    )
    if options.write_docs:
        write_docs(ROOT / "docs" / "performance.md", report)
    return report
