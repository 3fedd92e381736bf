"""The attack replay's trolls (issue 20; plan in docs/design/attack-replay.md): each enters with
a leaked link from a network of its own, spams the room's chat, tries on a host's name, and once
removed tries every way back, recording into the shared `Events` what it sent, what the gate
refused and what came back.

A troll records only what it sees itself; whether anyone else saw its chat or a forged name is
read from the other clients' `heard` logs by the caller. Nothing it records holds a ticket, a
cookie, its link's token or an address: a way back is named by its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl as tls
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bench.admin import Admitted, RedeemRefused, admit, solve_challenge
from bench.attack_events import (
    BENCH_ERROR,
    CHAT_REFUSED,
    CHAT_SENT,
    CONNECTED,
    GUARD_THRESHOLD,
    IMPERSONATION,
    RETRY,
    SOCKET_CLOSED,
    Events,
    Stage,
)
from bench.attack_flood import KNOCK_FORM, room_knock
from bench.guard import verified_name
from bench.xmpp import MUC, Heard, XmppClient, XmppFailed
from tests.fixtures.jitsi_stanzas import BY_NAME, Placeholders
from tests.fixtures.proof_of_work import challenge

# A way back's outcomes: it let the troll in, the gate (or the room) refused it, or the attempt
# failed on the troll's side (a timeout, an exception of its own): proof of neither.
ALIVE = "ALIVE"
REFUSED = "refused"
ERROR = "error"
# How long one attempt back may take (a redemption solves a proof-of-work first: longer), and
# how long a troll waits for the room's answer to a presence or the guard's to the last chat line.
ATTEMPT_SECONDS = 5.0
REDEEM_SECONDS = 30.0
ANSWER_SECONDS = 3.0
# Respellings of the signalling paths (the front and the gate must answer each as the canonical
# path or refuse it): the brief's, and kin from tests/spellings.py (not imported: it needs
# hypothesis, a test dependency). `{room}` is the troll's room, as a tenant segment.
WEBSOCKET_SPELLINGS = (
    "//xmpp-websocket",
    "/xmpp-websocket/",
    "/%78mpp-websocket",
    "/XMPP-WEBSOCKET",
    "/Xmpp-Websocket",
    "/./xmpp-websocket",
    "/libs/../xmpp-websocket",
    "/xmpp%2Dwebsocket",
    "/xmpp-websocket;x",
    "/foo/xmpp-websocket/x",
    "/static/x/xmpp-websocket",
    "/{room}/xmpp-websocket",
)
BOSH_SPELLINGS = (
    "/http-bind/",
    "/%2Fhttp-bind",
    "//http-bind",
    "/HTTP-BIND",
    "/Rally/http-bind",
    "/a/b/http-bind",
    "/./http-bind",
    "/%68ttp-bind",
    "/http-bind;x",
    "/libs/%2e%2e/http-bind",
    "/{room}/http-bind",
)
# A BOSH session's creation as strophe.js sends it (Strophe.Bosh._buildBody, _connect).
BOSH_CREATE = (
    "<body rid='{rid}' xmlns='http://jabber.org/protocol/httpbind' to='{domain}' xml:lang='en'"
    " wait='60' hold='1' content='text/xml; charset=utf-8' ver='1.6' xmpp:version='1.0'"
    " xmlns:xmpp='urn:xmpp:xbosh'/>"
)
# A connection the server refused or ended after the upgrade (anything else: the troll's side).
SERVER_ENDED = (
    InvalidHandshake,
    ConnectionClosed,
    XmppFailed,
    ConnectionError,
    EOFError,
)
# The impersonation's last attempt, and what it adds when the room kept the host's name as the
# troll's occupant resource.
REJOIN = "rejoin as host's name"
RESOURCE_IS_HOST = "; RESOURCE is the host's name"
# Latin letters and the Cyrillic ones that look the same.
LOOK_ALIKES = str.maketrans(
    "aceopxyACEHKMOPTBX",
    (
        "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0410\u0421"
        "\u0415\u041d\u041a\u041c\u041e\u0420\u0422\u0412\u0425"
    ),
)
TRACKER = "https://tracker.example/p.png?u=1"
NICK_NS = "http://jabber.org/protocol/nick"
# The stanza errors the wire guard answers a refused stanza with (gateway/proxy/wire_guard.py);
# each refusal is a strike.
GUARD_CONDITIONS = frozenset(
    {
        "not-acceptable",
        "not-allowed",
        "service-unavailable",
        "policy-violation",
        "resource-constraint",
    }
)


@dataclass(frozen=True, slots=True)
class Answer:
    """The head of an HTTP answer (`status` 0: no answer) and what of its body arrived."""

    status: int
    headers: dict[str, str]
    body: bytes


def look_alike(name: str) -> str:
    """`name` with every Latin letter that has a Cyrillic twin replaced by it."""
    return name.translate(LOOK_ALIKES)


Attempt = Callable[[], Awaitable[tuple[str, int]]]


class Troll:
    """One troll: `enter`, then `spam` and `impersonate` in any order, `try_back` once removed,
    and `close` at the end. `closed_at` has every socket's end, in the order they opened;
    `occupants` every occupant JID (room/resource) it was in the room as."""

    def __init__(self, name: str, leaked_token: str, stage: Stage, events: Events) -> None:
        self.name = name
        self._token = leaked_token
        self._stage = stage
        self._events = events
        # A /24 of its own in 100.64.0.0/10, stable for the troll's name.
        self._network = zlib.crc32(name.encode()) % 250
        self._fresh = 0
        self.addresses: set[str] = set()  # every address it came from (for the privacy scan)
        self._tls = _client_tls(stage)
        self.admitted: Admitted | None = None
        self.verified = ""
        self.resource = secrets.token_hex(4)  # as Jitsi's client makes a MUC nick
        self.occupants: set[str] = set()
        self.client: XmppClient | None = None
        self._clients: list[XmppClient] = []
        self._asked: set[int] = set()
        self._watchers: list[asyncio.Task[None]] = []
        self._sent: dict[str, float] = {}  # marker -> send time (perf_counter)
        self._answered: dict[str, str] = {}  # marker -> "echoed" / "refused"
        self._refused: list[str] = []
        self._strikes = 0
        self._threshold_noted = False
        self._chat_number = 0
        self._heard_changed = asyncio.Event()

    @property
    def closed_at(self) -> list[float | None]:
        return [client.closed_at for client in self._clients]

    @property
    def room(self) -> str:
        assert self.admitted is not None, "enter() first"
        return self.admitted.room

    @property
    def occupant(self) -> str:
        """Its occupant JID in the room now."""
        return f"{self._stage.room_jid(self.room)}/{self.resource}"

    def _address(self) -> str:
        """A fresh address: the troll's own /24 first, then one new network per call."""
        self._fresh += 1
        if self._fresh == 1:
            address = f"100.64.{self._network}.7"
        else:
            address = f"100.{65 + self._fresh % 60}.{self._network}.{1 + self._fresh % 250}"
        self.addresses.add(address)
        return address

    def _signalling_url(self, base: str, path: str, ticket: str) -> str:
        scheme = "wss" if base.startswith("https") else "ws"
        host = base.split("://", 1)[1]
        return f"{scheme}://{host}{path}?room={self.room}&token={ticket}"

    async def enter(self) -> None:
        """Redeem the leaked link through the front from the troll's network, connect over the
        front's WebSocket and join the room (the gate puts the verified name on the join)."""
        front = self._stage.front_url
        self.admitted = await admit(
            front,
            self._token,
            self._stage.cookie_name,
            headers={"x-forwarded-for": self._address()},
            ssl=self._tls,
            solve=True,
        )
        self.verified = verified_name(self.admitted.ticket)
        client = await XmppClient.connect(
            self._signalling_url(front, "/xmpp-websocket", self.admitted.ticket),
            domain=self._stage.prosody_domain,
            stream_management=True,
            ssl=self._tls,
        )
        self._keep(client)
        client.on_heard = self._on_heard
        self.client = client
        await client.join(self._stage.room_jid(self.room), self.resource)
        self.occupants.add(self.occupant)
        self._events.add(CONNECTED, self.name, "front")

    def _keep(self, client: XmppClient) -> None:
        self._clients.append(client)
        self._watchers.append(asyncio.create_task(self._watch(client)))

    async def _watch(self, client: XmppClient) -> None:
        with contextlib.suppress(Exception):
            await client.wait_closed(timeout=24 * 3600)
        if client.reader_error is not None:
            # The troll's own client failed: no removal to count.
            detail = f"troll xmpp reader\t{client.reader_error}"
            self._events.add(BENCH_ERROR, self.name, detail, at=client.closed_at)
        elif client.closed_at is not None:
            how = "asked" if id(client) in self._asked else "unasked"
            self._events.add(SOCKET_CLOSED, self.name, how, at=client.closed_at)

    def _on_heard(self, heard: Heard) -> None:
        marker = heard.stanza_id
        if marker in self._sent and marker not in self._answered:
            if heard.kind == "error":
                self._answered[marker] = "refused"
                self._refused.append(marker)
                self._events.add(CHAT_REFUSED, self.name, marker, at=heard.at)
                self._note_threshold()
            elif heard.kind == "message":
                self._answered[marker] = "echoed"
        self._heard_changed.set()

    def _note_threshold(self, marker: str | None = None) -> None:
        """GUARD_THRESHOLD at the send of the stanza that is strike number `strikes`: the
        `strikes`-th refused, or (`marker`) the one the socket closed on before its answer."""
        if self._threshold_noted or self._strikes <= 0:
            return
        if marker is None:
            if len(self._refused) < self._strikes:
                return
            marker = self._refused[self._strikes - 1]
        self._threshold_noted = True
        self._events.add(GUARD_THRESHOLD, self.name, marker, at=self._sent[marker])

    async def _until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait for something heard to make `done()` true, the socket's end, or `timeout`."""
        deadline = time.perf_counter() + timeout
        while not done():
            left = deadline - time.perf_counter()
            if left <= 0 or self.client is None or self.client.closed_at is not None:
                return done()
            self._heard_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heard_changed.wait(), min(left, 0.5))
        return True

    async def spam(self, count: int, per_second: float, *, strikes: int = 0) -> int:
        """Send up to `count` groupchat lines at `per_second`, each body and id a unique marker
        "t:<who>:<n>" (CHAT_SENT), noting the guard's error answers (CHAT_REFUSED) and, given
        the room's `strikes`, the send of strike number `strikes` (GUARD_THRESHOLD). Stops
        when the socket ends; the number refused so far."""
        client = self.client
        assert client is not None, "enter() first"
        self._strikes = strikes
        room_jid = self._stage.room_jid(self.room)
        start = time.perf_counter()
        for n in range(count):
            if client.closed_at is not None:
                break
            marker = f"t:{self.name}:{self._chat_number}"
            self._chat_number += 1
            at = time.perf_counter()
            try:
                await client.send_chat(room_jid, marker, stanza_id=marker)
            except Exception:  # the socket ended under the send: the guard's removal
                break
            self._sent[marker] = at
            self._events.add(CHAT_SENT, self.name, marker, at=at)
            pause = start + (n + 1) / per_second - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
        await self._until(lambda: len(self._answered) == len(self._sent), ANSWER_SECONDS)
        if client.closed_at is not None and len(self._refused) == self._strikes - 1:
            # The socket ended before the answer to the last strike arrived: the first line sent
            # after the last refused one, and never answered, is it.
            last = self._refused[-1] if self._refused else None
            order = list(self._sent)
            after = order[order.index(last) + 1 :] if last is not None else order
            pending = [m for m in after if m not in self._answered]
            if pending:
                self._note_threshold(pending[0])
        return len(self._refused)

    async def _presence(self, way: str, xml: str) -> None:
        """Send a presence, wait for the room's reflection of it to the troll, and record what
        the room showed: the nick (verified or FORGED), and any tracker kept. The reflection is
        the room's presence of the troll's own occupant (status 110): another's, under the name
        the troll asked for, is not it."""
        client = self.client
        assert client is not None, "enter() first"
        sent = time.perf_counter()
        room_jid = self._stage.room_jid(self.room)

        def reflected() -> Heard | None:
            return next(
                (
                    h
                    for h in reversed(client.heard)
                    if h.at >= sent
                    and h.sender.partition("/")[0] == room_jid
                    and ((h.self_presence and h.type != "unavailable") or h.kind == "error")
                ),
                None,
            )

        await client.send_raw(xml)
        await self._until(lambda: reflected() is not None, ANSWER_SECONDS)
        seen = reflected()
        if seen is None:
            outcome = "unseen"
        elif seen.kind == "error":
            outcome = f"error {seen.body}"
            self._strike(seen, way, sent)
        else:
            named = "verified" if seen.nick_text == self.verified else "FORGED"
            kept = [x for x in ("avatar-url", "email") if x in seen.extras]
            outcome = named + ("; KEPT " + ",".join(kept) if kept else "")
            if "tracker.example" in seen.body:
                outcome += "; status URL passed"
            if seen.resource != self.resource:
                # The room took the nick change: the troll's occupant JID now ends in it (Jitsi
                # shows the `<nick>`, and the gate wrote the verified one there).
                outcome += "; MUC nick changed"
                self.resource = seen.resource
                self.occupants.add(self.occupant)
        self._events.add(IMPERSONATION, self.name, f"{way}\t{outcome}", at=sent)

    def _strike(self, error: Heard, way: str, sent: float) -> None:
        """A presence the guard refused is a strike, counted toward the threshold as chat's."""
        if error.body in GUARD_CONDITIONS:
            marker = f"presence:{way}"
            self._sent[marker] = sent
            self._refused.append(marker)

    async def impersonate(self, host_name: str) -> None:
        """A host's verified name as the presence's `<nick>`, then look-alikes, then tracking
        URLs, then the host's name as the troll's MUC nick (a nick change), then a rejoin with
        it as the occupant resource (REJOIN); each recorded (IMPERSONATION, "<way>\t<what the
        room reflected>": "verified" or "FORGED", "; KEPT <children>", "; MUC nick changed",
        RESOURCE_IS_HOST)."""
        values = Placeholders(
            domain=self._stage.prosody_domain,
            muc=self._stage.muc_domain,
            room=self.room,
            me=self.resource,
        )
        update = BY_NAME["presence_raise_hand"].xml(values)
        me = f"{self._stage.room_jid(self.room)}/{self.resource}"

        def named(name: str) -> str:
            return update.replace(">Alice Example<", f">{escape(name)}<")

        await self._presence("nick", named(host_name))
        await self._presence("nick look-alike", named(look_alike(host_name)))
        await self._presence("nick extra space", named(host_name.replace(" ", "  ", 1) + " "))
        trackers = (
            f"<presence xmlns='jabber:client' to='{escape(me)}'>"
            f"<nick xmlns='{NICK_NS}'>{escape(host_name)}</nick>"
            f"<avatar-url>{escape(TRACKER)}</avatar-url>"
            "<email>x@tracker.example</email>"
            "<status>my slides: https://tracker.example/s?u=1</status></presence>"
        )
        await self._presence("trackers", trackers)
        # Jitsi's update shape sent to another occupant JID: a MUC nick change.
        await self._presence(
            "muc nick", update.replace(f"/{self.resource}'", f"/{escape(host_name)}'")
        )
        await self._rejoin_as(host_name)

    async def _rejoin_as(self, host_name: str) -> None:
        """Leave the room and join it again with `host_name` as the occupant resource (and the
        `<nick>`), as a first join may name itself; record (IMPERSONATION, REJOIN) what the room
        reflected: the nick as for the others, and RESOURCE_IS_HOST if the occupant JID the
        others see ends in the host's name. The troll stays in the room as what it got."""
        client = self.client
        assert client is not None, "enter() first"
        room_jid = self._stage.room_jid(self.room)
        leaving = self.resource
        left_at = time.perf_counter()
        await client.send_raw(
            f"<presence xmlns='jabber:client' to='{escape(self.occupant)}' type='unavailable'/>"
        )

        def left() -> bool:
            return any(
                h.at >= left_at
                and h.sender == f"{room_jid}/{leaving}"
                and h.type in ("unavailable", "error")
                for h in client.heard
            )

        gone = await self._until(left, ANSWER_SECONDS)
        sent = time.perf_counter()
        await client.send_raw(
            f"<presence xmlns='jabber:client' to='{escape(f'{room_jid}/{host_name}')}'>"
            f"<x xmlns='{MUC}'/><nick xmlns='{NICK_NS}'>{escape(host_name)}</nick></presence>"
        )

        def reflected() -> Heard | None:
            return next(
                (
                    h
                    for h in client.heard
                    if h.at >= sent
                    and h.sender.partition("/")[0] == room_jid
                    and h.type != "unavailable"
                    and (h.self_presence or h.kind == "error")
                ),
                None,
            )

        await self._until(lambda: reflected() is not None, ANSWER_SECONDS)
        seen = reflected()
        outcome = "" if gone else "leave unseen; "
        if seen is not None and seen.kind != "error":
            outcome += "verified" if seen.nick_text == self.verified else "FORGED"
            kept = [x for x in ("avatar-url", "email") if x in seen.extras]
            outcome += "; KEPT " + ",".join(kept) if kept else ""
            if seen.resource == host_name:
                outcome += RESOURCE_IS_HOST
            self.resource = seen.resource
            self.occupants.add(self.occupant)
        else:
            outcome += "unseen" if seen is None else f"error {seen.body}"
            if seen is not None:
                self._strike(seen, REJOIN, sent)
            # Out of the room now (another troll may hold the name): back in as Jitsi's client
            # comes, a random resource, so that what it does next is done as an occupant.
            resource = secrets.token_hex(4)
            try:
                await client.join(room_jid, resource, ANSWER_SECONDS)
            except (XmppFailed, TimeoutError):
                outcome += "; not back in the room"
            else:
                self.resource = resource
                self.occupants.add(self.occupant)
        self._events.add(IMPERSONATION, self.name, f"{REJOIN}\t{outcome}", at=sent)

    async def try_back(self, seconds: float, every: float = 1.0) -> None:
        """For `seconds` after its removal, every way back in rounds `every` seconds apart,
        each attempt recorded (RETRY, "<way>\t<ALIVE|refused|error>", value: the HTTP status,
        0 for none; "error": the attempt failed on the troll's side, timed out included). A way
        that let the troll back in is recorded once and not tried again. Every way is tried
        once; no attempt starts after `seconds`, though one started may run its own limit
        (ATTEMPT_SECONDS, REDEEM_SECONDS for a redemption) past it."""
        assert self.admitted is not None, "enter() first"
        ways = self._ways()
        deadline = time.perf_counter() + seconds
        first = True
        while ways and (first or time.perf_counter() < deadline):
            started = time.perf_counter()
            for way, attempt in list(ways.items()):
                at = time.perf_counter()
                if not first and at >= deadline:
                    break
                solving = way.startswith(("redeem", "knock"))
                limit = REDEEM_SECONDS if solving else ATTEMPT_SECONDS
                try:
                    outcome, status = await asyncio.wait_for(attempt(), limit)
                except Exception:
                    outcome, status = ERROR, 0
                self._events.add(RETRY, self.name, f"{way}\t{outcome}", float(status), at=at)
                if outcome == ALIVE:
                    del ways[way]
            first = False
            pause = started + every - time.perf_counter()
            if pause > 0 and time.perf_counter() + pause < deadline:
                await asyncio.sleep(pause)
            elif pause > 0:
                break

    def _ways(self) -> dict[str, Attempt]:
        assert self.admitted is not None
        old = self.admitted
        front = self._stage.front_url
        ways: dict[str, Attempt] = {
            "wss /xmpp-websocket old ticket": partial(
                self._websocket, front, "/xmpp-websocket", old.ticket
            ),
            "bosh /http-bind old ticket": partial(self._bosh, front, "/http-bind", old.ticket),
        }
        for spelling in WEBSOCKET_SPELLINGS:
            path = spelling.format(room=old.room)
            ways[f"wss {spelling}"] = partial(self._websocket, front, path, old.ticket)
        for spelling in BOSH_SPELLINGS:
            path = spelling.format(room=old.room)
            ways[f"bosh {spelling}"] = partial(self._bosh, front, path, old.ticket)
        ways["redeem again, fresh session"] = partial(self._redeem, None)
        ways["redeem again, old cookie"] = partial(self._redeem, old.cookie)
        ways["ticket refresh, old cookie"] = partial(self._refresh, front, old.cookie)
        ways["knock room link"] = self._knock
        for name, replica in sorted(self._stage.replicas.items()):
            ways[f"replica {name} /xmpp-websocket"] = partial(
                self._websocket, replica.url, "/xmpp-websocket", old.ticket
            )
            ways[f"replica {name} /http-bind"] = partial(
                self._bosh, replica.url, "/http-bind", old.ticket
            )
            ways[f"replica {name} ticket refresh"] = partial(self._refresh, replica.url, old.cookie)
        return ways

    async def _websocket(self, base: str, path: str, ticket: str) -> tuple[str, int]:
        """ALIVE: a 101 to the upgrade as sent (this spelling, byte for byte), then an XMPP
        session bound on the same path; refused if the server refused or ended either; error
        if the session failed on the troll's side (a timeout among them)."""
        target = f"{path}?room={self.room}&token={ticket}"
        headers = {
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
            "sec-websocket-protocol": "xmpp",
            "origin": self._stage.front_url,
        }
        answer = await self._ask(base, "GET", target, headers)
        if answer.status != 101:
            return REFUSED, answer.status
        try:
            client = await XmppClient.connect(
                self._signalling_url(base, path, ticket),
                domain=self._stage.prosody_domain,
                stream_management=False,
                ssl=self._tls if base.startswith("https") else None,
                timeout=ATTEMPT_SECONDS,
            )
        except InvalidStatus as refused:
            return REFUSED, refused.response.status_code
        except SERVER_ENDED:
            return REFUSED, 101
        except Exception:
            return ERROR, 101
        self._keep(client)
        self._asked.add(id(client))
        await client.close()
        return ALIVE, 101

    async def _bosh(self, base: str, path: str, ticket: str) -> tuple[str, int]:
        """ALIVE: a 200 carrying a session id (prosody made a BOSH session)."""
        body = BOSH_CREATE.format(
            rid=secrets.randbelow(2**32), domain=self._stage.prosody_domain
        ).encode()
        headers = {"content-type": "text/xml; charset=utf-8", "origin": self._stage.front_url}
        answer = await self._ask(
            base, "POST", f"{path}?room={self.room}&token={ticket}", headers, body
        )
        return _outcome(answer.status == 200 and b"sid=" in answer.body), answer.status

    async def _redeem(self, cookie: str | None) -> tuple[str, int]:
        """ALIVE: a 303 into the meeting with a ticket."""
        headers = {"x-forwarded-for": self._address()}
        if cookie is not None:
            headers["cookie"] = f"{self._stage.cookie_name}={cookie}"
        try:
            await admit(
                self._stage.front_url,
                self._token,
                self._stage.cookie_name,
                headers=headers,
                ssl=self._tls,
                # A troll's browser runs the proof-of-work page's script like anyone's.
                solve=True,
            )
        except RedeemRefused as refused:
            return REFUSED, refused.status
        return ALIVE, 303

    async def _refresh(self, base: str, cookie: str) -> tuple[str, int]:
        """ALIVE: a fresh ticket (Jitsi's tokenAuthUrl answers with a 303 carrying one)."""
        headers = {"cookie": f"{self._stage.cookie_name}={cookie}"}
        answer = await self._ask(base, "GET", f"/_meetgate/ticket?room={self.room}", headers)
        ticket = "#jwt=" in answer.headers.get("location", "")
        return _outcome(answer.status in (200, 303) and ticket), answer.status

    async def _knock(self) -> tuple[str, int]:
        """The room link's lobby knock, as a stranger's browser sends the gate page's form
        (a fresh address, no cookie). ALIVE only with a ticket (a 303 into the meeting); one
        queued in the lobby waits for a host to admit it: refused."""
        parts = urlsplit(self._stage.front_url)
        headers = {
            "origin": f"{parts.scheme}://{parts.netloc}",
            "content-type": "application/x-www-form-urlencoded",
            "x-forwarded-for": self._address(),
        }
        target = room_knock(f"/{self.room}")
        answer = await self._ask(self._stage.front_url, "POST", target, headers, KNOCK_FORM)
        asked_for = challenge(answer.body) if answer.status == 200 else None
        if asked_for is not None:
            # A troll's browser runs the proof-of-work page's script like anyone's.
            token, bits = asked_for
            solved = await solve_challenge(token, bits)
            form = KNOCK_FORM + b"&" + urlencode({"pow_token": token, "answer": solved}).encode()
            answer = await self._ask(self._stage.front_url, "POST", target, headers, form)
        ticket = "#jwt=" in answer.headers.get("location", "")
        return _outcome(answer.status == 303 and ticket), answer.status

    async def _ask(
        self, base: str, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> Answer:
        """One request on a connection of its own, the target written exactly as given; the
        answer's head and (unless a 101) its body up to the connection's end."""
        parts = urlsplit(base)
        host, port = parts.hostname or "127.0.0.1", parts.port or 443
        context = self._tls if parts.scheme == "https" else None
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            lines = [f"{method} {target} HTTP/1.1", f"host: {parts.netloc}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            if "upgrade" not in headers:
                lines.append("connection: close")
            lines.append(f"content-length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            found = {}
            for line in header_lines:
                if line:
                    key, _, value = line.partition(":")
                    found[key.strip().lower()] = value.strip()
            status = int(status_line.split(" ", 2)[1])
            payload = b""
            if status != 101:
                with contextlib.suppress(Exception):
                    payload = await asyncio.wait_for(reader.read(65536), ATTEMPT_SECONDS)
            return Answer(status, found, payload)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        """Close what is still open (as asked) and stop watching."""
        for client in self._clients:
            if client.closed_at is None:
                self._asked.add(id(client))
                await client.close()
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher, 2.0)


def _outcome(alive: bool) -> str:
    return ALIVE if alive else REFUSED


def _client_tls(stage: Stage) -> tls.SSLContext | None:
    """A context trusting the stage's front, when the front speaks TLS."""
    if not stage.front_url.startswith("https"):
        return None
    return tls.create_default_context(cafile=str(stage.cafile))
