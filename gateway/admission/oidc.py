"""OpenID Connect sign-in, the protocol half: what a provider's discovery document, its answer
on the redirect back and its ID token must say before Meetgate believes them, and the verified
identity they prove.

Pure apart from `PendingSignIns` (the store behind authlib's state): values in, values out.
The HTTP half — authlib's Starlette client and the two routes — is `gateway/web/signin.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.names import id_shaped
from gateway.errors import MeetgateError, NotAdmitted
from gateway.i18n import N_
from gateway.settings import OidcProvider
from gateway.store import Store
from gateway.store.records import RoomPolicy

SIGNIN_PREFIX = "/_meetgate/oidc"
# From the click on "Sign in with …" to the provider's redirect back.
SIGNIN_TTL_SECONDS = 600
# Clock difference tolerated between Meetgate and a provider.
CLOCK_LEEWAY_SECONDS = 60
# Signatures a provider proves with its published keys. Symmetric ones (HS256: signed with the
# client secret) and `none` are refused: an ID token must be signed by the provider alone.
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_ID_TOKEN_CHARS = 16_384
MAX_NAME_CHARS = 64
MAX_SUBJECT_CHARS = 255
MAX_EMAIL_CHARS = 254
MAX_GROUPS = 256
MAX_GROUP_CHARS = 256
# A provider's discovery document (and with it its key set) is fetched again after this long...
METADATA_MAX_AGE_SECONDS = 3600.0
# ...or sooner when it may have changed (a call to the provider failed), but never sooner than
# this after the last try: while a provider is down, at most one fetch in this long.
METADATA_RETRY_SECONDS = 10.0
# What of a provider's error code is logged: the codes RFC 6749 and OpenID Connect define, and
# providers' own, are short ASCII words; anything else is not written as it came.
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# Errors on the redirect back that are the provider's own failure (RFC 6749 §4.1.2.1), not a
# refusal of this person.
PROVIDER_FAULTS = frozenset({"server_error", "temporarily_unavailable"})


class SignInFailed(MeetgateError):
    """A sign-in that ends here. `reason` says why, for the log line (never the page): made of
    Meetgate's own words, claim names, protocol error codes and status numbers only, never of
    what a provider wrote in free text, nor of a code, token, state or address."""

    status = 400
    code = "signin_failed"
    title = N_("Sign-in did not work")
    message = N_(
        "The sign-in could not be completed. Go back to the meeting's page and sign in again."
    )

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason or self.code


class SignInExpired(SignInFailed):
    """Login CSRF, a replayed or a stale callback: no sign-in of this browser is waiting."""

    code = "signin_expired"
    title = N_("This sign-in is not valid here")
    message = N_(
        "This sign-in was not started in this browser, has already been used, or took too long."
        " Go back to the meeting's page and sign in again."
    )


class SignInDenied(SignInFailed):
    status = 403
    code = "signin_denied"
    title = N_("Sign-in cancelled")
    message = N_(
        "The identity provider did not confirm who you are: the sign-in was cancelled or"
        " refused there. Go back to the meeting's page to try again."
    )


class SignInRejected(SignInFailed):
    """The provider's answer does not hold up: wrong issuer, audience, signature, expiry…"""

    status = 403
    code = "signin_rejected"
    title = N_("Sign-in could not be verified")
    message = N_(
        "Meetgate could not verify the identity provider's answer, so it cannot let you in"
        " with it. Go back to the meeting's page and sign in again."
    )


class UnknownSigningKey(SignInRejected):
    """Signed with a key the provider's published key set lacks (perhaps just rotated)."""


class IdentityIncomplete(SignInFailed):
    status = 403
    code = "identity_incomplete"
    title = N_("Your account has no name")
    message = N_(
        "Your account at the identity provider has no name Meetgate could show to the other"
        " participants. Set a name there and sign in again."
    )


class SignInNotOffered(NotAdmitted):
    code = "signin_not_offered"
    title = N_("Sign-in is not a way into this meeting")
    message = N_("This meeting does not offer sign-in with this provider.")


class ProviderUnavailable(MeetgateError):
    """Nothing answered: refused, reset, timed out, a TLS or DNS failure. `reason` as for
    SignInFailed."""

    status = 502
    code = "provider_unavailable"
    title = N_("The identity provider does not answer")
    message = N_(
        "Meetgate cannot reach the identity provider right now. Please try again in a minute;"
        " if it persists, tell the organisers."
    )

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason or self.code


class ProviderFailed(ProviderUnavailable):
    """The provider answered, but with a failure: a 5xx, an error page, something that is not
    the JSON the protocol asks for, or an error code that is its own fault."""

    code = "provider_failed"
    title = N_("The identity provider failed")
    message = N_(
        "The identity provider answered with an error, so the sign-in could not be completed."
        " Please try again in a minute; if it persists, tell the organisers."
    )


class ProviderUntrusted(ProviderUnavailable):
    """The discovery document does not describe the issuer Meetgate is configured for."""

    code = "provider_untrusted"
    title = N_("The identity provider is not configured correctly")
    message = N_(
        "The identity provider's configuration does not match Meetgate's, so Meetgate does not"
        " use it. Please tell the organisers."
    )


def error_code(value: object) -> str:
    """A provider's error code as a log line may show it: the code as sent when it is a short
    ASCII word, else "unreadable" (free text could carry personal data)."""
    if isinstance(value, str) and _ERROR_CODE.fullmatch(value):
        return value
    return "unreadable"


def callback_error(value: object) -> MeetgateError:
    """What an `error` on the redirect back means: the provider's own failure (ProviderFailed),
    else a refusal there (SignInDenied: cancelled, not allowed, a login it wants)."""
    code = error_code(value)
    if code in PROVIDER_FAULTS:
        return ProviderFailed(f"callback error {code}")
    return SignInDenied(f"callback error {code}")


@dataclass(slots=True)
class MetadataSchedule:
    """When a provider's discovery document is fetched: when it never was, when it is older
    than METADATA_MAX_AGE_SECONDS, and when it is `suspect` (a call to an endpoint it names
    failed: the provider may have moved), but never twice in METADATA_RETRY_SECONDS. Pure
    bookkeeping: the times are passed in."""

    fetched_at: float | None = None
    tried_at: float | None = None
    suspect: bool = False

    def due(self, now: float) -> bool:
        fresh = (
            self.fetched_at is not None
            and not self.suspect
            and now - self.fetched_at < METADATA_MAX_AGE_SECONDS
        )
        if fresh:
            return False
        return self.tried_at is None or now - self.tried_at >= METADATA_RETRY_SECONDS

    def tried(self, now: float, *, fetched: bool) -> None:
        self.tried_at = now
        if fetched:
            self.fetched_at = now
            self.suspect = False


@dataclass(slots=True)
class KeySetRefetches:
    """When a provider's key set is fetched again because an ID token's signature did not
    verify with the key its `kid` names (a key replaced under the same kid, or keys without
    one): at most once in METADATA_RETRY_SECONDS, whichever sign-in asks, since a forged token
    fails the same way and must not make the gate fetch at will. Pure bookkeeping: the times
    are passed in."""

    taken_at: float | None = None

    def take(self, now: float) -> bool:
        """Whether a fetch may be made now; if so, it is counted from `now`."""
        if self.taken_at is not None and now - self.taken_at < METADATA_RETRY_SECONDS:
            return False
        self.taken_at = now
        return True


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of a provider's discovery document Meetgate relies on, checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    signing_algorithms: frozenset[str]
    # RFC 9207: the provider names itself (`iss`) on the redirect back.
    iss_parameter: bool


@dataclass(frozen=True, slots=True)
class Expected:
    """What the ID token of one sign-in must say."""

    issuer: str
    client_id: str
    nonce: str
    algorithms: frozenset[str]


def redirect_uri(public_url: str, provider: str) -> str:
    """The exact redirect URI registered at the provider: from the configured public address,
    never from a request's Host header."""
    return f"{public_url.rstrip('/')}{SIGNIN_PREFIX}/{provider}/callback"


def discovery_url(issuer: str) -> str:
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"


def offers(policy: RoomPolicy, provider: str) -> bool:
    """Does a room's policy let people in by signing in with this provider?"""
    return policy.oidc and (not policy.oidc_providers or provider in policy.oidc_providers)


def _endpoint(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ProviderUntrusted(f"discovery lacks a usable {key}")
    return value


def check_discovery(metadata: Mapping[str, Any], issuer: str) -> ProviderMetadata:
    """The discovery document must name the configured issuer (OpenID Connect Discovery §4.3)
    and the endpoints a sign-in uses; ProviderUntrusted otherwise.

    Settings keep an issuer without its trailing slash, while some providers' issuers end in
    one (Authentik's do): the document may add exactly that slash, and from then on its string
    is the issuer that ID tokens and redirects back must name exactly.
    """
    named = metadata.get("issuer")
    if not isinstance(named, str) or named not in (issuer, issuer + "/"):
        raise ProviderUntrusted("discovery names another issuer")
    advertised = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    if not isinstance(advertised, list):
        raise ProviderUntrusted("discovery's signing algorithms are not a list")
    algorithms = frozenset(a for a in advertised if isinstance(a, str)) & SIGNING_ALGORITHMS
    if not algorithms:
        raise ProviderUntrusted("discovery offers no asymmetric signing algorithm")
    userinfo = metadata.get("userinfo_endpoint")
    return ProviderMetadata(
        issuer=named,
        authorization_endpoint=_endpoint(metadata, "authorization_endpoint"),
        token_endpoint=_endpoint(metadata, "token_endpoint"),
        jwks_uri=_endpoint(metadata, "jwks_uri"),
        userinfo_endpoint=None if userinfo is None else _endpoint(metadata, "userinfo_endpoint"),
        signing_algorithms=algorithms,
        iss_parameter=metadata.get("authorization_response_iss_parameter_supported") is True,
    )


def check_response_issuer(iss: str | None, metadata: ProviderMetadata) -> None:
    """Mix-up defence (RFC 9207): the redirect back must come from the provider this sign-in
    went to. A provider that announces the `iss` parameter must send it."""
    if iss is None:
        if metadata.iss_parameter:
            raise SignInRejected("callback without the iss parameter the provider announces")
        return
    if not hmac.compare_digest(iss.encode(), metadata.issuer.encode()):
        raise SignInRejected("callback's iss parameter names another issuer")


def _signing_key(alg: str, kid: object, jwks: Mapping[str, Any]) -> jwt.PyJWK:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise SignInRejected("key set without keys")
    candidates = [
        key
        for key in keys
        if isinstance(key, dict)
        and key.get("use", "sig") == "sig"
        and key.get("alg", alg) == alg
        and (kid is None or key.get("kid") == kid)
    ]
    if len(candidates) != 1:
        # None: an unknown kid (a key rotated since the set was fetched). Several: without a
        # kid, guessing which key was meant is how signature checks get confused.
        raise UnknownSigningKey(f"{len(candidates)} published keys match the ID token's")
    try:
        return jwt.PyJWK(candidates[0], algorithm=alg)
    except jwt.PyJWTError as exc:
        raise SignInRejected("published key unusable") from exc


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignInRejected(f"ID token claim {name} is not a number")
    return float(value)


def verify_id_token(
    raw: str,
    jwks: Mapping[str, Any],
    expected: Expected,
    now: float,
    leeway: float = CLOCK_LEEWAY_SECONDS,
) -> dict[str, Any]:
    """Check an ID token (OpenID Connect Core §3.1.3.7) and return its claims.

    Signature by one of the provider's published keys with an allowed asymmetric algorithm
    (never `none`, never a symmetric one); `iss` exactly the configured issuer; `aud` this
    client (and `azp` this client where present); `exp`, `iat` and `nbf` against `now` with
    `leeway`; `nonce` this sign-in's, compared in constant time; a non-empty `sub`.
    Raises SignInRejected (UnknownSigningKey when no published key matches).
    """
    if not isinstance(raw, str) or len(raw) > MAX_ID_TOKEN_CHARS:
        raise SignInRejected("ID token missing or too long")
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError as exc:
        raise SignInRejected("ID token unreadable") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in expected.algorithms & SIGNING_ALGORITHMS:
        raise SignInRejected("ID token algorithm not allowed")
    key = _signing_key(alg, header.get("kid"), jwks)
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key=key,
            algorithms=[alg],
            # Signature only: the claims are checked below, against the `now` passed in.
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise SignInRejected("ID token signature") from exc
    if claims.get("iss") != expected.issuer:
        raise SignInRejected("ID token claim iss")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or expected.client_id not in audiences:
        raise SignInRejected("ID token claim aud")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != expected.client_id:
        raise SignInRejected("ID token claim azp")
    if now >= _number(claims, "exp") + leeway:
        raise SignInRejected("ID token claim exp: expired")
    if _number(claims, "iat") > now + leeway:
        raise SignInRejected("ID token claim iat: in the future")
    if "nbf" in claims and _number(claims, "nbf") > now + leeway:
        raise SignInRejected("ID token claim nbf: not yet valid")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode(), expected.nonce.encode()
    ):
        raise SignInRejected("ID token claim nonce")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT_CHARS:
        raise SignInRejected("ID token claim sub")
    return claims


def display_name(value: object) -> str | None:
    """A provider's name claim as a one-line label: NFKC, without control, format (bidi
    override) or unassigned characters, whitespace collapsed, at most MAX_NAME_CHARS."""
    if not isinstance(value, str):
        return None
    text = unicodedata.normalize("NFKC", value)
    kept = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    name = " ".join(kept.split())[:MAX_NAME_CHARS].strip()
    # A hashed id as the name (some providers' default subject, used as the name claim) is no
    # name: the next claim is tried instead of a sign-in refused after the provider's round trip.
    return name if name and not id_shaped(name) else None


def _email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    address = value.strip()
    if len(address) > MAX_EMAIL_CHARS or address.count("@") != 1:
        return None
    local, domain = address.split("@")
    if not local or not domain or any(c.isspace() or ord(c) < 0x20 for c in address):
        return None
    return address


def _verified(value: object) -> bool:
    # Some providers send the JSON string "true"; anything else is not a yes.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _groups(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    groups = [g for g in value if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_CHARS]
    return tuple(dict.fromkeys(groups))[:MAX_GROUPS]


def wants_userinfo(provider: OidcProvider, claims: Mapping[str, Any]) -> bool:
    """Many providers put profile claims only in the userinfo response, not in the ID token."""
    return any(name not in claims for name in ("email", provider.name_claim, provider.groups_claim))


def requested_scopes(provider: OidcProvider) -> list[str]:
    """The scopes a sign-in asks `provider` for: the configured ones, `openid` always among them."""
    return provider.scopes if "openid" in provider.scopes else ["openid", *provider.scopes]


def identity_from_claims(
    provider: OidcProvider,
    id_claims: Mapping[str, Any],
    userinfo: Mapping[str, Any] | None = None,
) -> VerifiedIdentity:
    """The identity a verified ID token (and the userinfo response, for claims it lacks) proves.

    The subject is `<issuer> <sub>`: stable for one account at one provider. The name is the
    configured `name_claim`, else `preferred_username`, else the e-mail address's local part.
    """
    sub = id_claims["sub"]
    claims = dict(id_claims)
    if userinfo is not None:
        # OpenID Connect Core §5.3.2: a userinfo response for another subject is not used.
        if userinfo.get("sub") != sub:
            raise SignInRejected("userinfo for another subject")
        for claim, value in userinfo.items():
            claims.setdefault(claim, value)
    email = _email(claims.get("email"))
    name = (
        display_name(claims.get(provider.name_claim))
        or display_name(claims.get("preferred_username"))
        or (display_name(email.split("@")[0]) if email else None)
    )
    if name is None:
        raise IdentityIncomplete()
    return VerifiedIdentity(
        path=Path.OIDC,
        subject=f"{provider.issuer} {sub}",
        name=name,
        email=email,
        email_verified=email is not None and _verified(claims.get("email_verified")),
        issuer=provider.issuer,
        provider=provider.name,
        groups=_groups(claims.get(provider.groups_claim)),
    )


class PendingSignIns:
    """authlib's cache for sign-ins between the two redirects (PKCE verifier, nonce, redirect
    URI), kept in the Store rather than in the browser's cookie, so that it holds across
    replicas. A pending sign-in is read once: `get` takes it, so a callback replayed — even
    with the cookie from before, even racing the first — finds nothing."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def _key(key: str) -> str:
        # authlib's key holds the `state`; the store keeps only its hash.
        return "signin:" + hashlib.sha256(key.encode()).hexdigest()

    async def get(self, key: str) -> str | None:
        return await self._store.take_value(self._key(key))

    async def set(self, key: str, value: str, expires_in: float) -> None:
        await self._store.put_value(self._key(key), value, min(expires_in, SIGNIN_TTL_SECONDS))

    async def delete(self, key: str) -> None:
        await self._store.delete_value(self._key(key))
