"""Meeting tickets: short-lived JWTs in the form Jitsi's prosody token auth verifies.

Pure: keys, claims and `now` go in, a token or `TicketClaims` come out; rotation is by `kid`,
each key's id derived from the key (`TicketKey.key_id`). HS256 signs with a secret prosody
shares; RS256 with a private key whose public half prosody fetches from
`/_meetgate/keys/<hex(sha256(kid))>.pem` (`public_key`), so it holds no secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.admission.rooms import is_room_name
from gateway.errors import InvalidRoomName, TicketInvalid
from gateway.settings import JitsiSettings, Settings, TicketSettings
from gateway.store.records import Admission, Role
from gateway.ticket_keys import KEY_FILE_NAME, key_file_name, load_rsa_private_key, public_pem

# Three non-empty base64url segments. Our tickets are well under 1 KB; anything far larger is
# not ours and is refused before any parsing.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
MAX_TOKEN_CHARS = 8192
HEADER_TYP = "JWT"
_HEADER_FIELDS = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "sub", "room", "jti", "adm"]


@dataclass(frozen=True, slots=True)
class TicketClaims:
    """What a verified ticket says: who may be in which room, until when."""

    room: str
    admission_id: str
    jti: str
    user_id: str
    name: str
    moderator: bool
    expires_at: float
    not_before: float


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TicketAuthority:
    """Signs tickets with the active key and verifies them with any configured key."""

    def __init__(self, tickets: TicketSettings, jitsi: JitsiSettings) -> None:
        self._algorithm: str = tickets.algorithm
        self._ttl = tickets.ttl_seconds
        self._clock_skew = tickets.clock_skew_seconds
        self._signing_kid = tickets.signing_kid
        # kid -> what verifies its tickets: the HS256 secret, or the RS256 public key.
        self._keys: dict[str, bytes | rsa.RSAPublicKey] = {}
        self._hmac_key: bytes | None = None
        self._rsa_key: rsa.RSAPrivateKey | None = None
        # hex(sha256(kid)).pem -> public key PEM, for every configured RS256 key.
        self._public_pems: dict[str, bytes] = {}
        for key in tickets.keys:
            kid = key.key_id
            private_pem = key.private_pem
            if private_pem is None:
                secret = key.secret.get_secret_value().encode("utf-8") if key.secret else b""
                self._keys[kid] = secret
                if kid == self._signing_kid:
                    self._hmac_key = secret
                continue
            private = load_rsa_private_key(private_pem)
            self._keys[kid] = private.public_key()
            self._public_pems[key_file_name(kid)] = public_pem(private)
            if kid == self._signing_kid:
                self._rsa_key = private
        header = {"alg": self._algorithm, "typ": HEADER_TYP, "kid": self._signing_kid}
        self._header_segment = _segment(json.dumps(header, separators=(",", ":")).encode())
        self._issuer = jitsi.app_id
        self._audience = jitsi.audience
        self._subject = jitsi.xmpp_domain

    @classmethod
    def from_settings(cls, settings: Settings) -> TicketAuthority:
        return cls(settings.tickets, settings.jitsi)

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def signing_kid(self) -> str:
        return self._signing_kid

    @property
    def clock_skew_seconds(self) -> int:
        return self._clock_skew

    def public_key(self, file_name: str) -> bytes | None:
        """The PEM prosody fetches as `<asap_key_server>/<file_name>`: a configured RS256 key's
        public half, or None (HS256, an unknown key, or a name of any other shape)."""
        if KEY_FILE_NAME.fullmatch(file_name) is None:
            return None
        return self._public_pems.get(file_name)

    def issue(self, admission: Admission, now: float) -> str:
        """A ticket for `admission`'s room, issued at `now` and valid for `ttl_seconds`.

        Its `nbf` is `clock_skew_seconds` before `now`: prosody checks it with no leeway, so a
        prosody whose clock is a little behind ours would otherwise refuse a fresh ticket.
        """
        if not is_room_name(admission.room):
            # Prosody would treat "*" or a pattern as a wildcard; never sign one.
            raise InvalidRoomName()
        issued_at = int(now)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": self._subject,
            "room": admission.room,
            "iat": issued_at,
            "nbf": issued_at - self._clock_skew,
            "exp": issued_at + self._ttl,
            "jti": secrets.token_urlsafe(16),
            "adm": admission.id,
            "context": {
                "user": {
                    "id": admission.identity,
                    "name": admission.name,
                    "moderator": admission.role == Role.HOST,
                },
                "features": {"name-readonly": True},
            },
        }
        # Signed by hand: the header is fixed per key, and PyJWT would re-check the key on
        # every call, a fifth of a redemption's cost (HS256). Verification stays on PyJWT.
        payload = _segment(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header_segment}.{payload}".encode("ascii")
        return f"{self._header_segment}.{payload}.{_segment(self._sign(signing_input))}"

    def _sign(self, signing_input: bytes) -> bytes:
        if self._rsa_key is not None:
            return self._rsa_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if self._hmac_key is None:
            raise RuntimeError("no signing key")  # settings validation makes this unreachable
        return hmac.new(self._hmac_key, signing_input, hashlib.sha256).digest()

    def verify(self, token: str, now: float) -> TicketClaims:
        """The claims of a ticket this authority issued and that is valid at `now`.

        Raises TicketInvalid, with a generic message, for anything else.
        """
        if (
            not isinstance(token, str)
            or len(token) > MAX_TOKEN_CHARS
            or _COMPACT_JWS.fullmatch(token) is None
            or not _canonical_signature(token)
        ):
            raise TicketInvalid()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TicketInvalid() from exc
        kid = header.get("kid")
        if (
            set(header) != _HEADER_FIELDS
            or header.get("alg") != self._algorithm
            or header.get("typ") != HEADER_TYP
            or not isinstance(kid, str)
            or kid not in self._keys
        ):
            raise TicketInvalid()
        try:
            payload = jwt.decode(
                token,
                self._keys[kid],
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                subject=self._subject,
                leeway=0,
                options={
                    "verify_signature": True,
                    "require": _REQUIRED_CLAIMS,
                    "verify_iss": True,
                    "verify_aud": True,
                    "strict_aud": True,
                    "verify_sub": True,
                    "verify_jti": True,
                    # PyJWT compares times with its own clock; they are checked against `now` below.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise TicketInvalid() from exc
        return _claims_at(payload, now, self._clock_skew)


def _canonical_signature(token: str) -> bool:
    """Refuse a signature segment whose unused low bits are set.

    Such a token carries the same signature bytes as the one we issued, and PyJWT releases we
    allow (>= 2.8) do not all refuse it, yet as a string it differs from the ticket we issued.
    """
    segment = token.rsplit(".", 1)[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == segment


def _claims_at(payload: dict[str, Any], now: float, clock_skew: int) -> TicketClaims:
    expires_at = payload["exp"]
    not_before = payload["nbf"]
    issued_at = payload["iat"]
    if not all(_is_int(value) for value in (expires_at, not_before, issued_at)):
        raise TicketInvalid()
    # `nbf` already carries the clock-skew allowance. Another replica may have issued the ticket,
    # with a clock up to that allowance ahead of this one; a later `iat` is not one of ours.
    if now >= expires_at or now < not_before or now < issued_at - clock_skew:
        raise TicketInvalid()
    room = payload["room"]
    if not isinstance(room, str) or not is_room_name(room):
        raise TicketInvalid()
    jti = payload["jti"]
    admission_id = payload["adm"]
    if not isinstance(admission_id, str) or not admission_id or not jti:
        raise TicketInvalid()
    context = payload.get("context")
    user = context.get("user") if isinstance(context, dict) else None
    if not isinstance(user, dict):
        raise TicketInvalid()
    user_id = user.get("id")
    name = user.get("name")
    moderator = user.get("moderator")
    if not isinstance(user_id, str) or not isinstance(name, str) or not isinstance(moderator, bool):
        raise TicketInvalid()
    return TicketClaims(
        room=room,
        admission_id=admission_id,
        jti=jti,
        user_id=user_id,
        name=name,
        moderator=moderator,
        expires_at=float(expires_at),
        not_before=float(not_before),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
