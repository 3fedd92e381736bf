"""The exception tree: each error knows its HTTP status, a stable code and its public message.

Messages here are shown to users, in the request's language (each is marked with `N_` for the
catalogs and translated where it is rendered); they never carry a secret, a token or a trace. A
message with `{named}` values takes them as keyword arguments, filled in after translation; a
value that is itself words (a field's name) is a `Phrase`, translated with the message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gateway.i18n import N_

Translate = Callable[[str], str]


class Phrase:
    """A part of a message translated on its own, as the message is: a field's name, or one of
    several problems (`message` marked N_, its `{named}` values filled in after translation)."""

    __slots__ = ("message", "values")

    def __init__(self, message: str, **values: object) -> None:
        self.message = message
        self.values = values

    def shown(self, translate: Translate | None = None) -> str:
        return _filled(self.message, self.values, translate)

    def __repr__(self) -> str:
        return f"Phrase({self.message!r})"


def _filled(message: str, values: Mapping[str, object], translate: Translate | None) -> str:
    text = translate(message) if translate is not None else message
    if not values:
        return text
    return text.format(
        **{
            name: value.shown(translate) if isinstance(value, Phrase) else value
            for name, value in values.items()
        }
    )


class MeetgateError(Exception):
    """Base of every error Meetgate shows to a user or an API client."""

    status: int = 500
    code: str = "internal_error"
    title: str = N_("Something went wrong")
    message: str = N_("Meetgate could not complete this request. Please try again in a moment.")
    # Seconds for a Retry-After header (and the page's "try again" hint), for errors that pass.
    retry_after: int | None = None

    def __init__(self, message: str | None = None, **values: object) -> None:
        if message is not None:
            self.message = message
        self.values = values
        super().__init__(self.shown())

    def shown(self, translate: Translate | None = None) -> str:
        """The message as a user reads it: translated by `translate` (English without), with its
        values filled in."""
        return _filled(self.message, self.values, translate)


class BadRequest(MeetgateError):
    status = 400
    code = "bad_request"
    title = N_("This request is not valid")
    message = N_("The request could not be understood.")


class DuplicateParameter(BadRequest):
    code = "duplicate_parameter"
    message = N_("A parameter appears more than once in this request.")


class RequestTooLarge(MeetgateError):
    status = 413
    code = "request_too_large"
    title = N_("Request too large")
    message = N_("This request is larger than Meetgate accepts.")


class MalformedJson(BadRequest):
    code = "malformed_json"
    message = N_("The request body is not valid JSON.")


class UnsupportedMediaType(MeetgateError):
    status = 415
    code = "unsupported_media_type"
    title = N_("Unsupported request body")
    message = N_("This request's body must be JSON, sent with Content-Type: application/json.")


class RequestInvalid(MeetgateError):
    """A well-formed request whose values are not what the call takes (the admin API's 422)."""

    status = 422
    code = "request_invalid"
    title = N_("This request is not valid")
    message = N_("The request's values are not what this call takes.")


class MethodNotAllowed(MeetgateError):
    status = 405
    code = "method_not_allowed"
    title = N_("Method not allowed")
    message = N_("This address does not take this method.")


class HeadersTooLarge(MeetgateError):
    status = 431
    code = "headers_too_large"
    title = N_("Request headers too large")
    message = N_("The request headers are larger than Meetgate accepts.")


class BoshBodyInvalid(BadRequest):
    code = "bosh_body_invalid"
    title = N_("Not a signalling request")
    message = N_(
        "This signalling request's body is not a single well-formed BOSH <body> element,"
        " so it was not passed on."
    )


class BodyRefused(BoshBodyInvalid):
    """A body that is not one well-formed, safe httpbind `<body>`, and the stream error
    condition a stanza as bad would end a WebSocket session with: `restricted-xml` (a DTD, an
    entity declaration, a comment, a processing instruction, an XML declaration),
    `policy-violation` (too deep, too many elements), `not-well-formed` (everything else)."""

    def __init__(self, condition: str = "not-well-formed") -> None:
        super().__init__()
        self.condition = condition


class RequestAborted(BadRequest):
    """The client went away before its request body ended: nothing of it is completed upstream.
    (Nobody is left to read this; the status is for the access log.)"""

    code = "request_aborted"
    message = N_("The request body was cut off before its end.")


class InvalidRoomName(BadRequest):
    code = "invalid_room_name"
    title = N_("Invalid room name")
    message = N_(
        "Room names use lowercase letters, digits, '-' and '_', start with a letter or a digit,"
        " and are at most 64 characters long."
    )


class InvalidInput(BadRequest):
    code = "invalid_input"


class InvalidValues(InvalidInput):
    """Every problem with what was asked for at once, each translated on its own and shown one
    after another."""

    def __init__(self, problems: Sequence[Phrase]) -> None:
        self.problems = tuple(problems)
        super().__init__()

    def shown(self, translate: Translate | None = None) -> str:
        text = ""
        for problem in self.problems:
            # A space between English sentences; none after a Chinese sentence's full stop.
            space = " " if text and not text.endswith(FULL_STOPS) else ""
            text += space + problem.shown(translate)
        return text


# The ideographic full stop and the full-width exclamation mark, question mark and semicolon.
FULL_STOPS = ("\u3002", "\uff01", "\uff1f", "\uff1b")


class NotFound(MeetgateError):
    status = 404
    code = "not_found"
    title = N_("Not found")
    message = N_("There is nothing here.")


class PathRefused(NotFound):
    """A path no rule of the gate's allowlist names: refused, never forwarded to Jitsi."""

    code = "path_refused"
    message = N_("Meetgate does not pass this address on to the meeting server.")


class RoomNotFound(NotFound):
    code = "room_not_found"
    title = N_("Unknown room")
    message = N_("This room does not exist.")


class RoomExists(MeetgateError):
    status = 409
    code = "room_exists"
    title = N_("Room exists")
    message = N_("A room with this name already exists.")


class InviteError(MeetgateError):
    """A join link that cannot be used; every subclass renders the invite page."""

    status = 404
    code = "invite_invalid"
    title = N_("This join link does not work")


class InviteUnknown(InviteError):
    code = "invite_unknown"
    title = N_("Unknown join link")
    message = N_(
        "This join link is not valid. Check that you copied all of it,"
        " or ask the host for a new one."
    )


class InviteMalformed(InviteUnknown):
    code = "invite_malformed"


class InviteExpired(InviteError):
    status = 410
    code = "invite_expired"
    title = N_("This join link has expired")
    message = N_("This join link has expired. Ask the host for a new one.")


class InviteUsedUp(InviteError):
    status = 410
    code = "invite_used_up"
    title = N_("This join link has been used")
    message = N_(
        "This join link has already been used as often as it allows. Ask the host for a new one."
    )


class InviteRevoked(InviteError):
    status = 410
    code = "invite_revoked"
    title = N_("This join link was withdrawn")
    message = N_("The host has withdrawn this join link.")


class NotAdmitted(MeetgateError):
    status = 403
    code = "not_admitted"
    title = N_("You are not admitted to this meeting")
    message = N_(
        "This meeting is only open to invited participants. Open your personal join link to enter."
    )


class AdmissionRevoked(NotAdmitted):
    code = "admission_revoked"
    title = N_("You were removed from this meeting")
    message = N_("A host removed you from this meeting. You cannot rejoin with this link.")


class AdmissionReplaced(AdmissionRevoked):
    """Revoked because the same person signed in again elsewhere, not by a host."""

    code = "admission_replaced"
    title = N_("You joined from another browser")
    message = N_(
        "You joined this meeting from another browser or device, so this one was closed."
        " To continue here instead, open the meeting's link and sign in again."
    )


class AdmissionBanned(NotAdmitted):
    code = "admission_banned"
    title = N_("You cannot join this meeting")
    message = N_("A host has barred you from this meeting.")


class NotAllowed(NotAdmitted):
    code = "not_allowed"
    title = N_("This meeting is not open to you")
    message = N_(
        "You were identified, but this meeting's hosts have not opened it to you."
        " If you think this is wrong, contact the organisers."
    )


class RoomLocked(MeetgateError):
    status = 423
    code = "room_locked"
    title = N_("This meeting is locked")
    message = N_(
        "The hosts have locked this meeting: nobody new can join right now. Try again later."
    )


class ApprovalRequired(MeetgateError):
    status = 403
    code = "approval_required"
    title = N_("A host must let you in")
    message = N_(
        "The hosts have closed this meeting to everyone they have not approved."
        " Please contact the organisers."
    )


class NotHost(MeetgateError):
    status = 403
    code = "not_host"
    title = N_("Hosts only")
    message = N_("Only a host of this meeting can do this. Open your host invite link first.")


class RoomMoved(MeetgateError):
    """The admin acted on a room whose meeting moved on: acting there would do nothing (nobody
    is left in it) or split the meeting (a second move). Names the room the meeting is in now,
    or says that the room it moved to was deleted since."""

    status = 409
    code = "room_moved"
    title = N_("Meeting moved")
    message = N_("The meeting in this room moved to room {room}: act on that room.")


class CsrfFailed(MeetgateError):
    status = 403
    code = "csrf_failed"
    title = N_("Request refused")
    message = N_(
        "This form has expired or was not sent from this page. Reload the page and try again."
    )


class PolicyChanged(MeetgateError):
    status = 409
    code = "policy_changed"
    title = N_("Changed meanwhile")
    message = N_(
        "Someone changed this room's policy after you opened the page, so yours was not saved."
        " Reload the dashboard to see the policy as it is now, then make your change again."
    )


class TicketInvalid(MeetgateError):
    status = 401
    code = "ticket_invalid"
    title = N_("Meeting ticket not valid")
    message = N_("The meeting ticket is missing, expired or not valid. Reload the meeting page.")


class CrossSiteRequest(MeetgateError):
    status = 403
    code = "cross_site_request"
    title = N_("Request refused")
    message = N_("This form was sent from another site. Open your join link directly.")


class AdminAuthFailed(MeetgateError):
    status = 401
    code = "admin_auth_failed"
    title = N_("Not authorised")
    message = N_("A valid admin token is required.")


# Which limit refused a join attempt (as `[rates]` names them), in words an attendee understands;
# the page adds when to try again.
RATE_LIMIT_MESSAGES: dict[str, str] = {
    "address": N_(
        "Too many attempts from your internet address in a short time. Please wait, then try again."
    ),
    "network": N_(
        "Too many attempts from your network (your address and those near it) in a short time."
        " Please wait, then try again."
    ),
    "room": N_(
        "Too many people are trying to join this meeting at the same moment."
        " Please wait, then try again."
    ),
    "invite": N_(
        "This join link was tried too many times in a short time. Please wait, then try again."
    ),
    "identity": N_(
        "Too many attempts to join as you in a short time. Please wait, then try again."
    ),
    "gate": N_(
        "Too many people are trying to join meetings on this server at the same moment."
        " Please wait, then try again."
    ),
    "registration": N_(
        "Too many people are registering for this meeting at the same moment."
        " Please wait, then try again."
    ),
}


class RateLimited(MeetgateError):
    status = 429
    code = "rate_limited"
    title = N_("Too many attempts")
    message = N_("Too many attempts in a short time. Please wait, then try again.")

    def __init__(
        self, retry_after: float, message: str | None = None, *, limit: str | None = None
    ) -> None:
        """`limit`: the limit that refused (a key of RATE_LIMIT_MESSAGES), named on the page."""
        super().__init__(message or RATE_LIMIT_MESSAGES.get(limit or ""))
        self.retry_after = retry_after_seconds(retry_after)
        self.limit = limit


def retry_after_seconds(wait: float) -> int:
    """A wait as the whole seconds of a Retry-After header: rounded up (less than a millisecond
    past a whole second does not count), at least 1."""
    return max(1, int(wait + 0.999))


class UpstreamUnreachable(MeetgateError):
    status = 502
    code = "upstream_unreachable"
    title = N_("The meeting server is unreachable")
    message = N_(
        "Meetgate admitted you, but the meeting server behind it does not answer."
        " Please try again in a minute; if it persists, tell the organisers."
    )


class StoreUnavailable(MeetgateError):
    status = 503
    code = "store_unavailable"
    title = N_("Temporarily unavailable")
    message = N_(
        "Meetgate cannot check admissions right now, so it lets nobody new in."
        " Please try again in a minute."
    )
    # A stall or a restart usually passes within seconds; a retry sooner only adds load.
    retry_after = 5


class GateStopping(MeetgateError):
    """This replica is shutting down (SIGTERM): a front with another replica sends the request
    there; a browser retrying reaches another one."""

    status = 503
    code = "stopping"
    title = N_("Temporarily unavailable")
    message = N_("This Meetgate server is restarting. Please try again in a moment.")
    retry_after = 1


class StoreMemoryLost(MeetgateError):
    """The store came back without what it held (gateway/store/continuity.py): a ban or a
    revocation may be forgotten, so nobody is let in until an admin acknowledges the loss."""

    status = 503
    code = "store_memory_lost"
    title = N_("The meeting's memory was lost")
    message = N_(
        "Meetgate's store lost what it remembered, and with it perhaps who was removed from this"
        " meeting, so it lets nobody in until an admin has checked and confirmed. Meetings"
        " already running go on. Please try again later."
    )
    retry_after = 60


class ConfigError(Exception):
    """Settings that cannot be used; carries every problem found, named as the user writes it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
