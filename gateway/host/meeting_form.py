"""The host dashboard's meeting form (issue 19): registration on or off, the domains approved at
once, the meeting's start and end, read into MeetingSettings; and the form's view of a room.

Times are written and read in UTC (`YYYY-MM-DDTHH:MM`, as a datetime-local field sends them):
the page says so, and a host in any time zone reads the same thing. The rules are the admin API's
(gateway/admin_api.py, `registration_changed`), with messages a host reads in their language.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.admission.email_codes import InvalidAddress, normalise_address
from gateway.errors import InvalidInput
from gateway.host.actions import MeetingSettings
from gateway.i18n import N_
from gateway.store.records import Room

MEETING_FIELDS = ("registration", "auto_approve_domains", "starts_at", "ends_at")
# Domains approved at once, at most; the admin API takes longer lists.
MAX_DOMAINS = 100
# A meeting is at most this long (a conference of several days is several meetings).
MAX_MEETING_SECONDS = 7 * 86_400
TIME_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")
_SEPARATORS = re.compile(r"[\s,;]+")
MAX_DOMAIN_CHARS = 253
# The years a meeting's time may be in (as the admin API's).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


def meeting_from_form(
    fields: Mapping[str, str], room: Room, *, registration_available: bool, now: float
) -> MeetingSettings:
    """The meeting settings the form asks for `room`; InvalidInput for a domain, a time or a
    box no room may have, a meeting that ends before it starts, lasts past MAX_MEETING_SECONDS
    or whose new end is past, and registration when the gate cannot send its codes and
    invitations or the room's policy has no personal invites (an approved registration is sent
    one)."""
    box = fields.get("registration", "")
    if box not in ("", "1", "on"):
        raise InvalidInput(N_("The box '{name}' can only be ticked or not."), name="registration")
    registration = box != ""
    if registration and not registration_available:
        raise InvalidInput(
            N_(
                "Registration needs a mail server (codes and invitations go by e-mail), and"
                " Meetgate has none configured."
            )
        )
    if registration and not room.policy.invite:
        raise InvalidInput(
            N_(
                "Registration needs personal invite links among the ways in (an approved"
                " registration is sent one): tick them under 'Who may enter' first."
            )
        )
    domains = tuple(
        dict.fromkeys(
            _domain(entry)
            for entry in _SEPARATORS.split(fields.get("auto_approve_domains", ""))
            if entry
        )
    )
    if len(domains) > MAX_DOMAINS:
        raise InvalidInput(N_("At most {most} domains are approved at once."), most=MAX_DOMAINS)
    starts_at = _time(fields.get("starts_at", ""), N_("start"))
    ends_at = _time(fields.get("ends_at", ""), N_("end"))
    if ends_at is not None and ends_at != room.ends_at and ends_at <= now:
        raise InvalidInput(N_("The meeting's end is past: registrations would be erased at once."))
    if starts_at is not None and ends_at is not None:
        if ends_at <= starts_at:
            raise InvalidInput(N_("The meeting must end after it starts."))
        if ends_at - starts_at > MAX_MEETING_SECONDS:
            raise InvalidInput(N_("A meeting lasts at most 7 days."))
    return MeetingSettings(registration, domains, starts_at, ends_at)


def _domain(entry: str) -> str:
    """The domain as kept (trimmed, lower-cased, "@" before it dropped), if an address a code
    is sent to can have it (normalise_address's rule, as the admin API's)."""
    text = entry.strip().lstrip("@").lower()
    good = (
        len(text) <= MAX_DOMAIN_CHARS
        and "@" not in text
        and not any(unicodedata.category(char)[0] in "CZ" for char in text)
    )
    if good:
        try:
            normalise_address(f"x@{text}")
        except InvalidAddress:
            good = False
    if not good:
        raise InvalidInput(N_("'{domain}' is not a domain (like example.org)."), domain=entry[:60])
    return text


def _time(text: str, which: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    if TIME_SHAPE.fullmatch(text) is None:
        raise InvalidInput(
            N_("Write the meeting's {which} as 2026-12-20T14:00 (UTC), or leave it empty."),
            which=which,
        )
    try:
        when = datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(
            N_("Write the meeting's {which} as 2026-12-20T14:00 (UTC), or leave it empty."),
            which=which,
        ) from None
    if not EARLIEST <= when.timestamp() < LATEST:
        raise InvalidInput(N_("The meeting's time must be between the years 2000 and 2100."))
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
