"""Meetgate's own HTTP server (gateway/edge/server.py) against uvicorn, on one machine:
requests/s, the slow-client rules on the wire, and memory per idle WebSocket.

    python -m bench.http_server throughput [--runs 5] [--seconds 10] [--before DIR]
    python -m bench.http_server slow-clients
    python -m bench.http_server idle-websockets [--count 1000] [--runs 3]

Every server is pinned to CPU 0 and the client to CPU 1 (`taskset`); the runs of the servers
compared are interleaved, and each run notes the 1-minute load average, since figures taken while
something else used the machine are not comparable. docs/design/http-server.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench.load import (
    GET_SCRIPT,
    REDEEM_SCRIPT,
    ensure_wrk,
    parse_result,
    wrk_command,
    wrk_version,
)
from bench.machine import (
    busy_cpu_seconds,
    own_cpu_seconds,
    process_cpu_seconds,
    process_rss_bytes,
    this_machine,
)
from bench.servers import ROOT, raise_open_files
from bench.upstream import ECHO_PATH
from tests.fixtures.processes import free_port, port_open, start_process, stop_process, wait_until

SERVER_CPU = "0"
CLIENT_CPU = "1"
CONNECTIONS = 32
WARM_UP_SECONDS = 2
UVICORN_OPTIONS = [
    "--host", "127.0.0.1", "--lifespan", "off", "--no-access-log", "--no-server-header",
    "--no-proxy-headers", "--log-level", "warning", "--loop", "uvloop",
]  # fmt: skip
# A probe that is still open this long says "open at" it.
PROBE_CAP_SECONDS = 40.0
BIG_HEADER_BYTES = 20 * 2**20
HALF_OPEN = 2000
LEGIT_ADDRESS = "127.0.0.2"
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n"
# A round of the throughput runs is measured again when other processes used more than this
# share of a core during one of its runs, or the 1-minute load average (this run's own server
# and wrk make about 1 of it) was above LOAD_LIMIT as one began; at most RETRIES times
# in all (`--retries`).
OTHERS_LIMIT = 0.10
LOAD_LIMIT = 1.5
RETRIES = 5
# Meetgate's server from the checkout `throughput --before` names.
BEFORE = "meetgate-before"


def _serve(app: str, port: int, server: str) -> list[str]:
    """The command serving bench `app` on `server`: "meetgate" and "uvicorn-h11" through
    bench/serve.py (as `meetgate serve` runs, and as it ran until December 2026), and
    "uvicorn-httptools", uvicorn's fastest protocol, which the gate never ran in the end."""
    if server == "uvicorn-httptools":
        return [
            sys.executable, "-m", "uvicorn", f"bench.{app}:app", "--port", str(port),
            "--http", "httptools", *UVICORN_OPTIONS,
        ]  # fmt: skip
    command = [sys.executable, "-m", "bench.serve", app, str(port)]
    return command + (["--server", "uvicorn"] if server == "uvicorn-h11" else [])


@contextlib.contextmanager
def _running(command: list[str], port: int, log: Path, cwd: Path = ROOT) -> Iterator[int]:
    """`command` pinned to the server CPU, run in `cwd` (the checkout whose `gateway` and
    `bench` it imports), until the block ends; its PID."""
    proc = start_process(["taskset", "-c", SERVER_CPU, *command], log, cwd=cwd)
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 30, what=command[2])
        if proc.poll() is not None:
            raise RuntimeError(f"{command} exited:\n{log.read_text(errors='replace')}")
        yield proc.pid
    finally:
        stop_process(proc)


def _load() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------ throughput


@dataclass(frozen=True, slots=True)
class Run:
    server: str
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    load_before: float
    load_after: float
    # CPU that processes other than this server and wrk used during the timed run, in cores.
    others: float
    # The server's own CPU time per response: what other processes' load changes least.
    cpu_us: float


def _wrk(wrk: str, url: str, seconds: int, script: Path, args: tuple[str, ...]) -> list[str]:
    command = wrk_command(
        wrk, url, seconds=seconds, connections=CONNECTIONS, script=script, script_args=args
    )
    return ["taskset", "-c", CLIENT_CPU, *command]


def _measure(
    wrk: str,
    app: str,
    server: str,
    seconds: int,
    workdir: Path,
    script: Path,
    checkout: Path | None = None,
) -> Run:
    port = free_port()
    url = f"http://127.0.0.1:{port}" + ("/j/bench" if app == "framework" else "/")
    args: tuple[str, ...] = ()
    if script == REDEEM_SCRIPT:
        tokens = workdir / "tokens"
        tokens.write_text("bench\n", encoding="utf-8")
        args = (str(tokens), f"http://127.0.0.1:{port}")
    # "meetgate-before": Meetgate's server as another checkout has it (`--before`).
    command = _serve(app, port, "meetgate" if server == BEFORE else server)
    cwd = checkout if server == BEFORE and checkout is not None else ROOT
    with _running(command, port, workdir / f"{server}.log", cwd) as pid:
        subprocess.run(
            _wrk(wrk, url, WARM_UP_SECONDS, script, args), capture_output=True, check=True
        )
        before = _load()
        cpu = (busy_cpu_seconds(), own_cpu_seconds(), process_cpu_seconds(pid))
        began = time.monotonic()
        done = subprocess.run(
            _wrk(wrk, url, seconds, script, args), capture_output=True, text=True, check=False
        )
        served = process_cpu_seconds(pid) - cpu[2]
        ours = own_cpu_seconds() - cpu[1] + served
        others = (busy_cpu_seconds() - cpu[0] - ours) / (time.monotonic() - began)
        after = _load()
    result = parse_result(url, done.stdout, done.stderr)
    # The redeem script counts every answer but a 303 as refused: there must be none.
    return Run(
        server=server,
        per_second=result.per_second,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.socket_errors + result.refused,
        load_before=before,
        load_after=after,
        others=max(0.0, others),
        cpu_us=served / max(result.requests, 1) * 1e6,
    )


def _noisy(run: Run) -> bool:
    return run.others > OTHERS_LIMIT or run.load_before > LOAD_LIMIT


def throughput(
    runs: int, seconds: int, apps: list[str], retries: int, before: Path | None = None
) -> None:
    """Each server of a round once, in turn; with `before`, a checkout of an earlier commit
    (`git archive <commit> | tar -x -C DIR`), its Meetgate server too, as "meetgate-before"."""
    wrk = ensure_wrk()
    servers: tuple[str, ...] = ("meetgate", "uvicorn-h11", "uvicorn-httptools")
    if before is not None:
        servers = (BEFORE, *servers)
    scripts = {"bare": GET_SCRIPT, "framework": REDEEM_SCRIPT}
    with tempfile.TemporaryDirectory(prefix="meetgate-http-server-") as tmp:
        for app in apps:
            taken: dict[str, list[Run]] = {server: [] for server in servers}
            number = dropped = 0
            while number < runs:
                # One round: each server once. A round where something else took the machine is
                # measured again (at most RETRIES times in all).
                found = [
                    _measure(wrk, app, server, seconds, Path(tmp), scripts[app], before)
                    for server in servers
                ]
                retry = any(_noisy(run) for run in found) and dropped < retries
                for run in found:
                    print(
                        f"{app} round {number + 1} {run.server}: {run.per_second:,.0f}/s, "
                        f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, errors {run.errors}, "
                        f"server CPU {run.cpu_us:.1f} µs a response, "
                        f"load {run.load_before:.2f}→{run.load_after:.2f}, other processes "
                        f"{run.others:.0%} of a core{' (round dropped)' if retry else ''}",
                        flush=True,
                    )
                    taken[run.server].append(run)
                if retry:
                    dropped += 1
                    for server in servers:
                        taken[server].pop()
                    continue
                number += 1
            for server, kept in taken.items():
                rates = [run.per_second for run in kept]
                print(
                    f"{app} {server}: median {statistics.median(rates):,.0f}/s, worst "
                    f"{min(rates):,.0f}/s, best {max(rates):,.0f}/s; p99 median "
                    f"{statistics.median(run.p99_ms for run in kept):.2f} ms; server CPU median "
                    f"{statistics.median(run.cpu_us for run in kept):.1f} µs a response; "
                    f"{sum(_noisy(run) for run in kept)} noisy run(s) kept",
                    flush=True,
                )


# ------------------------------------------------------------------ slow clients


def _connect(port: int, source: str | None = None) -> socket.socket:
    sock = socket.socket()
    if source is not None:
        sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def _until_closed(sock: socket.socket, started: float, cap: float) -> tuple[float, bytes]:
    """Seconds from `started` until the server ends the connection (or `cap`), and what it sent."""
    got = b""
    while True:
        left = started + cap - time.monotonic()
        if left <= 0:
            return cap, got
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return cap, got
        except ConnectionResetError:
            return time.monotonic() - started, got
        if not chunk:
            return time.monotonic() - started, got
        got += chunk


def _said(seconds: float, got: bytes) -> str:
    status = got.split(b"\r\n", 1)[0].decode("latin-1") if got else "nothing sent"
    if seconds >= PROBE_CAP_SECONDS:
        return f"open at {PROBE_CAP_SECONDS:.0f} s ({status})"
    return f"closed after {seconds:.1f} s ({status})"


def probe_half_head(port: int) -> str:
    """(a) A head sent in part, then nothing."""
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(HALF_HEAD)
        return _said(*_until_closed(sock, started, PROBE_CAP_SECONDS))


def probe_trickle(port: int) -> str:
    """(b) A head trickled one byte a second."""
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(HALF_HEAD + b"X-Trickle: ")
        while time.monotonic() - started < PROBE_CAP_SECONDS:
            # A byte a second, until the server answers or ends the connection.
            if select.select([sock], [], [], 1.0)[0]:
                break
            try:
                sock.send(b"a")
            except OSError:
                break
        return _said(*_until_closed(sock, started, 0.5 + time.monotonic() - started))


def probe_big_header(port: int) -> str:
    """(c) One header field of 20 MiB, written as fast as the socket takes it: the answer, and how
    much the socket accepted (kernel buffers included: an upper bound of what the server read)."""
    with _connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        sent = 0
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            while sent < BIG_HEADER_BYTES:
                sent += sock.send(chunk)
        _, got = _until_closed(sock, time.monotonic(), 5)
    status = got.split(b"\r\n", 1)[0].decode("latin-1") if got else "no answer"
    return f"{status}, {sent / 2**20:.2f} MiB accepted by the socket"


def probe_idle(port: int, path: str) -> str:
    """(e) One complete request, its answer read, then idle."""
    with _connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while b"\r\n\r\n" not in got:
            got += sock.recv(65536)
        started = time.monotonic()
        seconds, _ = _until_closed(sock, started, PROBE_CAP_SECONDS)
    status = got.split(b"\r\n", 1)[0].decode("latin-1")
    return _said(seconds, status.encode())


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _legit_get(port: int, path: str) -> str:
    started = time.perf_counter()
    try:
        with _connect(port, LEGIT_ADDRESS) as sock:
            sock.settimeout(5)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while b"\r\n" not in got:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
    except OSError as exc:
        return f"failed after {(time.perf_counter() - started) * 1000:.1f} ms ({exc})"
    status = got.split(b"\r\n", 1)[0].decode("latin-1") if got else "nothing"
    return f"{status} in {(time.perf_counter() - started) * 1000:.1f} ms"


def probe_half_open(port: int, path: str) -> list[str]:
    """(d) HALF_OPEN connections from 127.0.0.1, each sending a half head: how many are held at
    3 s and at 15 s, and a GET from 127.0.0.2 meanwhile."""
    sockets: list[socket.socket] = []
    refused = 0
    started = time.monotonic()
    try:
        for _ in range(HALF_OPEN):
            try:
                sock = _connect(port)
                sockets.append(sock)
                sock.sendall(HALF_HEAD)
            except OSError:
                refused += 1
        opened = time.monotonic() - started
        time.sleep(max(0.0, 3 - (time.monotonic() - started)))
        held_3 = sum(_still_open(sock) for sock in sockets)
        legit = _legit_get(port, path)
        time.sleep(max(0.0, 15 - (time.monotonic() - started)))
        held_15 = sum(_still_open(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    return [
        f"{HALF_OPEN:,} opened in {opened:.2f} s ({refused} refused at connect)",
        f"held at 3 s: {held_3:,}; at 15 s: {held_15:,}",
        f"GET {path} from {LEGIT_ADDRESS} at 3 s: {legit}",
    ]


def slow_clients(port: int | None, path: str) -> None:
    raise_open_files(HALF_OPEN * 2 + 1024)
    with contextlib.ExitStack() as stack:
        if port is None:
            port = free_port()
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meetgate-slow-")))
            # No config file (none in its working directory): `meetgate serve`'s trial run, on
            # the memory store, on ports of its own.
            env = {"MEETGATE_LISTEN__PORT": str(port), "MEETGATE_ADMIN__PORT": str(free_port())}
            command = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "gateway.cli", "serve"]
            proc = start_process(command, tmp / "serve.log", env=env, cwd=tmp)
            stack.callback(stop_process, proc)
            chosen = port
            wait_until(lambda: port_open(chosen) or proc.poll() is not None, 30, what="meetgate")
            if proc.poll() is not None:
                raise RuntimeError((tmp / "serve.log").read_text(errors="replace"))
        print(f"load average {_load():.2f}", flush=True)
        target = port
        found: dict[str, str] = {}
        # (a), (b) and (e) wait on the server's clocks: run side by side.
        probes: dict[str, Callable[[], str]] = {
            "(a) half head": lambda: probe_half_head(target),
            "(b) 1 B/s trickle": lambda: probe_trickle(target),
            "(e) idle keep-alive": lambda: probe_idle(target, path),
        }
        threads = [
            threading.Thread(target=lambda n=name, p=probe: found.__setitem__(n, p()))
            for name, probe in probes.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name in probes:
            print(f"{name}: {found[name]}", flush=True)
        print(f"(c) 20 MiB header: {probe_big_header(port)}", flush=True)
        for line in probe_half_open(port, path):
            print(f"(d) {line}", flush=True)
        print(f"load average {_load():.2f}", flush=True)


# ------------------------------------------------------------------ idle WebSockets


async def _open_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket to the echo path, opened by hand: a client this small costs the measuring
    process little, so 10,000 of them fit beside the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    head = (
        f"GET {ECHO_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    writer.write(head.encode() + b"\r\n")
    answer = await reader.readuntil(b"\r\n\r\n")
    if not answer.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no WebSocket: {answer[:80]!r}")
    return reader, writer


async def _echoes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    mask = secrets.token_bytes(4)
    payload = b"ping"
    writer.write(
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )
    frame = await asyncio.wait_for(reader.readexactly(2 + len(payload)), 10)
    return frame[2:] == payload


async def _hold(port: int, pid: int, count: int) -> tuple[int, int]:
    # A first WebSocket, echoed and closed, so that what its first use loads is in `before`.
    reader, writer = await _open_websocket(port)
    if not await _echoes(reader, writer):
        raise RuntimeError("no echo")
    writer.close()
    await asyncio.sleep(0.5)
    before = process_rss_bytes(pid)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    gate = asyncio.Semaphore(100)

    async def one() -> None:
        async with gate:
            held.append(await _open_websocket(port))

    try:
        await asyncio.gather(*(one() for _ in range(count)))
        for reader, writer in held[:20]:
            if not await _echoes(reader, writer):
                raise RuntimeError("an idle WebSocket did not echo")
        await asyncio.sleep(1)
        after = process_rss_bytes(pid)
    finally:
        for _, writer in held:
            writer.close()
    return before, after


def idle_websockets(count: int, runs: int) -> None:
    # One end of each socket here, the other in the server (which inherits the limit).
    raise_open_files(count + 1024)
    servers = ("meetgate", "uvicorn-h11")
    with tempfile.TemporaryDirectory(prefix="meetgate-idle-ws-") as tmp:
        for number in range(runs):
            for server in servers:
                port = free_port()
                log = Path(tmp) / f"{server}.log"
                with _running(_serve("upstream", port, server), port, log) as pid:
                    load = _load()
                    before, after = asyncio.run(_hold(port, pid, count))
                print(
                    f"run {number + 1} {server}: {count:,} idle WebSockets, RSS "
                    f"{before / 2**20:.1f} → {after / 2**20:.1f} MiB, "
                    f"{(after - before) / count / 1024:.1f} KiB each, load {load:.2f}",
                    flush=True,
                )


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C, so the server being measured is stopped on the way out.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(prog="python -m bench.http_server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("throughput", help="bare and framework requests/s")
    speed.add_argument("--runs", type=int, default=5)
    speed.add_argument("--seconds", type=int, default=10)
    speed.add_argument("--apps", default="bare,framework", help="bare, framework or both")
    speed.add_argument("--retries", type=int, default=RETRIES, help="noisy rounds dropped at most")
    speed.add_argument("--before", type=Path, help="a checkout of an earlier commit whose "
                       "server runs in each round too, as meetgate-before")  # fmt: skip
    slow = commands.add_parser("slow-clients", help="the guard's rules on the wire")
    slow.add_argument("--port", type=int, help="a server already running on 127.0.0.1 (default: "
                      "start `meetgate serve` with its trial defaults)")  # fmt: skip
    slow.add_argument("--path", default="/_meetgate/health", help="what the legitimate GET asks")
    idle = commands.add_parser("idle-websockets", help="memory per idle WebSocket")
    idle.add_argument("--count", type=int, default=1000)
    idle.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {this_machine(wrk_version(ensure_wrk())).describe()}", flush=True)
    if args.command == "throughput":
        throughput(args.runs, args.seconds, args.apps.split(","), args.retries, args.before)
    elif args.command == "slow-clients":
        slow_clients(args.port, args.path)
    else:
        idle_websockets(args.count, args.runs)


if __name__ == "__main__":
    main()
