"""BOSH sessions seen through the gate: which `sid` an admission uses, and how to end it.

prosody keeps a BOSH session alive between requests, so cutting an admission must end the
session on the server: a `type='terminate'` request for that sid, as a client leaving would send.
Which sid a request names is read by gateway.proxy.bosh_body, as prosody reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from gateway.errors import UpstreamUnreachable
from gateway.proxy.upstream import UpstreamClient

# What a sid may look like to be tracked (and written back into a terminate body): prosody's are
# UUIDs.
SID_SHAPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class BoshSession:
    def __init__(self, client: UpstreamClient, url: str, sid: str, rid: int) -> None:
        self._client = client
        self._url = url
        self.sid = sid
        self.rid = rid
        self._closed = False

    @property
    def signalling(self) -> bool:
        return True

    def saw(self, rid: int) -> None:
        self.rid = max(self.rid, rid)

    async def close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        body = (
            f"<body rid='{self.rid + 1}' sid='{self.sid}' type='terminate'"
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
