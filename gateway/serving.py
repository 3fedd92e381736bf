"""One process, two servers: the gate and the admin API, started and stopped together.

Start: every listening socket is bound before either server runs, so a taken port (or a store
that must answer and does not) ends the start with one message and nothing listening. Stop
(SIGTERM or SIGINT): the gate answers new requests 503, hands its relayed WebSockets back to
their browsers (they resume through another replica), both servers close their listeners, what
is in flight finishes or is ended, and the process exits within `[listen] shutdown_seconds`.

uvicorn's own signal handling is left out (`capture_signals`): with two servers in one process it
would stop only the one started last, close the gate's WebSockets with a bare 1012 before the
gate could end their XMPP streams, and raise the signal again at exit, ending the process by
SIGTERM (status 143) rather than with 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Generator, Sequence

import uvicorn

from gateway.errors import StoreUnavailable
from gateway.proxy.gate import Gate
from gateway.store import Store
from gateway.store.health import store_address

log = logging.getLogger("meetgate")

# uvicorn's default listen backlog.
BACKLOG = 2048
# The in-flight requests are ended this long before the stop's deadline (at most a quarter of
# it), so they are answered before the server's own deadline would cancel them as failures.
CUT_MARGIN_SECONDS = 1.0


class StartFailure(Exception):
    """The process cannot start; the message says why, naming the setting."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The process's signals are `run`'s (see the module's docstring).
        yield


def show_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int, setting: str) -> list[socket.socket]:
    """Sockets bound to every address `host` names (as asyncio's create_server binds them), not
    yet listening. StartFailure, naming `setting`, if one cannot be bound."""
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
    gate_config: uvicorn.Config,
    gate_sockets: list[socket.socket],
    admin_config: uvicorn.Config,
    admin_sockets: list[socket.socket],
    *,
    shutdown_seconds: float,
) -> None:
    """Serve the gate and the admin API on their listening sockets until SIGTERM or SIGINT, then
    stop within `shutdown_seconds` (a second signal stops at once). StartFailure if either
    server ends by itself (the other is stopped too)."""
    loop = asyncio.get_running_loop()
    public, admin = _Server(gate_config), _Server(admin_config)
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            # A second signal: whatever is left is ended now.
            gate.cut_in_flight()
            public.force_exit = admin.force_exit = True
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal)
    serving = {
        asyncio.create_task(public.serve(sockets=gate_sockets)): "the gate",
        asyncio.create_task(admin.serve(sockets=admin_sockets)): "the admin API",
    }
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        ended = [task for task in serving if task in done]
        if ended:
            public.should_exit = admin.should_exit = True
            await asyncio.wait(serving)
            failure = next((t.exception() for t in ended if t.exception() is not None), None)
            why = f": {failure}" if failure is not None else ""
            raise StartFailure(f"{serving[ended[0]]} stopped by itself{why}") from failure
        cutting = await _stop(gate, public, admin, loop.time() + shutdown_seconds)
        try:
            await asyncio.wait(serving)
        finally:
            cutting.cancel()
    finally:
        stopping.cancel()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


async def _stop(
    gate: Gate, public: uvicorn.Server, admin: uvicorn.Server, deadline: float
) -> asyncio.TimerHandle:
    """Begin the stop; returns the timer that ends what is still in flight before `deadline`."""
    loop = asyncio.get_running_loop()
    admin.should_exit = True
    # Until the server closes its listener (once the sockets are handed over), whatever still
    # comes is told 503.
    gate.stop_accepting()
    handed = await gate.hand_over()
    public.should_exit = True
    log.info("stopping: %d WebSocket(s) handed over to other replicas", handed)
    margin = min(CUT_MARGIN_SECONDS, max(deadline - loop.time(), 0.0) / 4)
    return loop.call_at(deadline - margin, _cut, gate)


def _cut(gate: Gate) -> None:
    cut = gate.cut_in_flight()
    if cut:
        log.info("stopping: %d request(s) still in flight ended at the deadline", cut)
