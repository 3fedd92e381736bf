"""The hot page routes as plain ASGI, answered before the pages' FastAPI app: the join link's
form (POST /j/<token>) and Jitsi's ticket refresh (GET /_meetgate/ticket).

Each route is a small function that returns its outcome as a value (a redirect, a refusal, or a
response another part of the pages made: the lobby's, the proof-of-work page); one function
sends any of them. Refusals read exactly as the FastAPI app's error handler renders them.
"""

from __future__ import annotations

import http.cookies
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission.flood import ChallengeRequired
from gateway.admission.pipeline import COOKIE_SECRET_SHAPE, AdmissionPipeline, LobbyRequired
from gateway.admission.rooms import current_room, is_room_name
from gateway.edge.languages import asked, use_room_language
from gateway.edge.rendering import error_body, error_headers
from gateway.edge.requests import (
    REFUSED_ATTEMPT,
    cookie_name,
    header,
    read_cookie,
    request_id,
    same_origin,
)
from gateway.errors import (
    CrossSiteRequest,
    InvalidInput,
    InviteExpired,
    InviteUsedUp,
    MeetgateError,
    NotAdmitted,
)
from gateway.i18n import N_
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import Admission
from gateway.tickets import TicketAuthority
from gateway.web.challenge import Challenge, challenge_page, proof_in
from gateway.web.entry import Entrance, meeting_url
from gateway.web.forms import read_form

JOIN_PREFIX = "/j/"
TICKET_PATH = "/_meetgate/ticket"
# FastAPI's validation of the ticket route's `room` query value, kept.
MAX_ROOM_QUERY_CHARS = 64
# What starlette's RedirectResponse leaves unquoted in a location.
_LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"


@dataclass(frozen=True, slots=True)
class Redirect:
    """303 to `location`, setting the admission cookie `cookie` (a Set-Cookie value) if any."""

    location: str
    cookie: bytes | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    error: MeetgateError


@dataclass(frozen=True, slots=True)
class Delegated:
    """A response another part of the pages made (the lobby's, the proof-of-work page)."""

    response: Response


Answer = Redirect | Refusal | Delegated


def admission_cookie(name: str, secret: str, admission: Admission, *, secure: bool) -> bytes:
    """The Set-Cookie value of an admission's cookie, as `Entrance.admitted` sets it."""
    cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    cookie[name] = secret
    cookie[name]["max-age"] = max(1, int(admission.expires_at - time.time()))
    cookie[name]["path"] = "/"
    if secure:
        cookie[name]["secure"] = True
    cookie[name]["httponly"] = True
    cookie[name]["samesite"] = "lax"
    return cookie.output(header="").strip().encode("latin-1")


class JoinRoutes:
    """The join POST and the ticket refresh, in front of `pages` (everything else)."""

    def __init__(
        self,
        pages: ASGIApp,
        *,
        settings: Settings,
        store: Store,
        pipeline: AdmissionPipeline,
        tickets: TicketAuthority,
        entrance: Entrance,
    ) -> None:
        self._pages = pages
        self._settings = settings
        self._store = store
        self._pipeline = pipeline
        self._tickets = tickets
        self._entrance = entrance
        self._cookie = cookie_name(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            method = scope["method"]
            if method == "POST" and path.startswith(JOIN_PREFIX):
                token = path.removeprefix(JOIN_PREFIX)
                if token and "/" not in token:
                    answer = await self._answer(self.join(scope, receive, token))
                    await self._send(scope, receive, send, answer, join=True)
                    return
            elif method == "GET" and path == TICKET_PATH:
                answer = await self._answer(self.ticket(scope))
                await self._send(scope, receive, send, answer)
                return
        await self._pages(scope, receive, send)

    @staticmethod
    async def _answer(route: Coroutine[Any, Any, Answer]) -> Answer:
        """The route's answer; a refusal raised on the way is one too."""
        try:
            return await route
        except MeetgateError as error:
            return Refusal(error)

    async def join(self, scope: Scope, receive: Receive, token: str) -> Answer:
        """The join link's form: count a use of the invite and admit its holder, or say why not.
        Its pages are in the language of its room. A link this replica knows nothing of is
        looked up with the join itself, in one store call, once the form is read (a request
        from another site: looked up first, and an unknown link refused before anything is
        read)."""
        client_addr = str(scope["state"].get("client_addr", "unknown"))
        cross_site = not same_origin(scope, self._settings.public_url)
        located = self._pipeline.known_link(token)
        if located is None and cross_site:
            located = await self._pipeline.locate(token, client_addr)
        if located is not None:
            use_room_language(scope, located.room.language)
        if cross_site:
            raise CrossSiteRequest()
        form = await read_form(Request(scope, receive))
        # `next=dashboard`: the host invite page's second button, straight to the dashboard.
        wants_dashboard = form.get("next") == "dashboard"
        now = time.time()
        cookie = read_cookie(scope, self._cookie)
        if cookie is not None and COOKIE_SECRET_SHAPE.fullmatch(cookie) is not None:
            # This browser may be in the meeting through this very link already (the form sent
            # again, the host page's second button after the first): it goes back in as itself,
            # as it would once the link is used up, not in again as "Name (2)" by another use;
            # one a host removed is told so (AdmissionRevoked), counting no use.
            # One store read more for a form that carries a cookie; what this replica knows of
            # the link may be seconds old, which lets in no one a ticket refresh would not.
            located = located or await self._pipeline.locate(token, client_addr)
            held = await self._pipeline.held_through(token, cookie, client_addr, now, located)
            if held is not None:
                return Redirect(self._entrance.destination(held, to_dashboard=wants_dashboard))
        try:
            admitted = await self._pipeline.redeem(
                token,
                client_addr,
                now,
                proof_in(form),
                located,
                room_language=lambda tag: use_room_language(scope, tag),
            )
        except LobbyRequired as demand:
            return Delegated(await self._entrance.waiting_room(Request(scope, receive), demand))
        except (InviteUsedUp, InviteExpired):
            # Looked up afresh: the link's invite may have been revoked a moment ago.
            held = await self._pipeline.held_through(token, cookie, client_addr, now)
            if held is None:
                raise
            return Redirect(self._entrance.destination(held, to_dashboard=wants_dashboard))
        except ChallengeRequired as demand:
            fields = {"next": "dashboard"} if wants_dashboard else {}
            return Delegated(
                challenge_page(scope, Challenge(f"{JOIN_PREFIX}{token}", demand, fields))
            )
        admission = admitted.admission
        set_cookie = admission_cookie(
            self._cookie, admitted.cookie_secret, admission, secure=self._settings.secure
        )
        location = self._entrance.destination(admission, to_dashboard=wants_dashboard)
        return Redirect(location, set_cookie)

    async def ticket(self, scope: Scope) -> Answer:
        """Jitsi's `tokenAuthUrl`: a fresh ticket, only while the browser's admission is live."""
        room = ""
        for key, value in parse_qsl(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        ):
            if key == "room":
                room = value
        if len(room) > MAX_ROOM_QUERY_CHARS:
            raise InvalidInput(N_("This address carries a value Meetgate cannot read."))
        now = time.time()
        admission = await self._pipeline.for_new_ticket(read_cookie(scope, self._cookie), now)
        if room and not is_room_name(room):
            raise NotAdmitted()
        if room and room != admission.room:
            # The meeting moved: a browser asking for the old room follows its admission.
            current = await current_room(self._store, room)
            if current is None or current.name != admission.room:
                raise NotAdmitted()
        if not asked.get():
            # Jitsi Meet reopens in the room's default language, as it first opened.
            room_now = await self._store.get_room(admission.room)
            if room_now is not None:
                use_room_language(scope, room_now.language)
        return Redirect(meeting_url(admission.room, self._tickets.issue(admission, now)))

    async def _send(
        self, scope: Scope, receive: Receive, send: Send, answer: Answer, *, join: bool = False
    ) -> None:
        if isinstance(answer, Redirect):
            headers = [
                (b"content-length", b"0"),
                (b"location", quote(answer.location, safe=_LOCATION_SAFE).encode("latin-1")),
            ]
            if answer.cookie is not None:
                headers.append((b"set-cookie", answer.cookie))
            await send({"type": "http.response.start", "status": 303, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        elif isinstance(answer, Refusal):
            if join:
                # For the access log, which samples refused join attempts in a flood.
                scope["state"][REFUSED_ATTEMPT] = True
            await self._refuse(scope, send, answer.error)
        else:
            await answer.response(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, error: MeetgateError) -> None:
        """The page (or JSON) the pages app's error handler answers `error` with."""
        rid = request_id(scope)
        accept = header(scope, b"accept") or ""
        body, content_type = error_body(error, rid, as_json="application/json" in accept)
        headers = error_headers(error, rid, content_type, secure=self._settings.secure)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
