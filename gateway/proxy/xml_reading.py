"""The one way the gate sets expat up to read what a client sends (a BOSH body, a stanza): as
prosody reads it, UTF-8 only, and only what an XMPP stream may hold (RFC 6120 §11.1): no DTD, so
no entity declared or expanded and nothing external fetched; no comment, processing instruction
or XML declaration. Each of those calls `refuse` where it starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn
from xml.parsers import expat

# expat's namespace mode names an element or attribute "<namespace> <local name>"; a space never
# occurs in a name, so an attribute without a namespace (`sid`) is told from one with (`xmpp:…`).
NAMESPACE_SEPARATOR = " "
# Bytes that never occur in UTF-8 XML (a NUL is no XML character; 0xFE and 0xFF are no UTF-8 at
# all) but that make expat read UTF-16 whatever encoding it was given: a byte-order mark, or a
# NUL beside the first `<` (xmltok.c's initScan). Input holding one is refused before expat sees
# it, or the gate would read an element prosody reads otherwise.
_NOT_UTF8 = (b"\x00", b"\xfe", b"\xff")


def foreign_bytes(data: bytes) -> bool:
    """Whether `data` holds a byte that no UTF-8 XML holds and that expat may take for UTF-16."""
    return any(byte in data for byte in _NOT_UTF8)


def restricted_parser(
    refuse: Callable[..., NoReturn], *, intern: bool = True
) -> expat.XMLParserType:
    """A namespace-aware expat parser that calls `refuse` for anything but elements, attributes
    and text. `intern=False`: names are not kept in a table of the parser's own (cheaper when
    they are only compared)."""
    # The encoding given here overrides any the document declares: XMPP is UTF-8 only.
    if intern:
        parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=NAMESPACE_SEPARATOR)
    else:
        parser = expat.ParserCreate(
            encoding="UTF-8", namespace_separator=NAMESPACE_SEPARATOR, intern=None
        )
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    # A DOCTYPE is refused where it starts, so no entity can be declared, let alone expanded;
    # the other declaration handlers cannot fire without one and refuse all the same. An XML
    # declaration may name another encoding, which prosody would honour and this reader would
    # not; it belongs to a stream's head, never inside one.
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.NotationDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.CommentHandler = refuse
    parser.ProcessingInstructionHandler = refuse
    parser.XmlDeclHandler = refuse
    return parser
