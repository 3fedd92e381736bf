"""uvicorn's HTTP protocol, keeping a chunked request's trailer fields out of its headers.

llhttp reports trailer fields (RFC 9110 §6.5) through the same callback as header fields, and
uvicorn's httptools protocol appends them to the very list the ASGI scope holds as the request's
headers: a trailer arriving in the same read as the head is in `scope["headers"]` before the app
runs, and the gate would forward it upstream as a header. ASGI has no request trailers, and a
proxy may discard trailer fields it does not act on (§6.5.1), so they are dropped here, where
the header section is known to have ended. The gate's server protocol
(gateway.proxy.early_refusal) is built on this class; tests/integration/test_relay_exact.py
sends trailers to the real server.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TrailerDroppingProtocol(HttpToolsProtocol):
    # Set once the current request's header section has ended: what llhttp reports as a header
    # after that is a trailer field.
    _head_ended = False

    def on_message_begin(self) -> None:
        self._head_ended = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_ended = True
        super().on_headers_complete()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_ended:
            return
        super().on_header(name, value)
