"""One element a client sent (a WebSocket message, or one child of a BOSH body) read once with a
safe parser: its name, the attributes the guard judges, and where its direct children lie.

Like gateway/proxy/bosh_body.py it uses expat, which prosody's parser also wraps, and accepts only
what RFC 6120 §11.1 lets a stream hold: no DTD (so no entity is declared, expanded or fetched), no
comment, no processing instruction, a bounded depth. Nothing is built or re-serialised: the guard
rewrites a stanza by splicing the original bytes at the offsets found here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import NamedTuple, NoReturn
from xml.parsers import expat

from gateway.proxy.xml_reading import NAMESPACE_SEPARATOR, foreign_bytes, restricted_parser

try:
    # The same reading in C (gateway/proxy/_reader.c: a scanner for the plain shape Jitsi's
    # clients send, expat's callbacks in C for anything else), built when the package is
    # installed where a compiler and libexpat's headers are; five to ten times as fast.
    from gateway.proxy import _reader

    _compiled: ModuleType | None = _reader
except ImportError:  # pragma: no cover - an install without it reads in Python
    _compiled = None

# Which reader `parse_stanza` uses: "compiled" (gateway/proxy/_reader.c) or "python" (`_Reader`).
READER = "python" if _compiled is None else "compiled"


CLIENT = "jabber:client"
HTTPBIND = "http://jabber.org/protocol/httpbind"
# The deepest Jitsi stanza (a Jingle source's parameter) sits at 6; room to spare, but no stack of
# a million open elements.
MAX_DEPTH = 32
# Elements in one element, at any depth: a Jingle offer holds a few hundred; 60,000 empty ones
# cost a third of a second to read, so the count is capped where each starts.
MAX_ELEMENTS = 1000
XML_WHITESPACE = " \t\r\n"
# A message's children whose text everyone in the room reads as chat: its body, and a subject
# (the meeting's title), matched by local name as Jitsi matches them.
_CHAT_CHILDREN = frozenset({"body", "subject"})
# Where a start tag's name ends.
_NAME = re.compile(rb"[^ \t\r\n/>]*")

# RFC 6120 §4.9.3 stream error conditions a parse can end in.
NOT_WELL_FORMED = "not-well-formed"
RESTRICTED_XML = "restricted-xml"
POLICY_VIOLATION = "policy-violation"


# Child and Stanza are NamedTuples, not frozen dataclasses: one is built for every stanza and
# each of its children the gate relays, and a frozen dataclass's __init__ (an object.__setattr__
# per field) cost ~0.6 µs a child and ~1.3 µs a stanza, a fifth of reading a presence.
class Child(NamedTuple):
    """An element directly inside the top one: its namespace, local name, bytes' span and
    attributes (as `Stanza.attributes`)."""

    namespace: str
    name: str
    start: int
    end: int
    attributes: Mapping[str, str]


class Stanza(NamedTuple):
    """The top element. `namespace` is jabber:client for an element without one (prosody reads a
    WebSocket stanza so) and for a BOSH child in the httpbind namespace (prosody re-parents it);
    its children in that same default namespace are reported as jabber:client too.

    `start`: where the top's start tag begins in `raw`. `attributes` holds the attributes without a
    namespace (`to`, `type`, `id`, `version`): read, never changed (the compiled reader gives every
    element without attributes one shared read-only mapping). `close`: where the top's end tag
    begins, or None when it is an empty-element tag, whose `/>` then sits at `empty_end - 2`.
    `body_bytes`: for a message, the UTF-8 length of all the text inside its `body` and `subject`
    children, in any namespace (Jitsi finds them by tag name and shows their textContent), summed;
    None without one. `text_bytes`: the UTF-8 length of all the text inside the top element.
    `json_message`: for a message, the text inside its direct `json-message` children in any
    namespace, joined as jQuery's `.text()` joins them (Jitsi's polls, endpoint messages), or None
    without one."""

    raw: bytes
    namespace: str
    name: str
    start: int
    attributes: Mapping[str, str]
    children: tuple[Child, ...]
    close: int | None
    empty_end: int
    body_bytes: int | None
    text_bytes: int
    json_message: str | None

    @property
    def qname(self) -> bytes:
        """The top's name as written, its prefix included (read only when a rewrite needs it)."""
        found = _NAME.match(self.raw, self.start + 1)
        assert found is not None  # the pattern matches the empty name too
        return found.group()


@dataclass(frozen=True, slots=True)
class Malformed:
    """Not one element a client may send: `condition` is the stream error to end the session
    with."""

    condition: str


_MALFORMED = {
    condition: Malformed(condition)
    for condition in (NOT_WELL_FORMED, RESTRICTED_XML, POLICY_VIOLATION)
}


class _Stop(Exception):
    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


def _restricted(*_: object) -> NoReturn:
    raise _Stop(RESTRICTED_XML)


# NamedTuple's own __new__ in C, without the generated Python function around it.
_new = tuple.__new__
# What a message's direct child holds, for `Stanza.body_bytes` and `Stanza.json_message`.
_OTHER, _CHAT, _JSON = 0, 1, 2


class _Reader:
    """expat's callbacks for one element; `parse_stanza` drives it.

    Only the top (depth 1) and its children (depth 2) are looked at; deeper elements are counted
    and their depth kept, nothing more. Text is collected by `texts.append` (no Python call per
    run of text); a child's and the top's share of it is found by where `texts` stood at their
    start and end."""

    __slots__ = (
        "_child",
        "_inherited",
        "_message",
        "_parser",
        "_raw",
        "attributes",
        "children",
        "close",
        "depth",
        "elements",
        "empty_end",
        "spans",
        "start_index",
        "texts",
        "top",
    )

    def __init__(self, parser: expat.XMLParserType, raw: bytes) -> None:
        self._parser = parser
        self._raw = raw
        self.depth = 0
        self.elements = 0
        self.top: tuple[str, str] | None = None
        self.start_index = 0
        self.attributes: dict[str, str] = {}
        self.children: list[Child] = []
        self.close: int | None = None
        self.empty_end = 0
        self.texts: list[str] = []
        # (kind, first, last) for a message's body/subject and json-message children: their text
        # is texts[first:last].
        self.spans: list[tuple[int, int, int]] = []
        # The child being read: namespace, local name, start, attributes, where `texts` and
        # `elements` stood at its start, its kind.
        self._child: tuple[str, str, int, dict[str, str], int, int, int] = (
            "",
            "",
            0,
            self.attributes,
            0,
            0,
            _OTHER,
        )
        self._message = False
        # The top's own namespace when it stands for jabber:client (none, or httpbind).
        self._inherited: str | None = None

    def start(self, name: str, attributes: dict[str, str]) -> None:
        depth = self.depth + 1
        self.depth = depth
        elements = self.elements + 1
        self.elements = elements
        if depth > MAX_DEPTH or elements > MAX_ELEMENTS:
            raise _Stop(POLICY_VIOLATION)
        if depth == 2:
            namespace, _, local = name.rpartition(NAMESPACE_SEPARATOR)
            if namespace == self._inherited:
                namespace = CLIENT
            kind = _OTHER
            if self._message:
                if local in _CHAT_CHILDREN:
                    kind = _CHAT
                elif local == "json-message":
                    kind = _JSON
            index = self._parser.CurrentByteIndex
            self._child = (namespace, local, index, attributes, len(self.texts), elements, kind)
        elif depth == 1:
            namespace, _, local = name.rpartition(NAMESPACE_SEPARATOR)
            if namespace in ("", HTTPBIND):
                self._inherited = namespace
                namespace = CLIENT
            self._message = namespace == CLIENT and local == "message"
            self.top = (namespace, local)
            self.attributes = attributes
            self.start_index = self._parser.CurrentByteIndex

    def end(self, _name: str) -> None:
        depth = self.depth
        self.depth = depth - 1
        if depth == 2:
            index = self._parser.CurrentByteIndex
            namespace, local, start, attributes, first, elements, kind = self._child
            last = len(self.texts)
            # expat reports an empty-element tag's end just after its `/>`, another element's at
            # the start of its end tag; a start tag never ends in `/>` otherwise, and an element
            # or text between would have been seen.
            if (
                elements == self.elements
                and first == last
                and self._raw[index - 2 : index] == b"/>"
            ):
                end = index
            else:
                # An end tag holds no attribute, so its first `>` closes it.
                end = self._raw.index(b">", index) + 1
            self.children.append(_new(Child, (namespace, local, start, end, attributes)))
            if kind:
                self.spans.append((kind, first, last))
        elif depth == 1:
            index = self._parser.CurrentByteIndex
            if self.elements == 1 and not self.texts and self._raw[index - 2 : index] == b"/>":
                self.empty_end = index
            else:
                self.close = index


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def parse_stanza(data: str | bytes, *, max_bytes: int) -> Stanza | Malformed:
    """The one element in `data`, or why it is not acceptable."""
    found = read_or_condition(data, max_bytes)
    return _MALFORMED[found] if isinstance(found, str) else found


def read_text_in_python(data: str | bytes, max_bytes: int) -> Stanza | str:
    """`data` (a str, read as UTF-8, or bytes) read in Python, a refusal as its condition: what
    the compiled reader's `read_text` does, and the reading of an install without it."""
    if isinstance(data, str):
        if len(data) > max_bytes:
            return POLICY_VIOLATION
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            return NOT_WELL_FORMED
    else:
        raw = data
    if len(raw) > max_bytes:
        return POLICY_VIOLATION
    found = read_in_python(raw)
    return found.condition if isinstance(found, Malformed) else found


def read_in_python(raw: bytes) -> Stanza | Malformed:
    """`raw` read by expat driven from Python: what gateway/proxy/_reader.c does in C, and the
    reading of an install without it."""
    if foreign_bytes(raw):
        return _MALFORMED[NOT_WELL_FORMED]
    # Names are compared, never kept: interning them in a dict of the parser's own cost ~1 µs
    # a presence.
    parser = restricted_parser(_restricted, intern=False)
    reader = _Reader(parser, raw)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.texts.append
    try:
        parser.Parse(raw, True)
    except _Stop as stop:
        return _MALFORMED[stop.condition]
    except expat.ExpatError:
        # Syntax, invalid UTF-8, a second top element, text beside it, an unbound prefix.
        return _MALFORMED[NOT_WELL_FORMED]
    finally:
        # The reader's methods hold the parser: without this cycle broken, each parser (and its
        # buffers) would wait for the garbage collector, at twice the cost of a whole parse.
        parser.StartElementHandler = None
        parser.EndElementHandler = None
    if reader.top is None:
        return _MALFORMED[NOT_WELL_FORMED]
    namespace, name = reader.top
    texts = reader.texts
    body_bytes: int | None = None
    json_message: str | None = None
    for kind, first, last in reader.spans:
        text = "".join(texts[first:last])
        if kind == _CHAT:
            body_bytes = (body_bytes or 0) + _utf8_length(text)
        else:
            json_message = (json_message or "") + text
    return _new(
        Stanza,
        (
            raw,
            namespace,
            name,
            reader.start_index,
            reader.attributes,
            tuple(reader.children),
            reader.close,
            reader.empty_end,
            body_bytes,
            _utf8_length("".join(texts)) if texts else 0,
            json_message,
        ),
    )


# One element read, a refusal as its condition (`parse_stanza` as the wire guard reads, one Python
# call less a stanza when compiled).
read_or_condition: Callable[[str | bytes, int], Stanza | str] = (
    read_text_in_python
    if _compiled is None
    else partial(_compiled.read_text, Stanza, Child, MAX_DEPTH, MAX_ELEMENTS)
)
