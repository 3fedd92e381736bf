"""The wire guard's decisions: what a client may send on the signalling wire, where to, how often
and how big, with the verified name set in what others see; Jitsi's own stanzas (shapes from
lib-jitsi-meet's source) pass as sent."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy import stanzas, wire_guard
from gateway.proxy.wire_guard import (
    QUIET,
    TOO_FAST,
    TOO_LONG,
    Addresses,
    Budget,
    ChatRules,
    EndStream,
    Forward,
    Refuse,
    Speaker,
    Verdict,
    WireBudgets,
    WireGuard,
)
from tests.fixtures.guard_stanzas import (
    BREAKOUT,
    DOMAIN,
    FOCUS,
    JITSI,
    JOIN,
    LOBBY,
    MUC,
    NAME,
    NICK,
    ROOM,
    assert_same_meaning,
    element,
    groupchat,
    private,
    stanza,
)
from tests.fixtures.jitsi_stanzas import CORPUS, JitsiStanza


@pytest.fixture(autouse=True, scope="module", params=["compiled", "python"])
def reader(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of this module twice: with the compiled stanza reader the test command builds,
    and with the Python reading an install without a compiler has."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            patch.setattr(wire_guard, "read_or_condition", stanzas.read_text_in_python)
        yield str(request.param)


STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAMS = "http://etherx.jabber.org/streams"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
ADDRESSES = Addresses(
    domain=DOMAIN,
    muc_domains=frozenset({MUC}),
    lobby_domains=frozenset({LOBBY}),
    breakout_domains=frozenset({BREAKOUT}),
    components=frozenset(
        {
            FOCUS,
            f"speakerstats.{DOMAIN}",
            f"polls.{DOMAIN}",
            f"endconference.{DOMAIN}",
            f"avmoderation.{DOMAIN}",
            f"metadata.{DOMAIN}",
        }
    ),
)
PLENTY = Budget(rate=1000.0, burst=1000)
GENEROUS = WireBudgets(presence=PLENTY, iq=PLENTY, signal=PLENTY)
OPEN = ChatRules(
    quiet=False, private_to_hosts_when_quiet=True, chat=PLENTY, chat_max_bytes=2048, strikes=0
)
HOST_OCCUPANT = f"{ROOM}/h0st1d"


def guard(
    rules: ChatRules = OPEN,
    budgets: WireBudgets = GENEROUS,
    *,
    host: bool = False,
    name: str = NAME,
    hosts: frozenset[str] = frozenset({HOST_OCCUPANT}),
) -> WireGuard:
    speaker = Speaker(admission_id="adm-1", room="room", name=name, host=host)
    return WireGuard(speaker, ADDRESSES, budgets, lambda: rules, lambda: hosts)


def forwarded(verdict: Verdict) -> str:
    assert isinstance(verdict, Forward), verdict
    assert isinstance(verdict.data, bytes)
    return verdict.data.decode()


def refused(verdict: Verdict, reason: str) -> Refuse:
    assert isinstance(verdict, Refuse), verdict
    assert verdict.reason == reason
    stand_in = element(verdict.stand_in)
    assert stand_in.tag == "{jabber:client}iq" and stand_in.get("type") == "result"
    assert (stand_in.get("id") or "").startswith("meetgate-dropped-")
    return verdict


def reply_of(verdict: Refuse) -> ET.Element:
    assert verdict.reply is not None
    return element(verdict.reply)


def error_text(reply: ET.Element) -> str | None:
    text = reply.find(f"{{jabber:client}}error/{{{STANZAS}}}text")
    return None if text is None else text.text


CORPUS_ADDRESSES = Addresses(
    domain=DOMAIN,
    muc_domains=ADDRESSES.muc_domains,
    lobby_domains=ADDRESSES.lobby_domains,
    breakout_domains=ADDRESSES.breakout_domains,
    components=ADDRESSES.components | {f"filesharing.{DOMAIN}", f"audiotranslation.{DOMAIN}"},
)


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_the_jitsi_corpus_passes_byte_identical(entry: JitsiStanza) -> None:
    """tests/fixtures/jitsi_stanzas.py's corpus, with the name it carries as the verified one;
    an e-mail (the lobby's knocking presence) is the one thing the guard takes out."""
    text = entry.xml()
    nick = re.search(r"<nick xmlns='http://jabber.org/protocol/nick'>([^<]*)</nick>", text)
    name = html.unescape(nick.group(1)) if nick else NAME
    speaker = Speaker(admission_id="adm-1", room="room", name=name, host=entry.moderator)
    session = WireGuard(speaker, CORPUS_ADDRESSES, GENEROUS, lambda: OPEN, frozenset)
    expected = re.sub(r"<email>[^<]*</email>", "", text)
    assert forwarded(session.inspect(text, 0.0)) == expected


@pytest.mark.parametrize("name", JITSI)
def test_jitsi_stanzas_pass_byte_identical(name: str) -> None:
    text = JITSI[name]
    assert forwarded(guard().inspect(text, 0.0)) == text
    # The same element as a BOSH body's child: its exact bytes, in the httpbind namespace.
    bosh = text.replace("xmlns='jabber:client'", "xmlns='http://jabber.org/protocol/httpbind'")
    assert forwarded(guard().inspect(bosh.encode(), 0.0)) == bosh


def test_what_passes_is_the_utf8_of_what_was_sent() -> None:
    """The relays send a forwarded stanza's bytes as they are: the UTF-8 of the text the client
    sent (a WebSocket message) or the body's own bytes (BOSH), outside ASCII too."""
    chat = groupchat("Grüße aus 東京 🎉")
    for sent in (chat, chat.encode()):
        verdict = guard().inspect(sent, 0.0)
        assert isinstance(verdict, Forward) and verdict.data == chat.encode()
    forged = JOIN.replace(f">{NAME}</nick>", ">Zoë 👑</nick>")
    verdict = guard(name="Åsa Øster 東").inspect(forged, 0.0)
    assert isinstance(verdict, Forward)
    assert verdict.data == JOIN.replace(f">{NAME}</nick>", ">Åsa Øster 東</nick>").encode()


# -- what is not a stanza a client sends --


def stream_error(verdict: Verdict, condition: str) -> None:
    assert isinstance(verdict, EndStream), verdict
    assert verdict.reason == condition
    assert verdict.error == (
        "<error xmlns='http://etherx.jabber.org/streams'>"
        f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>"
    )


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (
            '<!DOCTYPE m [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><message>&b;</message>',
            "restricted-xml",
        ),
        (
            '<!DOCTYPE m [<!ENTITY x SYSTEM "http://evil.test/">]><message>&x;</message>',
            "restricted-xml",
        ),
        ("<message><!--x--></message>", "restricted-xml"),
        ("<message><?x y?></message>", "restricted-xml"),
        ("<a>" * 1000 + "</a>" * 1000, "policy-violation"),
        ("<message><body>" + "x" * 300_000 + "</body></message>", "policy-violation"),
        (b"<message><body>\xff</body></message>", "not-well-formed"),
        ("<message><body>hi", "not-well-formed"),
        ("<message/><message/>", "not-well-formed"),
        ("hi<message/>", "not-well-formed"),
        ("<foo xmlns='jabber:client'/>", "unsupported-stanza-type"),
        ("<message xmlns='jabber:server'/>", "unsupported-stanza-type"),
        ("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", "unsupported-stanza-type"),
        ("<enabled xmlns='urn:xmpp:sm:3'/>", "unsupported-stanza-type"),
        (
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>",
            "unsupported-stanza-type",
        ),
        (
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='other.test' version='1.0'/>",
            "host-unknown",
        ),
        ("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0'/>", "host-unknown"),
    ],
)
def test_input_that_is_not_a_client_element_ends_the_session(
    data: str | bytes, condition: str
) -> None:
    session = guard()
    stream_error(session.inspect(data, 0.0), condition)
    assert session.strikes == 0


SM = "urn:xmpp:sm:3"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


@pytest.mark.parametrize(
    "data",
    [
        f"<r xmlns='{SM}'>" + "<x/>" * 60_000 + "</r>",
        f"<presence xmlns='jabber:client' to='{ROOM}/a1'>" + "<c/>" * 60_000 + "</presence>",
        f"<r xmlns='{SM}'><x/></r>",
        f"<a xmlns='{SM}' h='1'><x/></a>",
        f"<enable xmlns='{SM}' resume='true'><x/></enable>",
        f"<resume xmlns='{SM}' h='1' previd='p'><x/></resume>",
        f"<open xmlns='{FRAMING}' to='{DOMAIN}' version='1.0'><x/></open>",
        f"<close xmlns='{FRAMING}'><x/></close>",
        f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGEAYg==<x/></auth>",
        f"<response xmlns='{SASL}'><x/></response>",
        f"<abort xmlns='{SASL}'><x/></abort>",
        f"<r xmlns='{SM}'>text</r>",
        f"<close xmlns='{FRAMING}'>text</close>",
    ],
    ids=lambda data: data[:30],
)
def test_elements_flooded_with_children_end_the_session(data: str) -> None:
    session = guard()
    stream_error(session.inspect(data, 0.0), "policy-violation")
    assert session.strikes == 0


def test_control_elements_have_a_budget_of_their_own() -> None:
    budgets = WireBudgets(PLENTY, PLENTY, PLENTY, control=Budget(rate=1.0, burst=3))
    session = guard(budgets=budgets)
    for _ in range(3):
        forwarded(session.inspect(JITSI["sm-r"], 0.0))
    stream_error(session.inspect(JITSI["sm-r"], 0.0), "policy-violation")
    forwarded(session.inspect(JITSI["sm-r"], 1.0))
    # Stanzas do not draw on it.
    forwarded(session.inspect(JITSI["ping"], 1.0))
    assert GENEROUS.control == Budget(50.0, 200)


def refused_with_replies(session: WireGuard, count: int) -> None:
    for _ in range(count):
        assert refused(session.inspect(groupchat(), 0.0), "quiet").reply is not None


def test_acknowledgements_leave_out_the_gates_own_replies() -> None:
    session = guard(QUIET_RULES)
    refused_with_replies(session, 3)
    # Refusals without a reply are not counted by the client.
    refused(session.inspect(JOIN.replace(ROOM, "other@conference.meet.test"), 0.0), "address")
    assert forwarded(session.inspect(f"<a xmlns='{SM}' h='10'/>", 0.0)) == (
        f"<a xmlns='{SM}' h='7'/>"
    )
    # Other attributes (and their quoting) stay as written; an entity-written h is read as such.
    decoy = f"<a v=\"h='3'\" xmlns='{SM}'  h = \"&#49;2\" x='1'/>"
    assert forwarded(session.inspect(decoy, 0.0)) == (
        f"<a v=\"h='3'\" xmlns='{SM}'  h = \"9\" x='1'/>"
    )
    # Never lower than an h already passed on.
    assert forwarded(session.inspect(f"<a xmlns='{SM}' h='11'/>", 0.0)) == (
        f"<a xmlns='{SM}' h='9'/>"
    )
    refused_with_replies(session, 1)
    assert forwarded(session.inspect(f"<a xmlns='{SM}' h='14'/>", 0.0)) == (
        f"<a xmlns='{SM}' h='10'/>"
    )


def test_a_resumption_after_a_reconnection_is_rewritten_too() -> None:
    session = guard(QUIET_RULES)
    forwarded(session.inspect(JITSI["sm-enable"], 0.0))
    refused_with_replies(session, 2)
    resume = f"<resume xmlns='{SM}' previd='a1-b2' h='20'/>"
    assert forwarded(session.inspect(resume, 0.0)) == resume.replace("'20'", "'18'")
    # A new stream-management session counts from zero again.
    forwarded(session.inspect(JITSI["sm-enable"], 0.0))
    assert forwarded(session.inspect(f"<a xmlns='{SM}' h='1'/>", 0.0)) == (
        f"<a xmlns='{SM}' h='1'/>"
    )


@pytest.mark.parametrize("h", ["-1", "", "x", "1.5", "4294967296", "\u0661", None])
def test_an_acknowledgement_without_a_count_ends_the_session(h: str | None) -> None:
    attribute = "" if h is None else f" h='{h}'"
    stream_error(guard().inspect(f"<a xmlns='{SM}'{attribute}/>", 0.0), "policy-violation")
    resume = f"<resume xmlns='{SM}' previd='p'{attribute}/>"
    stream_error(guard().inspect(resume, 0.0), "policy-violation")
    largest = f"<a xmlns='{SM}' h='4294967295'/>"
    assert forwarded(guard().inspect(largest, 0.0)) == largest


def conference(room: str | None) -> str:
    named = "" if room is None else f" room='{room}'"
    return (
        f"<iq to='{FOCUS}' type='set' id='c1' xmlns='jabber:client'>"
        f"<conference machine-uid='0b7a'{named} xmlns='http://jitsi.org/protocol/focus'>"
        "<property name='visitors-version' value='1'/></conference></iq>"
    )


@pytest.mark.parametrize("room", [ROOM, "ROOM@Conference.MEET.test"])
def test_a_conference_request_for_the_own_room_passes(room: str) -> None:
    text = conference(room)
    assert forwarded(guard().inspect(text, 0.0)) == text


@pytest.mark.parametrize(
    "room",
    [
        f"other@{MUC}",
        f"room@{LOBBY}",
        f"room@{BREAKOUT}",
        f"{ROOM}/nick",
        "room@conference.other.test",
        MUC,
        "",
        None,
    ],
)
def test_a_conference_request_for_another_room_is_refused(room: str | None) -> None:
    session = guard()
    reply = reply_of(refused(session.inspect(conference(room), 0.0), "address"))
    assert reply.get("type") == "error" and reply.get("id") == "c1"
    assert reply.get("from") == FOCUS
    # Whatever it is sent to.
    elsewhere = conference(room).replace(f"to='{FOCUS}'", f"to='{ROOM}/focus'")
    refused(session.inspect(elsewhere, 0.0), "address")


def test_open_to_the_domain_is_compared_case_insensitively() -> None:
    text = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='Meet.TEST' version='1.0'/>"
    assert forwarded(guard().inspect(text, 0.0)) == text


# -- addresses --


@pytest.mark.parametrize(
    "to",
    [
        DOMAIN,
        "MEET.test",
        ROOM,
        "ROOM@Conference.Meet.Test/anyone",
        f"{ROOM}/a/b@c",
        f"room@{LOBBY}",
        f"room@{LOBBY}/x",
        f"any-random-name@{BREAKOUT}",
        f"any-random-name@{BREAKOUT}/x",
        BREAKOUT,
        FOCUS,
        f"Speakerstats.{DOMAIN}",
    ],
)
def test_allowed_addresses(to: str) -> None:
    text = f"<iq to='{to}' type='get' id='q' xmlns='jabber:client'><query xmlns='x'/></iq>"
    assert forwarded(guard().inspect(text, 0.0)) == text


@pytest.mark.parametrize(
    "to",
    [
        "other.test",
        f"evil.{DOMAIN}",
        f"other@{MUC}",
        f"other@{MUC}/x",
        f"other@{LOBBY}/x",
        "room@conference.other.test",
        f"someone@{DOMAIN}",
        f"someone@{DOMAIN}/res",
        f"{DOMAIN}/res",
        f"{FOCUS}/res",
        f"node@{FOCUS}",
        f"{MUC}",
        "@meet.test",
        "room@",
        "room@conference.meet.test/",
        "a@b@conference.meet.test",
        "ro om@conference.meet.test",
        "room@conférence.meet.test",
        "",
    ],
)
def test_other_addresses_are_refused(to: str) -> None:
    session = guard()
    iq = f"<iq to='{to}' type='get' id='q' xmlns='jabber:client'><query xmlns='x'/></iq>"
    reply = reply_of(refused(session.inspect(iq, 0.0), "address"))
    assert reply.tag == "{jabber:client}iq" and reply.get("type") == "error"
    assert reply.get("id") == "q"
    error = reply.find("{jabber:client}error")
    assert error is not None and error.get("type") == "cancel"
    assert error.find(f"{{{STANZAS}}}service-unavailable") is not None
    message = f"<message to='{to}' type='chat' xmlns='jabber:client'><body>x</body></message>"
    assert reply_of(refused(session.inspect(message, 0.0), "address")).get("type") == "error"
    presence = f"<presence to='{to}' xmlns='jabber:client'/>"
    assert refused(session.inspect(presence, 0.0), "address").reply is None
    assert session.strikes == 3


def test_a_room_name_outside_ascii_must_match_exactly() -> None:
    speaker = Speaker(admission_id="adm-1", room="café", name=NAME, host=False)
    session = WireGuard(speaker, ADDRESSES, GENEROUS, lambda: OPEN, lambda: frozenset())
    exact = f"<presence to='café@{MUC}/a1' type='unavailable' xmlns='jabber:client'/>"
    assert forwarded(session.inspect(exact, 0.0)) == exact
    refused(session.inspect(exact.replace("café", "CAFÉ"), 0.0), "address")
    # U+212A KELVIN SIGN lower-cases to an ASCII k: never taken for one.
    kelvin = Speaker(admission_id="adm-2", room="kiosk", name=NAME, host=False)
    other = WireGuard(kelvin, ADDRESSES, GENEROUS, lambda: OPEN, lambda: frozenset())
    lookalike = f"<presence to='\u212aiosk@{MUC}/a1' xmlns='jabber:client'/>"
    refused(other.inspect(lookalike, 0.0), "address")


def presence_to(occupant: str, kind: str | None = None) -> str:
    typed = "" if kind is None else f" type='{kind}'"
    return f"<presence to='{occupant}'{typed} id='n1' xmlns='jabber:client'/>"


@pytest.mark.parametrize(
    "room",
    [ROOM, f"room@{LOBBY}", f"6b1a2cf4-1d3e-4a55-9a7e-0c9a1f2b3c4d@{BREAKOUT}"],
    ids=["meeting", "lobby", "breakout"],
)
def test_a_joined_room_keeps_the_resource_the_session_joined_as(room: str) -> None:
    session = guard()
    forwarded(session.inspect(presence_to(f"{room}/abcd1234"), 0.0))
    forwarded(session.inspect(presence_to(f"{room}/abcd1234"), 0.0))
    # A nick change (XEP-0045 §7.6) to a host's name: dropped, answered as the MUC would.
    for nick in ("Hilde Host", "ABCD1234", "abcd1234 ", "abcd12345"):
        verdict = refused(session.inspect(presence_to(f"{room}/{nick}"), 0.0), "address")
        reply = reply_of(verdict)
        assert reply.tag == "{jabber:client}presence" and reply.get("type") == "error"
        assert reply.get("from") == f"{room}/{nick}" and reply.get("id") == "n1"
        error = reply.find("{jabber:client}error")
        assert error is not None and error.get("type") == "cancel"
        assert error.find(f"{{{STANZAS}}}not-acceptable") is not None
    assert session.strikes == 4
    forwarded(session.inspect(presence_to(f"{room}/abcd1234"), 0.0))


def test_a_breakout_room_spelled_another_way_is_the_same_room() -> None:
    session = guard()
    forwarded(session.inspect(presence_to(f"abc-1@{BREAKOUT}/abcd1234"), 0.0))
    # Fullwidth letters: prosody's nodeprep reads them as `abc-1`.
    refused(session.inspect(presence_to(f"\uff41\uff42\uff43-1@{BREAKOUT}/Hilde"), 0.0), "address")


def test_leaving_frees_the_room_and_jitsis_own_rejoin_passes() -> None:
    session = guard()
    forwarded(session.inspect(presence_to(f"{ROOM}/alice"), 0.0))
    # Leaving as another occupant frees nothing.
    forwarded(session.inspect(presence_to(f"{ROOM}/Hilde Host", "unavailable"), 0.0))
    refused(session.inspect(presence_to(f"{ROOM}/Hilde Host"), 0.0), "address")
    # Other types are prosody's to bounce; they change nothing.
    forwarded(session.inspect(presence_to(f"{ROOM}/Hilde Host", "probe"), 0.0))
    # Jitsi joins again in its own shape without having left (a reload, a lobby destroyed):
    # that resource is then the one kept.
    forwarded(session.inspect(presence_to(f"{ROOM}/0f1e2d3c"), 0.0))
    refused(session.inspect(presence_to(f"{ROOM}/alice"), 0.0), "address")
    forwarded(session.inspect(presence_to(f"{ROOM}/0f1e2d3c", "unavailable"), 0.0))
    # Left: the next join is a new occupant, whatever its resource.
    forwarded(session.inspect(presence_to(f"{ROOM}/bob"), 0.0))
    refused(session.inspect(presence_to(f"{ROOM}/alice"), 0.0), "address")
    assert session.strikes == 3


def test_a_new_connection_is_a_new_session_unless_it_resumes() -> None:
    session = guard()
    forwarded(session.inspect(presence_to(f"{ROOM}/alice"), 0.0))
    # A second tab, or a reload: the relay's new connection binds a session of its own.
    session.connected()
    forwarded(session.inspect(presence_to(f"{ROOM}/alice2"), 0.0))
    refused(session.inspect(presence_to(f"{ROOM}/Hilde Host"), 0.0), "address")
    # A third connection resumes an earlier session (XEP-0198): its rooms are kept.
    session.connected()
    resume = "<resume xmlns='urn:xmpp:sm:3' h='0' previd='s1'/>"
    forwarded(session.inspect(resume, 0.0))
    refused(session.inspect(presence_to(f"{ROOM}/Hilde Host"), 0.0), "address")
    forwarded(session.inspect(presence_to(f"{ROOM}/alice2"), 0.0))
    # The client's own word starts nothing: a second stream header, SASL or bind.
    for text in (
        f"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{DOMAIN}' version='1.0'/>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>",
        "<iq type='set' id='b1' xmlns='jabber:client'>"
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    ):
        forwarded(session.inspect(text, 0.0))
    refused(session.inspect(presence_to(f"{ROOM}/Hilde Host"), 0.0), "address")


def test_a_session_is_in_a_bounded_number_of_rooms() -> None:
    session = guard()
    rooms = [f"room-{n}@{BREAKOUT}" for n in range(33)]
    for room in rooms[:32]:
        forwarded(session.inspect(presence_to(f"{room}/abcd1234"), 0.0))
    refused(session.inspect(presence_to(f"{rooms[32]}/abcd1234"), 0.0), "address")
    forwarded(session.inspect(presence_to(f"{rooms[0]}/abcd1234", "unavailable"), 0.0))
    forwarded(session.inspect(presence_to(f"{rooms[32]}/abcd1234"), 0.0))


def test_answers_and_errors_are_never_answered() -> None:
    session = guard()
    for kind in ("result", "error"):
        iq = f"<iq to='x@other.test' type='{kind}' id='q' xmlns='jabber:client'/>"
        assert refused(session.inspect(iq, 0.0), "address").reply is None
    message = (
        "<message to='x@other.test' type='error' xmlns='jabber:client'><body>x</body></message>"
    )
    assert refused(session.inspect(message, 0.0), "address").reply is None


def test_copied_attributes_are_escaped_in_replies() -> None:
    to = "x@other.test/a'b\"<c>&amp;"
    iq = (
        "<iq to=\"x@other.test/a'b&quot;&lt;c>&amp;amp;\" type='set'"
        " id='i&apos;&quot;&lt;' xmlns='jabber:client'/>"
    )
    reply = reply_of(refused(guard().inspect(iq, 0.0), "address"))
    assert reply.get("from") == to
    assert reply.get("id") == "i'\"<"


# -- the error Jitsi shows --


def test_the_room_refusal_has_the_shape_lib_jitsi_meet_shows() -> None:
    rules = ChatRules(False, False, Budget(rate=0.0, burst=1), 2048, 0)
    session = guard(rules)
    forwarded(session.inspect(groupchat(), 0.0))
    verdict = refused(session.inspect(groupchat(), 0.0), "rate")
    assert verdict.reply == (
        f"<message xmlns='jabber:client' type='error' from='{ROOM}' id='m1'>"
        "<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>You are sending messages too fast."
        "</text></error></message>"
    )
    # ChatRoom.onMessage reads `:scope>error>text` of a type='error' message from the room.
    assert error_text(reply_of(verdict)) == TOO_FAST


def test_a_private_message_refusal_comes_from_the_room_bare_jid() -> None:
    rules = ChatRules(True, False, PLENTY, 2048, 0)
    reply = reply_of(refused(guard(rules).inspect(private(f"{ROOM}/e5f6"), 0.0), "quiet"))
    assert reply.get("from") == ROOM and reply.get("id") == "p1"
    assert error_text(reply) == QUIET


def test_stand_ins_have_ids_of_their_own() -> None:
    session = guard()
    bad = "<presence to='x@other.test' xmlns='jabber:client'/>"
    first = refused(session.inspect(bad, 0.0), "address").stand_in
    second = refused(session.inspect(bad, 0.0), "address").stand_in
    assert first != second
    assert first == "<iq xmlns='jabber:client' type='result' id='meetgate-dropped-1'/>"


# -- budgets --


def test_chat_over_budget_is_refused_and_refills_with_time() -> None:
    rules = ChatRules(False, False, Budget(rate=0.5, burst=3), 2048, 0)
    session, other = guard(rules), guard(rules)
    for _ in range(3):
        forwarded(session.inspect(groupchat(), 100.0))
    verdict = refused(session.inspect(groupchat(), 100.0), "rate")
    assert error_text(reply_of(verdict)) == TOO_FAST
    error = reply_of(verdict).find("{jabber:client}error")
    assert error is not None and error.get("type") == "wait"
    forwarded(other.inspect(groupchat(), 100.0))  # a second sender is unaffected
    refused(session.inspect(groupchat(), 101.0), "rate")  # half a token back
    forwarded(session.inspect(groupchat(), 102.0))
    refused(session.inspect(groupchat(), 102.0), "rate")
    # The burst is a cap: a long pause gives three, not more.
    for _ in range(3):
        forwarded(session.inspect(groupchat(), 10_000.0))
    refused(session.inspect(groupchat(), 10_000.0), "rate")


def test_a_clock_stepping_back_refills_nothing() -> None:
    rules = ChatRules(False, False, Budget(rate=1.0, burst=1), 2048, 0)
    session = guard(rules)
    forwarded(session.inspect(groupchat(), 50.0))
    refused(session.inspect(groupchat(), 10.0), "rate")
    refused(session.inspect(groupchat(), 50.5), "rate")
    forwarded(session.inspect(groupchat(), 51.0))


def test_a_hundred_messages_in_a_second_only_the_budget_passes() -> None:
    rules = ChatRules(False, False, Budget(rate=0.5, burst=10), 2048, 0)
    session = guard(rules)
    verdicts = [session.inspect(groupchat(), i / 100) for i in range(100)]
    assert sum(isinstance(v, Forward) for v in verdicts) == 10
    assert all(isinstance(v, Refuse) and v.reply for v in verdicts[10:])


def tight(kind: str) -> WireBudgets:
    one = Budget(rate=0.001, burst=2)
    return WireBudgets(
        presence=one if kind == "presence" else PLENTY,
        iq=one if kind == "iq" else PLENTY,
        signal=one if kind == "signal" else PLENTY,
    )


def test_presence_signal_and_iq_have_budgets_of_their_own() -> None:
    presence = guard(budgets=tight("presence"))
    for _ in range(2):
        forwarded(presence.inspect(JOIN, 0.0))
    assert refused(presence.inspect(JOIN, 0.0), "rate").reply is None
    forwarded(presence.inspect(groupchat(), 0.0))
    forwarded(presence.inspect(JITSI["ping"], 0.0))

    signal = guard(budgets=tight("signal"))
    for _ in range(2):
        forwarded(signal.inspect(JITSI["reaction"], 0.0))
    assert refused(signal.inspect(JITSI["poll"], 0.0), "rate").reply is None
    forwarded(signal.inspect(groupchat(), 0.0))  # chat is not signal

    iq = guard(budgets=tight("iq"))
    for _ in range(2):
        forwarded(iq.inspect(JITSI["ping"], 0.0))
    reply = reply_of(refused(iq.inspect(JITSI["disco-room"], 0.0), "rate"))
    assert reply.tag == "{jabber:client}iq" and reply.get("id") == "info2"
    assert reply.get("from") == ROOM
    assert reply.find(f"{{jabber:client}}error/{{{STANZAS}}}resource-constraint") is not None


def test_answers_draw_on_the_iq_budget_but_only_a_flood_is_refused() -> None:
    session = guard(budgets=tight("iq"))
    result = JITSI["jingle-result"]
    # Two from the burst, then an overdraft of one burst more: never a normal client's answer
    # refused, but made-up answers are bounded.
    for _ in range(4):
        forwarded(session.inspect(result, 0.0))
    assert refused(session.inspect(result, 0.0), "rate").reply is None
    # The overdraft is the client's own loss: its requests wait.
    refused(session.inspect(JITSI["ping"], 0.0), "rate")


# -- size --


def test_chat_size_is_capped_in_body_bytes() -> None:
    rules = ChatRules(False, False, PLENTY, 10, 0)
    session = guard(rules)
    forwarded(session.inspect(groupchat("é" * 5), 0.0))
    verdict = refused(session.inspect(groupchat("é" * 5 + "x"), 0.0), "size")
    reply = reply_of(verdict)
    assert error_text(reply) == TOO_LONG
    error = reply.find("{jabber:client}error")
    assert error is not None and error.get("type") == "modify"
    assert error.find(f"{{{STANZAS}}}policy-violation") is not None
    # Markup does not count, entities count as what they stand for.
    forwarded(session.inspect(groupchat("&lt;&lt;&lt;&lt;&lt;&lt;&lt;&lt;&lt;&lt;"), 0.0))


# -- quiet mode --


def test_quiet_mode_refuses_attendees_chat_and_lets_hosts_speak() -> None:
    state = {"rules": ChatRules(True, True, PLENTY, 2048, 0)}
    speaker = Speaker(admission_id="adm-1", room="room", name=NAME, host=False)
    session = WireGuard(
        speaker, ADDRESSES, GENEROUS, lambda: state["rules"], lambda: frozenset({HOST_OCCUPANT})
    )
    verdict = refused(session.inspect(groupchat(), 0.0), "quiet")
    reply = reply_of(verdict)
    assert error_text(reply) == QUIET and reply.get("from") == ROOM
    refused(session.inspect(private(f"{ROOM}/e5f6"), 0.0), "quiet")
    # Private to a host stays allowed when the room says so (case of the room part aside).
    forwarded(session.inspect(private("ROOM@conference.meet.test/h0st1d"), 0.0))
    forwarded(session.inspect(JITSI["reaction"], 0.0))  # not chat
    forwarded(session.inspect(JITSI["poll"].replace("new-poll", "answer-poll"), 0.0))
    state["rules"] = ChatRules(True, False, PLENTY, 2048, 0)
    refused(session.inspect(private(HOST_OCCUPANT), 0.0), "quiet")
    state["rules"] = OPEN
    forwarded(session.inspect(groupchat(), 0.0))
    forwarded(session.inspect(private(f"{ROOM}/e5f6"), 0.0))
    assert session.strikes == 3

    host = guard(ChatRules(True, False, PLENTY, 2048, 0), host=True)
    forwarded(host.inspect(groupchat(), 0.0))
    forwarded(host.inspect(private(f"{ROOM}/e5f6"), 0.0))


QUIET_RULES = ChatRules(True, False, PLENTY, 2048, 0)


@pytest.mark.parametrize(
    "body",
    [
        "<body xmlns='urn:x'>spam</body>",
        "<p:body xmlns:p='urn:p'>spam</p:body>",
        "<body><b>spam</b></body>",
        "<subject>New title</subject>",
        "<subject xmlns='urn:x'>New title</subject>",
    ],
)
def test_a_body_or_subject_in_any_namespace_is_chat(body: str) -> None:
    text = f"<message to='{ROOM}' type='groupchat' id='m1' xmlns='jabber:client'>{body}</message>"
    reply = reply_of(refused(guard(QUIET_RULES).inspect(text, 0.0), "quiet"))
    assert error_text(reply) == QUIET
    # Chat's budget, not signal's.
    rules = ChatRules(False, False, Budget(rate=0.0, burst=1), 2048, 0)
    session = guard(rules)
    assert forwarded(session.inspect(text, 0.0)) == text
    refused(session.inspect(text, 0.0), "rate")


def test_nested_text_in_a_body_counts_towards_its_size() -> None:
    rules = ChatRules(False, False, PLENTY, 10, 0)
    session = guard(rules)
    nested = groupchat("<b>" + "x" * 100_000 + "</b>")
    assert error_text(reply_of(refused(session.inspect(nested, 0.0), "size"))) == TOO_LONG
    split = groupchat("12345").replace("</message>", "<body xmlns='urn:x'>678901</body></message>")
    refused(session.inspect(split, 0.0), "size")
    forwarded(session.inspect(groupchat("a<i>b</i>c"), 0.0))


def test_any_message_text_is_capped() -> None:
    session = guard()  # chat_max_bytes 2048: the cap is 8192
    json = f"<message to='{ROOM}' type='groupchat' xmlns='jabber:client'><json-message>{{}}"
    endpoint = json + "{}</json-message></message>"
    forwarded(session.inspect(endpoint.replace("{}", "x" * 8190, 1), 0.0))
    assert (
        refused(session.inspect(endpoint.replace("{}", "x" * 8191, 1), 0.0), "size").reply is None
    )
    chat = groupchat("x").replace("</message>", "<x>" + "y" * 9000 + "</x></message>")
    assert error_text(reply_of(refused(session.inspect(chat, 0.0), "size"))) == TOO_LONG
    roomy = guard(ChatRules(False, False, PLENTY, 20_000, 0))
    forwarded(roomy.inspect(endpoint.replace("{}", "x" * 19_000, 1), 0.0))


def poll(command: str, *, to: str = f"polls.{DOMAIN}") -> str:
    return (
        f"<message to='{to}' type='chat' xmlns='jabber:client'>"
        "<json-message xmlns='http://jitsi.org/jitmeet'>"
        f'{{"answers":[true],"command":"{command}","pollId":"p1","type":"polls"}}'
        "</json-message></message>"
    )


@pytest.mark.parametrize(
    "text",
    [
        poll("new-poll"),
        poll("new-poll", to=ROOM),
        poll("new\\u002dpoll"),
        poll("new-poll").replace('"', "&quot;"),
        poll("new-poll").replace("xmlns='http://jitsi.org/jitmeet'", "xmlns='urn:x'"),
        poll("new-poll").replace("new-poll", "new-<i/>poll"),
    ],
)
def test_quiet_mode_refuses_a_new_poll_from_an_attendee(text: str) -> None:
    assert refused(guard(QUIET_RULES).inspect(text, 0.0), "quiet").reply is None
    assert forwarded(guard(QUIET_RULES, host=True).inspect(text, 0.0)) == text
    assert forwarded(guard().inspect(text, 0.0)) == text


def test_quiet_mode_lets_poll_answers_through() -> None:
    answer = poll("answer-poll")
    assert forwarded(guard(QUIET_RULES).inspect(answer, 0.0)) == answer


@pytest.mark.parametrize(
    "text",
    [
        # The component reads the first json-message only, with cjson (hex numbers and all):
        # what Python's reader does not take, or a second child, must not hide a new poll.
        poll("new\\u002dpoll").replace(
            "</json-message></message>", "</json-message><json-message>x</json-message></message>"
        ),
        poll("new\\u002dpoll").replace('"type":"polls"}', '"type":"polls","n":0x1}'),
        poll("answer-poll").replace(
            "</json-message></message>", "</json-message><json-message>{}</json-message></message>"
        ),
        poll("vote"),
        poll("answer-poll").replace('"command"', '"cmd"'),
    ],
)
def test_quiet_mode_lets_only_one_plain_answer_reach_the_polls(text: str) -> None:
    refused(guard(QUIET_RULES).inspect(text, 0.0), "quiet")


# -- names and tracking --


def nicks(data: str) -> list[str | None]:
    return [child.text for child in element(data) if child.tag == f"{{{NICK}}}nick"]


def test_a_forged_name_is_replaced_by_the_verified_one() -> None:
    forged = JOIN.replace(f">{NAME}</nick>", ">The Host</nick>")
    out = forwarded(guard().inspect(forged, 0.0))
    assert out == JOIN
    assert nicks(out) == [NAME]


def test_a_missing_name_is_added_and_duplicates_dropped() -> None:
    session = guard(name="Bob <&> 'O\"Brien'")
    bare = f"<presence to='{ROOM}/a1' xmlns='jabber:client'/>"
    out = forwarded(session.inspect(bare, 0.0))
    assert nicks(out) == ["Bob <&> 'O\"Brien'"]
    assert out.startswith(f"<presence to='{ROOM}/a1' xmlns='jabber:client'><nick ")
    assert out.endswith("</nick></presence>")
    open_one = f"<presence to='{ROOM}/a1' xmlns='jabber:client'><x xmlns='muc'/></presence>"
    assert nicks(forwarded(session.inspect(open_one, 0.0))) == ["Bob <&> 'O\"Brien'"]
    two = (
        f"<presence xmlns='jabber:client'><nick xmlns='{NICK}'>A</nick>"
        f"<nick xmlns='{NICK}'>B</nick></presence>"
    )
    assert nicks(forwarded(session.inspect(two, 0.0))) == ["Bob <&> 'O\"Brien'"]
    prefixed = "<c:presence xmlns:c='jabber:client'/>"
    rewritten = element(forwarded(session.inspect(prefixed, 0.0)))
    assert rewritten.tag == "{jabber:client}presence"
    assert [c.text for c in rewritten] == ["Bob <&> 'O\"Brien'"]


def test_leaving_and_component_presence_get_no_name_added() -> None:
    session = guard()
    leave = JITSI["leave"]
    assert forwarded(session.inspect(leave, 0.0)) == leave
    # A presence to a component (not a room's): no one there is shown a name.
    for component in (
        f"<presence to='{FOCUS}' xmlns='jabber:client'/>",
        f"<presence to='{FOCUS}' xmlns='jabber:client'><x/></presence>",
    ):
        assert forwarded(session.inspect(component, 0.0)) == component


def test_tracking_and_identity_elements_are_removed() -> None:
    extra = (
        "<avatar-url>https://evil.test/pixel.png</avatar-url>"
        "<email>victim@example.test</email>"
        "<identity><user><name>CEO</name></user></identity>"
        "<avatar-url xmlns='other'>https://evil.test/2</avatar-url>"
    )
    forged = JOIN.replace("<audiomuted>", extra + "<audiomuted>")
    out = forwarded(guard().inspect(forged, 0.0))
    assert out == JOIN
    lobby = JITSI["lobby-join"].replace("</presence>", extra + "</presence>")
    assert forwarded(guard().inspect(lobby, 0.0)) == JITSI["lobby-join"]


def test_every_name_in_any_namespace_gives_way_to_the_verified_one() -> None:
    # Jitsi matches `nick` by tag name and the last one wins.
    forged = JOIN.replace(
        "<jitsi_participant_region>",
        "<nick xmlns='urn:x'>The Organiser</nick><p:nick xmlns:p='urn:p'>Boss</p:nick>"
        "<display-name>The Organiser</display-name><jitsi_participant_region>",
    )
    assert forwarded(guard().inspect(forged, 0.0)) == JOIN
    first_foreign = JOIN.replace(f"<nick xmlns='{NICK}'>", "<nick xmlns='urn:x'>")
    assert forwarded(guard().inspect(first_foreign, 0.0)) == JOIN
    display = (
        "<display-name xmlns:p='urn:p' p:xmlns='http://jitsi.org/protocol/display-name'>"
        "The Organiser</display-name><q:display-name xmlns:q='urn:q'>X</q:display-name>"
        "<nick xmlns='urn:x'>The Organiser</nick>"
    )
    assert forwarded(guard().inspect(groupchat(extra=display), 0.0)) == groupchat()
    # A message without a name gets none added.
    nameless = groupchat().replace(f"<nick xmlns='{NICK}'>{NAME}</nick>", "")
    with_names = nameless.replace("</message>", display + "</message>")
    assert forwarded(guard().inspect(with_names, 0.0)) == nameless.replace(
        "</message>", f"<nick xmlns='{NICK}'>{NAME}</nick></message>"
    )
    no_nick = nameless.replace("</message>", "<display-name>X</display-name></message>")
    assert forwarded(guard().inspect(no_nick, 0.0)) == nameless


@pytest.mark.parametrize("namespace", ["", " xmlns='urn:x'", " xmlns='jabber:client'"])
def test_tracking_elements_go_in_any_namespace(namespace: str) -> None:
    extra = (
        f"<avatar-url{namespace}>https://evil.test/1</avatar-url>"
        f"<email{namespace}>a@b.test</email><identity{namespace}/>"
        "<p:avatar-url xmlns:p='urn:p'>https://evil.test/2</p:avatar-url>"
    )
    forged = JOIN.replace("<audiomuted>", extra + "<audiomuted>")
    assert forwarded(guard().inspect(forged, 0.0)) == JOIN


def test_a_message_carries_the_verified_name_only() -> None:
    display = (
        "<display-name source='visitor' xmlns='http://jitsi.org/protocol/display-name'>"
        "The Host</display-name>"
    )
    forged = groupchat(extra=display).replace(f">{NAME}</nick>", ">The Host</nick>")
    assert forwarded(guard().inspect(forged, 0.0)) == groupchat()


# -- strikes --


def test_strikes_count_refusals_and_past_the_threshold_the_sender_is_removable() -> None:
    rules = ChatRules(False, False, Budget(rate=0.0, burst=1), 2048, 3)
    session = guard(rules)
    forwarded(session.inspect(groupchat(), 0.0))
    for expected in (1, 2):
        refused(session.inspect(groupchat(), 0.0), "rate")
        assert session.strikes == expected and not session.removable
    stream_error(session.inspect("<message>", 0.0), "not-well-formed")
    assert session.strikes == 2 and not session.removable
    refused(session.inspect(groupchat(), 0.0), "rate")
    assert session.strikes == 3 and session.removable


def test_no_threshold_never_removes() -> None:
    rules = ChatRules(False, False, Budget(rate=0.0, burst=0), 2048, 0)
    session = guard(rules)
    for _ in range(50):
        refused(session.inspect(groupchat(), 0.0), "rate")
    assert session.strikes == 50 and not session.removable


@given(st.lists(stanza(), max_size=20))
def test_valid_stanzas_within_budgets_pass_in_order_unchanged(
    sequence: list[tuple[str, bool]],
) -> None:
    session = guard()
    outs = [forwarded(session.inspect(text, float(i))) for i, (text, _) in enumerate(sequence)]
    assert len(outs) == len(sequence)
    for (text, forged), out in zip(sequence, outs, strict=True):
        if not forged:
            assert out == text
        else:
            assert_same_meaning(element(text), element(out))
    assert session.strikes == 0
