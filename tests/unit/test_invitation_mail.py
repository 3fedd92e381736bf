"""The invitation e-mail's text (gateway/admission/invitation_mail.py) and its message
(gateway/mail.py with an attachment)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from gateway.admission.invitation_mail import (
    InvitationText,
    invitation_text,
    language_of,
    one_line,
)
from gateway.i18n import ENGLISH, SIMPLIFIED, TRADITIONAL
from gateway.mail import SmtpMailer
from gateway.settings import SmtpSettings
from gateway.store.records import Role

START = 1_796_652_000.0  # 2026-12-07 14:00:00 UTC
LINK = "https://meet.example.org/j/AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def text(**changes: object) -> InvitationText:
    values: dict[str, object] = {
        "room_title": "Annual assembly",
        "name": "Ada Lovelace",
        "role": Role.ATTENDEE,
        "link": LINK,
        "max_uses": 1,
        "starts_at": START,
        "ends_at": START + 7200,
        "uid": "abc@meetgate",
        "now": START - 3600,
    }
    language = changes.pop("language", ENGLISH)
    values.update(changes)
    return invitation_text(language, **values)  # type: ignore[arg-type]


def test_english_body_has_link_time_and_who() -> None:
    made = text()
    assert made.subject == "Your invitation to Annual assembly"
    lines = made.body.splitlines()
    assert LINK in lines  # alone on its line
    assert "Hello Ada Lovelace," in lines
    assert "When: Monday, December 7, 2026, from 14:00 to 16:00 (UTC)" in lines
    assert "do not forward" in made.body
    assert made.calendar is not None and b"SUMMARY:Annual assembly" in made.calendar


def test_no_start_no_calendar() -> None:
    made = text(starts_at=None, ends_at=None)
    assert made.calendar is None
    assert "When:" not in made.body
    assert "calendar" not in made.body


def test_host_and_shared_links_say_so() -> None:
    assert "host Annual assembly" in text(role=Role.HOST).body
    shared = text(max_uses=5).body
    assert "up to 5 people" in shared and "forward it" not in shared


@pytest.mark.parametrize("language", [SIMPLIFIED, TRADITIONAL], ids=["zh-Hans", "zh-Hant"])
def test_chinese_dates_are_written_in_chinese(language: object) -> None:
    made = text(language=language, room_title="年度大会", name="张三")
    assert "2026年12月7日" in made.body
    assert "年度大会" in made.subject
    assert made.calendar is not None and "SUMMARY:年度大会".encode() in made.calendar


@pytest.mark.parametrize(
    "title",
    ["Evil\r\nBcc: victim@example.org", "Evil\nSubject: other", "Evil\u2028line\x00"],
    ids=["crlf-bcc", "lf-subject", "separators"],
)
def test_hostile_titles_stay_on_one_line(title: str) -> None:
    made = text(room_title=title, name="Eve\r\nBcc: x@example.org")
    assert "\n" not in made.subject and "\r" not in made.subject
    assert "Hello Eve Bcc: x@example.org," in made.body.splitlines()
    message = SmtpMailer(SmtpSettings(sender="gate@example.org")).compose(
        "a@example.org", made.subject, made.body
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert len(parsed.get_all("Subject") or []) == 1


def test_one_line() -> None:
    assert one_line("  a\r\n\tb\x00c  ") == "a b c"


def test_language_of() -> None:
    assert language_of("zh-Hant") is TRADITIONAL
    assert language_of("xx") is ENGLISH


def test_attachment_message_parses_as_mixed() -> None:
    made = text(language=SIMPLIFIED, room_title="年度大会")
    assert made.calendar is not None
    message = SmtpMailer(SmtpSettings(sender="gate@example.org")).compose(
        "a@example.org",
        made.subject,
        made.body,
        language="zh-Hans",
        attachments=[
            ("meeting.ics", "text/calendar; method=PUBLISH; charset=UTF-8", made.calendar)
        ],
    )
    raw = message.as_bytes()
    assert raw.isascii()  # 7-bit: RFC 2047 subject, base64 parts
    assert b"=?utf-8?" in raw.split(b"\n\n", 1)[0]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed["Content-Language"] == "zh-Hans"
    assert "年度大会" in parsed["Subject"]
    body = parsed.get_body(("plain",))
    assert body is not None and LINK in body.get_content()
    (ics,) = list(parsed.iter_attachments())
    assert ics.get_content_type() == "text/calendar"
    assert ics.get_param("method") == "PUBLISH"
    assert str(ics.get_param("charset")).lower() == "utf-8"
    assert ics.get_filename() == "meeting.ics"
    assert ics.get_payload(decode=True) == made.calendar
