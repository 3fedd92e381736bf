"""The upstream HTTP client, chosen by measurement: `python -m bench.upstream_clients [--seconds 5]
[--runs 3]`.

Three clients fetch the same files from the same upstream, Debian's nginx serving bench's 2 KiB
and 3 MiB bodies (bench/nginx.py): the gate's own pooled client on raw sockets with httptools
(gateway/proxy/upstream.py), httpx.AsyncClient (pooled), and aiohttp's ClientSession, each used
as the gate uses its client: a pooled keep-alive connection per worker, the body streamed as it
arrives (read piece by piece, never held whole) and every byte counted. `--concurrency N`
workers share one client (16 for the small file, 4 for the large one).

Each client runs in this process on uvloop's event loop, pinned to CPU 0, with nginx on CPU 1
(`--no-pin` leaves both free), so a client's requests per second is its CPU cost per request.
Clients take turns within each run (gate, httpx, aiohttp, then again), after an untimed
second each; prints every run, then the median and the worst of the runs (worst: the fewest
requests per second, the highest p99).

aiohttp is not a dependency of Meetgate: the bench uses it if it is installed and says "not
installed" otherwise (a throwaway virtual environment: `python3 -m venv /tmp/aiohttp-venv &&
/tmp/aiohttp-venv/bin/pip install -c requirements.lock -e . aiohttp`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench.machine import this_machine
from bench.nginx import version as nginx_version
from bench.roundtrip import percentile
from bench.serve import use_meetgates_event_loop
from bench.servers import Servers
from bench.upstream import BODIES, LARGE_PATH, SMALL_PATH
from gateway.proxy.upstream import UpstreamClient, UpstreamLimits

WARM_UP_SECONDS = 1.0
CONCURRENCY = {SMALL_PATH: 16, LARGE_PATH: 4}
LOAD_CPU, SERVER_CPUS = 0, {1}

# One GET: fetch `url`, stream its body, return how many bytes it had.
Fetch = Callable[[str], Awaitable[int]]
ClientFactory = Callable[[int], AbstractAsyncContextManager[Fetch]]


@asynccontextmanager
async def gates_client(concurrency: int) -> Any:
    client = UpstreamClient(UpstreamLimits(max_idle=concurrency))

    async def fetch(url: str) -> int:
        response = await client.send("GET", url, [])
        size = 0
        try:
            while not response.finished:
                size += len(await response.read())
        finally:
            response.close()
        return size

    try:
        yield fetch
    finally:
        await client.aclose()


@asynccontextmanager
async def httpx_client(concurrency: int) -> Any:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def fetch(url: str) -> int:
            size = 0
            async with client.stream("GET", url) as response:
                async for chunk in response.aiter_raw():
                    size += len(chunk)
            return size

        yield fetch


@asynccontextmanager
async def aiohttp_client(concurrency: int) -> Any:
    # Imported by name: aiohttp is no dependency of Meetgate's (nor a declared one of the
    # bench, which the dependency check would require of an import statement).
    aiohttp: Any = importlib.import_module("aiohttp")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, trust_env=False
    ) as session:

        async def fetch(url: str) -> int:
            size = 0
            async with session.get(url) as response:
                async for chunk in response.content.iter_any():
                    size += len(chunk)
            return size

        yield fetch


def aiohttp_installed() -> bool:
    try:
        metadata.version("aiohttp")
    except metadata.PackageNotFoundError:
        return False
    return True


CLIENTS: dict[str, ClientFactory] = {
    "gate's own (httptools)": gates_client,
    "httpx.AsyncClient": httpx_client,
    "aiohttp.ClientSession": aiohttp_client,
}


@dataclass(frozen=True, slots=True)
class Measured:
    requests: int
    seconds: float
    latencies_ns: list[int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def quantile_ms(self, fraction: float) -> float:
        return percentile(self.latencies_ns, fraction)


async def measure(
    factory: ClientFactory, url: str, size: int, concurrency: int, seconds: float
) -> Measured:
    """`concurrency` workers GET `url` back to back through one client: an untimed warm-up,
    then `seconds` timed. Every body must be `size` bytes."""
    async with factory(concurrency) as fetch:
        latencies: list[int] = []

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                started = time.perf_counter_ns()
                got = await fetch(url)
                if got != size:
                    raise RuntimeError(f"{url}: {got} bytes instead of {size}")
                if record:
                    latencies.append(time.perf_counter_ns() - started)

        warm = time.perf_counter() + WARM_UP_SECONDS
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Measured(len(latencies), elapsed, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    loop_name = use_meetgates_event_loop()
    machine = this_machine("")
    clients = dict(CLIENTS)
    if not aiohttp_installed():
        del clients["aiohttp.ClientSession"]
        print("aiohttp: not installed: pip install aiohttp")
    pinned = not args.no_pin and len(os.sched_getaffinity(0)) > 1
    if pinned:
        os.sched_setaffinity(0, {LOAD_CPU})
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("httptools", "httpx", "httpcore", "aiohttp")
        if name != "aiohttp" or "aiohttp.ClientSession" in clients
    )
    print(f"{machine.describe()}nginx {nginx_version()}; {versions}; {loop_name} event loop")
    results: dict[tuple[str, str], list[Measured]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="upstream-clients-") as workdir,
        Servers(Path(workdir), SERVER_CPUS if pinned else None) as servers,
    ):
        base = servers.nginx_static(pinned=pinned)
        servers.wait_ready()
        for run in range(1, args.runs + 1):
            for path in (SMALL_PATH, LARGE_PATH):
                for name, factory in clients.items():
                    measured = asyncio.run(
                        measure(
                            factory, base + path, len(BODIES[path]), CONCURRENCY[path], args.seconds
                        )
                    )
                    results.setdefault((path, name), []).append(measured)
                    print(
                        f"run {run} {path} {name}: {measured.per_second:,.0f} requests/s, "
                        f"p50 {measured.quantile_ms(0.5):.2f} ms, "
                        f"p99 {measured.quantile_ms(0.99):.2f} ms",
                        flush=True,
                    )
    print(f"\nmedian (worst) of {args.runs} runs:")
    for (path, name), runs in results.items():
        rates = [m.per_second for m in runs]
        p50s = [m.quantile_ms(0.5) for m in runs]
        p99s = [m.quantile_ms(0.99) for m in runs]
        print(
            f"{path} x{CONCURRENCY[path]} {name}: "
            f"{statistics.median(rates):,.0f} ({min(rates):,.0f}) requests/s, "
            f"p50 {statistics.median(p50s):.2f} ({max(p50s):.2f}) ms, "
            f"p99 {statistics.median(p99s):.2f} ({max(p99s):.2f}) ms"
        )


if __name__ == "__main__":
    main()
