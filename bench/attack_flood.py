"""The attack replay's join flood (issue 20; docs/design/attack-replay.md): join attempts through
the TLS front at the room's link and at the leaked invite links, from more than a thousand /24s,
with the gates' CPU over the run. `run_flood` is wrk at full rate (bench/attack_flood.lua);
`small_flood` a few hundred of the same attempts from Python, for the scaled-down test.

A join attempt on the room's link is the form its gate page shows: the lobby's knock, POSTed as
a browser does. On an invite link it is the join button's POST. Every attempt carries the
front's Origin and a spoofed `X-Forwarded-For`, which the front passes on (it believes the load
tool, as a front believes a CDN) and the gates believe from the front.

Neither function records events: the caller turns a `FloodResult` into them. No token is
written anywhere but a private file wrk reads and that is removed after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl as tls
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.load import RESULT_PREFIX, LoadError, ensure_wrk
from bench.machine import process_cpu_seconds
from bench.rawhttp import Connection, Response, host_port
from bench.suite import write_tokens
from gateway.edge.requests import LOBBY_PREFIX

FLOOD_SCRIPT = Path(__file__).resolve().parent / "attack_flood.lua"
# 4,096 attacking addresses, 4 in each of 1,024 /24s from 198.18.0.0 up to 198.21.255.0: a /15
# holds only 512, so past RFC 2544's benchmarking range (198.18.0.0/15) they run into public
# space (198.20.0.0/15). They travel only as X-Forwarded-For headers on loopback.
ADDRESSES = 4096
PER_NETWORK = 4
# wrk shares the two cores with the gates, the front and the scenario's clients: it yields to
# them, as in bench/flood.py, so that the attendees' own clock is not queued behind the flood.
WRK_NICE = 19
WRK_TIMEOUT_SECONDS = 10
# The gate page's lobby form, as a browser posts it (templates/enter.html).
KNOCK_FORM = b"name=Visitor&message="
# The answers that are not refusals: a leaked link let in, a knock queued in the lobby.
ADMITTED = "303 meeting"
QUEUED = "303 lobby"
# The proof-of-work page (200) a gate under a flood answers instead of the attempt.
CHALLENGE = "challenge"
CPU_SAMPLE_SECONDS = 1.0
SMALL_FLOOD_CONNECTIONS = 8
SMALL_FLOOD_TIMEOUT_SECONDS = 10


@dataclass(frozen=True, slots=True)
class FloodResult:
    """What a flood was answered, and what the gates spent on it."""

    requests: int  # answers received
    seconds: float
    statuses: dict[str, int]  # answers by kind: the status, or ADMITTED, QUEUED, CHALLENGE
    networks: int  # distinct /24s the attempts came from
    cpu_seconds: float  # the gates' user + system time over the run, all gates together
    socket_errors: int = 0  # connect, read, write errors and timeouts
    per_second: tuple[int, ...] = ()  # answers in each second of the run, the first partial
    series_start: float | None = None  # the perf_counter() reading where per_second[0] starts

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def admitted(self) -> int:
        return self.statuses.get(ADMITTED, 0)

    @property
    def queued(self) -> int:
        return self.statuses.get(QUEUED, 0)

    @property
    def refused(self) -> int:
        """Answers that let nobody in nor queued anyone: limits, refusals, challenge pages."""
        return self.requests - self.admitted - self.queued

    @property
    def cpu_per_attempt_ms(self) -> float:
        return self.cpu_seconds / max(1, self.requests) * 1000

    @property
    def cpu_per_refusal_ms(self) -> float:
        """The gates' CPU over the run per refused attempt (as flood.py's
        `Attack.cpu_per_request_ms`, over refusals only)."""
        return self.cpu_seconds / max(1, self.refused) * 1000

    def mix(self) -> str:
        """The answers by kind, most frequent first: "9,120 429, 310 challenge, …"."""
        ordered = sorted(self.statuses.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{n:,} {kind}" for kind, n in ordered)

    def detail(self) -> str:
        """The FLOOD event's detail (bench/attack_events.py): requests, per second, answers."""
        return f"{self.requests}\t{self.rate:.0f}\t{self.mix()}"


def room_knock(room_path: str) -> str:
    """The target of the room link's join attempt: the lobby form on its gate page."""
    room = room_path.strip("/")
    if not room or "/" in room:
        raise ValueError(f"{room_path!r} is not a room's link (/<room>)")
    return f"{LOBBY_PREFIX}/{room}"


def answer_kind(status: int, location: str, body: bytes) -> str:
    """A response's kind, as bench/attack_flood.lua counts it."""
    if status == 303 and "#jwt=" in location:
        return ADMITTED
    if status == 303 and "/_meetgate/lobby/" in location:
        return QUEUED
    if status == 200 and b"data-pow-token" in body:
        return CHALLENGE
    return str(status)


def spoofed_address(number: int, networks: int) -> str:
    """The number-th attempt's address in `small_flood`: network after network of `networks`
    /24s of 198.18.0.0/15 (every one used once in the first `networks` attempts), the next
    host of each on each pass."""
    network = number % networks
    return f"198.{18 + network // 256 % 2}.{network % 256}.{number // networks % 254 + 1}"


def wrk_address(index: int) -> str:
    """The index-th of wrk's ADDRESSES attacking addresses, as attack_flood.lua's
    `address_of` writes it (PER_NETWORK in each /24 from 198.18.0.0 upward: see ADDRESSES)."""
    network = index // PER_NETWORK
    return f"198.{18 + network // 256}.{network % 256}.{index % PER_NETWORK + 1}"


class GateCpu:
    """The gates' CPU seconds since it was made, read again at every `sample()`, so that a gate
    killed during the run counts up to its last reading."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._start: dict[int, float] = {}
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                self._start[pid] = process_cpu_seconds(pid)
        self._last = dict(self._start)

    def sample(self) -> None:
        for pid in self._start:
            with contextlib.suppress(OSError, ValueError):
                self._last[pid] = process_cpu_seconds(pid)

    async def follow(self) -> None:
        """Sample every CPU_SAMPLE_SECONDS until cancelled."""
        while True:
            await asyncio.sleep(CPU_SAMPLE_SECONDS)
            self.sample()

    @property
    def seconds(self) -> float:
        return sum(self._last[pid] - start for pid, start in self._start.items())


def wrk_command(
    wrk: str,
    front_url: str,
    *,
    knock: str,
    tokens_file: Path,
    seconds: int,
    threads: int,
    connections: int,
    nice: int,
) -> list[str]:
    command = ["nice", "-n", str(nice)] if nice else []
    command += [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
    command += ["--timeout", f"{WRK_TIMEOUT_SECONDS}s", "-s", str(FLOOD_SCRIPT), front_url]
    args = (front_url, knock, str(tokens_file), str(ADDRESSES), str(PER_NETWORK), str(threads))
    return [*command, "--", *args]


def parse_report(stdout: str, stderr: str, cpu_seconds: float, clock_offset: float) -> FloodResult:
    """The script's BENCH-RESULT line as a FloodResult; `clock_offset` is perf_counter() less
    time() (the script's seconds are wall-clock ones)."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            raw = json.loads(line.removeprefix(RESULT_PREFIX))
            per_second = {int(second): int(n) for second, n in raw["seconds"].items()}
            first = min(per_second, default=0)
            series = tuple(
                per_second.get(s, 0) for s in range(first, max(per_second, default=-1) + 1)
            )
            return FloodResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                statuses={str(kind): int(n) for kind, n in raw["statuses"].items()},
                networks=raw["networks"],
                cpu_seconds=cpu_seconds,
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
                per_second=series,
                series_start=first + clock_offset if series else None,
            )
    raise LoadError(f"the flood's wrk reported nothing:\n{stdout[-2000:]}\n{stderr[-2000:]}")


async def run_flood(
    front_url: str,
    cafile: Path,
    *,
    room_path: str,
    leaked_tokens: list[str],
    seconds: float,
    threads: int = 2,
    connections: int = 64,
    gate_pids: list[int],
    nice: int = WRK_NICE,
) -> FloodResult:
    """wrk for `seconds` (whole seconds, at least one) against `front_url`: half the attempts
    knock on the room's link `room_path` (/<room>), half POST the `leaked_tokens` in turn, from
    ADDRESSES / PER_NETWORK /24s. wrk runs as a subprocess: the event loop goes on serving the
    other actors. wrk does not check the front's certificate, so `cafile` goes unused here (it
    is in the signature for `small_flood`'s sake, which does)."""
    del cafile
    knock = room_knock(room_path)
    whole = max(1, round(seconds))
    wrk = await asyncio.to_thread(ensure_wrk)
    with tempfile.TemporaryDirectory(prefix="meetgate-flood-") as private:
        tokens_file = write_tokens(Path(private) / "leaked", leaked_tokens)
        command = wrk_command(
            wrk,
            front_url,
            knock=knock,
            tokens_file=tokens_file,
            seconds=whole,
            threads=threads,
            connections=connections,
            nice=nice,
        )
        cpu = GateCpu(gate_pids)
        clock_offset = time.perf_counter() - time.time()
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        sampler = asyncio.create_task(cpu.follow())
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), whole + 60)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        cpu.sample()
    return parse_report(
        stdout.decode(errors="replace"), stderr.decode(errors="replace"), cpu.seconds, clock_offset
    )


async def small_flood(
    front_url: str,
    cafile: Path,
    *,
    room_path: str,
    leaked_tokens: list[str],
    requests: int = 300,
    networks: int = 100,
    connections: int = SMALL_FLOOD_CONNECTIONS,
    gate_pids: Iterable[int] = (),
) -> FloodResult:
    """`requests` of `run_flood`'s attempts from Python, on `connections` keep-alive connections
    (TLS with `cafile` for an https front), from `networks` /24s; the gates' CPU if `gate_pids`
    are given."""
    knock = room_knock(room_path)
    host, port = host_port(front_url)
    context = (
        tls.create_default_context(cafile=str(cafile)) if front_url.startswith("https") else None
    )
    origin = f"{urlsplit(front_url).scheme}://{urlsplit(front_url).netloc}"
    numbers = itertools.count()
    kinds: Counter[str] = Counter()
    buckets: Counter[int] = Counter()
    used: set[str] = set()
    errors = 0
    cpu = GateCpu(gate_pids)
    started = time.perf_counter()

    def attempt(number: int) -> tuple[str, dict[str, str], bytes]:
        address = spoofed_address(number, networks)
        used.add(address.rpartition(".")[0])
        headers = {"origin": origin, "x-forwarded-for": address}
        if number % 2 == 0 or not leaked_tokens:
            headers["content-type"] = "application/x-www-form-urlencoded"
            return knock, headers, KNOCK_FORM
        return f"/j/{leaked_tokens[number // 2 % len(leaked_tokens)]}", headers, b""

    async def one(connection: Connection, number: int) -> Response:
        target, headers, body = attempt(number)
        return await asyncio.wait_for(
            connection.request("POST", target, headers, body), SMALL_FLOOD_TIMEOUT_SECONDS
        )

    async def worker() -> None:
        nonlocal errors
        connection: Connection | None = None
        try:
            while (number := next(numbers)) < requests:
                try:
                    if connection is None:
                        connection = await asyncio.wait_for(
                            Connection.open(host, port, ssl=context), SMALL_FLOOD_TIMEOUT_SECONDS
                        )
                    answer = await one(connection, number)
                except (OSError, ValueError, EOFError, TimeoutError):
                    errors += 1
                    await _close(connection)
                    connection = None
                    continue
                kinds[
                    answer_kind(answer.status, answer.headers.get("location", ""), answer.body)
                ] += 1
                buckets[int(time.perf_counter() - started)] += 1
                if answer.headers.get("connection", "").lower() == "close":
                    await _close(connection)
                    connection = None
        finally:
            await _close(connection)

    await asyncio.gather(*(worker() for _ in range(max(1, connections))))
    cpu.sample()
    seconds = time.perf_counter() - started
    return FloodResult(
        requests=sum(kinds.values()),
        seconds=seconds,
        statuses=dict(kinds),
        networks=len(used),
        cpu_seconds=cpu.seconds,
        socket_errors=errors,
        per_second=tuple(buckets.get(s, 0) for s in range(max(buckets, default=-1) + 1)),
        series_start=started,
    )


async def _close(connection: Connection | None) -> None:
    """Close `connection` if there is one, whatever state it is in."""
    if connection is not None:
        with contextlib.suppress(OSError, ValueError):
            await connection.close()
    return None
