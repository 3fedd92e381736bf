"""Every message a visitor reads is marked for translation, extracted, and translated in every
catalog (docs/translating.md): a test fails on a string left unmarked in a template, a catalog
behind the code (run scripts/i18n), or an entry missing, fuzzy or with placeholders that do not
match."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from gateway import errors
from gateway.i18n import LANGUAGES, SIMPLIFIED, TRADITIONAL, gettext

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
LOCALE = TEMPLATES / "locale"
TRANSLATED = [language for language in LANGUAGES if language.locale != "en"]

# Text a template may show as it is: the brand, separators, symbols.
AS_IS = {"Meetgate", "Jitsi"}
# Attributes whose values a visitor reads (or hears, through a screen reader).
READ_ATTRIBUTES = re.compile(
    r'\b(?:aria-label|aria-description|title|alt|placeholder)="([^"{]*)"', re.IGNORECASE
)


def catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=locale)


def words(text: str) -> list[str]:
    """The runs of letters in `text` once HTML tags, entities and Jinja's own syntax are out."""
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    text = re.sub(r"<[^>]*>", " ", text)
    text = re.sub(r"&[#a-zA-Z0-9]+;", " ", text)
    found = re.findall(r"[^\W\d_]{2,}", text)
    return [word for word in found if word not in AS_IS]


def unmarked_text(source: str) -> str:
    """A template with what is marked taken out (`{% trans %}` blocks, `_()` and every other
    expression, which stands for a value), and its scripts and styles: what is left of its text
    and attributes is what nobody marked."""
    source = re.sub(r"{%-?\s*trans\b.*?endtrans\s*-?%}", " ", source, flags=re.DOTALL)
    source = re.sub(r"{{.*?}}", "0", source, flags=re.DOTALL)
    source = re.sub(r"{%.*?%}|{#.*?#}", " ", source, flags=re.DOTALL)
    return re.sub(r"<(script|style)\b.*?</\1>", " ", source, flags=re.DOTALL | re.IGNORECASE)


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda p: p.name)
def test_every_visible_string_in_a_template_is_marked(template: Path) -> None:
    text = unmarked_text(template.read_text(encoding="utf-8"))
    unmarked = [value for value in READ_ATTRIBUTES.findall(text) if words(value)]
    unmarked += words(text)
    assert not unmarked, f"{template.name}: not marked for translation: {unmarked}"


def marked_in_errors() -> list[tuple[str, str, bool]]:
    """(class, attribute, whether marked) for every title and message errors.py defines."""
    tree = ast.parse((ROOT / "gateway" / "errors.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            target = (
                statement.targets[0]
                if isinstance(statement, ast.Assign)
                else statement.target
                if isinstance(statement, ast.AnnAssign)
                else None
            )
            if isinstance(target, ast.Name) and target.id in ("title", "message"):
                value = statement.value  # type: ignore[union-attr]  # Assign and AnnAssign both
                marked = (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id == "N_"
                )
                found.append((node.name, target.id, marked))
    return found


def test_every_error_title_and_message_is_marked() -> None:
    found = marked_in_errors()
    assert len(found) > 40
    assert [f"{cls}.{attr}" for cls, attr, marked in found if not marked] == []
    assert issubclass(errors.RateLimited, errors.MeetgateError)


def test_the_catalog_template_is_up_to_date(tmp_path: Path) -> None:
    extracted = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "--quiet",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "N_",
            "--no-location",
            "-o",
            str(extracted),
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    now = {message.id for message in catalog(extracted) if message.id}
    committed = {message.id for message in catalog(LOCALE / "messages.pot") if message.id}
    assert now - committed == set(), "new messages: run scripts/i18n and translate them"
    assert committed - now == set(), "messages no longer used: run scripts/i18n"


@pytest.mark.parametrize("language", TRANSLATED, ids=lambda language: language.tag)
def test_every_message_is_translated(language: object) -> None:
    locale = language.locale  # type: ignore[attr-defined]  # a Language
    translated = catalog(LOCALE / locale / "LC_MESSAGES" / "messages.po", locale)
    wanted = {message.id for message in catalog(LOCALE / "messages.pot") if message.id}
    entries = {message.id: message for message in translated if message.id}
    assert wanted - set(entries) == set(), "missing: run scripts/i18n"
    empty = [
        message.id
        for message in entries.values()
        if not message.string or (isinstance(message.string, tuple) and not all(message.string))
    ]
    assert empty == [], f"{locale}: untranslated"
    assert [m.id for m in entries.values() if m.fuzzy] == [], f"{locale}: fuzzy"
    problems = [(message.id, str(error)) for message, errs in translated.check() for error in errs]
    assert problems == [], f"{locale}: placeholders that do not match"


def placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"\{[a-z_]+\}|%\([a-z_]+\)s|</?[a-z]+>", text))


@pytest.mark.parametrize("language", TRANSLATED, ids=lambda language: language.tag)
def test_translations_keep_every_value_and_tag(language: object) -> None:
    locale = language.locale  # type: ignore[attr-defined]  # a Language
    for message in catalog(LOCALE / locale / "LC_MESSAGES" / "messages.po", locale):
        if not message.id or not message.string:
            continue
        sources = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for string in strings:
            assert placeholders(string) == placeholders(sources[-1]), message.id


def test_the_two_chinese_scripts_differ() -> None:
    # Not the same catalog twice, nor English left in place.
    sample = "Join the meeting"
    assert gettext(SIMPLIFIED, sample) != sample
    assert gettext(TRADITIONAL, sample) != sample
    assert gettext(SIMPLIFIED, sample) != gettext(TRADITIONAL, sample)
