"""Self-hosted proof-of-work that a room can demand under a join flood: issue a MACed challenge,
verify a browser's answer with one hash. Pure: no I/O, the time is passed in.

A token is the URL-safe base64 (unpadded) of

    version (1) | nonce (16) | difficulty (1) | issued at in ms (8) | room (≤ 64) | mac (32)

where the MAC is HMAC-SHA256 under the server's key over a domain tag, the SHA-256 of the client
address (bound, never written in the token) and every field before it. The browser searches for a
decimal `answer` such that SHA-256(token ":" answer) starts with `difficulty` zero bits. Replay is
the caller's to stop: it claims `Solved.challenge_id` once in the store until `Solved.expires_at`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
import struct
from dataclasses import dataclass
from typing import Final, Literal

from gateway.errors import MeetgateError
from gateway.i18n import N_

DEFAULT_MAX_AGE_SECONDS: Final = 120.0
# A browser clock is not involved, but replicas' clocks may disagree by a little.
MAX_CLOCK_SKEW_SECONDS: Final = 5.0
MAX_DIFFICULTY: Final = 32
MAX_ROOM_BYTES: Final = 64
MAX_ANSWER_DIGITS: Final = 20
MIN_KEY_BYTES: Final = 16

_VERSION: Final = 1
_NONCE_BYTES: Final = 16
_MAC_BYTES: Final = 32
_HEADER: Final = struct.Struct(">B16sBQ")
_DOMAIN: Final = b"meetgate/pow/v1\x00"
_MIN_TOKEN_BYTES: Final = _HEADER.size + 1 + _MAC_BYTES
_MAX_TOKEN_BYTES: Final = _HEADER.size + MAX_ROOM_BYTES + _MAC_BYTES
_MAX_TOKEN_CHARS: Final = math.ceil(_MAX_TOKEN_BYTES * 4 / 3)
_TOKEN_CHARS: Final = re.compile(r"[A-Za-z0-9_-]+")
# [0-9], not \d: \d also matches other scripts' digits, which int() would happily accept.
_ANSWER: Final = re.compile(rf"[0-9]{{1,{MAX_ANSWER_DIGITS}}}")

RefusalReason = Literal[
    "malformed",  # not a token this module writes: bad characters, length, encoding or version
    "mac_mismatch",  # forged or altered, another key, or issued to another client address
    "expired",  # issued longer ago than the maximum age
    "future",  # issued later than now, beyond the allowed clock skew
    "wrong_room",  # issued for another room
    "bad_answer",  # not a decimal string of at most 20 digits
    "insufficient_work",  # the hash does not start with enough zero bits
    "replayed",  # a right answer used before (the caller's claim-once says so)
]


class ChallengeFailed(MeetgateError):
    """A proof-of-work answer that does not admit the request; `reason` is for logs, not users."""

    status = 403
    code = "challenge_failed"
    title = N_("Browser check failed")
    message = N_(
        "Your browser's check did not succeed or took too long."
        " Reload the page to try again; the check needs JavaScript."
    )

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__()
        self.reason: RefusalReason = reason


@dataclass(frozen=True, slots=True)
class Challenge:
    """What the challenge page needs: the token to solve, its difficulty, and when it runs out."""

    token: str
    difficulty: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Solved:
    """A correct answer. Claim `challenge_id` once, until `expires_at`, to refuse replays."""

    challenge_id: str
    difficulty: int
    expires_at: float


def difficulty_for(pressure: int, *, base: int = 16, step: int = 100, maximum: int = 24) -> int:
    """Leading zero bits to demand when `pressure` requests were rejected in the last 10 s:
    `base` when quiet, one more bit per `step` rejections, never more than `maximum`."""
    if step <= 0:
        raise ValueError("step must be positive")
    return min(maximum, base + max(0, pressure) // step)


def issue_challenge(
    key: bytes,
    *,
    client_addr: str,
    room: str,
    now: float,
    difficulty: int,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
) -> Challenge:
    """A fresh challenge for `client_addr` joining `room`; `max_age_seconds` only sets
    `expires_at` and should match what `verify_solution` is given."""
    _check_key(key)
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be between 0 and {MAX_DIFFICULTY}")
    room_bytes = room.encode("utf-8")
    if not 0 < len(room_bytes) <= MAX_ROOM_BYTES:
        raise ValueError(f"room must be 1 to {MAX_ROOM_BYTES} bytes long")
    if not math.isfinite(now) or now < 0:
        raise ValueError("now must be a finite, non-negative timestamp")
    issued_ms = int(now * 1000)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    payload = _HEADER.pack(_VERSION, nonce, difficulty, issued_ms) + room_bytes
    token = _encode(payload + _mac(key, client_addr, payload))
    return Challenge(
        token=token, difficulty=difficulty, expires_at=issued_ms / 1000 + max_age_seconds
    )


def verify_solution(
    key: bytes,
    token: str,
    answer: str,
    *,
    client_addr: str,
    room: str,
    now: float,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
) -> Solved:
    """The solved challenge if `answer` is a correct, timely answer to `token` for this client
    and room; raise ChallengeFailed otherwise. Does not detect replays (see `Solved`)."""
    _check_key(key)
    raw = _decode(token)
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, client_addr, payload)):
        raise ChallengeFailed("mac_mismatch")
    version, nonce, difficulty, issued_ms = _HEADER.unpack_from(payload)
    if version != _VERSION or difficulty > MAX_DIFFICULTY:
        # Only reachable with a valid MAC, i.e. a token from a newer or broken issuer.
        raise ChallengeFailed("malformed")
    issued_at = issued_ms / 1000
    if now - issued_at > max_age_seconds:
        raise ChallengeFailed("expired")
    if issued_at - now > MAX_CLOCK_SKEW_SECONDS:
        raise ChallengeFailed("future")
    if not hmac.compare_digest(payload[_HEADER.size :], room.encode("utf-8", "surrogatepass")):
        raise ChallengeFailed("wrong_room")
    if _ANSWER.fullmatch(answer) is None:
        raise ChallengeFailed("bad_answer")
    if leading_zero_bits(hashlib.sha256(f"{token}:{answer}".encode("ascii")).digest()) < difficulty:
        raise ChallengeFailed("insufficient_work")
    return Solved(
        challenge_id=_encode(nonce),
        difficulty=difficulty,
        expires_at=issued_at + max_age_seconds,
    )


def leading_zero_bits(digest: bytes) -> int:
    """How many zero bits `digest` starts with."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the challenge key must be at least {MIN_KEY_BYTES} bytes long")


def _mac(key: bytes, client_addr: str, payload: bytes) -> bytes:
    # The address hash has a fixed length, so the MAC input splits one way only.
    addr_hash = hashlib.sha256(client_addr.encode("utf-8", "surrogatepass")).digest()
    return hmac.new(key, _DOMAIN + addr_hash + payload, hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if len(token) > _MAX_TOKEN_CHARS or _TOKEN_CHARS.fullmatch(token) is None:
        raise ChallengeFailed("malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ChallengeFailed("malformed") from exc
    # One token, one spelling: refuse the other encodings of the same bytes (stray low bits).
    if _encode(raw) != token or not _MIN_TOKEN_BYTES <= len(raw) <= _MAX_TOKEN_BYTES:
        raise ChallengeFailed("malformed")
    return raw
