"""The BOSH body reader: the sid, rid and type prosody's parser would see, whatever the spelling,
and a refusal for anything that is not one well-formed httpbind `<body>`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BoshBodyInvalid, RequestTooLarge
from gateway.proxy.bosh_body import HTTPBIND, MAX_DEPTH, MAX_ELEMENTS, BodyRefused, parse_body

LIMIT = 64 * 1024
XMLNS = f"xmlns='{HTTPBIND}'"
XBOSH = "urn:xmpp:xbosh"


def parse(data: str | bytes) -> object:
    raw = data.encode() if isinstance(data, str) else data
    return parse_body(raw, max_bytes=LIMIT)


def test_the_decoy_of_the_issue_is_not_taken_for_the_sid() -> None:
    body = parse_body(
        f"<body foo=\"sid='x'\" sid='real' rid='7' {XMLNS}/>".encode(), max_bytes=LIMIT
    )
    assert body.sid == "real"
    assert body.rid == 7
    assert not body.terminates


def test_bodies_as_strophe_sends_them() -> None:
    creation = parse_body(
        (
            b"<body rid='3351305871' xmlns='http://jabber.org/protocol/httpbind' to='meet.test'"
            b" xml:lang='en' wait='60' hold='1' content='text/xml; charset=utf-8' ver='1.6'"
            b" xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>"
        ),
        max_bytes=LIMIT,
    )
    assert creation.sid is None and creation.rid == 3351305871
    assert creation.attributes[f"{XBOSH} version"] == "1.0"
    restart = parse_body(
        (
            b"<body rid='3351305873' xmlns='http://jabber.org/protocol/httpbind'"
            b" sid='6f2c-41' to='meet.test' xml:lang='en' xmpp:restart='true'"
            b" xmlns:xmpp='urn:xmpp:xbosh'/>"
        ),
        max_bytes=LIMIT,
    )
    assert restart.sid == "6f2c-41"
    assert restart.attributes[f"{XBOSH} restart"] == "true"
    assert "restart" not in restart.attributes
    stanzas = (
        "<iq type='set' id='_bind_auth_2' xmlns='jabber:client'>"
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
        "<presence xmlns='jabber:client' type='unavailable'/>"
    )
    raw = f"<body rid='10' sid='s1' type='terminate' {XMLNS}>{stanzas}</body>".encode()
    ending = parse_body(raw, max_bytes=LIMIT)
    assert ending.terminates and ending.sid == "s1"
    assert [c.name for c in ending.children] == ["jabber:client iq", "jabber:client presence"]
    assert b"".join(raw[c.start : c.end] for c in ending.children) == stanzas.encode()


def test_a_namespaced_attribute_is_not_the_sid() -> None:
    body = parse_body(
        f"<body xmlns:x='urn:x' x:sid='decoy' sid='real' rid='1' {XMLNS}/>".encode(),
        max_bytes=LIMIT,
    )
    assert body.sid == "real"
    assert body.attributes["urn:x sid"] == "decoy"
    only_namespaced = parse_body(
        f"<body xmlns:x='urn:x' x:sid='decoy' rid='1' {XMLNS}/>".encode(), max_bytes=LIMIT
    )
    assert only_namespaced.sid is None


def test_attribute_values_are_read_as_xml_defines_them() -> None:
    body = parse_body(
        f"<body sid='a&amp;b&#x41;' rid='1' type='&#116;erminate' {XMLNS}/>".encode(),
        max_bytes=LIMIT,
    )
    assert body.sid == "a&bA"
    assert body.terminates


@pytest.mark.parametrize("rid", ["", "-1", "1e3", " 1", "\u00b2", "\u0663", "1" * 17, "0x10"])
def test_a_rid_that_is_not_a_plain_number_is_not_one(rid: str) -> None:
    body = parse_body(f"<body rid='{rid}' {XMLNS}/>".encode(), max_bytes=LIMIT)
    assert body.rid is None


REFUSED = {
    "empty": "",
    "not xml": "sid=real rid=1",
    "truncated": f"<body sid='a' rid='1' {XMLNS}>",
    "no namespace": "<body sid='a' rid='1'/>",
    "another namespace": "<body sid='a' rid='1' xmlns='jabber:client'/>",
    "another root": f"<stream sid='a' rid='1' {XMLNS}/>",
    "two roots": f"<body rid='1' {XMLNS}/><body rid='2' {XMLNS}/>",
    "duplicate attribute": f"<body sid='a' sid='b' rid='1' {XMLNS}/>",
    "unbound prefix": f"<body x:sid='a' rid='1' {XMLNS}/>",
    "doctype": f"<!DOCTYPE body><body rid='1' {XMLNS}/>",
    "internal subset": (f"<!DOCTYPE body [<!ENTITY s 'real'>]><body sid='&s;' rid='1' {XMLNS}/>"),
    "billion laughs": (
        "<!DOCTYPE body [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>"
        f"<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;'>]><body rid='1' {XMLNS}>&c;</body>"
    ),
    "external entity": (
        f"<!DOCTYPE body [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><body rid='1' {XMLNS}>&e;</body>"
    ),
    "parameter entity": (
        f"<!DOCTYPE body [<!ENTITY % p SYSTEM 'http://127.0.0.1:1/x'> %p;]><body rid='1' {XMLNS}/>"
    ),
    "undeclared entity": f"<body rid='1' {XMLNS}>&nbsp;</body>",
    "comment": f"<body rid='1' {XMLNS}><!-- sid='x' --></body>",
    "comment before": f"<!-- x --><body rid='1' {XMLNS}/>",
    "processing instruction": f"<body rid='1' {XMLNS}><?php x?></body>",
    "text in the body": f"<body rid='1' {XMLNS}>sid='x'</body>",
    "junk after": f"<body rid='1' {XMLNS}/>x",
    "not utf-8": b"<body sid='\xff' rid='1' " + XMLNS.encode() + b"/>",
    "too deep": (f"<body rid='1' {XMLNS}>" + "<a>" * MAX_DEPTH + "</a>" * MAX_DEPTH + "</body>"),
    # expat reads these as UTF-16 whatever encoding it was given: a byte-order mark, or a NUL
    # beside the first `<`; the body's spans would then be of bytes prosody reads otherwise.
    "utf-16 with a byte-order mark": f"\ufeff<body rid='1' {XMLNS}/>".encode("utf-16-le"),
    "utf-16 big-endian": f"\ufeff<body rid='1' {XMLNS}/>".encode("utf-16-be"),
    "utf-16 without a mark": f"<body rid='1' {XMLNS}/>".encode("utf-16-le"),
    "a nul byte": f"<body rid='1' {XMLNS}>\x00</body>",
    "invalid utf-8 in a stanza": (
        f"<body rid='1' {XMLNS}><message xmlns='jabber:client'><body>".encode()
        + b"caf\xc3(</body></message></body>"
    ),
    "cut inside a character": (
        f"<body rid='1' {XMLNS}><message xmlns='jabber:client'><body>".encode()
        + "€".encode()[:2]
        + b"</body></message></body>"
    ),
}


# The stream error each earns (the wire guard counts and logs it as a WebSocket stream's end):
# what a DTD, comment or processing instruction starts is restricted-xml, a body past a bound a
# policy violation; everything else, the wrong root or text beside the stanzas too, is not a
# well-formed BOSH body.
RESTRICTED = {
    "doctype",
    "internal subset",
    "billion laughs",
    "external entity",
    "parameter entity",
    "comment",
    "comment before",
    "processing instruction",
}
OVER_A_BOUND = {"too deep"}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_malformed_or_unsafe_bodies_are_refused_with_their_condition(name: str) -> None:
    with pytest.raises(BodyRefused) as refused:
        parse(REFUSED[name])
    assert isinstance(refused.value, BoshBodyInvalid)
    expected = (
        "restricted-xml"
        if name in RESTRICTED
        else "policy-violation"
        if name in OVER_A_BOUND
        else "not-well-formed"
    )
    assert refused.value.condition == expected


def test_depth_up_to_the_bound_is_read() -> None:
    depth = MAX_DEPTH - 1
    body = parse_body(
        (f"<body rid='1' {XMLNS}>" + "<a>" * depth + "</a>" * depth + "</body>").encode(),
        max_bytes=LIMIT,
    )
    assert len(body.children) == 1


@pytest.mark.parametrize(
    "declaration", ["<?xml version='1.0'?>", "<?xml version='1.0' encoding='ISO-8859-1'?>"]
)
def test_an_xml_declaration_is_refused(declaration: str) -> None:
    # prosody honours a declared encoding, the gate reads UTF-8 only: the two could read the
    # same bytes differently, and no BOSH client sends one.
    raw = f"{declaration}<body sid='\u00e9' rid='1' {XMLNS}/>"
    with pytest.raises(BodyRefused) as refused:
        parse_body(raw.encode(), max_bytes=LIMIT)
    assert refused.value.condition == "restricted-xml"


def test_a_body_over_the_limit_is_not_parsed() -> None:
    raw = f"<body rid='1' {XMLNS}/>".encode()
    with pytest.raises(RequestTooLarge):
        parse_body(raw, max_bytes=len(raw) - 1)
    assert parse_body(raw, max_bytes=len(raw)).rid == 1


# Property tests: any spelling of the attributes, decoys everywhere, never a wrong sid.

NAME = st.sampled_from(["foo", "to", "wait", "hold", "route", "ver", "content", "sidx", "xsid"])
# Attribute text that looks like other attributes, in every quoting.
VALUE = st.text(
    alphabet=st.sampled_from(list("sidrtype=<>&'\" \t\n/bodyx01")) | st.characters(),
    max_size=30,
).filter(lambda v: all(_xml_char(c) for c in v))
DECOY = st.sampled_from(
    ["sid='x'", 'sid="x"', "sid=x", "<body sid='x'>", "' sid='x", '" sid="x', "rid='9'"]
)
SPACE = st.sampled_from(["", " ", "\t", "\n", "  \r\n "])
SEPARATOR = st.sampled_from([" ", "\t", "\n", "\r\n", "   "])
SID = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)


def _xml_char(c: str) -> bool:
    code = ord(c)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _quoted(value: str, quote: str) -> str:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;")
    # Whitespace other than a space is normalised by every XML parser; keep it as written.
    escaped = escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")
    escaped = escaped.replace(quote, "&apos;" if quote == "'" else "&quot;")
    return f"{quote}{escaped}{quote}"


QUOTE = st.sampled_from(["'", '"'])
CHILD_TEXT = st.sampled_from(["", "sid=z", "&lt;body sid=&apos;q&apos;&gt;"])


@st.composite
def child(draw: st.DrawFn) -> str:
    """A stanza carrying sids of its own, empty or with a child."""
    tag = draw(st.sampled_from(["iq", "message", "presence"]))
    head = f"<{tag} sid={_quoted(draw(DECOY), draw(QUOTE))} xmlns='jabber:client'"
    if draw(st.booleans()):
        return head + "/>"
    return f"{head}><x sid='y'>{draw(CHILD_TEXT)}</x></{tag}{draw(SPACE)}>"


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str], list[str]]:
    """A body with a real sid, rid and type among decoy attributes, namespaced look-alikes and
    children; returns it with the values expected and the children as written."""
    expected = {
        "sid": draw(SID),
        "rid": str(draw(st.integers(min_value=0, max_value=2**53 - 1))),
        "type": draw(st.sampled_from(["terminate", "x", "terminated", ""])),
    }
    names = draw(st.lists(NAME, unique=True, max_size=5))
    attributes = [*expected.items(), *((name, draw(VALUE | DECOY)) for name in names)]
    namespaced = [(f"x:{n}", draw(DECOY)) for n in draw(st.sets(st.sampled_from(["sid", "rid"])))]
    attributes += namespaced
    attributes.append(("xmlns", HTTPBIND))
    if namespaced:
        attributes.append(("xmlns:x", "urn:example:decoy"))
    spelled = ""
    for name, value in draw(st.permutations(attributes)):
        equals = draw(SPACE) + "=" + draw(SPACE)
        spelled += f"{draw(SEPARATOR)}{name}{equals}{_quoted(value, draw(QUOTE))}"
    children = draw(st.lists(child(), max_size=3))
    inner = "".join(draw(SPACE) + stanza for stanza in children) + draw(SPACE)
    raw = f"<body{spelled}{draw(SPACE)}>{inner}</body>".encode()
    return raw, expected, children


@given(bodies())
def test_the_sid_read_is_always_the_real_one(case: tuple[bytes, dict[str, str], list[str]]) -> None:
    raw, expected, children = case
    body = parse_body(raw, max_bytes=LIMIT)
    assert body.sid == expected["sid"]
    assert body.rid == int(expected["rid"])
    assert body.terminates == (expected["type"] == "terminate")
    assert [raw[c.start : c.end].decode() for c in body.children] == children


@given(bodies(), st.data())
def test_a_cut_body_is_refused(
    case: tuple[bytes, dict[str, str], list[str]], data: st.DataObject
) -> None:
    raw = case[0]
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(BodyRefused):
        parse_body(raw[:cut], max_bytes=LIMIT)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_nothing_but_the_refusal(raw: bytes) -> None:
    # Anything else escaping (a decoding error, a parser's own exception) would be a 500; a
    # BoshBodyInvalid without its condition would end no session under the wire guard.
    with pytest.raises(BodyRefused):
        parse_body(raw, max_bytes=LIMIT)


def test_a_body_of_too_many_elements_is_refused() -> None:
    # Each element is a callback: tens of thousands of empty ones cost CPU for nothing.
    inside = "<x/>" * MAX_ELEMENTS
    with pytest.raises(BodyRefused) as refused:
        parse_body(f"<body rid='1' {XMLNS}>{inside}</body>".encode(), max_bytes=LIMIT)
    assert refused.value.condition == "policy-violation"
    fits = "<x/>" * (MAX_ELEMENTS - 1)
    assert parse_body(f"<body rid='1' {XMLNS}>{fits}</body>".encode(), max_bytes=LIMIT).rid == 1
