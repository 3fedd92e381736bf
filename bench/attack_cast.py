"""The attack replay's legitimate cast (issue 20): attendees and hosts, all in the scenario's
event loop, reaching the meeting as Jitsi's web client does.

An attendee redeems its invite through the front (timed: its join latency), opens the gate's
`/xmpp-websocket` with its ticket, joins the room as lib-jitsi-meet does (a random occupant
resource for each session, its verified name in `<nick>`), chats, and when its
socket closes without its asking fetches a fresh ticket from the gate's `tokenAuthUrl` and
comes back, following the meeting wherever a host moved it. A host is an attendee with a host
invite and the dashboard open beside it. Everything they see or do goes into `Events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import secrets
import ssl as tls
import sys
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from xml.sax.saxutils import escape

from websockets.exceptions import WebSocketException

from bench.admin import Admitted, RedeemRefused, SetupError, admit
from bench.attack_events import (
    BENCH_ERROR,
    CHALLENGED,
    CHAT_HEARD,
    CHAT_REFUSED,
    CHAT_SENT,
    CONNECTED,
    FAULT,
    HOST_REMOVE,
    JOIN_OK,
    JOIN_REFUSED,
    JOIN_WAITED,
    LEFT_HEARD,
    PRESENCE_HEARD,
    RECONNECTED,
    SOCKET_CLOSED,
    Events,
    Stage,
)
from bench.guard import verified_name
from bench.host import HostDesk, revoked
from bench.rawhttp import Connection, host_port
from bench.revocation import bounded_gather
from bench.xmpp import HEARD_LIMIT, NICK, Heard, XmppClient, XmppFailed
from tests.fixtures.cli import environment

TICKET_PATH = "/_meetgate/ticket"
SIGNALLING_PATH = "/xmpp-websocket"
# The gate's close code for a cut (revoked, banned, lockdown, moved, guard removal).
CUT_CLOSE_CODE = 4403
# SOCKET_CLOSED's detail when the attendee's own client failed (BENCH_ERROR says how).
BENCH_ERROR_CLOSE = "bench-error"
# How long an attendee keeps trying to come back after an unasked close, and its backoff.
COME_BACK_SECONDS = 60.0
BACKOFF_FIRST = 0.1
BACKOFF_MOST = 2.0
CONNECT_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0
# A wait with no end worth naming: the session's end, watched for as long as it lasts.
FOREVER = 7 * 24 * 3600.0
JOIN_CONCURRENCY = 10
# A join refused with 429 is tried again after its Retry-After (at most this long), as a
# person clicks again once the page says they may; this many tries in all.
JOIN_ATTEMPTS = 3
JOIN_WAIT_MOST = 30.0
# A chat line's marker: "m:<who>:<n>" (attendees) or "t:<who>:<n>" (trolls).
MARKER = re.compile(r"[a-z]:[\w.-]+:\d+")
BODY_PREFIX = 40
# Errors a connection attempt may end in that are worth another try.
CONNECT_ERRORS = (OSError, EOFError, TimeoutError, XmppFailed, WebSocketException)


def client_tls(stage: Stage) -> tls.SSLContext | None:
    """A TLS context trusting the stage's CA for an https front; None for a plain http one."""
    if not stage.front_url.startswith("https:"):
        return None
    return tls.create_default_context(cafile=str(stage.cafile))


def signalling_url(stage: Stage, room: str, ticket: str) -> str:
    """The front's XMPP WebSocket as Jitsi's client opens it: the room and the ticket."""
    base = "ws" + stage.front_url.removeprefix("http")
    return f"{base}{SIGNALLING_PATH}?room={room}&token={ticket}"


def marker_of(body: str) -> str:
    """A chat line's unique marker, or the start of a body that carries none."""
    found = MARKER.match(body)
    return found.group(0) if found else body[:BODY_PREFIX]


async def redeem_through(
    stage: Stage, token: str, *, headers: dict[str, str] | None = None
) -> tuple[Admitted, float]:
    """Redeem an invite through the front as a browser does (a new connection); the admission
    and the seconds from the request's start to the 303. RedeemRefused if refused."""
    started = time.perf_counter()
    admitted = await admit(
        stage.front_url,
        token,
        stage.cookie_name,
        headers=headers,
        ssl=client_tls(stage),
        solve=True,
    )
    return admitted, time.perf_counter() - started


class Removed(Exception):
    """The gate refused a fresh ticket: the admission was revoked (removed, locked down)."""


class Attendee:
    """One legitimate participant. `connected` is its live session (None while away)."""

    def __init__(self, name: str, token: str, stage: Stage, events: Events) -> None:
        self.name = name
        self.stage = stage
        self.events = events
        self._token = token
        self._tls = client_tls(stage)
        self.admitted: Admitted | None = None
        self.room = ""
        # The verified name the invite carries (what the room shows), and the occupant
        # resource of its session now: a random one each, as lib-jitsi-meet's (a resource
        # kept across sessions would be refused while prosody holds a cut session's occupant).
        self.nick = ""
        self.resource = ""
        # Every occupant JID (room/resource) any of its sessions had -> its verified name: what
        # an impersonation check must take as this person's own (a cut session's occupant
        # lingers while prosody holds it).
        self.occupants: dict[str, str] = {}
        # The browser's address, as the load balancer before the front would report it ("":
        # the front's own view, 127.0.0.1).
        self.address = ""
        self.ticket = ""
        self.client: XmppClient | None = None
        self.removed = False
        self.heard: deque[Heard] = deque(maxlen=HEARD_LIMIT)
        self._leaving = False
        self._stop = asyncio.Event()
        self._dropped = asyncio.Event()
        self._back = asyncio.Event()
        self._sent = 0
        self._chat_ids: dict[str, str] = {}
        self._staying = False
        self._watcher: asyncio.Task[None] | None = None

    def _forwarded(self) -> dict[str, str]:
        """The browser's own address as a CDN before the front reports it (the stage's front
        believes X-Forwarded-For from 127.0.0.1); none if it has no address of its own."""
        return {"x-forwarded-for": self.address} if self.address else {}

    @property
    def connected(self) -> XmppClient | None:
        client = self.client
        return client if client is not None and client.closed_at is None else None

    @property
    def occupant(self) -> str:
        """Its occupant JID in the room now."""
        return f"{self.stage.room_jid(self.room)}/{self.resource}"

    async def join(self, phase: str) -> bool:
        """Redeem, connect and enter the room; whether it got in (JOIN_OK or JOIN_REFUSED,
        then CONNECTED once in the room)."""
        started = time.perf_counter()
        waited = 0.0
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            try:
                admitted, _ = await redeem_through(
                    self.stage, self._token, headers=self._forwarded()
                )
                break
            except RedeemRefused as refused:
                waited += refused.proof_seconds
                self.events.add(JOIN_REFUSED, self.name, f"{phase}\t{refused.status}")
                # A person refused "too many attempts, try again in N s" waits and clicks
                # again; anything else is final.
                if refused.status != 429 or attempt == JOIN_ATTEMPTS:
                    return False
                wait = min(refused.retry_after or BACKOFF_MOST, JOIN_WAIT_MOST)
                paused = time.perf_counter()
                await self._pause(random.uniform(wait, wait + 1.0))
                waited += time.perf_counter() - paused
            except (OSError, EOFError, SetupError) as failed:
                self.events.add(JOIN_REFUSED, self.name, f"{phase}\t{type(failed).__name__}")
                return False
        latency = time.perf_counter() - started
        self.events.add(JOIN_OK, self.name, phase, latency)
        if admitted.proof_bits:
            self.events.add(CHALLENGED, self.name, phase, admitted.proof_bits)
        if waited or admitted.proof_seconds:
            # The part of the latency that is not the gate's: the browser finding its proof,
            # the person waiting the Retry-After a refusal named.
            self.events.add(JOIN_WAITED, self.name, phase, waited + admitted.proof_seconds)
        self.admitted = admitted
        self.room, self.ticket = admitted.room, admitted.ticket
        self.nick = verified_name(admitted.ticket)
        deadline = time.perf_counter() + COME_BACK_SECONDS
        return await self._connect_until(deadline)

    async def _connect(self) -> XmppClient:
        """One attempt: a session in the room with the ticket held now."""
        client = await XmppClient.connect(
            signalling_url(self.stage, self.room, self.ticket),
            domain=self.stage.prosody_domain,
            stream_management=True,
            timeout=CONNECT_TIMEOUT,
            ssl=self._tls,
            headers=self._forwarded(),
        )
        client.on_heard = self._on_heard
        resource = secrets.token_hex(4)
        nick = f'<nick xmlns="{NICK}">{escape(self.nick)}</nick>'
        try:
            await client.join(self.stage.room_jid(self.room), resource, CONNECT_TIMEOUT, nick)
        except BaseException:
            await client.abort()
            raise
        self.resource = resource
        self.occupants[self.occupant] = self.nick
        return client

    async def _connect_until(self, deadline: float, *, fresh_first: bool = False) -> bool:
        """Connect (fetching a fresh ticket first if `fresh_first`, and after each failure),
        retrying with a jittered backoff until `deadline`; whether it is in. Removed is not
        retried: `removed` is set."""
        delay = BACKOFF_FIRST
        fetch = fresh_first
        while not self._stop.is_set():
            try:
                if fetch:
                    self.room, self.ticket = await self._fresh_ticket()
                client = await self._connect()
            except Removed:
                self.removed = True
                return False
            except (*CONNECT_ERRORS, SetupError, ValueError):
                fetch = True
                if time.perf_counter() + delay > deadline:
                    return False
                await self._pause(random.uniform(delay / 2, delay))
                delay = min(delay * 2, BACKOFF_MOST)
                continue
            self._installed(client)
            return True
        return False

    def _installed(self, client: XmppClient) -> None:
        self.client = client
        self._dropped.clear()
        self._back.set()
        self.events.add(CONNECTED, self.name, "front")
        self._watcher = asyncio.get_running_loop().create_task(self._watch(client))

    async def _watch(self, client: XmppClient) -> None:
        """Note the session's end (SOCKET_CLOSED, at its close time) and wake `stay`."""
        with contextlib.suppress(Exception):
            await client.wait_closed(FOREVER)
        if client is not self.client:
            return
        self._back.clear()
        if client.reader_error is not None:
            detail = f"attendee xmpp reader\t{client.reader_error}"
            self.events.add(BENCH_ERROR, self.name, detail, at=client.closed_at)
        self.events.add(SOCKET_CLOSED, self.name, self._close_kind(client), at=client.closed_at)
        self._dropped.set()

    def _close_kind(self, client: XmppClient) -> str:
        """ "asked" (it left), "bench-error" (its own client failed), "cut:<reason>" (the gate
        cut it: revoked, lockdown, moved…; "cut:unknown" if the close gave no reason) or
        "unasked" (anything else: a replica gone, the front, the network)."""
        if self._leaving:
            return "asked"
        if client.reader_error is not None:
            return BENCH_ERROR_CLOSE
        if client.close_code == CUT_CLOSE_CODE:
            return f"cut:{client.close_reason or 'unknown'}"
        return "unasked"

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if it is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _fresh_ticket(self) -> tuple[str, str]:
        """A fresh ticket from the gate's ticket route (Jitsi's `tokenAuthUrl`) with the
        admission cookie: (the room it is for, which a move changes, and the ticket)."""
        assert self.admitted is not None
        cookie = f"{self.stage.cookie_name}={self.admitted.cookie}"
        connection = await Connection.open(*host_port(self.stage.front_url), ssl=self._tls)
        try:
            answer = await connection.request(
                "GET", f"{TICKET_PATH}?room={self.room}", {"cookie": cookie, **self._forwarded()}
            )
        finally:
            await connection.close()
        location = answer.headers.get("location", "")
        if answer.status == 403:
            raise Removed()
        if answer.status != 303 or "#jwt=" not in location:
            raise SetupError(f"a fresh ticket gave {answer.status}")
        room, _, ticket = location.removeprefix("/").partition("#jwt=")
        return room, ticket

    async def refresh(self) -> None:
        """Fetch a fresh ticket now, as Jitsi's client does mid-meeting; the next connection
        uses it. Raises Removed (the gate refused it: 403), SetupError (any other answer, or
        one that could not be read) or OSError (no answer: the connection failed or ended)."""
        try:
            self.room, self.ticket = await self._fresh_ticket()
        except (EOFError, asyncio.IncompleteReadError) as ended:
            raise ConnectionResetError("the connection ended before the answer") from ended
        except (ValueError, asyncio.LimitOverrunError) as unreadable:
            raise SetupError("a fresh ticket's answer could not be read") from unreadable

    def _on_heard(self, heard: Heard) -> None:
        self.heard.append(heard)
        if heard.kind == "presence":
            if heard.type == "unavailable":
                self.events.add(LEFT_HEARD, self.name, heard.sender, at=heard.at)
            else:
                # The name Jitsi shows is the <nick> (without one, its stock "Fellow Jitster",
                # never the occupant's resource); the resource is kept beside it.
                detail = f"{heard.sender}\t{heard.nick_text}"
                self.events.add(PRESENCE_HEARD, self.name, detail, at=heard.at)
        elif heard.kind == "message" and heard.body and "delay" not in heard.extras:
            # (A message with a XEP-0203 <delay> is the room's history, replayed to a newcomer:
            # said before, not heard live.)
            marker = marker_of(heard.body)
            if not marker.startswith(f"m:{self.name}:"):
                self.events.add(CHAT_HEARD, self.name, marker, at=heard.at)
        elif heard.kind == "error" and heard.stanza_id in self._chat_ids:
            detail = f"{self._chat_ids.pop(heard.stanza_id)}\t{heard.body}"
            self.events.add(CHAT_REFUSED, self.name, detail, at=heard.at)

    async def say(self) -> bool:
        """Send one chat line with a fresh marker (CHAT_SENT); whether it was sent."""
        client = self.connected
        if client is None:
            return False
        self._sent += 1
        marker = f"m:{self.name}:{self._sent}"
        stanza_id = f"chat{self._sent}"
        self._chat_ids[stanza_id] = marker
        try:
            await client.send_chat(
                self.stage.room_jid(self.room), f"{marker} hello", stanza_id=stanza_id
            )
        except WebSocketException:
            return False
        self.events.add(CHAT_SENT, self.name, marker)
        return True

    async def chat_loop(
        self, stop: asyncio.Event, every: tuple[float, float] = (20.0, 40.0)
    ) -> None:
        """A chat line every `every` seconds (uniformly drawn) until `stop` (or it leaves);
        a line falls due while it is away is skipped."""
        while not stop.is_set() and not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), random.uniform(*every))
                return
            await self.say()

    async def stay(self, stop: asyncio.Event, within: float = COME_BACK_SECONDS) -> None:
        """Until `stop` (or it leaves): after every close it did not ask for, fetch a fresh
        ticket and come back, trying for `within` seconds (RECONNECTED: seconds away; detail:
        the close's kind). A refused ticket (removed) ends it."""
        self._staying = True
        try:
            while not stop.is_set() and not self._stop.is_set() and not self.removed:
                dropped = asyncio.ensure_future(self._dropped.wait())
                stopping = asyncio.ensure_future(stop.wait())
                leaving = asyncio.ensure_future(self._stop.wait())
                waits = {dropped, stopping, leaving}
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
                if not self._dropped.is_set() or self._leaving or stop.is_set():
                    return
                gone = self.client
                assert gone is not None and gone.closed_at is not None
                kind = self._close_kind(gone)
                self._dropped.clear()
                if await self._connect_until(gone.closed_at + within, fresh_first=True):
                    away = time.perf_counter() - gone.closed_at
                    self.events.add(RECONNECTED, self.name, kind, away)
        finally:
            self._staying = False

    async def follow_move(self, new_room: str, within: float = COME_BACK_SECONDS) -> bool:
        """Be in `new_room` after a host's move: the move carried the admission over and cut
        the socket, so a real client fetches a fresh ticket (the gate answers it for the new
        room) and reconnects. With `stay` running, that is `stay`'s work: wait for it; else do
        it here. Whether it is in `new_room` within `within` seconds."""
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline and not self.removed:
            if self.connected is not None and self.room == new_room:
                return True
            if not self._staying and (self.client is None or self.client.closed_at is not None):
                started = self.client.closed_at if self.client is not None else None
                if await self._connect_until(deadline, fresh_first=True) and started:
                    away = time.perf_counter() - started
                    self.events.add(RECONNECTED, self.name, "cut:moved", away)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed(), max(0.0, deadline - time.perf_counter()))
        return self.connected is not None and self.room == new_room

    async def _changed(self) -> None:
        """Until its session ends or a new one begins."""
        if self.connected is not None:
            await self._dropped.wait()
        else:
            await self._back.wait()

    async def leave(self) -> None:
        """Leave the meeting (SOCKET_CLOSED "asked"); `stay` and `chat_loop` end."""
        self._leaving = True
        self._stop.set()
        if self.client is not None:
            await self.client.close()
        if self._watcher is not None:
            await self._watcher


class Host(Attendee):
    """An attendee admitted by a host invite, with the dashboard open on the front."""

    def __init__(self, name: str, token: str, stage: Stage, events: Events) -> None:
        super().__init__(name, token, stage, events)
        self.desk: HostDesk | None = None
        # Why the last `remove_by_cli` failed: its exit code and the CLI's error code (the
        # CLI's messages may name people: not kept), or that it timed out.
        self.cli_failure = ""

    async def join(self, phase: str) -> bool:
        if not await super().join(phase):
            return False
        assert self.admitted is not None
        self.desk = await HostDesk.open(
            self.stage.front_url, self.admitted, self.stage.cookie_name, ssl=self._tls
        )
        return True

    def _desk(self) -> HostDesk:
        if self.desk is None:
            raise SetupError(f"{self.name} has no dashboard open")
        return self.desk

    async def admission_of(self, name: str) -> str:
        """The admission id of the participant shown as `name`, from the host's roster."""
        for participant in await self._desk().participants():
            if participant.get("name") == name:
                return str(participant["id"])
        raise SetupError(f"nobody shown as {name!r} on the roster")

    async def remove(self, admission_id: str, *, target: str, via: str = "dashboard") -> bool:
        """Remove an admission (`target`: that participant's actor name) with the dashboard's
        revoke (HOST_REMOVE just before the POST) or, `via="cli"`, `remove_by_cli`; whether
        it was done."""
        if via == "cli":
            return await self.remove_by_cli(admission_id, target=target)
        desk = self._desk()
        await desk.ready()
        self.events.add(HOST_REMOVE, target, via)
        return revoked(await desk.revoke(admission_id))

    async def remove_by_cli(
        self, who: str, *, target: str, ban: str | None = None, replica: str = "a"
    ) -> bool:
        """`meetgate room remove ROOM WHO [--ban ban] --yes --json` against a replica's admin
        API, as an admin types it (HOST_REMOVE "cli" just before it starts); whether it
        exited 0 (if not, `cli_failure` says how). Cancelled, it kills the CLI."""
        config = self.stage.replicas[replica].config
        args = [sys.executable, "-m", "gateway.cli", "room", "remove", self._desk().room, who]
        if ban is not None:
            args += ["--ban", ban]
        args += ["--yes", "--json", "--config", str(config)]
        self.events.add(HOST_REMOVE, target, "cli")
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment(),
        )
        self.cli_failure = ""
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
        except BaseException as stopped:
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())
            if isinstance(stopped, TimeoutError):
                self.cli_failure = f"timed out after {CLI_TIMEOUT:g} s"
                return False
            raise
        if process.returncode != 0:
            self.cli_failure = f"exit {process.returncode}{cli_error_code(stdout)}"
        return process.returncode == 0

    async def lockdown(self) -> int:
        """Lock the room down from the dashboard (FAULT "lockdown" just before); how many
        attendees it removed."""
        desk = self._desk()
        await desk.ready()
        self.events.add(FAULT, self.name, "lockdown")
        return await desk.lockdown()

    async def move(self) -> str:
        """Move the meeting from the dashboard (FAULT "move" just before) to a fresh room the
        gate names (the dashboard's move takes no name); the new room."""
        desk = self._desk()
        await desk.ready()
        self.events.add(FAULT, self.name, "move")
        return await desk.move()

    async def leave(self) -> None:
        await super().leave()
        if self.desk is not None:
            await self.desk.close()


def cli_error_code(stdout: bytes) -> str:
    """ " (<code>)" from the CLI's --json failure (`{"error": code, …}`), "" if none: the code
    is a stable word, where the message may name a participant."""
    try:
        answer = json.loads(stdout)
    except ValueError:
        return ""
    code = answer.get("error") if isinstance(answer, dict) else None
    return f" ({code})" if isinstance(code, str) and re.fullmatch(r"[a-z_]+", code) else ""


async def join_wave(
    people: Sequence[Attendee], phase: str, concurrency: int = JOIN_CONCURRENCY
) -> list[bool]:
    """Join everyone, `concurrency` at a time; whether each got in, in order."""
    return await bounded_gather([partial(person.join, phase) for person in people], concurrency)
