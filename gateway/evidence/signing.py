"""The gate's evidence key (Ed25519): reading and making its PEM, its public half and
fingerprint, and the signed statement "chain C's entry seq N has hash H", checked offline.

Pure functions over bytes, as gateway/ticket_keys.py is for ticket keys: settings read the key's
file, the log and the export sign with it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.evidence.entries import (
    CHAIN_NAME,
    HASH,
    MAX_SEQ,
    Head,
    canonical,
    is_moment,
    is_seq,
)
from gateway.pem_keys import load_private_pem, read_pem_file

PUBLIC_KEY: Final = re.compile(r"[0-9a-f]{64}")
SIGNATURE: Final = re.compile(r"[0-9a-f]{128}")
# What each signature is over starts with its purpose, so that a signature made for one never
# passes as the other.
HEAD_CONTEXT: Final = b"meetgate evidence head v1\n"
EXPORT_CONTEXT: Final = b"meetgate evidence export v1\n"


def load_private_key(pem: bytes) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key in `pem`. Raises ValueError with a message that completes
    "<file> …" for the admin."""
    key = load_private_pem(pem, "`meetgate evidence key --generate`")
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("is not an Ed25519 key: the evidence log signs with Ed25519")
    return key


def read_key_file(path: Path) -> bytes:
    """The PEM in the key file at `path`, checked; ValueError says what is wrong, naming it."""
    return read_pem_file(
        path, load_private_key, when_missing=" (make it with `meetgate evidence key --generate`)"
    )


def generate_private_pem() -> bytes:
    """A fresh Ed25519 private key as unencrypted PKCS#8 PEM."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_hex(key: ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey) -> str:
    """The raw public key (32 bytes) in lowercase hex, as exports carry it."""
    public = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def fingerprint(public: str) -> str:
    """The fingerprint of a public key (its raw hex): SHA-256 of the raw key, lowercase hex."""
    return hashlib.sha256(bytes.fromhex(public)).hexdigest()


def shown_fingerprint(value: str) -> str:
    """A fingerprint as people read it aloud and compare it: groups of four."""
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


def load_public_key(public: str) -> ed25519.Ed25519PublicKey:
    """The public key written as 64 lowercase hex digits; ValueError when it is not one."""
    if PUBLIC_KEY.fullmatch(public) is None:
        raise ValueError("not 64 lowercase hex digits")
    return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))


@dataclass(frozen=True, slots=True)
class SignedHead:
    """The gate's statement that `chain`'s entry `seq` has `hash`, made at `at` with the key
    whose fingerprint is `key`; `signature` (hex) is over HEAD_CONTEXT and `statement()`."""

    chain: str
    seq: int
    hash: str
    at: str
    key: str
    signature: str

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash)

    def statement(self) -> dict[str, object]:
        return {
            "at": self.at,
            "hash": self.hash,
            "key": self.key,
            "room": self.chain,
            "seq": self.seq,
        }

    def record(self) -> dict[str, object]:
        """As a log or an export writes it, one JSON line."""
        return {"head": self.statement(), "signature": self.signature}


def sign_head(key: ed25519.Ed25519PrivateKey, chain: str, head: Head, at: str) -> SignedHead:
    unsigned = SignedHead(chain, head.seq, head.hash, at, fingerprint(public_hex(key)), "")
    signature = key.sign(HEAD_CONTEXT + canonical(unsigned.statement())).hex()
    return SignedHead(chain, head.seq, head.hash, at, unsigned.key, signature)


def parse_signed_head(data: dict[str, object]) -> SignedHead:
    """A signed head as written by `record()`, its values checked (not its signature);
    ValueError says what is wrong."""
    statement, signature = data.get("head"), data.get("signature")
    if set(data) != {"head", "signature"} or not isinstance(statement, dict):
        raise ValueError("not a signed head")
    if set(statement) != {"at", "hash", "key", "room", "seq"}:
        raise ValueError("its statement must hold at, hash, key, room and seq")
    chain, seq, hash_, at, key = (statement[k] for k in ("room", "seq", "hash", "at", "key"))
    if not isinstance(chain, str) or CHAIN_NAME.fullmatch(chain) is None:
        raise ValueError("its room is not a room's name")
    if not is_seq(seq):
        raise ValueError(f"its seq is not a whole number from 0 to {MAX_SEQ}")
    if not isinstance(hash_, str) or HASH.fullmatch(hash_) is None:
        raise ValueError("its hash is not a SHA-256 in lowercase hex")
    if not isinstance(at, str) or not is_moment(at):
        raise ValueError("its time is not a moment in UTC")
    if not isinstance(key, str) or HASH.fullmatch(key) is None:
        raise ValueError("its key is not a fingerprint")
    if not isinstance(signature, str) or SIGNATURE.fullmatch(signature) is None:
        raise ValueError("its signature is not 128 lowercase hex digits")
    return SignedHead(chain, seq, hash_, at, key, signature)


def head_signature_valid(public: ed25519.Ed25519PublicKey, signed: SignedHead) -> bool:
    return signature_valid(public, signed.signature, HEAD_CONTEXT + canonical(signed.statement()))


def signature_valid(public: ed25519.Ed25519PublicKey, signature: str, message: bytes) -> bool:
    try:
        public.verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True
