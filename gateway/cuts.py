"""The message every replica receives when an admission's connections must be cut at once
(revoked, banned, swept out by a lockdown, or carried over to a moved meeting)."""

from __future__ import annotations

import json
from dataclasses import dataclass

CUTS = "cuts"


@dataclass(frozen=True, slots=True)
class Cut:
    """A message to every replica: close this admission's connections, for this reason."""

    admission_id: str
    reason: str

    def encode(self) -> str:
        return json.dumps({"admission": self.admission_id, "reason": self.reason})

    @classmethod
    def decode(cls, raw: str) -> Cut | None:
        try:
            data = json.loads(raw)
            return cls(admission_id=str(data["admission"]), reason=str(data["reason"]))
        except (ValueError, KeyError, TypeError):
            return None
