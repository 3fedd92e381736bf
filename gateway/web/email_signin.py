"""The e-mail code pages: ask for a code (`…/send`), then enter it (`…/verify`) and go in.

Thin over `EmailCodes`: parse the form, call, render. Asking for a code answers with the same
page whether or not the address may join; the e-mail is written in the language of that page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.admission.email_codes import (
    MAX_ADDRESS_CHARS,
    CodeWrong,
    EmailCodeError,
    EmailCodes,
    normalise_address,
)
from gateway.admission.flood import ChallengeRequired
from gateway.edge.languages import current as current_language
from gateway.edge.languages import use_room_language
from gateway.edge.requests import EMAIL_PREFIX, request_id, same_origin
from gateway.edge.templating import render
from gateway.errors import CrossSiteRequest
from gateway.i18n import translations
from gateway.settings import Settings
from gateway.store.records import Room
from gateway.web.challenge import Challenge, challenge_page, proof_in
from gateway.web.entry import Entered, Entrance, client_addr
from gateway.web.forms import read_form


@dataclass(frozen=True, slots=True)
class CodePage:
    """The page to enter the code on, saying what was wrong with the last one if anything."""

    room: Room
    address: str
    name: str = ""
    error: EmailCodeError | None = None


EmailAnswer = CodePage | Challenge | Entered


class EmailPages:
    """The two e-mail code routes and what they share."""

    def __init__(self, settings: Settings, entrance: Entrance, codes: EmailCodes) -> None:
        self._settings = settings
        self._entrance = entrance
        self._codes = codes
        self._minutes = max(1, codes.settings.ttl_seconds // 60)

    async def send_code(self, request: Request, room: str) -> Response:
        return self._respond(request, await self._send(request, room))

    async def verify_code(self, request: Request, room: str) -> Response:
        return self._respond(request, await self._verify(request, room))

    async def _posted(self, request: Request, room: str) -> tuple[Room, dict[str, str]]:
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        current = await self._entrance.room_for_entry(room)
        use_room_language(request.scope, current.language)
        return current, await read_form(request)

    async def _send(self, request: Request, room: str) -> EmailAnswer:
        current, form = await self._posted(request, room)
        raw_address = form.get("email", "")
        try:
            address = await self._codes.request(
                current,
                raw_address,
                client_addr(request),
                time.time(),
                proof_in(form),
                language=current_language.get(),
            )
        except ChallengeRequired as demand:
            fields = {"email": raw_address[:MAX_ADDRESS_CHARS]}
            return Challenge(f"{EMAIL_PREFIX}/{current.name}/send", demand, fields)
        return CodePage(current, address)

    async def _verify(self, request: Request, room: str) -> EmailAnswer:
        current, form = await self._posted(request, room)
        raw_address, name = form.get("email", ""), form.get("name", "")
        try:
            verified = await self._codes.verify(
                current,
                raw_address,
                form.get("code", ""),
                client_addr(request),
                time.time(),
                name=name,
                proof=proof_in(form),
            )
        except ChallengeRequired as demand:
            fields = {key: form.get(key, "") for key in ("email", "code", "name")}
            return Challenge(f"{EMAIL_PREFIX}/{current.name}/verify", demand, fields)
        except EmailCodeError as refused:
            # The address was read before any code error is raised.
            address = normalise_address(raw_address)
            return CodePage(current, address, name=name, error=refused)
        return Entered(await self._entrance.finish(request, verified, current))

    def _respond(self, request: Request, answer: EmailAnswer) -> Response:
        """The one place an e-mail code route's answer becomes HTTP."""
        if isinstance(answer, Entered):
            return answer.response
        if isinstance(answer, Challenge):
            return challenge_page(request.scope, answer)
        return self._code_page(request, answer)

    def _code_page(self, request: Request, shown: CodePage) -> HTMLResponse:
        error = shown.error
        page = render(
            "email_code.html",
            room=shown.room,
            email=shown.address,
            display_name=shown.name,
            digits=self._codes.settings.digits,
            minutes=self._minutes,
            error=error.shown(translations(current_language.get()).gettext) if error else None,
            can_retry=error is None or isinstance(error, CodeWrong),
            request_id=request_id(request.scope),
        )
        return HTMLResponse(page, status_code=error.status if error else 200)


def create_email_router(settings: Settings, entrance: Entrance, codes: EmailCodes) -> APIRouter:
    """The e-mail code routes under /_meetgate/email/<room>; see `EmailPages`."""
    pages = EmailPages(settings, entrance, codes)
    router = APIRouter()
    router.add_api_route(EMAIL_PREFIX + "/{room}/send", pages.send_code, methods=["POST"])
    router.add_api_route(EMAIL_PREFIX + "/{room}/verify", pages.verify_code, methods=["POST"])
    return router
