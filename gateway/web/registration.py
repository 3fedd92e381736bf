"""The registration pages attendees see (issue 19): a room's form (`/_meetgate/register/<room>`),
the page to enter the code sent to the address (`…/code`), and the thank-you page (`…/done`).

Thin over `Registrations`: parse the form, call, render. Sending the form answers the same
whatever the address (registered before or not): only the browser that holds the code learns,
on the thank-you page, that an earlier registration was updated. What the browser keeps between
the pages is one cookie: the registration's id and secret while the code is awaited, then the
outcome to thank for. A room that takes no registrations answers exactly as one that does not
exist.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from babel.dates import format_date, format_time
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.admission.email_codes import MAX_ADDRESS_CHARS, InvalidAddress, normalise_address
from gateway.admission.flood import ChallengeRequired
from gateway.admission.invitations import InvitationQueue
from gateway.admission.limits import Attempt, RateLimiter
from gateway.admission.names import MAX_NAME_CHARS, normalise
from gateway.admission.registrations import (
    Confirmed,
    RegistrationCodeError,
    RegistrationEnded,
    Registrations,
    RegistrationState,
)
from gateway.admission.rooms import clean_text
from gateway.edge.languages import current as current_language
from gateway.edge.languages import use_room_language
from gateway.edge.requests import REGISTER_PREFIX, read_cookie, request_id, same_origin
from gateway.edge.templating import render
from gateway.errors import CrossSiteRequest, InvalidInput, MeetgateError, NotFound, RoomNotFound
from gateway.i18n import N_, Language, translations
from gateway.settings import Settings
from gateway.store.records import Room
from gateway.web.challenge import Challenge, challenge_page, proof_in
from gateway.web.entry import Entrance, client_addr
from gateway.web.forms import read_form

# The form's fields, and what a solved challenge page posts with them.
FIELDS = ("name", "email", "note")
# How long the thank-you page can be shown again (a reload, another language) after the code.
DONE_SECONDS = 3600
# A cookie part: the registration's id and secret are URL-safe tokens.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


class RegistrationNotOpen(NotFound):
    """The room takes no registrations, or there is no such room: the same answer for both."""

    code = "registration_not_open"
    title = N_("No registration here")
    message = N_(
        "There is no registration at this address. Check the link the organisers gave you."
    )


def registration_cookie_name(settings: Settings) -> str:
    # Like the admission cookie: `__Host-` (which demands Secure) only over TLS.
    return "__Host-meetgate-register" if settings.secure else "meetgate-register"


def form_path(room: str) -> str:
    return f"{REGISTER_PREFIX}/{room}"


def max_form_bytes(max_note_chars: int) -> int:
    """The form's largest honest body: every character of the name, address and note written
    in four UTF-8 bytes, each percent-encoded, plus the field names and a solved challenge."""
    return 12 * (MAX_NAME_CHARS + MAX_ADDRESS_CHARS + max_note_chars) + 1024


@dataclass(frozen=True, slots=True)
class MeetingTime:
    """When the meeting is, as the page says it: in the reader's language, in UTC (the page
    cannot know the reader's time zone without a script), with the machine-readable times."""

    text: str
    starts: str
    ends: str | None


def meeting_time(room: Room, language: Language) -> MeetingTime | None:
    """Pure: the meeting's date and times in `language`, in UTC; None if no start is set or it
    is no date a calendar holds."""
    if room.starts_at is None:
        return None
    try:
        starts = datetime.fromtimestamp(room.starts_at, UTC)
        ends = datetime.fromtimestamp(room.ends_at, UTC) if room.ends_at is not None else None
    except (OverflowError, OSError, ValueError):
        return None
    locale = language.locale
    gettext = translations(language).gettext
    day = format_date(starts, "full", locale=locale)
    start = format_time(starts, "HH:mm", tzinfo=UTC, locale=locale)
    if ends is None or ends <= starts:
        # Translators: a meeting's date and start time; UTC is said as such, not translated.
        text = gettext("{date}, {start} UTC").format(date=day, start=start)
    elif ends.date() == starts.date():
        end = format_time(ends, "HH:mm", tzinfo=UTC, locale=locale)
        # Translators: a meeting's date, start and end time (the same day), in UTC.
        text = gettext("{date}, {start}\u2013{end} UTC").format(date=day, start=start, end=end)
    else:
        last_day = format_date(ends, "full", locale=locale)
        end = format_time(ends, "HH:mm", tzinfo=UTC, locale=locale)
        # Translators: a meeting over several days: its start and its end, in UTC.
        text = gettext("{date}, {start} UTC to {last_date}, {end} UTC").format(
            date=day, start=start, last_date=last_day, end=end
        )
    return MeetingTime(
        text,
        starts.isoformat(timespec="minutes"),
        ends.isoformat(timespec="minutes") if ends is not None else None,
    )


def field_problems(
    name: str, email: str, note: str, max_note_chars: int
) -> dict[str, MeetgateError]:
    """Pure: what is wrong with each field of the form, every field at once (translated where
    shown); empty when all three are acceptable."""
    problems: dict[str, MeetgateError] = {}
    try:
        normalise(name)
    except InvalidInput as refused:
        problems["name"] = refused
    try:
        normalise_address(email)
    except InvalidAddress as refused:
        problems["email"] = refused
    try:
        clean_text(note, field=N_("note"), max_chars=max_note_chars, required=False)
    except InvalidInput as refused:
        problems["note"] = refused
    return problems


@dataclass(frozen=True, slots=True)
class Held:
    """What the registration cookie holds: the registration awaiting its code (`secret` set), or
    the outcome of the one confirmed (`outcome` set), each for one room."""

    room: str
    registration_id: str = ""
    secret: str = ""
    outcome: str = ""

    def dump(self) -> str:
        if self.outcome:
            return f"done:{self.room}:{self.outcome}"
        return f"code:{self.room}:{self.registration_id}:{self.secret}"

    @classmethod
    def load(cls, raw: str | None) -> Held | None:
        """The cookie's value read back, or None for anything not of its shape."""
        if raw is None or len(raw) > 400:
            return None
        parts = raw.split(":")
        if len(parts) == 3 and parts[0] == "done" and parts[2] in OUTCOMES:
            return cls(parts[1], outcome=parts[2])
        if (
            len(parts) == 4
            and parts[0] == "code"
            and _TOKEN.fullmatch(parts[2])
            and _TOKEN.fullmatch(parts[3])
        ):
            return cls(parts[1], registration_id=parts[2], secret=parts[3])
        return None


# What the thank-you page can say, by the confirmed registration's outcome.
OUTCOMES = frozenset({"waiting", "approved", "updated", "updated-approved"})


def outcome_of(confirmed: Confirmed, now: float) -> str:
    """Pure: what the thank-you page says of the registration confirmed at `now`."""
    registration = confirmed.registration
    if confirmed.approved:
        return "approved"
    if registration.created_at < now:
        # The address's earlier registration in this room: updated while it waits, else kept.
        # A denied one reads as one still waiting: a denial is never told to the person.
        if registration.state is RegistrationState.APPROVED:
            return "updated-approved"
        return "updated"
    if registration.state is RegistrationState.APPROVED:
        return "approved"
    return "waiting"


@dataclass(frozen=True, slots=True)
class FormPage:
    """The registration form, with what was typed and what was wrong with it, if anything."""

    room: Room
    values: dict[str, str]
    problems: dict[str, MeetgateError]
    error: MeetgateError | None = None
    status: int = 200


@dataclass(frozen=True, slots=True)
class CodePage:
    """The page to enter the code on; `held` None: nothing awaits a code in this browser."""

    room: Room
    held: Held | None
    error: MeetgateError | None = None
    can_retry: bool = True
    status: int = 200


RegistrationAnswer = FormPage | CodePage | Challenge | Response


class RegistrationPages:
    """The registration routes, one method each, and what they share."""

    def __init__(
        self,
        settings: Settings,
        entrance: Entrance,
        registrations: Registrations | None,
        *,
        limiter: RateLimiter,
        invitations: InvitationQueue | None = None,
    ) -> None:
        """`registrations` None: the gate has no mail server, so no room takes registrations.
        `invitations`: the queue that sends an auto-approved registration its invitation."""
        self._settings = settings
        self._entrance = entrance
        self._registrations = registrations
        self._limiter = limiter
        self._invitations = invitations
        self._max_note = settings.registration.max_note_chars
        self._max_form = max_form_bytes(self._max_note)
        self.cookie = registration_cookie_name(settings)

    async def form(self, request: Request, room: str) -> Response:
        """GET: the form. A look, charged against the address's and network's limits as a
        room's gate page is, so the page is no free oracle for which rooms exist."""
        await self._limiter.charge(Attempt(client_addr(request), named_room=room))
        current, _ = await self._open_room(request, room)
        return self._respond(request, FormPage(current, {}, {}))

    async def send(self, request: Request, room: str) -> Response:
        """POST: the form sent; on success a code goes to the address and the browser to the
        code page."""
        return self._respond(request, await self._sent(request, room))

    async def code(self, request: Request, room: str) -> Response:
        """GET: the page to enter the code on. A look, charged as the form's is: it too tells
        a room that takes registrations from one that does not."""
        await self._limiter.charge(Attempt(client_addr(request), named_room=room))
        current, _ = await self._open_room(request, room)
        held = Held.load(read_cookie(request.scope, self.cookie))
        if held is not None and (held.room != current.name or held.outcome):
            held = None
        return self._respond(request, CodePage(current, held))

    async def confirm(self, request: Request, room: str) -> Response:
        """POST: the code; on success the thank-you page."""
        return self._respond(request, await self._confirmed(request, room))

    async def done(self, request: Request, room: str) -> Response:
        """GET: the thank-you page, for the browser that confirmed a registration; a look,
        charged as the form's is."""
        await self._limiter.charge(Attempt(client_addr(request), named_room=room))
        current, _ = await self._open_room(request, room)
        held = Held.load(read_cookie(request.scope, self.cookie))
        if held is None or held.room != current.name or not held.outcome:
            return self._respond(request, CodePage(current, None))
        body = render(
            "register_done.html",
            room=current,
            outcome=held.outcome,
            when=meeting_time(current, current_language.get()),
            request_id=request_id(request.scope),
        )
        return HTMLResponse(body, headers={"cache-control": "no-store"})

    async def _open_room(self, request: Request, name: str) -> tuple[Room, Registrations]:
        """The room whose registration this is (following moves), in its language; the same
        refusal for a room that takes none as for one that does not exist."""
        registrations = self._registrations
        if registrations is None:
            raise RegistrationNotOpen()
        try:
            room = await self._entrance.room_for_entry(name)
        except RoomNotFound:
            raise RegistrationNotOpen() from None
        if not room.registration:
            raise RegistrationNotOpen()
        use_room_language(request.scope, room.language)
        if not registrations.open_at(room, time.time()):
            # The meeting has ended: the room is known to take registrations, so this can say
            # so (in the reader's language).
            raise RegistrationEnded()
        return room, registrations

    async def _posted(
        self, request: Request, room: str
    ) -> tuple[Room, Registrations, dict[str, str]]:
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        try:
            current, registrations = await self._open_room(request, room)
        except (RegistrationNotOpen, RegistrationEnded):
            # Charged as a look is, so that posting is no free oracle for which rooms take
            # registrations: a room that takes them charges the post itself (the form's
            # registration, the code's guess), one charge to the address either way.
            await self._limiter.charge(Attempt(client_addr(request), named_room=room))
            raise
        return current, registrations, await read_form(request, limit=self._max_form)

    async def _sent(self, request: Request, room: str) -> RegistrationAnswer:
        current, registrations, form = await self._posted(request, room)
        values = {field: form.get(field, "") for field in FIELDS}
        try:
            started = await registrations.register(
                current,
                values["name"],
                values["email"],
                values["note"],
                client_addr(request),
                time.time(),
                proof_in(form),
                language=current_language.get(),
                code_page=f"{self._settings.public_url.rstrip('/')}{form_path(current.name)}/code",
            )
        except ChallengeRequired as demand:
            return Challenge(f"{form_path(current.name)}/send", demand, values)
        except InvalidInput as refused:
            # Charged and refused; each field's own problem is shown beside it.
            problems = field_problems(
                values["name"], values["email"], values["note"], self._max_note
            )
            return FormPage(
                current,
                values,
                problems,
                error=None if problems else refused,
                status=refused.status,
            )
        held = Held(current.name, started.id, started.secret)
        response = RedirectResponse(f"{form_path(current.name)}/code", status_code=303)
        self._keep(response, held, self._settings.registration.confirm_ttl_seconds)
        return response

    async def _confirmed(self, request: Request, room: str) -> RegistrationAnswer:
        current, registrations, form = await self._posted(request, room)
        now = time.time()
        # A code is a guess at a secret: charged, like every join attempt.
        await self._limiter.charge(Attempt(client_addr(request), registration=current.name))
        held = Held.load(read_cookie(request.scope, self.cookie))
        if held is None or held.room != current.name or held.outcome:
            return CodePage(current, None, status=409)
        try:
            confirmed = await registrations.confirm(
                current,
                held.registration_id,
                held.secret,
                form.get("code", ""),
                now,
                queue=self._invitations,
            )
        except RegistrationCodeError as refused:
            return CodePage(
                current,
                held,
                error=refused,
                can_retry=refused.can_retry,
                status=refused.status,
            )
        outcome = outcome_of(confirmed, now)
        response = RedirectResponse(f"{form_path(current.name)}/done", status_code=303)
        self._keep(response, Held(current.name, outcome=outcome), DONE_SECONDS)
        return response

    def _keep(self, response: Response, held: Held, seconds: int) -> None:
        response.set_cookie(
            self.cookie,
            held.dump(),
            max_age=seconds,
            path="/",
            secure=self._settings.secure,
            httponly=True,
            samesite="lax",
        )

    def _respond(self, request: Request, answer: RegistrationAnswer) -> Response:
        """The one place a registration route's answer becomes HTTP."""
        if isinstance(answer, Challenge):
            return challenge_page(request.scope, answer)
        if isinstance(answer, FormPage):
            return self._form_page(request, answer)
        if isinstance(answer, CodePage):
            return self._code_page(request, answer)
        return answer

    def _form_page(self, request: Request, shown: FormPage) -> HTMLResponse:
        language = current_language.get()
        gettext = translations(language).gettext
        body = render(
            "register.html",
            room=shown.room,
            when=meeting_time(shown.room, language),
            values=shown.values,
            problems={field: problem.shown(gettext) for field, problem in shown.problems.items()},
            error=shown.error.shown(gettext) if shown.error else None,
            first_problem=next((field for field in FIELDS if field in shown.problems), None),
            max_name=MAX_NAME_CHARS,
            max_address=MAX_ADDRESS_CHARS,
            max_note=self._max_note,
            request_id=request_id(request.scope),
        )
        return HTMLResponse(body, status_code=shown.status)

    def _code_page(self, request: Request, shown: CodePage) -> HTMLResponse:
        error = shown.error
        gettext = translations(current_language.get()).gettext
        body = render(
            "register_code.html",
            room=shown.room,
            waiting=shown.held is not None,
            digits=self._settings.email_codes.digits,
            minutes=max(1, self._settings.registration.confirm_ttl_seconds // 60),
            error=error.shown(gettext) if error else None,
            can_retry=shown.can_retry,
            request_id=request_id(request.scope),
        )
        return HTMLResponse(body, status_code=shown.status, headers={"cache-control": "no-store"})


def create_registration_router(
    settings: Settings,
    entrance: Entrance,
    registrations: Registrations | None,
    *,
    limiter: RateLimiter,
    invitations: InvitationQueue | None = None,
) -> APIRouter:
    """The registration routes under /_meetgate/register/<room>; see `RegistrationPages`."""
    pages = RegistrationPages(
        settings, entrance, registrations, limiter=limiter, invitations=invitations
    )
    router = APIRouter()
    prefix = REGISTER_PREFIX + "/{room}"
    router.add_api_route(prefix, pages.form, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(prefix + "/send", pages.send, methods=["POST"])
    router.add_api_route(prefix + "/code", pages.code, methods=["GET"])
    router.add_api_route(prefix + "/confirm", pages.confirm, methods=["POST"])
    router.add_api_route(prefix + "/done", pages.done, methods=["GET"])
    return router
