"""Serves one of the benchmark's ASGI apps on the same server as `meetgate serve`.

`python -m bench.serve {bare,framework,upstream} PORT`: one process, Meetgate's own HTTP server
(gateway/edge/server.py) with the rules and limits `gateway.cli` gives it at their defaults,
served the way `gateway.cli` serves (under `asyncio.run`, on uvloop's event loop when uvloop is
installed), so a baseline differs from Meetgate only in the app it runs.

`--server uvicorn` serves the same app on uvicorn instead (its h11 protocol and the same limits,
as `meetgate serve` ran until December 2026), for the comparison in docs/performance.md; it runs
uvicorn's command, which the test extra installs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys

from starlette.types import ASGIApp

from bench import bare, framework, upstream
from gateway.edge.guard import Guarding, Rules
from gateway.edge.server import HttpServer, ServerLimits
from gateway.settings import LimitSettings

APPS: dict[str, ASGIApp] = {"bare": bare.app, "framework": framework.app, "upstream": upstream.app}


def meetgate_server(app: ASGIApp, max_connections: int | None = None) -> HttpServer:
    """The server `meetgate serve` runs the gate on (gateway/cli.py), with default limits but
    for `max_connections` (per address too), where given."""
    limits = LimitSettings()
    if max_connections is not None:
        limits = limits.model_copy(
            update={
                "max_connections": max_connections,
                "max_connections_per_address": max_connections,
            }
        )
    return HttpServer(
        app,
        guarding=Guarding(Rules.of(limits)),
        limits=ServerLimits(
            max_header_bytes=limits.max_header_bytes,
            max_websocket_message_bytes=limits.max_websocket_message_bytes,
        ),
    )


def use_meetgates_event_loop() -> str:
    """Choose the event loop `meetgate serve` chooses (gateway/cli.py); its name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio's"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop's"


async def _serve(app: ASGIApp, port: int, max_connections: int | None) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await meetgate_server(app, max_connections).start([sock])
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("port", type=int)
    parser.add_argument("--server", choices=("meetgate", "uvicorn"), default="meetgate")
    parser.add_argument(
        "--max-connections",
        type=int,
        help="client connections held at once, from one address too (the default [limits]' "
        "4,096 and 256 otherwise): the upstream of thousands of relayed WebSockets",
    )
    args = parser.parse_args()
    if args.server == "uvicorn":
        limits = LimitSettings()
        command = [
            sys.executable, "-m", "uvicorn", f"bench.{args.app}:app",
            "--host", "127.0.0.1", "--port", str(args.port), "--http", "h11",
            "--lifespan", "off", "--no-access-log", "--no-server-header", "--no-proxy-headers",
            "--log-level", "warning", "--loop", "uvloop",
            "--ws-max-size", str(limits.max_websocket_message_bytes),
            "--h11-max-incomplete-event-size", str(limits.max_header_bytes),
        ]  # fmt: skip
        os.execv(sys.executable, command)  # noqa: S606 (a fixed command, no shell)
    use_meetgates_event_loop()
    asyncio.run(_serve(APPS[args.app], args.port, args.max_connections))


if __name__ == "__main__":
    main()
