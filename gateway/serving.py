"""One process, two servers: the gate and the admin API, started and stopped together.

Start: every listening socket is bound before either server runs, so a taken port (or a store
that must answer and does not) ends the start with one message and nothing listening. Stop
(SIGTERM or SIGINT): the gate answers new requests 503, hands its relayed WebSockets back to
their browsers (they resume through another replica), both servers close their listeners, what
is in flight finishes or is ended, and the process exits within `[listen] shutdown_seconds`.

Both servers are Meetgate's own (gateway/edge/server.py), so the signals, the order of the stop
and its deadline are all this module's: the gate's WebSockets end with their XMPP streams closed
before the listener closes, and the process exits with 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence

from gateway.edge.server import BACKLOG, HttpServer
from gateway.errors import StoreUnavailable
from gateway.proxy.gate import Gate
from gateway.store import Store
from gateway.store.health import store_address

log = logging.getLogger("meetgate")

# After the stop's deadline, this long for the rest (the store's and the upstreams' connections
# to close) before the process ends regardless.
EXIT_MARGIN_SECONDS = 5.0
# The in-flight requests are ended this long before the stop's deadline (at most a quarter of
# it), so they are answered before the server's own deadline would cancel them as failures.
CUT_MARGIN_SECONDS = 1.0


class StartFailure(Exception):
    """The process cannot start; the message says why, naming the setting."""


def show_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int, setting: str, *, reuse_port: bool = False) -> list[socket.socket]:
    """Sockets bound to every address `host` names (as asyncio's create_server binds them), not
    yet listening. StartFailure, naming `setting`, if one cannot be bound. With `reuse_port`,
    several such sockets of this user share the port (gateway/workers.py)."""
    where = show_address(host, port)
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartFailure(f"cannot listen on {where} ({setting}): {exc.strerror}") from exc
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in found))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            # A restart must not wait for the old process's connections in TIME_WAIT; a port
            # another process listens on is refused all the same.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        close(sockets)
        raise StartFailure(f"cannot listen on {where} ({setting}): {exc.strerror or exc}") from exc
    return sockets


def listen(sockets: Sequence[socket.socket], setting: str) -> None:
    """Start listening on bound sockets (StartFailure if another process took a port between
    the bind and now)."""
    for sock in sockets:
        try:
            sock.listen(BACKLOG)
        except OSError as exc:
            host, port = sock.getsockname()[:2]
            raise StartFailure(
                f"cannot listen on {show_address(host, port)} ({setting}): {exc.strerror or exc}"
            ) from exc


def close(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


async def require_store(store: Store, url: str) -> None:
    """StartFailure unless the store answers (`[store] require_at_start`)."""
    try:
        await store.ping()
    except StoreUnavailable as exc:
        raise StartFailure(
            f"the store at {store_address(url)} does not answer, and [store] require_at_start"
            " is true"
        ) from exc


async def run(
    gate: Gate,
    public: HttpServer,
    gate_sockets: list[socket.socket],
    admin: HttpServer,
    admin_sockets: list[socket.socket],
    *,
    shutdown_seconds: float,
) -> None:
    """Serve the gate and the admin API on their listening sockets until SIGTERM or SIGINT, then
    stop within `shutdown_seconds` (a second signal stops at once)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    forced = False
    # The join attempts the gate knows it refuses are answered by the server as soon as their
    # head is read, without an ASGI call (HttpServer.refuse).
    public.refuse = gate.refuse_known

    def on_signal() -> None:
        nonlocal forced
        if stop.is_set():
            # A second signal: whatever is left is ended now.
            forced = True
            gate.cut_in_flight()
            public.abort()
            admin.abort()
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal)
    try:
        try:
            await public.start(gate_sockets)
            await admin.start(admin_sockets)
        except OSError as exc:
            raise StartFailure(f"cannot serve: {exc.strerror or exc}") from exc
        await stop.wait()
        deadline = loop.time() + shutdown_seconds
        _exit_at_the_latest(shutdown_seconds + EXIT_MARGIN_SECONDS)
        # The evidence queued is written out beside the rest of the stop, by its deadline.
        draining = asyncio.create_task(
            gate.drain_evidence(max(shutdown_seconds - CUT_MARGIN_SECONDS, 0.0))
        )
        admin.close_listeners()
        # Until the listener is closed (once the sockets are handed over), whatever still
        # comes is told 503.
        gate.stop_accepting()
        handed = await gate.hand_over()
        public.close_listeners()
        log.info("stopping: %d WebSocket(s) handed over to other replicas", handed)
        margin = min(CUT_MARGIN_SECONDS, max(deadline - loop.time(), 0.0) / 4)
        cutting = loop.call_at(deadline - margin, _cut, gate)
        try:
            if forced:
                deadline = loop.time()
            await asyncio.gather(public.shutdown(deadline), admin.shutdown(deadline))
        finally:
            cutting.cancel()
            if forced:
                draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await draining
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


def _exit_at_the_latest(seconds: float) -> None:
    """The stop's last resort: whatever may hang after the deadline (a store connection that
    never closes, an upstream that never answers its close), the process ends this many seconds
    from now, from a thread of its own so that even a blocked event loop cannot hold it."""

    def end() -> None:
        log.error("stopping: still running %.0f s after the stop began; exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()


def _cut(gate: Gate) -> None:
    cut = gate.cut_in_flight()
    if cut:
        log.info("stopping: %d request(s) still in flight ended at the deadline", cut)
