"""What a replica knows of its store's health: whether it answers, since when it does not, and
how many records it found that do not parse. Read by the metrics; logged on every change.

Log lines name the store by `host:port/db` (never a password) and a corrupt record by its kind
alone: a key's name carries room names and ids.
"""

from __future__ import annotations

import logging
import time
from typing import Final
from urllib.parse import urlsplit

from gateway.store.sentinel_url import is_sentinel_url, parse_sentinel_url

log = logging.getLogger("meetgate.store")

# A kind of corrupt record is logged at most once in this many seconds (each one is counted).
CORRUPT_LOG_INTERVAL: Final = 60.0


def store_address(url: str) -> str:
    """Where a store URL points, without user, password or query: `host:port/db`,
    `sentinel:<master>@host:port,…/db`, `unix:/path`, or `memory`."""
    if is_sentinel_url(url):
        where = parse_sentinel_url(url)
        nodes = ",".join(f"{host}:{port}" for host, port in where.sentinels)
        return f"sentinel:{where.master_name}@{nodes}/{where.db}"
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return "memory"
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname or '?'}:{port}/{db}"


class StoreHealth:
    """Up or down, as the last call found it, and the corrupt records seen, by kind."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.up = True
        # When a call was last answered (time.monotonic, the event loop's clock).
        self.last_answer = time.monotonic()
        self._down_since = 0.0
        self._corrupt_logged: dict[str, float] = {}
        self._uncounted: dict[str, int] = {}

    def failed(self) -> None:
        """A call found the store unreachable or too slow."""
        if self.up:
            self.up = False
            self._down_since = time.monotonic()
            log.error(
                "store %s unreachable or too slow: joins and ticket refreshes are refused"
                " until it answers (open meetings keep their sockets)",
                self.address,
            )

    def answered(self) -> None:
        """A call got its answer."""
        self.last_answer = time.monotonic()
        if not self.up:
            self.up = True
            log.warning(
                "store %s answers again after %.1f s down",
                self.address,
                time.monotonic() - self._down_since,
            )

    def corrupt(self, kind: str) -> None:
        """A record of `kind` did not parse; it was read as a refusal."""
        self._uncounted[kind] = self._uncounted.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._corrupt_logged.get(kind, -CORRUPT_LOG_INTERVAL) >= CORRUPT_LOG_INTERVAL:
            self._corrupt_logged[kind] = now
            log.error(
                "store %s holds a record of kind %s that does not parse: it counts as a refusal"
                " (counted in meetgate_store_corrupt_records_total; logged once a minute)",
                self.address,
                kind,
            )

    def take_corrupt_counts(self) -> dict[str, int]:
        """The corrupt records seen since the last call, by kind (for the metrics)."""
        counts, self._uncounted = self._uncounted, {}
        return counts
