"""The compiled stanza reader held to its specification (issue 16): `_reader.read` (what
`parse_stanza` calls, fast path included) and `_reader.read_expat` give exactly what
`stanzas.read_in_python` gives, on Jitsi's stanzas, every stanza the other wire tests send,
hand-made edge cases, random element trees and mutated bytes; wrong calls raise, nothing leaks."""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.proxy import stanzas
from gateway.proxy.stanzas import (
    HTTPBIND,
    MAX_DEPTH,
    MAX_ELEMENTS,
    NOT_WELL_FORMED,
    POLICY_VIOLATION,
    RESTRICTED_XML,
    Child,
    Malformed,
    Stanza,
    read_in_python,
)

try:
    from gateway.proxy import _reader
except ImportError:  # the READER test below says how to build it
    _reader = None  # type: ignore[assignment]  # absent where no compiler built it

compiled = pytest.mark.skipif(_reader is None, reason="the compiled reader was not built")

# A reading, normalised: the stream error condition, or the Stanza's fields with its attributes
# (and each child's) as (name, value) pairs in document order and its children as tuples.
Reading = str | tuple[Any, ...]
OK = None


def normalised(found: object) -> Reading:
    if isinstance(found, Malformed):
        return found.condition
    if isinstance(found, str):
        assert found in (NOT_WELL_FORMED, RESTRICTED_XML, POLICY_VIOLATION), found
        return found
    assert type(found) is Stanza, type(found)
    assert all(type(child) is Child for child in found.children), found.children
    return (
        found.raw,
        found.namespace,
        found.name,
        found.start,
        tuple(found.attributes.items()),
        tuple(
            (c.namespace, c.name, c.start, c.end, tuple(c.attributes.items()))
            for c in found.children
        ),
        found.close,
        found.empty_end,
        found.body_bytes,
        found.text_bytes,
        found.json_message,
    )


def readings(raw: bytes) -> Reading:
    """`raw` read by the three readers, which must agree (values, order and types alike)."""
    specified = read_in_python(raw)
    by_expat = _reader.read_expat(raw, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS)
    fast = _reader.read(raw, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS)
    expected = normalised(specified)
    assert normalised(by_expat) == expected, ("read_expat", raw[:200])
    assert normalised(fast) == expected, ("read", raw[:200])
    # repr tells an int from a bool and a dict's order: the same objects, not only equal ones.
    expected_repr = repr(expected)
    assert repr(normalised(by_expat)) == expected_repr, ("read_expat", raw[:200])
    assert repr(normalised(fast)) == expected_repr, ("read", raw[:200])
    return expected


def outcome(reading: Reading) -> str | None:
    return reading if isinstance(reading, str) else OK


# -- the corpus: every stanza the other wire tests and the bench send ---------------------------

ROOT = Path(__file__).resolve().parents[2]
# Modules whose stanzas are read here, and the helpers in them that build one from constants.
SOURCES = {
    "jitsi": "tests.fixtures.jitsi_stanzas",
    "wire_guard": "tests.unit.test_wire_guard",
    # The guard tests' shared stanzas (moved out of test_wire_guard).
    "guard_stanzas": "tests.fixtures.guard_stanzas",
    # The connection guard's tests: no stanza in them, kept so a stanza added there is read.
    "guard": "tests.unit.test_guard",
    "stanzas": "tests.unit.test_stanzas",
    "bench": "bench.guard",
}
_BUILDERS = frozenset(
    {"groupchat", "private", "poll", "conference", "presence_to", "stanzas", "open_element"}
)
_METHODS = frozenset({"replace", "encode", "xml", "param"})
_UNSAFE = (
    ast.Lambda,
    ast.NamedExpr,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def _evaluable(node: ast.expr) -> bool:
    """Built only of literals, names, operators and the stanza builders: evaluating it in its
    module has no effect but a value."""
    for part in ast.walk(node):
        if isinstance(part, _UNSAFE):
            return False
        if isinstance(part, ast.Call):
            func = part.func
            if isinstance(func, ast.Name) and func.id in _BUILDERS:
                continue
            if isinstance(func, ast.Attribute) and func.attr in _METHODS:
                continue
            return False
    return True


def _texts(value: object) -> Iterator[str | bytes]:
    # (pytest.param's ParameterSet is a tuple too: its values, marks and id.)
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)


def reachable_stanzas(module: ModuleType) -> list[bytes]:
    """Every XML-looking string `module` spells with literals, module constants and its stanza
    builders (whole expressions and their parts), as UTF-8 (lone surrogates kept, as a hostile
    client's bytes would carry them)."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    found: dict[bytes, None] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr) or not _evaluable(node):
            continue
        try:
            value = eval(  # noqa: S307 - literals and the module's own builders (_evaluable)
                compile(ast.Expression(node), module.__file__, "eval"), dict(vars(module))
            )
        except Exception:  # noqa: S112 - a part that needs a test's locals: not reachable
            continue
        for text in _texts(value):
            raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
            if b"<" in raw:
                found[raw] = None
    return list(found)


def _corpus() -> dict[str, list[bytes]]:
    modules = {source: importlib.import_module(name) for source, name in SOURCES.items()}
    corpus = {source: reachable_stanzas(module) for source, module in modules.items()}
    jitsi = modules["jitsi"]
    entries = jitsi.CORPUS + jitsi.FORGERIES
    filled = [entry.xml().encode() for entry in entries]
    odd = jitsi.Placeholders(room="salle-été", me="名前", other="😀x")
    filled += [entry.xml(odd).encode() for entry in entries]
    # Each as a BOSH body's child: in the httpbind namespace.
    bosh = [raw.replace(b"xmlns='jabber:client'", f"xmlns='{HTTPBIND}'".encode()) for raw in filled]
    corpus["jitsi"] = list(dict.fromkeys(filled + bosh + corpus["jitsi"]))
    corpus["bench"] += [text.encode() for text in modules["bench"].stanzas("room")]
    corpus["bench"].append(modules["bench"].open_element().encode())
    return corpus


CORPUS = _corpus()
CORPUS_CASES = [
    pytest.param(raw, id=f"{source}-{index}")
    for source, raws in CORPUS.items()
    for index, raw in enumerate(raws)
]


def test_the_corpus_reaches_each_source() -> None:
    jitsi = importlib.import_module(SOURCES["jitsi"])
    assert len(CORPUS["jitsi"]) >= 2 * len(jitsi.CORPUS + jitsi.FORGERIES)
    assert len(CORPUS["wire_guard"]) >= 100
    assert len(CORPUS["stanzas"]) >= 40
    assert len(CORPUS["bench"]) >= 4
    wire_guard = importlib.import_module(SOURCES["wire_guard"])
    assert all(text.encode() in CORPUS["wire_guard"] for text in wire_guard.JITSI.values())


@compiled
@pytest.mark.parametrize("raw", CORPUS_CASES)
def test_the_readers_agree_on_the_corpus(raw: bytes) -> None:
    readings(raw)


@compiled
def test_every_jitsi_stanza_is_read_as_an_element() -> None:
    # The readers agreeing on "not-well-formed" for everything would agree; Jitsi's stanzas
    # are elements.
    jitsi = importlib.import_module(SOURCES["jitsi"])
    for entry in jitsi.CORPUS + jitsi.FORGERIES:
        assert outcome(readings(entry.xml().encode())) is OK, entry.name


# -- hand cases: (id, bytes, what they read as: OK or the condition) ---------------------------

NWF, RXML, POLICY = NOT_WELL_FORMED, RESTRICTED_XML, POLICY_VIOLATION
STREAMS = "http://etherx.jabber.org/streams"


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def flat(elements: int) -> bytes:
    return b"<presence>" + b"<c/>" * (elements - 1) + b"</presence>"


def _across_a_mebibyte(tail: bytes) -> bytes:
    """A message whose `tail` starts two bytes before pyexpat's 1 MiB chunk boundary: the Python
    reader parses past it in two calls of expat, the compiled one in one."""
    head = b"<message>"
    return head + b"x" * (2**20 - 2 - len(head)) + tail + b"</message>"


HAND: list[tuple[str, bytes, str | None]] = [
    # What surrounds the element.
    ("empty", b"", NWF),
    ("text-only", b"hello", NWF),
    ("whitespace-only", b" \r\n\t", NWF),
    ("whitespace-around", b" \r\n\t<message/>\n\r\n ", OK),
    ("whitespace-around-full", b"\n<message to='a'><body>x</body></message>\n", OK),
    ("two-top-elements", b"<message/><message/>", NWF),
    ("two-tops-with-space", b"<message/> <presence/>", NWF),
    ("text-before", b"hi<message/>", NWF),
    ("text-after", b"<message/>hi", NWF),
    ("char-ref-after", b"<message/>&#32;", NWF),
    ("unclosed", b"<message><body>hi</body>", NWF),
    ("unclosed-start-tag", b"<message to='a'", NWF),
    ("unclosed-value", b"<message to='a/>", NWF),
    ("lone-lt", b"<", NWF),
    ("end-tag-only", b"</message>", NWF),
    ("mismatched-end", b"<message><body>hi</bod></message>", NWF),
    ("mismatched-top-end", b"<message></presence>", NWF),
    ("mismatched-prefix-end", b"<p:m xmlns:p='urn:p' xmlns:q='urn:p'></q:m>", NWF),
    # DTDs, entities, comments, processing instructions, declarations.
    ("doctype", b"<!DOCTYPE message><message/>", RXML),
    (
        "billion-laughs",
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><message><body>&lol3;</body></message>',
        RXML,
    ),
    (
        "external-entity",
        b'<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><message>&xxe;</message>',
        RXML,
    ),
    (
        "parameter-entity",
        b'<!DOCTYPE m [<!ENTITY % p SYSTEM "http://evil.test/p.dtd"> %p;]><message/>',
        RXML,
    ),
    ("external-dtd", b'<!DOCTYPE m SYSTEM "http://evil.test/m.dtd"><message/>', RXML),
    ("doctype-after-top", b"<message/><!DOCTYPE m>", NWF),
    ("doctype-inside", b"<message><!DOCTYPE m></message>", NWF),
    ("entity-decl-inside", b'<message><!ENTITY x "y"></message>', NWF),
    ("comment-inside", b"<message><!-- hello --></message>", RXML),
    ("comment-before", b"<!-- c --><message/>", RXML),
    ("comment-after", b"<message/><!-- c -->", RXML),
    ("comment-in-child", b"<message><body>a<!--x-->b</body></message>", RXML),
    ("comment-double-dash", b"<message><!-- a -- b --></message>", NWF),
    ("pi-inside", b"<message><?php x?></message>", RXML),
    ("pi-before", b"<?x y?><message/>", RXML),
    ("pi-after", b"<message/><?x y?>", RXML),
    ("xml-declaration", b"<?xml version='1.0'?><message/>", RXML),
    ("xml-declaration-utf16", b'<?xml version="1.0" encoding="UTF-16"?><message/>', RXML),
    (
        "xml-declaration-latin1",
        b'<?xml version="1.0" encoding="ISO-8859-1"?><message><body>\xe9</body></message>',
        RXML,
    ),
    ("xml-declaration-late", b" <?xml version='1.0'?><message/>", NWF),
    ("xml-declaration-inside", b"<message><?xml version='1.0'?></message>", NWF),
    # CDATA.
    ("cdata-body", b"<message><body><![CDATA[<b>hi</b> & co]]></body></message>", OK),
    (
        "cdata-json",
        b'<message><json-message><![CDATA[{"a":"]]"}]]></json-message></message>',
        OK,
    ),
    ("cdata-split-end", b"<message><body><![CDATA[a]]]]><![CDATA[>b]]></body></message>", OK),
    ("cdata-brackets", b"<message><body><![CDATA[]]]><![CDATA[]]></body></message>", OK),
    ("cdata-empty-child", b"<message><c><![CDATA[]]></c></message>", OK),
    ("cdata-unclosed", b"<message><body><![CDATA[abc</body></message>", NWF),
    ("cdata-outside", b"<![CDATA[x]]><message/>", NWF),
    ("cdata-at-top", b"<message><![CDATA[x]]><body>y</body></message>", OK),
    # Predefined entities and character references.
    ("predefined", b"<message><body>&lt;&gt;&amp;&quot;&apos;</body></message>", OK),
    ("decimal", b"<message><body>&#233;&#65;&#128512;</body></message>", OK),
    ("hex", b"<message><body>&#x1F600;&#xe9;&#x41;</body></message>", OK),
    ("hex-leading-zeros", b"<message><body>&#x0000041;&#00065;</body></message>", OK),
    ("hex-capital-x", b"<message><body>&#X41;</body></message>", NWF),
    ("out-of-range", b"<message><body>&#x110000;</body></message>", NWF),
    ("out-of-range-decimal", b"<message><body>&#99999999999;</body></message>", NWF),
    ("surrogate-ref", b"<message><body>&#xD800;</body></message>", NWF),
    ("surrogate-pair-refs", b"<message><body>&#xD83D;&#xDE00;</body></message>", NWF),
    ("nul-ref", b"<message><body>&#0;</body></message>", NWF),
    ("nul-hex-ref", b"<message><body>&#x0;</body></message>", NWF),
    ("control-ref", b"<message><body>&#1;</body></message>", NWF),
    ("tab-ref", b"<message><body>&#9;&#10;&#13;</body></message>", OK),
    ("fffe-ref", b"<message><body>&#xFFFE;</body></message>", NWF),
    ("ffff-ref", b"<message><body>&#xFFFF;</body></message>", NWF),
    ("no-semicolon", b"<message><body>&#65</body></message>", NWF),
    ("empty-ref", b"<message><body>&#;</body></message>", NWF),
    ("bad-hex", b"<message><body>&#xg;</body></message>", NWF),
    ("entity-digit-name", b"<message><body>&1a;</body></message>", NWF),
    ("entity-space", b"<message><body>&a b;</body></message>", NWF),
    ("bare-ampersand", b"<message><body>a & b</body></message>", NWF),
    ("undefined-entity", b"<message><body>&nbsp;</body></message>", NWF),
    ("undefined-entity-top", b"<message>&undeclared;</message>", NWF),
    ("undefined-entity-attribute", b"<message to='&x;'/>", NWF),
    ("refs-in-attribute", b"<message to='&lt;&#x9;&#10;&amp;&#233;'/>", OK),
    ("lt-in-attribute", b"<message to='a<b'/>", NWF),
    ("cdata-end-in-text", b"<message><body>a]]>b</body></message>", NWF),
    ("brackets-in-text", b"<message><body>a]]b]></body></message>", OK),
    ("gt-in-text", b"<message><body>a>b</body></message>", OK),
    # Line ends and tabs: expat normalises, the counts follow.
    ("crlf-in-body", b"<message><body>a\r\nb\rc\nd\r</body></message>", OK),
    ("crlf-in-json", b"<message><json-message>{\r\n}\r</json-message></message>", OK),
    ("crlf-at-top", b"<message>\r\n<body>x</body>\r</message>", OK),
    ("crlf-in-attribute", b"<message to='a\r\nb\rc\nd'><c x='\r\n'/></message>", OK),
    ("tab-in-attribute", b"<message to='a\tb'><c x='\t'/></message>", OK),
    ("cr-ref-in-attribute", b"<message to='a&#13;&#10;b'/>", OK),
    ("crlf-in-tags", b"<message\r\nto='a'\r\n><c\r\n/></message\r\n>", OK),
    ("cr-only-in-tags", b"<message\rto='a'\r><c\r/></message\r>", OK),
    # Attributes.
    ("duplicate-attribute", b"<message a='1' a='2'/>", NWF),
    (
        "duplicate-through-prefixes",
        b"<message xmlns:a='urn:x' xmlns:b='urn:x' a:x='1' b:x='2'/>",
        NWF,
    ),
    ("distinct-prefixes", b"<message xmlns:a='urn:x' xmlns:b='urn:y' a:x='1' b:x='2'/>", OK),
    ("plain-and-prefixed", b"<message x='1' xmlns:a='urn:x' a:x='2'/>", OK),
    ("duplicate-xmlns", b"<message xmlns='urn:a' xmlns='urn:b'/>", NWF),
    ("prefixed-attributes", b"<message xmlns:p='urn:p' p:to='x' to='y'><c p:a='1'/></message>", OK),
    ("xml-lang", b"<message xml:lang='en' to='a'><body xml:lang='fr'>x</body></message>", OK),
    ("xml-prefix-rebound", b"<message xmlns:xml='urn:other'/>", NWF),
    ("xml-prefix-declared", b"<message xmlns:xml='http://www.w3.org/XML/1998/namespace'/>", OK),
    ("xmlns-prefix-declared", b"<message xmlns:xmlns='urn:x'/>", NWF),
    ("xmlns-element-prefix", b"<xmlns:message/>", NWF),
    ("undeclaring-default", b"<message xmlns=''/>", OK),
    (
        "child-undeclaring-default",
        b"<message xmlns='jabber:client'><x xmlns=''><y/></x><body xmlns=''>b</body></message>",
        OK,
    ),
    ("undeclaring-prefix", b"<message xmlns:p='urn:p'><c xmlns:p=''/></message>", NWF),
    ("attribute-unbound-prefix", b"<message p:x='1'/>", NWF),
    ("attribute-no-value", b"<message a/>", NWF),
    ("attribute-unquoted", b"<message a=1/>", NWF),
    ("attributes-unspaced", b"<message a='1'b='2'/>", NWF),
    ("single-and-double", b'<message to="a\'b" id=\'c"d\'><c x="\'"/></message>', OK),
    ("mixed-quotes", b"<message to='a\"/>", NWF),
    ("equals-spaced-ok", b"<message to = 'a' id\n=\n'b'><c x\t=\t'1'/></message>", OK),
    ("gt-in-attribute", b"<message to='a>b'><c x='>' y='/>'/><d z='a>b'></d></message>", OK),
    # expat refuses a namespace holding its separator (a space): a name would split ambiguously.
    (
        "namespace-with-space",
        b"<p:message xmlns:p='urn: spaced'><p:body>x</p:body></p:message>",
        NWF,
    ),
    ("attribute-namespace-with-space", b"<message xmlns:p='urn: a b' p:x='1'/>", NWF),
    # Namespaces of the top and its children.
    ("top-client", b"<message xmlns='jabber:client'><body>x</body></message>", OK),
    (
        "top-httpbind",
        b"<message xmlns='http://jabber.org/protocol/httpbind'><body>x</body></message>",
        OK,
    ),
    (
        "child-in-httpbind",
        b"<message xmlns='jabber:client'><body xmlns='http://jabber.org/protocol/httpbind'>x"
        b"</body></message>",
        OK,
    ),
    (
        "httpbind-prefixed-top",
        b"<b:message xmlns:b='http://jabber.org/protocol/httpbind'><b:body>x</b:body><body/>"
        b"</b:message>",
        OK,
    ),
    (
        "httpbind-prefixed-top-default",
        b"<b:message xmlns:b='http://jabber.org/protocol/httpbind' xmlns='urn:x'><b:body>x"
        b"</b:body><body/></b:message>",
        OK,
    ),
    ("top-server", b"<message xmlns='jabber:server'><body>x</body></message>", OK),
    ("top-other-child-default", b"<message xmlns='urn:x'><body xmlns=''>x</body></message>", OK),
    (
        "stream-prefix",
        f"<stream:features xmlns:stream='{STREAMS}'><x/></stream:features>".encode(),
        OK,
    ),
    ("stream-prefix-unbound", b"<stream:features/>", NWF),
    ("child-unbound-prefix", b"<message><p:body>x</p:body></message>", NWF),
    ("prefix-bound-on-child", b"<message><p:body xmlns:p='urn:p'>x</p:body></message>", OK),
    ("client-prefixed", b"<c:message xmlns:c='jabber:client'><c:body>x</c:body></c:message>", OK),
    ("colon-twice", b"<a:b:c xmlns:a='urn:a'/>", NWF),
    ("colon-leading", b"<:message/>", NWF),
    # Names.
    ("non-ascii-names", "<名前><ñ>x</ñ><é:x xmlns:é='urn:e'/></名前>".encode(), OK),
    ("non-ascii-attribute", "<message ключ='значение'/>".encode(), OK),
    ("name-digit-start", b"<1message/>", NWF),
    ("name-combining-start", "<\u0301message/>".encode(), NWF),
    ("name-dash-dot", b"<message><a-b.c_d>x</a-b.c_d></message>", OK),
    ("name-xmlns", b"<xmlns><xmlns>x</xmlns><xml/></xmlns>", OK),
    ("attribute-like-xmlns", b"<message xmlnsx='1' xml='2' xmlns-a='3'/>", OK),
    ("end-tag-longer-name", b"<message><ab></abc></message>", NWF),
    ("end-tag-shorter-name", b"<message><abc></ab></message>", NWF),
    # Default namespaces the scanner leaves to expat.
    ("default-xml-namespace", b"<message xmlns='http://www.w3.org/XML/1998/namespace'/>", NWF),
    ("default-xmlns-namespace", b"<message xmlns='http://www.w3.org/2000/xmlns/'/>", NWF),
    ("default-w3-namespace", b"<message xmlns='http://www.w3.org/1999/xhtml'><c/></message>", OK),
    ("default-namespace-space", b"<message xmlns='urn:a b'/>", NWF),
    ("default-namespace-tab", b"<message xmlns='urn:a\tb'/>", NWF),
    ("default-namespace-entity", b"<message xmlns='urn:x&amp;y'><c/></message>", OK),
    ("default-namespace-non-ascii", "<message xmlns='urn:é'><c/></message>".encode(), OK),
    ("child-namespace-not-inherited", b"<message><c xmlns='urn:x'/><d/></message>", OK),
    (
        "seventeen-attributes",
        b"<message " + b" ".join(b"a%d='%d'" % (i, i) for i in range(17)) + b"/>",
        OK,
    ),
    # Text outside ASCII.
    (
        "non-ascii-text",
        "<message><body>中文 😀 é</body><subject>題名 🎉</subject>"
        '<json-message>{"k":"値 🚀"}</json-message>'
        "<nick xmlns='http://jabber.org/protocol/nick'>Zoë 名前 👩‍💻</nick></message>".encode(),
        OK,
    ),
    ("non-ascii-presence-nick", "<presence><nick>😀</nick></presence>".encode(), OK),
    # Invalid UTF-8 and byte-order marks.
    ("overlong-2", b"<message><body>\xc0\xaf</body></message>", NWF),
    ("overlong-3", b"<message><body>\xe0\x80\xaf</body></message>", NWF),
    ("overlong-lt", b"\xc0\xbcmessage/>", NWF),
    ("lone-continuation", b"<message><body>\x80</body></message>", NWF),
    ("truncated-at-end", b"<message/>\xe2\x82", NWF),
    ("truncated-in-body", b"<message><body>\xe2\x82</body></message>", NWF),
    ("truncated-last-byte", b"<message><body>x</body></message>\xf0", NWF),
    ("five-bytes", b"<message><body>\xf8\x88\x80\x80\x80</body></message>", NWF),
    ("utf8-surrogate", b"<message><body>\xed\xa0\x80</body></message>", NWF),
    ("beyond-10ffff", b"<message><body>\xf4\x90\x80\x80</body></message>", NWF),
    ("ff-fe-bytes", b"<message><body>\xff\xfe</body></message>", NWF),
    ("bad-utf8-attribute", b"<message to='\xc3('/>", NWF),
    ("bad-utf8-name", b"<mess\xc3age/>", NWF),
    ("utf16le-bom", "\ufeff<message/>".encode("utf-16-le"), NWF),
    ("utf16be-bom", "\ufeff<message/>".encode("utf-16-be"), NWF),
    ("utf16-no-bom", "<message/>".encode("utf-16-le"), NWF),
    ("utf8-bom", b"\xef\xbb\xbf<message to='a'><c/></message>", OK),
    ("utf8-bom-empty", b"\xef\xbb\xbf<message/>", OK),
    ("utf8-bom-twice", b"\xef\xbb\xbf\xef\xbb\xbf<message/>", NWF),
    ("utf8-bom-only", b"\xef\xbb\xbf", NWF),
    ("utf8-bom-in-text", b"<message><body>\xef\xbb\xbf</body></message>", OK),
    ("utf8-bom-after-space", b" \xef\xbb\xbf<message/>", NWF),
    # NUL, control characters, non-characters.
    ("nul-in-text", b"<message>\x00</message>", NWF),
    ("nul-after", b"<message/>\x00", NWF),
    ("nul-in-name", b"<mes\x00sage/>", NWF),
    ("nul-in-attribute", b"<message to='a\x00'/>", NWF),
    ("control-1", b"<message><body>\x01</body></message>", NWF),
    ("control-1f", b"<message><body>\x1f</body></message>", NWF),
    ("vertical-tab", b"<message><body>\x0b</body></message>", NWF),
    ("form-feed", b"<message><body>\x0c</body></message>", NWF),
    ("delete", b"<message><body>\x7f</body></message>", OK),
    ("c1-nel", b"<message><body>\xc2\x85</body></message>", OK),
    ("u-fffe", b"<message><body>\xef\xbf\xbe</body></message>", NWF),
    ("u-ffff", b"<message><body>\xef\xbf\xbf</body></message>", NWF),
    ("u-fffd", b"<message><body>\xef\xbf\xbd</body></message>", OK),
    ("u-10ffff", b"<message><body>\xf4\x8f\xbf\xbf</body></message>", OK),
    # The limits.
    ("depth-32", nested(MAX_DEPTH), OK),
    ("depth-33", nested(MAX_DEPTH + 1), POLICY),
    ("depth-33-unclosed", b"<a>" * (MAX_DEPTH + 1), POLICY),
    ("depth-33-malformed-after", nested(MAX_DEPTH + 1) + b"<", POLICY),
    ("elements-1000", flat(MAX_ELEMENTS), OK),
    ("elements-1001", flat(MAX_ELEMENTS + 1), POLICY),
    ("elements-1000-nested", b"<iq>" + b"<a><b/><c/></a>" * 333 + b"</iq>", OK),
    ("elements-1001-nested", b"<iq>" + b"<a><b/><c/></a>" * 333 + b"<d/></iq>", POLICY),
    ("malformed-before-limit", b"<a>" * 5 + b"<<" + nested(MAX_DEPTH + 1), NWF),
    ("restricted-before-limit", b"<message><!--x-->" + b"<c/>" * 2000 + b"</message>", RXML),
    ("limit-before-restricted", b"<message>" + b"<c/>" * 2000 + b"<!--x--></message>", POLICY),
    # Empty-element tags and end tags.
    ("empty-tag-space", b"<message><c /><d\n/><e\t/><f\r\n/></message>", OK),
    ("top-empty-space", b"<message />", OK),
    ("top-empty-newline", b"<message\n/>", OK),
    ("top-empty-attributes-space", b"<message to='a' />", OK),
    ("top-start-end", b"<message></message>", OK),
    ("child-start-end", b"<message><c></c><d>x</d><e><f/></e></message>", OK),
    ("space-slash-gt", b"<message><c / ></message>", NWF),
    ("end-tag-space", b"<message><body>x</body ></message >", OK),
    ("end-tag-newline", b"<message><body>x</body\n></message\t\r\n>", OK),
    ("end-tag-attribute", b"<message><body>x</body a='1'></message>", NWF),
    ("end-tag-before-name", b"<message></ message>", NWF),
    # Long names and values.
    ("long-name", b"<m" + b"e" * 10_000 + b"/>", OK),
    ("long-child-name", b"<message><c" + b"x" * 10_000 + b"/></message>", OK),
    ("long-value", b"<message to='" + b"v" * 100_000 + b"'/>", OK),
    ("long-namespace", b"<message xmlns='urn:" + b"n" * 10_000 + b"'><c/></message>", OK),
    (
        "many-attributes",
        b"<message " + b" ".join(b"a%d='%d'" % (i, i) for i in range(500)) + b"/>",
        OK,
    ),
    ("long-body", b"<message><body>" + "é".encode() * 50_000 + b"</body></message>", OK),
    # Where a message's chat and json-message text lies.
    ("body-deeper", b"<message><x><body>deep</body></x></message>", OK),
    ("body-deeper-and-beside", b"<message><x><body>deep</body></x><body>top</body></message>", OK),
    ("body-nested-markup", b"<message><body>a<b>bc<i>d\xc3\xa9</i></b>f</body></message>", OK),
    ("body-empty", b"<message><body/><subject></subject></message>", OK),
    (
        "subject-and-bodies",
        b"<message><subject>t</subject><body>a</body><body>b</body></message>",
        OK,
    ),
    ("body-not-message", b"<presence><body>x</body></presence>", OK),
    ("body-other-namespace", b"<message><body xmlns='urn:x'>spam</body></message>", OK),
    ("body-in-server-message", b"<message xmlns='jabber:server'><body>x</body></message>", OK),
    (
        "json-several",
        b"<message><json-message>{</json-message><json-message>}</json-message></message>",
        OK,
    ),
    ("json-empty", b"<message><json-message/></message>", OK),
    (
        "json-nested-markup",
        b"<message><json-message>a<i>b<j>c</j></i>d</json-message></message>",
        OK,
    ),
    ("json-deeper", b"<message><x><json-message>{}</json-message></x></message>", OK),
    ("json-in-body", b"<message><body><json-message>{}</json-message></body></message>", OK),
    ("body-in-json", b"<message><json-message><body>x</body></json-message></message>", OK),
    ("json-in-iq", b"<iq><json-message>x</json-message></iq>", OK),
    ("json-prefixed", b"<message xmlns:p='urn:p'><p:json-message>1</p:json-message></message>", OK),
    (
        "text-between-children",
        b"<message>a<body>b</body>c<json-message>d</json-message>e<x>f</x>g</message>",
        OK,
    ),
    ("text-only-top", b"<message>just text</message>", OK),
    ("whitespace-only-top", b"<message> </message>", OK),
    # pyexpat hands expat over 1 MiB in pieces: the readers agree across the seam.
    ("mebibyte-body", b"<message><body>" + b"x" * (2**20 + 10) + b"</body></message>", OK),
    ("mebibyte-empty-child", _across_a_mebibyte(b"<c/>"), OK),
    ("mebibyte-child", _across_a_mebibyte(b"<body>x</body>"), OK),
    ("mebibyte-multibyte", _across_a_mebibyte("€".encode()), OK),
    ("mebibyte-malformed", _across_a_mebibyte(b"<c"), NWF),
]


@compiled
@pytest.mark.parametrize("raw", [pytest.param(r, id=i) for i, r, _ in HAND])
def test_the_readers_agree_on_hand_cases(raw: bytes) -> None:
    readings(raw)


@compiled
@pytest.mark.parametrize(
    ("raw", "expected"),
    [pytest.param(r, e, id=i) for i, r, e in HAND],
)
def test_hand_cases_read_as_expected(raw: bytes, expected: str | None) -> None:
    assert outcome(readings(raw)) == expected


def test_hand_case_names_are_unique() -> None:
    names = [name for name, _, _ in HAND]
    assert len(names) == len(set(names))


@compiled
def test_the_spans_and_counts_of_a_mixed_message() -> None:
    # What the readers agree on is what the guard needs: spelled out once for a message.
    raw = (
        "<message to='r@c' type='chat' xmlns:p='urn:p' p:x='1'>a<body>é\r\n</body >"
        '<p:subject\n/><json-message>{<![CDATA["]]>}</json-message></message>'
    ).encode()
    reading = readings(raw)
    assert isinstance(reading, tuple)
    _, namespace, name, start, attributes, children, close, empty_end, body, text, json = reading
    assert (namespace, name, start, empty_end) == ("jabber:client", "message", 0, 0)
    assert close == raw.rindex(b"</message>")
    assert attributes == (("to", "r@c"), ("type", "chat"), ("urn:p x", "1"))
    assert [raw[c[2] : c[3]] for c in children] == [
        "<body>é\r\n</body >".encode(),
        b"<p:subject\n/>",
        b'<json-message>{<![CDATA["]]>}</json-message>',
    ]
    # The CR LF is one LF by then: é and it are three bytes.
    assert (body, text, json) == (2 + 1, 1 + 3 + 3, '{"}')


# -- random element trees and mutated corpus bytes ----------------------------------------------

ELEMENT_NAMES = [
    "message", "presence", "iq", "body", "subject", "json-message", "nick", "x", "c",
    "a-b.c_d", "名前", "é", "p:body", "p:json-message", "q:x", "stream:features", "xml:x",
]  # fmt: skip
TOP_NAMES = ["message", "message", "message", "presence", "iq", "p:message", "r", "open"]
NAMESPACE_DECLARATIONS = [
    "xmlns='jabber:client'",
    f"xmlns='{HTTPBIND}'",
    "xmlns=''",
    "xmlns='urn:x'",
    "xmlns='http://jitsi.org/jitmeet'",
    "xmlns:p='urn:p'",
    "xmlns:p='jabber:client'",
    f"xmlns:p='{HTTPBIND}'",
    "xmlns:q='urn:q with spaces'",
    "xmlns:q='urn:p'",
    f"xmlns:stream='{STREAMS}'",
]
ATTRIBUTE_NAMES = ["to", "type", "id", "xml:lang", "p:x", "q:x", "a", "version", "名"]
VALUES = [
    "room@conference.meet.test/abcd1234", "chat", "groupchat", "a/>b", "x>y", "",
    "&amp;&lt;&#9;&#x20AC;", "\t tab", "\r\n", "\r", "é", "😀", "&#x1F600;", "]]>", "&quot;",
]  # fmt: skip
BAD_VALUES = ["a<b", "&nope;", "&#0;", "\x01", "&", "\ud800"]
TEXTS = [
    "hi", " ", "\n", "\r\n", "\r", "\t", "&amp;", "&lt;&gt;&quot;&apos;", "&#233;", "&#x20AC;",
    "&#x1F600;", "<![CDATA[a<b]]>", "<![CDATA[]]]]>", "<![CDATA[]]>", "]]", "]", "é", "名前",
    "😀", "{&quot;k&quot;:[1,2]}", '{"k":"v"}', ">", "/>", "x" * 40,
]  # fmt: skip
BAD_TEXTS = ["]]>", "&#0;", "&nope;", "&", "<!--c-->", "<?p?>", "\x00", "\ufffe", "<"]
SPACES = [" ", " ", " ", "\n", "\t", "  ", "\r\n", "\r"]
OPTIONAL_SPACES = ["", "", "", " ", "\n", "\t"]


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> str:
    """A small element, mostly well-formed (now and then a bad value, text or binding)."""
    name = draw(st.sampled_from(TOP_NAMES if depth == 0 else ELEMENT_NAMES))
    parts: list[str] = []
    prefix = name.partition(":")[0] if ":" in name else None
    if prefix in ("p", "q", "stream") and draw(st.integers(0, 9)):
        parts.append(
            draw(st.sampled_from([d for d in NAMESPACE_DECLARATIONS if f":{prefix}=" in d]))
        )
    parts += draw(st.lists(st.sampled_from(NAMESPACE_DECLARATIONS), max_size=2, unique=True))
    for attribute in draw(st.lists(st.sampled_from(ATTRIBUTE_NAMES), max_size=3, unique=True)):
        bad = draw(st.integers(0, 24)) == 0
        value = draw(st.sampled_from(BAD_VALUES if bad else VALUES))
        quote = draw(st.sampled_from("'\""))
        value = value.replace(quote, "&apos;" if quote == "'" else "&quot;")
        equals = (
            draw(st.sampled_from(OPTIONAL_SPACES)) + "=" + draw(st.sampled_from(OPTIONAL_SPACES))
        )
        parts.append(f"{attribute}{equals}{quote}{value}{quote}")
    start = "<" + name + "".join(draw(st.sampled_from(SPACES)) + part for part in parts)
    start += draw(st.sampled_from(OPTIONAL_SPACES))
    if draw(st.integers(0, 3)) == 0:
        return start + "/>"
    content: list[str] = []
    for _ in range(draw(st.integers(0, 4 if depth < 3 else 0))):
        if draw(st.booleans()):
            content.append(draw(elements(depth + 1)))
        else:
            bad = draw(st.integers(0, 29)) == 0
            content.append(draw(st.sampled_from(BAD_TEXTS if bad else TEXTS)))
    end = f"</{name}{draw(st.sampled_from(OPTIONAL_SPACES))}>"
    return start + ">" + "".join(content) + end


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    before = draw(st.sampled_from(["", "", "", " ", "\n", "\r\n", "\ufeff", "x"]))
    after = draw(st.sampled_from(["", "", "", " ", "\n", "<x/>"]))
    return (before + draw(elements()) + after).encode("utf-8", "surrogatepass")


# The scanner's plain shape, and the bytes just outside it (carriage returns, control and C1
# characters, character references, prefixes, W3C namespaces, seventeen attributes).
PLAIN_NAMES = ["message", "presence", "iq", "body", "subject", "json-message", "nick", "c",
               "a-b.c_d", "_x", "xmlns", "xml"]  # fmt: skip
PLAIN_NAMESPACES = ["jabber:client", HTTPBIND, "", "urn:x", "http://jitsi.org/jitmeet"]
NEAR_NAMESPACES = ["urn:a b", "http://www.w3.org/XML/1998/namespace", "urn:&amp;", "urn:é"]
PLAIN_ATTRIBUTES = ["to", "type", "id", "a", "xmlnsx", "A-1"]
PLAIN_VALUES = ["", "r@c/x", "a/>b", "x>y", "&amp;&lt;&gt;&apos;&quot;", "é😀", "]]>", "'", '"']
PLAIN_TEXTS = ["hi", " ", "&amp;", "&lt;b&gt;", "é😀", "]]", "]", ">", "/>", "\t", "\n",
               "{&quot;k&quot;:1}", "x" * 30]  # fmt: skip
NEAR_TEXTS = ["\r", "\r\n", "\x7f", "\x85", "&#65;", "&amp", "]]>", "\x00", "\ufffe", "&AMP;"]
PLAIN_SPACES = [" ", " ", "\t", "\n"]


@st.composite
def plain_elements(draw: st.DrawFn, depth: int = 0) -> str:
    near = st.integers(0, 30).map(lambda n: n == 0)
    name = draw(st.sampled_from(PLAIN_NAMES))
    if draw(near):
        name = draw(st.sampled_from(["p:" + name, name + "é", "1" + name]))
    parts: list[tuple[str, str]] = []
    if draw(st.booleans()):
        pool = NEAR_NAMESPACES if draw(near) else PLAIN_NAMESPACES
        parts.append(("xmlns", draw(st.sampled_from(pool))))
    count = 17 if draw(near) else draw(st.integers(0, 3))
    for index in range(count):
        attribute = draw(st.sampled_from(PLAIN_ATTRIBUTES)) + (str(index) if count > 3 else "")
        parts.append((attribute, draw(st.sampled_from(PLAIN_VALUES))))
    if draw(near) and parts:
        parts.append(parts[0])  # a duplicate
    start = "<" + name
    for attribute, value in parts:
        quote = draw(st.sampled_from("'\""))
        value = value.replace(quote, "&apos;" if quote == "'" else "&quot;")
        equals = draw(st.sampled_from(["=", "=", " = ", "\n=\t"]))
        start += f"{draw(st.sampled_from(PLAIN_SPACES))}{attribute}{equals}{quote}{value}{quote}"
    start += draw(st.sampled_from(["", "", " ", "\n", "\r" if draw(near) else ""]))
    if draw(st.integers(0, 3)) == 0:
        return start + "/>"
    content: list[str] = []
    for _ in range(draw(st.integers(0, 4 if depth < 4 else 0))):
        if draw(st.booleans()):
            content.append(draw(plain_elements(depth + 1)))
        else:
            content.append(draw(st.sampled_from(NEAR_TEXTS if draw(near) else PLAIN_TEXTS)))
    end = "</" + name + draw(st.sampled_from(["", "", " ", "\n"])) + ">"
    return start + ">" + "".join(content) + end


FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@compiled
@FUZZ
@given(documents())
def test_the_readers_agree_on_random_trees(raw: bytes) -> None:
    readings(raw)


@compiled
@FUZZ
@given(plain_elements().map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_the_readers_agree_on_plain_trees(raw: bytes) -> None:
    readings(raw)


# Mutations start from corpus stanzas and hand cases small enough to shrink.
SEEDS = [raw for raws in CORPUS.values() for raw in raws if len(raw) <= 4096] + [
    raw for _, raw, _ in HAND if len(raw) <= 4096
]
INTERESTING_BYTES = list(b"<>/&;#'\"=: \t\r\n\x00]![?-xX\xc3\xa9\xef\xbb\xbf\xff\xfe\x80")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    byte = st.one_of(st.sampled_from(INTERESTING_BYTES), st.integers(0, 255))
    for _ in range(draw(st.integers(1, 3))):
        operation = draw(st.sampled_from(["insert", "delete", "replace", "swap", "truncate"]))
        at = draw(st.integers(0, len(raw)))
        if operation == "insert":
            raw[at:at] = bytes([draw(byte)])
        elif operation == "delete":
            del raw[at : at + 1]
        elif operation == "replace" and at < len(raw):
            raw[at] = draw(byte)
        elif operation == "swap":
            half = len(raw) // 2
            raw = raw[half:] + raw[:half]
        elif operation == "truncate":
            del raw[at:]
    return bytes(raw)


@compiled
@FUZZ
@given(mutated())
def test_the_readers_agree_on_mutated_stanzas(raw: bytes) -> None:
    readings(raw)


# -- wrong calls ---------------------------------------------------------------------------------


class _Loose(tuple[Any, ...]):
    """A tuple subclass with a __dict__: not the NamedTuple layout the reader fills."""


class _Small(NamedTuple):
    a: int


GOOD = b"<message><body>x</body></message>"
ARGUMENTS = (GOOD, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS)


def _with(index: int, value: object) -> tuple[object, ...]:
    return (*ARGUMENTS[:index], value, *ARGUMENTS[index + 1 :])


WRONG_CALLS = [
    pytest.param((), id="no-arguments"),
    pytest.param(ARGUMENTS[:4], id="four-arguments"),
    pytest.param((*ARGUMENTS, 1), id="six-arguments"),
    pytest.param(_with(0, GOOD.decode()), id="raw-str"),
    pytest.param(_with(0, bytearray(GOOD)), id="raw-bytearray"),
    pytest.param(_with(0, memoryview(GOOD)), id="raw-memoryview"),
    pytest.param(_with(0, type("B", (bytes,), {})(GOOD)), id="raw-bytes-subclass"),
    pytest.param(_with(0, None), id="raw-none"),
    pytest.param(_with(1, dict), id="stanza-dict"),
    pytest.param(_with(1, int), id="stanza-int"),
    pytest.param(_with(1, _Loose), id="stanza-tuple-with-dict"),
    pytest.param(_with(1, object), id="stanza-object"),
    pytest.param(_with(1, bytes), id="stanza-bytes"),
    pytest.param(_with(1, Stanza(GOOD, "", "", 0, {}, (), None, 0, None, 0, None)), id="instance"),
    pytest.param(_with(2, list), id="child-list"),
    pytest.param(_with(2, "Child"), id="child-str"),
    pytest.param(_with(3, "32"), id="depth-str"),
    pytest.param(_with(3, 32.0), id="depth-float"),
    pytest.param(_with(3, None), id="depth-none"),
    pytest.param(_with(4, b"1000"), id="elements-bytes"),
]


@compiled
@pytest.mark.parametrize("read", ["read", "read_expat"])
@pytest.mark.parametrize("arguments", WRONG_CALLS)
def test_wrong_calls_raise_type_error(read: str, arguments: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        getattr(_reader, read)(*arguments)
    # And the reader reads on as before.
    assert outcome(readings(GOOD)) is OK


@compiled
@pytest.mark.parametrize("read", ["read", "read_expat"])
def test_odd_but_typed_calls_do_not_crash(read: str) -> None:
    function = getattr(_reader, read)
    with pytest.raises(TypeError):
        function(GOOD, Stanza, Child, MAX_DEPTH, max_elements=MAX_ELEMENTS)
    with pytest.raises(OverflowError):
        function(GOOD, Stanza, Child, 2**80, MAX_ELEMENTS)
    assert function(GOOD, Stanza, Child, -1, MAX_ELEMENTS) == POLICY_VIOLATION
    assert function(GOOD, Stanza, Child, MAX_DEPTH, 0) == POLICY_VIOLATION
    assert function(GOOD, Stanza, Child, True, MAX_ELEMENTS) == POLICY_VIOLATION
    # Types of the tuple's layout but not the reader's fields: refused, or filled, never a crash.
    for kind in (tuple, _Small):
        try:
            found = function(b"<a><b/></a>", kind, kind, MAX_DEPTH, MAX_ELEMENTS)
        except TypeError:
            continue
        assert type(found) is kind and len(found) == len(Stanza._fields)
        assert tuple(found[5][0]) == ("jabber:client", "b", 3, 7, {})
    assert outcome(readings(GOOD)) is OK


@compiled
def test_a_stanza_read_from_a_finaliser_during_a_read() -> None:
    """A collection run by an allocation inside a read may call a finaliser that reads too: the
    inner read takes a parser of its own and both come out right."""
    inner: list[object] = []

    class Reads:
        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            inner.append(_reader.read(GOOD, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS))

    raw = flat(MAX_ELEMENTS)
    expected = readings(raw)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1)
    try:
        for _ in range(20):
            Reads()
            found = _reader.read(raw, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS)
            assert normalised(found) == expected
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()
    assert inner, "no finaliser ran during a read"
    assert all(normalised(found) == readings(GOOD) for found in inner)


# -- no leak -------------------------------------------------------------------------------------


def _resident_bytes() -> int:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


@compiled
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_two_hundred_thousand_reads_leak_nothing() -> None:
    wire_guard = importlib.import_module(SOURCES["guard_stanzas"])
    mix = [
        wire_guard.JOIN.encode(),
        wire_guard.JINGLE_ACCEPT.encode(),
        wire_guard.JITSI["endpoint-message"].encode(),
        "<message><body>é😀</body><subject>s</subject><json-message>{}</json-message></message>".encode(),
        b"<message to='a' xmlns:p='urn:p' p:x='1'><c/><d>t</d>",  # unclosed: children built
        b"<message><body>x</body><body>\xff</body></message>",  # bad byte after a child
        b"<message><json-message>" + b"j" * 300 + b"</json-message><!--x--></message>",
        b'<!DOCTYPE m [<!ENTITY a "aaaa">]><message>&a;</message>',
        nested(MAX_DEPTH + 1),
        b"<presence>" + b"<c a='1'>t</c>" * 20 + nested(MAX_DEPTH) + b"</presence>",  # too deep
        b"",
    ]
    for raw in mix:
        readings(raw)
    read = _reader.read

    def run(rounds: int) -> None:
        for _ in range(rounds):
            for raw in mix:
                read(raw, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS)
            with contextlib.suppress(TypeError):
                wrong: Any = GOOD.decode()  # a str where bytes belong, on purpose
                read(wrong, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS)

    rounds = 200_000 // (len(mix) + 1)
    run(rounds // 10)  # warm-up: the allocator's pools and the kept parser settle
    gc.collect()
    before, blocks = _resident_bytes(), sys.getallocatedblocks()
    run(rounds)
    gc.collect()
    grown = _resident_bytes() - before
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 200,000 reads"
    # Python's own allocator counts its blocks: one object kept per read of one input of the
    # mix (16,000 of them) is seen here even where RSS hides it.
    assert sys.getallocatedblocks() - blocks < 2000


def test_the_compiled_reader_is_the_one_in_use() -> None:
    assert stanzas.READER == "compiled", (
        "the compiled reader was not built: install gcc and libexpat1-dev"
    )


# The wire guard reads through stanzas.read_or_condition: parse_stanza's answer with a refusal as
# its condition, str or bytes, with the size bound (the compiled read_text when built).
GUARD_INPUTS: list[str | bytes] = [
    "<message xmlns='jabber:client'><body>你好 &amp; bye</body></message>",
    b"<presence xmlns='jabber:client'><nick xmlns='http://jabber.org/protocol/nick'>A</nick>"
    b"</presence>",
    "<message><body>\ud800</body></message>",  # a lone surrogate: no UTF-8 at all
    "<iq/>" + " " * 10,
    "x" * 65,
    b"x" * 65,
    "é" * 40,  # 40 characters, 80 bytes
    b"",
    "",
    "<a>\x00</a>",
]


@compiled
@pytest.mark.parametrize("data", GUARD_INPUTS)
def test_the_guard_reads_as_parse_stanza_does(data: str | bytes) -> None:
    compiled_reading = normalised(stanzas.read_or_condition(data, 64))
    assert compiled_reading == normalised(stanzas.parse_stanza(data, max_bytes=64))
    # And the reading of an install without the compiled reader.
    assert normalised(stanzas.read_text_in_python(data, 64)) == compiled_reading


@compiled
@pytest.mark.parametrize("data", [None, 1, bytearray(b"<a/>"), memoryview(b"<a/>")])
def test_the_guard_reads_only_str_and_bytes(data: object) -> None:
    with pytest.raises(TypeError):
        stanzas.read_or_condition(data, 64)  # type: ignore[arg-type]
