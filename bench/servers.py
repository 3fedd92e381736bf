"""The processes under test: upstream, bare baseline, redis-server and `meetgate serve`, each on
free loopback ports, pinned to the server cores, and stopped by PID when the run ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.gateway_server import write_config
from tests.fixtures.processes import free_port, port_open, start_process, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent


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


class Servers:
    """Starts processes into `workdir`; `close()` (or leaving the `with`) stops them all."""

    def __init__(self, workdir: Path, cpus: set[int] | None) -> None:
        self._workdir = workdir
        self._cpus = cpus
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def _start(self, name: str, args: list[str], ports: tuple[int, ...]) -> None:
        log = self._workdir / f"{name}.log"
        proc = start_process(args, log, cwd=ROOT)
        self._stack.callback(stop_process, proc)
        if self._cpus is not None:
            pin(proc.pid, self._cpus)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{log.read_text(errors='replace')}")
            return all(port_open(port) for port in ports)

        wait_until(ready, timeout=30, what=name)

    def bench_app(self, app: str) -> str:
        """`bench.serve`'s `app` ("bare" or "upstream"); its base URL."""
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
        self._start(name, args, (port, admin_port))
        return Gateway(
            url=f"http://127.0.0.1:{port}",
            admin_url=f"http://127.0.0.1:{admin_port}",
            admin_token=token,
        )


def run_quietly(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout
