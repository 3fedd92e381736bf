"""The processes under test: upstream, baselines (bench's own and nginx), redis-server, prosody and
`meetgate serve`, each on free loopback ports, pinned to the server CPUs (unless asked not to),
and stopped by PID when the run ends."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench import nginx
from bench.upstream import RELAYED_ENDPOINT
from tests.fixtures.gateway_server import GENEROUS_LIMITS, write_config
from tests.fixtures.processes import free_port, port_open, start_process, stop_process, wait_until
from tests.fixtures.prosody import DOMAIN, MUC_DOMAIN, prosody_config

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


def raise_open_files(needed: int) -> int:
    """Raise this process's soft limit on open files to at least `needed` (processes started
    afterwards inherit it), and its hard limit too where it is lower and the process may
    (root); the limit now in force. RuntimeError if the hard limit stays lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            except (ValueError, OSError) as exc:
                raise RuntimeError(
                    f"this needs {needed} open files but the hard limit is {hard} "
                    "(ulimit -Hn), and this process may not raise it"
                ) from exc
            return needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


def open_files_up_to(needed: int) -> int:
    """Raise this process's limit on open files toward `needed`, as far as the hard limit
    allows (raising that too where the process may); the soft limit now in force."""
    with contextlib.suppress(RuntimeError):
        return raise_open_files(needed)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


def redis_commands_processed(url: str) -> int:
    """The commands a redis-server has processed since it started (INFO stats), asked over a
    socket of its own (the benchmark's only Redis call: a client library adds nothing here)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 5) as sock:
        sock.sendall(b"INFO stats\r\n")
        reply = b""
        # A bulk string: `$<length>\r\n<text>\r\n`.
        while b"\r\n" not in reply or len(reply) < _bulk_end(reply):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"{url} closed the connection during INFO")
            reply += chunk
    for line in reply.decode("latin-1").splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError(f"{url} reported no total_commands_processed")


def _bulk_end(reply: bytes) -> int:
    head, _, _ = reply.partition(b"\r\n")
    if not head.startswith(b"$"):
        raise RuntimeError(f"unexpected reply to INFO: {head[:80]!r}")
    return len(head) + 2 + int(head[1:]) + 2


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "redis-server absent"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    version = next((f for f in done.stdout.split() if f.startswith("v=")), "v=?")
    return f"redis-server {version.removeprefix('v=')}"


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


@dataclass(frozen=True, slots=True)
class Prosody:
    http_url: str
    domain: str
    muc_domain: str
    pid: int

    def room_jid(self, room: str) -> str:
        return f"{room}@{self.muc_domain}"


def _prosody_serving(port: int) -> bool:
    """Whether prosody's WebSocket and BOSH endpoints answer: its HTTP port opens before
    mod_websocket and mod_bosh have registered their paths."""
    for path in ("/xmpp-websocket", "/http-bind"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", path)
            if connection.getresponse().status != 200:
                return False
        except OSError:
            return False
        finally:
            connection.close()
    return True


class Servers:
    """Starts processes into `workdir`; `close()` (or leaving the `with`) stops them all.

    Starting returns at once, so that several servers boot side by side; `wait_ready()` waits
    until every one started so far listens on its ports.
    """

    def __init__(
        self, workdir: Path, cpus: set[int] | None, every_cpu: set[int] | None = None
    ) -> None:
        self._workdir = workdir
        self._cpus = cpus
        # What an unpinned server may use: a process inherits its parent's mask, and the run
        # pins itself to the load generator's CPU, so "not pinned" must be said, not assumed.
        self._every_cpu = every_cpu
        self._stack = contextlib.ExitStack()
        self._starting: list[tuple[str, Callable[[], bool]]] = []
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

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
        serving: Callable[[], bool] | None = None,
        cwd: Path = ROOT,
        pinned: bool = True,
    ) -> int:
        log = self._workdir / f"{name}.log"
        proc = start_process(args, log, env=env, cwd=cwd)
        self._stack.callback(stop_process, proc)
        self._processes[proc.pid] = proc
        if self._cpus is not None and pinned:
            pin(proc.pid, self._cpus)
        elif not pinned and self._every_cpu is not None:
            pin(proc.pid, self._every_cpu)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{log.read_text(errors='replace')}")
            return all(port_open(port) for port in ports) and (serving is None or serving())

        self._starting.append((name, ready))
        return proc.pid

    def wait_ready(self, timeout: float = 30) -> None:
        while self._starting:
            name, ready = self._starting.pop(0)
            wait_until(ready, timeout=timeout, what=name)

    def stop(self, pid: int) -> None:
        """Stop one process started here before the others (it is not stopped twice)."""
        stop_process(self._processes[pid])

    def kill(self, pid: int) -> None:
        """Kill one process started here (and its group) with SIGKILL, as a crash would, and
        return once it is gone; it is not stopped again at the end."""
        proc = self._processes[pid]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def bench_app(self, app: str, max_connections: int | None = None) -> str:
        """`bench.serve`'s `app` ("bare", "framework" or "upstream"), holding up to
        `max_connections` where given; its base URL."""
        port = free_port()
        args = [sys.executable, "-m", "bench.serve", app, str(port)]
        if max_connections is not None:
            args += ["--max-connections", str(max_connections)]
        self._start(f"{app}-{port}", args, (port,))
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

    def nginx_static(self, *, pinned: bool = True) -> str:
        """An nginx serving the upstream's files (bench/nginx.py); its base URL. `pinned`
        false leaves it on every CPU."""
        port = free_port()
        workdir = self._workdir / f"nginx-static-{port}"
        config = nginx.static_config(workdir, port)
        self._start(
            f"nginx-static-{port}", nginx.command(config), (port,), cwd=workdir, pinned=pinned
        )
        return f"http://127.0.0.1:{port}"

    def nginx_proxy(self, upstream: str) -> str:
        """An nginx passing every request to `upstream`, WebSockets included (bench/nginx.py);
        its base URL."""
        port = free_port()
        workdir = self._workdir / f"nginx-proxy-{port}"
        config = nginx.proxy_config(workdir, port, upstream)
        self._start(f"nginx-proxy-{port}", nginx.command(config), (port,), cwd=workdir)
        return f"http://127.0.0.1:{port}"

    def prosody(self) -> Prosody:
        """A prosody of this run's own, configured as the tests' (tests/fixtures/prosody.py:
        WebSocket and BOSH, stream management with a 60 s hibernation, a MUC, anonymous
        logins), but logging warnings only: its debug log would cost it a write per stanza."""
        binary = shutil.which("prosody")
        if binary is None:
            raise RuntimeError("prosody is not installed (apt-get install -y prosody)")
        workdir = self._workdir / "prosody"
        for sub in ("data", "certs"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        port = free_port()
        text = prosody_config(workdir, port).replace('min = "debug"', 'min = "warn"')
        config = workdir / "prosody.cfg.lua"
        config.write_text(text, encoding="utf-8")
        pid = self._start(
            "prosody",
            [binary, "--config", str(config), "-F"],
            (port,),
            serving=lambda: _prosody_serving(port),
            cwd=workdir,
        )
        return Prosody(
            http_url=f"http://127.0.0.1:{port}", domain=DOMAIN, muc_domain=MUC_DOMAIN, pid=pid
        )

    def gateway(
        self,
        name: str,
        *,
        upstream: str,
        store_url: str,
        signalling: str | None = None,
        env: dict[str, str] | None = None,
        top: str = "",
        rates: str = "",
        pinned: bool = True,
        public_url: str | None = None,
    ) -> Gateway:
        """`meetgate serve` with a minimal config on `store_url` in front of `upstream` (and of
        prosody at `signalling`, if given). `env` (GATEWAY_ENV unless given) overrides the
        file; `top` is TOML before any table (`trusted_proxies`), `rates` replaces the tests'
        generous `[rates]` and `[challenge]` tables. `pinned` false leaves it on every CPU (a
        gateway with several workers). `public_url` (else its own listener) is the address
        attendees use, a TLS front's."""
        port, admin_port = free_port(), free_port()
        config = self._workdir / f"{name}.toml"
        token = write_config(
            config,
            port=port,
            admin_port=admin_port,
            upstream=upstream,
            signalling_upstream=signalling,
            store_url=store_url,
            xmpp_domain=DOMAIN,
            extra=rates or GENEROUS_LIMITS,
            top=top,
            jitsi=f'relayed_endpoints = ["{RELAYED_ENDPOINT}"]',
        )
        if public_url is not None:
            text = config.read_text(encoding="utf-8")
            text = re.sub(r'(?m)^public_url = ".*"$', f'public_url = "{public_url}"', text)
            config.write_text(text, encoding="utf-8")
        args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        env = GATEWAY_ENV if env is None else env
        pid = self._start(name, args, (port, admin_port), env=env, pinned=pinned)
        return Gateway(
            url=f"http://127.0.0.1:{port}",
            admin_url=f"http://127.0.0.1:{admin_port}",
            admin_token=token,
            pid=pid,
        )
