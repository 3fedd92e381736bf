"""What the store keeps instead of a client's address: a keyed hash of the address or of its
network, under a random key of the UTC day (docs/privacy.md, "Client addresses").

The key is drawn from `secrets` by the first replica that needs it on a day and shared with the
others through the store's pub/sub (`Store.day_key`, gateway/store/day_keys.py): it lives only
in the replicas' memory, for its day and the next; no setting, file, store key or AOF holds
it, so once the replicas drop it nobody can tell which address a hash stood for, not even by
trying every address.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from gateway.client_address import network_of
from gateway.errors import StoreUnavailable
from gateway.store import Store

DAY_SECONDS = 86_400
# How many hex digits of a hash are kept: 128 bits, as good as the whole for telling apart.
TAG_CHARS = 32


def utc_day(now: float) -> int:
    """The UTC day `now` (seconds since the epoch) falls on, in days since the epoch."""
    return int(now // DAY_SECONDS)


class AddressHasher:
    """Today's keyed hashes of client addresses and networks, and yesterday's for what was
    stored under them (a lobby bar outlives midnight). `clock`: the wall clock, in seconds."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def today(self) -> bytes:
        return await self._key_of(utc_day(self._clock()))

    async def _key_of(self, day: int) -> bytes:
        # Asked every time, not kept here: replicas that made keys at once converge on one.
        key = await self._store.day_key(day, create=True)
        if key is None:  # a store that makes one never answers none
            raise StoreUnavailable()
        return bytes.fromhex(key)

    @staticmethod
    def _tag(key: bytes, kind: str, value: str) -> str:
        text = f"{kind}\0{value}".encode("utf-8", "surrogatepass")
        return hmac.new(key, text, hashlib.sha256).hexdigest()[:TAG_CHARS]

    async def address(self, client_addr: str) -> str:
        """Today's hash of the address itself."""
        return (await self.address_and_network(client_addr))[0]

    async def network(self, client_addr: str) -> str:
        """Today's hash of the address's network (`network_of`: its /24 or /64)."""
        return (await self.address_and_network(client_addr))[1]

    async def address_and_network(self, client_addr: str) -> tuple[str, str]:
        """`address` and `network` under one look-up of today's key (a join charges both)."""
        key = await self.today()
        return (
            self._tag(key, "address", client_addr),
            self._tag(key, "network", network_of(client_addr)),
        )

    def known_network(self, client_addr: str) -> str | None:
        """`network`'s hash without waiting: None while today's key is not at hand."""
        key = self._store.held_day_key(utc_day(self._clock()))
        if key is None:
            return None
        return self._tag(bytes.fromhex(key), "network", network_of(client_addr))

    async def addresses_since_yesterday(self, client_addr: str) -> tuple[str, ...]:
        """The address's hash under today's key, then under yesterday's if there was one: what
        was stored for it within the last day, either side of midnight, is found under one."""
        # One reading of the clock for both days: either side of midnight, they are a pair.
        day = utc_day(self._clock())
        tags = [self._tag(await self._key_of(day), "address", client_addr)]
        yesterday = await self._store.day_key(day - 1, create=False)
        if yesterday is not None:
            tags.append(self._tag(bytes.fromhex(yesterday), "address", client_addr))
        return tuple(tags)
