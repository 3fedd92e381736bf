"""`meetgate doctor` on the identity paths, its pure verdicts: the provider's answer to the gate's
authorization request, and a published key set (tests/deploy/test_doctor_identity.py runs the
command against both real provider implementations)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.doctor_findings import Verdict
from gateway.doctor_identity import keys_finding, redirect_finding

REDIRECT = "https://meet.example.org/_meetgate/oidc/idp/callback"


@pytest.mark.parametrize(
    ("status", "location", "verdict"),
    [
        # To the provider's own login: taken.
        (302, "https://idp.example/login?next=/authorize", Verdict.PASS),
        (303, "/interaction/abc", Verdict.PASS),
        # Straight back with a code (a provider that remembers the user): taken.
        (302, REDIRECT + "?code=c&state=s", Verdict.PASS),
        # Back to the gate with an error: refused.
        (302, REDIRECT + "?error=invalid_scope&state=s", Verdict.FAIL),
        (302, REDIRECT + "#error=access_denied", Verdict.FAIL),
        # A page: its "Redirect URI Error" (django-oidc-provider), or a login form.
        (200, None, Verdict.WARN),
        (302, None, Verdict.WARN),
        (400, None, Verdict.FAIL),
        (500, None, Verdict.FAIL),
    ],
)
def test_redirect_verdicts(status: int, location: str | None, verdict: Verdict) -> None:
    finding = redirect_finding("oidc idp redirect", status, location, REDIRECT)
    assert finding.verdict is verdict, finding
    assert REDIRECT in finding.detail


def test_an_error_to_another_address_is_not_the_gates_refusal() -> None:
    """Only a redirect to the gate's own callback carrying error= is the provider refusing; an
    error page of the provider's at another address is its login flow's business."""
    elsewhere = "https://idp.example/error?error=login_required"
    assert redirect_finding("r", 302, elsewhere, REDIRECT).verdict is Verdict.PASS


def test_a_published_private_key_fails() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = RSAAlgorithm.to_jwk(key, as_dict=True)
    public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    algorithms = frozenset({"RS256"})
    assert keys_finding("k", {"keys": [public]}, algorithms, "x").verdict is Verdict.PASS
    finding = keys_finding("k", {"keys": [public, private]}, algorithms, "x")
    assert finding.verdict is Verdict.FAIL and "private" in finding.detail
    secret = {"kty": "oct", "k": "c2VjcmV0"}
    assert keys_finding("k", {"keys": [public, secret]}, algorithms, "x").verdict is Verdict.FAIL
