"""The e-mail code pages: ask for a code (`…/send`), then enter it (`…/verify`) and go in.

Thin over `EmailCodes`: parse the form, call, render. Asking for a code answers with the same
page whether or not the address may join; the e-mail is written in the language of that page.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.admission.email_codes import (
    MAX_ADDRESS_CHARS,
    CodeWrong,
    EmailCodeError,
    EmailCodes,
    normalise_address,
)
from gateway.admission.flood import ChallengeRequired, Proof
from gateway.edge.languages import current as current_language
from gateway.edge.languages import use_room_language
from gateway.edge.requests import EMAIL_PREFIX, request_id
from gateway.edge.templating import render
from gateway.errors import CrossSiteRequest
from gateway.i18n import translations
from gateway.settings import Settings
from gateway.store.records import Room
from gateway.web.entry import Entrance, client_addr
from gateway.web.forms import read_form
from gateway.web.pages import same_origin


def _proof(form: dict[str, str]) -> Proof | None:
    return Proof(form["pow_token"], form.get("answer", "")) if "pow_token" in form else None


def create_email_router(settings: Settings, entrance: Entrance, codes: EmailCodes) -> APIRouter:
    router = APIRouter()
    minutes = max(1, codes.settings.ttl_seconds // 60)

    def code_page(
        request: Request,
        room: Room,
        address: str,
        *,
        name: str = "",
        error: EmailCodeError | None = None,
    ) -> HTMLResponse:
        page = render(
            "email_code.html",
            room=room,
            email=address,
            display_name=name,
            digits=codes.settings.digits,
            minutes=minutes,
            error=error.shown(translations(current_language.get()).gettext) if error else None,
            can_retry=error is None or isinstance(error, CodeWrong),
            request_id=request_id(request.scope),
        )
        return HTMLResponse(page, status_code=error.status if error else 200)

    def challenge_page(
        request: Request, action: str, demand: ChallengeRequired, fields: dict[str, str]
    ) -> HTMLResponse:
        page = render(
            "challenge.html",
            action=action,
            challenge=demand.challenge,
            fields=fields,
            request_id=request_id(request.scope),
        )
        return HTMLResponse(page)

    async def posted(request: Request, room: str) -> tuple[Room, dict[str, str]]:
        if not same_origin(request, settings.public_url):
            raise CrossSiteRequest()
        current = await entrance.room_for_entry(room)
        use_room_language(request.scope, current.language)
        return current, await read_form(request)

    @router.post(EMAIL_PREFIX + "/{room}/send")
    async def send_code(request: Request, room: str) -> Response:
        current, form = await posted(request, room)
        raw_address = form.get("email", "")
        try:
            address = await codes.request(
                current,
                raw_address,
                client_addr(request),
                time.time(),
                _proof(form),
                language=current_language.get(),
            )
        except ChallengeRequired as demand:
            fields = {"email": raw_address[:MAX_ADDRESS_CHARS]}
            return challenge_page(request, f"{EMAIL_PREFIX}/{current.name}/send", demand, fields)
        return code_page(request, current, address)

    @router.post(EMAIL_PREFIX + "/{room}/verify")
    async def verify_code(request: Request, room: str) -> Response:
        current, form = await posted(request, room)
        raw_address, name = form.get("email", ""), form.get("name", "")
        try:
            verified = await codes.verify(
                current,
                raw_address,
                form.get("code", ""),
                client_addr(request),
                time.time(),
                name=name,
                proof=_proof(form),
            )
        except ChallengeRequired as demand:
            fields = {key: form.get(key, "") for key in ("email", "code", "name")}
            return challenge_page(request, f"{EMAIL_PREFIX}/{current.name}/verify", demand, fields)
        except EmailCodeError as refused:
            # The address was read before any code error is raised.
            address = normalise_address(raw_address)
            return code_page(request, current, address, name=name, error=refused)
        return await entrance.finish(request, verified, current)

    return router
