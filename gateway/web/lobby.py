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
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.responses import StreamingResponse

from gateway.admission.flood import ChallengeRequired, FloodGuard, Proof
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.limits import Attempt, RateLimiter
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
from gateway.edge.requests import LOBBY_PREFIX, read_cookie, request_id
from gateway.edge.templating import render
from gateway.errors import CrossSiteRequest, NotAllowed, RateLimited, RoomNotFound, StoreUnavailable
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import Room
from gateway.web.entry import Entrance, client_addr
from gateway.web.forms import read_form
from gateway.web.pages import same_origin

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
    """The lobby's routes under /_meetgate/lobby/<room>: knock (POST), the waiting page (GET,
    which also collects an approval), its JSON status, its event stream, and leaving."""
    router = APIRouter()
    streams: Counter[str] = Counter()

    def valid_room(room: str) -> str:
        if not is_room_name(room):
            raise RoomNotFound()
        return room

    async def held(request: Request, room: str) -> LobbyRequest:
        return await lobby.held(read_cookie(request.scope, door.cookie), valid_room(room))

    def page(request: Request, waiting: LobbyRequest, state: LobbyState, title: str) -> Response:
        body = render(
            "lobby_wait.html",
            state=state.value,
            room_name=waiting.room,
            room_title=title,
            person=waiting.name,
            message=waiting.message,
            wait_url=wait_path(waiting.room),
            status_url=f"{LOBBY_PREFIX}/{waiting.room}/status",
            events_url=f"{LOBBY_PREFIX}/{waiting.room}/events",
            leave_url=f"{LOBBY_PREFIX}/{waiting.room}/leave",
            enter_url=f"/_meetgate/enter/{waiting.room}",
            meeting_url=f"/_meetgate/ticket?room={waiting.room}",
            request_id=request_id(request.scope),
        )
        response = HTMLResponse(body, status_code=STATUS_OF_STATE.get(state, 200))
        if state in (LobbyState.DENIED, LobbyState.BANNED, LobbyState.EXPIRED):
            door.forget_cookie(response)
        return response

    @router.post(LOBBY_PREFIX + "/{room}")
    async def knock(request: Request, room: str) -> Response:
        """The gate page's 'Ask to be let in': a guest's typed name and optional message."""
        if not same_origin(request, settings.public_url):
            raise CrossSiteRequest()
        current = await entrance.room_for_entry(room)
        use_room_language(request.scope, current.language)
        form = await read_form(request)
        address = client_addr(request)
        now = time.time()
        proof = Proof(form["pow_token"], form.get("answer", "")) if "pow_token" in form else None
        try:
            await flood.check(proof, client_addr=address, room=current, now=now)
        except ChallengeRequired as demand:
            body = render(
                "challenge.html",
                action=f"{LOBBY_PREFIX}/{current.name}",
                challenge=demand.challenge,
                fields={k: form.get(k, "") for k in ("name", "message")},
                request_id=request_id(request.scope),
            )
            return HTMLResponse(body)
        await limiter.charge(Attempt(address, room=current.name))
        if Path.LOBBY not in offered_paths(current.policy):
            # Where the lobby is on top of sign-in or a code, a typed name is not enough.
            raise NotAllowed()
        name = clean_name(form.get("name", ""))
        request.state.lobby_message = lobby.clean_message(form.get("message", ""))
        request_no = new_request_id()
        verified = VerifiedIdentity(path=Path.LOBBY, subject=request_no, name=name, guest=True)
        return await entrance.finish(request, verified, current)

    @router.get(LOBBY_PREFIX + "/{room}/wait")
    async def wait(request: Request, room: str) -> Response:
        """The waiting page; once a host approved, the way into the meeting."""
        waiting = await held(request, room)
        now = time.time()
        state = waiting.state_at(now)
        found = await store.get_room(waiting.room)
        title = found.title if found is not None else waiting.room
        if found is not None:
            use_room_language(request.scope, found.language)
        if state is LobbyState.APPROVED and await lobby.collect(waiting, now):
            current = await current_room(store, waiting.room)
            if current is None:
                raise RoomNotFound()
            verified = replace(waiting.verified, name=shown_name(waiting.verified))
            response = await entrance.finish(request, verified, current, approved=True)
            door.forget_cookie(response)
            return response
        if state is LobbyState.APPROVED:
            # Another tab of this browser collected the approval a moment ago.
            state = LobbyState.ADMITTED
        return page(request, waiting, state, title)

    @router.get(LOBBY_PREFIX + "/{room}/status")
    async def status(request: Request, room: str) -> JSONResponse:
        """For the page's script when it cannot stream: where the request stands."""
        waiting = await held(request, room)
        state = waiting.state_at(time.time())
        return JSONResponse({"state": state.value, "next": wait_path(waiting.room)})

    @router.get(LOBBY_PREFIX + "/{room}/events")
    async def events(request: Request, room: str) -> Response:
        """Server-Sent Events: the request's state now and on every change, a heartbeat every
        couple of seconds, and an end after a minute (the browser reconnects by itself)."""
        waiting = await held(request, room)
        if streams[waiting.id] >= MAX_STREAMS_PER_REQUEST:
            raise RateLimited(STREAM_RETRY_MS / 1000)
        return StreamingResponse(
            _state_events(lobby, waiting, streams),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    @router.post(LOBBY_PREFIX + "/{room}/leave")
    async def leave(request: Request, room: str) -> Response:
        """Stop waiting: the request leaves the hosts' list."""
        if not same_origin(request, settings.public_url):
            raise CrossSiteRequest()
        await read_form(request)
        waiting = await held(request, room)
        await lobby.withdraw(waiting, time.time())
        response = RedirectResponse(f"/_meetgate/enter/{waiting.room}", status_code=303)
        door.forget_cookie(response)
        return response

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
