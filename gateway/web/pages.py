"""Meetgate's page routes: the join link's page, the home page, static assets, and the public
keys of RS256 tickets; the join link's form and the ticket refresh are plain ASGI in front of
them (gateway/web/join.py).

Routes are thin: parse, call the admission pipeline or the ticket authority, render.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admission.pipeline import AdmissionPipeline, Located
from gateway.edge.headers import SecurityHeaders
from gateway.edge.languages import use_room_language
from gateway.edge.rendering import error_body, error_headers
from gateway.edge.requests import LOCATED_INVITE, cookie_name, read_cookie, request_id
from gateway.edge.templating import render, static_asset
from gateway.errors import (
    InvalidInput,
    InviteExpired,
    InviteUsedUp,
    MeetgateError,
    NotFound,
)
from gateway.i18n import N_
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import Admission, Role
from gateway.tickets import TicketAuthority
from gateway.web.entry import Entrance, client_addr
from gateway.web.join import TICKET_PATH, JoinRoutes

# The pages a link previewer, a front's health check or Jitsi's ticket refresh may ask for with
# HEAD. FastAPI answers
# only the methods a route names, so these get GET's answer without its body (the lobby's event
# stream and the dashboard are left out: a HEAD there has nothing to learn).
HEAD_AS_GET = (
    "/j/",
    "/_meetgate/health",
    "/_meetgate/keys/",
    "/_meetgate/static/",
    TICKET_PATH,
)


class HeadAsGet:
    """HEAD on the home page, a join link's page, health, keys, static assets and the ticket
    refresh: GET's status and header fields (its length included), no body."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self._app(scope, receive, send)
            return
        if path != "/" and not path.startswith(HEAD_AS_GET):
            await self._app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self._app({**scope, "method": "GET"}, receive, without_body)


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
        if read_cookie(request.scope, cookie) is not None:
            # A browser a host removed through this link is told so, not shown its form again
            # (AdmissionRevoked); one that holds a live admission through it sees the form.
            await held_through_link(request, token, now)
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
    # The join link's form and the ticket refresh are answered before FastAPI is asked.
    join_routes = JoinRoutes(
        app,
        settings=settings,
        store=store,
        pipeline=pipeline,
        tickets=tickets,
        entrance=entrance,
    )
    return SecurityHeaders(HeadAsGet(join_routes), secure=settings.secure)
