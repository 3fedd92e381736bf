"""One access-log line per request, with every secret in the path or query left out.

The server (gateway/edge/server.py) writes no line of its own: a server's usual access log would
print `?token=…` and `/j/<invite>` as they came. A query's values are written only for the
parameters named here (an allowlist: a misspelt or percent-encoded `token` is left out like the
real one), and the client's address only as its network, and only when the admin asks for it
(`[logging] client_addresses = "truncated"`).
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import quote, unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.edge.requests import QUIET, REFUSED_ATTEMPT
from gateway.log_privacy import ClientAddresses, client_network

log = logging.getLogger("meetgate.access")

SECRET_PATHS = re.compile(r"^/j/[^/]+")
# Query parameters whose values are written: the room, which the paths show anyway.
SHOWN_PARAMETERS = frozenset({"room"})
# What stays as it is in a logged path or query; anything else (control characters, spaces,
# quotes, non-ASCII) is percent-encoded, so a request cannot write a line of its own.
SAFE_CHARACTERS = "/-._~!$'()*+,;:@[]"
_PLAIN = re.compile(r"[A-Za-z0-9/\-._~!$'()*+,;:@\[\]]*")
# Asked once per static file by a TLS front doing static offload: a line each would be noise.
QUIET_PATHS = frozenset({"/_meetgate/forward-auth"})


def _shown(text: str) -> str:
    return text if _PLAIN.fullmatch(text) else quote(text, safe=SAFE_CHARACTERS)


def _decoded(text: str) -> str:
    return unquote_plus(text) if "%" in text or "+" in text else text


def _parameter(pair: str) -> str:
    name, has_value, value = pair.partition("=")
    name = _decoded(name)
    if not has_value:
        return _shown(name)
    if name.lower() in SHOWN_PARAMETERS:
        return f"{_shown(name)}={_shown(_decoded(value))}"
    return f"{_shown(name)}=[redacted]"


def redact(path: str, query: str) -> str:
    """The request target as logged: `/j/[invite]` for a join link, the query's values but the
    room's replaced."""
    if path.startswith("/j/"):
        path = SECRET_PATHS.sub("/j/[invite]", path)
    path = _shown(path)
    if not query:
        return path
    return f"{path}?{'&'.join(_parameter(pair) for pair in query.split('&'))}"


class _StatusSeen:
    """A request's `send` that notes the status its answer carries (101 for an accepted
    WebSocket, 403 for one closed before it was accepted, 0 for none)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" or kind == "websocket.http.response.start":
            self.status = message["status"]
        elif kind == "websocket.accept":
            self.status = 101
        elif kind == "websocket.close" and self.status == 0:
            self.status = 403
        await self.send(message)


# Refused join attempts logged in one second, at most; the rest are counted in one line.
REFUSED_LINES_PER_SECOND = 20


class AccessLog:
    def __init__(self, app: ASGIApp, *, client_addresses: ClientAddresses = "off") -> None:
        self._app = app
        self._networks = client_addresses == "truncated"
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
        observed = _StatusSeen(send)
        try:
            await self._app(scope, receive, observed)
        finally:
            # The gate marks the join attempts it refused before any other work: in a flood,
            # a line each would cost more than the refusal and bury everything else.
            state = scope.get("state", {})
            if log.isEnabledFor(logging.INFO) and not state.get(QUIET) and self._sampled(state):
                target = redact(scope["path"], scope.get("query_string", b"").decode("latin-1"))
                method = scope.get("method", "WS")
                elapsed_ms = (time.perf_counter() - started) * 1000
                rid = state.get("request_id", "-")
                where = f" from {self._network(scope, state)}" if self._networks else ""
                # The record is made here rather than by `log.info`, which would first walk the
                # stack for a caller the line does not show; handled alike from there on.
                log.handle(
                    log.makeRecord(
                        log.name,
                        logging.INFO,
                        __file__,
                        0,
                        "%s %s %d %.1fms [%s]%s",
                        (method, target, observed.status, elapsed_ms, rid, where),
                        None,
                    )
                )

    @staticmethod
    def _network(scope: Scope, state: dict[str, object]) -> str:
        # The gate's resolved address (behind a trusted proxy, the client's), else the peer's.
        address = state.get("client_addr") or (scope.get("client") or ("",))[0]
        return client_network(str(address)) or "unknown"
