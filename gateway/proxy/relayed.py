"""A relayed HTTP request (a Jitsi endpoint the config relays, e.g. a long poll) as a live
connection: filed in the ConnectionRegistry under its admission, so a revocation ends it too."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class RelayedRequest:
    """Runs one relay as its own task; `close` cancels it, wherever it is."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self.cut = False

    @property
    def signalling(self) -> bool:
        return False

    async def run(self, relay: Coroutine[Any, Any, None]) -> None:
        """Await the relay; return early (with `cut` set) if `close` ended it."""
        self._task = asyncio.create_task(relay)
        try:
            await self._task
        except asyncio.CancelledError:
            if not self.cut:
                raise

    async def close(self, reason: str) -> None:
        if self._task is not None and not self._task.done():
            self.cut = True
            self._task.cancel()
