"""What the figures were measured on: cores, CPU model, Python and the server stack's versions."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# What `meetgate serve` runs on: its own server (gateway/edge/server.py) parses HTTP with
# httptools (llhttp, also the upstream client's parser) and WebSocket frames with websockets,
# on uvloop.
PACKAGES = ("websockets", "uvloop", "httptools", "starlette", "fastapi", "httpx")
# Served only as a comparison (`python -m bench.serve … --server uvicorn`).
COMPARED = ("uvicorn",)


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    cpu_model: str
    python: str
    kernel: str
    stack: str

    def describe(self) -> str:
        return (
            f"{self.cores} cores ({self.cpu_model}), Python {self.python}, "
            f"Linux {self.kernel}; {self.stack}"
        )


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown CPU"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def this_machine(tools: str) -> Machine:
    """This machine, with `tools` (the load generator's and the reference servers' versions)
    named after the Python stack."""
    stack = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    compared = ", ".join(f"{name} {_version(name)}" for name in COMPARED)
    return Machine(
        cores=len(os.sched_getaffinity(0)),
        cpu_model=_cpu_model(),
        python=platform.python_version(),
        kernel=platform.release(),
        stack=f"{stack}; for comparison {compared}; {tools}",
    )


def busy_cpu_seconds() -> float:
    """CPU time processes have spent since boot, all of them on all CPUs.

    Interrupt time is left out: the kernel may account loopback traffic's softirq work there
    rather than to the processes that caused it, which would count this run's own traffic.
    """
    fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    user, nice, system = (int(f) for f in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (servers, wrk)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process, all its threads, from /proc/<pid>/stat (in
    clock ticks, so to 10 ms on most kernels)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # The command name, in parentheses, may hold spaces: count fields after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def process_rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
