"""Memory of idle relayed WebSockets: `python -m bench.ws_memory [--sockets 10000] [--runs 3]`.

Starts bench's upstream (bench.upstream) and `meetgate serve` on the memory store, redeems one
invite per socket, opens that many WebSockets through the gate's relayed endpoint to the
upstream's echo (idle: no pings either way), and reads the gateway's resident memory (VmRSS)
before and once all are open. A fresh gateway per run; prints each run's KiB per socket, then
the median and the worst.

`--trace` finds where that memory goes instead: on SIGUSR1 the gateway writes a tracemalloc
snapshot (tracing from the first one on, 10 frames) and a count of its live objects by type (a
`sitecustomize` this run puts on the gateway's PYTHONPATH installs that handler). Both are
taken before and after the sockets open; the difference is printed per socket, by the line that
allocated it and by object type. tracemalloc sees only Python's allocator, not the event loop's
C allocations (uvloop's handles and read buffers), so the RSS figure stays the measure.

Each relayed socket is two descriptors in the gateway (the browser's and the upstream's), so the
run needs a limit on open files above twice the sockets; it raises its soft limit (inherited by
the servers it starts) as far as the hard limit allows and says so if that is too low.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import pickle
import secrets
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from bench import upstream
from bench.admin import AdminApi, Invites, admit
from bench.machine import process_rss_bytes
from bench.revocation import SOCKET_CONCURRENCY, bounded_gather
from bench.servers import GATEWAY_ENV, ROOT, Gateway, Servers, raise_open_files

SNAPSHOT_ENV = "BENCH_WS_MEMORY_SNAPSHOT"
TRACE_FRAMES = 10
# Sockets opened before the first reading: the first relayed socket imports and warms code
# paths whose memory is not any socket's.
WARM_UP_SOCKETS = 20
# Descriptors the gateway holds besides its sockets (listeners, the event loop, logs), with room.
SPARE_FILES = 32
ROOM_SIZE = 100


# ------------------------------------------------------------------ inside the traced gateway


def install_snapshot_hook() -> None:
    """In the gateway (through its `sitecustomize`): on SIGUSR1 write a tracemalloc snapshot
    and the live objects' count by type to `$BENCH_WS_MEMORY_SNAPSHOT.<n>`, n counting from 0."""
    base = os.environ[SNAPSHOT_ENV]
    taken = 0

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal taken
        gc.collect()
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        if not tracemalloc.is_tracing():
            # Traced from the first snapshot on: what the sockets allocate, at a fraction of
            # the cost of tracing the gateway's start.
            tracemalloc.start(TRACE_FRAMES)
        snapshot = tracemalloc.take_snapshot()
        partial_path = Path(f"{base}.{taken}.part")
        with partial_path.open("wb") as handle:
            pickle.dump((snapshot, dict(counts)), handle)
        partial_path.rename(f"{base}.{taken}")
        taken += 1

    signal.signal(signal.SIGUSR1, on_signal)


# ------------------------------------------------------------------ the run


@dataclass(frozen=True, slots=True)
class Reading:
    sockets: int
    rss_before: int
    rss_after: int

    @property
    def kib_per_socket(self) -> float:
        return (self.rss_after - self.rss_before) / self.sockets / 1024


async def _admitted_cookies(gate: Gateway, count: int) -> list[str]:
    api = AdminApi(gate.admin_url, gate.admin_token)
    tokens = await Invites(api, f"ws-memory-{secrets.token_hex(4)}", ROOM_SIZE).make(count)
    admitted = await bounded_gather([partial(admit, gate.url, t) for t in tokens[:count]], 16)
    return [a.cookie for a in admitted]


async def _open(gate: Gateway, cookies: list[str], into: list[ClientConnection]) -> None:
    url = "ws" + gate.url.removeprefix("http") + upstream.ECHO_PATH

    async def one(cookie: str) -> None:
        socket = await connect(
            url,
            additional_headers={"cookie": f"meetgate={cookie}"},
            compression=None,
            open_timeout=30,
            proxy=None,
            # Idle: no keepalive pings.
            ping_interval=None,
        )
        into.append(socket)

    await bounded_gather([partial(one, c) for c in cookies], SOCKET_CONCURRENCY)


async def _close(sockets: list[ClientConnection]) -> None:
    async def one(socket: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(socket.close(), 5)

    await bounded_gather([partial(one, s) for s in sockets], 200)


def _snapshot(pid: int, path: Path, number: int) -> tuple[tracemalloc.Snapshot, dict[str, int]]:
    os.kill(pid, signal.SIGUSR1)
    written = Path(f"{path}.{number}")
    deadline = time.monotonic() + 120
    while not written.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway wrote no snapshot within 120 s")
        time.sleep(0.05)
    with written.open("rb") as handle:
        loaded: tuple[tracemalloc.Snapshot, dict[str, int]] = pickle.load(handle)  # noqa: S301 (our own file)
    return loaded


def _print_trace(
    before: tuple[tracemalloc.Snapshot, dict[str, int]],
    after: tuple[tracemalloc.Snapshot, dict[str, int]],
    sockets: int,
) -> None:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<*")]
    old, new = before[0].filter_traces(ignore), after[0].filter_traces(ignore)
    total = sum(s.size for s in new.statistics("filename")) - sum(
        s.size for s in old.statistics("filename")
    )
    print(f"\nPython allocations per socket (tracemalloc): {total / sockets:,.0f} B")
    print("\nBy allocating line, bytes per socket:")
    for stat in new.compare_to(old, "lineno")[:40]:
        if stat.size_diff / sockets < 16:
            break
        frame = stat.traceback[0]
        where = frame.filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        count = stat.count_diff / sockets
        print(f"  {stat.size_diff / sockets:8,.0f}  ({count:4.1f} blocks)  {where}:{frame.lineno}")
    print("\nLive objects per socket, by type:")
    diffs = {name: after[1].get(name, 0) - before[1].get(name, 0) for name in after[1]}
    for name, diff in sorted(diffs.items(), key=lambda item: -item[1])[:30]:
        if diff / sockets < 0.5:
            break
        print(f"  {diff / sockets:6.1f}  {name}")


def _hook_dir(workdir: Path) -> Path:
    hook = workdir / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import bench.ws_memory\nbench.ws_memory.install_snapshot_hook()\n", encoding="utf-8"
    )
    return hook


def one_run(workdir: Path, count: int, *, trace: bool) -> Reading:
    env = {**GATEWAY_ENV, "MEETGATE_LIMITS__MAX_CONNECTIONS": str(2 * count + 1024)}
    snapshots = workdir / "snapshot"
    if trace:
        env["PYTHONPATH"] = os.pathsep.join([str(_hook_dir(workdir)), str(ROOT)])
        env[SNAPSHOT_ENV] = str(snapshots)
    with Servers(workdir, cpus=None) as servers:
        upstream_url = servers.bench_app("upstream", max_connections=2 * count + 1024)
        gate = servers.gateway("gate", upstream=upstream_url, store_url="memory://", env=env)
        servers.wait_ready()
        sockets: list[ClientConnection] = []

        async def measure() -> Reading:
            cookies = await _admitted_cookies(gate, WARM_UP_SOCKETS + count)
            try:
                await _open(gate, cookies[:WARM_UP_SOCKETS], sockets)
                await asyncio.sleep(0.5)
                if trace:
                    before = await asyncio.to_thread(_snapshot, gate.pid, snapshots, 0)
                rss_before = process_rss_bytes(gate.pid)
                await _open(gate, cookies[WARM_UP_SOCKETS:], sockets)
                # Whatever the last handshakes left to finish.
                await asyncio.sleep(1)
                rss_after = process_rss_bytes(gate.pid)
                for socket in sockets[-5:]:
                    await socket.send("ping")
                    if await asyncio.wait_for(socket.recv(), 10) != "ping":
                        raise RuntimeError("a relayed WebSocket did not echo")
                if trace:
                    after = await asyncio.to_thread(_snapshot, gate.pid, snapshots, 1)
                    _print_trace(before, after, count)
                return Reading(count, rss_before, rss_after)
            finally:
                await _close(sockets)

        return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="where the memory goes (one run)")
    args = parser.parse_args()
    try:
        raise_open_files(2 * (args.sockets + WARM_UP_SOCKETS) + SPARE_FILES)
    except RuntimeError as exc:
        sys.exit(f"{exc}: run with fewer --sockets")
    readings = []
    for number in range(1 if args.trace else args.runs):
        with tempfile.TemporaryDirectory(prefix="ws-memory-") as workdir:
            reading = one_run(Path(workdir), args.sockets, trace=args.trace)
        readings.append(reading)
        print(
            f"run {number + 1}: {reading.sockets:,} idle relayed WebSockets, "
            f"RSS {reading.rss_before / 2**20:,.1f} → {reading.rss_after / 2**20:,.1f} MiB, "
            f"{reading.kib_per_socket:,.1f} KiB each",
            flush=True,
        )
    figures = [r.kib_per_socket for r in readings]
    print(f"median {statistics.median(figures):,.1f} KiB, worst {max(figures):,.1f} KiB per socket")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
