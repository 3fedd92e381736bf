"""The gate: a pure ASGI app in front of everything, for `http` and `websocket` scopes alike.

Meetgate's own routes go to the pages app. Every other path is Jitsi's and is relayed only for a
live admission: a cookie for pages and assets (the room page only for the admission's own room),
a valid ticket plus its live admission for the signalling paths. Nothing is proxied otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admission.invitations import InvitationQueue
from gateway.admission.invites import hash_token
from gateway.admission.limits import RateLimiter
from gateway.admission.local_limits import KnownWait
from gateway.admission.oidc import SIGNIN_PREFIX
from gateway.admission.pipeline import (
    COOKIE_SECRET_SHAPE,
    AdmissionPipeline,
    admission_id_for,
)
from gateway.admission.policy import offered_paths
from gateway.admission.registrations import Registrations
from gateway.admission.rooms import current_room
from gateway.client_address import ClientAddresses, parse_networks
from gateway.cuts import CUTS, Cut, RulesChanged
from gateway.edge.languages import language_of, switch_target
from gateway.edge.rendering import rate_limited_answer, send_error, send_rate_limited, wants_json
from gateway.edge.requests import (
    EMAIL_PREFIX,
    ENTER_PREFIX,
    LOBBY_PREFIX,
    LOCATED_INVITE,
    QUIET,
    REFUSED_ATTEMPT,
    REGISTER_PREFIX,
    cookie_name,
    read_cookie,
    request_id,
)
from gateway.errors import (
    AdmissionRevoked,
    BodyRefused,
    BoshBodyInvalid,
    GateStopping,
    HeadersTooLarge,
    InviteUnknown,
    MeetgateError,
    NotAdmitted,
    PathRefused,
    StoreUnavailable,
    TicketInvalid,
)
from gateway.evidence.recorder import DRAIN_SECONDS, EvidenceRecorder
from gateway.metrics import Metrics
from gateway.proxy.bosh import SID_SHAPE, BoshSession
from gateway.proxy.bosh_body import parse_body
from gateway.proxy.guarded import WireGuarding
from gateway.proxy.headers import upstream_request_headers
from gateway.proxy.http import HttpRelay, read_body
from gateway.proxy.leases import REPLACED
from gateway.proxy.live_admissions import LiveAdmissions
from gateway.proxy.paths import (
    PathKind,
    classify,
    parse_signalling_query,
    query_rooms,
    upstream_signalling_query,
)
from gateway.proxy.reconcile import Reconciler
from gateway.proxy.registry import ConnectionRegistry
from gateway.proxy.relayed import RelayedRequest
from gateway.proxy.upstream import UpstreamClient
from gateway.proxy.websocket import RelayedSocket, open_upstream, relay
from gateway.settings import Settings
from gateway.store import Store, begin_request
from gateway.store.continuity import watch_memory
from gateway.store.housekeeping import Housekeeping
from gateway.store.records import Admission
from gateway.tickets import TicketAuthority

log = logging.getLogger("meetgate.gate")

MEETGATE_PREFIXES = ("/_meetgate/", "/j/")
FORWARD_AUTH = "/_meetgate/forward-auth"
# How long the gate's background tasks (cut follower, reconciliation, memory watch) have to end
# once cancelled.
CLOSE_TASKS_SECONDS = 2.0
FORWARD_AUTH_HEADERS = [(b"cache-control", b"no-store"), (b"content-length", b"0")]


# Set in a request's state by Gate.refuse_known when it found no known refusal: the client
# address it resolved.
_CHECKED_ADDRESS = "gate_checked_address"


def is_join_attempt(method: str, path: str) -> bool:
    """The requests the admission routes charge against the rate limits: the gate answers them
    itself while their address or network is known to have no budget left."""
    if path.startswith("/j/"):
        return True
    if path.startswith(SIGNIN_PREFIX + "/"):
        return path.endswith(("/login", "/callback"))
    if path.startswith(ENTER_PREFIX + "/"):
        # A room's gate page: a look, charged so that nobody can probe for rooms for free.
        return method == "GET"
    if path.startswith(REGISTER_PREFIX + "/"):
        # A room's registration form, its code page and its thanks (looks, charged like the
        # gate page: each tells a room that takes registrations from one that does not), and
        # sending the form or the code: /_meetgate/register/<room>[/code|/done|/send|/confirm]
        if method == "GET":
            return path.count("/") == 3 or (
                path.count("/") == 4 and path.endswith(("/code", "/done"))
            )
        return method == "POST" and path.endswith(("/send", "/confirm"))
    if method != "POST":
        return False
    if path.startswith(LOBBY_PREFIX + "/"):
        # The request itself, not leaving the lobby: /_meetgate/lobby/<room>
        return path.count("/") == 3
    return path.startswith(EMAIL_PREFIX + "/") and path.endswith(("/send", "/verify"))


def room_named_in(path: str) -> str | None:
    """The room a join attempt's path names (a gate page, a lobby request, an e-mail code, a
    registration), if any: for the evidence only, which records it only for a room known to
    exist."""
    for prefix in (ENTER_PREFIX, LOBBY_PREFIX, EMAIL_PREFIX, REGISTER_PREFIX):
        if path.startswith(prefix + "/"):
            return path[len(prefix) + 1 :].partition("/")[0] or None
    return None


async def see_other(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode())],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _link_hash(path: str) -> str | None:
    """The token hash of the join link `path` names (`/j/<token>`), or None."""
    token = path.removeprefix("/j/") if path.startswith("/j/") else ""
    return hash_token(token) if token and token.isascii() else None


class TrackedSend:
    """A request's `send` that remembers whether the answer has begun (then an error can no
    longer be shown as a page)."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = True
        await self.send(message)


class JoinAnswer:
    """A join attempt's `send`, noting the outcome of its answer for `meetgate_join_seconds`."""

    __slots__ = ("cookie", "outcome", "send")

    def __init__(self, send: Send, cookie: str) -> None:
        self.send = send
        self.cookie = cookie.encode() + b"="
        self.outcome: str | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.outcome = join_outcome(message["status"], message.get("headers", ()), self.cookie)
        await self.send(message)


def join_outcome(status: int, headers: Iterable[tuple[bytes, bytes]], cookie: bytes) -> str:
    """`admitted`: the answer sets the admission cookie or carries a ticket into the meeting;
    `refused`: an error; `pending`: the join goes on elsewhere (proof-of-work, lobby, a code)."""
    if status >= 400:
        return "refused"
    for name, value in headers:
        if name == b"set-cookie" and value.startswith(cookie):
            return "admitted"
        if name == b"location" and b"#jwt=" in value:
            return "admitted"
    return "pending"


class Background(Protocol):
    """Something the gate starts and stops with itself (gateway.admission.outbox.Outbox)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Gate:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        pipeline: AdmissionPipeline,
        limiter: RateLimiter,
        tickets: TicketAuthority,
        http: HttpRelay,
        http_client: UpstreamClient,
        registry: ConnectionRegistry,
        metrics: Metrics,
        pages: ASGIApp,
        evidence: EvidenceRecorder | None = None,
        close_pages: Callable[[], Awaitable[None]] | None = None,
        background: Sequence[Background] = (),
        registrations: Registrations | None = None,
        invitations: InvitationQueue | None = None,
    ) -> None:
        """`registrations`, `invitations`: this process's (None without a mail server), for
        the admin API built beside the gate (gateway.app.create_admin) to share."""
        self._settings = settings
        self.registrations = registrations
        self.invitations = invitations
        # Started and stopped with the gate (None: nothing is recorded).
        self.evidence = evidence
        # What the pages keep running (the sign-in's discovery refresh), ended at `aclose`.
        self._close_pages = close_pages
        # Work that runs beside the gate (the invitation outbox's sending loop): started with
        # it, stopped at `aclose`.
        self._background = tuple(background)
        self._store = store
        self._metrics = metrics
        self._addresses = ClientAddresses(parse_networks(settings.trusted_proxies))
        self._follower: asyncio.Task[None] | None = None
        self._reconciling: asyncio.Task[None] | None = None
        self._memory_watch: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self._pipeline = pipeline
        self._limiter = limiter
        self._tickets = tickets
        self._http = http
        self._http_client = http_client
        self.registry = registry
        metrics.watch_relayed(registry)
        self.reconciler = Reconciler(
            store,
            registry,
            metrics,
            self._in_background,
            interval_seconds=settings.revocation.reconcile_seconds,
            housekeeping=Housekeeping(store, settings.store_options().audit_retention_seconds),
        )
        self._pages = pages
        self._cookie = cookie_name(settings)
        self._secure = settings.secure
        self._public_host = settings.public_host.encode()
        self._scheme = b"https" if settings.secure else b"http"
        self._max_headers = settings.limits.max_header_bytes
        self._relayed = settings.jitsi.relayed_endpoints
        # Set by `stop_accepting`; the HTTP requests being answered, and those `cut_in_flight`
        # ended (each by the task the server runs it in).
        self._stopping = False
        self._live = LiveAdmissions(settings.revocation.reconcile_seconds)
        # The signalling wire guard (None: `[guard] enabled = false`).
        self.guarding = (
            WireGuarding(
                settings,
                store,
                metrics,
                self._in_background,
                registry.close_admission,
                evidence=evidence,
            )
            if settings.guard.enabled
            else None
        )
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._cut: set[asyncio.Task[Any]] = set()
        self._evidence_drained = False

    async def start(self) -> None:
        """Begin following cuts published by any replica (revocations, bans, moves), and
        reconciling this replica's connections with the store every few seconds."""
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow_cuts())
        if self._reconciling is None:
            self._reconciling = asyncio.create_task(self.reconciler.run_periodically())
        if self._memory_watch is None:
            self._memory_watch = asyncio.create_task(watch_memory(self._store))
        if self.evidence is not None:
            await self.evidence.start()
        for service in self._background:
            await service.start()

    async def aclose(self) -> None:
        for service in self._background:
            await service.aclose()
        tasks = [t for t in (self._follower, self._reconciling, self._memory_watch) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task whose cancellation a client library swallows (a store call caught
            # mid-connect) must not hold the stop; one CI run saw a stopping worker wait for ever.
            _, left = await asyncio.wait(tasks, timeout=CLOSE_TASKS_SECONDS)
            if left:
                log.warning("stopping: %d background task(s) did not end when told to", len(left))
        self._follower = self._reconciling = self._memory_watch = None
        if self._close_pages is not None:
            await self._close_pages()
        await self._limiter.aclose()
        if self.guarding is not None:
            await self.guarding.rules.aclose()
        if self.evidence is not None:
            # Drained already when the stop began (`drain_evidence`): what came since, briefly.
            await self.evidence.aclose(1.0 if self._evidence_drained else DRAIN_SECONDS)
        await self._http_client.aclose()

    async def drain_evidence(self, seconds: float) -> None:
        """Append the evidence queued (and this minute's counts) within `seconds`: the stop
        begins with it, within its deadline, so that what is lost is said before any exit."""
        if self.evidence is not None:
            self._evidence_drained = True
            await self.evidence.drain(seconds)

    def stop_accepting(self) -> None:
        """This replica is stopping: every request from now on is answered 503 (GateStopping),
        a WebSocket refused with it, until the server has closed its listener."""
        self._stopping = True

    async def hand_over(self) -> int:
        """End every relayed WebSocket for its browser to go on through another replica
        (RelayedSocket.hand_over: prosody's sessions stay resumable); returns how many.

        BOSH sessions are left as they are: their requests reach any replica, and each in flight
        here ends as prosody answers it (or by `cut_in_flight`)."""
        sockets = [c for c in self.registry.every() if isinstance(c, RelayedSocket)]
        await asyncio.gather(*(s.hand_over() for s in sockets), return_exceptions=True)
        return len(sockets)

    def cut_in_flight(self) -> int:
        """End the HTTP requests still being answered (the stop's deadline): each is answered
        503 if its response has not started, or ended short (never as if whole); returns how
        many. Done by the gate rather than left to the server's own deadline, which cancels them
        as failures: a 500 and a traceback each."""
        cut = self._in_flight - self._cut
        for task in cut:
            self._cut.add(task)
            task.cancel()
        return len(cut)

    async def _follow_cuts(self) -> None:
        backoff = 0.2
        while True:
            subscription = self._store.subscribe(CUTS)
            try:
                await subscription.ready()
                backoff = 0.2
                # Cuts published while this replica was not listening: caught up from the
                # store now that Redis has confirmed the subscription, before its first message
                # is read. A cut published from the confirmation on is queued for the loop
                # below, one published before is in the store: none falls in between. What the
                # store cannot answer now, the periodic sweep retries within a second.
                await self._catch_up()
                async for raw in subscription:
                    cut = Cut.decode(raw)
                    if cut is not None:
                        self._apply(cut)
                        continue
                    changed = RulesChanged.decode(raw)
                    if changed is not None and self.guarding is not None:
                        self.guarding.rules.changed(changed.room)
            except StoreUnavailable:
                log.warning("lost the store's cut channel; resubscribing in %.1fs", backoff)
            finally:
                with contextlib.suppress(Exception):
                    await subscription.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        # Each close waits on two peers; one slow peer must not delay the next cut.
        task = asyncio.create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _catch_up(self) -> None:
        # What was kept while no cut could be heard is read from the store again.
        self._live.clear()
        if self.guarding is not None:
            self.guarding.rules.changed_all()
        try:
            await self.reconciler.sweep()
        except Exception:
            # A bug in a sweep must not stop this replica from following cuts.
            log.exception("reconciliation failed")

    def _apply(self, cut: Cut) -> None:
        if cut.keep is None:
            self._live.forget(cut.admission_id)
            self._metrics.revocations.inc(reason=cut.reason)
            self._in_background(self._close_cut(cut, time.perf_counter()))
            return
        # A newer signalling session of the admission opened on some replica: this replica's
        # goes, unless it is that one.
        replaced = self.registry.drop_signalling(cut.admission_id, keep=cut.keep)
        if replaced is not None:
            self._metrics.revocations.inc(reason="replaced")
            self._in_background(replaced.close(cut.reason))

    async def _close_cut(self, cut: Cut, arrived: float) -> None:
        # Timed from the cut's arrival here: it carries no time of its publication.
        if await self.registry.close_admission(cut.admission_id, cut.reason):
            self._metrics.revocation_closes.observe(time.perf_counter() - arrived)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self._stopping:
            await send_error(scope, send, GateStopping(), request_id(scope), secure=self._secure)
            return
        if scope["type"] != "http":
            await self._answer(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None  # an ASGI call always runs in a task
        self._in_flight.add(task)
        join, started = None, 0.0
        if scope["method"] == "POST" and is_join_attempt("POST", scope["path"]):
            send = join = JoinAnswer(send, self._cookie)
            started = time.perf_counter()
        tracked = TrackedSend(send)
        try:
            await self._answer(scope, receive, tracked)
        except asyncio.CancelledError:
            if task not in self._cut:
                raise
            # Cancelled by cut_in_flight, which answers for it.
            task.uncancel()
            if not tracked.started:
                await send_error(
                    scope, send, GateStopping(), request_id(scope), secure=self._secure
                )
        finally:
            self._in_flight.discard(task)
            self._cut.discard(task)
            if join is not None and join.outcome is not None:
                self._metrics.joins.observe(time.perf_counter() - started, outcome=join.outcome)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every store call this request makes shares one budget (gateway/store/deadline.py).
        begin_request(self._settings.store.request_seconds)
        if scope["type"] == "http" and scope["path"] == FORWARD_AUTH:
            # Before the request id and address work: a front asks this once per static file.
            await self._forward_auth(scope, send)
            return
        # The server's check before the application (refuse_known) resolved the address and
        # found no known refusal already: neither is done twice.
        checked = scope.get("state", {}).pop(_CHECKED_ADDRESS, None)
        client_addr = checked or self._resolve(scope)
        path: str = scope["path"]
        if checked is None and scope["type"] == "http" and is_join_attempt(scope["method"], path):
            known = self._known_refusal(scope["method"], path, client_addr)
            if known.seconds > 0:
                # Refused before any other work: no request id, no log line, a kept answer.
                scope.setdefault("state", {})[QUIET] = True
                await send_rate_limited(
                    scope, send, known.seconds, secure=self._secure, limit=known.limit
                )
                return
        rid = request_id(scope)
        scope["state"]["client_addr"] = client_addr
        # One tracker a request: __call__'s, for HTTP.
        tracked = send if isinstance(send, TrackedSend) else TrackedSend(send)
        try:
            if sum(len(n) + len(v) for n, v in scope["headers"]) > self._max_headers:
                raise HeadersTooLarge()
            if path == "/" or path.startswith(MEETGATE_PREFIXES):
                if path.startswith("/j/") and scope["type"] == "http":
                    await self._locate_invite(scope, path.removeprefix("/j/"), client_addr)
                await self._pages(scope, receive, tracked)
                return
            await self._proxy(scope, receive, tracked)
        except MeetgateError as error:
            # The access log has a line for each of these already; unknown links come in floods.
            if not isinstance(error, NotAdmitted | TicketInvalid | InviteUnknown):
                log.info("refused %s: %s [%s]", scope["type"], error.code, rid)
            if scope["type"] == "http" and is_join_attempt(scope["method"], scope["path"]):
                scope["state"][REFUSED_ATTEMPT] = True
            if not tracked.started:
                await send_error(scope, send, error, rid, secure=self._secure)
        except Exception:
            # A bug: the server log gets the trace, the user a plain page with the request id.
            log.exception("unexpected error [%s]", rid)
            if not tracked.started:
                await send_error(scope, send, MeetgateError(), rid, secure=self._secure)

    def _resolve(self, scope: Scope) -> str:
        """The client's address: the socket's peer, or what a trusted proxy says it is."""
        return self._addresses.resolve((scope.get("client") or (None, 0))[0], scope["headers"])

    def _known_refusal(self, method: str, path: str, client_addr: str) -> KnownWait:
        """For a join attempt: how long it is known to be refused for (counted as refused), and
        by which limit; no seconds if it is not."""
        known = self._limiter.known_wait(client_addr)
        # The join link's token hash, worked out once, and only when it is needed.
        through: str | None = None
        if not known.seconds and self._limiter.knows_links():
            # A join link whose invite, room or the gate is known to be out of budget; a look at
            # its landing page is not charged against the invite's limit, so only a join is
            # refused for that one.
            through = _link_hash(path)
            if through is not None:
                link = self._limiter.known_link_wait(through)
                if link.limit != "invite" or method == "POST":
                    known = link
        if known.seconds > 0:
            through = through or _link_hash(path)
            self._limiter.note_local_refusal(known, client_addr, room_named_in(path), through)
        return known

    def refuse_known(self, scope: Scope) -> tuple[int, Sequence[tuple[bytes, bytes]], bytes] | None:
        """The server's check before the ASGI call (`HttpServer.refuse`, gateway/edge/server.py):
        for a join attempt known to be refused, the kept 429 that `_answer` would send (the same
        client address, resolved as `_answer` resolves it, the same bytes, counted the same way,
        no log line); None for anything else, which the gate answers as usual."""
        if self._stopping or scope["type"] != "http":
            return None
        method: str = scope["method"]
        path: str = scope["path"]
        if not is_join_attempt(method, path):
            return None
        client_addr = self._resolve(scope)
        known = self._known_refusal(method, path, client_addr)
        if known.seconds <= 0:
            scope.setdefault("state", {})[_CHECKED_ADDRESS] = client_addr
            return None
        headers, body = rate_limited_answer(
            known.seconds,
            wants_json(scope),
            self._secure,
            language_of(scope),
            known.limit,
            switch_target(scope),
        )
        if method == "POST":
            # As __call__ observes a join attempt's answer; this one took no time.
            self._metrics.joins.observe(0.0, outcome="refused")
        return 429, headers, body if method != "HEAD" else b""

    async def _locate_invite(self, scope: Scope, token: str, client_addr: str) -> None:
        """A join link's page: its invite is looked up here, before the pages app, so a flood of
        made-up links is refused (and charged) for the price of one store call each; the page
        reuses what was found. A join (POST) is not looked up here: its one store call finds the
        invite and admits (gateway/web/join.py, answered before the pages' FastAPI app)."""
        if "/" in token or scope["method"] not in ("GET", "HEAD"):
            return
        scope["state"][LOCATED_INVITE] = await self._pipeline.locate(token, client_addr)

    async def _forward_auth(self, scope: Scope, send: Send) -> None:
        """For a TLS front serving Jitsi's static files itself (Caddy `forward_auth`, nginx
        `auth_request`): 204 while the browser's admission is live, 401 otherwise, 404 when the
        front names a path (X-Forwarded-Uri) that is not a static file. Answered here, not by the
        pages app: the front asks once per static file."""
        try:
            await self._cookie_access(scope, time.time())
            status = 204 if self._static_for_front(scope) else 404
        except NotAdmitted:
            status = 401
        except StoreUnavailable:
            status = 503  # fails closed: nothing is served on a cookie the store cannot check
        await send(
            {"type": "http.response.start", "status": status, "headers": FORWARD_AUTH_HEADERS}
        )
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _static_for_front(scope: Scope) -> bool:
        """Whether the request the front says it is about to serve is a GET or HEAD of one of
        Jitsi's static files: a front matching more than it should (case, encodings) still
        offloads nothing else, and a front that does not say what it serves offloads nothing."""
        uri = method = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-uri":
                uri = value
            elif name == b"x-forwarded-method":
                method = value
        if uri is None or method not in (b"GET", b"HEAD"):
            return False
        raw = uri.split(b"?", 1)[0]
        try:
            target = classify(raw.decode("latin-1"), raw)
        except MeetgateError:
            return False
        return target.kind is PathKind.STATIC

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Relay a path the allowlist names (paths.classify refuses every other): signalling on a
        ticket, relayed endpoints on a live admission, pages and static files on the cookie."""
        now = time.time()
        target = classify(scope["path"], scope.get("raw_path"), self._relayed)
        websocket = scope["type"] == "websocket"
        if target.kind is PathKind.SIGNALLING:
            admission, query = await self._signalling_access(scope, now)
            base = self._settings.jitsi.signalling
        elif target.kind is PathKind.RELAYED:
            admission = await self._relayed_access(scope, now)
            query = scope.get("query_string", b"").decode("latin-1")
            base = self._settings.jitsi.upstream
        else:
            if websocket:
                # Pages and static files are plain HTTP; only the relayed kinds are sockets.
                raise PathRefused()
            try:
                admission = await self._cookie_access(scope, now)
            except AdmissionRevoked:
                raise
            except NotAdmitted:
                if target.kind is PathKind.ROOM and target.room:
                    await self._offer_entry(send, target.room)
                    return
                raise
            if target.kind is PathKind.ROOM and admission.room != target.room:
                await self._follow_move(send, admission, target.room)
                return
            query = scope.get("query_string", b"").decode("latin-1")
            base = self._settings.jitsi.upstream
        # classify() has checked that the path as sent is plain ASCII, equal to the decoded one.
        url = base + scope["path"] + (f"?{query}" if query else "")
        headers = upstream_request_headers(
            scope["headers"],
            cookie_name=self._cookie.encode(),
            public_host=self._public_host,
            public_scheme=self._scheme,
            client_addr=scope["state"]["client_addr"].encode(),
            websocket=websocket,
        )
        if websocket:
            # A new session: not while the store may have forgotten a ban or a revocation.
            self._pipeline.ensure_memory()
            await self._websocket(
                scope,
                receive,
                send,
                url,
                headers,
                admission,
                signalling=target.kind is PathKind.SIGNALLING,
            )
        elif target.kind is PathKind.SIGNALLING and scope["method"] == "POST":
            await self._bosh(scope, receive, send, url, headers, admission)
        elif target.kind is PathKind.RELAYED:
            await self._relay_registered(scope, receive, send, url, headers, admission)
        else:
            await self._http.relay(scope, receive, send, url, headers)

    async def _relayed_access(self, scope: Scope, now: float) -> Admission:
        """A relayed endpoint passes for the browser's live admission (its cookie) or, with no
        cookie (the mobile apps), a ticket as on signalling; a `room` in the query must be the
        admission's own."""
        if read_cookie(scope, self._cookie) is not None:
            admission = await self._cookie_access(scope, now)
        else:
            admission, _ = await self._signalling_access(scope, now)
        if any(room != admission.room for room in query_rooms(scope.get("query_string", b""))):
            raise NotAdmitted()
        return admission

    async def _relay_registered(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        url: str,
        headers: list[tuple[bytes, bytes]],
        admission: Admission,
    ) -> None:
        """Relay one request to a relayed endpoint, filed under its admission while it lasts, so
        a revocation ends a long poll as it ends a socket."""
        tracked = send if isinstance(send, TrackedSend) else TrackedSend(send)
        request = RelayedRequest()
        self.registry.register(admission.id, request)
        try:
            await request.run(self._http.relay(scope, receive, tracked, url, headers))
        finally:
            self.registry.unregister(admission.id, request)
        if request.cut and not tracked.started:
            raise AdmissionRevoked()

    async def _offer_entry(self, send: Send, room_name: str) -> None:
        """A room link opened without an admission: the room's way in, if its policy has one."""
        room = await current_room(self._store, room_name)
        if room is None or not offered_paths(room.policy):
            raise NotAdmitted()
        await see_other(send, f"/_meetgate/enter/{room.name}")

    async def _follow_move(self, send: Send, admission: Admission, room_name: str | None) -> None:
        """A browser reloading a room its meeting has moved out of is sent to the new room."""
        room = await current_room(self._store, room_name) if room_name else None
        if room is None or room.name != admission.room:
            raise NotAdmitted()
        await see_other(send, f"/_meetgate/ticket?room={admission.room}")

    async def _bosh(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        url: str,
        headers: list[tuple[bytes, bytes]],
        admission: Admission,
    ) -> None:
        """Relay one BOSH request, noting which session (sid) this admission uses. A body that
        is not one well-formed `<body>` with a rid, and a sid if any of prosody's shape, is
        refused (BoshBodyInvalid), so every session the upstream sees is one the gate can end.

        Under the wire guard each stanza in the body is judged as on a WebSocket: what is
        refused is replaced by its stand-in, and the errors for the sender are put into the
        session's next response that passes here."""
        limit = self._settings.limits.max_body_bytes
        body = await read_body(receive, limit)
        try:
            parsed = parse_body(body, max_bytes=limit)
        except BodyRefused as refused:
            if self.guarding is not None:
                # Under the wire guard, input no client sends ends the sender's session, as on
                # a WebSocket: which one this body meant cannot be read, so every BOSH session
                # of the admission ends.
                await self._end_bosh_sessions(admission, self.guarding, refused.condition)
            raise
        sid, rid = parsed.sid, parsed.rid
        if rid is None or (sid is not None and not SID_SHAPE.fullmatch(sid)):
            raise BoshBodyInvalid()
        session = None
        if sid is not None:
            session = self._track_bosh(admission, url, sid, rid, parsed.terminates)
        else:
            # A new session (a running one's requests carry its sid): see `_proxy`.
            self._pipeline.ensure_memory()
        if parsed.children and self.guarding is not None:
            # A body outside a tracked session (its first, its last) is judged all the same,
            # by a guard of its own: it may not address another room either.
            wire = await self.guarding.wire_of_body(
                admission, session.wire if session is not None else None
            )
            if session is not None:
                if session.wire is None:
                    wire.connected()  # a BOSH session new to this replica
                session.wire = wire
            judged = self.guarding.judge_body(
                wire,
                body,
                ((child.start, child.end) for child in parsed.children),
                session.reply if session is not None else None,
            )
            if judged is None:
                await self._end_bosh(send, session, admission, rid)
                return
            body = judged
        if session is not None and session.wire is not None:
            # Any of the session's responses may carry the guard's errors: the one held
            # longest is usually answered first. Asked for uncompressed, so that it can.
            send = session.answering(send)
            headers = [(n, v) for n, v in headers if n.lower() != b"accept-encoding"]
        await self._http.relay(scope, receive, send, url, headers, body=body)

    async def _end_bosh(
        self, send: Send, session: BoshSession | None, admission: Admission, rid: int
    ) -> None:
        """A BOSH body (request `rid`) held what no client sends: the session ends on prosody,
        and the browser is told its session is over (XEP-0124 §17.2: a terminal binding
        condition)."""
        if session is not None:
            self.registry.unregister(admission.id, session)
            # Prosody never saw this request: the terminate takes its number.
            await session.close("guard", rid=rid)
        payload = (
            b"<body type='terminate' condition='policy-violation'"
            b" xmlns='http://jabber.org/protocol/httpbind'/>"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/xml; charset=utf-8"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _end_bosh_sessions(
        self, admission: Admission, guarding: WireGuarding, condition: str
    ) -> None:
        """End every BOSH session of `admission` for a body no client sends, each counted and
        logged with the body's stream error `condition` as a WebSocket stream's end is."""
        sessions = [
            c for c in self.registry.connections(admission.id) if isinstance(c, BoshSession)
        ]
        for session in sessions:
            self.registry.unregister(admission.id, session)
            guarding.ended(condition)
        await asyncio.gather(*(s.close("guard") for s in sessions), return_exceptions=True)

    def _track_bosh(
        self, admission: Admission, url: str, sid: str, rid: int, ending: bool
    ) -> BoshSession | None:
        for connection in self.registry.connections(admission.id):
            if isinstance(connection, BoshSession) and connection.sid == sid:
                connection.saw(rid)
                if ending:
                    self.registry.unregister(admission.id, connection)
                return connection
        if ending:
            return None
        session = BoshSession(self._http_client, url, sid, rid)
        # The sid names the session's lease: its requests may reach any replica.
        for old in self.registry.register(admission.id, session, holder=f"bosh:{sid}"):
            self._in_background(old.close(REPLACED))
        self._claim_lease(admission)
        return session

    def _claim_lease(self, admission: Admission) -> None:
        slot = self.registry.signalling(admission.id)
        if slot is not None:
            self._in_background(self.reconciler.claim(admission, slot))

    async def _cookie_access(self, scope: Scope, now: float) -> Admission:
        """The live admission the browser's cookie names: from this process's recent reads
        (gateway/proxy/live_admissions.py) or the store."""
        secret = read_cookie(scope, self._cookie)
        if not secret or COOKIE_SECRET_SHAPE.fullmatch(secret) is None:
            raise NotAdmitted()
        admission_id = admission_id_for(secret)
        known = self._live.get(admission_id, now)
        if known is not None:
            return known
        generation = self._live.generation
        admission = await self._pipeline.live(admission_id, now)
        self._live.keep(admission, generation)
        return admission

    async def _signalling_access(self, scope: Scope, now: float) -> tuple[Admission, str]:
        """The ticket alone admits here (mobile apps carry no cookie), but only while its admission
        is live and for the ticket's own room. The upstream sees only verified values."""
        query = parse_signalling_query(scope.get("query_string", b""))
        claims = self._tickets.verify(query.token, now)
        if query.room is not None and query.room != claims.room:
            raise TicketInvalid()
        admission = await self._pipeline.live(claims.admission_id, now)
        if admission.room != claims.room:
            raise TicketInvalid()
        return admission, upstream_signalling_query(claims.room, query.token, query.previd)

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        url: str,
        headers: list[tuple[bytes, bytes]],
        admission: Admission,
        *,
        signalling: bool,
    ) -> None:
        connect_message = await receive()
        if connect_message["type"] != "websocket.connect":
            return
        # Before the upstream is opened: the room's rules are read first (never an error).
        guarding = self.guarding if signalling else None
        wire = await guarding.wire(admission) if guarding is not None else None
        ws_url = "ws" + url.removeprefix("http")
        upstream = await open_upstream(
            ws_url,
            scope,
            headers,
            max_message_bytes=self._settings.limits.max_websocket_message_bytes,
            open_timeout=self._settings.jitsi.connect_timeout_seconds,
        )
        socket = RelayedSocket(upstream, send, signalling=signalling)
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
            for old in self.registry.register(admission.id, socket):
                await old.close(REPLACED)
            if signalling:
                self._claim_lease(admission)
            if guarding is None or wire is None:
                await relay(socket, upstream, receive, send)
                return
            guarding.opened(wire)
            try:
                await relay(socket, upstream, receive, send, wire)
            finally:
                guarding.closed(wire)
        finally:
            self.registry.unregister(admission.id, socket)
            with contextlib.suppress(Exception):
                await upstream.close()
