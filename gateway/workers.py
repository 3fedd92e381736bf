"""`meetgate serve` with `[listen] workers` > 1: one supervisor, several serving processes.

The supervisor binds every listening socket before any worker starts, so a taken port ends the
start with one message, as with one process. The gate's port is bound once per worker with
`SO_REUSEPORT`: the kernel spreads new connections over the workers' sockets, and a worker that
dies takes its socket with it (the supervisor keeps no copy, so no connection waits in a queue
nobody reads). The admin API is served by worker 0 alone (its socket is the supervisor's, so it
survives a restart of that worker); its `/metrics` are that worker's.

Each worker is the one-process server (gateway/serving.py) on its own event loop, store
connections and revocation subscriber: bans, limits, admissions and cuts are shared through the
store, which is why several workers need the Redis store (gateway/settings.py refuses the memory
store). A worker that ends is started again; one that exits with a failure status within its
first seconds ends the whole start (the failure is the configuration's, not bad luck). SIGTERM or
SIGINT is passed on to every worker once; each drains as one process does; the supervisor exits 0
when all have. A worker whose supervisor disappears (killed with -9) stops by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from gateway.serving import StartFailure, bind, close, listen

log = logging.getLogger("meetgate")

# A worker that ends with a failure status within this many seconds of its start failed to
# start.
START_SECONDS = 5.0
# A worker that ends by itself is started again, at most this many times a minute.
RESTARTS_PER_MINUTE = 10


# What a worker runs: its index, its gate sockets (one per address the host names), the admin
# API's sockets (worker 0 only), the supervisor's process id. Returns the process's exit status.
Worker = Callable[[int, list[socket.socket], list[socket.socket], int], int]


@dataclass
class _Supervisor:
    host: str
    port: int
    admin_sockets: list[socket.socket]
    run_worker: Worker
    stopping: bool = False
    children: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> index, start
    restarts: list[float] = field(default_factory=list)

    def start(self, index: int) -> None:
        sockets = bind(self.host, self.port, "[listen] host, port", reuse_port=True)
        try:
            listen(sockets, "[listen] host, port")
            pid = os.fork()
        except BaseException:
            close(sockets)
            raise
        if pid == 0:
            status = 1
            try:
                for number in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(number, signal.SIG_DFL)
                # Not the terminal's: Ctrl-C reaches the supervisor, which passes it on once.
                os.setpgid(0, 0)
                admin = self.admin_sockets if index == 0 else []
                if index != 0:
                    close(self.admin_sockets)
                status = self.run_worker(index, sockets, admin, os.getppid())
            except StartFailure as exc:
                log.error("worker %d: %s", index, exc)
                status = 2
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        close(sockets)
        self.children[pid] = (index, time.monotonic())

    def signal_all(self, number: int) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def on_signal(self, number: int, frame: FrameType | None) -> None:
        if self.stopping:
            # A second signal: every worker ends what is left at once.
            self.signal_all(signal.SIGTERM)
            return
        self.stopping = True
        log.info("stopping %d worker(s)", len(self.children))
        self.signal_all(signal.SIGTERM)


def supervise(
    host: str, port: int, admin_sockets: list[socket.socket], workers: int, run_worker: Worker
) -> int:
    """Run `workers` workers until a stop signal; the process's exit status."""
    supervisor = _Supervisor(host, port, admin_sockets, run_worker)
    previous = {
        number: signal.signal(number, supervisor.on_signal)
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    status = 0
    try:
        for index in range(workers):
            supervisor.start(index)
        log.info("serving with %d workers", workers)
        while supervisor.children:
            try:
                pid, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid not in supervisor.children:
                continue
            index, started = supervisor.children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if supervisor.stopping:
                if code != 0:
                    status = 1
                continue
            now = time.monotonic()
            if code > 0 and now - started < START_SECONDS:
                # Ended by itself, early, with a failure status: the start failed (a signal,
                # kill -9 among them, is not the configuration's fault: it is started again).
                supervisor.stopping = True
                supervisor.signal_all(signal.SIGTERM)
                raise StartFailure(f"worker {index} did not start (status {code}); see above")
            supervisor.restarts = [t for t in supervisor.restarts if now - t < 60] + [now]
            if len(supervisor.restarts) > RESTARTS_PER_MINUTE:
                supervisor.stopping = True
                supervisor.signal_all(signal.SIGTERM)
                log.error("workers keep ending (%d in a minute): stopping", RESTARTS_PER_MINUTE)
                status = 1
                continue
            log.warning("worker %d ended by itself (status %d): starting it again", index, code)
            supervisor.start(index)
    finally:
        if supervisor.children:
            supervisor.signal_all(signal.SIGTERM)
            for pid in list(supervisor.children):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        for number, handler in previous.items():
            signal.signal(number, handler)
    return status
