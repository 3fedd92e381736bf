"""Sealing what the store keeps of a person (`Sealer`): AES-GCM under a key derived from the
pseudonym key for one purpose, the record it belongs to bound as associated data, so that a dump
of the store alone shows none of it, and a sealed part copied into another record, or into
another purpose's record, does not open.

Each user names its purpose (the HKDF info string): the outbox's items and the registrations'
records are sealed under different keys. A sealed part is base64url of a random 96-bit nonce
followed by the ciphertext of a JSON value."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class Sealer:
    """Seals JSON values to a record (`bound`, its id or key) under a key of `purpose`."""

    def __init__(self, key: bytes, purpose: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)
        self._aead = AESGCM(derived)

    def seal(self, bound: str, value: Any) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = json.dumps(value, separators=(",", ":")).encode()
        sealed = self._aead.encrypt(nonce, plain, bound.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, bound: str, sealed: str) -> Any:
        """The value, or None if `sealed` is not this key's for `bound` (or no sealed part)."""
        try:
            raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
            if len(raw) <= NONCE_BYTES:
                return None
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound.encode())
            return json.loads(plain)
        except (InvalidTag, ValueError, TypeError, RecursionError):
            return None
