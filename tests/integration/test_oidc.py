"""Sign-in with OpenID Connect against real providers: the way into the meeting under the
verified name, policies by domain, group and provider, and every forged, replayed, mixed-up,
expired or foreign answer refused with a clear page.

The tests that take the `idp` fixture run against two independent implementations in turn,
oidc-provider under Node and django-oidc-provider under Django (docs/identity-providers.md,
"Tested with"). The rest use the Node fixture's special providers (a slow clock, HS256 ID
tokens, a discovery document naming another issuer), not repeated under Django, or none;
HS256 ID tokens are refused from both.

Cases a real provider cannot be made to produce (an unsigned ID token: oidc-provider cannot sign
with `none`; key confusion; a tampered token) are in tests/unit/test_oidc_claims.py; here the same
validator is also fed real tokens that are not Meetgate's: another client's, another issuer's,
and a real provider's HS256 tokens signed with the client secret go through a whole sign-in.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
import pytest

from gateway.admission.oidc import (
    Expected,
    SignInRejected,
    UnknownSigningKey,
    verify_id_token,
)
from tests.fixtures.gateway_server import (
    GENEROUS_LIMITS,
    TICKET_SECRET,
    GatewayServer,
    start_gateway,
)
from tests.fixtures.http_clients import TLS
from tests.fixtures.jitsi_web import INDEX_MARKER
from tests.fixtures.oidc import (
    CLIENT_ID,
    DJANGO,
    NODE,
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    SYMMETRIC,
    OidcSetup,
    SignInProvider,
    authorize,
    begin,
    browser,
    callback_path,
    code_directly,
    oidc_table,
    query_of,
    sign_in,
    start_tls_discovery,
    ticket_of,
    tokens_directly,
)
from tests.fixtures.processes import free_port, stop_process, wait_until
from tests.fixtures.smtp import make_certificate
from tests.integration.journeys import Admitted, admit, host_action
from tests.integration.test_names import ticket_name

pytestmark = pytest.mark.slow


def room_with(gateway: GatewayServer, **policy: Any) -> str:
    name = f"oidc-{secrets.token_hex(4)}"
    gateway.create_room(name, title="Signed-in meeting")
    set_policy(gateway, name, **policy)
    return name


def set_policy(gateway: GatewayServer, room: str, **policy: Any) -> None:
    gateway.set_policy(room, **{"oidc": True, **policy})


def ticket_user(ticket: str) -> dict[str, Any]:
    claims = jwt.decode(ticket, TICKET_SECRET, algorithms=["HS256"], audience="jitsi")
    return dict(claims["context"]["user"])


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert f"<code>{code}</code>" in response.text, response.text


def test_signed_in_attendees_land_in_the_meeting_under_their_verified_names(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    gateway = oidc.gateway
    room = room_with(gateway, oidc_providers=[idp.name], host_emails=["ada@uni.example"])
    with browser(gateway) as ada:
        answer = sign_in(gateway, idp.name, room, "ada", client=ada)
        host = ticket_user(ticket_of(answer, room))
        assert host["name"] == "Ada Lovelace" and host["moderator"] is True
        # The admission cookie opens the meeting itself.
        meeting = ada.get(f"/{room}")
        assert meeting.status_code == 200 and INDEX_MARKER in meeting.text
        # The sign-in cookie is spent.
        assert "meetgate_signin" not in ada.cookies
    attendee = ticket_user(ticket_of(sign_in(gateway, idp.name, room, "bob"), room))
    assert attendee["name"] == "Bob Marley" and attendee["moderator"] is False
    # The other provider puts its claims in the ID token itself (no userinfo call): same result.
    set_policy(gateway, room, oidc_providers=["other"])
    again = ticket_user(ticket_of(sign_in(gateway, "other", room, "bob"), room))
    assert again["name"].startswith("Bob Marley")


def test_a_signed_in_hosts_name_is_theirs_while_they_are_in(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    # A host by address is known by name only once signed in; from then on, look-alikes are
    # numbered by Meetgate (docs/hosts.md, "Names").
    gateway = oidc.gateway
    room = room_with(gateway, oidc_providers=[idp.name], host_emails=["ada@uni.example"])
    host = ticket_user(ticket_of(sign_in(gateway, idp.name, room, "ada"), room))
    assert host["name"] == "Ada Lovelace" and host["moderator"] is True
    for typed, shown in [
        ("Ada Lovelace", "Ada Lovelace (2)"),
        ("Ada Lovelace (2)", "Ada Lovelace (3)"),
    ]:
        assert ticket_name(admit(gateway, room, typed)) == shown


def test_the_gate_page_offers_the_rooms_providers(oidc: OidcSetup, idp: SignInProvider) -> None:
    gateway = oidc.gateway
    room = room_with(gateway, oidc_providers=[idp.name, "other"])
    with browser(gateway) as client:
        page = client.get(f"/_meetgate/enter/{room}").text
    assert f"Sign in with {idp.label}" in page and "Sign in with Other Login" in page
    assert "Slow Clock Login" not in page


def test_login_sends_the_exact_redirect_uri_with_pkce_state_and_nonce(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    gateway = oidc.gateway
    room = room_with(gateway)
    with browser(gateway) as client:
        # A forged Host header changes nothing: the redirect URI comes from the public URL.
        response = client.get(
            f"/_meetgate/oidc/{idp.name}/login",
            params={"room": room},
            headers={"host": "evil.example"},
        )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(idp.server.discovery()["authorization_endpoint"])
    query = query_of(location)
    assert query["redirect_uri"] == gateway.url + callback_path(idp.name)
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["scope"].split()[0] == "openid"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("meetgate_signin=")
    for attribute in ("httponly", "samesite=lax", "path=/_meetgate/oidc", "max-age=600"):
        assert attribute in cookie, cookie
    # Nothing secret rides in the cookie: the PKCE verifier stays on the server.
    assert "code_verifier" not in response.headers["set-cookie"]


def test_policy_changes_take_effect_for_the_next_sign_in(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    gateway = oidc.gateway
    room = room_with(gateway, allowed_groups=["staff"])
    refused(sign_in(gateway, idp.name, room, "bob"), 403, "not_allowed")
    set_policy(gateway, room, allowed_groups=["students"])
    assert ticket_user(ticket_of(sign_in(gateway, idp.name, room, "bob"), room))["name"]
    set_policy(gateway, room, oidc_providers=["other"])
    with browser(gateway) as client:
        refused(
            client.get(f"/_meetgate/oidc/{idp.name}/login", params={"room": room}),
            403,
            "signin_not_offered",
        )
    set_policy(gateway, room, host_emails=["bob@uni.example"])
    assert ticket_user(ticket_of(sign_in(gateway, idp.name, room, "bob"), room))["moderator"]


def test_disallowed_domains_groups_and_unverified_addresses_are_refused(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    gateway = oidc.gateway
    by_domain = room_with(gateway, allowed_domains=["uni.example"])
    refused(sign_in(gateway, idp.name, by_domain, "eve"), 403, "not_allowed")
    # Mallory's provider never verified her address at the allowed domain.
    refused(sign_in(gateway, idp.name, by_domain, "mallory"), 403, "not_allowed")
    assert ticket_of(sign_in(gateway, idp.name, by_domain, "ada"), by_domain)
    by_group = room_with(gateway, allowed_groups=["organisers"])
    refused(sign_in(gateway, idp.name, by_group, "eve"), 403, "not_allowed")
    assert ticket_of(sign_in(gateway, idp.name, by_group, "ada"), by_group)
    # An address on the host list does not make an unverified one a host.
    hosts = room_with(gateway, host_emails=["mallory@uni.example"])
    assert not ticket_user(ticket_of(sign_in(gateway, idp.name, hosts, "mallory"), hosts))[
        "moderator"
    ]


def test_an_account_without_a_name_is_told_so(oidc: OidcSetup, idp: SignInProvider) -> None:
    room = room_with(oidc.gateway)
    refused(sign_in(oidc.gateway, idp.name, room, "ghost"), 403, "identity_incomplete")
    # Without a name claim, the address's local part is the name.
    nameless = ticket_user(ticket_of(sign_in(oidc.gateway, idp.name, room, "nameless"), room))
    assert nameless["name"] == "n"


def test_a_lobby_room_queues_the_signed_in_attendee(oidc: OidcSetup, idp: SignInProvider) -> None:
    room = room_with(oidc.gateway, lobby=True)
    answer = sign_in(oidc.gateway, idp.name, room, "bob")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/_meetgate/lobby"), answer.headers["location"]


def lobby_of(gateway: GatewayServer, host: Admitted) -> list[dict[str, Any]]:
    with httpx.Client(
        base_url=gateway.url, trust_env=False, cookies=host.cookies, verify=TLS
    ) as client:
        response = client.get(f"/_meetgate/host/{host.room}/roster")
    assert response.status_code == 200, response.text
    return list(response.json()["lobby"])


def test_in_a_lobby_hosts_see_who_signed_in_and_their_answer_holds(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    gateway = oidc.gateway
    room = room_with(gateway, lobby=True, oidc_providers=[idp.name])
    host = admit(gateway, room, "Hilde Host", role="host")
    wait = f"/_meetgate/lobby/{room}/wait"
    with browser(gateway) as bob:
        queued = sign_in(gateway, idp.name, room, "bob", client=bob)
        assert queued.status_code == 303 and queued.headers["location"] == wait
        # The host sees the identity the provider verified, not a typed name.
        [request] = lobby_of(gateway, host)
        assert request["name"] == "Bob Marley" and request["guest"] is False
        assert request["via"] == f"oidc:{idp.name} <bob@uni.example>"
        assert host_action(gateway, host, "approve", request=request["id"])["done"] is True
        landed = ticket_user(ticket_of(bob.get(wait), room))
        assert landed["name"] == "Bob Marley" and landed["moderator"] is False
    # Denied and banned while waiting: that account stays out, whichever browser it comes from.
    with browser(gateway) as eve:
        assert sign_in(gateway, idp.name, room, "eve", client=eve).status_code == 303
        [request] = lobby_of(gateway, host)
        assert request["via"] == f"oidc:{idp.name} <eve@evil.example>"
        assert host_action(gateway, host, "deny-ban", request=request["id"])["done"] is True
        barred = eve.get(wait)
        assert barred.status_code == 403 and "barred you" in barred.text
    refused(sign_in(gateway, idp.name, room, "eve"), 403, "admission_banned")
    assert lobby_of(gateway, host) == []
    # A host by address walks past the lobby.
    set_policy(gateway, room, lobby=True, host_emails=["ada@uni.example"])
    assert ticket_user(ticket_of(sign_in(gateway, idp.name, room, "ada"), room))["moderator"]


def test_a_name_a_provider_vouches_for_cannot_pass_for_a_hosts(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    gateway = oidc.gateway
    room = room_with(gateway, oidc_providers=[idp.name], host_emails=["ada@uni.example"])
    host = ticket_user(ticket_of(sign_in(gateway, idp.name, room, "ada"), room))
    assert host["name"] == "Ada Lovelace" and host["moderator"] is True
    impostor = ticket_user(ticket_of(sign_in(gateway, idp.name, room, "impostor"), room))
    assert impostor["name"] == "\N{CYRILLIC CAPITAL LETTER A}da Lovelace (2)"
    # Direction overrides and zero-width characters are dropped; what is left is Ada's name.
    overrider = ticket_user(ticket_of(sign_in(gateway, idp.name, room, "overrider"), room))
    assert overrider["name"] == "Ada Lovelace (3)"


def test_login_refuses_unknown_providers_rooms_and_rooms_without_sign_in(oidc: OidcSetup) -> None:
    gateway = oidc.gateway
    invite_only = room_with(gateway, oidc=False)
    room = room_with(gateway, oidc_providers=["idp"])
    with browser(gateway) as client:
        assert client.get("/_meetgate/oidc/nope/login", params={"room": room}).status_code == 404
        refused(
            client.get("/_meetgate/oidc/idp/login", params={"room": "no-such"}),
            404,
            "room_not_found",
        )
        refused(client.get("/_meetgate/oidc/idp/login"), 404, "room_not_found")
        refused(
            client.get("/_meetgate/oidc/idp/login", params={"room": invite_only}),
            403,
            "signin_not_offered",
        )
        refused(
            client.get("/_meetgate/oidc/other/login", params={"room": room}),
            403,
            "signin_not_offered",
        )
        assert "meetgate_signin" not in client.cookies


def test_login_csrf_a_callback_from_another_browser_fails(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    gateway = oidc.gateway
    room = room_with(gateway)
    # The attacker signs in as Eve but stops before the callback, and gets the victim to open it.
    with browser(gateway) as attacker:
        planted = authorize(attacker, begin(attacker, idp.name, room), "eve")
    with browser(gateway) as fresh:
        refused(fresh.get(planted), 400, "signin_expired")
    with browser(gateway) as victim:
        # A victim with a sign-in of their own under way: the state is not theirs.
        begin(victim, idp.name, room)
        refused(victim.get(planted), 400, "signin_expired")
        # ...and the refused callback ended the victim's pending sign-in too.
        assert "meetgate_signin" not in victim.cookies
    # On another provider's callback path, a browser's own state does not count either.
    with browser(gateway) as client:
        back = authorize(client, begin(client, idp.name, room), "ada")
        moved = back.replace(callback_path(idp.name), callback_path("other"))
        refused(client.get(moved), 400, "signin_expired")


def test_a_replayed_callback_fails(oidc: OidcSetup, idp: SignInProvider) -> None:
    gateway = oidc.gateway
    room = room_with(gateway)
    with browser(gateway) as client:
        back = authorize(client, begin(client, idp.name, room), "ada")
        before = client.cookies["meetgate_signin"]
        assert ticket_of(client.get(back), room)
        refused(client.get(back), 400, "signin_expired")
    # Even with the cookie from before the first use: the server's half was taken once.
    with browser(gateway) as thief:
        thief.cookies.set("meetgate_signin", before, domain="127.0.0.1", path="/_meetgate/oidc")
        refused(thief.get(back), 400, "signin_expired")
    with browser(gateway) as fresh:
        refused(fresh.get(back), 400, "signin_expired")


def test_forged_callbacks_fail(oidc: OidcSetup, idp: SignInProvider) -> None:
    gateway = oidc.gateway
    room = room_with(gateway)
    callback = gateway.url + callback_path(idp.name)

    def callback_with(client: httpx.Client, **params: str) -> httpx.Response:
        return client.get(f"{callback}?{urlencode(params)}")

    with browser(gateway) as client:
        # No sign-in under way at all.
        refused(
            callback_with(client, code="x", state="y", iss=idp.server.issuer), 400, "signin_expired"
        )
        # A code from nowhere, with the browser's own state.
        state = query_of(begin(client, idp.name, room))["state"]
        exchanges = idp.server.requests("POST", "/token")
        refused(
            callback_with(client, code="forged", state=state, iss=idp.server.issuer),
            403,
            "signin_rejected",
        )
        # (The provider itself turned it down.)
        assert idp.server.requests("POST", "/token") == exchanges + 1
        # A real code the provider issued to another application for this very callback.
        state = query_of(begin(client, idp.name, room))["state"]
        foreign = code_directly(idp.server, "eve", client_id=OTHER_CLIENT_ID, redirect_uri=callback)
        refused(
            callback_with(client, code=foreign.code, state=state, iss=idp.server.issuer),
            403,
            "signin_rejected",
        )
        # Meetgate's own code from the attacker's sign-in: PKCE binds it to their browser.
        with browser(gateway) as attacker:
            stolen = query_of(authorize(attacker, begin(attacker, idp.name, room), "eve"))
        state = query_of(begin(client, idp.name, room))["state"]
        refused(
            callback_with(client, code=stolen["code"], state=state, iss=idp.server.issuer),
            403,
            "signin_rejected",
        )
        # Duplicated parameters are refused outright.
        state = query_of(begin(client, idp.name, room))["state"]
        response = client.get(f"{callback}?code=a&code=b&state={state}&iss={idp.server.issuer}")
        assert response.status_code == 400 and "duplicate_parameter" in response.text


def test_the_provider_refusing_shows_a_clear_page(oidc: OidcSetup, idp: SignInProvider) -> None:
    gateway = oidc.gateway
    room = room_with(gateway)
    with browser(gateway) as client:
        back = authorize(client, begin(client, idp.name, room), "ada", abort=True)
        assert query_of(back)["error"] == "access_denied"
        response = client.get(back)
    refused(response, 403, "signin_denied")
    assert "cancelled or refused" in response.text


def test_a_callback_from_another_provider_is_refused(oidc: OidcSetup, idp: SignInProvider) -> None:
    """Mix-up: the browser went to `idp`, the answer comes from `other` (another issuer)."""
    gateway = oidc.gateway
    room = room_with(gateway)
    with browser(gateway) as attacker:
        answer = authorize(attacker, begin(attacker, "other", room), "eve")
        from_other = query_of(answer)
        assert from_other["iss"] == oidc.providers["other"].issuer
        # RFC 9207: oidc-provider names itself on the way back; django-oidc-provider does not.
        announces = idp.server.discovery().get("authorization_response_iss_parameter_supported")
        assert announces is (True if idp.implementation == NODE else None)
        exchanges = idp.server.requests("POST", "/token")
        with browser(gateway) as victim:
            state = query_of(begin(victim, idp.name, room))["state"]
            mixed = {**from_other, "state": state}
            refused(
                victim.get(gateway.url + callback_path(idp.name) + "?" + urlencode(mixed)),
                403,
                "signin_rejected",
            )
            # Without the `iss` parameter, the answer is refused just the same.
            state = query_of(begin(victim, idp.name, room))["state"]
            stripped = {"code": from_other["code"], "state": state}
            refused(
                victim.get(gateway.url + callback_path(idp.name) + "?" + urlencode(stripped)),
                403,
                "signin_rejected",
            )
        # Both were refused. The first before the code went anywhere; the second too where `idp`
        # announces the `iss` parameter. Where it does not, nothing tells the gate where the code
        # came from: it goes to `idp` (the callback path is `idp`'s), whose token endpoint refuses
        # a code it never issued. Either way `other`'s code never reached an attacker's endpoint.
        assert idp.server.requests("POST", "/token") == exchanges + (0 if announces else 1)
        # ...and it was a good code: its own browser, on its own provider's callback, gets in.
        assert ticket_of(attacker.get(answer), room)


def test_an_expired_id_token_is_refused(oidc: OidcSetup) -> None:
    skewed = oidc.providers["skewed"]
    # The premise: this provider's clock runs ten minutes slow, so its tokens arrive expired.
    real = tokens_directly(skewed, "ada")
    assert jwt.decode(real.id_token, options={"verify_signature": False})["exp"] < time.time() - 300
    room = room_with(oidc.gateway, oidc_providers=["skewed"])
    refused(sign_in(oidc.gateway, "skewed", room, "ada"), 403, "signin_rejected")


@pytest.mark.parametrize("implementation", [NODE, DJANGO])
def test_an_id_token_signed_with_the_client_secret_is_refused(
    oidc: OidcSetup, implementation: str
) -> None:
    name = SYMMETRIC[implementation]
    symmetric = oidc.providers[name]
    # The premise: this provider lists HS256 and signs real ID tokens with the client secret,
    # good ones by that measure (which is all authlib's own check would ask).
    assert "HS256" in symmetric.discovery()["id_token_signing_alg_values_supported"]
    real = tokens_directly(symmetric, "ada")
    assert jwt.get_unverified_header(real.id_token)["alg"] == "HS256"
    claims = jwt.decode(
        real.id_token, OTHER_CLIENT_SECRET, algorithms=["HS256"], audience=OTHER_CLIENT_ID
    )
    assert claims["sub"] and claims["iss"] == symmetric.issuer
    room = room_with(oidc.gateway, oidc_providers=[name])
    exchanges = symmetric.requests("POST", "/token")
    refused(sign_in(oidc.gateway, name, room, "ada"), 403, "signin_rejected")
    # Refused for the token itself, after a real code exchange.
    assert symmetric.requests("POST", "/token") == exchanges + 1


def test_a_provider_whose_discovery_names_another_issuer_is_not_used(oidc: OidcSetup) -> None:
    liar = oidc.providers["liar"]
    assert liar.discovery()["issuer"] != liar.url
    room = room_with(oidc.gateway, oidc_providers=["liar"])
    with browser(oidc.gateway) as client:
        response = client.get("/_meetgate/oidc/liar/login", params={"room": room})
    refused(response, 502, "provider_untrusted")


def test_an_unreachable_provider_gets_a_clear_page(oidc: OidcSetup) -> None:
    room = room_with(oidc.gateway, oidc_providers=["down"])
    with browser(oidc.gateway) as client:
        response = client.get("/_meetgate/oidc/down/login", params={"room": room})
    refused(response, 502, "provider_unavailable")


def test_a_provider_whose_certificate_is_not_trusted_is_not_believed(
    tmp_path: Path, jitsi_web: Any
) -> None:
    """The provider calls check the certificate (one TLS context per provider, made at start):
    a provider behind a self-signed certificate is unavailable, though its discovery document
    is right for its issuer."""
    certificate = make_certificate(tmp_path / "certificate")
    issuer, provider = start_tls_discovery(tmp_path / "provider", free_port(), certificate)
    gateway, proc = start_gateway(
        tmp_path / "gateway",
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + oidc_table("selfsigned", "Self-signed Login", issuer),
    )
    try:
        # The control: to a client that trusts the certificate, the provider answers.
        with httpx.Client(verify=certificate.client_context(), trust_env=False) as trusting:
            document = trusting.get(f"{issuer}/.well-known/openid-configuration")
        assert document.json()["issuer"] == issuer
        room = room_with(gateway, oidc_providers=["selfsigned"])
        with browser(gateway) as client:
            response = client.get("/_meetgate/oidc/selfsigned/login", params={"room": room})
        refused(response, 502, "provider_unavailable")
    finally:
        stop_process(proc)
        stop_process(provider)


def test_real_tokens_not_issued_to_meetgate_fail_the_validator(
    oidc: OidcSetup, idp: SignInProvider
) -> None:
    other = oidc.providers["other"]
    algorithms = frozenset({"RS256"})
    now = time.time()
    foreign = tokens_directly(idp.server, "ada")  # issued to OTHER_CLIENT_ID
    expected = Expected(
        issuer=idp.server.issuer,
        client_id=OTHER_CLIENT_ID,
        nonce=foreign.nonce,
        algorithms=algorithms,
    )
    # The control: for its own client, the token is fine...
    # (Its `sub` is the login at oidc-provider, the user's database id at django-oidc-provider.)
    assert verify_id_token(foreign.id_token, idp.server.jwks(), expected, now)["sub"]
    # ...for Meetgate it has the wrong audience.
    with pytest.raises(SignInRejected):
        verify_id_token(
            foreign.id_token,
            idp.server.jwks(),
            Expected(idp.server.issuer, CLIENT_ID, foreign.nonce, algorithms),
            now,
        )
    # A token from another issuer: not signed by a key of `idp`, and not `idp`'s issuer.
    elsewhere = tokens_directly(other, "ada")
    with pytest.raises(UnknownSigningKey):
        verify_id_token(
            elsewhere.id_token,
            idp.server.jwks(),
            Expected(idp.server.issuer, OTHER_CLIENT_ID, elsewhere.nonce, algorithms),
            now,
        )
    with pytest.raises(SignInRejected):
        verify_id_token(
            elsewhere.id_token,
            other.jwks(),
            Expected(idp.server.issuer, OTHER_CLIENT_ID, elsewhere.nonce, algorithms),
            now,
        )
    # Nor is a real token accepted for another sign-in's nonce.
    with pytest.raises(SignInRejected):
        verify_id_token(
            foreign.id_token,
            idp.server.jwks(),
            Expected(idp.server.issuer, OTHER_CLIENT_ID, "another nonce", algorithms),
            now,
        )


def test_codes_states_and_tokens_never_reach_the_log(oidc: OidcSetup, idp: SignInProvider) -> None:
    gateway = oidc.gateway
    room = room_with(gateway)
    with browser(gateway) as client:
        authorization = begin(client, idp.name, room)
        back = authorize(client, authorization, "ada")
        ticket = ticket_of(client.get(back), room)
    secrets_seen = [
        query_of(back)["code"],
        query_of(back)["state"],
        query_of(authorization)["nonce"],
        query_of(authorization)["code_challenge"],
        ticket,
    ]

    def logged() -> bool:
        return f"GET {urlsplit(back).path}?" in gateway.log_text()

    wait_until(logged, timeout=5, what="the callback in the access log")
    log = gateway.log_text()
    for secret in secrets_seen:
        assert secret not in log
