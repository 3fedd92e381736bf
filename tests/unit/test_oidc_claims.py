"""OpenID Connect checks without a server: the ID token validator, the discovery and `iss`
checks, and the identity made of the claims.

Tokens here are signed with keys the test makes. Cases a real provider cannot be made to issue
are tested only here: an unsigned token (`alg: none`: oidc-provider cannot sign one), a token
signed with a symmetric algorithm and the provider's public key as the secret (key confusion),
a forged signature, a wrong audience with a matching `azp` trick, and a tampered payload. The
integration tests (tests/integration/test_oidc.py) feed the same validator real tokens from a
real provider: another client's, another issuer's, expired ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.admission.identity import Path
from gateway.admission.oidc import (
    CLOCK_LEEWAY_SECONDS,
    Expected,
    IdentityIncomplete,
    PendingSignIns,
    ProviderUntrusted,
    SignInRejected,
    UnknownSigningKey,
    check_discovery,
    check_response_issuer,
    display_name,
    identity_from_claims,
    offers,
    redirect_uri,
    verify_id_token,
)
from gateway.settings import OidcProvider
from gateway.store.memory import MemoryStore
from gateway.store.records import RoomPolicy

NOW = 1_800_000_000.0
ISSUER = "https://login.uni.example/realms/staff"
CLIENT = "meetgate"
NONCE = secrets.token_urlsafe(16)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
PROVIDER = OidcProvider(
    name="uni",
    label="University",
    issuer=ISSUER,
    client_id=CLIENT,
    client_secret="client-secret",  # type: ignore[arg-type]  # pydantic converts to SecretStr
)
EXPECTED = Expected(issuer=ISSUER, client_id=CLIENT, nonce=NONCE, algorithms=frozenset({"RS256"}))


def public_jwk(key: Any, kid: str, alg: str = "RS256") -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


JWKS = {"keys": [public_jwk(KEY, "k1")]}


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "user-123",
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "nonce": NONCE,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(
    payload: dict[str, Any], key: Any = KEY, kid: str | None = "k1", alg: str = "RS256"
) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify(token: str, jwks: dict[str, Any] = JWKS, **expected: Any) -> dict[str, Any]:
    want = Expected(**{**{f: getattr(EXPECTED, f) for f in EXPECTED.__slots__}, **expected})
    return verify_id_token(token, jwks, want, NOW)


def test_a_good_token_passes() -> None:
    assert verify(signed(claims()))["sub"] == "user-123"


def test_an_unsigned_token_is_refused() -> None:
    # What the real provider cannot be made to issue: `alg: none` and no signature at all.
    for alg in ("none", "None", "NONE"):
        header = b64(json.dumps({"alg": alg, "kid": "k1"}).encode())
        body = b64(json.dumps(claims()).encode())
        with pytest.raises(SignInRejected):
            verify(f"{header}.{body}.")
        with pytest.raises(SignInRejected):
            verify(f"{header}.{body}.", algorithms=frozenset({"RS256", alg}))


def test_a_symmetric_signature_is_refused_even_when_the_provider_lists_it() -> None:
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Key confusion: HS256 "signed" with the provider's public key as the shared secret.
    # (PyJWT refuses to make one, so it is made by hand.)
    signing_input = (
        b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
        + "."
        + b64(json.dumps(claims()).encode())
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{b64(mac)}"
    with_secret = jwt.encode(claims(), "client-secret" * 4, algorithm="HS256")
    for token in (confused, with_secret):
        with pytest.raises(SignInRejected):
            verify(token, algorithms=frozenset({"RS256", "HS256"}))


def test_a_forged_or_tampered_token_is_refused() -> None:
    with pytest.raises(SignInRejected):
        verify(signed(claims(), key=OTHER_KEY))  # right kid, wrong key
    header, _, signature = signed(claims()).split(".")
    forged_body = b64(json.dumps(claims(sub="admin")).encode())
    with pytest.raises(SignInRejected):
        verify(f"{header}.{forged_body}.{signature}")
    for garbage in ("", "a.b", "a.b.c", "x" * 20_000, signed(claims()) + "x"):
        with pytest.raises(SignInRejected):
            verify(garbage)


def test_an_unknown_key_asks_for_a_fresh_key_set() -> None:
    with pytest.raises(UnknownSigningKey):
        verify(signed(claims(), key=OTHER_KEY, kid="rotated"))
    # Without a kid, one candidate key is used; with several, none is guessed.
    assert verify(signed(claims(), kid=None))["sub"] == "user-123"
    two = {"keys": [public_jwk(KEY, "k1"), public_jwk(OTHER_KEY, "k2")]}
    with pytest.raises(UnknownSigningKey):
        verify(signed(claims(), kid=None), jwks=two)
    assert verify(signed(claims(), key=OTHER_KEY, kid="k2"), jwks=two)["sub"] == "user-123"


def test_a_key_published_for_another_algorithm_is_not_used() -> None:
    jwks = {"keys": [public_jwk(EC_KEY, "k1", alg="ES256")]}
    with pytest.raises(SignInRejected):
        verify(signed(claims()), jwks=jwks, algorithms=frozenset({"RS256", "ES256"}))
    token = signed(claims(), key=EC_KEY, alg="ES256")
    assert verify(token, jwks=jwks, algorithms=frozenset({"ES256"}))["sub"] == "user-123"
    with pytest.raises(SignInRejected):
        verify(token, jwks=jwks)  # ES256 not among the provider's advertised algorithms


def test_another_issuer_is_refused() -> None:
    for issuer in (
        "https://evil.example/realms/staff",
        ISSUER + "/",
        ISSUER.upper(),
        None,
    ):
        with pytest.raises(SignInRejected):
            verify(signed(claims(iss=issuer)))


def test_another_audience_is_refused() -> None:
    for audience in ("other-app", ["other-app"], [], None, 42):
        with pytest.raises(SignInRejected):
            verify(signed(claims(aud=audience)))
    # Several audiences: the authorised party must be Meetgate.
    with pytest.raises(SignInRejected):
        verify(signed(claims(aud=[CLIENT, "other-app"])))
    with pytest.raises(SignInRejected):
        verify(signed(claims(aud=[CLIENT, "other-app"], azp="other-app")))
    with pytest.raises(SignInRejected):
        verify(signed(claims(azp="other-app")))
    assert verify(signed(claims(aud=[CLIENT, "other-app"], azp=CLIENT)))


def test_expiry_and_issue_time_are_checked_with_a_small_leeway() -> None:
    leeway = CLOCK_LEEWAY_SECONDS
    assert verify(signed(claims(exp=int(NOW) - leeway + 1)))
    for bad in (
        claims(exp=int(NOW) - leeway),
        claims(exp=int(NOW) - 3600),
        claims(exp=None),
        claims(exp="tomorrow"),
        claims(exp=True),
        claims(iat=int(NOW) + leeway + 1),
        claims(iat=None),
        claims(nbf=int(NOW) + leeway + 1),
    ):
        with pytest.raises(SignInRejected):
            verify(signed(bad))


def test_the_nonce_must_be_this_sign_ins() -> None:
    for nonce in ("another", NONCE + "x", "", None, 7):
        with pytest.raises(SignInRejected):
            verify(signed(claims(nonce=nonce)))


def test_a_subject_is_required() -> None:
    for sub in ("", None, 12, "x" * 256):
        with pytest.raises(SignInRejected):
            verify(signed(claims(sub=sub)))


DISCOVERY = {
    "issuer": ISSUER,
    "authorization_endpoint": ISSUER + "/auth",
    "token_endpoint": ISSUER + "/token",
    "jwks_uri": ISSUER + "/certs",
    "userinfo_endpoint": ISSUER + "/userinfo",
    "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
    "authorization_response_iss_parameter_supported": True,
}


def test_discovery_must_name_the_configured_issuer() -> None:
    metadata = check_discovery(DISCOVERY, ISSUER)
    assert metadata.signing_algorithms == {"RS256"}
    assert metadata.iss_parameter
    for changed in (
        {"issuer": "https://evil.example"},
        {"issuer": ISSUER + "//"},
        {"issuer": ISSUER[:-1]},
        {"issuer": None},
        {"jwks_uri": None},
        {"token_endpoint": "javascript:alert(1)"},
        {"userinfo_endpoint": 5},
        {"id_token_signing_alg_values_supported": ["HS256", "none"]},
        {"id_token_signing_alg_values_supported": "RS256"},
    ):
        with pytest.raises(ProviderUntrusted):
            check_discovery({**DISCOVERY, **changed}, ISSUER)
    # A trailing slash (Authentik's issuers have one) may be added; it is then exact.
    slashed = check_discovery({**DISCOVERY, "issuer": ISSUER + "/"}, ISSUER)
    assert slashed.issuer == ISSUER + "/"
    check_response_issuer(ISSUER + "/", slashed)
    with pytest.raises(SignInRejected):
        check_response_issuer(ISSUER, slashed)
    bare = {k: v for k, v in DISCOVERY.items() if k not in ("userinfo_endpoint",)}
    del bare["id_token_signing_alg_values_supported"]
    assert check_discovery(bare, ISSUER).signing_algorithms == {"RS256"}


def test_the_redirect_back_must_name_the_provider_it_went_to() -> None:
    announced = check_discovery(DISCOVERY, ISSUER)
    check_response_issuer(ISSUER, announced)
    for iss in ("https://evil.example", ISSUER + "/", None):
        with pytest.raises(SignInRejected):
            check_response_issuer(iss, announced)
    silent = check_discovery(
        {**DISCOVERY, "authorization_response_iss_parameter_supported": False}, ISSUER
    )
    check_response_issuer(None, silent)
    with pytest.raises(SignInRejected):
        check_response_issuer("https://evil.example", silent)


def test_the_identity_made_of_the_claims() -> None:
    identity = identity_from_claims(
        PROVIDER,
        {
            "sub": "user-123",
            "email": "Ada@Uni.example",
            "email_verified": True,
            "name": "Ada Lovelace",
            "groups": ["staff", "staff", 5, "", "x" * 300, "organisers"],
        },
    )
    assert identity.path is Path.OIDC
    assert identity.subject == f"{ISSUER} user-123"
    assert identity.name == "Ada Lovelace"
    assert identity.email == "Ada@Uni.example" and identity.email_verified
    assert identity.issuer == ISSUER and identity.provider == "uni"
    assert identity.groups == ("staff", "organisers")


def test_claims_missing_from_the_id_token_come_from_userinfo_for_the_same_subject() -> None:
    userinfo = {"sub": "user-123", "email": "a@uni.example", "email_verified": True, "name": "X"}
    identity = identity_from_claims(PROVIDER, {"sub": "user-123", "name": "Ada"}, userinfo)
    assert identity.name == "Ada"  # the signed ID token wins
    assert identity.email == "a@uni.example" and identity.email_verified
    with pytest.raises(SignInRejected):
        identity_from_claims(PROVIDER, {"sub": "user-123"}, {**userinfo, "sub": "someone-else"})


def test_email_verified_means_yes_only() -> None:
    for value, verified in (
        (True, True),
        ("true", True),
        ("TRUE", True),
        (False, False),
        ("false", False),
        (1, False),
        ("yes", False),
        (None, False),
    ):
        identity = identity_from_claims(
            PROVIDER, {"sub": "s", "name": "N", "email": "n@uni.example", "email_verified": value}
        )
        assert identity.email_verified is verified, value
    for address in ("not-an-address", "a@b@c", "@uni.example", "a@", "a b@uni.example", 5):
        identity = identity_from_claims(
            PROVIDER, {"sub": "s", "name": "N", "email": address, "email_verified": True}
        )
        assert identity.email is None and not identity.email_verified


def test_the_name_claim_and_its_fallbacks() -> None:
    custom = PROVIDER.model_copy(update={"name_claim": "display", "groups_claim": "roles"})
    identity = identity_from_claims(custom, {"sub": "s", "display": "Dr. Ada", "roles": "staff"})
    assert identity.name == "Dr. Ada" and identity.groups == ("staff",)
    assert identity_from_claims(PROVIDER, {"sub": "s", "preferred_username": "ada"}).name == "ada"
    assert identity_from_claims(PROVIDER, {"sub": "s", "email": "ada.l@uni.example"}).name == (
        "ada.l"
    )
    for nameless in ({"sub": "s"}, {"sub": "s", "name": "\u202e\u200b\n"}, {"sub": "s", "name": 5}):
        with pytest.raises(IdentityIncomplete):
            identity_from_claims(PROVIDER, nameless)
    # A hashed id as the name claim (no name may look like an admission's id): the next claim.
    hashed = "9F" * 32
    claims = {"sub": "s", "name": hashed, "preferred_username": "ada"}
    assert identity_from_claims(PROVIDER, claims).name == "ada"
    claims = {"sub": "s", "name": hashed, "email": hashed.lower() + "@uni.example"}
    with pytest.raises(IdentityIncomplete):
        identity_from_claims(PROVIDER, claims)


def test_names_are_cleaned_of_controls_and_overrides() -> None:
    assert display_name("Ada\u202e ecalevoL") == "Ada ecalevoL"
    assert display_name("  Ada\n\tLovelace\x00 ") == "Ada Lovelace"
    assert (
        display_name("\uff37\uff41\uff4e\uff47 \uff24\uff41\uff4e") == "Wang Dan"
    )  # fullwidth letters, NFKC
    assert display_name("x" * 1000) == "x" * 64
    assert display_name("") is None and display_name(None) is None


def test_which_rooms_offer_which_provider() -> None:
    assert not offers(RoomPolicy(), "uni")
    assert offers(RoomPolicy(oidc=True), "uni")
    assert offers(RoomPolicy(oidc=True, oidc_providers=("uni",)), "uni")
    assert not offers(RoomPolicy(oidc=True, oidc_providers=("other",)), "uni")


def test_the_redirect_uri_comes_from_the_public_url() -> None:
    assert redirect_uri("https://meet.example.org", "uni") == (
        "https://meet.example.org/_meetgate/oidc/uni/callback"
    )
    assert redirect_uri("https://meet.example.org/", "uni") == (
        "https://meet.example.org/_meetgate/oidc/uni/callback"
    )


async def test_a_pending_sign_in_is_read_once() -> None:
    pending = PendingSignIns(MemoryStore())
    await pending.set("_state_uni_abc", '{"data": {}}', 3600)
    assert await pending.get("_state_uni_abc") == '{"data": {}}'
    assert await pending.get("_state_uni_abc") is None
    await pending.set("_state_uni_def", "x", 3600)
    await pending.delete("_state_uni_def")
    assert await pending.get("_state_uni_def") is None
