"""The host dashboard's invitations page (issue 19), /_meetgate/host/<room>/invitations: the
registrations to review a page at a time, one person invited, a list imported, the sending of
each batch followed, the meeting's registration and time.

As the rest of the dashboard (gateway/host/dashboard.py): for the room's hosts only, posts from
the gate's own pages with the session's CSRF token, every action usable without script (approving
or denying asks first on a page of its own), JSON for the page's script. Routes parse, call
InvitationDesk and render; nothing here lists an address, and no route exports a list.
"""

from __future__ import annotations

import math
import re
import time
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile
from starlette.types import Message

from gateway.admission.invitations import BatchProgress
from gateway.admission.invite_import import MAX_FILE_BYTES
from gateway.admission.pipeline import AdmissionPipeline
from gateway.admission.registrations import Registration, RegistrationPage, RegistrationState
from gateway.edge.languages import current
from gateway.edge.rendering import wants_json
from gateway.edge.requests import cookie_name, read_cookie, request_id, same_origin
from gateway.edge.templating import render
from gateway.errors import BadRequest, CrossSiteRequest, InvalidInput, NotFound, RequestTooLarge
from gateway.host.dashboard import (
    HOST_PREFIX,
    Confirmation,
    CsrfTokens,
    dashboard_path,
    moment,
    room_view,
)
from gateway.host.invitations import (
    FLAGS,
    PAGE_SIZE,
    STATES,
    Answered,
    Imported,
    InvitationDesk,
    Link,
    registration_flags,
)
from gateway.host.meeting_form import meeting_from_form, meeting_view
from gateway.i18n import DEFAULT, N_, chosen, gettext
from gateway.settings import Settings
from gateway.store.records import Admission, Role, Room
from gateway.web.forms import MAX_FORM_BYTES, read_form

INVITATIONS = "invitations"
# One box a registration on the page (`pick.<id>`), and the form's own fields.
PICK = "pick."
ANSWER_FIELDS = PAGE_SIZE + 8
# The upload's body: the list at its largest and the form around it.
UPLOAD_OVERHEAD = 16 * 1024

# What the page says after a form without script led back to it (`?done=<key>`): fixed texts.
NOTICES = {
    "approve": N_(
        "The registrations are approved: their invitations are being sent (progress below)."
    ),
    "deny": N_("The registrations are denied."),
    "invite": N_("The invitation is being sent (progress below)."),
    "import": N_("The list's invitations are being sent (progress below)."),
    "meeting": N_("The meeting's settings are saved."),
    "nothing": N_("Nothing to do: none of those registrations was waiting."),
    "retried": N_("The failed invitations are being sent again (progress below)."),
    "revoked": N_(
        "The batch's invitations are revoked: their links no longer work, and those not sent"
        " yet will not go."
    ),
    "no_change": N_("Nothing to do: no invitation of that batch could be changed."),
}
# The flags as a host reads them ("looks like" is followed by the name it looks like when the
# registration says which).
FLAG_LABELS = {
    # Translators: a registration's flag on the host dashboard: this e-mail address was
    # admitted to this room (or one of its series) before
    "seen_address": N_("seen before"),
    # Translators: a registration's flag: someone with an address of this domain was admitted
    # to this room (or one of its series) before
    "seen_domain": N_("domain seen before"),
    # Translators: a registration's flag: the name looks like a host's or a participant's
    "looks_like": N_("looks like another name"),
    # Translators: a registration's flag: one of many registrations from one network in a
    # short time
    "burst": N_("burst from one network"),
    # Translators: a registration's flag: the person registered again and changed it
    "updated": N_("updated"),
}
STATE_LABELS = {
    # Translators: a registration's state on the host dashboard
    "waiting": N_("waiting"),
    "approved": N_("approved"),
    "denied": N_("denied"),
}
SCRIPT_MESSAGES = {
    "approve": N_("Approve {count} registrations and send their invitations?"),
    "deny": N_("Deny {count} registrations?"),
    "approve_all": N_("Approve every waiting registration matching the filter?"),
    "deny_all": N_("Deny every waiting registration matching the filter?"),
    "none_picked": N_("Tick the registrations first."),
    "progress": N_("{sent} sent, {failed} failed, {waiting} waiting of {total}"),
    "retry": N_("The mail server is not answering; next try at {time}."),
    "done": N_("done"),
    "lost_contact": N_("Lost contact with Meetgate; retrying."),
    "batch_retry": N_("Send the {count} failed invitations of this batch again?"),
    "batch_revoke": N_(
        "Revoke these {count} invitations? Their links stop working, and those not sent yet"
        " will not go."
    ),
    # A batch's buttons and what it revoked, as the script updates them.
    "retry_button": N_("Retry the {count} failed"),
    "revoke_button": N_("Revoke these {count} invitations"),
    "revoked": N_("{count} revoked"),
}
# A batch's actions on the page (`…/invitations/batches/<batch>/<action>`) and the notice each
# leads back to; a batch's id as the outbox makes it.
BATCH_ACTIONS = {"retry": "retried", "revoke": "revoked"}
BATCH_ID = re.compile(r"[0-9a-f]{16}")
ROLES = {"attendee": Role.ATTENDEE, "host": Role.HOST}


def shown(message: str, **values: object) -> str:
    translated = gettext(current.get(), message)
    return translated.format(**values) if values else translated


def invitations_path(room: str) -> str:
    return f"{dashboard_path(room)}/{INVITATIONS}"


def registration_view(item: Registration) -> dict[str, Any]:
    """What a host sees of a registration: never its address, its domain only."""
    return {
        "id": item.id,
        "name": item.name,
        "domain": item.domain,
        "note": item.note,
        "state": item.state.value,
        # Approved, its invitation not yet queued (the next reading of the room queues it).
        "pending": item.state is RegistrationState.APPROVED and item.inviting,
        "flags": registration_flags(item),
        # Whom "looks like" means: a name the room's hosts see anyway, and whose it is.
        "resembles": (
            {"name": item.resembles.name, "kind": item.resembles.kind.value}
            if item.resembles is not None
            else None
        ),
        "at": item.updated_at,
    }


def batch_view(progress: BatchProgress) -> dict[str, Any]:
    return {
        "batch": progress.batch,
        "total": progress.total,
        "sent": progress.sent,
        "failed": progress.failed,
        "waiting": progress.waiting,
        "retry_at": progress.retry_at,
        "done": progress.done,
        "retryable": progress.retryable,
        "revoked": progress.revoked,
        "revocable": progress.revocable,
    }


def flag_labels() -> dict[str, str]:
    return {key: shown(label) for key, label in FLAG_LABELS.items()}


def link_view(link: Link) -> dict[str, Any]:
    return {"line": link.line, "name": link.name, "role": link.role.value, "link": link.url}


class InvitationPages:
    def __init__(
        self, settings: Settings, pipeline: AdmissionPipeline, desk: InvitationDesk
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._desk = desk
        self._cookie = cookie_name(settings)
        self._csrf = CsrfTokens(settings.admission.pseudonym_key.get_secret_value().encode())
        self._upload_limit = min(settings.limits.max_body_bytes, MAX_FILE_BYTES + UPLOAD_OVERHEAD)

    # Reading

    async def page(
        self,
        request: Request,
        room: str,
        state: Annotated[str, Query()] = "waiting",
        flag: Annotated[str, Query()] = "",
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        done: Annotated[str, Query()] = "",
    ) -> HTMLResponse:
        now = time.time()
        host, current_room = await self._host_of(request, room, now)
        state, flag = _filter(state, flag)
        listing = None
        if self._desk.reviews:
            listing = await self._desk.registrations(
                host, room, state=state, flag=flag or None, offset=(page - 1) * PAGE_SIZE, now=now
            )
        batches = await self._desk.batches(host, room, now)
        html = render(
            "host_invitations.html",
            room=room_view(current_room),
            meeting=meeting_view(current_room),
            starts=_moment(current_room.starts_at),
            ends=_moment(current_room.ends_at),
            csrf=self._csrf.issue(host.id, current_room.name),
            prefix=HOST_PREFIX,
            notice=shown(NOTICES[done]) if done in NOTICES else "",
            listing=_listing_view(listing, room, state, flag, page),
            register_url=f"{self._settings.public_url.rstrip('/')}/_meetgate/register/{room}",
            # Registrations made before registration was turned off are still answered here.
            registration_on=current_room.registration
            or (listing is not None and any(listing.states.values())),
            reviews=self._desk.reviews,
            sends_mail=self._desk.sends_mail,
            flags=[(key, shown(FLAG_LABELS[key])) for key in FLAGS],
            states=[(key, shown(STATE_LABELS[key])) for key in STATES],
            flag_labels=flag_labels(),
            state_labels={key: shown(label) for key, label in STATE_LABELS.items()},
            batches=[batch_view(b) for b in batches],
            moment=_moment,
            room_language=current_room.language or DEFAULT.tag,
            upload_kib=self._upload_limit // 1024,
            labels={key: shown(text) for key, text in SCRIPT_MESSAGES.items()},
            request_id=request_id(request.scope),
        )
        return HTMLResponse(html)

    async def progress(self, request: Request, room: str) -> JSONResponse:
        """The room's batches, for the page's script."""
        now = time.time()
        host, _ = await self._host_of(request, room, now)
        batches = await self._desk.batches(host, room, now)
        return JSONResponse({"batches": [batch_view(b) for b in batches]})

    async def registrations(
        self,
        request: Request,
        room: str,
        state: Annotated[str, Query()] = "waiting",
        flag: Annotated[str, Query()] = "",
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    ) -> JSONResponse:
        """One page of the room's registrations as JSON (never an address)."""
        now = time.time()
        host, _ = await self._host_of(request, room, now)
        state, flag = _filter(state, flag)
        listing = await self._desk.registrations(
            host, room, state=state, flag=flag or None, offset=(page - 1) * PAGE_SIZE, now=now
        )
        return JSONResponse(_listing_view(listing, room, state, flag, page))

    # Acting

    async def answer(self, request: Request, room: str, answer: str) -> Response:
        """Approve or deny the ticked registrations (`pick.<id>`), or every waiting one matching
        the filter (`every=1`, `flag`). Without `confirmed=1`: a page asking first."""
        if answer not in ("approve", "deny"):
            raise NotFound()
        host, current_room, fields = await self._posted(request, room, max_fields=ANSWER_FIELDS)
        every = fields.get("every") == "1"
        _, flag = _filter("waiting", fields.get("flag", ""))
        ids = [name.removeprefix(PICK) for name, value in fields.items() if name.startswith(PICK)]
        if any(value != "1" for name, value in fields.items() if name.startswith(PICK)):
            raise InvalidInput(N_("A registration's box can only be ticked or not."))
        if not ids and not every:
            raise InvalidInput(N_("Tick the registrations first."))
        approve = answer == "approve"
        if fields.get("confirmed") != "1":
            return self._ask(request, current_room, answer, fields, len(ids), every, flag)
        done = await self._desk.answer(
            host,
            room,
            ids,
            approve=approve,
            now=time.time(),
            flag=flag or None,
            every_waiting=every,
        )
        return self._answered(request, room, answer, done)

    def _ask(
        self,
        request: Request,
        room: Room,
        answer: str,
        fields: dict[str, str],
        count: int,
        every: bool,
        flag: str,
    ) -> Response:
        approve = answer == "approve"
        if every:
            question = shown(SCRIPT_MESSAGES["approve_all" if approve else "deny_all"])
        else:
            question = shown(SCRIPT_MESSAGES["approve" if approve else "deny"], count=count)
        explanation = (
            shown(N_("Each one gets their personal link by e-mail, in their language."))
            if approve
            else shown(N_("They are not invited. Registering again does not change that."))
        )
        if every and flag:
            explanation += " " + shown(N_("Filter: {flag}."), flag=shown(FLAG_LABELS[flag]))
        kept = {k: v for k, v in fields.items() if k.startswith(PICK) or k in ("every", "flag")}
        button = shown(N_("Approve") if approve else N_("Deny"))
        asked = Confirmation(question, explanation, button, danger=not approve)
        return _confirm(request, room, f"{INVITATIONS}/{answer}", asked, kept, fields["csrf"])

    def _answered(self, request: Request, room: str, answer: str, done: Answered) -> Response:
        if answer == "approve":
            message = shown(
                N_("{count} approved; their invitations are being sent."), count=done.count
            )
        else:
            message = shown(N_("{count} denied."), count=done.count)
        if done.unchanged:
            message += " " + shown(
                N_("{count} were no longer waiting and were left as they were."),
                count=done.unchanged,
            )
        if done.left:
            message += " " + shown(
                N_("{count} more match the filter: answer them again to go on."), count=done.left
            )
        if wants_json(request.scope):
            return JSONResponse(
                {
                    "ok": True,
                    "done": done.count > 0,
                    "message": message,
                    "count": done.count,
                    "unchanged": done.unchanged,
                    "left": done.left,
                    "batch": done.batch,
                }
            )
        key = answer if done.count else "nothing"
        return RedirectResponse(
            invitations_path(room) + "?" + urlencode({"done": key}), status_code=303
        )

    async def batch(self, request: Request, room: str, batch: str, action: str) -> Response:
        """Send a batch's failed invitations again (`retry`) or revoke them all (`revoke`).
        Without `confirmed=1`: a page asking first (the script asks in a dialog)."""
        if action not in BATCH_ACTIONS or not BATCH_ID.fullmatch(batch):
            raise NotFound()
        host, current_room, fields = await self._posted(request, room, max_fields=4)
        now = time.time()
        if fields.get("confirmed") != "1":
            # The batch is read here only to ask: the confirmed action checks it itself.
            progress = await self._desk.batch(host, room, batch, now)
            return self._ask_batch(request, current_room, batch, action, progress, fields)
        if action == "retry":
            count = await self._desk.retry_failed(host, room, batch, now)
        else:
            count = await self._desk.revoke_batch(host, room, batch, now)
        key = BATCH_ACTIONS[action] if count else "no_change"
        if wants_json(request.scope):
            return JSONResponse(
                {"ok": True, "done": count > 0, "count": count, "message": shown(NOTICES[key])}
            )
        return RedirectResponse(
            invitations_path(room) + "?" + urlencode({"done": key}), status_code=303
        )

    def _ask_batch(
        self,
        request: Request,
        room: Room,
        batch: str,
        action: str,
        progress: BatchProgress,
        fields: dict[str, str],
    ) -> Response:
        retry = action == "retry"
        count = progress.retryable if retry else progress.revocable
        question = shown(SCRIPT_MESSAGES["batch_" + action], count=count)
        explanation = (
            shown(
                N_(
                    "Only those the mail server did not take are sent again: a sent invitation's"
                    " e-mail address is no longer kept."
                )
            )
            if retry
            else shown(
                N_(
                    "To invite one of them again, invite the person anew, or let them register"
                    " again."
                )
            )
        )
        button = shown(N_("Send again") if retry else N_("Revoke"))
        asked = Confirmation(question, explanation, button, danger=not retry)
        path = f"{INVITATIONS}/batches/{batch}/{action}"
        return _confirm(request, room, path, asked, {}, fields["csrf"])

    async def invite(self, request: Request, room: str) -> Response:
        """Invite one person: by e-mail with an address, else a link shown once."""
        host, current_room, fields = await self._posted(request, room, max_fields=8)
        role = ROLES.get(fields.get("role", "attendee"))
        if role is None:
            raise InvalidInput(N_("Choose the role: attendee or host."))
        made = await self._desk.invite_one(
            host,
            room,
            name=fields.get("name", ""),
            address=fields.get("email", ""),
            role=role,
            language=_language(fields, current_room),
            now=time.time(),
        )
        if isinstance(made, str):
            if wants_json(request.scope):
                return JSONResponse({"ok": True, "done": True, "batch": made})
            return RedirectResponse(invitations_path(room) + "?done=invite", status_code=303)
        return self._links(request, current_room, Imported(1, (), links=(made,)))

    async def import_list(self, request: Request, room: str) -> Response:
        """A list uploaded (multipart: csrf, file, mode send|links, language)."""
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        now = time.time()
        host, current_room = await self._host_of(request, room, now)
        fields, data = await self._upload(request)
        self._csrf.check(fields.get("csrf"), host.id, current_room.name)
        mode = fields.get("mode", "")
        if mode not in ("send", "links"):
            raise InvalidInput(N_("Choose whether to send the invitations or show the links."))
        imported = await self._desk.import_list(
            host,
            room,
            data,
            send=mode == "send",
            language=_language(fields, current_room),
            now=now,
        )
        return self._links(request, current_room, imported)

    def _links(self, request: Request, room: Room, imported: Imported) -> Response:
        """What an import or a single invite made, shown once: links, lines refused."""
        language = current.get()

        def translate(message: str) -> str:
            return gettext(language, message)

        problems = [
            {"line": p.line, "code": p.code, "reason": p.why.shown(translate)}
            for p in imported.problems
        ]
        links = [link_view(link) for link in imported.links]
        if wants_json(request.scope):
            return JSONResponse(
                {
                    "ok": True,
                    "done": imported.created > 0,
                    "created": imported.created,
                    "batch": imported.batch,
                    "links": links,
                    "problems": problems,
                },
                headers={"cache-control": "no-store"},
            )
        page = render(
            "host_invited.html",
            room=room_view(room),
            prefix=HOST_PREFIX,
            created=imported.created,
            batch=imported.batch,
            links=links,
            problems=problems,
            request_id=request_id(request.scope),
        )
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def meeting(self, request: Request, room: str) -> Response:
        """The room's registration and the meeting's time."""
        host, current_room, fields = await self._posted(request, room, max_fields=8)
        now = time.time()
        settings = meeting_from_form(
            fields, current_room, registration_available=self._desk.reviews, now=now
        )
        changed = await self._desk.set_meeting(host, room, settings, now)
        message = shown(NOTICES["meeting"] if changed else N_("Nothing to do: nothing changed."))
        if wants_json(request.scope):
            return JSONResponse({"ok": True, "done": changed, "message": message})
        return RedirectResponse(invitations_path(room) + "?done=meeting", status_code=303)

    # Checks

    async def _host_of(self, request: Request, room: str, now: float) -> tuple[Admission, Room]:
        host = await self._pipeline.from_cookie(read_cookie(request.scope, self._cookie), now)
        return host, await self._desk.room(host, room, now)

    async def _posted(
        self, request: Request, room: str, *, max_fields: int
    ) -> tuple[Admission, Room, dict[str, str]]:
        """A post's host, room and fields, checked: same origin, host of the room (first:
        someone who is not learns only that), then the CSRF token."""
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        host, current_room = await self._host_of(request, room, time.time())
        fields = await read_form(request, limit=MAX_FORM_BYTES, max_fields=max_fields)
        self._csrf.check(fields.get("csrf"), host.id, current_room.name)
        return host, current_room, fields

    async def _upload(self, request: Request) -> tuple[dict[str, str], bytes]:
        """The upload form's text fields and its one file, the body capped before it is
        parsed (Starlette's parser alone would spool a file of any size)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._upload_limit:
            raise RequestTooLarge()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self._upload_limit:
                raise RequestTooLarge()
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "multipart/form-data":
            raise BadRequest(N_("The list must be sent as a file, from the page's form."))
        replayed = Request(request.scope, _replay(bytes(body)))
        try:
            form = await replayed.form(max_files=1, max_fields=6, max_part_size=MAX_FORM_BYTES)
        except Exception as exc:  # starlette raises its own and python-multipart's errors
            raise BadRequest(N_("This form could not be read.")) from exc
        fields: dict[str, str] = {}
        data: bytes | None = None
        try:
            for name, value in form.multi_items():
                if name in fields or (name == "file" and data is not None):
                    raise BadRequest(N_("A parameter appears more than once in this request."))
                if isinstance(value, UploadFile):
                    if name != "file":
                        raise BadRequest(N_("This form could not be read."))
                    data = await value.read()
                else:
                    fields[name] = value
        finally:
            await form.close()
        if not data:
            raise InvalidInput(N_("Choose a file (CSV: name, e-mail, optional role)."))
        return fields, data


def _confirm(
    request: Request,
    room: Room,
    action: str,
    asked: Confirmation,
    fields: dict[str, str],
    csrf: str,
) -> Response:
    """Ask a host before an invitations action, as the dashboard's actions do: the question for
    the page's script, else the confirmation page posting `fields` again to `action`."""
    if wants_json(request.scope):
        return JSONResponse({"ok": True, "done": False, "confirm": asked.question})
    page = render(
        "host_confirm.html",
        room=room_view(room),
        action=action,
        prefix=HOST_PREFIX,
        confirmation=asked,
        fields=fields,
        csrf=csrf,
        back=f"{HOST_PREFIX}/{room.name}/{INVITATIONS}",
        request_id=request_id(request.scope),
    )
    return HTMLResponse(page)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _filter(state: str, flag: str) -> tuple[str, str]:
    """The page's filter, from a link anyone may have changed: a known state and flag only."""
    if state not in STATES:
        raise InvalidInput(N_("Choose a state: waiting, approved or denied."))
    if flag and flag not in FLAGS:
        raise InvalidInput(N_("Choose one of the flags offered."))
    return state, flag


def _language(fields: dict[str, str], room: Room) -> str:
    """The invitations' language: the one chosen on the form, else the room's."""
    tag = fields.get("language", "") or room.language or DEFAULT.tag
    language = chosen(tag)
    if language is None:
        raise InvalidInput(N_("Choose one of the languages offered."))
    return language.tag


def _moment(at: float | None) -> str:
    return "" if at is None else moment(at, current.get())


def _listing_view(
    listing: RegistrationPage | None, room: str, state: str, flag: str, page: int
) -> dict[str, Any] | None:
    if listing is None:
        return None
    pages = max(1, math.ceil(listing.total / PAGE_SIZE))

    def link(number: int) -> str:
        query = {"state": state, **({"flag": flag} if flag else {}), "page": str(number)}
        return invitations_path(room) + "?" + urlencode(query)

    return {
        "previous": link(page - 1) if page > 1 else "",
        "next": link(page + 1) if page < pages else "",
        "items": [registration_view(item) for item in listing.items],
        "total": listing.total,
        "states": {state: listing.states.get(state, 0) for state in STATES},
        "flags": {flag: listing.flags.get(flag, 0) for flag in FLAGS},
        "state": state,
        "flag": flag,
        "page": page,
        "pages": pages,
    }


def create_invitations_router(
    settings: Settings, pipeline: AdmissionPipeline, desk: InvitationDesk
) -> APIRouter:
    """The invitations page's routes, under /_meetgate/host/<room>/invitations."""
    pages = InvitationPages(settings, pipeline, desk)
    router = APIRouter()
    base = HOST_PREFIX + "/{room}/" + INVITATIONS
    router.add_api_route(base, pages.page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(base + "/progress", pages.progress, methods=["GET"])
    router.add_api_route(base + "/registrations", pages.registrations, methods=["GET"])
    router.add_api_route(base + "/invite", pages.invite, methods=["POST"])
    router.add_api_route(base + "/import", pages.import_list, methods=["POST"])
    router.add_api_route(base + "/meeting", pages.meeting, methods=["POST"])
    router.add_api_route(base + "/batches/{batch}/{action}", pages.batch, methods=["POST"])
    router.add_api_route(base + "/{answer}", pages.answer, methods=["POST"])
    return router
