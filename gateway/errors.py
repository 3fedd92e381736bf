"""The exception tree: each error knows its HTTP status, a stable code and its public message.

Messages here are shown to users as they are; they never carry a secret, a token or a trace.
"""

from __future__ import annotations


class MeetgateError(Exception):
    """Base of every error Meetgate shows to a user or an API client."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Something went wrong"
    message: str = "Meetgate could not complete this request. Please try again in a moment."
    # Seconds for a Retry-After header (and the page's "try again" hint), for errors that pass.
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class BadRequest(MeetgateError):
    status = 400
    code = "bad_request"
    title = "This request is not valid"
    message = "The request could not be understood."


class DuplicateParameter(BadRequest):
    code = "duplicate_parameter"
    message = "A parameter appears more than once in this request."


class RequestTooLarge(MeetgateError):
    status = 413
    code = "request_too_large"
    title = "Request too large"
    message = "This request is larger than Meetgate accepts."


class MalformedJson(BadRequest):
    code = "malformed_json"
    message = "The request body is not valid JSON."


class UnsupportedMediaType(MeetgateError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported request body"
    message = "This request's body must be JSON, sent with Content-Type: application/json."


class RequestInvalid(MeetgateError):
    """A well-formed request whose values are not what the call takes (the admin API's 422)."""

    status = 422
    code = "request_invalid"
    title = "This request is not valid"
    message = "The request's values are not what this call takes."


class MethodNotAllowed(MeetgateError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"
    message = "This address does not take this method."


class HeadersTooLarge(MeetgateError):
    status = 431
    code = "headers_too_large"
    title = "Request headers too large"
    message = "The request headers are larger than Meetgate accepts."


class BoshBodyInvalid(BadRequest):
    code = "bosh_body_invalid"
    title = "Not a signalling request"
    message = (
        "This signalling request's body is not a single well-formed BOSH <body> element,"
        " so it was not passed on."
    )


class RequestAborted(BadRequest):
    """The client went away before its request body ended: nothing of it is completed upstream.
    (Nobody is left to read this; the status is for the access log.)"""

    code = "request_aborted"
    message = "The request body was cut off before its end."


class InvalidRoomName(BadRequest):
    code = "invalid_room_name"
    title = "Invalid room name"
    message = (
        "Room names use lowercase letters, digits, '-' and '_', start with a letter or a digit,"
        " and are at most 64 characters long."
    )


class InvalidInput(BadRequest):
    code = "invalid_input"


class NotFound(MeetgateError):
    status = 404
    code = "not_found"
    title = "Not found"
    message = "There is nothing here."


class PathRefused(NotFound):
    """A path no rule of the gate's allowlist names: refused, never forwarded to Jitsi."""

    code = "path_refused"
    message = "Meetgate does not pass this address on to the meeting server."


class RoomNotFound(NotFound):
    code = "room_not_found"
    title = "Unknown room"
    message = "This room does not exist."


class RoomExists(MeetgateError):
    status = 409
    code = "room_exists"
    title = "Room exists"
    message = "A room with this name already exists."


class InviteError(MeetgateError):
    """A join link that cannot be used; every subclass renders the invite page."""

    status = 404
    code = "invite_invalid"
    title = "This join link does not work"


class InviteUnknown(InviteError):
    code = "invite_unknown"
    title = "Unknown join link"
    message = (
        "This join link is not valid. Check that you copied all of it,"
        " or ask the host for a new one."
    )


class InviteMalformed(InviteUnknown):
    code = "invite_malformed"


class InviteExpired(InviteError):
    status = 410
    code = "invite_expired"
    title = "This join link has expired"
    message = "This join link has expired. Ask the host for a new one."


class InviteUsedUp(InviteError):
    status = 410
    code = "invite_used_up"
    title = "This join link has been used"
    message = (
        "This join link has already been used as often as it allows. Ask the host for a new one."
    )


class InviteRevoked(InviteError):
    status = 410
    code = "invite_revoked"
    title = "This join link was withdrawn"
    message = "The host has withdrawn this join link."


class NotAdmitted(MeetgateError):
    status = 403
    code = "not_admitted"
    title = "You are not admitted to this meeting"
    message = (
        "This meeting is only open to invited participants. Open your personal join link to enter."
    )


class AdmissionRevoked(NotAdmitted):
    code = "admission_revoked"
    title = "You were removed from this meeting"
    message = "A host removed you from this meeting. You cannot rejoin with this link."


class AdmissionBanned(NotAdmitted):
    code = "admission_banned"
    title = "You cannot join this meeting"
    message = "A host has barred you from this meeting."


class NotAllowed(NotAdmitted):
    code = "not_allowed"
    title = "This meeting is not open to you"
    message = (
        "You were identified, but this meeting's hosts have not opened it to you."
        " If you think this is wrong, contact the organisers."
    )


class RoomLocked(MeetgateError):
    status = 423
    code = "room_locked"
    title = "This meeting is locked"
    message = "The hosts have locked this meeting: nobody new can join right now. Try again later."


class ApprovalRequired(MeetgateError):
    status = 403
    code = "approval_required"
    title = "A host must let you in"
    message = (
        "The hosts have closed this meeting to everyone they have not approved."
        " Please contact the organisers."
    )


class NotHost(MeetgateError):
    status = 403
    code = "not_host"
    title = "Hosts only"
    message = "Only a host of this meeting can do this. Open your host invite link first."


class CsrfFailed(MeetgateError):
    status = 403
    code = "csrf_failed"
    title = "Request refused"
    message = "This form has expired or was not sent from this page. Reload the page and try again."


class PolicyChanged(MeetgateError):
    status = 409
    code = "policy_changed"
    title = "Changed meanwhile"
    message = (
        "Someone changed this room's policy after you opened the page, so yours was not saved."
        " Reload the dashboard to see the policy as it is now, then make your change again."
    )


class TicketInvalid(MeetgateError):
    status = 401
    code = "ticket_invalid"
    title = "Meeting ticket not valid"
    message = "The meeting ticket is missing, expired or not valid. Reload the meeting page."


class CrossSiteRequest(MeetgateError):
    status = 403
    code = "cross_site_request"
    title = "Request refused"
    message = "This form was sent from another site. Open your join link directly."


class AdminAuthFailed(MeetgateError):
    status = 401
    code = "admin_auth_failed"
    title = "Not authorised"
    message = "A valid admin token is required."


class RateLimited(MeetgateError):
    status = 429
    code = "rate_limited"
    title = "Too many attempts"
    message = "Too many attempts from your network. Please wait a moment and try again."

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after_seconds(retry_after)


def retry_after_seconds(wait: float) -> int:
    """A wait as the whole seconds of a Retry-After header: rounded up (less than a millisecond
    past a whole second does not count), at least 1."""
    return max(1, int(wait + 0.999))


class UpstreamUnreachable(MeetgateError):
    status = 502
    code = "upstream_unreachable"
    title = "The meeting server is unreachable"
    message = (
        "Meetgate admitted you, but the meeting server behind it does not answer."
        " Please try again in a minute; if it persists, tell the organisers."
    )


class StoreUnavailable(MeetgateError):
    status = 503
    code = "store_unavailable"
    title = "Temporarily unavailable"
    message = (
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
    title = "Temporarily unavailable"
    message = "This Meetgate server is restarting. Please try again in a moment."
    retry_after = 1


class StoreMemoryLost(MeetgateError):
    """The store came back without what it held (gateway/store/continuity.py): a ban or a
    revocation may be forgotten, so nobody is let in until an admin acknowledges the loss."""

    status = 503
    code = "store_memory_lost"
    title = "The meeting's memory was lost"
    message = (
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
