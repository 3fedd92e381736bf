"""One element a client sent (a WebSocket message, or one child of a BOSH body) read once with a
safe parser: its name, the attributes the guard judges, and where its direct children lie.

Like gateway/proxy/bosh_body.py it uses expat, which prosody's parser also wraps, and accepts only
what RFC 6120 §11.1 lets a stream hold: no DTD (so no entity is declared, expanded or fetched), no
comment, no processing instruction, a bounded depth. Nothing is built or re-serialised: the guard
rewrites a stanza by splicing the original bytes at the offsets found here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn
from xml.parsers import expat

CLIENT = "jabber:client"
HTTPBIND = "http://jabber.org/protocol/httpbind"
NAMESPACE_SEPARATOR = " "
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

# RFC 6120 §4.9.3 stream error conditions a parse can end in.
NOT_WELL_FORMED = "not-well-formed"
RESTRICTED_XML = "restricted-xml"
POLICY_VIOLATION = "policy-violation"


@dataclass(frozen=True, slots=True)
class Child:
    """An element directly inside the top one: its namespace, local name, bytes' span and
    attributes (as `Stanza.attributes`)."""

    namespace: str
    name: str
    start: int
    end: int
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Stanza:
    """The top element. `namespace` is jabber:client for an element without one (prosody reads a
    WebSocket stanza so) and for a BOSH child in the httpbind namespace (prosody re-parents it);
    its children in that same default namespace are reported as jabber:client too.

    `attributes` holds the attributes without a namespace (`to`, `type`, `id`, `version`).
    `close`: where the top's end tag begins, or None when it is an empty-element tag, whose `/>`
    then sits at `empty_end - 2`. `body_bytes`: for a message, the UTF-8 length of all the text
    inside its `body` and `subject` children, in any namespace (Jitsi finds them by tag name and
    shows their textContent), summed; None without one. `text_bytes`: the UTF-8 length of all the
    text inside the top element. `json_message`: for a message, the text inside its direct
    `json-message` children in any namespace, joined as jQuery's `.text()` joins them (Jitsi's
    polls, endpoint messages), or None without one."""

    raw: bytes
    namespace: str
    name: str
    qname: bytes
    attributes: Mapping[str, str]
    children: tuple[Child, ...]
    close: int | None
    empty_end: int
    body_bytes: int | None
    text_bytes: int
    json_message: str | None


@dataclass(frozen=True, slots=True)
class Malformed:
    """Not one element a client may send: `condition` is the stream error to end the session
    with."""

    condition: str


class _Stop(Exception):
    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


def _restricted(*_: object) -> NoReturn:
    raise _Stop(RESTRICTED_XML)


class _Reader:
    """expat's callbacks for one element; `parse_stanza` drives it."""

    __slots__ = (
        "_child",
        "_child_content",
        "_elements",
        "_in_body",
        "_in_json",
        "_inherited",
        "_parser",
        "attributes",
        "body_bytes",
        "children",
        "close",
        "depth",
        "empty_end",
        "json_message",
        "json_parts",
        "raw",
        "text_bytes",
        "top",
    )

    def __init__(self, parser: expat.XMLParserType, raw: bytes) -> None:
        self._parser = parser
        self.raw = raw
        self.depth = 0
        self.top: tuple[str, str] | None = None
        self.attributes: dict[str, str] = {}
        self.children: list[Child] = []
        self.close: int | None = None
        self.empty_end = 0
        self.body_bytes: int | None = None
        self.text_bytes = 0
        self.json_message: str | None = None
        self._elements = 0
        self._child: tuple[str, str, int, dict[str, str]] | None = None
        self._child_content = False
        self._in_body = False
        self._in_json = False
        self.json_parts: list[str] = []
        # The top's own namespace when it stands for jabber:client (none, or httpbind).
        self._inherited: str | None = None

    def _split(self, name: str) -> tuple[str, str]:
        namespace, _, local = name.rpartition(NAMESPACE_SEPARATOR)
        if namespace == self._inherited:
            namespace = CLIENT
        return namespace, local

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        self._elements += 1
        if self.depth > MAX_DEPTH or self._elements > MAX_ELEMENTS:
            raise _Stop(POLICY_VIOLATION)
        if self.depth == 1:
            namespace, _, local = name.rpartition(NAMESPACE_SEPARATOR)
            if namespace in ("", HTTPBIND):
                self._inherited = namespace
                namespace = CLIENT
            self.top = (namespace, local)
            self.attributes = attributes
        elif self.depth == 2:
            namespace, local = self._split(name)
            self._child = (namespace, local, self._parser.CurrentByteIndex, attributes)
            if self.top == (CLIENT, "message"):
                if local in _CHAT_CHILDREN:
                    self._in_body = True
                    if self.body_bytes is None:
                        self.body_bytes = 0
                elif local == "json-message":
                    self._in_json = True
                    if self.json_message is None:
                        self.json_message = ""
        # Whether anything comes between this start and the next end: see _empty.
        self._child_content = False

    def end(self, _name: str) -> None:
        index = self._parser.CurrentByteIndex
        if self.depth == 2 and self._child is not None:
            namespace, local, start, attributes = self._child
            end = self._element_end(index)
            self.children.append(Child(namespace, local, start, end, attributes))
            self._child = None
            self._in_body = False
            self._in_json = False
        elif self.depth == 1:
            if self._empty(index):
                self.empty_end = index
            else:
                self.close = index
        self.depth -= 1
        self._child_content = True

    def _empty(self, index: int) -> bool:
        # expat reports an empty-element tag's end just after its `/>`, another element's at the
        # start of its end tag; a start tag never ends in `/>` otherwise, and content between
        # would have been seen.
        return not self._child_content and self.raw[index - 2 : index] == b"/>"

    def _element_end(self, index: int) -> int:
        if self._empty(index):
            return index
        # An end tag holds no attribute, so its first `>` closes it.
        return self.raw.index(b">", index) + 1

    def text(self, data: str) -> None:
        self._child_content = True
        size = len(data) if data.isascii() else len(data.encode("utf-8"))
        self.text_bytes += size
        if self._in_body and self.body_bytes is not None:
            self.body_bytes += size
        elif self._in_json:
            self.json_parts.append(data)

    def cdata(self) -> None:
        self._child_content = True


def parse_stanza(data: str | bytes, *, max_bytes: int) -> Stanza | Malformed:
    """The one element in `data`, or why it is not acceptable."""
    if isinstance(data, str):
        if len(data) > max_bytes:
            return Malformed(POLICY_VIOLATION)
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            return Malformed(NOT_WELL_FORMED)
    else:
        raw = data
    if len(raw) > max_bytes:
        return Malformed(POLICY_VIOLATION)
    # The encoding given here overrides any the element declares: XMPP is UTF-8 only.
    parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=NAMESPACE_SEPARATOR)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    reader = _Reader(parser, raw)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    parser.StartCdataSectionHandler = reader.cdata
    # A DOCTYPE is refused where it starts, so no entity can be declared, let alone expanded;
    # the other declaration handlers cannot fire without one and refuse all the same. An XML
    # declaration belongs to a stream's head, never inside one.
    parser.StartDoctypeDeclHandler = _restricted
    parser.EntityDeclHandler = _restricted
    parser.UnparsedEntityDeclHandler = _restricted
    parser.NotationDeclHandler = _restricted
    parser.ExternalEntityRefHandler = _restricted
    parser.CommentHandler = _restricted
    parser.ProcessingInstructionHandler = _restricted
    parser.XmlDeclHandler = _restricted
    try:
        parser.Parse(raw, True)
    except _Stop as stop:
        return Malformed(stop.condition)
    except expat.ExpatError:
        # Syntax, invalid UTF-8, a second top element, text beside it, an unbound prefix.
        return Malformed(NOT_WELL_FORMED)
    if reader.top is None:
        return Malformed(NOT_WELL_FORMED)
    namespace, name = reader.top
    start = len(raw) - len(raw.lstrip(XML_WHITESPACE.encode()))
    qname_end = start + 1
    while qname_end < len(raw) and raw[qname_end] not in b" \t\r\n/>":
        qname_end += 1
    return Stanza(
        raw=raw,
        namespace=namespace,
        name=name,
        qname=raw[start + 1 : qname_end],
        attributes=reader.attributes,
        children=tuple(reader.children),
        close=reader.close,
        empty_end=reader.empty_end,
        body_bytes=reader.body_bytes,
        text_bytes=reader.text_bytes,
        json_message=None if reader.json_message is None else "".join(reader.json_parts),
    )
