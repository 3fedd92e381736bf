"""How steady is this machine? The same slice of pure Python work, over and over on the server
CPU, first with the client CPU idle, then with wrk loading it against a bare endpoint there.

`python -m bench.jitter` prints each slice's median, p99 and slowest time. On a VM whose vCPU
is not always its own, the p99 of a fixed slice is well above its median: that much of any
tail latency measured here is the machine's, whatever the code does (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.load import ensure_wrk
from tests.fixtures.processes import free_port

# About 0.8 ms of arithmetic on the machine docs/performance.md describes: an event-loop pass.
SLICE_STEPS = 20_000


def one_slice() -> int:
    total = 0
    for i in range(SLICE_STEPS):
        total += i * i
    return total


def measure(seconds: float) -> str:
    durations = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        one_slice()
        durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    median = durations[len(durations) // 2]
    p99 = durations[int(len(durations) * 0.99)]
    slow = sum(1 for d in durations if d > 3 * median)
    return (
        f"{len(durations):,} slices: median {median:.3f} ms, p99 {p99:.3f} ms "
        f"({p99 / median:.1f}x), slowest {durations[-1]:.2f} ms, {slow} over 3x the median"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("needs two CPUs: one to measure on, one to load", file=sys.stderr)
        return 2
    client, server = cpus[0], cpus[-1]
    os.sched_setaffinity(0, {server})
    print(f"client CPU {client} idle: {measure(args.seconds)}")
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-m", "bench.serve", "bare", str(port)])
    try:
        os.sched_setaffinity(bare.pid, {client})
        time.sleep(2)
        seconds = int(args.seconds) + 2
        command = ["taskset", "-c", str(client), ensure_wrk(), "-t1", "-c32", f"-d{seconds}s"]
        command.append(f"http://127.0.0.1:{port}/")
        wrk = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        print(f"client CPU {client} loaded by wrk: {measure(args.seconds)}")
        wrk.wait()
    finally:
        bare.kill()
        bare.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
