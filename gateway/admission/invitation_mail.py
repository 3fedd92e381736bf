"""The invitation e-mail: its subject, its plain-text body and its calendar entry, in the
invitee's language. Pure: the outbox (gateway/admission/outbox.py) sends what this writes.

Short, for a phone: who it is for, the meeting and its time (in UTC, written out in the
language), the personal link alone on its line (where a mail app makes it a button), and that
the link must not be forwarded.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from babel.dates import format_date, format_time

from gateway.admission.calendar import CalendarEntry, calendar
from gateway.i18n import ENGLISH, N_, Language, chosen, translations
from gateway.store.records import Role

# Translators: the subject of the e-mail that carries a personal join link; {room} is the
# meeting's title, in any language.
SUBJECT = N_("Your invitation to {room}")
# Translators: the first line of an invitation e-mail; {name} is the invitee's name.
GREETING = N_("Hello {name},")
INVITED = N_("You are invited to {room}.")
INVITED_HOST = N_("You are invited to host {room}.")
# Translators: {date} is a date written out ("Monday, December 7, 2026"), {start} and {end}
# times of day (14:00); the times are in UTC.
WHEN = N_("When: {date}, from {start} to {end} (UTC)")
# Translators: as above, for a meeting that ends on another day than it starts.
WHEN_DAYS = N_("When: from {date}, {start} to {end_date}, {end} (UTC)")
# Translators: the personal link follows on a line of its own.
YOUR_LINK = N_("Your personal link to join:")
PERSONAL = N_(
    "This link is for {name} alone: please do not forward it. Whoever uses it joins under"
    " this name."
)
SHARED = N_("This link lets in up to {uses} people under the name {name}: share it only with them.")
CALENDAR_ATTACHED = N_("The meeting is attached for your calendar.")
NOT_EXPECTED = N_("If you did not expect this invitation, you can ignore this e-mail.")
# Translators: the text of the calendar entry; the personal link follows on a line of its own.
CALENDAR_TEXT = N_("Your personal link to join (do not forward it):")


@dataclass(frozen=True, slots=True)
class InvitationText:
    """What one invitation e-mail says. `calendar` is the `.ics` (None when the meeting has
    no start time)."""

    subject: str
    body: str
    calendar: bytes | None


def language_of(tag: str) -> Language:
    """The language an invitation's tag names, English for one we do not speak."""
    return chosen(tag) or ENGLISH


def one_line(value: str) -> str:
    """A title or a name as it may stand in a subject or on one line: every run of white space
    and control characters (a line break above all) made one space."""
    cleaned = "".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in value)
    return " ".join(cleaned.split())


def meeting_time(language: Language, starts_at: float, ends_at: float | None) -> str:
    """The meeting's time in UTC, written out in `language`; one hour when the end is unknown."""
    catalog = translations(language)
    start = datetime.datetime.fromtimestamp(starts_at, tz=datetime.UTC)
    end = datetime.datetime.fromtimestamp(
        ends_at if ends_at is not None and ends_at > starts_at else starts_at + 3600,
        tz=datetime.UTC,
    )
    locale = language.locale

    def day(moment: datetime.datetime) -> str:
        return str(format_date(moment, "full", locale=locale))

    def clock(moment: datetime.datetime) -> str:
        return str(format_time(moment, "HH:mm", tzinfo=datetime.UTC, locale=locale))

    if start.date() == end.date():
        return catalog.gettext(WHEN).format(date=day(start), start=clock(start), end=clock(end))
    return catalog.gettext(WHEN_DAYS).format(
        date=day(start), start=clock(start), end_date=day(end), end=clock(end)
    )


def invitation_text(
    language: Language,
    *,
    room_title: str,
    name: str,
    role: Role,
    link: str,
    max_uses: int,
    starts_at: float | None,
    ends_at: float | None,
    uid: str,
    now: float,
) -> InvitationText:
    """The e-mail for one invitee; `uid` names the calendar entry (stable for the invite)."""
    catalog = translations(language)
    title = one_line(room_title)
    person = one_line(name)
    invited = INVITED_HOST if role is Role.HOST else INVITED
    lines = [
        catalog.gettext(GREETING).format(name=person),
        "",
        catalog.gettext(invited).format(room=title),
    ]
    if starts_at is not None:
        lines.append(meeting_time(language, starts_at, ends_at))
    lines += ["", catalog.gettext(YOUR_LINK), "", link, ""]
    if max_uses > 1:
        lines.append(catalog.gettext(SHARED).format(uses=max_uses, name=person))
    else:
        lines.append(catalog.gettext(PERSONAL).format(name=person))
    ics: bytes | None = None
    if starts_at is not None:
        lines.append(catalog.gettext(CALENDAR_ATTACHED))
        description = f"{catalog.gettext(CALENDAR_TEXT)}\n{link}"
        ics = calendar(
            CalendarEntry(
                uid=uid,
                title=title,
                starts_at=starts_at,
                ends_at=ends_at,
                link=link,
                description=description,
                stamped_at=now,
            )
        )
    lines += ["", catalog.gettext(NOT_EXPECTED)]
    subject = catalog.gettext(SUBJECT).format(room=title)
    return InvitationText(subject=subject, body="\n".join(lines) + "\n", calendar=ics)
