"""A room's meeting settings (issue 19) and Meetgate's one set of rules for them: registration on
or off, the addresses and domains approved at once, the series, the meeting's start and end.

Both the admin API (gateway/admin_api.py) and the hosts' dashboard form (gateway/host/
meeting_form.py) check a change here. Each refusal is a `MeetingProblem`: the setting at fault
and a phrase saying what is wrong with it, marked for translation, so the admin API answers it
in English beside the field and the dashboard shows it in the host's language. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal

from gateway.admission.email_codes import InvalidAddress, normalise_address
from gateway.admission.rooms import is_room_name
from gateway.errors import InvalidInput, Phrase
from gateway.i18n import N_
from gateway.store.records import AuditFacts, AuditKind, Room

# A meeting's time: between these (a mistyped year is refused, not kept), and at most a week long
# (a conference of several days is several meetings).
EARLIEST_MOMENT: Final = 946_684_800.0  # 2000-01-01T00:00Z
LATEST_MOMENT: Final = 4_102_444_800.0  # 2100-01-01T00:00Z
MAX_MEETING_SECONDS: Final = 7 * 86_400
MAX_DOMAIN_CHARS: Final = 253
EPOCH_SECONDS: Final = re.compile(r"\d{1,12}(?:\.\d{1,6})?")

# The settings, as the admin API's body names them.
Setting = Literal[
    "registration", "auto_approve_domains", "auto_approve_emails", "series", "starts_at", "ends_at"
]


@dataclass(frozen=True, slots=True)
class MeetingProblem:
    """One refused setting: which, and what is wrong with it (a phrase about that setting)."""

    setting: Setting
    problem: Phrase


class MeetingRefused(InvalidInput):
    """A change of the meeting settings that the rules refuse, with every problem at once."""

    message = N_("The meeting's settings are refused: {listed}.")

    def __init__(self, problems: Sequence[MeetingProblem]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(f"{p.setting}: {p.problem.shown()}" for p in problems)
        super().__init__(listed=listed)


class SettingRefused(ValueError):
    """A value one setting cannot take: `problem` says why, about that setting."""

    def __init__(self, problem: Phrase) -> None:
        super().__init__(problem.shown())
        self.problem = problem


# Reads a time as given (a number, or text in the caller's format) into seconds since the
# epoch, None for none; SettingRefused for what is no time.
ReadTime = Callable[[Any], float | None]


@dataclass(frozen=True, slots=True)
class MeetingChange:
    """What a change asks for: None leaves a setting as it is. A time is as given, read by the
    caller's ReadTime (`parse_moment` for the admin API); one read as None clears it."""

    registration: bool | None = None
    auto_approve_domains: Sequence[str] | None = None
    auto_approve_emails: Sequence[str] | None = None
    series: str | None = None
    starts_at: object = None
    ends_at: object = None


def parse_moment(value: float | str) -> float | None:
    """A meeting's time in seconds since the epoch, from a number of them (as a number or as
    text) or from ISO 8601 text that names its offset: a time without one would be read in the
    server's zone, which no organiser means. "" is None (no time). SettingRefused for anything
    else and for a time not between 2000 and 2100."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if EPOCH_SECONDS.fullmatch(text):
            seconds = float(text)
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise SettingRefused(
                    Phrase(
                        N_(
                            "is not a time: give ISO 8601 with an offset (2026-12-20T14:00+08:00,"
                            " or Z for UTC) or seconds since the epoch"
                        )
                    )
                ) from None
            if moment.tzinfo is None:
                raise SettingRefused(
                    Phrase(
                        N_(
                            "has no offset: add the meeting's (+08:00, or Z for UTC), else no one"
                            " knows which zone it is in"
                        )
                    )
                )
            seconds = moment.timestamp()
    else:
        seconds = value
    return checked_moment(seconds)


def checked_moment(seconds: float) -> float:
    """`seconds` if a meeting may be then (2000 to 2100); SettingRefused otherwise."""
    # Written so that NaN is refused too.
    if not EARLIEST_MOMENT <= seconds <= LATEST_MOMENT:
        raise SettingRefused(Phrase(N_("is not a time between the years 2000 and 2100")))
    return seconds


def is_mail_domain(value: str) -> bool:
    """A domain an address a code is sent to can have (email_codes.normalise_address's rule)."""
    if (
        not value
        or len(value) > MAX_DOMAIN_CHARS
        or "@" in value
        or any(unicodedata.category(char)[0] in "CZ" for char in value)
    ):
        return False
    try:
        normalise_address(f"x@{value}")
    except InvalidAddress:
        return False
    return True


def auto_approve_domains(values: Sequence[str]) -> tuple[str, ...]:
    """The domains as kept (trimmed, lower-cased, "@" before one dropped, blanks dropped,
    repeats kept once, as a policy's `allowed_domains`); SettingRefused naming the first that no
    address could have, by its place in the list (never echoed)."""
    kept: dict[str, None] = {}
    for place, value in enumerate(values, 1):
        domain = value.strip().lstrip("@").lower()
        if not domain:
            continue
        if not is_mail_domain(domain):
            raise SettingRefused(
                Phrase(
                    N_(
                        "entry {place} is not a domain an e-mail address can have"
                        " (like example.org)"
                    ),
                    place=place,
                )
            )
        kept[domain] = None
    return tuple(kept)


def auto_approve_emails(values: Sequence[str]) -> tuple[str, ...]:
    """The addresses as kept (normalise_address: trimmed, lower-cased; blanks dropped, repeats
    kept once); SettingRefused naming the first that is not a plain address, by its place."""
    kept: dict[str, None] = {}
    for place, value in enumerate(values, 1):
        if not value.strip():
            continue
        try:
            kept[normalise_address(value)] = None
        except InvalidAddress:
            raise SettingRefused(
                Phrase(
                    N_("entry {place} is not a plain e-mail address (like ada@example.org)"),
                    place=place,
                )
            ) from None
    return tuple(kept)


def meeting_changed(
    change: MeetingChange,
    room: Room,
    *,
    now: float,
    mail_configured: bool,
    read_time: ReadTime = parse_moment,
) -> Room:
    """`room` with `change` applied; MeetingRefused naming every refused setting at once.

    Turning registration on needs an SMTP server (the codes that confirm an address, and the
    invitations, are e-mail) and invites in the room's policy (an approved registration is sent
    one). A series is named as a room is. A meeting's time is between 2000 and 2100; its end
    comes after its start, within 7 days of it, and a new end is not past (registrations are
    kept until a while after it: a past end would drop them at once)."""
    problems: list[MeetingProblem] = []

    def refuse(setting: Setting, problem: Phrase) -> None:
        problems.append(MeetingProblem(setting, problem))

    if change.registration:
        if not mail_configured:
            refuse(
                "registration",
                Phrase(
                    N_(
                        "needs an SMTP server, and this Meetgate has none configured (codes and"
                        " invitations are sent by e-mail): an admin must set [smtp] host"
                        " (MEETGATE_SMTP__HOST) first"
                    )
                ),
            )
        if not room.policy.invite:
            refuse(
                "registration",
                Phrase(
                    N_(
                        "needs personal invites in the room's policy: an approved registration"
                        " is sent one"
                    )
                ),
            )
    changed: dict[str, Any] = {}
    if change.registration is not None:
        changed["registration"] = change.registration
    lists: tuple[tuple[Setting, Sequence[str] | None, Callable[[Sequence[str]], object]], ...] = (
        ("auto_approve_domains", change.auto_approve_domains, auto_approve_domains),
        ("auto_approve_emails", change.auto_approve_emails, auto_approve_emails),
    )
    for setting, given, kept in lists:
        if given is not None:
            try:
                changed[setting] = kept(given)
            except SettingRefused as exc:
                refuse(setting, exc.problem)
    if change.series is not None:
        series = change.series.strip()
        if series and not is_room_name(series):
            refuse(
                "series",
                Phrase(N_("is named as a room is: a-z, 0-9, '-', '_', at most 64 characters")),
            )
        changed["series"] = series
    times: dict[Setting, float | None] = {"starts_at": room.starts_at, "ends_at": room.ends_at}
    given_times: tuple[tuple[Setting, object], ...] = (
        ("starts_at", change.starts_at),
        ("ends_at", change.ends_at),
    )
    for setting, time_given in given_times:
        if time_given is not None:
            try:
                read = read_time(time_given)
                times[setting] = changed[setting] = None if read is None else checked_moment(read)
            except SettingRefused as exc:
                refuse(setting, exc.problem)
    starts, ends = times["starts_at"], times["ends_at"]
    if not problems and ends is not None:
        if change.ends_at is not None and ends != room.ends_at and ends <= now:
            refuse("ends_at", Phrase(N_("is past: registrations would be dropped at once")))
        if starts is not None and ends <= starts:
            refuse("ends_at", Phrase(N_("is not after the meeting's start")))
        elif starts is not None and ends - starts > MAX_MEETING_SECONDS:
            refuse("ends_at", Phrase(N_("is more than 7 days after the meeting's start")))
    if problems:
        raise MeetingRefused(problems)
    return replace(room, **changed)


def meeting_audit(was: Room, now: Room) -> list[tuple[str, AuditFacts | None]]:
    """The room's log entries (action, facts) for a change of its meeting settings: counts,
    domains, a series and times, never an address."""
    entries: list[tuple[str, AuditFacts | None]] = []
    if was.registration != now.registration:
        entries.append(("registration on" if now.registration else "registration off", None))
    if (was.auto_approve_domains, was.auto_approve_emails) != (
        now.auto_approve_domains,
        now.auto_approve_emails,
    ):
        facts = AuditFacts(
            AuditKind.AUTO_APPROVAL,
            domains=now.auto_approve_domains,
            count=len(now.auto_approve_emails),
        )
        entries.append(("change auto-approval", facts))
    if was.series != now.series:
        entries.append(("change series", AuditFacts(AuditKind.SERIES, series=now.series)))
    if (was.starts_at, was.ends_at) != (now.starts_at, now.ends_at):
        facts = AuditFacts(AuditKind.MEETING_TIME, starts=now.starts_at, ends=now.ends_at)
        entries.append(("change meeting time", facts))
    return entries
