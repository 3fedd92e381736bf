"""RSA key material for RS256 tickets: reading and checking a private key's PEM, the public PEM
prosody fetches, and the file name it asks for (`hex(sha256(kid)).pem`).

Pure functions over bytes; settings read the files, `tickets.py` signs and verifies with the keys.
"""

from __future__ import annotations

import hashlib
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_RSA_BITS = 2048
GENERATED_RSA_BITS = 2048
# What prosody asks the key server for: 64 lowercase hex digits of sha256(kid), then ".pem".
KEY_FILE_NAME = re.compile(r"[0-9a-f]{64}\.pem")


def load_rsa_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem`, checked for RS256 tickets.

    Raises ValueError with a message that completes "<setting> …" for the admin.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise ValueError(
            "is encrypted with a passphrase; give Meetgate the key unencrypted"
            " (and keep its file mode 0600)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            "is not a PEM private key (-----BEGIN PRIVATE KEY-----); make one with"
            " `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`"
        ) from exc
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
