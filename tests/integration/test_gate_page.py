"""The gate page (`/_meetgate/enter/<room>`) against the real `meetgate serve` with real OpenID
providers configured: it offers exactly the ways in the room's policy allows, follows every
policy change at the next visit without a restart, and each way it does not offer is refused
when a browser tries it anyway."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fixtures.oidc import UNREACHABLE, OidcSetup, browser

pytestmark = pytest.mark.slow

LOBBY_HINT = "A host sees your request and lets you in."


@dataclass(frozen=True)
class Offer:
    """What a gate page offers: the providers to sign in with, a code by e-mail, a typed name
    for the lobby, and whether it says a host answers."""

    providers: frozenset[str] = frozenset()
    email: bool = False
    knock: bool = False
    host_answers: bool = False


def offer_of(page: str, room: str) -> Offer:
    logins = re.findall(rf'href="/_meetgate/oidc/([a-z0-9-]+)/login\?room={room}"', page)
    assert len(logins) == len(set(logins)), logins
    return Offer(
        providers=frozenset(logins),
        email=f'action="/_meetgate/email/{room}/send"' in page,
        knock=f'action="/_meetgate/lobby/{room}"' in page,
        host_answers=LOBBY_HINT in page,
    )


def every_provider(oidc: OidcSetup) -> frozenset[str]:
    return frozenset([*oidc.providers, UNREACHABLE])


CASES: list[tuple[str, dict[str, Any], Offer | None]] = [
    ("invites only", {"invite": True}, None),
    ("sign-in, any provider", {"oidc": True}, Offer(providers=frozenset({"*"}))),
    (
        "sign-in with two providers",
        {"oidc": True, "oidc_providers": ["idp", "other"]},
        Offer(providers=frozenset({"idp", "other"})),
    ),
    ("e-mail codes", {"email_code": True, "invite": True}, Offer(email=True)),
    ("lobby alone", {"lobby": True}, Offer(knock=True, host_answers=True)),
    (
        "sign-in, then a host approves",
        {"oidc": True, "oidc_providers": ["idp"], "lobby": True},
        Offer(providers=frozenset({"idp"}), host_answers=True),
    ),
    (
        "every way in",
        {
            "invite": True,
            "oidc": True,
            "oidc_providers": ["other"],
            "email_code": True,
            "lobby": True,
        },
        Offer(providers=frozenset({"other"}), email=True, host_answers=True),
    ),
    (
        "sign-in or a code to listed addresses",
        {
            "oidc": True,
            "oidc_providers": ["idp"],
            "email_code": True,
            "allowed_domains": ["uni.example"],
            "allowed_groups": ["staff"],
        },
        Offer(providers=frozenset({"idp"}), email=True),
    ),
]


def refused(response: httpx.Response, code: str) -> bool:
    return response.status_code == 403 and f"<code>{code}</code>" in response.text


def test_the_gate_page_offers_exactly_the_ways_in_the_policy_allows(oidc: OidcSetup) -> None:
    gateway = oidc.gateway
    room = f"gate-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Members' assembly")
    providers = every_provider(oidc)
    with browser(gateway) as client:
        # One room, its policy changed case after case: each visit sees the policy of now.
        for label, rules, expected in CASES:
            gateway.set_policy(room, **{"invite": False, **rules})
            page = client.get(f"/_meetgate/enter/{room}")
            if expected is None:
                assert refused(page, "not_admitted"), label
                offered = Offer()
            else:
                assert page.status_code == 200, (label, page.text)
                if expected.providers == {"*"}:
                    expected = Offer(providers=providers)
                offered = offer_of(page.text, room)
                assert offered == expected, label

            # What the page does not offer does not work either, tried directly.
            for provider in sorted(providers - offered.providers):
                login = client.get(f"/_meetgate/oidc/{provider}/login", params={"room": room})
                assert refused(login, "signin_not_offered"), (label, provider)
            if not offered.email:
                sent = client.post(
                    f"/_meetgate/email/{room}/send",
                    data={"email": "ada@uni.example"},
                    headers={"origin": gateway.url},
                )
                assert refused(sent, "not_admitted"), label
            if not offered.knock:
                knocked = client.post(
                    f"/_meetgate/lobby/{room}",
                    data={"name": "Gate Crasher"},
                    headers={"origin": gateway.url},
                )
                assert refused(knocked, "not_allowed"), label
                assert "meetgate-lobby" not in client.cookies
