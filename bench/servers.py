"""The processes under test: upstream, baselines, redis-server and `meetgate serve`, each on free
loopback ports, pinned to the server CPUs, and stopped by PID when the run ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.gateway_server import write_config
from tests.fixtures.processes import free_port, port_open, start_process, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
RATE_KEYS = ("address", "network", "room", "identity", "invite", "gate")
GATEWAY_ENV = {
    # Admissions live 30 minutes instead of 12 hours: a Redis this run did not start keeps the
    # revoked admissions of the run's deleted room only that long (delete_room keeps their TTL).
    "MEETGATE_ADMISSION__TTL_SECONDS": "1800",
    # All the load comes from one address into one room: the limits go to their maximum and
    # proof-of-work off, so that the run measures the work of a join, not a 429. The limiter
    # still charges every attempt, so its cost is in the figures.
    **{f"MEETGATE_RATES__{key.upper()}__PER_MINUTE": "10000000" for key in RATE_KEYS},
    **{f"MEETGATE_RATES__{key.upper()}__BURST": "1000000" for key in RATE_KEYS},
    "MEETGATE_CHALLENGE__MODE": "off",
}


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread a process has; threads it starts later inherit the mask."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


@dataclass(frozen=True, slots=True)
class Gateway:
    url: str
    admin_url: str
    admin_token: str
    pid: int


class Servers:
    """Starts processes into `workdir`; `close()` (or leaving the `with`) stops them all.

    Starting returns at once, so that several servers boot side by side; `wait_ready()` waits
    until every one started so far listens on its ports.
    """

    def __init__(self, workdir: Path, cpus: set[int] | None) -> None:
        self._workdir = workdir
        self._cpus = cpus
        self._stack = contextlib.ExitStack()
        self._starting: list[tuple[str, Callable[[], bool]]] = []

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def _start(
        self,
        name: str,
        args: list[str],
        ports: tuple[int, ...],
        env: dict[str, str] | None = None,
    ) -> int:
        log = self._workdir / f"{name}.log"
        proc = start_process(args, log, env=env, cwd=ROOT)
        self._stack.callback(stop_process, proc)
        if self._cpus is not None:
            pin(proc.pid, self._cpus)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{log.read_text(errors='replace')}")
            return all(port_open(port) for port in ports)

        self._starting.append((name, ready))
        return proc.pid

    def wait_ready(self, timeout: float = 30) -> None:
        while self._starting:
            name, ready = self._starting.pop(0)
            wait_until(ready, timeout=timeout, what=name)

    def bench_app(self, app: str) -> str:
        """`bench.serve`'s `app` ("bare", "framework" or "upstream"); its base URL."""
        port = free_port()
        self._start(app, [sys.executable, "-m", "bench.serve", app, str(port)], (port,))
        return f"http://127.0.0.1:{port}"

    def redis(self) -> str:
        """A redis-server of this run's own, persisting nothing; its URL."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self._workdir)]
        self._start("redis-server", args, (port,))
        return f"redis://127.0.0.1:{port}/0"

    def gateway(self, name: str, *, upstream: str, store_url: str) -> Gateway:
        """`meetgate serve` with a minimal config on `store_url` in front of `upstream`."""
        port, admin_port = free_port(), free_port()
        config = self._workdir / f"{name}.toml"
        token = write_config(
            config,
            port=port,
            admin_port=admin_port,
            upstream=upstream,
            signalling_upstream=None,
            store_url=store_url,
        )
        args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        pid = self._start(name, args, (port, admin_port), env=GATEWAY_ENV)
        return Gateway(
            url=f"http://127.0.0.1:{port}",
            admin_url=f"http://127.0.0.1:{admin_port}",
            admin_token=token,
            pid=pid,
        )
