"""The lobby's pages: asking a host to be let in, and the page a person waits on until a host
answers. Also the `LobbyDoor` every admission path hands a LobbyRequired to.

The waiting page updates itself (Server-Sent Events, else polling a JSON status) and, without
script, has a "Check again" button. Whichever way the browser checks, the plain GET of the page
is what collects an approval: it answers with the admission cookie and the way into the meeting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.responses import StreamingResponse

from gateway.admission.flood import FloodGuard
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.limits import RateLimiter
from gateway.admission.lobby import (
    Lobby,
    LobbyRequest,
    LobbyRequestUnknown,
    LobbyState,
    clean_name,
    new_request_id,
    request_lifetime,
    shown_name,
)
from gateway.admission.pipeline import AdmissionPipeline
from gateway.admission.policy import offered_paths
from gateway.admission.rooms import current_room, is_room_name
from gateway.edge.languages import use_room_language
from gateway.edge.requests import LOBBY_PREFIX, read_cookie, request_id, same_origin
from gateway.edge.templating import render
from gateway.errors import CrossSiteRequest, NotAllowed, RateLimited, RoomNotFound, StoreUnavailable
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import Room
from gateway.web.challenge import Challenge, EntryChecks, challenge_page, proof_in
from gateway.web.entry import Entered, Entrance, client_addr
from gateway.web.forms import read_form

# The event stream: how often it looks at the request, how often it says something at least,
# and how long one stream lasts before the browser's EventSource opens the next.
STREAM_CHECK_SECONDS = 1.0
STREAM_HEARTBEAT_SECONDS = 2.0
STREAM_LIFETIME_SECONDS = 60.0
STREAM_RETRY_MS = 2000
MAX_STREAMS_PER_REQUEST = 3
# The page's answer for each state a waiting person can see.
STATUS_OF_STATE = {
    LobbyState.WAITING: 200,
    LobbyState.ADMITTED: 200,
    LobbyState.DENIED: 403,
    LobbyState.BANNED: 403,
    LobbyState.EXPIRED: 410,
}


def lobby_cookie_name(settings: Settings) -> str:
    # Like the admission cookie: `__Host-` (which demands Secure) only over TLS.
    return "__Host-meetgate-lobby" if settings.secure else "meetgate-lobby"


def wait_path(room: str) -> str:
    return f"{LOBBY_PREFIX}/{room}/wait"


class LobbyPages:
    """The `LobbyDoor`: queues a person and sends their browser to the waiting page."""

    def __init__(
        self, settings: Settings, store: Store, pipeline: AdmissionPipeline, lobby: Lobby
    ) -> None:
        self._settings = settings
        self._store = store
        self._pipeline = pipeline
        self._lobby = lobby
        self.cookie = lobby_cookie_name(settings)

    async def park(self, request: Request, verified: VerifiedIdentity, room: Room) -> Response:
        now = time.time()
        # A browser asking again replaces its own earlier request instead of adding one.
        with contextlib.suppress(LobbyRequestUnknown):
            earlier = await self._lobby.held(read_cookie(request.scope, self.cookie), room.name)
            await self._lobby.withdraw(earlier, now)
        message = getattr(request.state, "lobby_message", "")
        queued = await self._lobby.queue(
            verified,
            identity=self._pipeline.identity_of(verified),
            room=room,
            client_addr=client_addr(request),
            message=message if isinstance(message, str) else "",
            now=now,
        )
        response = RedirectResponse(wait_path(room.name), status_code=303)
        response.set_cookie(
            self.cookie,
            queued.token,
            max_age=request_lifetime(self._settings.lobby),
            path="/",
            secure=self._settings.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    def forget_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie, path="/", secure=self._settings.secure, httponly=True, samesite="lax"
        )


@dataclass(frozen=True, slots=True)
class Waiting:
    """The waiting page, saying where the person's request stands."""

    request: LobbyRequest
    state: LobbyState
    title: str


LobbyAnswer = Waiting | Challenge | Entered


class LobbyRoutes:
    """The lobby's routes, one method each, and what they share: knock (POST), the waiting page
    (GET, which also collects an approval), its JSON status, its event stream, and leaving."""

    def __init__(
        self,
        settings: Settings,
        entrance: Entrance,
        lobby: Lobby,
        *,
        door: LobbyPages,
        store: Store,
        checks: EntryChecks,
    ) -> None:
        self._settings = settings
        self._entrance = entrance
        self._lobby = lobby
        self._door = door
        self._store = store
        self._checks = checks
        self._streams: Counter[str] = Counter()

    async def knock(self, request: Request, room: str) -> Response:
        """The gate page's 'Ask to be let in': a guest's typed name and optional message."""
        return self._respond(request, await self._knocked(request, room))

    async def wait(self, request: Request, room: str) -> Response:
        """The waiting page; once a host approved, the way into the meeting."""
        return self._respond(request, await self._where_it_stands(request, room))

    async def status(self, request: Request, room: str) -> JSONResponse:
        """For the page's script when it cannot stream: where the request stands."""
        waiting = await self._held(request, room)
        state = waiting.state_at(time.time())
        return JSONResponse({"state": state.value, "next": wait_path(waiting.room)})

    async def events(self, request: Request, room: str) -> Response:
        """Server-Sent Events: the request's state now and on every change, a heartbeat every
        couple of seconds, and an end after a minute (the browser reconnects by itself)."""
        waiting = await self._held(request, room)
        if self._streams[waiting.id] >= MAX_STREAMS_PER_REQUEST:
            raise RateLimited(STREAM_RETRY_MS / 1000)
        return StreamingResponse(
            _state_events(self._lobby, waiting, self._streams),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def leave(self, request: Request, room: str) -> Response:
        """Stop waiting: the request leaves the hosts' list."""
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        await read_form(request)
        waiting = await self._held(request, room)
        await self._lobby.withdraw(waiting, time.time())
        response = RedirectResponse(f"/_meetgate/enter/{waiting.room}", status_code=303)
        self._door.forget_cookie(response)
        return response

    async def _held(self, request: Request, room: str) -> LobbyRequest:
        if not is_room_name(room):
            raise RoomNotFound()
        return await self._lobby.held(read_cookie(request.scope, self._door.cookie), room)

    async def _knocked(self, request: Request, room: str) -> LobbyAnswer:
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        current = await self._entrance.room_for_entry(room)
        use_room_language(request.scope, current.language)
        form = await read_form(request)
        address = client_addr(request)
        demand = await self._checks.demand(
            proof_in(form), client_addr=address, room=current, now=time.time()
        )
        if demand is not None:
            fields = {k: form.get(k, "") for k in ("name", "message")}
            return Challenge(f"{LOBBY_PREFIX}/{current.name}", demand, fields)
        if Path.LOBBY not in offered_paths(current.policy):
            # Where the lobby is on top of sign-in or a code, a typed name is not enough.
            raise NotAllowed()
        name = clean_name(form.get("name", ""))
        request.state.lobby_message = self._lobby.clean_message(form.get("message", ""))
        request_no = new_request_id()
        verified = VerifiedIdentity(path=Path.LOBBY, subject=request_no, name=name, guest=True)
        return Entered(await self._entrance.finish(request, verified, current))

    async def _where_it_stands(self, request: Request, room: str) -> LobbyAnswer:
        waiting = await self._held(request, room)
        now = time.time()
        state = waiting.state_at(now)
        found = await self._store.get_room(waiting.room)
        title = found.title if found is not None else waiting.room
        if found is not None:
            use_room_language(request.scope, found.language)
        if state is LobbyState.APPROVED and await self._lobby.collect(waiting, now):
            return Entered(await self._enter_approved(request, waiting))
        if state is LobbyState.APPROVED:
            # Another tab of this browser collected the approval a moment ago.
            state = LobbyState.ADMITTED
        return Waiting(waiting, state, title)

    async def _enter_approved(self, request: Request, waiting: LobbyRequest) -> Response:
        """Into the meeting, where it is now, under the name the host saw."""
        current = await current_room(self._store, waiting.room)
        if current is None:
            raise RoomNotFound()
        verified = replace(waiting.verified, name=shown_name(waiting.verified))
        response = await self._entrance.finish(request, verified, current, approved=True)
        self._door.forget_cookie(response)
        return response

    def _respond(self, request: Request, answer: LobbyAnswer) -> Response:
        """The one place a lobby route's answer becomes HTTP."""
        if isinstance(answer, Entered):
            return answer.response
        if isinstance(answer, Challenge):
            return challenge_page(request.scope, answer)
        return self._waiting_page(request, answer)

    def _waiting_page(self, request: Request, shown: Waiting) -> Response:
        room = shown.request.room
        body = render(
            "lobby_wait.html",
            state=shown.state.value,
            room_name=room,
            room_title=shown.title,
            person=shown.request.name,
            message=shown.request.message,
            wait_url=wait_path(room),
            status_url=f"{LOBBY_PREFIX}/{room}/status",
            events_url=f"{LOBBY_PREFIX}/{room}/events",
            leave_url=f"{LOBBY_PREFIX}/{room}/leave",
            enter_url=f"/_meetgate/enter/{room}",
            meeting_url=f"/_meetgate/ticket?room={room}",
            request_id=request_id(request.scope),
        )
        response = HTMLResponse(body, status_code=STATUS_OF_STATE.get(shown.state, 200))
        if shown.state in (LobbyState.DENIED, LobbyState.BANNED, LobbyState.EXPIRED):
            self._door.forget_cookie(response)
        return response


def create_lobby_router(
    settings: Settings,
    entrance: Entrance,
    lobby: Lobby,
    *,
    door: LobbyPages,
    store: Store,
    limiter: RateLimiter,
    flood: FloodGuard,
) -> APIRouter:
    """The lobby's routes under /_meetgate/lobby/<room>; see `LobbyRoutes`."""
    checks = EntryChecks(flood, limiter)
    routes = LobbyRoutes(settings, entrance, lobby, door=door, store=store, checks=checks)
    router = APIRouter()
    router.add_api_route(LOBBY_PREFIX + "/{room}", routes.knock, methods=["POST"])
    router.add_api_route(LOBBY_PREFIX + "/{room}/wait", routes.wait, methods=["GET"])
    router.add_api_route(LOBBY_PREFIX + "/{room}/status", routes.status, methods=["GET"])
    router.add_api_route(LOBBY_PREFIX + "/{room}/events", routes.events, methods=["GET"])
    router.add_api_route(LOBBY_PREFIX + "/{room}/leave", routes.leave, methods=["POST"])
    return router


def _event(state: LobbyState, next_url: str) -> bytes:
    data = json.dumps({"state": state.value, "next": next_url})
    return f"event: status\ndata: {data}\n\n".encode()


async def _state_events(
    lobby: Lobby, waiting: LobbyRequest, streams: Counter[str]
) -> AsyncIterator[bytes]:
    next_url = wait_path(waiting.room)
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_LIFETIME_SECONDS
    last: LobbyState | None = None
    said_at = loop.time()
    streams[waiting.id] += 1
    try:
        yield f"retry: {STREAM_RETRY_MS}\n\n".encode()
        while True:
            try:
                current = await lobby.get(waiting.id)
            except StoreUnavailable:
                return
            state = current.state_at(time.time()) if current is not None else LobbyState.EXPIRED
            if state is not last:
                yield _event(state, next_url)
                last, said_at = state, loop.time()
            elif loop.time() - said_at >= STREAM_HEARTBEAT_SECONDS:
                yield b": waiting\n\n"
                said_at = loop.time()
            if state is not LobbyState.WAITING or loop.time() >= ends:
                return
            await asyncio.sleep(STREAM_CHECK_SECONDS)
    finally:
        streams[waiting.id] -= 1
        if streams[waiting.id] <= 0:
            del streams[waiting.id]
