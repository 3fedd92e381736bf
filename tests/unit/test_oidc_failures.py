"""The pure halves of how a provider's failures are read (issue 18): which error and reason a
failed call becomes, what of a provider's error code may be logged, and when a provider's
discovery document and key set are fetched again; and that closing a provider's client ends its
discovery fetch. The same failures from real servers are in
tests/integration/test_oidc_failures.py."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from authlib.integrations.base_client import MismatchingStateError, MissingTokenError, OAuthError
from authlib.oauth2.rfc6749.errors import MissingCodeException
from joserfc.errors import BadSignatureError, InvalidClaimError

from gateway.admission.oidc import (
    METADATA_MAX_AGE_SECONDS,
    METADATA_RETRY_SECONDS,
    KeySetRefetches,
    MetadataSchedule,
    ProviderFailed,
    ProviderUnavailable,
    SignInDenied,
    SignInExpired,
    SignInRejected,
    callback_error,
    error_code,
)
from gateway.settings import OidcProvider

# authlib's client as signin.py imports it (without the warning authlib gives at import).
from gateway.web.signin import OAuth, ProviderClient, casts_doubt, provider_failure

TOKEN = "https://login.example/token"
KEYS = "https://login.example/jwks"
ENDPOINTS = {TOKEN: "token endpoint", KEYS: "keys"}


def answered(status: int, url: str = TOKEN) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", url)
    response = httpx.Response(status, request=request, text="<html>oops</html>")
    return httpx.HTTPStatusError("failed", request=request, response=response)


class TransportError(Exception):
    """As another httpx (authlib takes `httpx2` when it is installed) names its own."""


class ConnectError(TransportError):
    pass


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (answered(503), ProviderFailed, "token endpoint answered HTTP 503"),
        (answered(404, KEYS), ProviderFailed, "keys answered HTTP 404"),
        (
            httpx.ConnectError("refused", request=httpx.Request("GET", KEYS)),
            ProviderUnavailable,
            "keys unreachable (ConnectError)",
        ),
        (httpx.ReadTimeout("slow"), ProviderUnavailable, "token endpoint unreachable"),
        (ConnectError("refused"), ProviderUnavailable, "token endpoint unreachable"),
        (ConnectionResetError(), ProviderUnavailable, "token endpoint unreachable"),
        (
            json.JSONDecodeError("Expecting value", "<html>", 0),
            ProviderFailed,
            "token endpoint answer unreadable (JSONDecodeError)",
        ),
        (OAuthError(error="invalid_grant"), SignInRejected, "token endpoint error invalid_grant"),
        (OAuthError(error="invalid_client"), ProviderFailed, "token endpoint error invalid_client"),
        (OAuthError(error="bad code <ada@x>"), ProviderFailed, "token endpoint error unreadable"),
        (MismatchingStateError(), SignInExpired, "state mismatch"),
        # What authlib refuses by itself is the answer not holding up, not the provider failing.
        (
            MissingCodeException(),
            SignInRejected,
            "token endpoint refused by authlib (MissingCodeException)",
        ),
        (
            MissingTokenError(),
            SignInRejected,
            "token endpoint refused by authlib (MissingTokenError)",
        ),
        (
            OAuthError(description='Missing "state" parameter'),
            SignInRejected,
            "token endpoint refused by authlib (OAuthError)",
        ),
        (InvalidClaimError("aud"), SignInRejected, "ID token invalid_claim aud"),
        (BadSignatureError(), SignInRejected, "ID token bad_signature"),
        # A kind nobody foresaw is a page too.
        (LookupError("?"), ProviderFailed, "token endpoint failed (LookupError)"),
    ],
)
def test_a_failed_call_becomes_an_error_with_its_reason(
    exc: Exception, kind: type, reason: str
) -> None:
    failure = provider_failure(exc, "token endpoint", ENDPOINTS)
    assert type(failure) is kind
    assert getattr(failure, "reason", "").startswith(reason)


def test_a_5xx_is_the_provider_failing_not_unreachable() -> None:
    failure = provider_failure(answered(502), "token endpoint", ENDPOINTS)
    assert failure.code == "provider_failed" and failure.status == 502
    assert isinstance(failure, ProviderUnavailable)  # caught wherever provider trouble is


@pytest.mark.parametrize(
    ("exc", "step", "doubt"),
    [
        # An endpoint the document names does not answer, or answers as if it were not there.
        (answered(503), "token endpoint", True),
        (answered(500, KEYS), "keys", True),
        (httpx.ConnectError("refused", request=httpx.Request("GET", KEYS)), "keys", True),
        (ConnectionResetError(), "token endpoint", True),
        (json.JSONDecodeError("Expecting value", "<html>", 0), "token endpoint", True),
        # Moved: a redirect (followed by neither httpx nor authlib), not found, gone.
        (answered(404, KEYS), "keys", True),
        (answered(301, KEYS), "keys", True),
        (answered(410), "token endpoint", True),
        # The same endpoint however the URL is spelt: the scheme's port, the host's case, a
        # query (as some providers' key set URLs carry).
        (answered(503, "https://login.example:443/jwks"), "keys", True),
        (answered(503, "https://LOGIN.example/jwks"), "keys", True),
        (answered(503, "https://login.example/jwks?p=b2c_1_signin"), "keys", True),
        # Mended by no fresh document, and within anyone's reach.
        (answered(400), "token endpoint", False),
        (OAuthError(error="invalid_client"), "token endpoint", False),
        (OAuthError(error="invalid_request"), "token endpoint", False),
        (OAuthError(error="invalid_grant"), "token endpoint", False),
        (MissingCodeException(), "token endpoint", False),
        (MissingTokenError(), "userinfo", False),
        (InvalidClaimError("aud"), "token endpoint", False),
        # Not a call to an endpoint the document names.
        (answered(503, "https://elsewhere.example/token"), "token endpoint", False),
        (ConnectionResetError(), "authorization request", False),
    ],
)
def test_only_a_failure_that_may_mean_the_provider_moved_casts_doubt_on_its_document(
    exc: Exception, step: str, doubt: bool
) -> None:
    assert casts_doubt(exc, step, ENDPOINTS) is doubt


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        ("access_denied", "access_denied"),
        ("invalid_grant", "invalid_grant"),
        ("ada@uni.example", "unreadable"),
        ("two words", "unreadable"),
        ("x" * 65, "unreadable"),
        ("", "unreadable"),
        (None, "unreadable"),
        ("d\u00e9nied", "unreadable"),
    ],
)
def test_only_a_short_ascii_error_code_is_logged(sent: object, logged: str) -> None:
    assert error_code(sent) == logged


def test_an_error_on_the_way_back_is_a_refusal_unless_the_provider_failed() -> None:
    for code in ("access_denied", "login_required", "invalid_scope"):
        refusal = callback_error(code)
        assert isinstance(refusal, SignInDenied)
        assert getattr(refusal, "reason", "") == f"callback error {code}"
    for code in ("server_error", "temporarily_unavailable"):
        assert isinstance(callback_error(code), ProviderFailed)


def test_discovery_is_fetched_when_never_fetched_and_retried_at_most_once_an_interval() -> None:
    schedule = MetadataSchedule()
    assert schedule.due(0.0)
    schedule.tried(0.0, fetched=False)
    # A storm of sign-ins while the provider is down: no fetch until the interval has passed.
    assert not schedule.due(0.0)
    assert not schedule.due(METADATA_RETRY_SECONDS - 0.001)
    assert schedule.due(METADATA_RETRY_SECONDS)
    schedule.tried(METADATA_RETRY_SECONDS, fetched=True)
    assert not schedule.due(METADATA_RETRY_SECONDS + 1)


def test_discovery_is_fetched_again_on_schedule_and_after_a_failed_call() -> None:
    schedule = MetadataSchedule()
    schedule.tried(0.0, fetched=True)
    assert not schedule.due(METADATA_MAX_AGE_SECONDS - 1)
    assert schedule.due(METADATA_MAX_AGE_SECONDS)
    # A refresh that fails keeps the old document; the next try waits the interval.
    schedule.tried(METADATA_MAX_AGE_SECONDS, fetched=False)
    assert not schedule.due(METADATA_MAX_AGE_SECONDS + 1)
    assert schedule.due(METADATA_MAX_AGE_SECONDS + METADATA_RETRY_SECONDS)
    # A call to an endpoint failed (the provider may have moved): fetched again, but not
    # sooner than the interval after the last try.
    fresh = MetadataSchedule()
    fresh.tried(100.0, fetched=True)
    fresh.suspect = True
    assert not fresh.due(100.0 + METADATA_RETRY_SECONDS - 1)
    assert fresh.due(100.0 + METADATA_RETRY_SECONDS)
    fresh.tried(100.0 + METADATA_RETRY_SECONDS, fetched=True)
    assert not fresh.suspect
    assert not fresh.due(100.0 + 2 * METADATA_RETRY_SECONDS)


@pytest.mark.parametrize(
    "named",
    [
        "https://login.example:443/jwks",
        "https://LOGIN.example/jwks",
        "https://login.example/jwks?p=b2c_1_signin",
    ],
)
def test_an_endpoint_is_known_however_the_document_spells_it(named: str) -> None:
    endpoints = {TOKEN: "token endpoint", named: "keys"}
    assert casts_doubt(answered(503, KEYS), "token endpoint", endpoints)
    failure = provider_failure(answered(503, KEYS), "token endpoint", endpoints)
    assert getattr(failure, "reason", "") == "keys answered HTTP 503"


def test_a_bad_signature_fetches_the_key_set_again_at_most_once_an_interval() -> None:
    refetches = KeySetRefetches()
    assert refetches.take(50.0)
    # Forged tokens, one after another, or sign-ins at once during a rotation: no more fetches
    # until the interval has passed since the last one.
    assert not refetches.take(50.0)
    assert not refetches.take(50.0 + METADATA_RETRY_SECONDS - 0.001)
    assert refetches.take(50.0 + METADATA_RETRY_SECONDS)
    assert not refetches.take(50.0 + METADATA_RETRY_SECONDS + 1)


async def test_closing_ends_a_discovery_fetch_that_hangs() -> None:
    # A provider that takes the connection (the kernel's backlog) and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        issuer = f"http://127.0.0.1:{silent.getsockname()[1]}"
        provider = OidcProvider(
            name="silent",
            label="Silent",
            issuer=issuer,
            client_id="meetgate",
            client_secret="client-secret",  # type: ignore[arg-type]  # pydantic converts it
        )
        client = ProviderClient(provider, OAuth(), "https://meet.example")
        # A sign-in waits on the fetch and gives up; the fetch, shared and shielded, goes on.
        waiting = asyncio.create_task(client.metadata())
        while not [
            task for task in asyncio.all_tasks() if task not in (waiting, asyncio.current_task())
        ]:
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        fetching = asyncio.all_tasks() - {asyncio.current_task()}
        assert fetching and not any(task.done() for task in fetching)
        await client.aclose()
        assert all(task.cancelled() for task in fetching)
        # Closed twice (nothing in flight): nothing to do.
        await client.aclose()
