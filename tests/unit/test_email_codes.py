"""E-mail one-time codes without a server: addresses, issuing, checking, expiry (on an injected
clock), attempt and send limits, decoys for addresses a room does not allow; and how the mailer
chooses its transport."""

from __future__ import annotations

import email
import email.policy
import logging
import re
from email.message import EmailMessage

import pytest

from gateway.admission.email_codes import (
    CODE_INTRO,
    CODE_SUBJECT,
    CodeExpired,
    CodeWrong,
    EmailCodes,
    InvalidAddress,
    TooManyCodes,
    TooManyWrongCodes,
    code_message,
    may_receive_code,
    new_code,
    normalise_address,
)
from gateway.admission.identity import Path
from gateway.admission.limits import RateLimiter
from gateway.errors import InvalidInput, NotAdmitted, RateLimited
from gateway.i18n import ENGLISH, LANGUAGES, SIMPLIFIED, TRADITIONAL, Language, gettext
from gateway.mail import MailFailed, SmtpMailer, connection_plan
from gateway.metrics import Metrics
from gateway.settings import EmailCodeSettings, Rate, RateSettings, SmtpSettings
from gateway.store.memory import MemoryStore
from gateway.store.records import Room, RoomPolicy

KEY = b"k" * 40
NOW = 1_000_000.0
ALLOWED = RoomPolicy(invite=False, email_code=True, allowed_domains=("example.org",))


class Outbox:
    """Records what would have been sent (the SMTP path has its own tests with a real server)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.languages: list[str] = []
        self.fail = fail

    async def send(self, to: str, subject: str, body: str, *, language: str = "en") -> None:
        if self.fail:
            raise MailFailed(f"recipient refused (550) for {to}: {body}")
        self.sent.append((to, subject, body))
        self.languages.append(language)

    def code_for(self, address: str) -> str:
        bodies = [body for to, _, body in self.sent if to == address]
        assert bodies, f"no mail to {address}"
        found = re.search(r"^\s+(\d{6,8})$", bodies[-1], re.MULTILINE)
        assert found
        return found.group(1)


def generous() -> RateSettings:
    wide = Rate(per_minute=1_000_000, burst=100_000)
    return RateSettings(
        address=wide, network=wide, room=wide, identity=wide, invite=wide, gate=wide
    )


def make_codes(
    store: MemoryStore,
    outbox: Outbox,
    rates: RateSettings | None = None,
    **settings: int,
) -> EmailCodes:
    limiter = RateLimiter(store, rates or generous(), Metrics())
    return EmailCodes(
        store,
        EmailCodeSettings(**settings),
        key=KEY,
        limiter=limiter,
        mailer=outbox,
    )


def room(policy: RoomPolicy = ALLOWED, name: str = "weekly") -> Room:
    return Room(name=name, title="Weekly call", created_at=0, policy=policy)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def codes(store: MemoryStore, outbox: Outbox) -> EmailCodes:
    return make_codes(store, outbox, max_attempts=3, max_sends_per_address=3)


async def issued(codes: EmailCodes, outbox: Outbox, address: str, where: Room | None = None) -> str:
    await codes.request(where or room(), address, "203.0.113.5", NOW)
    await codes.drain()
    return outbox.code_for(normalise_address(address))


# Addresses


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Ada@Example.ORG ", "ada@example.org"),
        ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
        ("o'neil@xn--bcher-kva.example", "o'neil@xn--bcher-kva.example"),
        ("x" * 64 + "@example.org", "x" * 64 + "@example.org"),
    ],
)
def test_good_addresses(raw: str, expected: str) -> None:
    assert normalise_address(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ada",
        "ada@",
        "@example.org",
        "ada@localhost",
        "ada@@example.org",
        "ada@example..org",
        "ada..b@example.org",
        ".ada@example.org",
        "ada.@example.org",
        "ada b@example.org",
        '"ada"@example.org',
        "<ada@example.org>",
        "Ada <ada@example.org>",
        "ada@[127.0.0.1]",
        "ada@-example.org",
        "ada@example-.org",
        "ada@example.org\r\nBcc: eve@evil.test",
        "ada@example.org,eve@evil.test",
        "ada\x00@example.org",
        "\u00e4da@example.org",
        "ada@b\u00fccher.example",
        "ada\u202e@example.org",
        "x" * 65 + "@example.org",
        "ada@" + "a" * 63 + "." + ("b" * 63 + ".") * 3 + "org",
    ],
)
def test_bad_addresses(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_address(raw)


def test_codes_have_the_configured_digits_zero_padded(monkeypatch: pytest.MonkeyPatch) -> None:
    for digits in (6, 7, 8):
        code = new_code(digits)
        assert len(code) == digits and code.isdigit()
    monkeypatch.setattr("gateway.admission.email_codes.secrets.randbelow", lambda n: 42)
    assert new_code(6) == "000042"
    assert new_code(8) == "00000042"


def test_who_may_receive_a_code() -> None:
    hosts = RoomPolicy(
        email_code=True, allowed_domains=("example.org",), host_emails=("chair@other.org",)
    )
    assert may_receive_code(hosts, "ann@example.org")
    assert may_receive_code(hosts, "chair@other.org")
    assert not may_receive_code(hosts, "eve@other.org")
    assert may_receive_code(RoomPolicy(email_code=True), "anyone@anywhere.test")
    assert not may_receive_code(RoomPolicy(email_code=False), "ann@example.org")


# Issuing and checking


async def test_a_code_proves_the_address(codes: EmailCodes, outbox: Outbox) -> None:
    code = await issued(codes, outbox, "Ann@Example.org")
    [(to, subject, body)] = outbox.sent
    assert to == "ann@example.org" and "Weekly call" in subject and "10 minutes" in body
    assert outbox.languages == ["en"]
    verified = await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW + 5)
    assert verified.path is Path.EMAIL
    assert verified.subject == verified.email == "ann@example.org"
    assert verified.email_verified is True
    assert verified.name == "ann"


async def test_only_a_keyed_hash_is_stored(
    codes: EmailCodes, outbox: Outbox, store: MemoryStore
) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    stored = await store.get_value(f"email:code:weekly:{codes.address_key('ann@example.org')}")
    assert stored is not None
    assert code not in stored and "ann" not in stored
    assert "ann" not in codes.address_key("ann@example.org")


async def test_spaces_and_dashes_in_a_typed_code_are_ignored(
    codes: EmailCodes, outbox: Outbox
) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    typed = f" {code[:3]} - {code[3:]} "
    verified = await codes.verify(room(), "ann@example.org", typed, "203.0.113.5", NOW)
    assert verified.email == "ann@example.org"


async def test_wrong_code(codes: EmailCodes, outbox: Outbox) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    with pytest.raises(CodeWrong) as refused:
        await codes.verify(room(), "ann@example.org", wrong, "203.0.113.5", NOW)
    assert refused.value.message == "That code is not right."
    # Still usable within the attempt limit.
    await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW)


@pytest.mark.parametrize(
    "typed",
    ["", "12345", "1234567", "abcdef", "12345\u0661", "\uff11\uff12\uff13\uff14\uff15\uff16"],
)
async def test_malformed_codes_are_wrong(codes: EmailCodes, outbox: Outbox, typed: str) -> None:
    await issued(codes, outbox, "ann@example.org")
    with pytest.raises(CodeWrong):
        await codes.verify(room(), "ann@example.org", typed, "203.0.113.5", NOW)


async def test_guessing_past_the_limit_kills_the_code(codes: EmailCodes, outbox: Outbox) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    wrong = [f"{(int(code) + n) % 10**6:06d}" for n in (1, 2, 3)]
    for guess in wrong[:2]:
        with pytest.raises(CodeWrong):
            await codes.verify(room(), "ann@example.org", guess, "203.0.113.5", NOW)
    with pytest.raises(TooManyWrongCodes) as dead:
        await codes.verify(room(), "ann@example.org", wrong[2], "203.0.113.5", NOW)
    assert dead.value.message == "Too many wrong codes: ask for a new one."
    with pytest.raises((CodeExpired, TooManyWrongCodes)):
        await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW)
    # A new code starts with fresh attempts.
    fresh = await issued(codes, outbox, "ann@example.org")
    await codes.verify(room(), "ann@example.org", fresh, "203.0.113.5", NOW)


async def test_attempts_are_counted_even_when_racing(codes: EmailCodes, outbox: Outbox) -> None:
    """Attempts are counted before the comparison: a burst of guesses cannot outrun the limit."""
    import asyncio

    code = await issued(codes, outbox, "ann@example.org")
    guesses = [f"{(int(code) + n) % 10**6:06d}" for n in range(1, 11)]
    results = await asyncio.gather(
        *(codes.verify(room(), "ann@example.org", g, "203.0.113.5", NOW) for g in guesses),
        return_exceptions=True,
    )
    assert all(isinstance(r, (CodeWrong, TooManyWrongCodes, CodeExpired)) for r in results)
    assert sum(isinstance(r, CodeWrong) for r in results) <= 2
    with pytest.raises((CodeExpired, TooManyWrongCodes)):
        await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW)


async def test_expired_code(codes: EmailCodes, outbox: Outbox) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    later = NOW + codes.settings.ttl_seconds
    with pytest.raises(CodeExpired):
        await codes.verify(room(), "ann@example.org", code, "203.0.113.5", later)
    # ... and it is gone, not merely refused at that hour.
    with pytest.raises(CodeExpired):
        await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW)


async def test_a_used_code_cannot_be_replayed(codes: EmailCodes, outbox: Outbox) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW)
    with pytest.raises(CodeExpired):
        await codes.verify(room(), "ann@example.org", code, "203.0.113.6", NOW)


async def test_racing_right_answers_admit_once(codes: EmailCodes, outbox: Outbox) -> None:
    import asyncio

    code = await issued(codes, outbox, "ann@example.org")
    results = await asyncio.gather(
        *(codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1


async def test_a_newer_code_replaces_the_older(codes: EmailCodes, outbox: Outbox) -> None:
    first = await issued(codes, outbox, "ann@example.org")
    second = await issued(codes, outbox, "ann@example.org")
    if first != second:
        with pytest.raises(CodeWrong):
            await codes.verify(room(), "ann@example.org", first, "203.0.113.5", NOW)
    await codes.verify(room(), "ann@example.org", second, "203.0.113.5", NOW)


async def test_a_code_is_bound_to_its_room_and_address(codes: EmailCodes, outbox: Outbox) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    other_room = room(name="other")
    with pytest.raises(CodeExpired):
        await codes.verify(other_room, "ann@example.org", code, "203.0.113.5", NOW)
    await issued(codes, outbox, "bob@example.org")
    with pytest.raises(CodeWrong):
        await codes.verify(room(), "bob@example.org", code, "203.0.113.5", NOW)


async def test_a_given_name_is_cleaned_and_a_bad_one_burns_nothing(
    codes: EmailCodes, outbox: Outbox
) -> None:
    code = await issued(codes, outbox, "ann@example.org")
    for bad in ("Ann\u202eevil", "x" * 65, "bell\x07"):
        with pytest.raises(InvalidInput):
            await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW, name=bad)
    verified = await codes.verify(
        room(), "ann@example.org", code, "203.0.113.5", NOW, name="  Ann \uff2cee "
    )
    assert verified.name == "Ann Lee"


# Addresses a room does not allow


async def test_a_disallowed_address_gets_a_decoy_and_no_mail(
    codes: EmailCodes, outbox: Outbox, store: MemoryStore
) -> None:
    answer = await codes.request(room(), "Eve@Evil.test", "203.0.113.5", NOW)
    await codes.drain()
    assert answer == "eve@evil.test"
    assert outbox.sent == []
    decoy = await store.get_value(f"email:code:weekly:{codes.address_key('eve@evil.test')}")
    real = await issued(codes, outbox, "ann@example.org")
    stored = await store.get_value(f"email:code:weekly:{codes.address_key('ann@example.org')}")
    assert decoy is not None and stored is not None
    assert [len(part) for part in decoy.split(":")] == [len(p) for p in stored.split(":")]
    # Guessing behaves exactly as for an allowed address: wrong, wrong, too many.
    with pytest.raises(CodeWrong):
        await codes.verify(room(), "eve@evil.test", real, "203.0.113.5", NOW)
    with pytest.raises(CodeWrong):
        await codes.verify(room(), "eve@evil.test", "000000", "203.0.113.5", NOW)
    with pytest.raises(TooManyWrongCodes):
        await codes.verify(room(), "eve@evil.test", "999999", "203.0.113.5", NOW)


async def test_host_addresses_outside_the_allow_list_get_a_code(
    store: MemoryStore, outbox: Outbox
) -> None:
    policy = RoomPolicy(
        email_code=True, allowed_domains=("example.org",), host_emails=("chair@other.org",)
    )
    codes = make_codes(store, outbox)
    code = await issued(codes, outbox, "chair@other.org", room(policy))
    verified = await codes.verify(room(policy), "chair@other.org", code, "203.0.113.5", NOW)
    assert verified.email == "chair@other.org"


async def test_a_room_without_codes_refuses(codes: EmailCodes, outbox: Outbox) -> None:
    closed = room(RoomPolicy(invite=True, email_code=False))
    with pytest.raises(NotAdmitted):
        await codes.request(closed, "ann@example.org", "203.0.113.5", NOW)
    with pytest.raises(NotAdmitted):
        await codes.verify(closed, "ann@example.org", "123456", "203.0.113.5", NOW)
    assert outbox.sent == []


# Limits


async def test_sends_per_address_are_capped_whatever_the_room(
    codes: EmailCodes, outbox: Outbox
) -> None:
    for n in range(3):
        await codes.request(room(name=f"r{n}"), "ann@example.org", f"198.51.100.{n}", NOW)
    with pytest.raises(TooManyCodes) as capped:
        await codes.request(room(), "ann@example.org", "198.51.100.9", NOW)
    assert isinstance(capped.value, RateLimited) and capped.value.retry_after > 0
    await codes.drain()
    assert len(outbox.sent) == 3
    # A disallowed address is capped the same way, so the cap tells nothing either.
    for _ in range(3):
        await codes.request(room(), "eve@evil.test", "198.51.100.1", NOW)
    with pytest.raises(TooManyCodes):
        await codes.request(room(), "eve@evil.test", "198.51.100.1", NOW)


async def test_requests_are_charged_per_client_and_per_address(
    store: MemoryStore, outbox: Outbox
) -> None:
    wide = Rate(per_minute=1_000_000, burst=100_000)
    tight = Rate(per_minute=1, burst=2)
    per_client = make_codes(
        store,
        outbox,
        RateSettings(address=tight, network=wide, room=wide, identity=wide, invite=wide, gate=wide),
        max_sends_per_address=100,
    )
    await per_client.request(room(), "a@example.org", "192.0.2.1", NOW)
    await per_client.request(room(), "b@example.org", "192.0.2.1", NOW)
    with pytest.raises(RateLimited):
        await per_client.request(room(), "c@example.org", "192.0.2.1", NOW)
    with pytest.raises(RateLimited):
        await per_client.request(room(), "not an address", "192.0.2.1", NOW)

    per_address = make_codes(
        MemoryStore(),
        outbox,
        RateSettings(address=wide, network=wide, room=wide, identity=tight, invite=wide, gate=wide),
        max_sends_per_address=100,
    )
    await per_address.request(room(), "a@example.org", "192.0.2.1", NOW)
    await per_address.request(room(), "a@example.org", "192.0.2.3", NOW)
    with pytest.raises(RateLimited):
        await per_address.verify(room(), "A@example.org", "000000", "192.0.2.4", NOW)


# Delivery failures and the log


async def test_a_failed_send_logs_neither_address_nor_code(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Outbox(fail=True)
    codes = make_codes(store, failing)
    with caplog.at_level(logging.DEBUG):
        await codes.request(room(), "ann@example.org", "203.0.113.5", NOW)
        await codes.drain()
    assert "not sent: recipient refused (550)" in caplog.text
    assert "ann" not in caplog.text and "example.org" not in caplog.text
    assert not re.search(r"\d{6}", caplog.text)


def test_transport_follows_the_settings() -> None:
    plain = connection_plan(SmtpSettings(security="none"))
    assert (plain.implicit_tls, plain.starttls, plain.login) == (False, False, False)
    starttls = connection_plan(SmtpSettings(security="starttls", username="u", password="p"))
    assert (starttls.implicit_tls, starttls.starttls, starttls.login) == (False, True, True)
    tls = connection_plan(SmtpSettings(security="tls", port=465))
    assert (tls.implicit_tls, tls.starttls) == (True, False)
    # A login in clear only to this machine.
    assert connection_plan(SmtpSettings(security="none", username="u", host="::1")).login
    with pytest.raises(MailFailed):
        connection_plan(SmtpSettings(security="none", username="u", host="mail.example.org"))


async def test_a_header_with_a_line_break_is_refused() -> None:
    mailer = SmtpMailer(SmtpSettings(security="none", port=9))
    with pytest.raises(MailFailed):
        await mailer.send("ann@example.org", "hello\r\nBcc: eve@evil.test", "body")


def test_composed_message() -> None:
    mailer = SmtpMailer(SmtpSettings(sender="Meetgate <gate@meet.example.org>"))
    message = mailer.compose("ann@example.org", "Your code for Café ☕", "12345678")
    assert message["From"] == "Meetgate <gate@meet.example.org>"
    assert message["To"] == "ann@example.org"
    assert message["Message-ID"].endswith("@meet.example.org>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Café" in str(message["Subject"])


# The e-mail in each language


async def test_the_code_is_mailed_in_the_language_it_was_asked_in(
    codes: EmailCodes, outbox: Outbox
) -> None:
    await codes.request(room(), "ann@example.org", "203.0.113.5", NOW, language=TRADITIONAL)
    await codes.drain()
    [(_, subject, body)] = outbox.sent
    assert outbox.languages == ["zh-Hant"]
    # The catalog's wording (translators may revise it), with the room's title filled in.
    assert subject == gettext(TRADITIONAL, CODE_SUBJECT).format(room="Weekly call")
    assert "「Weekly call」" in subject and "驗證碼" in subject
    assert body.startswith(gettext(TRADITIONAL, CODE_INTRO).format(room="Weekly call") + "\n")
    assert "10 分鐘" in body and "Your code" not in body
    code = outbox.code_for("ann@example.org")
    assert f"\n\n    {code}\n\n" in body
    # The code is good whatever language it was sent in.
    verified = await codes.verify(room(), "ann@example.org", code, "203.0.113.5", NOW + 5)
    assert verified.email == "ann@example.org"


@pytest.mark.parametrize("language", LANGUAGES, ids=lambda language: language.tag)
def test_every_line_of_the_email_is_translated(language: Language) -> None:
    subject, body = code_message(language, "会议 Planning", "01234567", 10)
    english_subject, english_body = code_message(ENGLISH, "会议 Planning", "01234567", 10)
    assert "会议 Planning" in subject and "会议 Planning" in body
    lines = body.splitlines()
    # The code alone on its line, indented, between blank lines; then how long, then what to do.
    assert len(lines) == 6 and lines[1:4] == ["", "    01234567", ""]
    assert "10" in lines[4]
    if language is not ENGLISH:
        assert subject != english_subject
        for line, english in zip(lines, english_body.splitlines(), strict=True):
            assert line != english or line.strip() in ("", "01234567")
        assert not any(word in body for word in ("code", "e-mail", "minute"))


def test_minutes_are_a_real_plural() -> None:
    _, one = code_message(ENGLISH, "Weekly", "123456", 1)
    _, ten = code_message(ENGLISH, "Weekly", "123456", 10)
    assert "It works once, for 1 minute.\n" in one
    assert "It works once, for 10 minutes.\n" in ten
    _, simplified = code_message(SIMPLIFIED, "Weekly", "123456", 1)
    assert "1 分钟内有效" in simplified


def test_a_chinese_message_travels_as_7bit_mime_with_its_language() -> None:
    mailer = SmtpMailer(SmtpSettings(sender="Meetgate <gate@meet.example.org>"))
    subject, body = code_message(SIMPLIFIED, "周会", "12345678", 10)
    message = mailer.compose("ann@example.org", subject, body, language="zh-Hans")
    assert message["Content-Language"] == "zh-Hans"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
    wire = message.as_bytes()
    assert wire.isascii(), "no raw 8-bit bytes for a server without 8BITMIME"
    assert b"=?utf-8?" in wire  # the subject as RFC 2047 encoded words
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert str(parsed["Subject"]) == subject
    assert "“周会”" in subject and "验证码" in subject
    assert isinstance(parsed, EmailMessage) and parsed.get_content() == body


def test_an_english_message_stays_readable_plain_text() -> None:
    mailer = SmtpMailer(SmtpSettings(sender="gate@meet.example.org"))
    subject, body = code_message(ENGLISH, "Weekly", "12345678", 10)
    message = mailer.compose("ann@example.org", subject, body)
    assert message["Content-Language"] == "en"
    # ASCII, with a line past 78 characters: quoted-printable soft breaks, undone by any reader.
    assert message["Content-Transfer-Encoding"] in ("7bit", "quoted-printable")
    assert message.get_content_charset() == "utf-8"
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage) and parsed.get_content() == body
    assert "http" not in body and "    12345678\n" in body
