"""Ticket key material: reading and checking an RS256 private key's PEM, the public PEM prosody
fetches and the URL it fetches it from, and each key's id (`kid`), derived from the key itself.

Pure functions over bytes; settings read the files, `tickets.py` signs and verifies with the keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.pem_keys import load_private_pem

MIN_RSA_BITS = 2048
GENERATED_RSA_BITS = 2048
# What prosody asks the key server for: 64 lowercase hex digits of sha256(kid), then ".pem".
KEY_FILE_NAME = re.compile(r"[0-9a-f]{64}\.pem")


def load_rsa_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem`, checked for RS256 tickets.

    Raises ValueError with a message that completes "<setting> …" for the admin.
    """
    key = load_private_pem(pem, "`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("is not an RSA key: RS256 tickets need an RSA key")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"is a {key.key_size}-bit RSA key: use at least {MIN_RSA_BITS} bits")
    return key


def generate_private_pem(bits: int = GENERATED_RSA_BITS) -> bytes:
    """A fresh RSA private key as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The public half as a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_file_name(kid: str) -> str:
    """The name prosody fetches the public key of `kid` under, below `asap_key_server`."""
    return hashlib.sha256(kid.encode("utf-8")).hexdigest() + ".pem"


def prosody_key_url(key_server: str, kid: str) -> str:
    """The URL prosody's token auth fetches `kid`'s public key from: `asap_key_server` as written,
    "/", then the file name. It joins with prosody's `util.paths.join`, which only concatenates
    with "/": a trailing slash in `asap_key_server` is kept, and gives "//"."""
    return f"{key_server}/{key_file_name(kid)}"


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unsigned_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def rsa_key_id(key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint of `key` (SHA-256, base64url): its kid.

    Prosody caches public keys by kid for as long as it runs, so a kid must never name two keys;
    one computed from the key cannot.
    """
    numbers = key.public_numbers()
    # RFC 7638 section 3.2: the required members only, in lexicographic order, no whitespace.
    jwk = {
        "e": _base64url(_unsigned_bytes(numbers.e)),
        "kty": "RSA",
        "n": _base64url(_unsigned_bytes(numbers.n)),
    }
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode("ascii")
    return _base64url(hashlib.sha256(canonical).digest())


def hmac_key_id(secret: bytes) -> str:
    """The kid of an HS256 secret: a domain-separated SHA-256 of it, prefixed `hs-`.

    Every ticket shows its kid. That reveals nothing a ticket does not already: its HMAC-SHA256
    signature over a known header and payload lets anyone holding one test guesses of the secret
    just as well, so the secret's strength (high-entropy, at least 32 characters; `meetgate init`
    makes 384 random bits) is what protects it in either case.
    """
    return "hs-" + _base64url(hashlib.sha256(b"meetgate ticket kid\x00" + secret).digest())
