"""The way into a room for people without an invite, and the one place where a verified
identity becomes a response: an admission cookie and the meeting, or a place in the lobby.

`/_meetgate/enter/<room>` offers exactly the paths the room's policy allows: sign-in with an
OpenID Connect provider, an e-mail code, or asking a host in the lobby.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.pipeline import AdmissionPipeline, Admitted, LobbyRequired
from gateway.admission.policy import offered_paths
from gateway.admission.rooms import current_room, is_room_name
from gateway.edge.languages import jitsi_query, use_room_language
from gateway.edge.requests import ENTER_PREFIX, cookie_name, request_id
from gateway.edge.templating import render
from gateway.errors import ApprovalRequired, NotAdmitted, RoomNotFound
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import Admission, Role, Room
from gateway.tickets import TicketAuthority


def client_addr(request: Request) -> str:
    """The address the gate resolved for this request (trusted proxies considered)."""
    return str(request.scope.get("state", {}).get("client_addr", "unknown"))


def meeting_url(room: str, ticket: str) -> str:
    # The fragment never reaches a server log or a Referer header. Jitsi opens in the language
    # the visitor chose here, if they chose one.
    return f"/{room}{jitsi_query()}#jwt={ticket}"


@dataclass(frozen=True, slots=True)
class Entered:
    """What `Entrance.finish` answered: the way into the meeting, or a place in the lobby."""

    response: Response


class LobbyDoor(Protocol):
    """Queues a person a host must let in, and answers with the page they wait on."""

    async def park(self, request: Request, verified: VerifiedIdentity, room: Room) -> Response: ...


class Entrance:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        pipeline: AdmissionPipeline,
        tickets: TicketAuthority,
    ) -> None:
        self._settings = settings
        self._store = store
        self._pipeline = pipeline
        self._tickets = tickets
        self._cookie = cookie_name(settings)
        self.lobby: LobbyDoor | None = None

    def admitted(self, admitted: Admitted, *, to_dashboard: bool = False) -> Response:
        """Set the admission cookie and send the browser on: to the meeting with a fresh
        ticket, or (a host who asked for it) to the host dashboard."""
        now = time.time()
        admission = admitted.admission
        response = self.back_in(admission, to_dashboard=to_dashboard)
        response.set_cookie(
            self._cookie,
            admitted.cookie_secret,
            max_age=max(1, int(admission.expires_at - now)),
            path="/",
            secure=self._settings.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    def back_in(self, admission: Admission, *, to_dashboard: bool = False) -> RedirectResponse:
        """Send a browser holding the live `admission` on: to the meeting with a fresh ticket,
        or (a host who asked for it) to the host dashboard."""
        return RedirectResponse(self.destination(admission, to_dashboard=to_dashboard), 303)

    def destination(self, admission: Admission, *, to_dashboard: bool = False) -> str:
        """Where `back_in` sends a browser holding `admission`."""
        if to_dashboard and admission.role is Role.HOST:
            return f"/_meetgate/host/{admission.room}"
        return meeting_url(admission.room, self._tickets.issue(admission, time.time()))

    async def waiting_room(self, request: Request, demand: LobbyRequired) -> Response:
        """Where a LobbyRequired from any path ends: a place in the room's lobby."""
        room = await self._store.get_room(demand.room)
        if room is None:
            raise RoomNotFound()
        if self.lobby is None:
            raise ApprovalRequired()
        return await self.lobby.park(request, demand.verified, room)

    async def finish(
        self, request: Request, verified: VerifiedIdentity, room: Room, *, approved: bool = False
    ) -> Response:
        """Admit `verified` to `room` (policy, bans, locks) or queue them in the lobby."""
        try:
            admitted = await self._pipeline.enter(
                verified, room, client_addr(request), time.time(), approved=approved
            )
        except LobbyRequired as demand:
            return await self.waiting_room(request, demand)
        return self.admitted(admitted)

    async def room_for_entry(self, name: str) -> Room:
        """The room a public room link leads to now (following moves); RoomNotFound else."""
        if not is_room_name(name):
            raise RoomNotFound()
        room = await current_room(self._store, name)
        if room is None:
            raise RoomNotFound()
        return room

    async def room_with_gate_page(self, name: str, client_addr: str) -> Room:
        """The room whose gate page `/_meetgate/enter/<name>` shows. Each look is charged
        against the address's and network's limits, and a room that does not exist is refused
        exactly as one open to invitees only (NotAdmitted): the page is no free oracle for which
        rooms exist."""
        await self._pipeline.charge_address(client_addr, name)
        try:
            room = await self.room_for_entry(name)
        except RoomNotFound:
            raise NotAdmitted() from None
        self._pipeline.room_seen(name)
        if not offered_paths(room.policy):
            raise NotAdmitted()
        return room


def create_entry_router(settings: Settings, entrance: Entrance) -> APIRouter:
    router = APIRouter()
    providers = {provider.name: provider.label for provider in settings.oidc}

    @router.get(ENTER_PREFIX + "/{room}", response_class=HTMLResponse)
    async def enter(request: Request, room: str) -> HTMLResponse:
        current = await entrance.room_with_gate_page(room, client_addr(request))
        # Only once the room is known to show this page: the refusal for an unknown room must
        # read exactly as the one for a closed room, in the visitor's language.
        use_room_language(request.scope, current.language)
        paths = offered_paths(current.policy)
        allowed = current.policy.oidc_providers or tuple(providers)
        page = render(
            "enter.html",
            room=current,
            oidc=[(name, providers[name]) for name in allowed if name in providers]
            if Path.OIDC in paths
            else [],
            email=Path.EMAIL in paths,
            lobby=Path.LOBBY in paths,
            asks_host=current.policy.lobby,
            request_id=request_id(request.scope),
        )
        return HTMLResponse(page)

    return router
