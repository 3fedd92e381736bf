"""The admin API's bulk invitations: importing a list of invitees (CSV) into a room, as printed
links or as e-mails the outbox sends, and how far a batch of e-mails got. Mounted by
gateway/admin_api.py (`create_admin_app`), behind the same token and error answers.

Nothing half made. Every row is read and checked, and every invite built, before the store is
written to. Printed links: the invites are then stored one by one; if the store fails on the
way, those already stored are revoked (their links were never shown, so nobody holds them
anyway) and the answer says how many rows were made and that they were revoked. E-mails: the
good rows go to the InvitationQueue in one call, which makes their invites and queues their
mails so that neither goes without the other (gateway/admission/outbox.py says how).

What the room's log and the server's log keep of an import is counts, never a name or an address.
"""

from __future__ import annotations

import binascii
import logging
import time
from base64 import b64decode
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi import Path as FastApiPath
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from gateway.admission.invitations import BatchProgress, Invitation, InvitationQueue
from gateway.admission.invite_import import (
    MAX_FILE_BYTES,
    MAX_ROWS,
    Invitee,
    InviteList,
    RowProblem,
    read_invite_list,
)
from gateway.admission.invites import MAX_LIFETIME_SECONDS, MAX_USES, NewInvite, make_invite
from gateway.admission.pipeline import join_plan
from gateway.errors import InvalidInput, MeetgateError, NotFound, Phrase, StoreUnavailable
from gateway.host.actions import ADMIN, HostDesk
from gateway.i18n import DEFAULT, LANGUAGES, N_
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import AuditFacts, AuditKind, Role, Room

log = logging.getLogger("meetgate.admin")

LANGUAGE_TAGS = tuple(language.tag for language in LANGUAGES)
# A batch id as the outbox makes them; anything else is no batch.
BATCH_ID = r"^[A-Za-z0-9_-]{1,64}$"


class MailNotConfigured(MeetgateError):
    """Invitations by e-mail asked of a gate that has no SMTP server to send them through."""

    status = 409
    code = "mail_not_configured"
    title = N_("E-mail is not configured")
    message = N_(
        "This Meetgate has no SMTP server configured ([smtp] host), so it cannot send"
        " invitations. Import without sending to get the links, or configure [smtp]."
    )


class ImportInterrupted(StoreUnavailable):
    """The store failed while an import's invites were being stored: those stored were revoked
    (or, if the store could not revoke them either, are unusable: nobody was given their links)."""

    code = "import_interrupted"
    message = N_(
        "The store failed after {made} of {total} invites were made (up to line {line}); they"
        " were {undone}, so nothing of this import can be used. Import the whole file again"
        " once the store answers."
    )


def _json_number(value: object) -> object:
    # JSON Schema's integer: 3 and 3.0, never "3" or true (as the admin API's other calls).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be a valid integer")
    return value


def _language_tag(value: str) -> str:
    if value not in LANGUAGE_TAGS:
        raise ValueError(f"Input should be one of {', '.join(LANGUAGE_TAGS)}")
    return value


LanguageTag = Annotated[
    str, AfterValidator(_language_tag), Field(json_schema_extra={"enum": list(LANGUAGE_TAGS)})
]
_Uses = Annotated[int, Field(ge=1, le=MAX_USES), BeforeValidator(_json_number), Field(strict=False)]
_Lifetime = Annotated[
    int,
    Field(ge=60, le=int(MAX_LIFETIME_SECONDS)),
    BeforeValidator(_json_number),
    Field(strict=False),
]


class InviteImportIn(BaseModel):
    """A list of invitees: the CSV file's text (for a UTF-8 file), or with `base64` its bytes in
    base64 (any file: the lines that are not UTF-8 are reported, the others read)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    csv: str = Field(
        description=f"The file: name, e-mail, optional role (attendee or host); a header row"
        f" optional; comma or semicolon separated; at most {MAX_FILE_BYTES // 1048576} MiB"
        f" and {MAX_ROWS} rows"
    )
    base64: bool = Field(
        default=False, description="`csv` is the file's bytes in base64 (standard, padded)"
    )
    delimiter: Literal[",", ";"] | None = Field(
        default=None, description="The separator; null: found from the first rows"
    )
    send: bool = Field(
        default=False,
        description="Send each invitee their link by e-mail (needs [smtp]); else the links are"
        " answered, to be delivered another way",
    )
    language: LanguageTag | None = Field(
        default=None,
        description="The e-mails' language (a tag); null: the room's language, else English",
    )
    uses: _Uses = Field(default=1, description="How often each link works")
    expires: _Lifetime = Field(
        default=7 * 24 * 3600,
        description="Printed links: their lifetime in seconds (sent ones live as the outbox"
        " decides: until the meeting ends)",
    )

    def file_bytes(self) -> bytes:
        """The file's bytes; InvalidInput (400) for `base64` text that is not base64."""
        if not self.base64:
            # A lone surrogate (JSON's "\ud800") stays in its line, which is then not UTF-8.
            return self.csv.encode("utf-8", errors="surrogatepass")
        if len(self.csv) > 4 * (MAX_FILE_BYTES // 3 + 1):
            # Decoded, it would be over the file limit: said by the reader, without decoding.
            return b"\n" * (MAX_FILE_BYTES + 1)
        try:
            return b64decode(self.csv, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                N_("The file is not in base64 (the standard alphabet, padded).")
            ) from exc


class RowProblemOut(BaseModel):
    line: int = Field(description="The line the row starts on (a line not UTF-8: that line)")
    code: str = Field(
        description="empty_name, name_refused, no_address, bad_address, unknown_role,"
        " duplicate, too_many_columns, not_utf8"
    )
    reason: str = Field(description="In words (English); never the row's name or address")


class PrintedLinkOut(BaseModel):
    line: int
    name: str = Field(description="The name the invite was made for, as validated")
    role: Role
    id: str = Field(description="The invite's id (`meetgate invite revoke ID`)")
    link: str = Field(description="The personal join link: a secret, shown only this once")


class ImportOut(BaseModel):
    """What an import made. Printed links: `links`, one per good row; sent: `batch`, whose
    progress `GET /api/v1/outbox/{batch}` tells. `problems`: each refused row."""

    created: int = Field(description="Invites made (links printed, or e-mails queued)")
    batch: str | None = Field(description="The outbox batch the e-mails went into; null if none")
    links: list[PrintedLinkOut]
    problems: list[RowProblemOut]
    delimiter: str = Field(description="The separator the file was read with")
    header: bool = Field(description="The first row was read as a header")


class BatchProgressOut(BaseModel):
    """How far a batch of invitations got: counts only, never who."""

    batch: str
    room: str
    total: int
    sent: int
    failed: int
    waiting: int = Field(description="Queued, being sent, or waiting for a retry")
    retry_at: float | None = Field(
        description="When the next retry is due, if the mail server failed; null otherwise"
    )
    done: bool = Field(description="Every invitation was sent or reported failed")

    @classmethod
    def of(cls, progress: BatchProgress) -> BatchProgressOut:
        return cls(
            batch=progress.batch,
            room=progress.room,
            total=progress.total,
            sent=progress.sent,
            failed=progress.failed,
            waiting=progress.waiting,
            retry_at=progress.retry_at,
            done=progress.done,
        )


BatchId = Annotated[str, FastApiPath(pattern=BATCH_ID, description="A batch's id")]


def _problems_out(problems: Sequence[RowProblem]) -> list[RowProblemOut]:
    return [RowProblemOut(line=p.line, code=p.code, reason=p.reason) for p in problems]


def _language(asked: str | None, room: Room) -> str:
    return asked or room.language or DEFAULT.tag


def _undone_lines(made: Sequence[NewInvite], invitees: Sequence[Invitee]) -> int:
    return invitees[len(made) - 1].line if made else 0


def invitation_routes(
    settings: Settings,
    store: Store,
    desk: HostDesk,
    queue: InvitationQueue | None,
    *,
    guarded: Sequence[Any],
    import_errors: dict[int | str, dict[str, Any]],
    progress_errors: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """The routes, for `create_admin_app` to include. `queue`: where e-mails go; None when the
    gate has no SMTP server (sending is refused, no batch is known). `guarded`: the admin API's
    declared dependencies (the token); `import_errors`, `progress_errors`: the answers each
    route may give besides the admin API's common ones, for the schema."""
    router = APIRouter()
    pseudonym_key = settings.admission.pseudonym_key.get_secret_value().encode()

    async def printed(room: Room, found: InviteList, body: InviteImportIn, now: float) -> ImportOut:
        invitees = found.invitees
        # Every invite is built (and checked) before any is stored.
        built = [
            make_invite(
                room=room.name,
                name=invitee.name,
                role=invitee.role,
                max_uses=body.uses,
                lifetime_seconds=body.expires,
                now=now,
            )
            for invitee in invitees
        ]
        stored: list[NewInvite] = []
        try:
            for made in built:
                await store.add_invite(made.invite, join_plan(made.invite, pseudonym_key))
                stored.append(made)
        except MeetgateError as exc:
            undone = await _revoke_all(stored)
            log.warning(
                "an invite import into room %s stopped after %d of %d invites (%s); %s",
                room.name,
                len(stored),
                len(built),
                type(exc).__name__,
                "they were revoked" if undone else "revoking them failed too",
            )
            raise ImportInterrupted(
                made=len(stored),
                total=len(built),
                line=_undone_lines(stored, invitees),
                undone=Phrase(N_("revoked"))
                if undone
                else Phrase(N_("left unrevoked but unusable (nobody was given their links)")),
            ) from exc
        links = [
            PrintedLinkOut(
                line=invitee.line,
                name=made.invite.name,
                role=made.invite.role,
                id=made.invite.id,
                link=f"{settings.public_url}/j/{made.token}",
            )
            for invitee, made in zip(invitees, stored, strict=True)
        ]
        return ImportOut(
            created=len(links),
            batch=None,
            links=links,
            problems=_problems_out(found.problems),
            delimiter=found.delimiter,
            header=found.header,
        )

    async def _revoke_all(stored: Sequence[NewInvite]) -> bool:
        try:
            for made in stored:
                await store.revoke_invite(made.invite.id)
        except MeetgateError:
            return False
        return True

    async def sent(
        room: Room, found: InviteList, body: InviteImportIn, now: float, queue: InvitationQueue
    ) -> ImportOut:
        language = _language(body.language, room)
        invitations = [
            Invitation(
                room=room.name,
                name=invitee.name,
                address=invitee.address,
                role=invitee.role,
                language=language,
                origin="import",
                max_uses=body.uses,
            )
            for invitee in found.invitees
        ]
        batch = None
        if invitations:
            batch = (await queue.enqueue(room, invitations, now=now)).batch
        return ImportOut(
            created=len(invitations),
            batch=batch,
            links=[],
            problems=_problems_out(found.problems),
            delimiter=found.delimiter,
            header=found.header,
        )

    @router.post(
        "/api/v1/rooms/{name}/invites/import",
        dependencies=list(guarded),
        responses=import_errors,
    )
    async def import_invites(name: str, body: InviteImportIn) -> ImportOut:
        """Import a list of invitees (CSV: name, e-mail, optional role) into the room. Every row
        is checked first; a file over a limit (2 MiB, 5,000 rows, a field of 1,000 characters)
        is refused whole (400 invite_list_refused) and nothing is made. Each good row gets an
        invite: with `send`, its link goes by e-mail (the outbox's batch is answered); without,
        the links are answered (secrets, shown only this once). Each refused row is answered
        with its line and reason. Logged in the room's log as the admin's, counts only."""
        now = time.time()
        room = await desk.current(ADMIN, name, now)
        if body.send and (queue is None or not settings.mail_configured):
            raise MailNotConfigured()
        found = read_invite_list(body.file_bytes(), body.delimiter)
        if body.send:
            assert queue is not None
            answer = await sent(room, found, body, now, queue)
            action = "send invites"
        else:
            answer = await printed(room, found, body, now)
            action = "import invites"
        if answer.created:
            facts = AuditFacts(
                AuditKind.INVITATIONS, count=answer.created, refused=len(answer.problems)
            )
            await desk.audit_admin(room.name, action, now, facts)
        log.info(
            "admin %s into room %s: %d made, %d rows refused%s",
            "sent an invite list" if body.send else "imported an invite list",
            room.name,
            answer.created,
            len(answer.problems),
            f", batch {answer.batch}" if answer.batch else "",
        )
        return answer

    @router.get("/api/v1/outbox/{batch}", dependencies=list(guarded), responses=progress_errors)
    async def batch_progress(batch: BatchId) -> BatchProgressOut:
        """How far a batch of invitations got (counts only); 404 not_found for a batch this
        gate does not know (or no longer: kept [outbox] batch_kept_seconds)."""
        progress = None if queue is None else await queue.progress(batch)
        if progress is None:
            raise NotFound(N_("No batch of invitations has this id."))
        return BatchProgressOut.of(progress)

    return router
