"""Meetgate's page routes: the join link, the home page, the ticket refresh, static assets, and
the public keys of RS256 tickets.

Routes are thin: parse, call the admission pipeline or the ticket authority, render.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from gateway.admission.flood import ChallengeRequired, Proof
from gateway.admission.pipeline import AdmissionPipeline, LobbyRequired, Located
from gateway.admission.rooms import current_room, is_room_name
from gateway.edge.headers import SecurityHeaders
from gateway.edge.languages import asked, use_room_language
from gateway.edge.rendering import error_body, error_headers
from gateway.edge.requests import LOCATED_INVITE, cookie_name, read_cookie, request_id
from gateway.edge.templating import render, static_asset
from gateway.errors import (
    CrossSiteRequest,
    InvalidInput,
    InviteExpired,
    InviteUsedUp,
    MeetgateError,
    NotAdmitted,
    NotFound,
)
from gateway.i18n import N_
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import Admission, Role
from gateway.tickets import TicketAuthority
from gateway.web.entry import Entrance, client_addr, meeting_url
from gateway.web.forms import read_form


def _html(page: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status_code=status)


def located_by_gate(request: Request) -> Located | None:
    """The invite the gate found for this join link before passing the request on."""
    located = request.scope.get("state", {}).get(LOCATED_INVITE)
    return located if isinstance(located, Located) else None


def speak_the_links_room(request: Request) -> None:
    """A join link's pages, its refusals after the invite was found included, are in the
    language of the room it leads to when the visitor chose none."""
    located = located_by_gate(request)
    if located is not None:
        use_room_language(request.scope, located.room.language)


def same_origin(request: Request, public_url: str) -> bool:
    """A form post must come from Meetgate's own pages: Origin (or Sec-Fetch-Site) says so."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    if origin == "null":
        # Our pages' `Referrer-Policy: no-referrer` makes browsers send `Origin: null` on their
        # own posts; then only the browser-set Sec-Fetch-Site can vouch for them.
        return site == "same-origin"
    if origin is None:
        return True
    expected = urlsplit(public_url)
    given = urlsplit(origin)
    return (given.scheme, given.netloc) == (expected.scheme, expected.netloc)


def create_pages_app(
    settings: Settings,
    store: Store,
    pipeline: AdmissionPipeline,
    tickets: TicketAuthority,
    entrance: Entrance,
    routers: Sequence[APIRouter] = (),
) -> SecurityHeaders:
    """The pages app; `routers` (the host dashboard) share its error pages and headers."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    cookie = cookie_name(settings)

    @app.exception_handler(MeetgateError)
    async def _meetgate_error(request: Request, error: MeetgateError) -> Response:
        rid = request_id(request.scope)
        accept = request.headers.get("accept", "")
        body, content_type = error_body(error, rid, as_json="application/json" in accept)
        headers = error_headers(error, rid, content_type, secure=settings.secure)
        return Response(
            body,
            status_code=error.status,
            headers={k.decode(): v.decode() for k, v in headers},
        )

    @app.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> Response:
        return await _meetgate_error(request, NotFound())

    @app.exception_handler(405)
    async def _bad_method(request: Request, _: Exception) -> Response:
        return await _meetgate_error(request, NotFound())

    @app.exception_handler(RequestValidationError)
    async def _unreadable(request: Request, _: Exception) -> Response:
        # A query value a route cannot take (a room name too long): the error page, not
        # FastAPI's JSON echoing what was sent.
        unreadable = InvalidInput(N_("This address carries a value Meetgate cannot read."))
        return await _meetgate_error(request, unreadable)

    async def held_through_link(request: Request, token: str, now: float) -> Admission | None:
        """This browser's own live admission through the join link `token`, if it holds one."""
        return await pipeline.held_through(
            token,
            read_cookie(request.scope, cookie),
            client_addr(request),
            now,
            located=located_by_gate(request),
        )

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        return _html(render("home.html", request_id=request_id(request.scope)))

    @app.get("/j/{token}", response_class=HTMLResponse)
    async def join_landing(request: Request, token: str) -> Response:
        # Showing the page changes nothing: link previewers in chat apps must not burn an invite.
        now = time.time()
        speak_the_links_room(request)
        try:
            invite, room = await pipeline.preview(
                token, client_addr(request), now, located=located_by_gate(request)
            )
        except (InviteUsedUp, InviteExpired):
            held = await held_through_link(request, token, now)
            if held is None:
                raise
            return entrance.back_in(held)
        page = render(
            "join.html",
            room_title=room.title,
            invitee=invite.name,
            is_host=invite.role is Role.HOST,
            token=token,
            uses_left=invite.max_uses - invite.uses,
            request_id=request_id(request.scope),
        )
        return _html(page)

    @app.post("/j/{token}")
    async def join(request: Request, token: str) -> Response:
        speak_the_links_room(request)
        if not same_origin(request, settings.public_url):
            raise CrossSiteRequest()
        # `next=dashboard`: the host invite page's second button, straight to the dashboard.
        form = await read_form(request)
        wants_dashboard = form.get("next") == "dashboard"
        now = time.time()
        proof = Proof(form["pow_token"], form.get("answer", "")) if "pow_token" in form else None
        try:
            admitted = await pipeline.redeem(
                token, client_addr(request), now, proof, located=located_by_gate(request)
            )
        except LobbyRequired as demand:
            return await entrance.waiting_room(request, demand)
        except (InviteUsedUp, InviteExpired):
            held = await held_through_link(request, token, now)
            if held is None:
                raise
            return entrance.back_in(held, to_dashboard=wants_dashboard)
        except ChallengeRequired as demand:
            fields = {"next": "dashboard"} if wants_dashboard else {}
            page = render(
                "challenge.html",
                action=f"/j/{token}",
                challenge=demand.challenge,
                fields=fields,
                request_id=request_id(request.scope),
            )
            return _html(page)
        return entrance.admitted(admitted, to_dashboard=wants_dashboard)

    @app.get("/_meetgate/ticket")
    async def fresh_ticket(
        request: Request, room: Annotated[str, Query(max_length=64)] = ""
    ) -> Response:
        """Jitsi's `tokenAuthUrl`: a fresh ticket, only while the browser's admission is live."""
        now = time.time()
        admission = await pipeline.for_new_ticket(read_cookie(request.scope, cookie), now)
        if room and not is_room_name(room):
            raise NotAdmitted()
        if room and room != admission.room:
            # The meeting moved: a browser asking for the old room follows its admission.
            current = await current_room(store, room)
            if current is None or current.name != admission.room:
                raise NotAdmitted()
        if not asked.get():
            # Jitsi Meet reopens in the room's default language, as it first opened.
            room_now = await store.get_room(admission.room)
            if room_now is not None:
                use_room_language(request.scope, room_now.language)
        return RedirectResponse(meeting_url(admission.room, tickets.issue(admission, now)), 303)

    @app.get("/_meetgate/health")
    async def health() -> PlainTextResponse:
        await store.ping()
        return PlainTextResponse("ok")

    @app.get("/_meetgate/keys/{name}")
    async def public_key(name: str) -> Response:
        """RS256: a ticket key's public half, where prosody's `asap_key_server` points
        (`<public or internal URL>/_meetgate/keys`). Public data; 404 for any other name."""
        pem = tickets.public_key(name)
        if pem is None:
            raise NotFound()
        # A kid names one key for good (rotation adds a kid), so the answer never changes.
        return Response(
            pem,
            media_type="application/x-pem-file",
            headers={"cache-control": "public, max-age=3600"},
        )

    @app.get("/_meetgate/static/{name}")
    async def static(name: str) -> Response:
        asset = static_asset(name)
        if asset is None:
            raise NotFound()
        body, content_type = asset
        return Response(
            body, media_type=content_type, headers={"cache-control": "public, max-age=3600"}
        )

    # After the pages' own routes: a join link, the route a flood and every attendee take, is
    # matched first. No router's path has the shape of one of these.
    for router in routers:
        app.include_router(router)
    return SecurityHeaders(app, secure=settings.secure)
