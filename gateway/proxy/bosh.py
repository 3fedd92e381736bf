"""BOSH sessions seen through the gate: which `sid` an admission uses, and how to end it.

prosody keeps a BOSH session alive between requests, so cutting an admission must end the
session on the server: a `type='terminate'` request for that sid, as a client leaving would send.
Which sid a request names is read by gateway.proxy.bosh_body, as prosody reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from starlette.types import Message, Send

from gateway.errors import UpstreamUnreachable
from gateway.proxy.guarded import GuardedWire
from gateway.proxy.upstream import UpstreamClient

# What a sid may look like to be tracked (and written back into a terminate body): prosody's are
# UUIDs.
SID_SHAPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# The largest response the gate holds back to put the wire guard's errors into.
MAX_ANSWER_BYTES = 1024 * 1024
# The guard's errors a session keeps waiting for a response (a body may hold a flood); beyond
# them the oldest go.
MAX_REPLIES = 100


class BoshSession:
    def __init__(self, client: UpstreamClient, url: str, sid: str, rid: int) -> None:
        self._client = client
        self._url = url
        self.sid = sid
        self.rid = rid
        self._closed = False
        # The session's wire guard (gateway/proxy/guarded.py), and its errors for the sender
        # not yet put into a response.
        self.wire: GuardedWire | None = None
        self.replies: list[str] = []

    @property
    def signalling(self) -> bool:
        return True

    def reply(self, text: str) -> None:
        """Keep one of the guard's errors for the session's next response."""
        self.replies.append(text)
        del self.replies[:-MAX_REPLIES]

    def answering(self, send: Send) -> Send:
        """`send` for one of this session's responses, with the errors waiting for the sender
        put inside its `<body>` (the response is held until whole to do so; one that is not a
        BOSH body passes as it is, and the errors wait for the next)."""
        held: list[Message] = []
        chunks: list[bytes] = []
        size = 0

        async def answer(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.start" and message.get("status") == 200:
                held.append(message)
                return
            if not held or message["type"] != "http.response.body":
                await send(message)
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if message.get("more_body", False) and size <= MAX_ANSWER_BYTES:
                return
            start = held.pop()
            body = b"".join(chunks)
            if not message.get("more_body", False):
                body = self._with_replies(body)
            headers = [(n, v) for n, v in start["headers"] if n.lower() != b"content-length"]
            if not message.get("more_body", False):
                headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send(
                {
                    "type": "http.response.body",
                    "body": body,
                    "more_body": message.get("more_body", False),
                }
            )

        return answer

    def _with_replies(self, body: bytes) -> bytes:
        if not self.replies:
            return body
        replies = "".join(self.replies).encode()
        if not body.lstrip().startswith(b"<body"):
            # Not a BOSH body (an error page): the errors wait for the next.
            return body
        end = body.rfind(b"</body>")
        if end >= 0:
            self.replies.clear()
            return body[:end] + replies + body[end:]
        stripped = body.rstrip()
        if stripped.startswith(b"<body") and stripped.endswith(b"/>"):
            self.replies.clear()
            return stripped[:-2] + b">" + replies + b"</body>"
        return body

    def saw(self, rid: int) -> None:
        self.rid = max(self.rid, rid)

    async def close(self, reason: str, *, rid: int | None = None) -> None:
        """End the session on prosody with a terminate request numbered after the last request
        it saw, or numbered `rid` (a request the gate refused: prosody expects its number)."""
        if self._closed:
            return
        self._closed = True
        body = (
            f"<body rid='{self.rid + 1 if rid is None else rid}' sid='{self.sid}' type='terminate'"
            " xmlns='http://jabber.org/protocol/httpbind'>"
            "<presence type='unavailable' xmlns='jabber:client'/></body>"
        )
        with contextlib.suppress(UpstreamUnreachable, TimeoutError):
            async with asyncio.timeout(5):
                await self._client.submit(
                    "POST",
                    self._url,
                    [(b"content-type", b"text/xml; charset=utf-8")],
                    body.encode(),
                )
