"""Streams one HTTP request to the upstream and its response back, never buffering a whole body.

Relayed exactly or not at all: a request body the client cuts off is aborted upstream (the
connection dropped mid-body, never completed short), and a response the upstream cuts off is
never ended as if whole. Trailer fields (RFC 9110 §6.5) are dropped both ways; see
gateway.proxy.trailers and gateway.proxy.upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.types import Receive, Scope, Send

from gateway.errors import BadRequest, RequestAborted, RequestTooLarge
from gateway.i18n import N_
from gateway.proxy.headers import downstream_response_headers, jitsi_security_headers
from gateway.proxy.upstream import ResponseCut, UpstreamClient


async def read_body(receive: Receive, limit: int) -> bytes:
    """A whole request body, for the small ones the gate must look into (BOSH).

    RequestAborted if the client goes away first: a part of a body is never passed on."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise RequestTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class HttpRelay:
    """`secure`: the gate is served over TLS (an https public_url), so responses carry HSTS."""

    def __init__(
        self, client: UpstreamClient, *, max_body_bytes: int, secure: bool = False
    ) -> None:
        self._client = client
        self._max_body = max_body_bytes
        self._security = jitsi_security_headers(secure=secure)

    def _declared_length(self, scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError as exc:
                    raise BadRequest(N_("The Content-Length header is not valid.")) from exc
                if length < 0:
                    raise BadRequest(N_("The Content-Length header is not valid."))
                return length
        return None

    async def _body(self, receive: Receive) -> AsyncIterator[bytes]:
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Raised inside the upstream client's write: it drops the connection without the
                # last chunk (or the rest of the length), so the upstream never sees a whole
                # request. Returning here would end a chunked body as if it were complete.
                raise RequestAborted()
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self._max_body:
                raise RequestTooLarge()
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        url: str,
        headers: list[tuple[bytes, bytes]],
        *,
        body: bytes | None = None,
    ) -> None:
        """Raise UpstreamUnreachable, RequestTooLarge or RequestAborted only before the response
        has started. `body`: the request body, already read whole (BOSH), sent with its length."""
        upstream_body: bytes | AsyncIterator[bytes] | None = body
        if body is None:
            declared = self._declared_length(scope)
            if declared is not None and declared > self._max_body:
                raise RequestTooLarge()
            if declared is not None:
                # Forward the length the server has already framed the body by: some upstreams
                # (prosody's BOSH among them) do not read chunked request bodies.
                headers = [*headers, (b"content-length", str(declared).encode())]
            if scope["method"] not in ("GET", "HEAD", "OPTIONS") or declared:
                upstream_body = self._body(receive)
        response = await self._client.send(scope["method"], url, headers, upstream_body)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": downstream_response_headers(response.headers, self._security),
                }
            )
            # Each piece goes on as it arrives; the last message (more_body False) waits for
            # the upstream's end of body, so a body cut short never looks complete.
            more = True
            while more:
                try:
                    chunk = await response.read()
                except ResponseCut:
                    # The response has started: all that is left is to end it short, which the
                    # browser sees as a failed download rather than a truncated success.
                    return
                more = not response.finished
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
        finally:
            response.close()
