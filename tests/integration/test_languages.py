"""Every page in the visitor's language: chosen by their browser, by the switcher's links
(remembered in a cookie), handed on to Jitsi Meet. Pages only: the gateway runs in the test
process (tests/fixtures/in_process.py), in front of the test web server playing Jitsi."""

from __future__ import annotations

import base64
import html
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.errors import InviteUnknown
from gateway.i18n import BY_TAG, SIMPLIFIED, TRADITIONAL, gettext
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.in_process import in_process_gateway
from tests.integration.journeys import new_room

HONG_KONG = BY_TAG["zh-hant-hk"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[GatewayServer]:
    with in_process_gateway(tmp_path_factory.mktemp("languages"), upstream=jitsi_web.url) as gate:
        yield gate


def get(gateway: GatewayServer, path: str, **headers: str) -> httpx.Response:
    with gateway.client() as client:
        return client.get(path, headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_the_browsers_language_is_spoken(gateway: GatewayServer) -> None:
    for header, language in (
        ("zh-TW,zh;q=0.9,en;q=0.5", TRADITIONAL),
        ("zh-CN", SIMPLIFIED),
        ("zh-HK,zh;q=0.9", HONG_KONG),
        ("zh-MO", HONG_KONG),
    ):
        page = get(gateway, "/", accept_language=header).text
        assert f'<html lang="{language.tag}">' in page
        assert html.escape(gettext(language, "This meeting server is gated")) in page
    # Hong Kong's words where they differ from Taiwan's.
    assert gettext(HONG_KONG, "This meeting server is gated") == "這部會議伺服器設有門禁"
    assert gettext(TRADITIONAL, "This meeting server is gated") == "這台會議伺服器設有門禁"
    assert '<html lang="en">' in get(gateway, "/", accept_language="fr-FR").text


def test_the_switcher_chooses_and_the_cookie_remembers(gateway: GatewayServer) -> None:
    page = get(gateway, "/", accept_language="zh-TW").text
    # Every other language is a plain link (no JavaScript), named in its own language.
    assert 'href="/?lang=zh-Hans" lang="zh-Hans" hreflang="zh-Hans">简体中文</a>' in page
    assert 'href="/?lang=en" lang="en" hreflang="en">English</a>' in page
    assert '<span lang="zh-Hant" aria-current="true">繁體中文</span>' in page
    assert (
        'href="/?lang=zh-Hant-HK" lang="zh-Hant-HK" hreflang="zh-Hant-HK">繁體中文（香港）</a>'  # noqa: RUF001
        in page
    )

    with gateway.client() as browser:
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
    assert page.status_code == 404 and '<html lang="zh-Hant-HK">' in page.text
    assert html.escape(gettext(HONG_KONG, InviteUnknown.title)) in page.text
    # A kept error page's language links lead back to the page it answered.
    assert 'href="/j/not-a-real-link?lang=zh-Hans"' in page.text
    as_json = get(
        gateway, "/j/not-a-real-link", accept_language="zh-CN", accept="application/json"
    ).json()
    assert as_json["message"] == gettext(SIMPLIFIED, InviteUnknown.message)
    assert as_json["error"] == "invite_malformed"  # codes stay the same in every language


def test_jitsi_opens_in_the_language_chosen_at_the_gate(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    made = gateway.create_invite(room, "Ada")
    with gateway.client(headers={"accept-language": "zh-HK"}) as browser:
        joined = browser.post(f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url})
        assert joined.status_code == 303
        location = joined.headers["location"]
        # Jitsi Meet has no Hong Kong interface: Hong Kong's pages open its Traditional one.
        assert HONG_KONG.jitsi == "zhTW"
        assert location.startswith(f"/{room}?lang=zhTW#jwt=")
        # The meeting page passes the gate with it.
        assert browser.get(location.split("#", 1)[0]).status_code == 200
    # A visitor who asked for no language of ours leaves Jitsi to choose.
    made = gateway.create_invite(room, "Grace")
    with gateway.client() as browser:
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
        with gateway.client(headers=headers) as browser:
            joined = browser.post(
                f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url}
            )
            assert joined.headers["location"].startswith(expected)


def room_speaking(gateway: GatewayServer, language: str) -> str:
    """A new room whose default language is `language`, set through the admin API."""
    room = new_room(gateway)
    with gateway.admin() as admin:
        changed = admin.patch(f"/api/v1/rooms/{room}", json={"language": language})
        assert changed.status_code == 200, changed.text
        assert changed.json()["language"] == language
    return room


def test_a_rooms_pages_speak_its_default_language(gateway: GatewayServer) -> None:
    room = room_speaking(gateway, TRADITIONAL.tag)
    invited = html.escape(gettext(TRADITIONAL, "Join the meeting"))
    # No Accept-Language at all (httpx sends none): the room's language, handed on to Jitsi.
    link = f"/j/{gateway.invite_token(gateway.create_invite(room, 'Ada'))}"
    with gateway.client() as browser:
        landing = browser.get(link)
        assert landing.status_code == 200
        assert '<html lang="zh-Hant">' in landing.text and invited in landing.text
        joined = browser.post(link, headers={"origin": gateway.url})
        assert joined.headers["location"].startswith(f"/{room}?lang={TRADITIONAL.jitsi}#jwt=")
        # A refusal after the link was found speaks it too: the link is used up now.
        browser.cookies.clear()
        used = browser.get(link)
        assert used.status_code == 410 and '<html lang="zh-Hant">' in used.text
    # A browser asking for one of ours is answered in it.
    link = f"/j/{gateway.invite_token(gateway.create_invite(room, 'Grace'))}"
    page = get(gateway, link, accept_language="zh-CN")
    assert '<html lang="zh-Hans">' in page.text
    assert html.escape(gettext(SIMPLIFIED, "Join the meeting")) in page.text
    # A visitor who chose English with the switcher gets English, and so does Jitsi.
    with gateway.client() as browser:
        chosen = browser.get(f"{link}?lang=en")
        assert '<html lang="en">' in chosen.text and "Join the meeting" in chosen.text
        joined = browser.post(link, headers={"origin": gateway.url})
        assert joined.headers["location"].startswith(f"/{room}?lang=en#jwt=")


def test_a_room_without_a_default_leaves_the_visitor_in_english(gateway: GatewayServer) -> None:
    room = room_speaking(gateway, TRADITIONAL.tag)
    with gateway.admin() as admin:
        cleared = admin.patch(f"/api/v1/rooms/{room}", json={"language": ""})
        assert cleared.json()["language"] is None
    made = gateway.create_invite(room, "Ada")
    page = get(gateway, f"/j/{gateway.invite_token(made)}")
    assert '<html lang="en">' in page.text


def test_the_gate_page_and_the_lobby_speak_the_rooms_language(gateway: GatewayServer) -> None:
    room = room_speaking(gateway, SIMPLIFIED.tag)
    gateway.set_policy(room, lobby=True)
    with gateway.client() as browser:
        gate = browser.get(f"/_meetgate/enter/{room}", headers={"accept-language": "fr"})
        assert gate.status_code == 200 and '<html lang="zh-Hans">' in gate.text
        knocked = browser.post(
            f"/_meetgate/lobby/{room}", data={"name": "Ada"}, headers={"origin": gateway.url}
        )
        assert knocked.status_code == 303
        waiting = browser.get(knocked.headers["location"])
        assert '<html lang="zh-Hans">' in waiting.text
        assert html.escape(gettext(SIMPLIFIED, "Waiting for a host")) in waiting.text
    # A room open to invitees only is refused exactly as a room that does not exist: in the
    # visitor's language, not the room's, so the page tells nothing about which rooms exist.
    closed = room_speaking(gateway, TRADITIONAL.tag)
    refusals = [get(gateway, f"/_meetgate/enter/{name}") for name in (closed, "no-such-room")]
    assert [r.status_code for r in refusals] == [403, 403]
    assert all('<html lang="en">' in r.text for r in refusals)


def test_the_admin_api_takes_only_our_languages_and_names_the_field(
    gateway: GatewayServer,
) -> None:
    name = f"room-{secrets.token_hex(4)}"
    with gateway.admin() as admin:
        made = admin.post("/api/v1/rooms", json={"name": name, "language": "zh-Hant"})
        assert made.status_code == 201 and made.json()["language"] == "zh-Hant"
        assert admin.get(f"/api/v1/rooms/{name}").json()["language"] == "zh-Hant"
        for bad in ("fr", "zh-hant", "zh_TW", " en", 7, ["en"]):
            for method, path, body in (
                ("POST", "/api/v1/rooms", {"name": f"{name}-x", "language": bad}),
                ("PATCH", f"/api/v1/rooms/{name}", {"language": bad}),
            ):
                refused = admin.request(method, path, json=body)
                assert refused.status_code == 422, (bad, refused.text)
                problem = refused.json()
                assert problem["error"] == "request_invalid"
                assert [f["where"] for f in problem["fields"]] == ["body.language"]
                assert "body.language" in problem["message"]
        # Nothing was changed or made by the refused calls.
        assert admin.get(f"/api/v1/rooms/{name}").json()["language"] == "zh-Hant"
        assert admin.get(f"/api/v1/rooms/{name}-x").status_code == 404
        # null leaves the language as it is; "" removes it.
        kept = admin.patch(f"/api/v1/rooms/{name}", json={"language": None, "locked": True})
        assert kept.json()["language"] == "zh-Hant"
        cleared = admin.patch(f"/api/v1/rooms/{name}", json={"language": ""})
        assert cleared.json()["language"] is None
        # Every catalog's tag is one of ours, Hong Kong's too.
        hong_kong = admin.patch(f"/api/v1/rooms/{name}", json={"language": "zh-Hant-HK"})
        assert hong_kong.json()["language"] == "zh-Hant-HK"


# Names as people write them: Chinese (both scripts), Arabic (right to left), Devanagari and
# Thai (combining vowel signs), Cyrillic, Latin with diacritics, Japanese, Korean.
NAMES = [
    "陳大文",
    "王小明",
    "محمد علي",
    "प्रिया शर्मा",
    "สมชาย ใจดี",
    "Иван Петров",
    "Zoë Ünal-Nguyễn",
    "佐藤 花子",
    "김민준",
]


def ticket_name(location: str) -> str:
    payload = location.split("#jwt=", 1)[1].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["context"]["user"]["name"])


def test_names_in_any_script_are_shown_and_handed_on_intact(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    for name in NAMES:
        token = gateway.invite_token(gateway.create_invite(room, name))
        with gateway.client() as browser:
            page = browser.get(f"/j/{token}", headers={"accept-language": "zh-TW"})
            # Isolated from the sentence around it (a right-to-left name must not reorder it).
            assert f"<strong><bdi>{html.escape(name)}</bdi></strong>" in page.text
            joined = browser.post(f"/j/{token}", headers={"origin": gateway.url})
            assert joined.status_code == 303
            assert ticket_name(joined.headers["location"]) == name
