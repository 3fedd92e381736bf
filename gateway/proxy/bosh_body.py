"""A BOSH request body (XEP-0124, XEP-0206) read as an XML parser reads it, as prosody will.

The gate decides from a body which session it belongs to, so it must see the attributes prosody
sees: a real parser (the standard library's expat, which prosody's own parser also wraps), never
a pattern that a decoy attribute value can fool. Only what an XMPP body may hold is accepted
(RFC 6120 §11.1): no DTD, so no entity declared or expanded and nothing external fetched; no
comment or processing instruction; a bounded depth. Anything else is refused, not forwarded,
with the RFC 6120 stream error condition it earns (BodyRefused): under the wire guard the
sender's sessions end for it, counted and logged as a WebSocket stream's end is.

The root's attributes are read now; each child element's exact bytes are kept as a span so the
stanzas can be read one by one later without a second parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn
from xml.parsers import expat

from gateway.errors import BodyRefused, RequestTooLarge
from gateway.proxy.stanzas import POLICY_VIOLATION, RESTRICTED_XML
from gateway.proxy.xml_reading import NAMESPACE_SEPARATOR, foreign_bytes, restricted_parser

HTTPBIND = "http://jabber.org/protocol/httpbind"
ROOT = HTTPBIND + NAMESPACE_SEPARATOR + "body"
# The deepest Jitsi stanza (a Jingle source's parameter) sits at 7 counting the body; room to
# spare, but no stack of a million open elements.
MAX_DEPTH = 32
# Elements in one body, all depths: a Jingle offer holds a few hundred; a body of tens of
# thousands of empty elements would only cost the gate CPU (each is a callback here).
MAX_ELEMENTS = 5000
# XEP-0124 §14.1: a rid is a positive integer below 2^53.
RID_SHAPE = re.compile(r"[0-9]{1,16}")
XML_WHITESPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Child:
    """One element directly inside the body: its expanded name and where its bytes lie."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class BoshBody:
    # Keyed as expat names them: `sid` for an attribute without a namespace, `urn:xmpp:xbosh
    # restart` for `xmpp:restart`.
    attributes: Mapping[str, str]
    children: tuple[Child, ...]

    @property
    def sid(self) -> str | None:
        return self.attributes.get("sid")

    @property
    def rid(self) -> int | None:
        value = self.attributes.get("rid")
        if value is None or not RID_SHAPE.fullmatch(value):
            return None
        return int(value)

    @property
    def terminates(self) -> bool:
        return self.attributes.get("type") == "terminate"


def _refuse(*_: object) -> NoReturn:
    raise BodyRefused(RESTRICTED_XML)


class _Reader:
    """expat's callbacks for one body; `parse` drives it."""

    def __init__(self, parser: expat.XMLParserType) -> None:
        self._parser = parser
        self.depth = 0
        self.elements = 0
        self.attributes: dict[str, str] | None = None
        self.children: list[Child] = []
        # A child just ended: its span ends where the next event begins (expat reports an
        # empty element's end after it, and another's end at the start of its end tag).
        self._open_child: tuple[str, int] | None = None
        self._ended_child: tuple[str, int] | None = None

    def _close_ended_child(self) -> None:
        if self._ended_child is not None:
            name, start = self._ended_child
            self.children.append(Child(name, start, self._parser.CurrentByteIndex))
            self._ended_child = None

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._close_ended_child()
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_DEPTH or self.elements > MAX_ELEMENTS:
            raise BodyRefused(POLICY_VIOLATION)
        if self.depth == 1:
            if name != ROOT:
                raise BodyRefused()
            self.attributes = attributes
        elif self.depth == 2:
            self._open_child = (name, self._parser.CurrentByteIndex)

    def end(self, _name: str) -> None:
        self._close_ended_child()
        if self.depth == 2:
            self._ended_child = self._open_child
            self._open_child = None
        self.depth -= 1

    def text(self, data: str) -> None:
        self._close_ended_child()
        # Between the stanzas only whitespace: the body carries elements, not text.
        if self.depth == 1 and data.strip(XML_WHITESPACE):
            raise BodyRefused()

    def cdata(self) -> None:
        self._close_ended_child()


def parse_body(data: bytes, *, max_bytes: int) -> BoshBody:
    """The body's root attributes and child spans; BodyRefused unless `data` is one
    well-formed `<body xmlns='http://jabber.org/protocol/httpbind'>` and nothing else."""
    if len(data) > max_bytes:
        raise RequestTooLarge()
    if foreign_bytes(data):
        raise BodyRefused()
    parser = restricted_parser(_refuse)
    reader = _Reader(parser)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    parser.StartCdataSectionHandler = reader.cdata
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise BodyRefused() from exc
    finally:
        # The reader holds the parser and the parser its handlers: a cycle left to the garbage
        # collector, with the parser's buffers, unless broken here.
        parser.StartElementHandler = None
        parser.EndElementHandler = None
        parser.CharacterDataHandler = None
        parser.StartCdataSectionHandler = None
    if reader.attributes is None:
        raise BodyRefused()
    return BoshBody(attributes=reader.attributes, children=tuple(reader.children))
