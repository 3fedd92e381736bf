"""Every message a visitor reads is marked for translation, extracted, and translated in every
catalog (docs/translating.md): a test fails on a string left unmarked in a template, a catalog
behind the code (run scripts/i18n), or an entry missing, fuzzy or with placeholders that do not
match."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

import gateway
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


# Errors raised with a message that is neither a literal marked N_ nor a module-level constant
# marked N_: each says why its words are translated anyway (or need not be).
DYNAMIC_MESSAGES: set[tuple[str, str]] = {
    # RateLimited: `message or RATE_LIMIT_MESSAGES.get(...)`, a table of N_-marked messages.
    ("gateway/errors.py", "message or RATE_LIMIT_MESSAGES.get(limit or '')"),
}


def meetgate_errors() -> dict[str, inspect.Signature]:
    """Every MeetgateError subclass in gateway/ by name, with its constructor's signature."""
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        importlib.import_module(module.name)
    found: dict[str, inspect.Signature] = {}
    todo = [errors.MeetgateError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = inspect.signature(cls)
        todo += cls.__subclasses__()
    assert set(found) >= {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.MeetgateError)
    }
    return found


def message_argument(call: ast.Call, signature: inspect.Signature) -> ast.expr | None:
    """What a call passes as the error's `message` parameter, if it has one."""
    names = list(signature.parameters)
    if "message" not in names:
        return None
    for keyword in call.keywords:
        if keyword.arg == "message":
            return keyword.value
    position = names.index("message")
    if position < len(call.args) and not any(
        isinstance(arg, ast.Starred) for arg in call.args[: position + 1]
    ):
        return call.args[position]
    return None


def is_marked(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "N_"


def module_constants_marked(tree: ast.Module) -> set[str]:
    return {
        target.id
        for statement in tree.body
        if isinstance(statement, ast.Assign) and is_marked(statement.value)
        for target in statement.targets
        if isinstance(target, ast.Name)
    }


def error_calls(
    tree: ast.Module, signatures: dict[str, inspect.Signature]
) -> Iterator[tuple[ast.Call, inspect.Signature]]:
    """Every call in `tree` that makes a MeetgateError: `SomeError(…)`, and `super().__init__(…)`
    in an error's own constructor (with its base's signature)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in signatures
        ):
            yield node, signatures[node.func.id]
        if not (isinstance(node, ast.ClassDef) and node.name in signatures):
            continue
        bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
        if not bases or bases[0] not in signatures:
            continue
        for call in ast.walk(node):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "__init__"
                and isinstance(call.func.value, ast.Call)
                and isinstance(call.func.value.func, ast.Name)
                and call.func.value.func.id == "super"
            ):
                yield call, signatures[bases[0]]


def unmarked_error_messages() -> tuple[list[str], list[str]]:
    """(literal messages not marked N_, dynamic messages not in DYNAMIC_MESSAGES), each as
    `path:line: source`, for every call that makes a MeetgateError in gateway/."""
    signatures = meetgate_errors()
    literal, dynamic = [], []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = module_constants_marked(tree)
        for call, signature in error_calls(tree, signatures):
            message = message_argument(call, signature)
            if message is None or is_marked(message):
                continue
            if isinstance(message, ast.Constant) and message.value is None:
                continue
            if isinstance(message, ast.Name) and message.id in constants:
                continue
            where = f"{relative}:{call.lineno}: {ast.unparse(call)[:100]}"
            if isinstance(message, (ast.Constant, ast.JoinedStr)):
                literal.append(where)
            elif (relative, ast.unparse(message)) not in DYNAMIC_MESSAGES:
                dynamic.append(where)
    return literal, dynamic


def test_every_error_message_raised_in_code_is_marked() -> None:
    literal, dynamic = unmarked_error_messages()
    assert literal == [], "a message not marked N_ (write N_('… {name} …'), name=…)"
    assert dynamic == [], "a message built in code: translate its parts (errors.Phrase)"


def test_every_error_title_and_message_in_gateway_is_marked() -> None:
    # errors.py is checked above; the errors other modules define are shown the same way.
    signatures = meetgate_errors()
    unmarked = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name not in signatures:
                continue
            for statement in node.body:
                if (
                    isinstance(statement, ast.Assign)
                    and isinstance(statement.targets[0], ast.Name)
                    and statement.targets[0].id in ("title", "message")
                    and not is_marked(statement.value)
                ):
                    unmarked.append(f"{path.name}: {node.name}.{statement.targets[0].id}")
    assert unmarked == []


def test_the_marked_message_check_finds_what_it_should() -> None:
    source = (
        "raise InvalidInput('plain')\n"
        "raise InvalidInput(f'The {field} is bad')\n"
        "raise InvalidInput(' '.join(problems))\n"
        "raise InvalidInput(N_('marked {x}'), x=1)\n"
        "raise NotFound()\n"
        "raise ChallengeFailed('malformed')\n"
    )
    signatures = meetgate_errors()
    kinds = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in signatures:
                continue
            message = message_argument(node, signatures[node.func.id])
            if message is None or is_marked(message):
                kinds.append("fine")
            elif isinstance(message, (ast.Constant, ast.JoinedStr)):
                kinds.append("literal")
            else:
                kinds.append("dynamic")
    assert kinds == ["literal", "literal", "dynamic", "fine", "fine", "fine"]


# zh_Hant_HK is zh_Hant's text with Hong Kong's words where they differ (docs/translating.md's
# glossary), in the order they are replaced: the longer phrases first.
HONG_KONG_WORDS = [
    ("電子郵件地址", "電郵地址"),
    ("電子郵件", "電郵"),
    ("這封郵件", "這封電郵"),
    ("寄出郵件", "發出電郵"),
    ("還沒收到郵件", "還沒收到電郵"),
    ("郵件中的", "電郵中的"),
    ("郵件無法寄出", "電郵無法發出"),
    ("正寄往", "正發送到"),
    ("寄送", "發送"),
    ("身分", "身份"),
    ("IP 位址", "IP 地址"),
    ("相鄰位址", "相鄰地址"),
    ("網路", "網絡"),
    ("帳號", "帳戶"),
    ("網域", "域名"),
    ("表單", "表格"),
    ("這台", "這部"),
]


def in_hong_kong(text: str) -> str:
    for taiwan, hong_kong in HONG_KONG_WORDS:
        text = text.replace(taiwan, hong_kong)
    return text


def test_the_hong_kong_catalog_keeps_in_step_with_the_traditional_one() -> None:
    taiwan = catalog(LOCALE / "zh_Hant" / "LC_MESSAGES" / "messages.po", "zh_Hant")
    hong_kong = catalog(LOCALE / "zh_Hant_HK" / "LC_MESSAGES" / "messages.po", "zh_Hant_HK")
    apart = []
    for message in taiwan:
        if not message.id or message.context == "the language's own name":
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = tuple(in_hong_kong(string) for string in strings)
        found = hong_kong.get(message.id, message.context)
        got = () if found is None else found.string
        if (got if isinstance(got, tuple) else (got,)) != wanted:
            apart.append((message.id, wanted))
    # A change to zh_Hant is made to zh_Hant_HK too: this lists what it should read there.
    assert apart == [], "zh_Hant_HK differs from zh_Hant in Hong Kong's words only"
