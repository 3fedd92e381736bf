"""Serves one of the benchmark's ASGI apps on the same uvicorn stack as `meetgate serve`.

`python -m bench.serve {bare,framework,upstream} PORT`: one process, one worker, uvicorn's
access log off and the rest of the options `gateway.cli` passes, served the way `gateway.cli`
serves (awaiting `Server.serve()` under `asyncio.run`, on uvloop's event loop when uvloop is
installed), so a baseline differs from Meetgate only in the app it runs.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from bench import bare, framework, upstream
from gateway.settings import LimitSettings

APPS: dict[str, ASGIApp] = {"bare": bare.app, "framework": framework.app, "upstream": upstream.app}


def meetgate_server_options() -> dict[str, Any]:
    """The options `meetgate serve` gives uvicorn (gateway/cli.py), with default limits."""
    limits = LimitSettings()
    return {
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "ws_max_size": limits.max_websocket_message_bytes,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }


def use_meetgates_event_loop() -> str:
    """Choose the event loop `meetgate serve` chooses (gateway/cli.py); its name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio's"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop's"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    config = uvicorn.Config(
        APPS[args.app],
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        **meetgate_server_options(),
    )
    use_meetgates_event_loop()
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
