"""The host dashboard's meeting form (issue 19): registration on or off, the domains approved at
once, the meeting's start and end, read into MeetingSettings; and the form's view of a room.

Times are written and read in UTC (`YYYY-MM-DDTHH:MM`, as a datetime-local field sends them):
the page says so, and a host in any time zone reads the same thing. The rules are Meetgate's one
set (gateway/admission/meeting.py, as the admin API's); each refusal is shown in the host's
language beside the name of the setting it is about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from gateway.admission.meeting import (
    MeetingChange,
    MeetingRefused,
    Setting,
    SettingRefused,
    meeting_changed,
)
from gateway.errors import InvalidInput, InvalidValues, Phrase
from gateway.host.actions import MeetingSettings
from gateway.i18n import N_
from gateway.store.records import Room

MEETING_FIELDS = ("registration", "auto_approve_domains", "starts_at", "ends_at")
# Domains approved at once, at most; the admin API takes longer lists.
MAX_DOMAINS = 100
TIME_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")
_SEPARATORS = re.compile(r"[\s,;]+")
# Each setting as the form names it, before what is wrong with it.
SETTING_LABELS: Final[Mapping[Setting, str]] = {
    "registration": N_("Registration"),
    "auto_approve_domains": N_("E-mail domains approved at once"),
    "auto_approve_emails": N_("E-mail addresses approved at once"),
    "series": N_("Series"),
    "starts_at": N_("Starts (UTC)"),
    "ends_at": N_("Ends (UTC)"),
}


def meeting_from_form(
    fields: Mapping[str, str], room: Room, *, registration_available: bool, now: float
) -> MeetingSettings:
    """The meeting settings the form asks for `room`, by the meeting's rules; InvalidValues
    naming each refused setting and why (a domain no address can have, a time that is none or
    not between 2000 and 2100, an end not after the start, more than 7 days after it or past,
    registration when the gate cannot send its codes and invitations or the room's policy has
    no personal invites); InvalidInput for a box that is neither ticked nor not, or too many
    domains."""
    box = fields.get("registration", "")
    if box not in ("", "1", "on"):
        raise InvalidInput(N_("The box '{name}' can only be ticked or not."), name="registration")
    domains = [
        entry for entry in _SEPARATORS.split(fields.get("auto_approve_domains", "")) if entry
    ]
    if len(domains) > MAX_DOMAINS:
        raise InvalidInput(N_("At most {most} domains are approved at once."), most=MAX_DOMAINS)
    change = MeetingChange(
        registration=box != "",
        auto_approve_domains=domains,
        starts_at=fields.get("starts_at", ""),
        ends_at=fields.get("ends_at", ""),
    )
    try:
        changed = meeting_changed(
            change,
            room,
            now=now,
            mail_configured=registration_available,
            read_time=_form_time,
        )
    except MeetingRefused as refused:
        raise InvalidValues(
            [
                # Translators: a refused value of the host dashboard's meeting form: the
                # field's label, then what is wrong with it ("Ends (UTC): is not after the
                # meeting's start.")
                Phrase(
                    N_("{setting}: {problem}."),
                    setting=Phrase(SETTING_LABELS[problem.setting]),
                    problem=problem.problem,
                )
                for problem in refused.problems
            ]
        ) from None
    return MeetingSettings.of(changed)


def _form_time(given: object) -> float | None:
    """A time as the form's field sends it (UTC, no offset: the page says so); None if empty."""
    text = given.strip() if isinstance(given, str) else ""
    if not text:
        return None
    when = None
    if TIME_SHAPE.fullmatch(text) is not None:
        try:
            when = datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=UTC)
        except ValueError:
            when = None
    if when is None:
        raise SettingRefused(Phrase(N_("write it as 2026-12-20T14:00 (UTC), or leave it empty")))
    return when.timestamp()


def form_time(at: float | None) -> str:
    """A time as the form's field holds it (UTC), "" for none."""
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M")


def meeting_view(room: Room) -> dict[str, Any]:
    return {
        "registration": room.registration,
        "auto_approve_domains": "\n".join(room.auto_approve_domains),
        "starts_at": form_time(room.starts_at),
        "ends_at": form_time(room.ends_at),
        "starts": room.starts_at,
        "ends": room.ends_at,
    }
