"""Signing in with an e-mail code, end to end: the real `meetgate serve` sends the code to a real
SMTP server the tests run (aiosmtpd), the test reads it from there and signs in over HTTP.
Also the mailer itself against that server with STARTTLS, implicit TLS and a login."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.errors import MeetgateError
from gateway.mail import MailFailed, SmtpMailer
from gateway.settings import SmtpSettings
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.smtp import SelfSignedCertificate, SmtpServer, start_smtp
from tests.integration.journeys import admit, host_action
from tests.integration.test_lobby import waiting

pytestmark = pytest.mark.slow

DIGITS = 8
MAX_ATTEMPTS = 3
MAX_SENDS = 3
SAME_PAGE = "If this address may join, a code is on its way"
TRUST_LOCAL_PROXY = 'trusted_proxies = ["127.0.0.1/32"]'
# Each test speaks from its own client addresses (X-Forwarded-For, from a trusted proxy), so the
# per-address limit below is each test's own.
SETTINGS = """
[rates]
address = {{ per_minute = 6, burst = 8 }}
network = {{ per_minute = 1000000, burst = 100000 }}
room = {{ per_minute = 1000000, burst = 100000 }}
identity = {{ per_minute = 600, burst = 60 }}
invite = {{ per_minute = 1000000, burst = 100000 }}
gate = {{ per_minute = 1000000, burst = 100000 }}
[challenge]
mode = "auto"
base_difficulty = 8
max_difficulty = 10
[smtp]
host = "127.0.0.1"
port = {port}
security = "{security}"
sender = "Meetgate <gate@meet.test>"
timeout_seconds = 5
{login}
[email_codes]
digits = {digits}
ttl_seconds = 600
max_attempts = {attempts}
max_sends_per_address = {sends}
"""


def gateway_settings(
    port: int, security: str = "none", login: tuple[str, str] | None = None
) -> str:
    credentials = f'username = "{login[0]}"\npassword = "{login[1]}"' if login else ""
    return SETTINGS.format(
        port=port,
        security=security,
        login=credentials,
        digits=DIGITS,
        attempts=MAX_ATTEMPTS,
        sends=MAX_SENDS,
    )


@pytest.fixture(scope="module")
def email_gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("email"),
        upstream=jitsi_web.url,
        extra=gateway_settings(smtp_server.port),
        top=TRUST_LOCAL_PROXY,
    )
    yield server
    stop_process(proc)


counter = iter(range(1, 1_000_000))


def fresh_client_address() -> str:
    n = next(counter)
    return f"198.18.{n // 256 % 256}.{n % 256}"


def fresh_email(domain: str = "example.org") -> str:
    return f"user-{secrets.token_hex(4)}@{domain}"


def browser(gateway: GatewayServer, address: str | None = None) -> httpx.Client:
    headers = {"origin": gateway.url, "x-forwarded-for": address or fresh_client_address()}
    return httpx.Client(
        base_url=gateway.url, trust_env=False, headers=headers, timeout=30, verify=TLS
    )


def email_room(gateway: GatewayServer, **rules: Any) -> str:
    name = f"mail-{secrets.token_hex(4)}"
    gateway.create_room(name, title="Planning")
    gateway.set_policy(name, **{"email_code": True, "allowed_domains": ["example.org"], **rules})
    return name


def ask(client: httpx.Client, room: str, email: str) -> httpx.Response:
    return client.post(f"/_meetgate/email/{room}/send", data={"email": email})


def code_for(client: httpx.Client, room: str, email: str, smtp_server: SmtpServer) -> str:
    """Ask for a code on the page, as an attendee does, and read it from the real mailbox."""
    ask(client, room, email)
    code: str = smtp_server.mailbox.wait_for(email)[0].code()
    return code


def answer(
    client: httpx.Client, room: str, email: str, code: str, name: str = ""
) -> httpx.Response:
    return client.post(
        f"/_meetgate/email/{room}/verify", data={"email": email, "code": code, "name": name}
    )


def without_request_ids(page: str) -> str:
    return re.sub(r"request [0-9a-f]+", "request …", page)


def ticket_user(response: httpx.Response) -> dict[str, Any]:
    location = response.headers["location"]
    ticket = location.split("#jwt=", 1)[1]
    payload = ticket.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return dict(claims["context"]["user"])


def other_code(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 10**DIGITS:0{DIGITS}d}"


def test_gate_page_offers_the_email_form(email_gateway: GatewayServer) -> None:
    room = email_room(email_gateway)
    with browser(email_gateway) as client:
        page = client.get(f"/_meetgate/enter/{room}")
    assert page.status_code == 200
    assert f'action="/_meetgate/email/{room}/send"' in page.text
    assert 'name="email"' in page.text


def test_sign_in_with_a_code_from_a_real_mail_server(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    email = fresh_email()
    with browser(email_gateway) as client:
        sent = ask(client, room, email.upper())
        assert sent.status_code == 200, sent.text
        assert SAME_PAGE in sent.text and email in sent.text
        assert f'action="/_meetgate/email/{room}/verify"' in sent.text

        [mail] = smtp_server.mailbox.wait_for(email)
        assert mail.mail_from == "gate@meet.test"
        assert mail.message["To"] == email
        assert "Planning" in str(mail.message["Subject"])
        code = mail.code()
        assert len(code) == DIGITS

        joined = answer(client, room, email, code, name="Ada Lovelace")
        assert joined.status_code == 303, joined.text
        assert joined.headers["location"].startswith(f"/{room}#jwt=")
        assert "meetgate" in client.cookies
        user = ticket_user(joined)
        # The address is proven, the typed name is not: the room sees it marked.
        assert user["name"] == "Ada Lovelace (guest)" and user["moderator"] is False
        # The admission is live: Jitsi's ticket refresh works for this browser.
        refreshed = client.get("/_meetgate/ticket", params={"room": room})
        assert refreshed.status_code == 303


@pytest.mark.parametrize(
    ("accept_language", "tag", "subject", "lines"),
    # What each language's text must hold, whatever wording its translators settle on: the
    # room's title quoted in its script's way, the glossary's word for the code, the minutes.
    [
        (
            None,
            "en",
            ["Your code for Planning"],
            ["Your code to join Planning:", "It works once, for 10 minutes.", "ignore this e-mail"],
        ),
        (
            "zh-TW,zh;q=0.9,en;q=0.5",
            "zh-Hant",
            ["「Planning」", "驗證碼"],
            ["「Planning」", "驗證碼", "10 分鐘", "郵件"],
        ),
        (
            "zh-CN,zh;q=0.9",
            "zh-Hans",
            ["“Planning”", "验证码"],
            ["“Planning”", "验证码", "10 分钟", "邮件"],
        ),
    ],
    ids=["no-accept-language", "zh-TW", "zh-CN"],
)
def test_the_email_speaks_the_language_of_the_page_it_was_asked_on(
    email_gateway: GatewayServer,
    smtp_server: SmtpServer,
    accept_language: str | None,
    tag: str,
    subject: list[str],
    lines: list[str],
) -> None:
    room = email_room(email_gateway)
    email = fresh_email()
    with browser(email_gateway) as client:
        if accept_language is not None:
            client.headers["accept-language"] = accept_language
        page = ask(client, room, email)
        assert page.status_code == 200 and f'<html lang="{tag}">' in page.text
        [mail] = smtp_server.mailbox.wait_for(email)
        message = mail.message
        for part in subject:
            assert part in str(message["Subject"])
        if tag != "en":
            assert "code" not in str(message["Subject"]) and "code" not in mail.body
        assert message["Content-Language"] == tag
        assert message.get_content_type() == "text/plain"
        assert message.get_content_charset() == "utf-8"
        # Never raw 8-bit bytes, which a server without 8BITMIME may mangle.
        assert message["Content-Transfer-Encoding"] in ("7bit", "quoted-printable", "base64")
        body = mail.body
        for line in lines:
            assert line in body
        assert "http" not in body and "<" not in body
        code = mail.code()
        assert f"    {code}" in body.splitlines()
        assert answer(client, room, email, code).status_code == 303


def test_without_a_name_the_local_part_is_shown(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    email = fresh_email()
    with browser(email_gateway) as client:
        code = code_for(client, room, email, smtp_server)
        joined = answer(client, room, email, code)
    assert joined.status_code == 303
    assert ticket_user(joined)["name"] == f"{email.split('@')[0]} (guest)"


def test_wrong_code(email_gateway: GatewayServer, smtp_server: SmtpServer) -> None:
    room = email_room(email_gateway)
    email = fresh_email()
    with browser(email_gateway) as client:
        code = code_for(client, room, email, smtp_server)
        wrong = answer(client, room, email, other_code(code), name="Ada")
        assert wrong.status_code == 400
        assert "That code is not right." in wrong.text
        # The page asks again, keeping the name.
        assert 'name="code"' in wrong.text and 'value="Ada"' in wrong.text
        assert "meetgate" not in client.cookies
        assert answer(client, room, email, code).status_code == 303


def test_guessing_past_the_attempt_limit(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    email = fresh_email()
    with browser(email_gateway) as client:
        code = code_for(client, room, email, smtp_server)
        statuses = [
            answer(client, room, email, other_code(code, n)).status_code
            for n in range(1, MAX_ATTEMPTS)
        ]
        assert statuses == [400] * (MAX_ATTEMPTS - 1)
        last = answer(client, room, email, other_code(code, MAX_ATTEMPTS))
        assert last.status_code == 403
        assert "Too many wrong codes: ask for a new one." in last.text
        assert 'name="code"' not in last.text
        # The code is dead: even the right one fails now.
        late = answer(client, room, email, code)
        assert late.status_code in (403, 410)
        assert "location" not in late.headers and "meetgate" not in client.cookies


def test_guessing_is_bounded_per_code_and_per_address_from_any_client_address(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    """An attacker with many client addresses: each code still dies after MAX_ATTEMPTS wrong
    guesses, and the address gets no more than MAX_SENDS codes an hour, so MAX_SENDS times
    MAX_ATTEMPTS guesses is all there is."""
    room = email_room(email_gateway)
    victim = fresh_email()
    for sent in range(1, MAX_SENDS + 1):
        with browser(email_gateway) as client:
            assert ask(client, room, victim).status_code == 200
        code = smtp_server.mailbox.wait_for(victim, count=sent)[-1].code()
        statuses = []
        for n in range(1, MAX_ATTEMPTS + 1):
            with browser(email_gateway) as client:  # every guess from an address of its own
                statuses.append(answer(client, room, victim, other_code(code, n)).status_code)
        assert statuses == [400] * (MAX_ATTEMPTS - 1) + [403]
        with browser(email_gateway) as client:
            assert answer(client, room, victim, code).status_code == 410
    with browser(email_gateway) as client:
        assert ask(client, room, victim).status_code == 429
        assert answer(client, room, victim, code).status_code == 410
    assert len(smtp_server.mailbox.to(victim)) == MAX_SENDS


def test_a_typed_name_is_checked_and_cannot_pass_for_a_hosts(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    # The name on a host invite is kept for its host, before they arrive.
    email_gateway.create_invite(room, "Hilde Host", role="host")
    shown = []
    for typed in ("Hilde Host", "H\N{CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I}lde Host"):
        email = fresh_email()
        with browser(email_gateway) as client:
            code = code_for(client, room, email, smtp_server)
            # A name that cannot be shown is refused, and burns nothing: the code still works.
            stacked = "Hi" + "\u0301" * 8 + "lde Host"
            for bad in (
                "Hilde\u202eHost",
                "\u2067Hilde Host",
                "Hilde\u200bHost",
                "x" * 65,
                stacked,
            ):
                refused = answer(client, room, email, code, name=bad)
                assert refused.status_code == 400, bad
                assert "<code>invalid_input</code>" in refused.text
            joined = answer(client, room, email, code, name=typed)
            assert joined.status_code == 303, joined.text
            shown.append(ticket_user(joined)["name"])
    assert shown == [
        "Hilde Host (guest) (2)",
        "H\N{CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I}lde Host (guest) (3)",
    ]


def test_with_a_lobby_the_host_sees_the_proven_address_and_lets_them_in(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway, lobby=True)
    host = admit(email_gateway, room, "Hilde Host", role="host")
    email = fresh_email()
    with browser(email_gateway) as client:
        code = code_for(client, room, email, smtp_server)
        queued = answer(client, room, email, code, name="Ada Lovelace")
        assert queued.status_code == 303
        wait = f"/_meetgate/lobby/{room}/wait"
        assert queued.headers["location"] == wait
        [request] = waiting(email_gateway, host)
        assert request["name"] == "Ada Lovelace (guest)" and request["guest"] is True
        assert request["via"] == f"email <{email}>"
        assert host_action(email_gateway, host, "approve", request=request["id"])["done"]
        landed = client.get(wait)
        assert landed.status_code == 303, landed.text
        assert ticket_user(landed)["name"] == "Ada Lovelace (guest)"


def test_a_used_code_cannot_be_replayed(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    email = fresh_email()
    with browser(email_gateway) as client:
        code = code_for(client, room, email, smtp_server)
        assert answer(client, room, email, code).status_code == 303
    with browser(email_gateway) as thief:
        replay = answer(thief, room, email, code)
    assert replay.status_code == 410
    assert "expired or has already been used" in replay.text
    assert "meetgate" not in thief.cookies


def test_a_disallowed_address_gets_the_same_page_and_no_mail(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway, allowed_domains=["example.org"])
    allowed, refused = fresh_email("example.org"), fresh_email("evil.test")
    with browser(email_gateway) as client:
        refused_page = ask(client, room, refused)
        allowed_page = ask(client, room, allowed)
    assert refused_page.status_code == allowed_page.status_code == 200
    same = without_request_ids(refused_page.text).replace(refused, "ADDRESS")
    assert same == without_request_ids(allowed_page.text).replace(allowed, "ADDRESS")
    # The refused request was answered before the allowed one was even made; its code (if any)
    # would have been handed to the mailer first.
    smtp_server.mailbox.wait_for(allowed)
    assert smtp_server.mailbox.to(refused) == []
    # Guessing looks the same too.
    with browser(email_gateway) as client:
        guess = answer(client, room, refused, "0" * DIGITS)
    assert guess.status_code == 400 and "That code is not right." in guess.text


def test_the_code_and_the_address_never_reach_the_log(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    email = fresh_email()
    with browser(email_gateway) as client:
        code = code_for(client, room, email, smtp_server)
        answer(client, room, email, other_code(code))
        assert answer(client, room, email, code).status_code == 303
    log = email_gateway.log_text()
    assert f"/_meetgate/email/{room}/verify" in log  # the log is being written
    assert code not in log
    assert email not in log and email.split("@")[0] not in log


def test_a_host_address_enters_as_host(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    chair = fresh_email("board.test")
    room = email_room(email_gateway, allowed_domains=["example.org"], host_emails=[chair])
    with browser(email_gateway) as client:
        code = code_for(client, room, chair, smtp_server)
        joined = answer(client, room, chair, code, name="The Chair")
        assert joined.status_code == 303
        assert ticket_user(joined)["moderator"] is True
        # A host's address was named by whoever set the policy: the name is shown unmarked.
        assert ticket_user(joined)["name"] == "The Chair"
        assert client.get(f"/_meetgate/host/{room}").status_code == 200


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-an-address",
        "ada@localhost",
        "ada@@example.org",
        '"ada"@example.org',
        "Ada <ada@example.org>",
        "ada@[127.0.0.1]",
        "ada@example.org\r\nBcc: eve@evil.test",
        "ada@example.org, eve@evil.test",
        "x" * 250 + "@example.org",
    ],
)
def test_malformed_addresses_are_refused(email_gateway: GatewayServer, bad: str) -> None:
    room = email_room(email_gateway, allowed_domains=[])
    with browser(email_gateway) as client:
        refused = ask(client, room, bad)
        assert refused.status_code == 400
        assert "email_address_invalid" in refused.text
        assert answer(client, room, bad, "1" * DIGITS).status_code == 400


def test_a_flood_of_requests_is_bounded_per_client_address(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    targets = [fresh_email() for _ in range(12)]
    with browser(email_gateway) as client:
        statuses = [ask(client, room, target).status_code for target in targets]
        refused = ask(client, room, fresh_email())
    # A burst of 8, plus what refills (one every ten seconds) while the test runs.
    assert 8 <= statuses.count(200) <= 9
    assert statuses[-1] == 429
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    sent = [target for target, status in zip(targets, statuses, strict=True) if status == 200]
    smtp_server.mailbox.wait_for(sent[-1])
    for target, status in zip(targets, statuses, strict=True):
        if status == 429:
            assert smtp_server.mailbox.to(target) == []


def test_a_flood_of_requests_is_bounded_per_email_address(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    victim = fresh_email()
    statuses = []
    for _ in range(MAX_SENDS + 2):
        with browser(email_gateway) as client:  # a new client address each time
            statuses.append(ask(client, room, victim).status_code)
    assert statuses == [200] * MAX_SENDS + [429, 429]
    smtp_server.mailbox.wait_for(victim, count=MAX_SENDS)
    assert len(smtp_server.mailbox.to(victim)) == MAX_SENDS
    # A disallowed address is capped in the same way: the cap tells nothing about it.
    outsider = fresh_email("evil.test")
    statuses = []
    for _ in range(MAX_SENDS + 1):
        with browser(email_gateway) as client:
            statuses.append(ask(client, room, outsider).status_code)
    assert statuses == [200] * MAX_SENDS + [429]


def test_cross_site_posts_are_refused(email_gateway: GatewayServer) -> None:
    room = email_room(email_gateway)
    with browser(email_gateway) as client:
        forged = client.post(
            f"/_meetgate/email/{room}/send",
            data={"email": fresh_email()},
            headers={"origin": "https://evil.test"},
        )
    assert forged.status_code == 403


def test_a_room_without_email_codes_refuses(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway, email_code=False)
    email = fresh_email()
    with browser(email_gateway) as client:
        assert "/_meetgate/email/" not in client.get(f"/_meetgate/enter/{room}").text
        assert ask(client, room, email).status_code == 403
    assert smtp_server.mailbox.to(email) == []


def test_a_flooded_room_asks_for_proof_of_work_first(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    from tests.integration.test_flood import challenge_of, solve

    room = email_room(email_gateway)
    with email_gateway.admin() as admin:
        admin.patch(f"/api/v1/rooms/{room}", json={"pow_required": True}).raise_for_status()
    email = fresh_email()
    with browser(email_gateway) as client:
        page = ask(client, room, email)
        assert page.status_code == 200 and "data-pow-token" in page.text
        assert f'value="{email}"' in page.text
        token, difficulty = challenge_of(page.text)
        sent = client.post(
            f"/_meetgate/email/{room}/send",
            data={"email": email, "pow_token": token, "answer": solve(token, difficulty)},
        )
        assert SAME_PAGE in sent.text
        code = smtp_server.mailbox.wait_for(email)[0].code()
        page = answer(client, room, email, code)
        token, difficulty = challenge_of(page.text)
        joined = client.post(
            f"/_meetgate/email/{room}/verify",
            data={
                "email": email,
                "code": code,
                "pow_token": token,
                "answer": solve(token, difficulty),
            },
        )
        assert joined.status_code == 303, joined.text


# The gateway over STARTTLS with a login, trusting the test CA through SSL_CERT_FILE.


def test_codes_go_out_over_starttls_with_a_login(
    tmp_path: Path,
    jitsi_web: Any,
    smtp_certificate: SelfSignedCertificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    login = ("meetgate", "s3cret-" + secrets.token_hex(8))
    mail = start_smtp(starttls=smtp_certificate, login=login)
    # The gateway's default TLS context reads the trust store named here (OpenSSL's variable).
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_certificate.cert_path))
    server, proc = start_gateway(
        tmp_path,
        upstream=jitsi_web.url,
        extra=gateway_settings(mail.port, security="starttls", login=login),
        top=TRUST_LOCAL_PROXY,
    )
    try:
        room = email_room(server)
        email = fresh_email()
        with browser(server) as client:
            ask(client, room, email)
            code = mail.mailbox.wait_for(email)[0].code()
            assert answer(client, room, email, code).status_code == 303
        assert login[1] not in server.log_text()
    finally:
        stop_process(proc)
        mail.stop()


# The mailer against real servers: each transport, and each way it must fail closed.


def settings_for(server: SmtpServer, **options: Any) -> SmtpSettings:
    return SmtpSettings(
        host=server.host, port=server.port, sender="gate@meet.test", timeout_seconds=5, **options
    )


async def test_mailer_over_starttls_with_login(smtp_certificate: SelfSignedCertificate) -> None:
    server = start_smtp(starttls=smtp_certificate, login=("u", "p"))
    try:
        mailer = SmtpMailer(
            settings_for(server, security="starttls", username="u", password="p"),
            tls_context=smtp_certificate.client_context(),
        )
        await mailer.send("ann@example.org", "Hello", "Code 12345678")
        [got] = server.mailbox.wait_for("ann@example.org")
        assert "12345678" in got.body
    finally:
        server.stop()


async def test_mailer_over_implicit_tls(smtp_certificate: SelfSignedCertificate) -> None:
    server = start_smtp(implicit_tls=smtp_certificate)
    try:
        mailer = SmtpMailer(
            settings_for(server, security="tls"), tls_context=smtp_certificate.client_context()
        )
        await mailer.send("ann@example.org", "Hello", "body")
        server.mailbox.wait_for("ann@example.org")
    finally:
        server.stop()


async def test_mailer_refuses_an_untrusted_certificate(
    smtp_certificate: SelfSignedCertificate,
) -> None:
    server = start_smtp(starttls=smtp_certificate)
    try:
        # The system trust store does not know the test certificate.
        mailer = SmtpMailer(settings_for(server, security="starttls"))
        with pytest.raises(MailFailed) as failed:
            await mailer.send("ann@example.org", "Hello", "body")
        assert "TLS" in failed.value.reason
        assert server.mailbox.messages == []
    finally:
        server.stop()


async def test_mailer_never_falls_back_to_plain_text(smtp_server: SmtpServer) -> None:
    # This server offers no STARTTLS.
    mailer = SmtpMailer(settings_for(smtp_server, security="starttls"))
    with pytest.raises(MailFailed):
        await mailer.send("nobody-plain@example.org", "Hello", "body")
    assert smtp_server.mailbox.to("nobody-plain@example.org") == []


async def test_mailer_with_a_wrong_password(smtp_certificate: SelfSignedCertificate) -> None:
    server = start_smtp(starttls=smtp_certificate, login=("u", "p"))
    try:
        mailer = SmtpMailer(
            settings_for(server, security="starttls", username="u", password="wrong"),
            tls_context=smtp_certificate.client_context(),
        )
        with pytest.raises(MailFailed) as failed:
            await mailer.send("ann@example.org", "Hello", "body")
        assert "ann@example.org" not in failed.value.reason
    finally:
        server.stop()


async def test_mailer_with_no_server() -> None:
    mailer = SmtpMailer(SmtpSettings(host="127.0.0.1", port=free_port(), security="none"))
    with pytest.raises(MailFailed) as failed:
        await mailer.send("ann@example.org", "Hello", "body")
    assert isinstance(failed.value, MeetgateError) and failed.value.status == 502


def test_a_rooms_language_speaks_on_the_code_page_in_the_email_and_to_jitsi(
    email_gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = email_room(email_gateway)
    with email_gateway.admin() as admin:
        assert admin.patch(f"/api/v1/rooms/{room}", json={"language": "zh-Hant"}).is_success
    email = fresh_email()
    with browser(email_gateway) as client:
        # No Accept-Language: the room's language, on the page and in the e-mail.
        page = ask(client, room, email)
        assert page.status_code == 200 and '<html lang="zh-Hant">' in page.text
        [mail] = smtp_server.mailbox.wait_for(email)
        assert mail.message["Content-Language"] == "zh-Hant" and "驗證碼" in mail.body
        joined = answer(client, room, email, mail.code())
        assert joined.headers["location"].startswith(f"/{room}?lang=zhTW#jwt=")
    # A browser asking for one of ours still gets its own.
    email = fresh_email()
    with browser(email_gateway) as client:
        client.headers["accept-language"] = "zh-CN"
        assert '<html lang="zh-Hans">' in ask(client, room, email).text
        [mail] = smtp_server.mailbox.wait_for(email)
        assert mail.message["Content-Language"] == "zh-Hans"
