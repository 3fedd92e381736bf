"""uvicorn's HTTP protocol with one addition: a join attempt this replica already knows to refuse
is answered as soon as its headers are parsed, with one write of a kept 429, without an ASGI
call, a task or an event-loop turn of its own.

Under a flood nearly every request is such an attempt. Answered through the app, each costs a
task, a scope walk through the middleware and two writes, and waits a loop turn behind every
other: the attendees' requests queue behind all of them. Answered here they cost the gate a
fraction of that, and an attendee's request waits only for the refusals read in the same turn.

What is refused here is exactly what `Gate.__call__` would refuse (the same `Gate.refuse_early`),
so a server without this protocol (a test client, another ASGI server) behaves alike, only
slower. It leans on uvicorn's httptools protocol (`_start_asgi_task`, the request cycle's
flags; pyproject pins the uvicorn release it was checked against); a uvicorn without them is
told in the log at start-up, and then the app answers everything.
tests/integration/test_early_refusal.py runs it under the real server.

Kept as uvicorn keeps them: a client that does not read its answers is answered by the app,
which waits for it; requests read together with one whose refusal closed the connection are
not started; an error in the early check is logged and the app answers.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway.errors import retry_after_seconds
from gateway.proxy.request_trailers import TrailerDroppingProtocol
from gateway.web.rendering import rate_limited_answer, wants_json

log = logging.getLogger("meetgate.server")

STATUS_LINE = b"HTTP/1.1 429 Too Many Requests\r\n"


class _KeptAnswers:
    """Whole 429 responses, kept until the server's Date header changes (once a second)."""

    __slots__ = ("answers", "date_headers", "secure")

    def __init__(self, *, secure: bool) -> None:
        self.secure = secure
        self.date_headers: list[tuple[bytes, bytes]] | None = None
        self.answers: dict[tuple[int, bool, bool, bool], bytes] = {}

    def answer(
        self,
        default_headers: list[tuple[bytes, bytes]],
        wait: float,
        *,
        as_json: bool,
        head: bool,
        keep_alive: bool,
    ) -> bytes:
        if default_headers is not self.date_headers:
            # uvicorn makes a new list each second; holding it keeps its identity meaningful.
            self.date_headers, self.answers = default_headers, {}
        key = (retry_after_seconds(wait), as_json, head, keep_alive)
        kept = self.answers.get(key)
        if kept is None:
            headers, body = rate_limited_answer(wait, as_json, self.secure)
            lines = [STATUS_LINE]
            for name, value in [*default_headers, *headers]:
                lines += (name, b": ", value, b"\r\n")
            if not keep_alive:
                lines.append(b"connection: close\r\n")
            lines.append(b"\r\n")
            if not head:
                lines.append(body)
            kept = self.answers[key] = b"".join(lines)
        return kept


def _supported() -> bool:
    """Whether this uvicorn's httptools protocol has what the early answers lean on: the hook a
    request is started by, the one a finished response calls, and a request cycle made with
    its `on_response`, `keep_alive` and `expect_100_continue`."""
    cycle_arguments = inspect.signature(RequestResponseCycle.__init__).parameters
    return (
        callable(getattr(HttpToolsProtocol, "_start_asgi_task", None))
        and callable(getattr(HttpToolsProtocol, "on_response_complete", None))
        and {"on_response", "keep_alive", "expect_100_continue"} <= cycle_arguments.keys()
    )


def early_refusal_protocol(
    refuse_early: Callable[[Scope], float], *, secure: bool
) -> type[HttpToolsProtocol]:
    """The protocol class for `uvicorn.Config(http=…)`: `refuse_early(scope)` gives the seconds
    to refuse a request for, or 0 to hand it to the app as usual."""
    if not _supported():
        log.warning("this uvicorn cannot answer refused join attempts early; the app will")
        return TrailerDroppingProtocol
    kept = _KeptAnswers(secure=secure)

    class EarlyRefusalProtocol(TrailerDroppingProtocol):
        # The next pipelined request, handed over by `on_response` while a refusal finishes.
        _handed_on: tuple[Any, Any] | None = None
        _finishing = False

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if self._finishing:
                # Taken by the loop below, not one call deeper per pipelined request.
                self._handed_on = (cycle, app)
                return
            request: tuple[Any, Any] | None = (cycle, app)
            while request is not None:
                cycle, app = request
                if self.transport.is_closing():
                    # A refusal closed the connection: requests read with it are not started
                    # (uvicorn would leave them queued, never run).
                    return
                # A client that does not read its answers gets the app's, which wait for it
                # (uvicorn's flow control): a kept answer written regardless would pile up.
                wait = 0.0 if self.flow.write_paused else self._wait(cycle)
                if wait <= 0:
                    super()._start_asgi_task(cycle, app)
                    return
                self._refuse(cycle, wait)
                # What the cycle's last `send` would have done: the connection goes on to its
                # next request (a pipelined one is handed over here), or closes.
                self._finishing = True
                try:
                    cycle.on_response()
                finally:
                    self._finishing = False
                request, self._handed_on = self._handed_on, None

        def _wait(self, cycle: Any) -> float:
            try:
                return refuse_early(cycle.scope)
            except Exception:
                # Inside the parser a raised error would become a bare 400: let the app answer.
                log.exception("answering a join attempt early failed; the app answers it")
                return 0.0

        def _refuse(self, cycle: Any, wait: float) -> None:
            scope = cycle.scope
            # A client waiting for "100 Continue" would never send the body this refusal
            # skips: the connection cannot be reused.
            keep_alive = cycle.keep_alive and not cycle.waiting_for_100_continue
            self.transport.write(
                kept.answer(
                    self.server_state.default_headers,
                    wait,
                    as_json=wants_json(scope),
                    head=scope["method"] == "HEAD",
                    keep_alive=keep_alive,
                )
            )
            # The body still arriving is discarded, as after any complete response.
            cycle.response_started = cycle.response_complete = True
            cycle.waiting_for_100_continue = False
            if not keep_alive:
                cycle.keep_alive = False
                self.transport.close()

    return EarlyRefusalProtocol
