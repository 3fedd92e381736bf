"""Private keys in PEM files, read and checked one way for every key the gate holds (the ticket
key, the evidence key): bounded reads, and errors an admin can act on, naming the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

# No PEM private key the gate uses comes near this.
MAX_KEY_FILE_BYTES: Final = 64 * 1024


def load_private_pem(pem: bytes, how_to_make: str) -> PrivateKeyTypes:
    """The private key in `pem`, of whatever type. Raises ValueError with a message that completes
    "<file> …" for the admin; `how_to_make` is the command that makes a good one."""
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise ValueError(
            "is encrypted with a passphrase; give Meetgate the key unencrypted"
            " (and keep its file mode 0600)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            f"is not a PEM private key (-----BEGIN PRIVATE KEY-----); make one with {how_to_make}"
        ) from exc


def read_pem_file(path: Path, check: Callable[[bytes], object], *, when_missing: str = "") -> bytes:
    """The PEM in the file at `path`, checked by `check` (which raises ValueError completing
    "<file> …"); ValueError says what is wrong, naming the file. `when_missing` is added to the
    message for a file that does not exist."""
    try:
        with path.open("rb") as handle:
            pem = handle.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ValueError(f"{path} does not exist{when_missing}") from exc
    except PermissionError as exc:
        raise ValueError(f"{path} cannot be read by this user (check its owner)") from exc
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if len(pem) > MAX_KEY_FILE_BYTES:
        raise ValueError(f"{path} is too large for a PEM key")
    try:
        check(pem)
    except ValueError as exc:
        raise ValueError(f"{path} {exc}") from exc
    return pem
