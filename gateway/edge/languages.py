"""Which language a request's pages are in, and the switcher that changes it.

`language_of(scope)` reads, in this order: `?lang=` (the switcher's links on every page), the
`meetgate_lang` cookie (set by following such a link; it holds the language and nothing else),
`Accept-Language`, then (on a page of a room, `use_room_language`) the room's default language.
`LanguageChoice` is the pure ASGI layer around the pages: it makes the request's language the
current one for the templates and sets the cookie when a link chose one.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.i18n import DEFAULT, Language, chosen, from_accept_language

COOKIE = "meetgate_lang"
# A year: the choice is a preference, not a session.
COOKIE_SECONDS = 365 * 24 * 3600

# The language of the page being rendered (the templates and error pages read it), and whether
# the visitor asked for it (a link, the cookie, their browser) rather than getting the default.
current: ContextVar[Language] = ContextVar("meetgate_language", default=DEFAULT)
asked: ContextVar[bool] = ContextVar("meetgate_language_asked", default=False)
# What the request asked for, read once by LanguageChoice (a room's page negotiates again with it).
preferred: ContextVar[Preferences | None] = ContextVar("meetgate_language_wanted", default=None)
# Where the switcher's links lead: this page again, as a GET (see `switch_target`).
switching: ContextVar[tuple[str, tuple[tuple[str, str], ...]]] = ContextVar(
    "meetgate_language_switch", default=("/", ())
)

# The query values a page needs to be itself again (the sign-in page's room).
KEPT_QUERY = frozenset({"room"})
# A page answered to a form (a POST) cannot be asked for again by a link: its links lead to the
# page the form was sent from. Paths are the gate's allowlisted ASCII (gateway/proxy/paths.py).
_AFTER_FORM = (
    (re.compile(r"/_meetgate/email/([A-Za-z0-9._~-]+)/(?:send|verify)"), "/_meetgate/enter/{}"),
    (re.compile(r"/_meetgate/register/([A-Za-z0-9._~-]+)/send"), "/_meetgate/register/{}"),
    (re.compile(r"/_meetgate/register/([A-Za-z0-9._~-]+)/confirm"), "/_meetgate/register/{}/code"),
    (re.compile(r"/_meetgate/lobby/([A-Za-z0-9._~-]+)(?:/leave)?"), "/_meetgate/lobby/{}/wait"),
    (re.compile(r"/_meetgate/host/([A-Za-z0-9._~-]+)/[a-z-]+"), "/_meetgate/host/{}"),
    (re.compile(r"/j/([A-Za-z0-9._~-]+)"), "/j/{}"),
)


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def linked_choice(scope: Scope) -> Language | None:
    """The language a `?lang=` link chose, if it names one of ours."""
    query = scope.get("query_string", b"")
    if b"lang=" not in query:
        return None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "lang":
            return chosen(value)
    return None


def cookie_choice(scope: Scope) -> str | None:
    header = _header(scope, b"cookie")
    if header is None or COOKIE not in header:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(header)
    except CookieError:  # a cookie header that does not parse chooses nothing
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else None


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a request says of the language it wants, read once: a switcher link, the cookie,
    the browser's Accept-Language (each None when it names none of ours)."""

    link: Language | None
    cookie: Language | None
    browser: Language | None

    def language(self, room_default: str | None = None) -> Language:
        return self.link or self.cookie or self.browser or chosen(room_default) or DEFAULT

    @property
    def asked(self) -> bool:
        """Whether the visitor chose a language here (a link, the cookie), or their browser
        asked for one of ours other than English (a browser asking for English gets it from
        Jitsi Meet by itself)."""
        return (
            self.link is not None
            or self.cookie is not None
            or (self.browser is not None and self.browser is not DEFAULT)
        )


def preferences(scope: Scope) -> Preferences:
    return Preferences(
        linked_choice(scope),
        chosen(cookie_choice(scope)),
        from_accept_language(_header(scope, b"accept-language") or ""),
    )


def language_of(scope: Scope, room_default: str | None = None) -> Language:
    return preferences(scope).language(room_default)


def asked_for(scope: Scope) -> bool:
    return preferences(scope).asked


def use_room_language(scope: Scope, room_default: str) -> Language:
    """On a page of a room, once its record is read: the request's language negotiated again
    with the room's default (the visitor's own choice and their browser's still come first),
    made current for the rest of the request, error pages included (LanguageChoice restores
    the context after it). Jitsi Meet is handed a non-English default too, as it cannot know
    the room's."""
    wanted = preferred.get() or preferences(scope)
    language = wanted.language(room_default)
    current.set(language)
    # Without the visitor asking, a language other than English can only be the room's.
    asked.set(wanted.asked or language is not DEFAULT)
    return language


def switch_target(scope: Scope) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The path and query the switcher's links lead to: a GET page itself with the query values
    it needs to be itself (KEPT_QUERY, an allowlist: a notice or anything else a link added is
    dropped); a page answered to a form, the page the form was on; else the home page."""
    path = str(scope.get("path", "/"))
    if scope.get("method", "GET") in ("GET", "HEAD"):
        query = scope.get("query_string", b"").decode("latin-1")
        kept = tuple(
            (key, value)
            for key, value in parse_qsl(query, keep_blank_values=True)
            if key in KEPT_QUERY
        )
        return path, kept
    for pattern, target in _AFTER_FORM:
        match = pattern.fullmatch(path)
        if match is not None:
            return target.format(match.group(1)), ()
    return "/", ()


def switch_link(language: Language) -> str:
    """The switcher's link to this page in `language`."""
    path, kept = switching.get()
    return f"{path}?{urlencode((*kept, ('lang', language.tag)))}"


def jitsi_query() -> str:
    """The query that opens Jitsi Meet's own interface in the current page's language (its
    `?lang=`, which it reads before its stored choice), when the visitor asked for one."""
    return f"?lang={current.get().jitsi}" if asked.get() else ""


def choice_cookie(language: Language, *, secure: bool) -> bytes:
    flags = "; Secure" if secure else ""
    return (
        f"{COOKIE}={language.tag}; Max-Age={COOKIE_SECONDS}; Path=/; SameSite=Lax{flags}"
    ).encode()


class LanguageChoice:
    """Around the pages: the request's language made current, the switcher's choice kept."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        wanted = preferences(scope)
        tokens = (
            preferred.set(wanted),
            current.set(wanted.language()),
            asked.set(wanted.asked),
            switching.set(switch_target(scope)),
        )
        try:
            link = wanted.link if scope["type"] == "http" else None
            if link is None:
                await self.app(scope, receive, send)
                return
            cookie = choice_cookie(link, secure=self.secure)

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = [*message.get("headers", []), (b"set-cookie", cookie)]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_cookie)
        finally:
            preferred.reset(tokens[0])
            current.reset(tokens[1])
            asked.reset(tokens[2])
            switching.reset(tokens[3])
