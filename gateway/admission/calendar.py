"""The meeting as a calendar entry (RFC 5545): the `.ics` an invitation carries, so that a phone
offers to put the meeting in its calendar with the personal link in it. Pure: values in, bytes
out.

What a host or an attendee typed (a room's title, a name) is TEXT here: escaped (backslash,
semicolon, comma, line breaks) and stripped of control characters, so no title can end a line
and start a property or a component of its own. Lines are folded at 75 octets, never inside a
UTF-8 character, and end in CRLF.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

# RFC 5545 3.1: "Lines of text SHOULD NOT be longer than 75 octets, excluding the line break."
MAX_LINE_OCTETS = 75
PRODUCT = "-//Meetgate//Invitations//EN"
# A meeting whose end is unknown is shown an hour long.
DEFAULT_LENGTH_SECONDS = 3600
CONTENT_TYPE = "text/calendar"
FILENAME = "meeting.ics"


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """One meeting for one invitee. `uid` stays the same for the same invite (a calendar that
    gets the entry twice updates it rather than adding a second); `link` is the personal join
    link, `description` the text around it (in the invitation's language)."""

    uid: str
    title: str
    starts_at: float
    ends_at: float | None
    link: str
    description: str
    stamped_at: float


def escape_text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon and comma escaped, each line break
    (CRLF, CR or LF) written `\\n`, other control characters dropped (TEXT may hold none but
    the tab)."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in value if ch in "\t\n" or not _is_control(ch))
    return kept.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _is_control(ch: str) -> bool:
    code = ord(ch)
    # C0, DEL and C1; also the Unicode line and paragraph separators some readers break on.
    return code < 0x20 or 0x7F <= code <= 0x9F or ch in "\u2028\u2029"


def _uri(value: str) -> str:
    """A URI value is written as it is (no TEXT escaping); one with a character no URI holds is
    refused rather than written."""
    if any(_is_control(ch) or ch.isspace() for ch in value) or not value.isascii():
        raise ValueError("not a URI")
    return value


def fold(line: str) -> bytes:
    """One content line as UTF-8, folded into lines of at most 75 octets (each continuation
    begins with a space, which counts), never splitting a character; CRLF after each."""
    encoded = line.encode("utf-8")
    out = bytearray()
    start = 0
    limit = MAX_LINE_OCTETS
    while len(encoded) - start > limit:
        end = start + limit
        # Back off to the first byte of a character (continuation bytes are 10xxxxxx).
        while encoded[end] & 0xC0 == 0x80:
            end -= 1
        out += encoded[start:end] + b"\r\n "
        start = end
        limit = MAX_LINE_OCTETS - 1
    out += encoded[start:] + b"\r\n"
    return bytes(out)


def _utc(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(seconds), tz=datetime.UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def calendar(entry: CalendarEntry) -> bytes:
    """The VCALENDAR (METHOD:PUBLISH) holding the meeting as one VEVENT, in UTC."""
    ends_at = entry.ends_at
    if ends_at is None or ends_at <= entry.starts_at:
        ends_at = entry.starts_at + DEFAULT_LENGTH_SECONDS
    link = _uri(entry.link)
    lines = (
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODUCT}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{escape_text(entry.uid)}",
        f"DTSTAMP:{_utc(entry.stamped_at)}",
        f"DTSTART:{_utc(entry.starts_at)}",
        f"DTEND:{_utc(ends_at)}",
        f"SUMMARY:{escape_text(entry.title)}",
        f"DESCRIPTION:{escape_text(entry.description)}",
        f"URL;VALUE=URI:{link}",
        f"LOCATION:{escape_text(link)}",
        "TRANSP:OPAQUE",
        "END:VEVENT",
        "END:VCALENDAR",
    )
    return b"".join(fold(line) for line in lines)
