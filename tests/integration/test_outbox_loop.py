"""The outbox shares the gate's event loop with the joins (issue 19's bench): an enqueue of many
invitations lets the loop run other work as it goes, even on the memory store whose calls never
suspend, and each e-mail is composed in the worker thread with its SMTP exchange, not on the
loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from email.message import EmailMessage

import pytest

from gateway.admission.invitations import Invitation
from gateway.admission.outbox import YIELD_EVERY
from gateway.mail import Attachment, MailFailed, SmtpMailer
from gateway.settings import SmtpSettings
from gateway.store import Store
from gateway.store.records import Role
from tests.fixtures.smtp import SmtpServer
from tests.integration.test_outbox import mailer, make_room, memory, outbox, smtp

__all__ = ["memory", "smtp"]


async def test_an_enqueue_of_many_lets_the_loop_run_other_work(
    memory: Store, smtp: SmtpServer
) -> None:
    """Catches an enqueue that holds the event loop for the whole list on the memory store (a
    join arriving meanwhile waited for all of it: the bench's p99 of 140 ms for 500)."""
    room = await make_room(memory)
    count = 8 * YIELD_EVERY
    invitations = [
        Invitation(room.name, f"Guest {n}", f"guest{n}@lab.example", Role.ATTENDEE, "en", "host")
        for n in range(count)
    ]
    box = outbox(memory, mailer(smtp))
    ran = 0

    async def other_work() -> None:
        nonlocal ran
        while True:
            ran += 1
            await asyncio.sleep(0)

    beside = asyncio.create_task(other_work())
    try:
        queued = await box.enqueue(room, invitations, now=room.created_at)
        during = ran
    finally:
        beside.cancel()
    assert len(queued.invite_ids) == count
    # Let in at least once per YIELD_EVERY made and once per YIELD_EVERY queued.
    assert during >= count // YIELD_EVERY


class ThreadNoting(SmtpMailer):
    """The gate's mailer, noting the thread each message is composed on."""

    threads: list[int]

    def compose(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        language: str = "en",
        attachments: Sequence[Attachment] = (),
    ) -> EmailMessage:
        self.threads.append(threading.get_ident())
        return super().compose(to, subject, body, language=language, attachments=attachments)


def noting(server: SmtpServer) -> ThreadNoting:
    made = ThreadNoting(
        SmtpSettings(
            host="127.0.0.1",
            port=server.port,
            security="none",
            sender="Meetgate <gate@meet.test>",
            timeout_seconds=5,
        )
    )
    made.threads = []
    return made


async def test_each_email_is_composed_off_the_event_loop(smtp: SmtpServer) -> None:
    """Catches composing on the loop (about a millisecond an e-mail, a quarter of the loop's
    time while the outbox sends as fast as it can)."""
    sender = noting(smtp)
    await sender.send("ada@example.org", "Hello", "Text\n")
    assert sender.threads and threading.get_ident() not in sender.threads
    assert len(smtp.mailbox.wait_for("ada@example.org", 1)) == 1


@pytest.mark.parametrize(
    "subject", ["Line\r\nBcc: x@example.org", "Line\nbreak"], ids=["crlf", "lf"]
)
async def test_a_message_that_cannot_be_composed_still_fails_as_mail(
    smtp: SmtpServer, subject: str
) -> None:
    with pytest.raises(MailFailed):
        await mailer(smtp).send("ada@example.org", subject, "Text\n")
    assert smtp.mailbox.to("ada@example.org") == []
