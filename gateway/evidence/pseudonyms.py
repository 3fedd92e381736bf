"""Who acted and on whom, as the evidence names them: keyed hashes, one set per room, so that an
export shows that the same host acted twice without showing who, and two rooms' exports cannot
be joined on a person.

The key is derived from the gate's pseudonym key ([admission] pseudonym_key), so only the gate
can tell whether a given admission or identity is the one an entry names, and a changed key
changes every pseudonym after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

# Domain separation: these hashes never equal the identity pseudonyms made with the same key.
CONTEXT: Final = b"meetgate evidence pseudonyms v1"
# 80 bits: no two people of one room share one by chance.
TAG_BYTES: Final = 10


class Pseudonyms:
    """Keyed hashes of what the gate knows people by, per room, each prefixed by what it names."""

    __slots__ = ("_key",)

    def __init__(self, pseudonym_key: bytes) -> None:
        self._key = hmac.new(pseudonym_key, CONTEXT, hashlib.sha256).digest()

    def host(self, room: str, identity: str) -> str:
        """A host, by their identity's pseudonym (gateway/admission/identity.py)."""
        return "h-" + self._tag(b"host", room, identity)

    def admission(self, room: str, admission_id: str) -> str:
        """Whom an action was about, by their admission. The admission id is the bearer value of
        the attendee's cookie: only this hash of it is ever recorded."""
        return "a-" + self._tag(b"admission", room, admission_id)

    def network(self, room: str, network: str) -> str:
        """A network joins came from, by the rate limiter's keyed hash of it."""
        return "n-" + self._tag(b"network", room, network)

    def _tag(self, what: bytes, room: str, value: str) -> str:
        message = b"\x00".join((what, room.encode("utf-8"), value.encode("utf-8", "replace")))
        tag = hmac.new(self._key, message, hashlib.sha256).digest()[:TAG_BYTES]
        return base64.b32encode(tag).decode("ascii").lower()
