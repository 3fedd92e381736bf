"""One access-log line per request, with every secret in the path or query replaced.

uvicorn's own access log is off: it would print `?token=…` and `/j/<invite>` as they came.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.proxy.gate import QUIET, REFUSED_ATTEMPT

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


# Refused join attempts logged in one second, at most; the rest are counted in one line.
REFUSED_LINES_PER_SECOND = 20


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._second = 0
        self._refused_lines = 0
        self._unlogged = 0

    def _sampled(self, state: dict[str, object]) -> bool:
        """Whether to write this request's line: yes, unless it is a refused join attempt
        beyond this second's budget (in a flood a line each would bury everything else and
        cost more than the refusal)."""
        if not state.get(REFUSED_ATTEMPT):
            return True
        second = int(time.monotonic())
        if second != self._second:
            if self._unlogged:
                log.info("%d more refused join attempts not logged", self._unlogged)
            self._second, self._refused_lines, self._unlogged = second, 0, 0
        if self._refused_lines >= REFUSED_LINES_PER_SECOND:
            self._unlogged += 1
            return False
        self._refused_lines += 1
        return True

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
            state = scope.get("state", {})
            if log.isEnabledFor(logging.INFO) and not state.get(QUIET) and self._sampled(state):
                target = redact(scope["path"], scope.get("query_string", b"").decode("latin-1"))
                method = scope.get("method", "WS")
                elapsed_ms = (time.perf_counter() - started) * 1000
                rid = scope.get("state", {}).get("request_id", "-")
                log.info("%s %s %d %.1fms [%s]", method, target, status, elapsed_ms, rid)
