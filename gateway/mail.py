"""Sending e-mail over SMTP (plain, STARTTLS or implicit TLS). The only module that sends mail;
`meetgate doctor` (gateway/doctor_identity.py) speaks SMTP too, through `connection_plan` here,
but only to check the server (STARTTLS, login, MAIL FROM then RSET): it sends nothing.

`smtplib` blocks, so each message is sent in a worker thread; every failure it can raise is
translated here, once, into `MailFailed`, whose description never carries an address.
"""

from __future__ import annotations

import asyncio
import email.policy
import ipaddress
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from gateway.errors import MeetgateError
from gateway.i18n import N_
from gateway.settings import SmtpSettings

# The standard policy, but a body that is not ASCII goes out quoted-printable or base64 (the
# library picks the shorter), never as raw 8-bit bytes a server without 8BITMIME may mangle.
MESSAGE_POLICY = email.policy.default.clone(cte_type="7bit")

# One file sent with a message: its name, its content type (with parameters: "text/calendar;
# method=PUBLISH; charset=UTF-8") and its bytes.
Attachment = tuple[str, str, bytes]


class MailFailed(MeetgateError):
    """The SMTP server could not be reached, refused us, or refused the message."""

    status = 502
    code = "mail_failed"
    title = N_("The e-mail could not be sent")
    message = N_("Meetgate could not send the e-mail. Please try again in a few minutes.")

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__()
        # For the log: a kind of failure and an SMTP status, never an address or the text of
        # the server's reply (which often quotes the recipient).
        self.reason = reason
        # The server refused this message or its recipient for good (a 5xx reply): sending it
        # again cannot help. A 4xx reply, a lost connection or TLS trouble may pass.
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """How one delivery talks to the server, as `[smtp]` asks."""

    implicit_tls: bool
    starttls: bool
    login: bool


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connection_plan(settings: SmtpSettings) -> ConnectionPlan:
    """Pure: the transport `settings` call for. Credentials never cross the network in clear:
    with `security = "none"` a login is allowed only to a server on this machine."""
    login = settings.username is not None
    if settings.security == "none" and login and not _is_loopback(settings.host):
        raise MailFailed("refusing to send SMTP credentials without TLS")
    return ConnectionPlan(
        implicit_tls=settings.security == "tls",
        starttls=settings.security == "starttls",
        login=login,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return f"recipient refused ({', '.join(str(code) for code in codes)})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


def _permanent(exc: Exception) -> bool:
    """Whether the server refused this message for good: its recipient refused with a 5xx reply
    (every one of them), or the message itself refused (5xx after DATA). A 5xx to the sender or
    to our login says the gate's settings are wrong, for every message alike: retried, so that
    the queue goes once an admin fixes them."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPDataError):
        return 500 <= exc.smtp_code < 600
    return False


def _content_type(value: str) -> tuple[str, str, dict[str, str]]:
    """ "text/calendar; method=PUBLISH; charset=UTF-8" as ("text", "calendar", {…})."""
    kind, *rest = (part.strip() for part in value.split(";"))
    maintype, _, subtype = kind.partition("/")
    params = {}
    for part in rest:
        key, _, param = part.partition("=")
        params[key.strip().lower()] = param.strip().strip('"')
    if not maintype or not subtype:
        raise ValueError("not a content type")
    return maintype.lower(), subtype.lower(), params


class SmtpMailer:
    """Sends plain-text messages (with files attached, if any) from `[smtp] sender` through the
    configured server."""

    def __init__(
        self, settings: SmtpSettings, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self._settings = settings
        # The system's trust store, hostname checked; tests pass one that trusts their own CA.
        self._tls = tls_context or ssl.create_default_context()
        domain = settings.sender.rsplit("@", 1)[-1].strip("<> ") or "localhost"
        self._domain = domain

    def compose(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        language: str = "en",
        attachments: Sequence[Attachment] = (),
    ) -> EmailMessage:
        """A plain-text message in UTF-8 (the subject encoded as RFC 2047 words where it is not
        ASCII), its `Content-Language` the BCP 47 tag of the language it is written in; with
        `attachments`, multipart/mixed: the text first, then each file (base64)."""
        message = EmailMessage(policy=MESSAGE_POLICY)
        message["From"] = self._settings.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._domain)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body, charset="utf-8")
        for filename, content_type, data in attachments:
            maintype, subtype, params = _content_type(content_type)
            message.add_attachment(
                data, maintype=maintype, subtype=subtype, filename=filename, params=params
            )
        # After set_content and add_attachment, which replace or move every Content-* header.
        message["Content-Language"] = language
        return message

    async def send(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        language: str = "en",
        attachments: Sequence[Attachment] = (),
    ) -> None:
        """Deliver one message; MailFailed if the server cannot be reached or refuses it."""
        plan = connection_plan(self._settings)
        # Composed in the worker thread with the SMTP exchange: building the headers and the
        # attachments takes a millisecond or more a message, which the event loop (and every
        # join waiting on it) would otherwise pay for each e-mail the outbox sends.
        await asyncio.to_thread(
            self._compose_and_deliver, plan, to, subject, body, language, attachments
        )

    def _compose_and_deliver(
        self,
        plan: ConnectionPlan,
        to: str,
        subject: str,
        body: str,
        language: str,
        attachments: Sequence[Attachment],
    ) -> None:
        try:
            message = self.compose(to, subject, body, language=language, attachments=attachments)
        except ValueError as exc:
            # A header that would not survive (a line break in the sender or the subject).
            raise MailFailed("message could not be composed") from exc
        self._deliver(plan, message)

    def _deliver(self, plan: ConnectionPlan, message: EmailMessage) -> None:
        settings = self._settings
        try:
            client: smtplib.SMTP
            if plan.implicit_tls:
                client = smtplib.SMTP_SSL(
                    settings.host,
                    settings.port,
                    timeout=settings.timeout_seconds,
                    context=self._tls,
                )
            else:
                client = smtplib.SMTP(
                    settings.host, settings.port, timeout=settings.timeout_seconds
                )
            with client:
                client.ehlo()
                if plan.starttls:
                    # Raises SMTPNotSupportedError when the server does not offer STARTTLS: we
                    # never fall back to plain text.
                    client.starttls(context=self._tls)
                    client.ehlo()
                if plan.login:
                    password = settings.password.get_secret_value() if settings.password else ""
                    client.login(settings.username or "", password)
                client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailFailed(_reason(exc), permanent=_permanent(exc)) from exc
