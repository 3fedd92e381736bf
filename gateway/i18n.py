"""Languages: which one a request gets, and the messages in it (issue 14).

The pages speak English, Simplified Chinese and Traditional Chinese. Messages are written in
English in templates and code and looked up in Babel message catalogs
(`templates/locale/<locale>/LC_MESSAGES/messages.po`, compiled in memory when first used; see
docs/translating.md). `N_("…")` marks a user-visible message written in code (a refusal's title,
a page's heading) for extraction; it returns the English text unchanged, which is translated
where it is shown, in the language of the request that shows it.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from importlib.resources import files

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations


@dataclass(frozen=True, slots=True)
class Language:
    tag: str  # BCP 47, as in <html lang="…">, the cookie and ?lang=
    locale: str  # Babel's name, the catalog's folder
    name: str  # in the language itself, for the switcher
    jitsi: str  # Jitsi Meet's code for its own interface (its lang/languages.json)


ENGLISH = Language("en", "en", "English", "en")
SIMPLIFIED = Language("zh-Hans", "zh_Hans", "简体中文", "zhCN")
TRADITIONAL = Language("zh-Hant", "zh_Hant", "繁體中文", "zhTW")
LANGUAGES: tuple[Language, ...] = (ENGLISH, SIMPLIFIED, TRADITIONAL)
BY_TAG = {language.tag.lower(): language for language in LANGUAGES}
DEFAULT = ENGLISH

# What a browser's Accept-Language names, matched after lowercasing: Chinese by script where
# it says so, else by region (Hong Kong, Macao and Taiwan write Traditional characters), and a
# bare `zh` as Simplified, the script most Chinese readers learned first.
_CHINESE_REGIONS = {
    "tw": TRADITIONAL,
    "hk": TRADITIONAL,
    "mo": TRADITIONAL,
    "cn": SIMPLIFIED,
    "sg": SIMPLIFIED,
    "my": SIMPLIFIED,
}
MAX_ACCEPT_LANGUAGE = 512


def N_(message: str) -> str:  # gettext's conventional name for a marker
    return message


def chosen(tag: str | None) -> Language | None:
    """The language a cookie or `?lang=` names, if it is one of ours."""
    if not tag:
        return None
    return BY_TAG.get(tag.strip().lower())


@functools.lru_cache(maxsize=1024)
def from_accept_language(header: str) -> Language | None:
    """The first of ours a browser's Accept-Language header asks for (by its q weights), or
    None when it names none of them."""
    ranked: list[tuple[float, int, Language]] = []
    for position, part in enumerate(header[:MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        if not 0 < weight <= 1:
            continue
        language = _match(tag.strip().lower())
        if language is not None:
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else None


def _match(tag: str) -> Language | None:
    subtags = tag.replace("_", "-").split("-")
    if subtags[0] == "en":
        return ENGLISH
    if subtags[0] != "zh":
        return None
    rest = subtags[1:]
    if "hant" in rest:
        return TRADITIONAL
    if "hans" in rest:
        return SIMPLIFIED
    for subtag in rest:
        if subtag in _CHINESE_REGIONS:
            return _CHINESE_REGIONS[subtag]
    return SIMPLIFIED


def negotiate(
    choice: str | None, accept_language: str | None, room_default: str | None = None
) -> Language:
    """The language of a page: the visitor's own choice (the switcher's cookie or link), else
    their browser's, else the room's default, else English."""
    return (
        chosen(choice)
        or (from_accept_language(accept_language) if accept_language else None)
        or chosen(room_default)
        or DEFAULT
    )


@functools.cache
def translations(language: Language) -> NullTranslations:
    """The catalog of `language`, compiled from its .po file; English is the messages as
    written."""
    if language is ENGLISH:
        return NullTranslations()
    source = files("meetgate_templates").joinpath(
        "locale", language.locale, "LC_MESSAGES", "messages.po"
    )
    with source.open("rb") as po:
        catalog = read_po(po, locale=language.locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def gettext(language: Language, message: str) -> str:
    return translations(language).gettext(message)


def ngettext(language: Language, singular: str, plural: str, count: int) -> str:
    return translations(language).ngettext(singular, plural, count)
