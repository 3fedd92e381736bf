"""Changing a room's policy on the host dashboard, against the real `meetgate serve`: with and
without script, taking effect for the next join, audited, and every bad request refused with the
policy left as it was."""

from __future__ import annotations

import hashlib
import html
import re
from typing import Any

import httpx
import pytest

from gateway.host.dashboard import CsrfTokens
from tests.fixtures.gateway_server import INVITES_ONLY, GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.oidc import OidcSetup
from tests.integration.journeys import Admitted, admit, csrf_token, new_room

pytestmark = pytest.mark.slow

# The fixtures' gateways all use this pseudonym key (tests/fixtures/gateway_server.py).
PSEUDONYM_KEY = b"p" * 40


def as_browser(gateway: GatewayServer, who: Admitted | None = None) -> httpx.Client:
    cookies = who.cookies if who is not None else None
    return httpx.Client(
        base_url=gateway.url, trust_env=False, timeout=30, cookies=cookies, verify=TLS
    )


def dashboard_page(gateway: GatewayServer, host: Admitted) -> str:
    with as_browser(gateway, host) as client:
        page = client.get(f"/_meetgate/host/{host.room}")
    assert page.status_code == 200, page.text
    return page.text


def policy_version(gateway: GatewayServer, host: Admitted) -> str:
    found = re.search(r'name="was" value="([0-9a-f]+)"', dashboard_page(gateway, host))
    assert found, "the dashboard carries no policy form"
    return found.group(1)


def rules(gateway: GatewayServer, room: str) -> dict[str, Any]:
    with gateway.admin() as admin:
        return dict(admin.get(f"/api/v1/rooms/{room}").json()["rules"])


def listed(gateway: GatewayServer, room: str, address: str) -> dict[str, bool]:
    """Whether the room's policy lists `address` (the admin API lists no address)."""
    with gateway.admin() as admin:
        answer = admin.get(f"/api/v1/rooms/{room}/policy/emails/{address}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def post_policy(
    gateway: GatewayServer,
    who: Admitted | None,
    room: str,
    fields: dict[str, str],
    *,
    json: bool = True,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"origin": gateway.url, **(headers or {})}
    if json:
        sent["accept"] = "application/json"
    with as_browser(gateway, who) as client:
        return client.post(f"/_meetgate/host/{room}/policy", data=fields, headers=sent)


def form(gateway: GatewayServer, host: Admitted, **fields: str) -> dict[str, str]:
    """A confirmed policy form as the dashboard's script sends it: the boxes ticked in `fields`."""
    return {
        "csrf": csrf_token(gateway, host),
        "was": policy_version(gateway, host),
        "confirmed": "1",
        **fields,
    }


def entry_page(gateway: GatewayServer, room: str) -> httpx.Response:
    with as_browser(gateway) as client:
        return client.get(f"/_meetgate/enter/{room}")


@pytest.fixture
def meeting(gateway: GatewayServer) -> tuple[str, Admitted, Admitted]:
    room = new_room(gateway)
    return room, admit(gateway, room, "Hilde Host", role="host"), admit(gateway, room, "Ada")


def test_the_dashboard_shows_the_policy_in_a_form(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    page = dashboard_page(gateway, host)
    assert f'action="/_meetgate/host/{room}/policy"' in page
    assert 'name="invite" value="1" checked' in page
    for unticked in ("email_code", "lobby"):
        assert f'name="{unticked}" value="1">' in page
    # No provider is configured on this gateway: the box cannot be ticked.
    assert 'name="oidc" value="1" disabled' in page
    for textarea in ("allowed_emails", "allowed_domains", "host_emails"):
        assert f'name="{textarea}"' in page
    assert "ways in: invite" in page


def test_without_script_a_change_is_confirmed_saved_and_offered_at_the_next_join(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    # An invite-only room offers nobody else a way in.
    assert entry_page(gateway, room).status_code == 403
    fields = form(gateway, host, lobby="1", invite="1")
    fields["allowed_emails"] = "Ada@Uni.Example\nbob@uni.example, ada@uni.example"
    fields["allowed_domains"] = "@Staff.Example"
    del fields["confirmed"]
    asked = post_policy(gateway, host, room, fields, json=False)
    assert asked.status_code == 200
    assert "Change who may enter this room?" in asked.text
    assert "ways in: invite, host approves" in asked.text
    for name, value in fields.items():
        assert f'name="{name}" value="{html.escape(value)}"' in asked.text, name
    assert 'name="confirmed" value="1"' in asked.text
    assert rules(gateway, room)["lobby"] is False  # asking changed nothing

    done = post_policy(gateway, host, room, {**fields, "confirmed": "1"}, json=False)
    assert done.status_code == 303
    assert done.headers["location"] == f"/_meetgate/host/{room}?done=policy"
    page = dashboard_page_at(gateway, host, done.headers["location"])
    assert "The new policy is saved" in page
    assert 'name="lobby" value="1" checked' in page
    assert "ada@uni.example\nbob@uni.example</textarea>" in page
    saved = rules(gateway, room)
    assert saved["lobby"] is True and saved["invite"] is True
    assert saved["allowed_email_count"] == 2 and saved["host_email_count"] == 0
    for address in ("ada@uni.example", "Bob@Uni.Example"):
        assert listed(gateway, room, address) == {"allowed": True, "host": False}
    assert listed(gateway, room, "eve@uni.example") == {"allowed": False, "host": False}
    assert saved["allowed_domains"] == ["staff.example"]

    # The next visitor is offered the lobby, without any restart.
    entry = entry_page(gateway, room)
    assert entry.status_code == 200 and "Ask to be let in" in entry.text
    assert "Get a code by e-mail" not in entry.text
    with as_browser(gateway, host) as client:
        audit = client.get(f"/_meetgate/host/{room}/roster").json()["audit"]
    assert [(e["action"], e["actor_name"]) for e in audit] == [("change policy", "Hilde Host")]
    assert audit[0]["detail"] == "ways in: invite, host approves; lists: 2 addresses, 1 domain"
    # A link cannot make the dashboard say anything else.
    forged = "<b>pwned</b>" + "x" * 100
    other = dashboard_page_at(gateway, host, f"/_meetgate/host/{room}?done={forged}")
    assert "pwned" not in other and "The new policy is saved" not in other


def test_checking_an_address_lists_nothing_and_refuses_bad_input(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, _, _ = meeting
    base = f"/api/v1/rooms/{room}/policy/emails"
    with gateway.admin() as admin:
        assert admin.get(f"{base}/{'a' * 300}@x.example").status_code == 422
        assert admin.get("/api/v1/rooms/no-such-room/policy/emails/a@b.example").status_code == 404
        odd = admin.get(f"{base}/%00%E2%80%AE'--")
        assert odd.status_code == 200 and odd.json() == {"allowed": False, "host": False}
        assert admin.get(f"{base}/").status_code == 422
        del admin.headers["authorization"]
        assert admin.get(f"{base}/a@b.example").status_code == 401


def dashboard_page_at(gateway: GatewayServer, host: Admitted, location: str) -> str:
    with as_browser(gateway, host) as client:
        page = client.get(location)
    assert page.status_code == 200, page.text
    return page.text


def test_with_script_the_answer_carries_the_saved_policy_and_its_version(oidc: OidcSetup) -> None:
    # This gateway names an SMTP server, so a room may offer e-mail codes.
    gateway = oidc.gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    fields = form(gateway, host, email_code="1", host_emails="Chair@Uni.Example")
    first = post_policy(gateway, host, room, fields)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["ok"] is True and answer["done"] is True
    assert "The new policy is saved" in answer["message"]
    policy = answer["policy"]
    assert policy["email_code"] is True and policy["invite"] is False
    assert policy["host_emails"] == "chair@uni.example"
    assert policy["version"] != fields["was"]
    entry = entry_page(gateway, room)
    assert entry.status_code == 200 and "Get a code by e-mail" in entry.text

    # The same form again is out of date: someone (here: this host) changed the policy since.
    stale = post_policy(gateway, host, room, {**fields, "lobby": "1"})
    assert stale.status_code == 409 and stale.json()["error"] == "policy_changed"
    assert rules(gateway, room)["lobby"] is False
    # With the version it got back, the same policy again changes nothing.
    same = post_policy(gateway, host, room, {**fields, "was": policy["version"]})
    assert same.status_code == 200
    assert same.json()["done"] is False and "already has this policy" in same.json()["message"]
    with as_browser(gateway, host) as client:
        audit = client.get(f"/_meetgate/host/{room}/roster").json()["audit"]
    assert [e["action"] for e in audit] == ["change policy"]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "at least one way in"),
        ({"oidc": "1"}, "needs an OpenID Connect provider"),
        ({"invite": "1", "provider.nope": "1"}, "No OpenID Connect provider is configured as nope"),
        ({"invite": "yes"}, "can only be ticked or not"),
        ({"invite": "1", "allowed_emails": "not-an-address"}, "not a valid address"),
        ({"invite": "1", "host_emails": "a@b.example\u202e"}, "control, invisible"),
        ({"invite": "1", "allowed_emails": "x" * 300 + "@uni.example"}, "at most 254"),
        ({"invite": "1", "allowed_domains": "uni.example/evil"}, "not a valid domain"),
        (
            {"invite": "1", "allowed_domains": " ".join(f"d{i}.example" for i in range(1001))},
            "At most 1000 allowed domains",
        ),
        ({"invite": "1", "allowed_groups": "staff\x00"}, "control, invisible"),
        # This gateway names no SMTP server: no code could be sent.
        (
            {"email_code": "1"},
            "E-mail codes need an SMTP server, and this Meetgate has none configured: an admin"
            " must set [smtp] host (MEETGATE_SMTP__HOST) first.",
        ),
    ],
)
def test_bad_policies_are_refused_and_change_nothing(
    gateway: GatewayServer,
    meeting: tuple[str, Admitted, Admitted],
    fields: dict[str, str],
    says: str,
) -> None:
    room, host, _ = meeting
    before = rules(gateway, room)
    response = post_policy(gateway, host, room, form(gateway, host, **fields))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_input"
    assert says in response.json()["message"]
    page = post_policy(gateway, host, room, form(gateway, host, **fields), json=False)
    assert page.status_code == 400 and says in html.unescape(page.text)
    # Refused before the question too: no confirmation page for a policy that cannot be saved.
    unconfirmed = {k: v for k, v in form(gateway, host, **fields).items() if k != "confirmed"}
    assert post_policy(gateway, host, room, unconfirmed, json=False).status_code == 400
    assert rules(gateway, room) == before


def test_a_form_without_its_version_is_refused(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    fields = form(gateway, host, lobby="1")
    del fields["was"]
    response = post_policy(gateway, host, room, fields)
    assert response.status_code == 400 and "reload the page" in response.json()["message"]
    forged = post_policy(gateway, host, room, {**fields, "was": "0" * 16})
    assert forged.status_code == 409
    assert rules(gateway, room)["lobby"] is False


def test_only_a_host_of_the_room_may_change_its_policy(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    other_host = admit(gateway, new_room(gateway), "Other Host", role="host")
    fields = form(gateway, host, lobby="1")
    nobody = post_policy(gateway, None, room, fields)
    assert nobody.status_code == 403 and nobody.json()["error"] == "not_admitted"
    attendee = post_policy(gateway, ada, room, fields)
    assert attendee.status_code == 403 and attendee.json()["error"] == "not_host"
    stranger = post_policy(
        gateway, other_host, room, {**fields, "csrf": csrf_token(gateway, other_host)}
    )
    assert stranger.status_code == 403 and stranger.json()["error"] == "not_host"
    page = post_policy(gateway, ada, room, fields, json=False)
    assert page.status_code == 403 and "Hosts only" in page.text
    assert rules(gateway, room)["lobby"] is False


def test_a_policy_change_needs_this_sessions_csrf_token_for_this_room(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    co_host = admit(gateway, room, "Co Host", role="host")
    fields = form(gateway, host, lobby="1")
    own = fields.pop("csrf")
    host_id = hashlib.sha256(host.cookie.encode()).hexdigest()
    other_rooms = CsrfTokens(PSEUDONYM_KEY).issue(host_id, new_room(gateway))
    assert CsrfTokens(PSEUDONYM_KEY).issue(host_id, room) == own  # the forgery below is real
    for token in (None, "", "0" * 64, own.upper(), csrf_token(gateway, co_host), other_rooms):
        sent = fields if token is None else {**fields, "csrf": token}
        response = post_policy(gateway, host, room, sent)
        assert response.status_code == 403, token
        assert response.json()["error"] == "csrf_failed"
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        crossed = post_policy(gateway, host, room, {**fields, "csrf": own}, headers=headers)
        assert crossed.status_code == 403 and crossed.json()["error"] == "cross_site_request"
    assert rules(gateway, room)["lobby"] is False


def test_huge_policy_forms_are_refused(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    fields = form(gateway, host, invite="1")
    huge = post_policy(gateway, host, room, {**fields, "allowed_emails": "a@b.example " * 20_000})
    assert huge.status_code == 413
    many = post_policy(
        gateway, host, room, {**fields, **{f"provider.p{i}": "1" for i in range(40)}}
    )
    assert many.status_code == 400
    # An ordinary action keeps its own small limit.
    with as_browser(gateway, host) as client:
        small = client.post(
            f"/_meetgate/host/{room}/lock",
            data={"csrf": fields["csrf"], "confirmed": "1", "filler": "x" * 20_000},
            headers={"origin": gateway.url, "accept": "application/json"},
        )
    assert small.status_code == 413
    assert rules(gateway, room)["allowed_email_count"] == 0


def test_the_dashboard_picks_sign_in_providers(oidc: OidcSetup) -> None:
    gateway = oidc.gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    page = dashboard_page(gateway, host)
    assert 'name="provider.idp" value="1">' in page and "University Login" in page
    assert "http://" not in page  # providers by their labels, never their addresses
    fields = form(gateway, host, invite="1", oidc="1", **{"provider.other": "1"})
    fields["allowed_groups"] = "staff\r\n/Org Unit/Team A\n"
    response = post_policy(gateway, host, room, fields)
    assert response.status_code == 200, response.text
    saved = rules(gateway, room)
    assert saved["oidc"] is True and saved["oidc_providers"] == ["other"]
    assert saved["allowed_groups"] == ["staff", "/Org Unit/Team A"]
    entry = entry_page(gateway, room)
    assert "Sign in with Other Login" in entry.text
    assert "University Login" not in entry.text


def test_the_admin_api_refuses_e_mail_codes_without_an_smtp_server(
    gateway: GatewayServer, oidc: OidcSetup
) -> None:
    room = new_room(gateway)
    with gateway.admin() as client:
        refused = client.put(
            f"/api/v1/rooms/{room}/policy", json={**INVITES_ONLY, "email_code": True}
        )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_input"
    assert "[smtp] host (MEETGATE_SMTP__HOST)" in refused.json()["message"]
    assert rules(gateway, room)["email_code"] is False
    # Where the configuration names one, the same policy is taken.
    named = oidc.gateway
    other = new_room(named)
    named.set_policy(other, email_code=True)
    assert rules(named, other)["email_code"] is True


def test_the_dashboard_says_in_chinese_why_e_mail_codes_cannot_be_offered(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    fields = form(gateway, host, email_code="1", invite="1")
    response = post_policy(gateway, host, room, fields, headers={"accept-language": "zh-TW"})
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "郵件驗證碼" in message and "MEETGATE_SMTP__HOST" in message
    assert "E-mail codes" not in message
