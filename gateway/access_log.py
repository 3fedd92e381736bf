"""One access-log line per request, with every secret in the path or query replaced.

uvicorn's own access log is off: it would print `?token=…` and `/j/<invite>` as they came.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("meetgate.access")

SECRET_PARAMETERS = re.compile(
    r"(?i)(^|&)(jwt|token|previd|code|state|session_state|id_token|access_token)=[^&]*"
)
SECRET_PATHS = re.compile(r"^/j/[^/]+")
# Asked once per static file by a TLS front doing static offload: a line each would be noise.
QUIET_PATHS = frozenset({"/_meetgate/forward-auth"})


def redact(path: str, query: str) -> str:
    path = SECRET_PATHS.sub("/j/[invite]", path)
    if not query:
        return path
    return f"{path}?{SECRET_PARAMETERS.sub(lambda m: f'{m[1]}{m[2]}=[redacted]', query)}"


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in QUIET_PATHS:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observe(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status == 0:
                status = 403
            await send(message)

        try:
            await self._app(scope, receive, observe)
        finally:
            # The gate marks the join attempts it refused before any other work: in a flood,
            # a line each would cost more than the refusal and bury everything else.
            if log.isEnabledFor(logging.INFO) and not scope.get("state", {}).get("quiet"):
                target = redact(scope["path"], scope.get("query_string", b"").decode("latin-1"))
                method = scope.get("method", "WS")
                elapsed_ms = (time.perf_counter() - started) * 1000
                rid = scope.get("state", {}).get("request_id", "-")
                log.info("%s %s %d %.1fms [%s]", method, target, status, elapsed_ms, rid)
