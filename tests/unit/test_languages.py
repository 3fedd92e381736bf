"""Which language a page is in: the visitor's choice, their browser's, the room's, English
(gateway/i18n.py, gateway/edge/languages.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.edge.languages import (
    COOKIE,
    choice_cookie,
    current,
    jitsi_query,
    language_of,
    switch_link,
    switch_target,
    switching,
    use_room_language,
)
from gateway.i18n import (
    BY_TAG,
    ENGLISH,
    LANGUAGES,
    SIMPLIFIED,
    TRADITIONAL,
    Language,
    discover,
    from_accept_language,
    match,
    negotiate,
)

# Hong Kong's words in Traditional characters: a catalog of its own, kept in step with zh_Hant.
HONG_KONG = BY_TAG["zh-hant-hk"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-CN", SIMPLIFIED),
        ("zh-SG", SIMPLIFIED),
        ("zh", SIMPLIFIED),
        ("zh-Hans", SIMPLIFIED),
        ("zh-Hans-HK", SIMPLIFIED),  # the script says so, whatever the region
        ("zh-TW", TRADITIONAL),
        ("zh-HK", HONG_KONG),
        ("zh-MO", HONG_KONG),  # Macao's written usage follows Hong Kong's (CLDR)
        ("zh-Hant-HK", HONG_KONG),
        ("zh-Hant-MO", HONG_KONG),
        ("zh_HK", HONG_KONG),
        ("zh-Hant", TRADITIONAL),
        ("zh-Hant-CN", TRADITIONAL),
        ("zh_TW", TRADITIONAL),
        ("ZH-tw", TRADITIONAL),
        ("en-US,en;q=0.9", ENGLISH),
        ("de-DE,zh-TW;q=0.5", TRADITIONAL),
        ("en;q=0.4,zh-HK;q=0.8", HONG_KONG),
        ("zh-HK;q=0.5,zh-TW;q=0.9", TRADITIONAL),
        ("zh-TW;q=0.5,zh-HK", HONG_KONG),
        ("zh-CN;q=0.8,zh-TW;q=0.8", SIMPLIFIED),  # equal weights: the first named
        ("fr-FR,de;q=0.9", None),
        ("zh-TW;q=0,en", ENGLISH),  # q=0 means "not this one"
        ("", None),
        ("*", None),
        ("zh-TW;q=abc,zh-CN", SIMPLIFIED),
        (",,,;;;===", None),
        ("x" * 10_000, None),
    ],
)
def test_accept_language(header: str, expected: object) -> None:
    assert from_accept_language(header) is expected


def test_the_visitors_choice_beats_the_browser_and_the_room() -> None:
    assert negotiate("zh-Hant", "zh-CN", "en") is TRADITIONAL
    assert negotiate(None, "zh-CN", "zh-Hant") is SIMPLIFIED
    # A browser asking for none of ours gets the room's language, then English.
    assert negotiate(None, "ja", "zh-Hant") is TRADITIONAL
    assert negotiate(None, "ja", None) is ENGLISH
    # A cookie or room value that is not one of ours is ignored.
    assert negotiate("klingon", "zh-TW", "<script>") is TRADITIONAL


def scope(query: bytes = b"", **headers: str) -> dict[str, object]:
    return {
        "type": "http",
        "query_string": query,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def test_a_link_beats_the_cookie_which_beats_the_browser() -> None:
    both = {"cookie": f"{COOKIE}=zh-Hans", "accept_language": "zh-TW"}
    assert language_of(scope(b"lang=en", **both)) is ENGLISH
    assert language_of(scope(**both)) is SIMPLIFIED
    assert language_of(scope(accept_language="zh-TW")) is TRADITIONAL
    assert language_of(scope()) is ENGLISH


@pytest.mark.parametrize(
    "cookie",
    [f"{COOKIE}=", f"{COOKIE}=fr", f'{COOKIE}="\\x00"', "garbage;;;=", f"a=b; {COOKIE}"],
)
def test_a_cookie_that_chooses_nothing_of_ours_is_ignored(cookie: str) -> None:
    assert language_of(scope(cookie=cookie, accept_language="zh-HK")) is HONG_KONG


@pytest.mark.parametrize("query", [b"lang=fr", b"lang=", b"lang=%00", b"lang=zh-Hant%0d%0aX: y"])
def test_a_link_that_names_no_language_of_ours_is_ignored(query: bytes) -> None:
    assert language_of(scope(query, accept_language="zh-CN")) is SIMPLIFIED


def test_the_choice_cookie_holds_the_language_only() -> None:
    assert choice_cookie(TRADITIONAL, secure=True) == (
        b"meetgate_lang=zh-Hant; Max-Age=31536000; Path=/; SameSite=Lax; Secure"
    )


@pytest.mark.parametrize(
    ("headers", "room", "expected", "handed_to_jitsi"),
    [
        ({}, "zh-Hant", TRADITIONAL, True),  # the room's language decides: Jitsi is told
        ({"accept_language": "fr"}, "zh-Hans", SIMPLIFIED, True),
        ({}, "en", ENGLISH, False),  # English by default: Jitsi finds the browser's itself
        ({}, "", ENGLISH, False),
        ({}, "fr", ENGLISH, False),  # not one of ours: no default
        ({"accept_language": "en-GB"}, "zh-Hant", ENGLISH, False),  # the browser asked
        ({"accept_language": "zh-CN"}, "zh-Hant", SIMPLIFIED, True),
        ({"cookie": f"{COOKIE}=en"}, "zh-Hant", ENGLISH, True),  # the visitor chose
    ],
)
def test_a_rooms_language_answers_visitors_who_chose_none(
    headers: dict[str, str], room: str, expected: Language, handed_to_jitsi: bool
) -> None:
    async def page() -> tuple[Language, str]:
        use_room_language(scope(**headers), room)
        return current.get(), jitsi_query()

    language, query = asyncio.run(page())
    assert language is expected
    assert query == (f"?lang={expected.jitsi}" if handed_to_jitsi else "")
    # Set for that request only: this context is untouched.
    assert current.get() is ENGLISH and jitsi_query() == ""


def request(method: str, path: str, query: bytes = b"") -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        # A page asked for by a link leads to itself, its query kept, a former choice dropped.
        (
            "GET",
            "/_meetgate/oidc/uni/login",
            b"room=r1&lang=en&done=%3Cb%3E",
            ("/_meetgate/oidc/uni/login", (("room", "r1"),)),
        ),
        ("GET", "/j/abc", b"", ("/j/abc", ())),
        ("HEAD", "/", b"", ("/", ())),
        # A page answered to a form leads to the page the form was on.
        ("POST", "/_meetgate/email/r1/send", b"", ("/_meetgate/enter/r1", ())),
        ("POST", "/_meetgate/email/r1/verify", b"", ("/_meetgate/enter/r1", ())),
        ("POST", "/_meetgate/lobby/r1", b"", ("/_meetgate/lobby/r1/wait", ())),
        ("POST", "/_meetgate/lobby/r1/leave", b"", ("/_meetgate/lobby/r1/wait", ())),
        ("POST", "/_meetgate/host/r1/ban", b"", ("/_meetgate/host/r1", ())),
        ("POST", "/j/abc", b"", ("/j/abc", ())),
        # Any other form: the home page, never somewhere a path could point.
        ("POST", "/_meetgate/oidc/uni/login", b"", ("/", ())),
        ("POST", "/_meetgate/email/r1/send/../../x", b"", ("/", ())),
    ],
)
def test_the_switcher_leads_back_to_a_page_a_link_can_reach(
    method: str, path: str, query: bytes, expected: object
) -> None:
    assert switch_target(request(method, path, query)) == expected


def test_a_switch_link_carries_the_kept_query_escaped_by_urlencode() -> None:
    token = switching.set(("/_meetgate/oidc/uni/login", (("room", "a&b"),)))
    try:
        assert switch_link(TRADITIONAL) == "/_meetgate/oidc/uni/login?room=a%26b&lang=zh-Hant"
    finally:
        switching.reset(token)


def test_adding_a_language_is_adding_its_catalog(tmp_path: Path) -> None:
    # The catalogs' folder as `scripts/i18n ja pt_BR` leaves it, next to the two Chinese ones.
    for locale in ("zh_Hant", "ja", "zh_Hans", "pt_BR"):
        folder = tmp_path / locale / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "messages.po").write_text('msgid ""\nmsgstr ""\n', encoding="utf-8")
    (tmp_path / "not-a-catalog").mkdir()
    languages = discover(tmp_path)
    assert [language.tag for language in languages] == ["en", "ja", "pt-BR", "zh-Hans", "zh-Hant"]
    by_tag = {language.tag: language for language in languages}
    assert by_tag["ja"].jitsi == "ja" and by_tag["pt-BR"].jitsi == "ptBR"
    assert by_tag["zh-Hant"].jitsi == "zhTW"
    assert match("ja-jp", languages) is by_tag["ja"]
    assert match("pt-br", languages) is by_tag["pt-BR"]
    assert match("pt", languages) is by_tag["pt-BR"]
    # Without a Hong Kong catalog, Hong Kong and Macao read the Traditional one.
    assert match("zh-hk", languages) is by_tag["zh-Hant"]
    assert match("zh-mo", languages) is by_tag["zh-Hant"]
    assert match("ko", languages) is None


def test_the_switcher_names_each_language_in_itself() -> None:
    assert [language.name for language in LANGUAGES] == [
        "English",
        "简体中文",
        "繁體中文",
        "繁體中文（香港）",  # noqa: RUF001  # the full-width brackets are meant
    ]


def test_hong_kong_has_its_own_catalog_and_taiwans_jitsi() -> None:
    assert HONG_KONG.locale == "zh_Hant_HK" and HONG_KONG.tag == "zh-Hant-HK"
    # Jitsi Meet has no Hong Kong interface: its Traditional Chinese one is the nearest.
    assert HONG_KONG.jitsi == TRADITIONAL.jitsi == "zhTW"
    assert negotiate("zh-Hant-HK", "zh-TW", None) is HONG_KONG
    assert negotiate(None, "ja", "zh-Hant-HK") is HONG_KONG
