"""Meeting tickets: the exact form prosody expects, key rotation, and every bad ticket refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError, InvalidRoomName, TicketInvalid
from gateway.settings import JitsiSettings, TicketKey, TicketSettings, load_settings
from gateway.store.records import Admission, Role
from gateway.ticket_keys import hmac_key_id, rsa_key_id
from gateway.tickets import TicketAuthority, TicketClaims

NOW = 1_800_000_000.0
TTL = 120
SKEW = 30
SECRET = secrets.token_urlsafe(48)
OLD_SECRET = secrets.token_urlsafe(48)
# The ids Meetgate derives for these secrets.
K1 = hmac_key_id(SECRET.encode())
OLD_KID = hmac_key_id(OLD_SECRET.encode())
JITSI = JitsiSettings(app_id="meetgate-test", audience="jitsi-test", xmpp_domain="meet.example")


def make_authority(
    keys: dict[str, str] | None = None, active: str | None = None
) -> TicketAuthority:
    """An HS256 authority with `keys` (a label for each secret); `active` labels the one that
    signs (default: the first)."""
    keys = {"k1": SECRET} if keys is None else keys
    tickets = TicketSettings(
        keys=[TicketKey.model_validate({"secret": s}) for s in keys.values()],
        active_kid=hmac_key_id(keys[active].encode()) if active else None,
        ttl_seconds=TTL,
        clock_skew_seconds=SKEW,
    )
    return TicketAuthority(tickets, JITSI)


def make_admission(role: Role = Role.ATTENDEE, room: str = "team-call") -> Admission:
    return Admission(
        id="adm-" + secrets.token_hex(8),
        room=room,
        identity="user-7f3a",
        name="Ada Lovelace",
        role=role,
        via="invite",
        created_at=NOW - 60,
        expires_at=NOW + 3600,
    )


@pytest.fixture
def authority() -> TicketAuthority:
    return make_authority()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def craft(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: bytes = SECRET.encode(),
    digest: Any = hashlib.sha256,
) -> str:
    """Sign by hand, so a test can build tokens PyJWT itself refuses to make."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = hmac.new(key, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def good_header(**changes: Any) -> dict[str, Any]:
    return {"alg": "HS256", "typ": "JWT", "kid": K1, **changes}


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(NOW)
    claims: dict[str, Any] = {
        "iss": "meetgate-test",
        "aud": "jitsi-test",
        "sub": "meet.example",
        "room": "team-call",
        "iat": now,
        "nbf": now - SKEW,
        "exp": now + TTL,
        "jti": "j-" + secrets.token_urlsafe(8),
        "adm": "adm-1",
        "context": {
            "user": {"id": "user-7f3a", "name": "Ada Lovelace", "moderator": False},
            "features": {"name-readonly": True},
        },
    }
    claims.update(changes)
    return claims


def assert_refused(authority: TicketAuthority, token: str, now: float = NOW) -> TicketInvalid:
    with pytest.raises(TicketInvalid) as caught:
        authority.verify(token, now)
    error = caught.value
    # The generic public message, never anything from the token.
    assert str(error) == TicketInvalid.message
    return error


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- issuing -----------------------------------------------------------------------------------


def test_round_trip(authority: TicketAuthority) -> None:
    admission = make_admission()
    token = authority.issue(admission, NOW)

    claims = authority.verify(token, NOW + 1)

    assert isinstance(claims, TicketClaims)
    assert claims.room == "team-call"
    assert claims.admission_id == admission.id
    assert claims.user_id == "user-7f3a"
    assert claims.name == "Ada Lovelace"
    assert claims.moderator is False
    assert claims.not_before == int(NOW) - SKEW
    assert claims.expires_at == int(NOW) + TTL
    assert claims.jti


def test_claims_form_is_what_prosody_expects(authority: TicketAuthority) -> None:
    admission = make_admission()
    token = authority.issue(admission, NOW + 0.75)

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert header == {"alg": "HS256", "typ": "JWT", "kid": K1}
    assert set(claims) == {
        "iss",
        "aud",
        "sub",
        "room",
        "iat",
        "nbf",
        "exp",
        "jti",
        "adm",
        "context",
    }
    assert claims["iss"] == "meetgate-test"
    assert isinstance(claims["aud"], str)
    assert claims["aud"] == "jitsi-test"
    assert claims["sub"] == "meet.example"
    assert claims["room"] == "team-call"
    assert claims["adm"] == admission.id
    for name in ("iat", "nbf", "exp"):
        assert type(claims[name]) is int
    assert claims["iat"] == int(NOW)
    # Backdated by the clock-skew allowance, for a prosody whose clock is a little behind.
    assert claims["nbf"] == int(NOW) - SKEW == claims["iat"] - authority.clock_skew_seconds
    assert claims["exp"] - claims["iat"] == TTL == authority.ttl_seconds
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 20
    assert claims["context"] == {
        "user": {"id": "user-7f3a", "name": "Ada Lovelace", "moderator": False},
        "features": {"name-readonly": True},
    }


@pytest.mark.parametrize(("role", "moderator"), [(Role.HOST, True), (Role.ATTENDEE, False)])
def test_only_hosts_are_moderators(authority: TicketAuthority, role: Role, moderator: bool) -> None:
    token = authority.issue(make_admission(role=role), NOW)

    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["context"]["user"]["moderator"] is moderator
    assert raw["context"]["features"]["name-readonly"] is True
    assert authority.verify(token, NOW).moderator is moderator


def test_every_ticket_has_its_own_jti(authority: TicketAuthority) -> None:
    admission = make_admission()
    jtis = {authority.verify(authority.issue(admission, NOW), NOW).jti for _ in range(50)}
    assert len(jtis) == 50


def test_tickets_stay_small(authority: TicketAuthority) -> None:
    assert len(authority.issue(make_admission(), NOW)) < 600


@pytest.mark.parametrize("room", ["*", "Team-Call", ".*", "team call", "-team", "a" * 65, ""])
def test_never_issues_a_wildcard_or_invalid_room(authority: TicketAuthority, room: str) -> None:
    with pytest.raises(InvalidRoomName):
        authority.issue(make_admission(room=room), NOW)


def test_from_settings_with_ephemeral_secrets() -> None:
    settings = load_settings(environ={})
    authority = TicketAuthority.from_settings(settings)

    token = authority.issue(make_admission(), NOW)

    assert jwt.get_unverified_header(token)["kid"] == settings.tickets.signing_kid
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["iss"] == settings.jitsi.app_id
    assert raw["aud"] == settings.jitsi.audience
    assert raw["sub"] == settings.jitsi.xmpp_domain
    assert authority.ttl_seconds == settings.tickets.ttl_seconds
    assert authority.verify(token, NOW).room == "team-call"


# --- key ids ------------------------------------------------------------------------------------

# RFC 7638 section 3.1: an RSA public key and its JWK thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
KID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def test_rsa_kid_is_the_rfc7638_thumbprint() -> None:
    modulus = int.from_bytes(base64.urlsafe_b64decode(RFC7638_N + "=" * (-len(RFC7638_N) % 4)))
    key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert rsa_key_id(key) == RFC7638_THUMBPRINT


def test_rsa_kid_agrees_with_pyjwt_jwk(rsa_key: rsa.RSAPrivateKey) -> None:
    """The thumbprint of the JWK PyJWT makes of the key, computed as RFC 7638 says."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    members = json.dumps({name: jwk[name] for name in ("e", "kty", "n")}, separators=(",", ":"))
    assert rs_kid(rsa_key) == b64url(hashlib.sha256(members.encode()).digest())


def test_the_same_key_always_gets_the_same_kid(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "key.pem"
    path.write_text(pem_of(rsa_key))
    inline = TicketKey.model_validate({"private_key": pem_of(rsa_key)})
    from_file = load_settings(
        rs_config(tmp_path, f'[[tickets.keys]]\nprivate_key_file = "{path}"'), environ={}
    ).tickets.keys[0]
    # A PKCS#1 PEM of the same key is another text of the same key.
    pkcs1 = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    traditional = TicketKey.model_validate({"private_key": pkcs1})
    assert inline.key_id == from_file.key_id == traditional.key_id == rs_kid(rsa_key)
    assert TicketKey(secret=SECRET).key_id == TicketKey(secret=SECRET).key_id == K1


def test_two_rsa_keys_never_share_a_kid(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    assert rs_kid(rsa_key) != rs_kid(other_rsa_key)
    for kid in (rs_kid(rsa_key), rs_kid(other_rsa_key)):
        assert KID_PATTERN.fullmatch(kid)


@given(st.lists(st.text(min_size=32, max_size=80), min_size=2, max_size=6, unique=True))
def test_two_secrets_never_share_a_kid(secrets_: list[str]) -> None:
    kids = [hmac_key_id(secret.encode()) for secret in secrets_]
    assert len(set(kids)) == len(kids)
    for secret, kid in zip(secrets_, kids, strict=True):
        assert KID_PATTERN.fullmatch(kid) and kid.startswith("hs-")
        # A hash, not the secret: nothing of it shows (a ticket's header is public).
        assert secret not in kid and secret[:12] not in kid


def test_a_written_kid_must_be_the_derived_one(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """An existing config names its key "k<date>": it stops with a clear error that says what to
    do, never signs on under a kid prosody may have cached for another key."""
    path = tmp_path / "k20261125.pem"
    path.write_text(pem_of(rsa_key))
    written = f'[[tickets.keys]]\nkid = "k20261125"\nprivate_key_file = "{path}"'
    report = settings_problems(rs_config(tmp_path, written))
    assert "[tickets] keys[0] (MEETGATE_TICKETS__KEYS)" in report
    expected = f"kid 'k20261125' is not the id of its key ({path}), which is {rs_kid(rsa_key)!r}"
    assert expected in report
    assert "delete the kid line" in report
    hs = settings_problems(
        rs_config(tmp_path, f'[[tickets.keys]]\nkid = "k1"\nsecret = "{SECRET}"', "HS256")
    )
    assert f"kid 'k1' is not the id of its key, which is {K1!r}" in hs
    # The derived id itself may be written out.
    same = f'[[tickets.keys]]\nkid = "{rs_kid(rsa_key)}"\nprivate_key_file = "{path}"'
    assert load_settings(rs_config(tmp_path, same), environ={}).tickets.signing_kid == rs_kid(
        rsa_key
    )


def test_active_kid_names_a_derived_id(tmp_path: Path) -> None:
    keys = f'active_kid = "k1"\n[[tickets.keys]]\nsecret = "{SECRET}"'
    report = settings_problems(rs_config(tmp_path, keys, "HS256"))
    assert "[tickets] (MEETGATE_TICKETS__…): active_kid 'k1'" in report
    assert f"active_kid 'k1' is not the id of any key (they are {K1!r}" in report
    assert make_authority({"a": SECRET, "b": OLD_SECRET}, active="b").signing_kid == OLD_KID
    assert make_authority({"a": SECRET, "b": OLD_SECRET}).signing_kid == K1


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"keys\[1\] is the same key as keys\[0\]"):
        make_authority({"a": SECRET, "b": SECRET})


# --- clock skew --------------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [0, 1, 30, 300])
def test_nbf_is_backdated_by_the_allowance(skew: int) -> None:
    tickets = TicketSettings(keys=[TicketKey(secret=SECRET)], clock_skew_seconds=skew)
    authority = TicketAuthority(tickets, JITSI)
    token = authority.issue(make_admission(), NOW + 0.5)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == int(NOW)
    assert claims["nbf"] <= claims["iat"] - skew
    assert claims["nbf"] == int(NOW) - skew
    # The gate keeps accepting its own tickets: from nbf on, until exp.
    assert authority.verify(token, NOW - skew).jti == claims["jti"]
    assert_refused(authority, token, now=NOW - skew - 1)


def test_clock_skew_default_and_bounds() -> None:
    assert TicketSettings(keys=[TicketKey(secret=SECRET)]).clock_skew_seconds == 30
    for bad in (-1, 301):
        with pytest.raises(ValueError, match="clock_skew_seconds"):
            TicketSettings(keys=[TicketKey(secret=SECRET)], clock_skew_seconds=bad)


# --- key rotation ------------------------------------------------------------------------------


def test_old_key_verifies_while_configured_and_only_active_key_signs() -> None:
    before = make_authority({"old": OLD_SECRET})
    old_token = before.issue(make_admission(), NOW)

    during = make_authority({"old": OLD_SECRET, "new": SECRET}, active="new")
    new_token = during.issue(make_admission(), NOW)

    assert during.verify(old_token, NOW).room == "team-call"
    assert jwt.get_unverified_header(old_token)["kid"] == OLD_KID
    assert jwt.get_unverified_header(new_token)["kid"] == K1
    assert during.verify(new_token, NOW).room == "team-call"
    assert_refused(before, new_token)


def test_removed_key_is_refused() -> None:
    old_token = make_authority({"old": OLD_SECRET}).issue(make_admission(), NOW)
    after = make_authority({"new": SECRET})

    assert_refused(after, old_token)


def test_kid_selects_the_key(authority: TicketAuthority) -> None:
    both = make_authority({"old": OLD_SECRET, "k1": SECRET}, active="k1")
    # Signed with the old secret but labelled with the active kid.
    assert_refused(both, craft(good_header(), good_claims(), OLD_SECRET.encode()))
    # And the right secret under the wrong label.
    assert_refused(both, craft(good_header(kid=OLD_KID), good_claims(), SECRET.encode()))


# --- refused tickets: every test starts from a crafted token that verifies ----------------------


def test_crafted_baseline_verifies(authority: TicketAuthority) -> None:
    claims = authority.verify(craft(good_header(), good_claims()), NOW)
    assert claims.admission_id == "adm-1"


def test_alg_none_is_refused(authority: TicketAuthority) -> None:
    unsigned = f"{b64json(good_header(alg='none'))}.{b64json(good_claims())}."
    assert_refused(authority, unsigned)
    assert_refused(authority, unsigned + b64url(b"x" * 32))
    assert_refused(authority, craft(good_header(alg="none"), good_claims()))


@pytest.mark.parametrize("alg", ["None", "NONE", "hs256", "HS384", "HS512", "RS256", "ES256", ""])
def test_other_algorithms_are_refused(authority: TicketAuthority, alg: str) -> None:
    digest = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}.get(alg, hashlib.sha256)
    assert_refused(authority, craft(good_header(alg=alg), good_claims(), digest=digest))


def test_rs256_token_is_refused(authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(good_claims(), rsa_key, algorithm="RS256", headers={"kid": K1})
    assert jwt.get_unverified_header(token)["alg"] == "RS256"

    assert_refused(authority, token)


def test_hmac_with_rsa_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    authority = make_authority()

    assert_refused(authority, craft(good_header(alg="RS256"), good_claims(), public_pem))
    assert_refused(authority, craft(good_header(), good_claims(), public_pem))


@pytest.mark.parametrize(
    "kid",
    ["k2", "", K1.upper(), K1 + " ", "../" + K1, K1[:-1], OLD_KID, "k1", 1, None, [K1]],
    # Named, not shown: K1 comes of a key made at import, which each xdist worker makes anew.
    ids=["k2", "empty", "upper", "space", "dotdot", "cut", "old", "k1", "int", "none", "list"],
)
def test_unknown_kid_is_refused(authority: TicketAuthority, kid: Any) -> None:
    assert_refused(authority, craft(good_header(kid=kid), good_claims()))


def test_missing_kid_is_refused(authority: TicketAuthority) -> None:
    header = good_header()
    del header["kid"]
    assert_refused(authority, craft(header, good_claims()))


@pytest.mark.parametrize("typ", ["JWS", "jwt", "at+jwt", "", None, 1])
def test_typ_other_than_jwt_is_refused(authority: TicketAuthority, typ: Any) -> None:
    assert_refused(authority, craft(good_header(typ=typ), good_claims()))


def test_missing_typ_is_refused(authority: TicketAuthority) -> None:
    header = good_header()
    del header["typ"]
    assert_refused(authority, craft(header, good_claims()))


@pytest.mark.parametrize(
    "extra", [{"jku": "https://evil.example/keys"}, {"crit": ["exp"]}, {"b64": False}]
)
def test_unexpected_header_fields_are_refused(
    authority: TicketAuthority, extra: dict[str, Any]
) -> None:
    assert_refused(authority, craft(good_header(**extra), good_claims()))


def test_expired_ticket_is_refused(authority: TicketAuthority) -> None:
    token = authority.issue(make_admission(), NOW)
    exp = int(NOW) + TTL

    assert authority.verify(token, exp - 0.001).room == "team-call"
    assert_refused(authority, token, now=exp)
    assert_refused(authority, token, now=exp + 3600)


def test_ticket_before_nbf_is_refused(authority: TicketAuthority) -> None:
    token = authority.issue(make_admission(), NOW)

    assert authority.verify(token, NOW - SKEW).room == "team-call"
    assert_refused(authority, token, now=NOW - SKEW - 1)
    later = craft(good_header(), good_claims(nbf=int(NOW) + 30))
    assert_refused(authority, later, now=NOW)
    assert authority.verify(later, NOW + 30).room == "team-call"


def test_ticket_issued_in_the_future_is_refused(authority: TicketAuthority) -> None:
    # Another replica's clock may be ahead by up to the allowance; beyond it, not one of ours.
    ahead = craft(good_header(), good_claims(iat=int(NOW) + SKEW, nbf=int(NOW)))
    assert authority.verify(ahead, NOW).room == "team-call"
    assert_refused(authority, craft(good_header(), good_claims(iat=int(NOW) + SKEW + 1)))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["1800000060", 1.8e9 + 60.5, True, None, [1]])
def test_non_integer_times_are_refused(authority: TicketAuthority, claim: str, value: Any) -> None:
    assert_refused(authority, craft(good_header(), good_claims(**{claim: value})))


@pytest.mark.parametrize("iss", ["meetgate", "meetgate-test ", "", ["meetgate-test"], None])
def test_wrong_iss_is_refused(authority: TicketAuthority, iss: Any) -> None:
    assert_refused(authority, craft(good_header(), good_claims(iss=iss)))


@pytest.mark.parametrize("aud", ["jitsi", "*", "", None, 1])
def test_wrong_aud_is_refused(authority: TicketAuthority, aud: Any) -> None:
    assert_refused(authority, craft(good_header(), good_claims(aud=aud)))


@pytest.mark.parametrize("aud", [["jitsi-test"], ["jitsi-test", "other"]])
def test_aud_as_a_list_is_refused(authority: TicketAuthority, aud: list[str]) -> None:
    assert_refused(authority, craft(good_header(), good_claims(aud=aud)))


@pytest.mark.parametrize("sub", ["meet.jitsi", "*", "", None, ["meet.example"]])
def test_wrong_sub_is_refused(authority: TicketAuthority, sub: Any) -> None:
    assert_refused(authority, craft(good_header(), good_claims(sub=sub)))


@pytest.mark.parametrize(
    "claim", ["room", "jti", "adm", "exp", "nbf", "iat", "iss", "aud", "sub", "context"]
)
def test_missing_claim_is_refused(authority: TicketAuthority, claim: str) -> None:
    claims = good_claims()
    del claims[claim]
    assert_refused(authority, craft(good_header(), claims))


@pytest.mark.parametrize(
    "room",
    ["*", ".*", "team.*", "Team-Call", "team-call\n", "-team", "a" * 65, "", "tëam", 7, None],
)
def test_wildcard_or_invalid_room_is_refused(authority: TicketAuthority, room: Any) -> None:
    assert_refused(authority, craft(good_header(), good_claims(room=room)))


@pytest.mark.parametrize(
    "changes",
    [
        {"jti": ""},
        {"jti": 5},
        {"adm": ""},
        {"adm": 5},
        {"context": "user"},
        {"context": {"features": {}}},
        {"context": {"user": {"id": "u", "name": "n", "moderator": "true"}}},
        {"context": {"user": {"id": "u", "moderator": False}}},
        {"context": {"user": {"id": 1, "name": "n", "moderator": False}}},
    ],
)
def test_malformed_claims_are_refused(authority: TicketAuthority, changes: dict[str, Any]) -> None:
    assert_refused(authority, craft(good_header(), good_claims(**changes)))


def test_signature_with_another_secret_is_refused(authority: TicketAuthority) -> None:
    assert_refused(authority, craft(good_header(), good_claims(), secrets.token_bytes(48)))


def test_any_changed_character_is_refused(authority: TicketAuthority) -> None:
    token = authority.issue(make_admission(), NOW)
    for index, char in enumerate(token):
        if char == ".":
            continue
        for replacement in {"A", "B", "f", "_"} - {char}:
            forged = token[:index] + replacement + token[index + 1 :]
            with pytest.raises(TicketInvalid):
                authority.verify(forged, NOW)


def test_non_canonical_signature_encoding_is_refused(authority: TicketAuthority) -> None:
    # A 32-byte signature is 43 base64url characters; the last one carries 2 unused bits.
    # Setting them decodes to the same bytes; older PyJWT releases accepted the altered string.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = authority.issue(make_admission(), NOW)
    last = alphabet.index(token[-1])
    assert last % 4 == 0
    for low_bits in (1, 2, 3):
        twin = token[:-1] + alphabet[last + low_bits]
        assert base64.urlsafe_b64decode(twin.rsplit(".", 1)[1] + "=") == base64.urlsafe_b64decode(
            token.rsplit(".", 1)[1] + "="
        )
        assert_refused(authority, twin)


def test_tampered_payload_is_refused(authority: TicketAuthority) -> None:
    header, _, signature = authority.issue(make_admission(), NOW).split(".")
    raised = b64json(good_claims(room="other-room"))
    assert_refused(authority, f"{header}.{raised}.{signature}")


def test_jwt_errors_are_translated_once(authority: TicketAuthority) -> None:
    error = assert_refused(authority, craft(good_header(), good_claims(), b"x" * 48))
    assert isinstance(error.__cause__, jwt.InvalidSignatureError)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "a.b",
        "a.b.c",
        "..",
        "a.b.c.d",
        "x" * 10_240,
        ".".join(["A" * 3400] * 3),
        "ä.ö.ü",
        "тикет.тикет.тикет",
        "\x00\x00.\x00.\x00",
        "eyJ.eyJ.eyJ",
        " " * 20,
    ],
)
def test_garbage_is_refused(authority: TicketAuthority, token: str) -> None:
    assert_refused(authority, token)


def test_whitespace_around_a_valid_ticket_is_refused(authority: TicketAuthority) -> None:
    token = authority.issue(make_admission(), NOW)
    for padded in (f" {token}", f"{token}\n", f"{token}=", token.replace(".", ". ", 1)):
        assert_refused(authority, padded)


@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_ticket_invalid(text: str) -> None:
    with pytest.raises(TicketInvalid):
        make_authority().verify(text, NOW)


@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=64))
def test_arbitrary_segments_raise_only_ticket_invalid(
    header: bytes, payload: bytes, signature: bytes
) -> None:
    token = ".".join(b64url(part) for part in (header, payload, signature))
    with pytest.raises(TicketInvalid):
        make_authority().verify(token, NOW)


# --- RS256: prosody fetches the public key from Meetgate and holds no secret ----------------------


def pem_of(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_pem_of(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rs_kid(key: rsa.RSAPrivateKey) -> str:
    return rsa_key_id(key.public_key())


def make_rs_authority(
    keys: list[rsa.RSAPrivateKey], active: rsa.RSAPrivateKey | None = None
) -> TicketAuthority:
    """An RS256 authority with `keys`; `active` signs (default: the first)."""
    tickets = TicketSettings(
        algorithm="RS256",
        keys=[TicketKey.model_validate({"private_key": pem_of(key)}) for key in keys],
        active_kid=rs_kid(active) if active else None,
        ttl_seconds=TTL,
        clock_skew_seconds=SKEW,
    )
    return TicketAuthority(tickets, JITSI)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rs_authority(rsa_key: rsa.RSAPrivateKey) -> TicketAuthority:
    # One for the module: an authority holds nothing that changes once it is made, and loading
    # its private key (with the key's checks) takes 0.15 s of CPU each time.
    return make_rs_authority([rsa_key])


def rs_craft(key: rsa.RSAPrivateKey, claims: dict[str, Any] | None = None, **header: Any) -> str:
    """An RS256 token as PyJWT makes it: header {alg, typ, kid}, kid `key`'s own by default."""
    return jwt.encode(
        good_claims() if claims is None else claims,
        key,
        algorithm="RS256",
        headers={"kid": rs_kid(key), **header},
    )


def prosody_path(token: str) -> str:
    """What prosody's mod_auth_token asks the key server for: hex(sha256(kid)).pem."""
    kid = jwt.get_unverified_header(token)["kid"]
    return hashlib.sha256(kid.encode()).hexdigest() + ".pem"


def test_rs256_round_trip_verifies_as_prosody_would(
    rs_authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = rs_authority.issue(make_admission(role=Role.HOST), NOW)

    assert jwt.get_unverified_header(token) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": rs_kid(rsa_key),
    }
    assert rs_authority.verify(token, NOW + 1).moderator is True
    served = rs_authority.public_key(prosody_path(token))
    assert served == public_pem_of(rsa_key)
    assert served is not None and served.startswith(b"-----BEGIN PUBLIC KEY-----")
    # Prosody checks the signature with that PEM alone.
    claims = jwt.decode(
        token,
        served,
        algorithms=["RS256"],
        audience="jitsi-test",
        issuer="meetgate-test",
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert claims["room"] == "team-call" and claims["sub"] == "meet.example"


def test_rs256_crafted_baseline_verifies(
    rs_authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey
) -> None:
    assert rs_authority.verify(rs_craft(rsa_key), NOW).admission_id == "adm-1"


def test_public_key_names_are_checked_strictly(
    rs_authority: TicketAuthority, authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey
) -> None:
    name = hashlib.sha256(rs_kid(rsa_key).encode()).hexdigest() + ".pem"
    assert rs_authority.public_key(name) is not None
    for bad in (
        name.upper(),
        name[:-4].upper() + ".pem",
        name[1:],
        "0" + name,
        name[:-4],
        name + "\n",
        name[:-4] + ".PEM",
        "../" + name,
        hashlib.sha256(b"r1").hexdigest() + ".pem",
        hashlib.sha256(b"").hexdigest() + ".pem",
        rs_kid(rsa_key),
        "",
    ):
        assert rs_authority.public_key(bad) is None, bad
    # HS256 has no public key: the endpoint serves nothing.
    assert authority.public_key(hashlib.sha256(K1.encode()).hexdigest() + ".pem") is None


def test_rs256_rotation_serves_and_verifies_every_configured_key(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    before = make_rs_authority([rsa_key])
    old_token = before.issue(make_admission(), NOW)

    during = make_rs_authority([rsa_key, other_rsa_key], active=other_rsa_key)
    new_token = during.issue(make_admission(), NOW)

    assert jwt.get_unverified_header(new_token)["kid"] == rs_kid(other_rsa_key)
    assert during.verify(old_token, NOW).room == "team-call"
    assert during.verify(new_token, NOW).room == "team-call"
    assert during.public_key(prosody_path(old_token)) == public_pem_of(rsa_key)
    assert during.public_key(prosody_path(new_token)) == public_pem_of(other_rsa_key)
    assert_refused(before, new_token)
    after = make_rs_authority([other_rsa_key])
    assert_refused(after, old_token)
    assert after.public_key(prosody_path(old_token)) is None


def test_rs256_alg_none_is_refused(
    rs_authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey
) -> None:
    header = {"alg": "none", "typ": "JWT", "kid": rs_kid(rsa_key)}
    unsigned = f"{b64json(header)}.{b64json(good_claims())}."
    assert_refused(rs_authority, unsigned)
    assert_refused(rs_authority, unsigned + b64url(b"x" * 256))


def test_hs256_signed_with_the_public_key_is_refused(
    rs_authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The classic confusion: HMAC keyed with the public PEM anyone can fetch."""
    kid = rs_kid(rsa_key)
    public_pem = rs_authority.public_key(hashlib.sha256(kid.encode()).hexdigest() + ".pem")
    assert public_pem is not None
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    assert_refused(rs_authority, craft(hs_header, good_claims(), public_pem))
    assert_refused(rs_authority, craft(hs_header, good_claims(), public_pem.strip()))
    # Labelled RS256 but an HMAC underneath.
    rs_header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    assert_refused(rs_authority, craft(rs_header, good_claims(), public_pem))


@pytest.mark.parametrize("alg", ["HS256", "RS384", "RS512", "PS256", "ES256", "rs256", ""])
def test_rs256_refuses_other_algorithms(
    rs_authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey, alg: str
) -> None:
    _, payload, signature = rs_craft(rsa_key).split(".")
    relabelled = b64json({"alg": alg, "typ": "JWT", "kid": rs_kid(rsa_key)})
    assert_refused(rs_authority, f"{relabelled}.{payload}.{signature}")
    if alg in ("RS384", "RS512", "PS256"):
        assert_refused(
            rs_authority,
            jwt.encode(good_claims(), rsa_key, algorithm=alg, headers={"kid": rs_kid(rsa_key)}),
        )


def test_hs256_authority_refuses_rs256_tickets(
    authority: TicketAuthority, rs_authority: TicketAuthority
) -> None:
    assert_refused(authority, rs_authority.issue(make_admission(), NOW))
    assert_refused(rs_authority, authority.issue(make_admission(), NOW))


@pytest.mark.parametrize("kid", ["r2", "k1", "upper", "short", "", None, 1])
def test_rs256_unknown_kid_is_refused(
    rs_authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey, kid: Any
) -> None:
    kid = {"upper": rs_kid(rsa_key).upper(), "short": rs_kid(rsa_key)[:-1]}.get(kid, kid)
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    _, payload, signature = rs_craft(rsa_key).split(".")
    assert_refused(rs_authority, f"{b64json(header)}.{payload}.{signature}")


def test_rs256_kid_selects_the_key(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    both = make_rs_authority([rsa_key, other_rsa_key])
    assert both.verify(rs_craft(other_rsa_key), NOW).room == "team-call"
    # Signed with the other key, labelled the first; and a stranger's key under a known kid.
    assert_refused(both, rs_craft(other_rsa_key, kid=rs_kid(rsa_key)))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_refused(both, rs_craft(stranger, kid=rs_kid(rsa_key)))


def test_rs256_expired_or_early_ticket_is_refused(rs_authority: TicketAuthority) -> None:
    token = rs_authority.issue(make_admission(), NOW)
    exp = int(NOW) + TTL
    assert rs_authority.verify(token, exp - 0.001).room == "team-call"
    assert_refused(rs_authority, token, now=exp)
    assert_refused(rs_authority, token, now=NOW - SKEW - 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "jitsi"},
        {"aud": ["jitsi-test"]},
        {"iss": "meetgate"},
        {"sub": "*"},
        {"room": "*"},
        {"room": "Team-Call"},
        {"exp": int(NOW)},
    ],
)
def test_rs256_wrong_claims_are_refused(
    rs_authority: TicketAuthority, rsa_key: rsa.RSAPrivateKey, changes: dict[str, Any]
) -> None:
    assert_refused(rs_authority, rs_craft(rsa_key, good_claims(**changes)))


def test_rs256_tampered_ticket_is_refused(rs_authority: TicketAuthority) -> None:
    token = rs_authority.issue(make_admission(), NOW)
    header, _, signature = token.split(".")
    assert_refused(rs_authority, f"{header}.{b64json(good_claims(room='other'))}.{signature}")
    for index, char in enumerate(token):
        if char == ".":
            continue
        replacement = "A" if char != "A" else "B"
        forged = token[:index] + replacement + token[index + 1 :]
        with pytest.raises(TicketInvalid):
            rs_authority.verify(forged, NOW)


def test_rs256_non_canonical_signature_encoding_is_refused(
    rs_authority: TicketAuthority,
) -> None:
    # 256 signature bytes are 342 base64url characters; the last carries 4 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = rs_authority.issue(make_admission(), NOW)
    last = alphabet.index(token[-1])
    assert last % 16 == 0
    for low_bits in (1, 7, 15):
        assert_refused(rs_authority, token[:-1] + alphabet[last + low_bits])


def test_rs256_from_a_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    (tmp_path / "tickets").mkdir()
    (tmp_path / "tickets" / "r1.pem").write_text(pem_of(rsa_key))
    config = tmp_path / "meetgate.toml"
    config.write_text(
        f"""[admin]
token = "{"a" * 40}"
[tickets]
algorithm = "RS256"
[[tickets.keys]]
private_key_file = "tickets/r1.pem"
[admission]
pseudonym_key = "{"p" * 40}"
""",
        encoding="utf-8",
    )
    # A relative path is found next to the config file, wherever the process runs.
    settings = load_settings(config, environ={})
    key = settings.tickets.keys[0]
    assert key.private_key_file is not None
    assert key.private_key_file.path == tmp_path / "tickets" / "r1.pem"
    assert "BEGIN" not in repr(settings)
    authority = TicketAuthority.from_settings(settings)
    token = authority.issue(make_admission(), NOW)
    assert authority.public_key(prosody_path(token)) == public_pem_of(rsa_key)


# --- RS256 keys are checked when the settings load ------------------------------------------------


def rs_config(tmp_path: Path, keys: str, algorithm: str = "RS256") -> Path:
    config = tmp_path / "meetgate.toml"
    config.write_text(
        f"""[admin]
token = "{"a" * 40}"
[tickets]
algorithm = "{algorithm}"
{keys}
[admission]
pseudonym_key = "{"p" * 40}"
""",
        encoding="utf-8",
    )
    return config


def settings_problems(config: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    return str(caught.value)


FILE_KEY = "[tickets] keys[0].private_key_file (MEETGATE_TICKETS__KEYS)"


def test_missing_key_file_is_a_clear_settings_error(tmp_path: Path) -> None:
    config = rs_config(tmp_path, '[[tickets.keys]]\nprivate_key_file = "nope.pem"')
    report = settings_problems(config)
    assert f"{FILE_KEY}: {tmp_path / 'nope.pem'} does not exist" in report
    assert "Traceback" not in report


def test_unreadable_key_file_is_a_clear_settings_error(tmp_path: Path) -> None:
    (tmp_path / "dir.pem").mkdir()
    config = rs_config(tmp_path, '[[tickets.keys]]\nprivate_key_file = "dir.pem"')
    assert f"{FILE_KEY}: {tmp_path / 'dir.pem'} cannot be read" in settings_problems(config)


def key_file(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return f'[[tickets.keys]]\nprivate_key_file = "{path}"'


def test_small_rsa_key_is_refused_at_load(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point)
    report = settings_problems(rs_config(tmp_path, key_file(tmp_path, "small.pem", pem_of(small))))
    assert FILE_KEY in report and "1024-bit RSA key: use at least 2048 bits" in report
    inline = f'[[tickets.keys]]\nprivate_key = """{pem_of(small)}"""'
    report = settings_problems(rs_config(tmp_path, inline))
    assert "[tickets] keys[0].private_key (MEETGATE_TICKETS__KEYS): is a 1024-bit" in report


def test_keys_that_are_not_rsa_private_keys_are_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    cases = {
        "ec.pem": (ec_pem, "is not an RSA key"),
        "public.pem": (public_pem_of(rsa_key), "is not a PEM private key"),
        "garbage.pem": ("not a key", "is not a PEM private key"),
        "encrypted.pem": (encrypted, "is encrypted with a passphrase"),
        "huge.pem": ("x" * 100_000, "is too large"),
    }
    for name, (text, message) in cases.items():
        report = settings_problems(rs_config(tmp_path, key_file(tmp_path, name, text)))
        assert FILE_KEY in report and message in report, (name, report)
        # Never the key itself in the report (PEM bodies of keys start with "MII").
        assert "MII" not in report


def test_one_algorithm_and_one_kind_of_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    rs_key = key_file(tmp_path, "r1.pem", pem_of(rsa_key))
    hs_key = f'[[tickets.keys]]\nsecret = "{SECRET}"'
    mixed = settings_problems(rs_config(tmp_path, f"{rs_key}\n{hs_key}"))
    assert f"keys[1] ({K1!r}) has a secret, but algorithm is RS256" in mixed
    as_hs = settings_problems(rs_config(tmp_path, rs_key, algorithm="HS256"))
    assert f"keys[0] ({rs_kid(rsa_key)!r}) has a private key, but algorithm is HS256" in as_hs
    both = settings_problems(rs_config(tmp_path, f'{rs_key}\nsecret = "{SECRET}"'))
    assert "[tickets] keys[0] (MEETGATE_TICKETS__KEYS)" in both
    assert "exactly one of secret" in both
    neither = settings_problems(rs_config(tmp_path, "[[tickets.keys]]"))
    assert "it has none" in neither
    unknown = settings_problems(rs_config(tmp_path, rs_key, algorithm="RS512"))
    assert "[tickets] algorithm (MEETGATE_TICKETS__ALGORITHM)" in unknown


def test_key_file_from_the_environment(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "r9.pem"
    path.write_text(pem_of(rsa_key))
    keys = json.dumps([{"private_key_file": str(path)}])
    settings = load_settings(
        rs_config(tmp_path, '[[tickets.keys]]\nsecret = "' + SECRET + '"'),
        environ={"MEETGATE_TICKETS__KEYS": keys},
    )
    assert settings.tickets.algorithm == "RS256"
    assert settings.tickets.signing_kid == rs_kid(rsa_key)
