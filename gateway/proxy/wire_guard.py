"""The signalling wire guard: each stanza a client sends is read (gateway/proxy/stanzas.py) and
judged against the meeting's rules before it reaches prosody; what the server sends back is not
touched.

A stanza is forwarded as sent, forwarded rewritten (presence to the room carries the verified
name from the admission, never a tracking URL), refused (dropped, the sender told why), or the
whole session is ended with a stream error (input that is not XMPP a client would send).

The guard is pure: it takes the stanza's bytes and the time, and returns a verdict. The relay
(gateway/proxy/websocket.py, the BOSH path in gateway/proxy/gate.py) acts on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from encodings.idna import nameprep
from enum import Enum, auto
from typing import NamedTuple
from xml.sax.saxutils import escape

from gateway.i18n import N_
from gateway.proxy.stanzas import CLIENT, POLICY_VIOLATION, Stanza, read_or_condition

# The error texts Jitsi shows in its chat to a sender whose message was refused, in English;
# ChatRules carries them in the room's language (gateway/proxy/room_rules.py, chat_rules).
# Translators: shown in the meeting's chat to someone whose message was not delivered because
# they sent too many too quickly
TOO_FAST = N_("You are sending messages too fast.")
# Translators: shown in the meeting's chat to someone whose message was not delivered because
# it is longer than the room allows
TOO_LONG = N_("Your message is too long.")
# Translators: shown in the meeting's chat to an attendee whose message was not delivered
# because a host switched on quiet mode (or locked the meeting down)
QUIET = N_("Only hosts can chat in this meeting now.")


@dataclass(frozen=True, slots=True)
class Budget:
    """A token bucket: `rate` stanzas per second on average, `burst` at once."""

    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class ChatRules:
    """A room's rules as they stand now: its own settings over the gate's defaults.

    `quiet`: only hosts chat (a host's switch, and every lockdown); with
    `private_to_hosts_when_quiet`, attendees may still write privately to a host.
    `strikes`: refused stanzas before the sender is removed (0: never).
    `too_fast`, `too_long`, `quiet_text`: the refusals' texts for the sender, in the room's
    language.
    """

    quiet: bool
    private_to_hosts_when_quiet: bool
    chat: Budget
    chat_max_bytes: int
    strikes: int
    too_fast: str = TOO_FAST
    too_long: str = TOO_LONG
    quiet_text: str = QUIET


@dataclass(frozen=True, slots=True)
class WireBudgets:
    """The gate-wide budgets for what is not chat. `control`: framing, SASL and stream
    management elements, of which a client sends a few per (re)connection and one `<a/>` per
    `<r/>` of the server's; past it the session ends, as no client sends that many."""

    presence: Budget
    iq: Budget
    signal: Budget
    control: Budget = Budget(50.0, 200)


@dataclass(frozen=True, slots=True)
class Speaker:
    """The session's sender, as the gate admitted it."""

    admission_id: str
    room: str
    name: str
    host: bool


@dataclass(frozen=True, slots=True)
class Addresses:
    """Where a session of `room` may send stanzas, on the XMPP `domain`.

    `muc_domains`: the MUC's domains (`conference.<domain>`, and `conference.<tenant>.<domain>`
    when the session came through a tenant's path); the room's bare JID on each, and its
    occupants, may be addressed. `lobby_domains` likewise for the room's lobby;
    `breakout_domains` for its breakout rooms; `components`: the full component domains
    (`focus.<domain>`, `speakerstats.<domain>`, …). The domain itself (and no `to`) is the
    server: bind, ping, disco, TURN credentials.
    """

    domain: str
    muc_domains: frozenset[str]
    lobby_domains: frozenset[str]
    breakout_domains: frozenset[str]
    components: frozenset[str]


# The verdicts are NamedTuples, not frozen dataclasses: one is built for every stanza a client
# sends, and a frozen dataclass's __init__ (object.__setattr__ per field) costs twice what
# tuple.__new__ does (_new, on the guard's common paths). Compare them by type, never with ==
# (a tuple of the same fields would be equal).
class Forward(NamedTuple):
    """Pass `data` on to the server: the stanza's UTF-8 as sent, or rewritten (the relays send
    bytes: nothing is decoded to be encoded again)."""

    data: bytes


class Refuse(NamedTuple):
    """Drop the stanza. `stand_in` goes to the server in its place (a stanza the server counts
    and ignores, so that XEP-0198's count of handled stanzas stays exact); `reply` goes to the
    sender (an XMPP error stanza Jitsi shows), or nothing. `reason` names the rule (a metric
    label, a log word: never content)."""

    stand_in: str
    reply: str | None
    reason: str


class EndStream(NamedTuple):
    """End the session: `error` (an RFC 7395 stream error element) goes to the sender, then the
    connection is closed both ways. `reason` as for Refuse."""

    error: str
    reason: str


Verdict = Forward | Refuse | EndStream
# NamedTuple's own __new__ in C, without the generated Python function around it.
_new = tuple.__new__


# Prosody's own cap on a client's stanza (c2s_stanza_size_limit's default): what prosody would
# refuse anyway never takes the gate's time either.
MAX_ELEMENT_BYTES = 256 * 1024

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAM_MANAGEMENT = "urn:xmpp:sm:3"
NICK = "http://jabber.org/protocol/nick"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
FOCUS = "http://jitsi.org/protocol/focus"

# What a client may send besides stanzas: RFC 7395 framing, SASL, XEP-0198. None holds an
# element; only SASL's hold text (base64).
_CONTROL = frozenset(
    {
        (FRAMING, "open"),
        (FRAMING, "close"),
        (SASL, "auth"),
        (SASL, "response"),
        (SASL, "abort"),
        (STREAM_MANAGEMENT, "enable"),
        (STREAM_MANAGEMENT, "r"),
        (STREAM_MANAGEMENT, "a"),
        (STREAM_MANAGEMENT, "resume"),
    }
)
_STANZAS = frozenset({"message", "presence", "iq"})
# Presence children that make other browsers fetch or show what the sender chose (gravatar,
# an image URL), or that only the server may set (mod_presence_identity's element).
_STRIPPED = frozenset({"avatar-url", "email", "identity"})
# Children Jitsi reads as the sender's name, by local name whatever their namespace (the last
# `nick` wins; a message's `display-name`, which prosody sets for visitors, is shown as its
# sender's): all go, the verified nick takes the first one's place.
_NAMES = frozenset({"nick", "display-name"})
# What a presence loses: both.
_PRESENCE_REMOVED = _NAMES | _STRIPPED
# Any message's text, JSON included, is capped at the room's chat size or this, if larger: a
# poll or an endpoint message is small, but not every room allows long chat.
MIN_TEXT_BYTES = 8192
# Jitsi's command creating a poll (jitsi-meet react/features/polls/constants COMMAND_NEW_POLL),
# which shows the poll in everyone's chat: quiet mode silences it. Answers still pass.
NEW_POLL = "new-poll"
# And answering one (COMMAND_ANSWER_POLL), the one thing quiet mode leaves an attendee there.
ANSWER_POLL = "answer-poll"
# XEP-0198's `h` is an unsigned 32-bit count.
_H_LIMIT = 2**32
# An attribute of a start tag, in a well-formed element (expat has read it): its name and its
# quoted value.
_START_TAG_ATTRIBUTE = re.compile(
    rb"""[ \t\r\n]+([^ \t\r\n=]+)[ \t\r\n]*=[ \t\r\n]*('[^']*'|"[^"]*")"""
)
# Characters a JID's node may not hold (RFC 7622 §3.3.1), so a name is never read two ways.
_NODE_FORBIDDEN = frozenset("\"&'/:<>@ \t\r\n")
_ATTRIBUTE_ENTITIES = {"'": "&apos;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_XML_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# A result to the server, for an id it never asked: prosody counts it (XEP-0198) and ignores it.
STAND_IN = "<iq xmlns='jabber:client' type='result' id='meetgate-dropped-{}'/>"

_ANSWERS = ("result", "error")
# A session's addresses kept read (WireGuard._address): Jitsi's client uses a handful.
_ADDRESSES_KEPT = 32
# ... and only short ones, so that a guard keeps kilobytes, not what a client chose to send.
_ADDRESS_KEPT_CHARACTERS = 256
# The MUC resource Jitsi's client joins a room as: 8 lower-case hex digits, derived from the
# session's JID or random (lib-jitsi-meet JitsiConference.resourceCreator; xmpp.ts createRoom for
# the lobby), fixed for as long as it is in the room (ChatRoom.myroomjid). Never a name.
_JITSI_RESOURCE = re.compile("[0-9a-f]{8}")
# The rooms a session's guard keeps its resource in (WireGuard._keeps_resource): Jitsi's client
# is in two or three at once (the meeting or a breakout room, the lobby).
_ROOMS_KEPT = 32


class _Place(Enum):
    """What a stanza's `to` names."""

    SERVER = auto()  # no `to`, or the domain
    ROOM = auto()  # a room's bare JID (the meeting, its lobby, a breakout room)
    OCCUPANT = auto()  # someone in one of those rooms
    COMPONENT = auto()


@dataclass(frozen=True, slots=True)
class _Jid:
    node: str | None
    domain: str
    resource: str | None


class _Address(NamedTuple):
    """What a `to` always yields, kept per session (WireGuard._addressed): the JID read, what it
    names, and for an occupant the digests its presence is checked with (_keeps_resource), so
    that a presence update to a room already addressed hashes nothing."""

    jid: _Jid | None
    place: _Place | None
    # An occupant's room (_room_key) and resource (_digest), or None for any other place.
    keys: tuple[bytes, bytes] | None


def _parse_jid(text: str) -> _Jid | None:
    """node@domain/resource, or None for anything else. The domain must be ASCII: one that
    lower-cases to an allowed domain is then the very domain prosody routes to."""
    bare, slash, resource = text.partition("/")
    node, at, domain = bare.partition("@")
    if not at:
        node, domain = "", bare
    elif not node or not _NODE_FORBIDDEN.isdisjoint(node):
        return None
    if slash and not resource:
        return None
    if not domain or not domain.isascii() or "@" in domain or " " in domain:
        return None
    return _Jid(_fold(node) if at else None, domain.lower(), resource if slash else None)


def _fold(node: str) -> str:
    """A node compared as prosody's nodeprep would, where lower-casing is sure to agree with it:
    ASCII. Anything else must match exactly, so that no case mapping of Unicode's leads a
    stanza to another room than the one the guard allowed."""
    return node.lower() if node.isascii() else node


def _occupant_key(text: str) -> tuple[str, str, str] | None:
    jid = _parse_jid(text)
    if jid is None or jid.node is None or jid.resource is None:
        return None
    return (jid.node, jid.domain, jid.resource)


def _room_key(jid: _Jid) -> bytes:
    """A room's bare JID as prosody's nodeprep reads its node (a Unicode node spelled another way
    is the same breakout room), as a short digest: the names are the client's."""
    node = jid.node or ""
    if not node.isascii():
        # A node nameprep refuses, prosody refuses too: such a room is only ever this spelling.
        with suppress(UnicodeError):
            node = nameprep(node)
    return _digest(node + "@" + jid.domain)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _attribute(value: str) -> str:
    return "'" + escape(value, _ATTRIBUTE_ENTITIES) + "'"


def _stream_error(condition: str) -> str:
    return f"<error xmlns='{STREAMS}'><{condition} xmlns='{STREAM_ERRORS}'/></error>"


def _end(condition: str) -> EndStream:
    return EndStream(_stream_error(condition), condition)


def _attribute_span(stanza: Stanza, name: bytes) -> tuple[int, int] | None:
    """Where the unprefixed attribute `name`'s quoted value lies in the top's start tag."""
    raw = stanza.raw
    position = stanza.start + 1 + len(stanza.qname)
    while match := _START_TAG_ATTRIBUTE.match(raw, position):
        if match.group(1) == name:
            return match.span(2)
        position = match.end()
    return None


def _answers_poll(stanza: Stanza) -> bool:
    """Whether a message to the polls component is one answer to a poll and nothing else: one
    json-message whose text is a JSON object with the command `answer-poll` (read strictly: the
    component's reader, cjson, takes more than Python's, and the first child only)."""
    if sum(1 for child in stanza.children if child.name == "json-message") != 1:
        return False
    text = stanza.json_message or ""
    if _announces_poll(text):
        return False
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("command") == ANSWER_POLL


def _announces_poll(text: str) -> bool:
    """Whether a json-message's text creates a poll, as its readers would decode it: the
    command in plain sight, or any string in the JSON (escapes undone) that names it."""
    if NEW_POLL in text:
        return True
    if "\\" not in text:
        return False
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if item == NEW_POLL:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _room_of(stanza: Stanza) -> str | None:
    """Whom a chat message's refusal comes from: the bare JID of its `to` (lib-jitsi-meet shows
    an error message's text when it comes from the room's bare JID, ChatRoom.onMessage, for
    group and private chat alike)."""
    to = stanza.attributes.get("to")
    return to.partition("/")[0] if to is not None else None


def _error_reply(
    stanza: Stanza, sender: str | None, kind: str, condition: str, text: str | None
) -> str:
    """An error answer to `stanza`, as if `sender` had refused it (RFC 6120 §8.3)."""
    attributes = ""
    if sender is not None:
        attributes += f" from={_attribute(sender)}"
    stanza_id = stanza.attributes.get("id")
    if stanza_id is not None:
        attributes += f" id={_attribute(stanza_id)}"
    words = f"<text xmlns='{STANZA_ERRORS}'>{escape(text)}</text>" if text is not None else ""
    return (
        f"<{stanza.name} xmlns='jabber:client' type='error'{attributes}>"
        f"<error type='{kind}'><{condition} xmlns='{STANZA_ERRORS}'/>{words}</error>"
        f"</{stanza.name}>"
    )


class _Bucket:
    """A token bucket's state; its rate and burst are read at each use (a room's may change)."""

    __slots__ = ("stamp", "tokens")

    def __init__(self) -> None:
        self.tokens: float | None = None
        self.stamp = 0.0

    def take(self, budget: Budget, now: float, floor: float = 0.0) -> bool:
        burst = float(budget.burst)
        tokens = self.tokens
        if tokens is None:
            tokens = burst
        else:
            # A clock that steps back refills nothing.
            if now > self.stamp:
                tokens += (now - self.stamp) * budget.rate
            if tokens > burst:
                tokens = burst
        if now > self.stamp:
            self.stamp = now
        if tokens - 1.0 >= floor:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


# What a stanza without `to` addresses.
_TO_SERVER = _Address(None, _Place.SERVER, None)


class WireGuard:
    """One signalling session's guard: its budgets and its count of refused stanzas."""

    def __init__(
        self,
        speaker: Speaker,
        addresses: Addresses,
        budgets: WireBudgets,
        rules: Callable[[], ChatRules],
        hosts: Callable[[], frozenset[str]],
    ) -> None:
        """`rules()` is the room's current ChatRules (it may change during the session);
        `hosts()` the MUC occupant JIDs (`room@muc/resource`) of the room's hosts as the
        guard has seen them join, for quiet mode's private messages to hosts."""
        self._speaker = speaker
        self._budgets = budgets
        self._rules = rules
        self._hosts = hosts
        self._room = _fold(speaker.room)
        self._domain = addresses.domain.lower()
        self._conference = frozenset(d.lower() for d in addresses.muc_domains)
        self._muc = self._conference | frozenset(d.lower() for d in addresses.lobby_domains)
        # Breakout rooms get random names from jicofo/mod_muc_breakout_rooms, unknown to the gate:
        # any room on the breakout domains may be addressed. Tying them to the meeting (the
        # breakout rooms' list prosody sends) is the lead's decision to make.
        self._breakout = frozenset(d.lower() for d in addresses.breakout_domains)
        self._components = frozenset(d.lower() for d in addresses.components)
        # The polls component: in quiet mode an attendee may only answer there.
        self._polls = "polls." + self._domain
        # Each `to` this session sent, read: a client addresses the same few (its room, the
        # focus, the domain) over and over. Bounded, as the values are the client's.
        self._addressed: dict[str, _Address] = {}
        name = _XML_CHARACTER.sub("", speaker.name)
        self._nick = f"<nick xmlns='{NICK}'>{escape(name)}</nick>".encode()
        self._strikes = 0
        # Each room this session is in: the resource it joined as (digests, _room_key); and
        # those of the connections before, which a `<resume/>` takes up again (`connected`).
        self._resources: dict[bytes, bytes] = {}
        self._resumable: dict[bytes, bytes] = {}
        # The room occupant JID (`room@muc/resource`) this session last joined as.
        self.occupant: str | None = None
        self._chat = _Bucket()
        self._signal = _Bucket()
        self._presence = _Bucket()
        self._iq = _Bucket()
        self._control = _Bucket()
        # XEP-0198: each error reply the gate sends is a stanza the client counts as received
        # from the server, which never sent it; the client's acknowledgements are lowered by
        # these, never below what this guard already passed on (prosody ends a session whose
        # `h` goes back or runs ahead of what it sent). Kept across reconnections: the lead
        # reuses a guard for the admission's next session, whose `<resume/>` counts the old one.
        self._injected = 0
        self._acked = 0

    @property
    def strikes(self) -> int:
        """Stanzas refused in this session so far."""
        return self._strikes

    @property
    def removable(self) -> bool:
        """Past the room's strike threshold: the sender is to be removed."""
        threshold = self._rules().strikes
        return threshold > 0 and self._strikes >= threshold

    def connected(self) -> None:
        """A new connection of the admission (the relay's, never the client's word): a new XMPP
        session, in no room yet, unless it resumes the one before (XEP-0198), whose rooms and
        resources it then keeps (which session it resumes is not read: any earlier one's)."""
        earlier = self._resumable | self._resources
        while len(earlier) > _ROOMS_KEPT:
            del earlier[next(iter(earlier))]
        self._resumable = earlier
        self._resources = {}

    def inspect(self, data: str | bytes, now: float) -> Verdict:
        """Judge one element the client sent: one WebSocket message (RFC 7395 framing: `<open/>`,
        `<close/>`, a stanza, a stream-management or SASL element), or one child of a BOSH
        `<body>` (its exact bytes)."""
        stanza = read_or_condition(data, MAX_ELEMENT_BYTES)
        if isinstance(stanza, str):
            return EndStream(_stream_error(stanza), stanza)
        if stanza.namespace == CLIENT and stanza.name in _STANZAS:
            return self._judge(stanza, now)
        if (stanza.namespace, stanza.name) not in _CONTROL:
            return EndStream(_stream_error("unsupported-stanza-type"), "unsupported-stanza-type")
        return self._control_element(stanza, now)

    def _control_element(self, stanza: Stanza, now: float) -> Verdict:
        if not self._control.take(self._budgets.control, now):
            return _end(POLICY_VIOLATION)
        if stanza.children or (stanza.namespace != SASL and stanza.text_bytes):
            return _end(POLICY_VIOLATION)
        if stanza.namespace == FRAMING and stanza.name == "open":
            to = stanza.attributes.get("to")
            if to is None or to.lower() != self._domain:
                return _end("host-unknown")
        if stanza.namespace == STREAM_MANAGEMENT:
            if stanza.name == "enable":
                # A new stream-management session: the client counts from zero again.
                self._injected = 0
                self._acked = 0
            elif stanza.name in ("a", "resume"):
                if stanza.name == "resume":
                    self._resources = self._resumable | self._resources
                return self._acknowledge(stanza)
        return Forward(stanza.raw)

    def _acknowledge(self, stanza: Stanza) -> Verdict:
        """The client's count of stanzas received, less the gate's own replies among them."""
        value = stanza.attributes.get("h")
        if value is None or not (value.isascii() and value.isdigit()) or int(value) >= _H_LIMIT:
            return _end(POLICY_VIOLATION)
        sent = int(value)
        handled = max(sent - self._injected, self._acked)
        self._acked = handled
        raw = stanza.raw
        if handled == sent:
            return Forward(raw)
        span = _attribute_span(stanza, b"h")
        if span is None:  # expat read `h` without a namespace, so it is written there
            return _end(POLICY_VIOLATION)
        start, end = span
        quote = raw[start : start + 1]
        return Forward(raw[:start] + quote + str(handled).encode() + quote + raw[end:])

    def _judge(self, stanza: Stanza, now: float) -> Verdict:
        attributes = stanza.attributes
        to = attributes.get("to")
        kind = attributes.get("type")
        # A `to` seen before: one look-up (an _Address, a non-empty tuple, is never false).
        address = _TO_SERVER if to is None else self._addressed.get(to) or self._address(to)
        jid, place, keys = address
        name = stanza.name
        if place is None:
            reply = None
            if name != "presence" and kind not in _ANSWERS:
                sender = to if jid is not None else None
                reply = _error_reply(stanza, sender, "cancel", "service-unavailable", None)
            return self._refuse("address", reply)
        if name == "iq":
            if not self._names_own_room(stanza):
                reply = None
                if kind not in _ANSWERS:
                    reply = _error_reply(stanza, to, "cancel", "not-allowed", None)
                return self._refuse("address", reply)
            if kind in _ANSWERS:
                # Answers to the server's own questions (pings, Jingle from the focus) are never
                # refused while a client behaves: they draw on the IQ budget and may overdraw it
                # by one burst (starving the client's own requests, not anyone else), so that a
                # flood of made-up answers is still bounded.
                burst = float(self._budgets.iq.burst)
                if not self._iq.take(self._budgets.iq, now, floor=-burst):
                    return self._refuse("rate", None)
            elif not self._iq.take(self._budgets.iq, now):
                reply = _error_reply(stanza, to, "wait", "resource-constraint", None)
                return self._refuse("rate", reply)
            return _new(Forward, (stanza.raw,))
        if name == "presence":
            if not self._presence.take(self._budgets.presence, now):
                return self._refuse("rate", None)
            if keys is not None and jid is not None and not self._keeps_resource(jid, keys, kind):
                # A MUC nick change (XEP-0045 §7.6): the sender would be known in the room by a
                # resource of its choosing, a host's name, say. Answered as the MUC would.
                reply = _error_reply(stanza, to, "cancel", "not-acceptable", None)
                return self._refuse("address", reply)
            if place is _Place.OCCUPANT and kind is None and to is not None:
                self.occupant = to
            # Joining or staying (no type) where a name shows: the verified nick goes in.
            joining = kind is None and place is not _Place.COMPONENT
            return _new(Forward, (self._rewritten(stanza, _PRESENCE_REMOVED, joining),))
        rules = self._rules()
        if stanza.body_bytes is None:
            # Polls, reactions without text, component requests: their own budget, no reply
            # (Jitsi would show an empty chat error for something the user did not type).
            if stanza.text_bytes > max(rules.chat_max_bytes, MIN_TEXT_BYTES):
                return self._refuse("size", None)
            if rules.quiet and not self._speaker.host and stanza.json_message is not None:
                to_polls = jid is not None and jid.node is None and jid.domain == self._polls
                if (
                    _announces_poll(stanza.json_message)
                    if not to_polls
                    else not _answers_poll(stanza)
                ):
                    return self._refuse("quiet", None)
            if not self._signal.take(self._budgets.signal, now):
                return self._refuse("rate", None)
            return _new(Forward, (self._rewritten(stanza, _NAMES, False),))
        return self._chat_message(stanza, now, rules, jid, place, kind)

    def _names_own_room(self, stanza: Stanza) -> bool:
        """A conference request to the focus names this session's room on the MUC: jicofo
        would otherwise start (or report on) another meeting for it."""
        for child in stanza.children:
            if child.name == "conference" and child.namespace == FOCUS:
                room = child.attributes.get("room")
                jid = None if room is None else _parse_jid(room)
                if (
                    jid is None
                    or jid.node != self._room
                    or jid.resource is not None
                    or jid.domain not in self._conference
                ):
                    return False
        return True

    def _chat_message(
        self,
        stanza: Stanza,
        now: float,
        rules: ChatRules,
        jid: _Jid | None,
        place: _Place,
        kind: str | None,
    ) -> Verdict:
        answer = kind != "error"
        # The body (and subject) as chat's limit; all the text, JSON and nested elements
        # included, under the cap any message has.
        body_bytes = stanza.body_bytes or 0
        limit = rules.chat_max_bytes
        too_long = stanza.text_bytes > (limit if limit > MIN_TEXT_BYTES else MIN_TEXT_BYTES)
        if body_bytes > limit or too_long:
            sender = _room_of(stanza)
            reply = _error_reply(stanza, sender, "modify", "policy-violation", rules.too_long)
            return self._refuse("size", reply if answer else None)
        if rules.quiet and not self._speaker.host:
            private = kind == "chat" or place is _Place.OCCUPANT
            to_host = (
                private
                and rules.private_to_hosts_when_quiet
                and place is _Place.OCCUPANT
                and jid is not None
                and (jid.node, jid.domain, jid.resource) in self._host_keys()
            )
            if not to_host:
                sender = _room_of(stanza)
                reply = _error_reply(stanza, sender, "modify", "policy-violation", rules.quiet_text)
                return self._refuse("quiet", reply if answer else None)
        if not self._chat.take(rules.chat, now):
            sender = _room_of(stanza)
            reply = _error_reply(stanza, sender, "wait", "resource-constraint", rules.too_fast)
            return self._refuse("rate", reply if answer else None)
        return _new(Forward, (self._rewritten(stanza, _NAMES, False),))

    def _address(self, to: str) -> _Address:
        """`to` read (the caller looked in `_addressed` first), and kept for the next time."""
        jid = _parse_jid(to)
        place = self._place(jid)
        keys = None
        if place is _Place.OCCUPANT and jid is not None:
            keys = (_room_key(jid), _digest(jid.resource or ""))
        found = _Address(jid, place, keys)
        if len(to) <= _ADDRESS_KEPT_CHARACTERS:
            if len(self._addressed) >= _ADDRESSES_KEPT:
                self._addressed.clear()
            self._addressed[to] = found
        return found

    def _keeps_resource(self, jid: _Jid, keys: tuple[bytes, bytes], kind: str | None) -> bool:
        """Whether a presence to an occupant of a room leaves the session's resource there as it
        joined. The first available presence to a room fixes it; one to another resource of that
        room is refused unless the resource is Jitsi's own shape, which its client takes when it
        joins again without having left (after a reload, or a lobby destroyed or a knock
        denied: the server ended its stay, not the client) and which names no one. An
        unavailable presence to its own resource (leaving) frees the room: a new first join
        there is a new occupant. Other types prosody bounces or takes as the sender's leaving."""
        room, own = keys
        joined = self._resources.get(room)
        if kind == "unavailable":
            if joined == own:
                del self._resources[room]
            return True
        if kind is not None or joined == own:
            return True
        if joined is None and len(self._resources) >= _ROOMS_KEPT:
            return False
        if joined is None or _JITSI_RESOURCE.fullmatch(jid.resource or ""):
            self._resources[room] = own
            return True
        return False

    def _host_keys(self) -> set[tuple[str, str, str] | None]:
        return {_occupant_key(jid) for jid in self._hosts()}

    def _place(self, jid: _Jid | None) -> _Place | None:
        if jid is None:
            return None
        if jid.node is None:
            if jid.resource is not None:
                return None
            if jid.domain == self._domain:
                return _Place.SERVER
            # The breakout rooms' component takes its commands at its bare domain
            # (lib-jitsi-meet's BreakoutRooms._sendMessage).
            if jid.domain in self._components or jid.domain in self._breakout:
                return _Place.COMPONENT
            return None
        if jid.domain in self._muc:
            if jid.node != self._room:
                return None
        elif jid.domain not in self._breakout:
            return None
        return _Place.ROOM if jid.resource is None else _Place.OCCUPANT

    def _refuse(self, reason: str, reply: str | None) -> Refuse:
        self._strikes += 1
        if reply is not None:
            self._injected += 1
        stand_in = (
            f"<iq xmlns='jabber:client' type='result' id='meetgate-dropped-{self._strikes}'/>"
        )
        return Refuse(stand_in=stand_in, reply=reply, reason=reason)

    def _rewritten(self, stanza: Stanza, removed: frozenset[str], joining: bool) -> bytes:
        """The stanza with every child in `removed` (by local name, in any namespace) taken out,
        the verified nick in the first `nick`'s place; with `joining` and no `nick`, the
        verified one added as the last child. The stanza's own bytes when nothing changes."""
        raw = stanza.raw
        pieces: list[bytes] = []
        position = 0
        named = False
        # Direct children, in the order they are written: their spans never overlap.
        for child in stanza.children:
            # (Read by name: unpacking every child costs twice as much.)
            if child.name in removed:
                pieces.append(raw[position : child.start])
                if child.name == "nick" and not named:
                    pieces.append(self._nick)
                    named = True
                position = child.end
        if joining and not named:
            if stanza.close is not None:
                pieces.append(raw[position : stanza.close])
                pieces.append(self._nick)
                position = stanza.close
            else:
                end = stanza.empty_end
                pieces.append(raw[position : end - 2])
                pieces.append(b">" + self._nick + b"</" + stanza.qname + b">")
                position = end
        if not pieces:
            return raw
        pieces.append(raw[position:])
        return b"".join(pieces)
