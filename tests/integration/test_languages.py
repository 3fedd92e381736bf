"""Every page in the visitor's language, through the real `meetgate serve`: chosen by their
browser, by the switcher's links (remembered in a cookie), handed on to Jitsi Meet."""

from __future__ import annotations

import html

import httpx

from gateway.errors import InviteUnknown
from gateway.i18n import SIMPLIFIED, TRADITIONAL, gettext
from tests.fixtures.gateway_server import GatewayServer
from tests.integration.journeys import new_room


def get(gateway: GatewayServer, path: str, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=gateway.url, trust_env=False) as client:
        return client.get(path, headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_the_browsers_language_is_spoken(gateway: GatewayServer) -> None:
    for header, language in (("zh-TW,zh;q=0.9,en;q=0.5", TRADITIONAL), ("zh-CN", SIMPLIFIED)):
        page = get(gateway, "/", accept_language=header).text
        assert f'<html lang="{language.tag}">' in page
        assert html.escape(gettext(language, "This meeting server is gated")) in page
    assert '<html lang="en">' in get(gateway, "/", accept_language="fr-FR").text


def test_the_switcher_chooses_and_the_cookie_remembers(gateway: GatewayServer) -> None:
    page = get(gateway, "/", accept_language="zh-TW").text
    # Every other language is a plain link (no JavaScript), named in its own language.
    assert 'href="?lang=zh-Hans" lang="zh-Hans" hreflang="zh-Hans">简体中文</a>' in page
    assert 'href="?lang=en" lang="en" hreflang="en">English</a>' in page
    assert '<span lang="zh-Hant" aria-current="true">繁體中文</span>' in page

    with httpx.Client(base_url=gateway.url, trust_env=False) as browser:
        chosen = browser.get("/?lang=zh-Hans", headers={"accept-language": "zh-TW"})
        assert '<html lang="zh-Hans">' in chosen.text
        cookie = chosen.headers["set-cookie"]
        assert cookie.startswith("meetgate_lang=zh-Hans;") and "SameSite=Lax" in cookie
        # Remembered over the browser's own preference.
        later = browser.get("/", headers={"accept-language": "zh-TW"})
        assert '<html lang="zh-Hans">' in later.text
        assert "set-cookie" not in later.headers


def test_refusals_are_in_the_visitors_language(gateway: GatewayServer) -> None:
    page = get(gateway, "/j/not-a-real-link", accept_language="zh-HK")
    assert page.status_code == 404
    assert html.escape(gettext(TRADITIONAL, InviteUnknown.title)) in page.text
    as_json = get(
        gateway, "/j/not-a-real-link", accept_language="zh-CN", accept="application/json"
    ).json()
    assert as_json["message"] == gettext(SIMPLIFIED, InviteUnknown.message)
    assert as_json["error"] == "invite_malformed"  # codes stay the same in every language


def test_jitsi_opens_in_the_language_chosen_at_the_gate(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    made = gateway.create_invite(room, "Ada")
    with httpx.Client(
        base_url=gateway.url, trust_env=False, headers={"accept-language": "zh-HK"}
    ) as browser:
        joined = browser.post(f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url})
        assert joined.status_code == 303
        location = joined.headers["location"]
        assert location.startswith(f"/{room}?lang={TRADITIONAL.jitsi}#jwt=")
        # The meeting page passes the gate with it.
        assert browser.get(location.split("#", 1)[0]).status_code == 200
    # A visitor who asked for no language of ours leaves Jitsi to choose.
    made = gateway.create_invite(room, "Grace")
    with httpx.Client(base_url=gateway.url, trust_env=False) as browser:
        joined = browser.post(f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url})
        assert joined.headers["location"].startswith(f"/{room}#jwt=")


def test_an_english_browser_leaves_jitsi_to_itself_unless_english_was_chosen(
    gateway: GatewayServer,
) -> None:
    room = new_room(gateway)
    for headers, expected in (
        ({"accept-language": "en-US,en;q=0.9"}, f"/{room}#jwt="),
        ({"accept-language": "zh-TW", "cookie": "meetgate_lang=en"}, f"/{room}?lang=en#jwt="),
    ):
        made = gateway.create_invite(room, "Ada")
        with httpx.Client(base_url=gateway.url, trust_env=False, headers=headers) as browser:
            joined = browser.post(
                f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url}
            )
            assert joined.headers["location"].startswith(expected)
