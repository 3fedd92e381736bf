"""The messages every replica receives on one channel: a `Cut` when an admission's connections
must be cut at once (revoked, banned, swept out by a lockdown, or carried over to a moved
meeting), or when a newer signalling session of the admission replaces the one another replica
holds; a `RulesChanged` when a room's chat rules or hosts changed and every gate re-reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.store import Store

CUTS = "cuts"


@dataclass(frozen=True, slots=True)
class Cut:
    """A message to every replica: close this admission's connections, for this reason.

    With `keep`, only the admission's signalling connection is closed, and only where it is not
    the lease holder `keep` names (gateway/proxy/leases.py): the newer session stays.
    """

    admission_id: str
    reason: str
    keep: str | None = None

    async def send(self, store: Store) -> None:
        """Publish it to every replica."""
        await store.publish(CUTS, self.encode())

    def encode(self) -> str:
        data = {"admission": self.admission_id, "reason": self.reason}
        if self.keep is not None:
            data["keep"] = self.keep
        return json.dumps(data)

    @classmethod
    def decode(cls, raw: str) -> Cut | None:
        """The cut `raw` tells of; None for any other message (a RulesChanged among them)."""
        try:
            data = json.loads(raw)
            if "admission" not in data:
                return None
            keep = data.get("keep")
            return cls(
                admission_id=str(data["admission"]),
                reason=str(data["reason"]),
                keep=None if keep is None else str(keep),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True, slots=True)
class RulesChanged:
    """A message to every replica: re-read this room's chat rules and hosts now
    (gateway/proxy/room_rules.py), so a quiet switch holds on every gate at once."""

    room: str

    async def send(self, store: Store) -> None:
        """Publish it to every replica."""
        await store.publish(CUTS, self.encode())

    def encode(self) -> str:
        return json.dumps({"rules": self.room})

    @classmethod
    def decode(cls, raw: str) -> RulesChanged | None:
        """The change `raw` tells of; None for any other message (a Cut among them)."""
        try:
            data = json.loads(raw)
            room = data["rules"]
        except (ValueError, KeyError, TypeError):
            return None
        return cls(room) if isinstance(room, str) else None
