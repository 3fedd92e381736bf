"""The jinja2 environments for Meetgate's pages, one a language, loaded from the
`meetgate_templates` package. A page is rendered in the language current for its request
(gateway/edge/languages.py)."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FunctionLoader, select_autoescape
from markupsafe import Markup

from gateway.edge.languages import current, switch_link
from gateway.i18n import LANGUAGES, Language, translations

STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".js": "text/javascript",
}


def _load(name: str) -> str | None:
    resource = files("meetgate_templates").joinpath(name)
    if not resource.is_file():
        return None
    return resource.read_text(encoding="utf-8")


@lru_cache(maxsize=len(LANGUAGES))
def environment(language: Language) -> Environment:
    env = Environment(
        loader=FunctionLoader(_load),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
        extensions=["jinja2.ext.i18n"],
    )
    # New-style gettext: `_("…")` and `{% trans %}` escape what they insert and take named
    # values (`_("%(name)s joined", name=…)`), and `{% trans count=n %}` picks the plural form.
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]  # added by the i18n extension
    env.globals.update(language=language, languages=LANGUAGES)
    env.filters["bdi"] = bdi
    env.globals["switch_link"] = switch_link
    return env


def bdi(value: object) -> Markup:
    """A name or title as people wrote it, isolated from the sentence around it: an Arabic or
    Hebrew name must not reorder an English or Chinese sentence (escaped like any value)."""
    return Markup("<bdi>{}</bdi>").format(value)


def render(name: str, **context: Any) -> str:
    """`name` rendered in the current request's language."""
    return environment(current.get()).get_template(name).render(**context)


@lru_cache(maxsize=16)
def static_asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of a file under templates/static, or None."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        return None
    resource = files("meetgate_templates").joinpath("static", name)
    if not resource.is_file():
        return None
    return resource.read_bytes(), STATIC_TYPES[suffix]
