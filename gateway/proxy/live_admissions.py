"""Admissions this process has recently found live, so that a static file's forward-auth check
or a proxied page does not cost a store round trip each.

An entry is used for at most `max_age` seconds (the replica's reconciliation interval,
`[revocation] reconcile_seconds`): a revocation whose message this process never received is
refused within the same bound as the reconciliation cuts the revoked admission's sockets. A cut
received on the store's channel forgets its admission at once; every (re)subscription to that
channel forgets everything, because messages may have been lost while it was down. An admission
is never kept past its own expiry, and a revoked one is never kept at all.

A lookup that misses reads the store; what it read is kept only if no cut or clear happened
meanwhile (`generation`), so a revocation that arrives during the read is not undone by it.
"""

from __future__ import annotations

import time

from gateway.store.records import Admission

# Above this many entries the cache starts over (a flood of distinct live cookies is bounded by
# admissions, which are rate-limited; this only caps memory).
MAX_ENTRIES = 100_000


class LiveAdmissions:
    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self.generation = 0
        self._entries: dict[str, tuple[Admission, float]] = {}

    def get(self, admission_id: str, now: float) -> Admission | None:
        """The admission if it was found live less than `max_age` ago and has not expired by
        `now` (wall-clock seconds, as the admission's expiry)."""
        found = self._entries.get(admission_id)
        if found is None:
            return None
        admission, kept_at = found
        if time.monotonic() - kept_at >= self.max_age or now >= admission.expires_at:
            del self._entries[admission_id]
            return None
        return admission

    def keep(self, admission: Admission, generation: int) -> None:
        """Keep `admission`, found live by a read that began at `generation`."""
        if generation != self.generation or admission.revoked:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[admission.id] = (admission, time.monotonic())

    def forget(self, admission_id: str) -> None:
        self.generation += 1
        self._entries.pop(admission_id, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
