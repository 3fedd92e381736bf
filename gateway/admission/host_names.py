"""The names a room keeps for its hosts before they arrive: those on its host invites that are
neither revoked nor expired. Nobody else shows a look-alike of them without a number Meetgate
chose, even in an empty room.

Every admission asks, so each replica keeps a room's answer for a few seconds instead of reading
all its invites each time. Hosts who are in the room are covered by their name claims in the
store (`Store.claim_name`), which is what hosts who sign in or get an e-mail code rely on: their
names are not known before they arrive.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.admission.names import host_shape
from gateway.store import Store
from gateway.store.records import Role

# How long a replica uses a room's reserved names before reading its invites again, and for how
# many rooms it keeps them.
MAX_AGE_SECONDS = 5.0
MAX_ROOMS = 1024


class HostNames:
    def __init__(
        self,
        store: Store,
        *,
        max_age_seconds: float = MAX_AGE_SECONDS,
        max_rooms: int = MAX_ROOMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_age = max_age_seconds
        self._max_rooms = max_rooms
        self._clock = clock
        # room -> (when read, by `clock`; [(host shape, the invite's expiry)])
        self._rooms: OrderedDict[str, tuple[float, list[tuple[str, float]]]] = OrderedDict()

    async def reserved(self, room: str, now: float) -> frozenset[str]:
        """The shapes (`names.host_shape`) of the names on `room`'s usable host invites."""
        read_at = self._clock()
        cached = self._rooms.get(room)
        if cached is None or read_at - cached[0] >= self._max_age:
            invites = await self._store.list_invites(room)
            names = [
                (host_shape(invite.name), invite.expires_at)
                for invite in invites
                if invite.role is Role.HOST and not invite.revoked
            ]
            cached = (read_at, names)
            self._rooms[room] = cached
            while len(self._rooms) > self._max_rooms:
                self._rooms.popitem(last=False)
        self._rooms.move_to_end(room)
        return frozenset(shape for shape, expires_at in cached[1] if now < expires_at)
