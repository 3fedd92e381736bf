"""The stanza reader: one element's name, attributes and children's exact byte spans, read as
prosody's parser reads it, and the stream error for anything a client may not send."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.stanzas import (
    CLIENT,
    HTTPBIND,
    MAX_DEPTH,
    MAX_ELEMENTS,
    NOT_WELL_FORMED,
    POLICY_VIOLATION,
    RESTRICTED_XML,
    Malformed,
    Stanza,
    parse_stanza,
)

LIMIT = 64 * 1024
NICK = "http://jabber.org/protocol/nick"


def read(data: str | bytes, limit: int = LIMIT) -> Stanza:
    stanza = parse_stanza(data, max_bytes=limit)
    assert isinstance(stanza, Stanza), stanza
    return stanza


def condition(data: str | bytes, limit: int = LIMIT) -> str:
    refused = parse_stanza(data, max_bytes=limit)
    assert isinstance(refused, Malformed), refused
    return refused.condition


def test_a_join_presence_is_read_with_its_children_spans() -> None:
    text = (
        "<presence to='room@conference.meet.test/a1b2c3d4' xmlns='jabber:client'>"
        "<x xmlns='http://jabber.org/protocol/muc'/>"
        "<stats-id>Rosalind-Xb2</stats-id>"
        "<c hash='sha-1' node='https://jitsi.org/jitsi-meet' ver='cvjWXufsg4xT62Ec2mlATkFZ9lk=' "
        "xmlns='http://jabber.org/protocol/caps'/>"
        f"<nick xmlns='{NICK}'>Zoë &amp; co</nick>"
        "<audiomuted>true</audiomuted></presence>"
    )
    stanza = read(text)
    assert (stanza.namespace, stanza.name, stanza.qname) == (CLIENT, "presence", b"presence")
    assert stanza.attributes == {"to": "room@conference.meet.test/a1b2c3d4"}
    names = [(child.namespace, child.name) for child in stanza.children]
    assert names == [
        ("http://jabber.org/protocol/muc", "x"),
        (CLIENT, "stats-id"),
        ("http://jabber.org/protocol/caps", "c"),
        (NICK, "nick"),
        (CLIENT, "audiomuted"),
    ]
    raw = text.encode()
    assert stanza.raw == raw
    spans = [raw[child.start : child.end] for child in stanza.children]
    assert b"".join(spans) == raw[raw.index(b"<x ") : raw.rindex(b"</presence>")]
    assert spans[3] == f"<nick xmlns='{NICK}'>Zoë &amp; co</nick>".encode()
    assert stanza.close == raw.rindex(b"</presence>")
    assert stanza.body_bytes is None


def test_an_empty_element_and_a_decoy_in_an_attribute_value() -> None:
    stanza = read("<presence to='a/>b' xmlns='jabber:client'/>")
    assert stanza.close is None and stanza.children == ()
    assert stanza.raw[stanza.empty_end - 2 : stanza.empty_end] == b"/>"
    nested = read("<iq><x a='/>'/><y>/></y><z></z></iq>")
    assert [nested.raw[c.start : c.end] for c in nested.children] == [
        b"<x a='/>'/>",
        b"<y>/></y>",
        b"<z></z>",
    ]


def test_without_a_namespace_or_in_httpbind_it_is_jabber_client() -> None:
    bare = read("<message type='chat'><body>hi</body></message>")
    assert bare.namespace == CLIENT and bare.children[0].namespace == CLIENT
    assert bare.body_bytes == 2
    bosh = read(f"<message xmlns='{HTTPBIND}'><body>hé</body></message>".encode())
    assert bosh.namespace == CLIENT and bosh.children[0].namespace == CLIENT
    assert bosh.body_bytes == 3
    other = read("<message xmlns='jabber:server'><body>x</body></message>")
    assert other.namespace == "jabber:server" and other.body_bytes is None
    presence = read("<presence><body>x</body></presence>")
    assert presence.body_bytes is None and presence.text_bytes == 1


def test_a_body_or_subject_in_any_namespace_counts_all_its_text() -> None:
    # Jitsi finds a message's body by tag name (`:scope>body`) and shows its textContent.
    foreign = read("<message><body xmlns='urn:x'>spam</body></message>")
    assert foreign.body_bytes == 4
    prefixed = read("<message xmlns:p='urn:p'><p:body>ab</p:body></message>")
    assert prefixed.body_bytes == 2
    nested = read("<message><body>a<b>bc<i>dé</i></b>f</body><x>not chat</x></message>")
    assert nested.body_bytes == 1 + 2 + 3 + 1
    assert nested.text_bytes == nested.body_bytes + len("not chat")
    subject = read("<message><subject xmlns='urn:y'>Title</subject><body>x</body></message>")
    assert subject.body_bytes == 6
    deeper = read("<message><x><body>deep</body></x></message>")
    assert deeper.body_bytes is None and deeper.text_bytes == 4


def test_json_message_text_and_the_children_attributes() -> None:
    stanza = read(
        "<message><json-message xmlns='http://jitsi.org/jitmeet'>{&quot;a&quot;:<i>1</i>}"
        "</json-message><json-message xmlns='urn:x'>,2</json-message>"
        "<conference room='r@c' xmlns:p='urn:p' p:x='y'/></message>"
    )
    assert stanza.json_message == '{"a":1},2'
    assert stanza.children[2].attributes == {"room": "r@c", "urn:p x": "y"}
    assert read("<message><body>x</body></message>").json_message is None
    assert read("<iq><json-message>x</json-message></iq>").json_message is None


def test_elements_are_capped_where_they_start() -> None:
    most = "<presence>" + "<c/>" * (MAX_ELEMENTS - 1) + "</presence>"
    assert len(read(most).children) == MAX_ELEMENTS - 1
    one_more = "<presence>" + "<c/>" * MAX_ELEMENTS + "</presence>"
    assert condition(one_more) == POLICY_VIOLATION
    nested = "<iq>" + "<a><b/><c/></a>" * (MAX_ELEMENTS // 3 + 1) + "</iq>"
    assert condition(nested) == POLICY_VIOLATION
    flood = "<r xmlns='urn:xmpp:sm:3'>" + "<x/>" * 60_000 + "</r>"
    assert condition(flood, limit=len(flood)) == POLICY_VIOLATION


def test_body_text_counts_utf8_bytes_after_entities_and_cdata() -> None:
    stanza = read("<message><body>&lt;€<![CDATA[ab]]></body><body>x</body></message>")
    assert stanza.body_bytes == 1 + 3 + 2 + 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            "<message><body>&lol2;</body></message>",
            RESTRICTED_XML,
            id="billion-laughs",
        ),
        pytest.param(
            '<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><message>&xxe;</message>',
            RESTRICTED_XML,
            id="external-entity",
        ),
        pytest.param("<!DOCTYPE message><message/>", RESTRICTED_XML, id="doctype"),
        pytest.param("<message><!-- hello --></message>", RESTRICTED_XML, id="comment"),
        pytest.param("<message><?php x?></message>", RESTRICTED_XML, id="pi"),
        pytest.param("<?xml version='1.0'?><message/>", RESTRICTED_XML, id="xml-declaration"),
        pytest.param("<message>&undeclared;</message>", NOT_WELL_FORMED, id="undeclared-entity"),
        pytest.param("<a>" * 1000 + "</a>" * 1000, POLICY_VIOLATION, id="depth-1000"),
        pytest.param("<message><body>hi</body>", NOT_WELL_FORMED, id="truncated"),
        pytest.param("<message/><message/>", NOT_WELL_FORMED, id="two-top-elements"),
        pytest.param("hello<message/>", NOT_WELL_FORMED, id="text-before"),
        pytest.param("<message/>hello", NOT_WELL_FORMED, id="text-after"),
        pytest.param("", NOT_WELL_FORMED, id="empty"),
        pytest.param("   ", NOT_WELL_FORMED, id="whitespace"),
        pytest.param("<x:message/>", NOT_WELL_FORMED, id="unbound-prefix"),
        pytest.param("<message a='1' a='2'/>", NOT_WELL_FORMED, id="duplicate-attribute"),
        pytest.param(b"<message><body>\xff\xfe</body></message>", NOT_WELL_FORMED, id="bad-utf8"),
        pytest.param(b"<message><body>\xe2\x82</body></message>", NOT_WELL_FORMED, id="split-utf8"),
        pytest.param(b"<message><body>\xc0\xaf</body></message>", NOT_WELL_FORMED, id="overlong"),
        pytest.param("<message>\ud800</message>", NOT_WELL_FORMED, id="lone-surrogate"),
        pytest.param("<message>\x01</message>", NOT_WELL_FORMED, id="control-character"),
    ],
)
def test_what_a_client_may_not_send(data: str | bytes, expected: str) -> None:
    assert condition(data) == expected


def test_depth_is_capped_where_the_limit_says() -> None:
    deep = "<a>" * MAX_DEPTH + "</a>" * MAX_DEPTH
    assert read(deep).name == "a"
    deeper = "<a>" * (MAX_DEPTH + 1) + "</a>" * (MAX_DEPTH + 1)
    assert condition(deeper) == POLICY_VIOLATION


def test_size_is_capped_in_utf8_bytes() -> None:
    text = "<message><body>" + "é" * 100 + "</body></message>"
    size = len(text.encode())
    assert read(text, limit=size).body_bytes == 200
    assert condition(text, limit=size - 1) == POLICY_VIOLATION
    assert condition(text.encode(), limit=size - 1) == POLICY_VIOLATION
    assert condition("x" * 10_000, limit=100) == POLICY_VIOLATION


def test_a_prefixed_top_element_keeps_its_written_name() -> None:
    stanza = read("<c:presence xmlns:c='jabber:client'/>")
    assert (stanza.namespace, stanza.name, stanza.qname) == (CLIENT, "presence", b"c:presence")


def test_the_top_is_found_after_a_byte_order_mark() -> None:
    # The name was read from the first byte on: an empty presence after a BOM was rewritten
    # with a mangled end tag and failed to decode.
    stanza = read("\ufeff<presence to='r@c/x'/>")
    assert (stanza.start, stanza.qname) == (3, b"presence")
    assert stanza.raw[stanza.empty_end - 2 : stanza.empty_end] == b"/>"


NAMES = st.sampled_from(["a", "b", "nick", "body", "subject", "x"])
# The default namespace, another one, and a prefix bound on the child itself.
NAMESPACES = st.sampled_from(["", " xmlns='urn:x'", " xmlns='jabber:client'", "p"])
# Markup characters, multi-byte ones and a decoy `/>`.
TEXTS = st.text(st.sampled_from(list("ab <>&'\"/=é€\U0001f600\n")), max_size=8)


@st.composite
def children(draw: st.DrawFn) -> tuple[str, int | None]:
    """A child, and the UTF-8 bytes of its text if it is a body or a subject."""
    name = draw(NAMES)
    namespace = draw(NAMESPACES)
    if namespace == "p":
        name, namespace = f"p:{name}", " xmlns:p='urn:p'"
    value = draw(TEXTS)
    text = draw(TEXTS)
    inner = draw(TEXTS)
    chat = name.rpartition(":")[2] in ("body", "subject")
    if draw(st.booleans()):
        return f"<{name}{namespace} v={quoteattr(value)}/>", 0 if chat else None
    element = (
        f"<{name}{namespace} v={quoteattr(value)}>{escape(text)}<i>{escape(inner)}</i><i/></{name}>"
    )
    return element, len((text + inner).encode()) if chat else None


@given(st.lists(children(), max_size=6), st.sampled_from(["", " ", "\n"]))
def test_children_spans_cover_each_child_exactly(
    drawn: list[tuple[str, int | None]], gap: str
) -> None:
    parts = [part for part, _ in drawn]
    text = "<message xmlns='jabber:client'>" + gap.join(parts) + "</message>"
    stanza = read(text)
    spans = [stanza.raw[c.start : c.end].decode() for c in stanza.children]
    assert spans == parts
    sizes = [size for _, size in drawn if size is not None]
    assert stanza.body_bytes == (sum(sizes) if sizes else None)
