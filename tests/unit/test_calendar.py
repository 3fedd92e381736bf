"""The invitation's calendar entry (gateway/admission/calendar.py), checked by RFC 5545's rules:
no parser of iCalendar is installed, so the tests unfold and read the lines themselves."""

from __future__ import annotations

import pytest

from gateway.admission.calendar import (
    MAX_LINE_OCTETS,
    CalendarEntry,
    calendar,
    escape_text,
    fold,
)

START = 1_796_652_000.0  # 2026-12-07 14:00:00 UTC
LINK = "https://meet.example.org/j/AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def entry(**changes: object) -> CalendarEntry:
    values: dict[str, object] = {
        "uid": "0123456789abcdef@meetgate",
        "title": "Weekly call",
        "starts_at": START,
        "ends_at": START + 7200,
        "link": LINK,
        "description": "Your personal link:\n" + LINK,
        "stamped_at": START - 86_400,
    }
    values.update(changes)
    return CalendarEntry(**values)  # type: ignore[arg-type]  # the test's own values


def physical_lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    # No bare CR or LF anywhere: every line break is CRLF.
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    return lines


def unfold(data: bytes) -> list[str]:
    """RFC 5545 3.1: a CRLF followed by one space or tab is removed; then the content lines."""
    for line in physical_lines(data):
        assert len(line) <= MAX_LINE_OCTETS
        # Each physical line is UTF-8 on its own: no character was split by the folding.
        line.decode("utf-8")
    return data.replace(b"\r\n ", b"").decode("utf-8").split("\r\n")[:-1]


def unescape(value: str) -> str:
    out, chars = [], iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars)
            out.append("\n" if nxt in "nN" else nxt)
        else:
            assert ch not in ",;", value  # unescaped separators would split the value
            out.append(ch)
    return "".join(out)


def properties(data: bytes) -> list[tuple[str, str]]:
    found = []
    for line in unfold(data):
        name, _, value = line.partition(":")
        found.append((name, value))
    return found


def prop(data: bytes, name: str) -> str:
    values = [value for key, value in properties(data) if key == name]
    assert len(values) == 1, (name, values)
    return values[0]


def test_one_event_in_utc_published() -> None:
    data = calendar(entry())
    props = properties(data)
    assert props[0] == ("BEGIN", "VCALENDAR") and props[-1] == ("END", "VCALENDAR")
    assert [value for key, value in props if key == "BEGIN"] == ["VCALENDAR", "VEVENT"]
    assert prop(data, "METHOD") == "PUBLISH"
    assert prop(data, "VERSION") == "2.0"
    assert prop(data, "DTSTART") == "20261207T140000Z"
    assert prop(data, "DTEND") == "20261207T160000Z"
    assert prop(data, "DTSTAMP") == "20261206T140000Z"
    assert prop(data, "UID") == "0123456789abcdef@meetgate"
    assert prop(data, "URL;VALUE=URI") == LINK
    assert unescape(prop(data, "SUMMARY")) == "Weekly call"
    assert unescape(prop(data, "DESCRIPTION")) == "Your personal link:\n" + LINK


def test_unknown_end_is_an_hour() -> None:
    data = calendar(entry(ends_at=None))
    assert prop(data, "DTEND") == "20261207T150000Z"
    # An end before the start is no end.
    assert prop(calendar(entry(ends_at=START - 10)), "DTEND") == "20261207T150000Z"


@pytest.mark.parametrize(
    "title",
    [
        "中文会议标题" * 20,
        "繁體中文會議\uff1a開幕式與主題演講" * 8,
        "a" + "😀" * 40,
        "ab" + "é" * 80,
    ],
    ids=["simplified", "traditional", "emoji", "latin-accents"],
)
def test_long_titles_fold_between_characters(title: str) -> None:
    data = calendar(entry(title=title))
    assert unescape(prop(data, "SUMMARY")) == title
    assert any(line.startswith(b" ") for line in physical_lines(data))


def test_fold_counts_the_leading_space() -> None:
    folded = fold("X:" + "a" * 300)
    lines = folded[:-2].split(b"\r\n")
    assert len(lines[0]) == MAX_LINE_OCTETS
    assert all(len(line) == MAX_LINE_OCTETS for line in lines[1:-1])
    assert all(line.startswith(b" ") for line in lines[1:])
    assert folded.replace(b"\r\n ", b"") == b"X:" + b"a" * 300 + b"\r\n"
    # A line of exactly 75 octets is not folded.
    assert fold("Y:" + "b" * 73) == b"Y:" + b"b" * 73 + b"\r\n"


@pytest.mark.parametrize(
    "title",
    [
        "Evil\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:Phish\r\nURL:https://evil.example",
        "Evil\nBEGIN:VALARM\nTRIGGER:-PT1M\nEND:VALARM",
        "Evil\rATTENDEE:mailto:x@evil.example",
        "semi;colon,comma\\backslash",
        "tab\there\x00nul\x1bescape\x7fdel\u2028ls",
        "\u0085next-line",
    ],
    ids=["crlf-vevent", "lf-valarm", "cr-attendee", "separators", "controls", "nel"],
)
def test_hostile_titles_stay_one_value(title: str) -> None:
    data = calendar(entry(title=title))
    props = properties(data)
    # Exactly the properties a clean entry has, in the same order: nothing injected.
    assert [key for key, _ in props] == [key for key, _ in properties(calendar(entry()))]
    summary = unescape(prop(data, "SUMMARY"))
    assert "\r" not in summary
    assert all(ch == "\n" or ch == "\t" or ord(ch) >= 0x20 for ch in summary)
    assert summary.replace("\n", "") == escape_free(title)


def escape_free(title: str) -> str:
    """The title as it should read back: line breaks dropped here (compared without them), other
    control characters gone."""
    text = title.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "")
    return "".join(
        ch
        for ch in text
        if ch == "\t" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029")
    )


def test_escape_text() -> None:
    assert escape_text("a\\b;c,d\ne") == "a\\\\b\\;c\\,d\\ne"
    assert escape_text("x\r\ny\rz") == "x\\ny\\nz"


@pytest.mark.parametrize(
    "link",
    ["https://x.example/j/a b", "https://x.example/j/a\r\nEND:VEVENT", "https://例子.example/j/a"],
    ids=["space", "crlf", "not-ascii"],
)
def test_a_link_that_is_no_uri_is_refused(link: str) -> None:
    with pytest.raises(ValueError, match="URI"):
        calendar(entry(link=link))
