"""Streams one HTTP request to the upstream and its response back, never buffering a whole body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from gateway.errors import BadRequest, RequestTooLarge, UpstreamUnreachable
from gateway.proxy.headers import downstream_response_headers

CHUNK = 64 * 1024


async def read_body(receive: Receive, limit: int) -> bytes:
    """A whole request body, for the small ones the gate must look into (BOSH)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise RequestTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class HttpRelay:
    def __init__(self, client: httpx.AsyncClient, *, max_body_bytes: int) -> None:
        self._client = client
        self._max_body = max_body_bytes

    def _declared_length(self, scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError as exc:
                    raise BadRequest("The Content-Length header is not valid.") from exc
                if length < 0:
                    raise BadRequest("The Content-Length header is not valid.")
                return length
        return None

    async def _body(self, receive: Receive) -> AsyncIterator[bytes]:
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
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
    ) -> None:
        """Raise UpstreamUnreachable or RequestTooLarge only before the response has started."""
        declared = self._declared_length(scope)
        if declared is not None and declared > self._max_body:
            raise RequestTooLarge()
        has_body = scope["method"] not in ("GET", "HEAD", "OPTIONS") or declared
        if declared is not None:
            # Forward the length the server has already framed the body by: some upstreams
            # (prosody's BOSH among them) do not read chunked request bodies.
            headers = [*headers, (b"content-length", str(declared).encode())]
        request = self._client.build_request(
            scope["method"],
            url,
            headers=headers,
            content=self._body(receive) if has_body else None,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable() from exc
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": downstream_response_headers(response.headers.raw),
                }
            )
            try:
                async for chunk in response.aiter_raw(CHUNK):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError:
                # The response has started: all that is left is to end it short, which the
                # browser sees as a failed download rather than a truncated success.
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()
