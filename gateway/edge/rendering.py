"""The one renderer that turns a MeetgateError into an HTML page, JSON, or a refused WebSocket."""

from __future__ import annotations

import functools
import html
import json
import logging
from urllib.parse import urlencode

from starlette.types import Scope, Send

from gateway.edge.headers import security_headers
from gateway.edge.languages import current, language_of, switch_target, switching
from gateway.edge.templating import render
from gateway.errors import MeetgateError, RateLimited, retry_after_seconds
from gateway.i18n import DEFAULT, Language, gettext

log = logging.getLogger("meetgate.errors")


def wants_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"accept":
            accept = value.decode("latin-1")
            return "application/json" in accept and "text/html" not in accept
    return False


def error_body(
    error: MeetgateError,
    request_id: str,
    *,
    as_json: bool,
    language: Language | None = None,
    here: tuple[str, tuple[tuple[str, str], ...]] | None = None,
) -> tuple[bytes, bytes]:
    """The page or JSON for `error`, in `language` (by default the current request's), its
    language links leading to the path of `here` (by default the current request's switch
    target)."""
    language = language or current.get()
    retry_after = error.retry_after
    message = error.shown(functools.partial(gettext, language))
    if as_json:
        payload = {"error": error.code, "message": message, "request_id": request_id}
        if retry_after is not None:
            payload["retry_after"] = str(retry_after)
        return json.dumps(payload, ensure_ascii=False).encode(), JSON
    page = _error_page(
        language, gettext(language, error.title), message, error.code, retry_after, bool(request_id)
    )
    page = page.replace(_REQUEST_ID_MARK, request_id.encode())
    # An error page's language links lead to its path alone: the query it refused is not
    # written back into the page.
    path, _ = here or switching.get()
    return with_switch_links(page, (path, ())), HTML


def with_switch_links(page: bytes, here: tuple[str, tuple[tuple[str, str], ...]]) -> bytes:
    """A kept page's language links made to lead to `here` (rendered with a mark instead)."""
    path, kept = here
    start = f"{path}?{urlencode(kept)}&" if kept else f"{path}?"
    return page.replace(_SWITCH_MARK + b"?", html.escape(start).encode())


HTML = b"text/html; charset=utf-8"
JSON = b"application/json"


_REQUEST_ID_MARK = b"meetgate-request-id-here"
# Where a kept page's language links lead: filled in for each request (`with_switch_links`).
_SWITCH_MARK = b"/meetgate-switch-here"


@functools.lru_cache(maxsize=256)
def _error_page(
    language: Language,
    title: str,
    message: str,
    code: str,
    retry_after: int | None,
    with_id: bool,
) -> bytes:
    # Rendered once per kind of error and language; each request's id and the page its
    # language links lead to go in where the marks are.
    token = current.set(language)
    here = switching.set((_SWITCH_MARK.decode(), ()))
    try:
        page = render(
            "error.html",
            title=title,
            message=message,
            code=code,
            retry_after=retry_after,
            request_id=_REQUEST_ID_MARK.decode() if with_id else "",
        )
    finally:
        current.reset(token)
        switching.reset(here)
    return page.encode()


def error_headers(
    error: MeetgateError, request_id: str, content_type: bytes, *, secure: bool
) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type)]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    if error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    return headers + security_headers(secure=secure)


async def send_error(
    scope: Scope, send: Send, error: MeetgateError, request_id: str, *, secure: bool
) -> None:
    """Answer an HTTP request or refuse a WebSocket upgrade with `error`.

    A WebSocket is refused before it is accepted: with the error's HTTP status where the server
    supports the ASGI denial-response extension, else with a plain 403 from the server.
    """
    language = language_of(scope)
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            body, content_type = error_body(error, request_id, as_json=True, language=language)
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": error.status,
                    "headers": error_headers(error, request_id, content_type, secure=secure),
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": error.code})
        return
    body, content_type = error_body(
        error, request_id, as_json=wants_json(scope), language=language, here=switch_target(scope)
    )
    headers = error_headers(error, request_id, content_type, secure=secure)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})


@functools.lru_cache(maxsize=1024)
def _rate_limited_answer(
    retry_after: int, limit: str | None, as_json: bool, secure: bool, language: Language
) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    error = RateLimited(retry_after, limit=limit)
    # The language links keep their mark: each answer fills in its own page.
    unfilled = (_SWITCH_MARK.decode(), ())
    body, content_type = error_body(error, "", as_json=as_json, language=language, here=unfilled)
    return tuple(error_headers(error, "", content_type, secure=secure)), body


def rate_limited_answer(
    wait: float,
    as_json: bool,
    secure: bool,
    language: Language = DEFAULT,
    limit: str | None = None,
    here: tuple[str, tuple[tuple[str, str], ...]] = ("/", ()),
) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    """The headers and body of the 429 for an attempt a replica refused before any other work:
    rendered once per distinct limit, Retry-After and language and kept (shared: not to be
    changed), without a request id, as no log line is written for it; its language links lead
    to `here`."""
    headers, body = _rate_limited_answer(
        retry_after_seconds(wait), limit, as_json, secure, language
    )
    if not as_json:
        body = with_switch_links(body, (here[0], ()))
    return (*headers, (b"content-length", str(len(body)).encode())), body


async def send_rate_limited(
    scope: Scope, send: Send, wait: float, *, secure: bool, limit: str | None = None
) -> None:
    """Answer an attempt a replica refused before any other work with the kept 429, naming
    `limit` (the one that refused, as [rates] names it)."""
    headers, body = rate_limited_answer(
        wait, wants_json(scope), secure, language_of(scope), limit, switch_target(scope)
    )
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
