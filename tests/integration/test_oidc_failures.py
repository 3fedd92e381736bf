"""Identity providers as they fail (issue 18): every failure of a real provider, or of what
stands between it and the gate, ends on the gate's own error page, in the attendee's language,
with a request id the page shows and a log line that gives the reason under the same id, and
never a secret, an address or what the provider wrote in free text. A provider down when the
gate first needs it, or one whose endpoints move, is used again once it answers, without a
storm of discovery fetches meanwhile.

The provider is oidc-provider under Node behind fronts of the test's own
(tests/integration/oidc_faults.py): real servers that stop, answer 5xx or HTML, hand back a code
used once already, another token or another provider's keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.admission.oidc import METADATA_RETRY_SECONDS
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.oidc import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    OTHER_REDIRECT_URI,
    authorize,
    begin,
    browser,
    callback_path,
    clients_for,
    query_of,
    start_oidc_provider,
    ticket_of,
)
from tests.fixtures.processes import free_port, stop_process, wait_until
from tests.integration.oidc_faults import (
    DISCOVERY,
    PROVIDER,
    FaultySetup,
    Front,
    faulty_provider,
    moved,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path: Path, jitsi_web: Any) -> Iterator[FaultySetup]:
    with faulty_provider(tmp_path, jitsi_web.url) as faulty:
        yield faulty


def room_for(gateway: GatewayServer) -> str:
    name = f"fault-{secrets.token_hex(4)}"
    gateway.create_room(name, title="Signed-in meeting")
    gateway.set_policy(name, oidc=True, oidc_providers=[PROVIDER])
    return name


def error_page(response: httpx.Response, status: int, code: str) -> str:
    """The gate's own error page with `code`; the request id it shows the attendee."""
    assert response.status_code == status, response.text
    assert f"<code>{code}</code>" in response.text, response.text
    request_id = response.headers["x-request-id"]
    # The footer shows it, in the page's language ("request …", "请求编号 …").
    assert f" {request_id}</p>" in response.text, response.text
    return request_id


def logged(gateway: GatewayServer, request_id: str) -> str:
    """The sign-in's failure line under `request_id`."""

    def line() -> str | None:
        for text in gateway.log_text().splitlines():
            if "sign-in with" in text and f"[{request_id}]" in text:
                return text
        return None

    wait_until(lambda: line() is not None, timeout=10, what="the sign-in's failure line")
    found = line()
    assert found is not None
    return found


def to_callback(gateway: GatewayServer, client: httpx.Client, room: str) -> str:
    """A sign-in as `ada` up to the provider's redirect back (not followed)."""
    back = authorize(client, begin(client, PROVIDER, room), "ada")
    assert back.startswith(gateway.url + callback_path(PROVIDER)), back
    return back


def signed_in(gateway: GatewayServer, room: str) -> str:
    with browser(gateway) as client:
        return ticket_of(client.get(to_callback(gateway, client, room)), room)


def test_token_endpoint_failures_are_clear_pages_with_their_reason_logged(
    setup: FaultySetup,
) -> None:
    gateway, front = setup.gateway, setup.front
    room = room_for(gateway)
    token = setup.path("token_endpoint")
    # The control: through the fronts, the provider lets Ada in.
    assert signed_in(gateway, room)
    seen: list[str] = []
    cases: list[tuple[str, Any, int, str, str]] = [
        # A 5xx is the provider failing, not "unreachable".
        (
            "5xx",
            lambda: front.faults.status.update({token: 503}),
            502,
            "provider_failed",
            "token endpoint answered HTTP 503",
        ),
        (
            "an HTML error page",
            lambda: front.faults.status.update({token: 404}),
            502,
            "provider_failed",
            "token endpoint answered HTTP 404",
        ),
        (
            "HTML where JSON belongs",
            lambda: front.faults.html.add(token),
            502,
            "provider_failed",
            "token endpoint answer unreadable",
        ),
        (
            "a code used already",
            lambda: front.faults.twice.add(token),
            403,
            "signin_rejected",
            "token endpoint error invalid_grant",
        ),
        (
            "the provider down at the callback",
            front.stop,
            502,
            "provider_unavailable",
            "token endpoint unreachable",
        ),
    ]
    for what, fault, status, code, reason in cases:
        with browser(gateway) as client:
            back = to_callback(gateway, client, room)
            seen.append(query_of(back)["code"])
            fault()
            try:
                response = client.get(back, headers={"accept-language": "zh-CN"})
            finally:
                front.faults.status.clear()
                front.faults.html.clear()
                front.faults.twice.clear()
                if not front.running:
                    front.start()
        request_id = error_page(response, status, code)
        assert '<html lang="zh-Hans">' in response.text, what
        line = logged(gateway, request_id)
        assert f"failed at callback: {code} ({reason}" in line, (what, line)
    # The provider failing is said in the attendee's language as the provider failing.
    with browser(gateway) as client:
        back = to_callback(gateway, client, room)
        front.faults.status[token] = 500
        try:
            response = client.get(back, headers={"accept-language": "zh-CN"})
        finally:
            front.faults.status.clear()
    error_page(response, 502, "provider_failed")
    assert "登录服务出错了" in response.text
    # And the gate lets Ada in again once the provider is well.
    assert signed_in(gateway, room)
    log = gateway.log_text()
    for secret in seen:
        assert secret not in log


def test_a_provider_error_on_the_way_back_is_a_page_and_only_its_code_is_logged(
    setup: FaultySetup,
) -> None:
    gateway = setup.gateway
    room = room_for(gateway)
    cases = [
        ({"error": "access_denied"}, 403, "signin_denied", "callback error access_denied"),
        ({"error": "server_error"}, 502, "provider_failed", "callback error server_error"),
        # Free text where a code belongs is not written as it came.
        (
            {"error": "ada@uni.example cancelled", "error_description": "ada@uni.example"},
            403,
            "signin_denied",
            "callback error unreadable",
        ),
    ]
    for params, status, code, reason in cases:
        with browser(gateway) as client:
            state = query_of(begin(client, PROVIDER, room))["state"]
            url = callback_path(PROVIDER) + "?" + urlencode({**params, "state": state})
            request_id = error_page(client.get(url), status, code)
        assert f"({reason})" in logged(gateway, request_id)
    # This browser's own sign-in answered without a code (as anyone can): refused before any
    # call, logged at INFO, counted against the room, not the provider failing.
    with browser(gateway) as client:
        state = query_of(begin(client, PROVIDER, room))["state"]
        params = {"state": state, "iss": setup.document["issuer"]}
        url = callback_path(PROVIDER) + "?" + urlencode(params)
        request_id = error_page(client.get(url), 403, "signin_rejected")
    line = logged(gateway, request_id)
    assert " INFO " in line and "(callback without a code)" in line, line
    # A state that is not this browser's sign-in's.
    with browser(gateway) as client:
        begin(client, PROVIDER, room)
        forged = callback_path(PROVIDER) + "?" + urlencode({"code": "x", "state": "forged"})
        request_id = error_page(client.get(forged), 400, "signin_expired")
    assert "(state mismatch)" in logged(gateway, request_id)
    # Without a sign-in pending at all.
    with browser(gateway) as client:
        request_id = error_page(client.get(forged), 400, "signin_expired")
    assert "(state mismatch: no sign-in pending in this browser)" in logged(gateway, request_id)
    assert "ada@uni.example" not in gateway.log_text()


def test_the_key_set_unreachable_or_failing_is_a_clear_page(setup: FaultySetup) -> None:
    gateway, keys = setup.gateway, setup.keys
    room = room_for(gateway)
    jwks = setup.path("jwks_uri")
    # No sign-in has fetched the key set yet: the first one needs it.
    keys.stop()
    try:
        with browser(gateway) as client:
            response = client.get(to_callback(gateway, client, room))
    finally:
        keys.start()
    request_id = error_page(response, 502, "provider_unavailable")
    assert "(keys unreachable" in logged(gateway, request_id)
    for fault, reason in [
        (lambda: keys.faults.status.update({jwks: 503}), "keys answered HTTP 503"),
        (lambda: keys.faults.html.add(jwks), "keys answer unreadable"),
    ]:
        with browser(gateway) as client:
            back = to_callback(gateway, client, room)
            fault()
            try:
                response = client.get(back)
            finally:
                keys.faults.clear()
        request_id = error_page(response, 502, "provider_failed")
        assert f"({reason}" in logged(gateway, request_id)
    assert signed_in(gateway, room)


def test_a_rotated_signing_key_costs_one_more_fetch_of_the_key_set(setup: FaultySetup) -> None:
    gateway, keys = setup.gateway, setup.keys
    room = room_for(gateway)
    jwks = setup.path("jwks_uri")
    with httpx.Client(trust_env=False, timeout=30) as client:
        published = client.get(keys.url + jwks).json()
    # The gate's first fetch gets the set from before the provider rotated its key: the key
    # that signs the ID token is not in it yet.
    keys.faults.once[jwks] = {
        "keys": [{**key, "kid": f"{key['kid']}-before"} for key in published["keys"]]
    }
    fetched = keys.requests[jwks]
    assert signed_in(gateway, room)
    # That one, and one more for the key the token names: not one more each for authlib's
    # check of the token and Meetgate's.
    assert keys.requests[jwks] - fetched == 2


def replaced(key: dict[str, Any]) -> dict[str, Any]:
    """`key` with another key's public numbers under the same kid, alg and use: the key as it
    was before the provider replaced it (an RSA or EC key; any other is kept)."""
    if key["kty"] == "RSA":
        other = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048).public_key()))
    elif key["kty"] == "EC":
        curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
        other = json.loads(
            ECAlgorithm.to_jwk(ec.generate_private_key(curves[key["crv"]]).public_key())
        )
    else:
        return key
    return {**key, **{k: v for k, v in other.items() if k not in ("kid", "alg", "use", "key_ops")}}


def test_a_key_replaced_under_the_same_kid_is_fetched_again_at_most_once_an_interval(
    setup: FaultySetup,
) -> None:
    gateway, front, keys = setup.gateway, setup.front, setup.keys
    room = room_for(gateway)
    jwks = setup.path("jwks_uri")
    with httpx.Client(trust_env=False, timeout=30) as client:
        published = client.get(keys.url + jwks).json()
    # The gate's first fetch gets the set from before the provider replaced its key under the
    # same kid: the ID token's signature fails with the key its kid names (no unknown kid to
    # make authlib fetch the set again). Refused until the hourly refresh, before.
    keys.faults.once[jwks] = {"keys": [replaced(key) for key in published["keys"]]}
    fetched = keys.requests[jwks]
    assert signed_in(gateway, room)
    assert keys.requests[jwks] - fetched == 2
    # Tokens whose signature is not their own (forged, as far as the gate can tell) are refused
    # after one more check at most, and make at most one fetch in the retry interval, not one
    # each. (The bound is counted in retry intervals, so a slow machine does not fail it.)
    front.faults.tamper.add(setup.path("token_endpoint"))
    fetched, started = keys.requests[jwks], time.monotonic()
    for _ in range(3):
        with browser(gateway) as client:
            response = client.get(to_callback(gateway, client, room))
        request_id = error_page(response, 403, "signin_rejected")
        assert "(ID token bad_signature)" in logged(gateway, request_id)
    intervals = (time.monotonic() - started) // METADATA_RETRY_SECONDS
    assert keys.requests[jwks] - fetched <= 1 + intervals
    front.faults.tamper.clear()
    assert signed_in(gateway, room)


def id_token(
    document: dict[str, Any],
    login: str,
    *,
    nonce: str,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    redirect_uri: str,
) -> str:
    """A real ID token from the provider `document` describes, for `client_id`, carrying
    `nonce`: a sign-in Meetgate never started, played as another application would."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    url = httpx.URL(
        document["authorization_endpoint"],
        params={
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "openid email profile",
            "state": secrets.token_urlsafe(16),
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    with httpx.Client(trust_env=False, timeout=30, verify=TLS) as client:
        back = authorize(client, str(url), login)
        assert back.startswith(redirect_uri), back
        response = client.post(
            document["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": query_of(back)["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(client_id, client_secret),
        )
    response.raise_for_status()
    return str(response.json()["id_token"])


def test_id_tokens_that_do_not_hold_up_are_refused_with_the_reason_logged(
    setup: FaultySetup, tmp_path: Path
) -> None:
    gateway, front, keys = setup.gateway, setup.front, setup.keys
    room = room_for(gateway)
    token, jwks = setup.path("token_endpoint"), setup.path("jwks_uri")
    ours = gateway.url + callback_path(PROVIDER)
    # Another real provider, where Meetgate's client is registered too: its tokens for
    # Meetgate are well signed, by keys that are not this provider's, and name another issuer.
    other, other_proc = start_oidc_provider(
        tmp_path / "other", free_port(), clients=clients_for(gateway.url, PROVIDER)
    )
    made: list[str] = []

    def answered(token_of: Callable[[str], str]) -> Callable[[str], None]:
        """A fault: the token endpoint answers with the ID token `token_of(nonce)`."""

        def fault(nonce: str) -> None:
            made.append(token_of(nonce))
            front.faults.patch[token] = {"id_token": made[-1]}

        return fault

    def elsewhere(nonce: str) -> None:
        answered(lambda nonce: id_token(other.discovery(), "ada", nonce=nonce, redirect_uri=ours))(
            nonce
        )
        keys.faults.replace[jwks] = other.jwks()

    cases: list[tuple[str, Callable[[str], None], str]] = [
        ("a bad signature", lambda _: front.faults.tamper.add(token), "ID token bad_signature"),
        (
            # The right nonce, but issued to another application of the provider.
            "another audience",
            answered(
                lambda nonce: id_token(
                    setup.document,
                    "ada",
                    nonce=nonce,
                    client_id=OTHER_CLIENT_ID,
                    client_secret=OTHER_CLIENT_SECRET,
                    redirect_uri=OTHER_REDIRECT_URI,
                )
            ),
            "ID token invalid_claim aud",
        ),
        (
            # Meetgate's, but from a sign-in it did not start here.
            "another sign-in's nonce",
            answered(
                lambda _: id_token(
                    setup.document, "ada", nonce=secrets.token_urlsafe(16), redirect_uri=ours
                )
            ),
            "ID token invalid_claim nonce",
        ),
        ("another issuer", elsewhere, "ID token invalid_claim iss"),
    ]
    try:
        for what, fault, reason in cases:
            with browser(gateway) as client:
                authorization = begin(client, PROVIDER, room)
                back = authorize(client, authorization, "ada")
                fault(query_of(authorization)["nonce"])
                try:
                    response = client.get(back)
                finally:
                    front.faults.tamper.clear()
                    front.faults.patch.pop(token, None)
                    keys.faults.clear()
            request_id = error_page(response, 403, "signin_rejected")
            assert f"({reason})" in logged(gateway, request_id), what
    finally:
        stop_process(other_proc)
    log = gateway.log_text()
    assert len(made) == 3
    for secret in made:
        assert secret not in log
    assert "ada@uni.example" not in log


def test_a_provider_down_at_start_is_used_once_it_answers_without_a_fetch_storm(
    setup: FaultySetup,
) -> None:
    gateway, front = setup.gateway, setup.front
    room = room_for(gateway)
    login = f"/_meetgate/oidc/{PROVIDER}/login"
    # Down when the gate first needs it: nothing listens.
    front.stop()
    with browser(gateway) as client:
        request_id = error_page(
            client.get(login, params={"room": room}), 502, "provider_unavailable"
        )
    assert "(discovery unreachable" in logged(gateway, request_id)
    # Its front is back but answers 503 for the document: the provider itself failing.
    front.faults.status[DISCOVERY] = 503
    front.start()

    def failing_as_503() -> bool:
        with browser(gateway) as client:
            answer = client.get(login, params={"room": room})
        return answer.status_code == 502 and "<code>provider_failed</code>" in answer.text

    wait_until(failing_as_503, timeout=60, what="the gate trying the provider again")
    # Meanwhile sign-ins keep coming: one fetch at most in the retry interval, not one each.
    # (The bound is counted in retry intervals, so a slow machine does not fail it.)
    fetched, started = front.requests[DISCOVERY], time.monotonic()
    with browser(gateway) as client:
        for _ in range(20):
            error_page(client.get(login, params={"room": room}), 502, "provider_failed")
    intervals = (time.monotonic() - started) // METADATA_RETRY_SECONDS
    assert front.requests[DISCOVERY] - fetched <= 1 + intervals < 20
    # Well again: the gate uses it without a restart.
    front.faults.status.pop(DISCOVERY)

    def sends_browsers_there() -> bool:
        with browser(gateway) as client:
            answer = client.get(login, params={"room": room})
        return answer.status_code == 302

    wait_until(sends_browsers_there, timeout=60, what="the gate using the provider again")
    assert signed_in(gateway, room)


def test_sign_ins_waiting_on_a_blackholed_discovery_share_one_fetch(setup: FaultySetup) -> None:
    gateway, front = setup.gateway, setup.front
    room = room_for(gateway)
    login = f"/_meetgate/oidc/{PROVIDER}/login"
    # The gate has no document yet, and the provider takes the request and never answers.
    front.faults.hold.add(DISCOVERY)

    def attempt() -> httpx.Response:
        with browser(gateway) as client:
            return client.get(login, params={"room": room})

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(attempt)
        wait_until(lambda: front.holding[DISCOVERY] == 1, timeout=30, what="the gate's fetch")
        # Sign-ins arriving while that fetch hangs wait for its outcome: they start no fetch of
        # their own, neither now nor one after another once it gives up.
        answers = [first, *(pool.submit(attempt) for _ in range(3))]
        request_ids = [error_page(a.result(), 502, "provider_unavailable") for a in answers]
    assert front.requests[DISCOVERY] == 1
    assert "(discovery unreachable" in logged(gateway, request_ids[-1])


def test_a_kept_document_is_served_while_its_refresh_hangs_and_after_it_fails(
    setup: FaultySetup,
) -> None:
    gateway, front = setup.gateway, setup.front
    room = room_for(gateway)
    login = f"/_meetgate/oidc/{PROVIDER}/login"
    assert signed_in(gateway, room)
    # The token endpoint does not answer: the document is suspect, fetched again once the retry
    # interval has passed.
    with browser(gateway) as client:
        back = to_callback(gateway, client, room)
        front.stop()
        try:
            response = client.get(back)
        finally:
            front.start()
    error_page(response, 502, "provider_unavailable")
    # That fetch hangs: sign-ins meanwhile are sent to the provider at once, with the document
    # kept, while the fetch is still held.
    front.faults.hold.add(DISCOVERY)

    def served_while_the_fetch_hangs() -> bool:
        with browser(gateway) as client:
            answer = client.get(login, params={"room": room})
        assert answer.status_code == 302, answer.text
        return front.holding[DISCOVERY] == 1

    wait_until(served_while_the_fetch_hangs, timeout=60, what="a sign-in served during the fetch")
    # It fails (503): the document fetched before is still used.
    front.faults.status[DISCOVERY] = 503
    front.faults.hold.clear()
    wait_until(
        lambda: "could not be fetched again (discovery answered HTTP 503)" in gateway.log_text(),
        timeout=30,
        what="the failed fetch",
    )
    assert signed_in(gateway, room)


def test_a_discovery_document_far_too_large_is_not_read_to_its_end(setup: FaultySetup) -> None:
    gateway, front = setup.gateway, setup.front
    room = room_for(gateway)
    # A valid document, but 1 MiB: no provider's is more than a few KiB.
    front.faults.patch[DISCOVERY] = {**front.faults.patch[DISCOVERY], "padding": "x" * 2**20}
    with browser(gateway) as client:
        response = client.get(f"/_meetgate/oidc/{PROVIDER}/login", params={"room": room})
    request_id = error_page(response, 502, "provider_failed")
    assert "(discovery answer too large)" in logged(gateway, request_id)


def test_a_provider_whose_endpoints_move_is_followed(setup: FaultySetup) -> None:
    gateway, front = setup.gateway, setup.front
    room = room_for(gateway)
    node_port = front.target_port
    before, after = Front(node_port), Front(node_port)
    before.start()
    after.start()
    try:
        endpoints = ("token_endpoint", "userinfo_endpoint")

        def move_to(where: Front) -> None:
            front.faults.patch[DISCOVERY] = {
                **front.faults.patch[DISCOVERY],
                **{name: moved(setup.document[name], where) for name in endpoints},
            }

        move_to(before)
        assert signed_in(gateway, room)
        assert before.requests[setup.path("token_endpoint")] == 1
        # The provider moves: its document names the new address, the old one is gone.
        move_to(after)
        before.stop()
        with browser(gateway) as client:
            response = client.get(to_callback(gateway, client, room))
        request_id = error_page(response, 502, "provider_unavailable")
        assert "(token endpoint unreachable" in logged(gateway, request_id)

        def signs_in() -> bool:
            with browser(gateway) as client:
                answer = client.get(to_callback(gateway, client, room))
            return answer.status_code == 303

        wait_until(signs_in, timeout=60, what="the gate following the move")
        assert after.requests[setup.path("token_endpoint")] >= 1
    finally:
        before.stop()
        after.stop()


def test_an_unexpected_answer_shape_is_a_page_not_a_bare_500(setup: FaultySetup) -> None:
    gateway, front = setup.gateway, setup.front
    room = room_for(gateway)
    token = setup.path("token_endpoint")
    for answer, code in [
        # JSON, but not an object.
        (["not", "an", "object"], "provider_failed"),
        # An object without an ID token.
        ({"access_token": "x", "token_type": "Bearer"}, "signin_rejected"),
    ]:
        with browser(gateway) as client:
            back = to_callback(gateway, client, room)
            front.faults.replace[token] = answer
            try:
                response = client.get(back)
            finally:
                front.faults.replace.clear()
        assert response.status_code != 500, response.text
        error_page(response, 502 if code == "provider_failed" else 403, code)
