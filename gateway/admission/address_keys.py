"""What the store keeps instead of a client's address: a keyed hash of the address or of its
network, under a random key of the UTC day (docs/privacy.md, "Client addresses").

The key is drawn from `secrets` by the first replica that needs it on a day and shared through
the store (`Store.day_key`), which keeps it two days at most; no setting or file holds it, so
once it is gone nobody can tell which address a hash stood for, not even by trying every
address. Each replica keeps the day's key in memory until the day ends.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from gateway.client_address import network_of
from gateway.store import Store

DAY_SECONDS = 86_400
# How many hex digits of a hash are kept: 128 bits, as good as the whole for telling apart.
TAG_CHARS = 32


def utc_day(now: float) -> int:
    """The UTC day `now` (seconds since the epoch) falls on, in days since the epoch."""
    return int(now // DAY_SECONDS)


def _parse_key(stored: str | None) -> bytes | None:
    """A stored key as bytes; one that does not parse (a hand edit) counts as none."""
    try:
        return bytes.fromhex(stored) if stored else None
    except ValueError:
        return None


class AddressHasher:
    """Today's keyed hashes of client addresses and networks, and yesterday's for what was
    stored under them (a lobby bar outlives midnight). `clock`: the wall clock, in seconds."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        # day -> key, today's and yesterday's at most (None: yesterday had none).
        self._keys: dict[int, bytes | None] = {}

    async def _key(self, day: int, *, create: bool) -> bytes | None:
        if day in self._keys:
            return self._keys[day]
        candidate = secrets.token_hex(32) if create else None
        stored = await self._store.day_key(day, candidate) or candidate
        key = _parse_key(stored)
        for old in [d for d in self._keys if d < day - 1]:
            del self._keys[old]
        self._keys[day] = key
        return key

    async def today(self) -> bytes:
        day = utc_day(self._clock())
        key = await self._key(day, create=True)
        if key is None:
            # What the store holds does not parse: this replica hashes with a key of its own
            # for the day (its limits then count apart from the others' until midnight).
            key = self._keys[day] = secrets.token_bytes(32)
        return key

    @staticmethod
    def _tag(key: bytes, kind: str, value: str) -> str:
        text = f"{kind}\0{value}".encode("utf-8", "surrogatepass")
        return hmac.new(key, text, hashlib.sha256).hexdigest()[:TAG_CHARS]

    async def address(self, client_addr: str) -> str:
        """Today's hash of the address itself."""
        return self._tag(await self.today(), "address", client_addr)

    async def network(self, client_addr: str) -> str:
        """Today's hash of the address's network (`network_of`: its /24 or /64)."""
        return self._tag(await self.today(), "network", network_of(client_addr))

    def known_network(self, client_addr: str) -> str | None:
        """`network`'s hash without a store call: None while today's key is not at hand."""
        key = self._keys.get(utc_day(self._clock()))
        return None if key is None else self._tag(key, "network", network_of(client_addr))

    async def addresses_since_yesterday(self, client_addr: str) -> tuple[str, ...]:
        """The address's hash under today's key, then under yesterday's if there was one: what
        was stored for it within the last day, either side of midnight, is found under one."""
        day = utc_day(self._clock())
        tags = [self._tag(await self.today(), "address", client_addr)]
        yesterday = await self._key(day - 1, create=False)
        if yesterday is not None:
            tags.append(self._tag(yesterday, "address", client_addr))
        return tuple(tags)
