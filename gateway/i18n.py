"""Languages: which one a request gets, and the messages in it (issue 14).

Messages are written in English in templates and code and looked up in Babel message catalogs,
one a language: `templates/locale/<locale>/LC_MESSAGES/messages.po`, compiled in memory when
first used. The languages the pages speak are English and one for each catalog there: adding a
language is adding its catalog (`scripts/i18n <locale>`, docs/translating.md). `N_("…")` marks a
user-visible message written in code (a refusal's title, a page's heading) for extraction; it
returns the English text unchanged, which is translated where it is shown, in the language of
the request that shows it.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from babel import Locale
from babel.core import get_global
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

# Jitsi Meet names its Chinese interfaces by country (its lang/languages.json); every other
# language by its Babel name without the underscore (ptBR, frCA), as Jitsi does.
_JITSI_CODES = {
    "zh_Hans": "zhCN",
    "zh_Hant": "zhTW",
    # Jitsi has no Hong Kong interface: its Traditional one (Taiwan's words) is the nearest.
    "zh_Hant_HK": "zhTW",
}


@dataclass(frozen=True, slots=True)
class Language:
    tag: str  # BCP 47, as in <html lang="…">, the cookie and ?lang=
    locale: str  # Babel's name, the catalog's folder
    jitsi: str  # Jitsi Meet's code for its own interface

    @property
    def name(self) -> str:
        """The language's name in itself, for the switcher."""
        return own_name(self)


def language_of_catalog(locale: str) -> Language:
    return Language(
        locale.replace("_", "-"), locale, _JITSI_CODES.get(locale, locale.replace("_", ""))
    )


def discover(catalogs: Traversable) -> tuple[Language, ...]:
    """English, then a language for each catalog under `catalogs`, in the order of their names."""
    found = sorted(
        entry.name
        for entry in catalogs.iterdir()
        if entry.is_dir() and entry.joinpath("LC_MESSAGES", "messages.po").is_file()
    )
    return (ENGLISH, *(language_of_catalog(locale) for locale in found))


CATALOGS = files("meetgate_templates").joinpath("locale")
ENGLISH = Language("en", "en", "en")
LANGUAGES: tuple[Language, ...] = discover(CATALOGS)
BY_TAG = {language.tag.lower(): language for language in LANGUAGES}
DEFAULT = ENGLISH
# The two Chinese scripts every release ships.
SIMPLIFIED = BY_TAG["zh-hans"]
TRADITIONAL = BY_TAG["zh-hant"]

# Chinese written where a browser names only a region: Traditional characters in Taiwan, Hong
# Kong and Macao, Simplified elsewhere (and for a bare `zh`, the script most readers learned).
_CHINESE_REGION_SCRIPTS = {"tw": "hant", "hk": "hant", "mo": "hant"}
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
        language = match(tag.strip().lower())
        if language is not None:
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else None


@functools.cache
def _parts(locale: str) -> tuple[str, str, str]:
    """A catalog's language, script and territory, lowercased ("" where it names none)."""
    parsed = Locale.parse(locale)
    return parsed.language, (parsed.script or "").lower(), (parsed.territory or "").lower()


def match(tag: str, languages: Sequence[Language] = LANGUAGES) -> Language | None:
    """The one of `languages` a browser's language tag (lowercase) asks for: by its language,
    then its script, then its region (or the region CLDR says its usage follows); None if it
    names none of their languages."""
    subtags = tag.replace("_", "-").split("-")
    primary, rest = subtags[0], subtags[1:]
    candidates = [language for language in languages if _parts(language.locale)[0] == primary]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    script = next((subtag for subtag in rest if len(subtag) == 4), "")
    if not script and primary == "zh":
        script = next(
            (_CHINESE_REGION_SCRIPTS[s] for s in rest if s in _CHINESE_REGION_SCRIPTS), "hans"
        )
    by_script = [language for language in candidates if _parts(language.locale)[1] == script]
    candidates = by_script or candidates
    regions = [*rest, *(_inherited_region(primary, script, subtag) for subtag in rest)]
    for region in regions:
        for language in candidates:
            if region and _parts(language.locale)[2] == region:
                return language
    return candidates[0]


def _inherited_region(primary: str, script: str, region: str) -> str:
    """The region whose usage CLDR says `region`'s follows in this language and script (Macao's
    Traditional Chinese: Hong Kong's), lowercased; "" when it names none."""
    name = "_".join(part for part in (primary, script.title(), region.upper()) if part)
    parent = get_global("parent_exceptions").get(name)
    return _parts(parent)[2] if parent else ""


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


@functools.cache
def own_name(language: Language) -> str:
    """What the switcher calls `language`: its catalog's word for itself, else Babel's."""
    # Translators: the name of this catalog's language, in the language itself, as the list of
    # languages at the foot of every page shows it (for example 简体中文, 繁體中文, 日本語).
    name = str(translations(language).pgettext("the language's own name", "English"))
    if language is ENGLISH or name != "English":
        return name
    return str(Locale.parse(language.locale).get_display_name(language.locale) or language.tag)
