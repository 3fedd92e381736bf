"""The invitation outbox (gateway/admission/outbox.py) against a real SMTP server (aiosmtpd) and,
for several replicas, a real redis-server: every invitation delivered once, with its own working
link and its calendar entry, through an outage, from two replicas at once, within the rate
limit; and nothing personal left in the store once sent."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest
import redis.asyncio
from aiosmtpd.controller import Controller

from gateway.admission.email_codes import InvalidAddress
from gateway.admission.invitations import Invitation
from gateway.admission.invites import hash_token
from gateway.admission.outbox import (
    BatchUnknown,
    InvitationRevoked,
    InvitationSent,
    MeetingOver,
    Outbox,
    OutboxFull,
)
from gateway.errors import InvalidInput
from gateway.mail import Attachment, SmtpMailer
from gateway.metrics import Metrics
from gateway.settings import OutboxSettings, SmtpSettings
from gateway.store import Store, open_store
from gateway.store.records import Role, Room
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.fixtures.smtp import Mailbox, Received, SmtpServer, _Handler, start_smtp

pytestmark = pytest.mark.slow

KEY = b"k" * 32
PUBLIC = "https://meet.example.org"
START = time.time() + 7 * 86_400
FAST = OutboxSettings(per_minute=100_000, burst=10_000, retry_seconds=0.1, retry_max_seconds=1)
LINK = re.compile(r"^https://meet\.example\.org/j/([A-Za-z0-9_-]{32})\r?$", re.MULTILINE)


@dataclass
class Seen:
    calls: list[tuple[str, str, float]] = field(default_factory=list)

    async def __call__(self, room: Room, address: str, now: float) -> None:
        self.calls.append((room.name, address, now))


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outbox_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = start_redis(tmp_path_factory.mktemp("outbox-redis"))
    yield server
    stop_process(server.proc)


@pytest.fixture
async def redis_url(outbox_redis: RedisProcess) -> str:
    client = redis.asyncio.Redis.from_url(outbox_redis.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return outbox_redis.url


@pytest.fixture
async def memory() -> AsyncIterator[Store]:
    store = await open_store("memory://")
    yield store
    await store.close()


def mailer(server: SmtpServer | int) -> SmtpMailer:
    port = server if isinstance(server, int) else server.port
    return SmtpMailer(
        SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="none",
            sender="Meetgate <gate@meet.test>",
            timeout_seconds=5,
        )
    )


def outbox(
    store: Store,
    mail: object,
    settings: OutboxSettings = FAST,
    *,
    seen: Seen | None = None,
    metrics: Metrics | None = None,
    concurrency: int = 4,
) -> Outbox:
    return Outbox(
        store,
        settings,
        key=KEY,
        mailer=mail,  # type: ignore[arg-type]  # SmtpMailer, or a wrapper of one
        public_url=PUBLIC,
        metrics=metrics,
        seen=seen,
        concurrency=concurrency,
    )


async def make_room(store: Store, title: str = "Annual assembly", **changes: object) -> Room:
    room = Room(
        name="assembly-" + secrets.token_hex(3),
        title=title,
        created_at=time.time(),
        starts_at=START,
        ends_at=START + 7200,
    )
    room = dataclasses.replace(room, **changes)  # type: ignore[arg-type]  # the test's values
    await store.create_room(room)
    return room


def invitations(room: Room, count: int, language: str = "en", tag: str = "") -> list[Invitation]:
    tag = tag or secrets.token_hex(3)
    return [
        Invitation(
            room=room.name,
            name=f"Person {i}",
            address=f"person{i}.{tag}@example.org",
            role=Role.ATTENDEE,
            language=language,
            origin="import",
        )
        for i in range(count)
    ]


async def drain(*boxes: Outbox, batch: str, clock: list[float] | None = None) -> list[int]:
    """Run passes on every outbox at once until the batch is done; how many each sent."""
    sent = [0] * len(boxes)
    deadline = time.monotonic() + 60
    while True:
        progress = await boxes[0].progress(batch)
        assert progress is not None
        if progress.done:
            return sent
        assert time.monotonic() < deadline, progress
        now = clock[0] if clock else time.time()
        counts = await asyncio.gather(*(box.send_due(now) for box in boxes))
        sent = [a + b for a, b in zip(sent, counts, strict=True)]
        if clock:
            clock[0] += 3600
        elif not any(counts):
            await asyncio.sleep(0.01)


def one_each(mailbox: Mailbox, addresses: list[str]) -> dict[str, Received]:
    """Every address got exactly one message, and nobody else got any."""
    got: dict[str, list[Received]] = {}
    for message in mailbox.messages:
        for to in message.rcpt_tos:
            got.setdefault(to, []).append(message)
    assert sorted(got) == sorted(addresses)
    doubles = {to: len(messages) for to, messages in got.items() if len(messages) != 1}
    assert not doubles
    return {to: messages[0] for to, messages in got.items()}


def link_token(message: Received) -> str:
    found = LINK.findall(message.body)
    assert len(found) == 1, message.body
    return str(found[0])


def calendar_of(message: EmailMessage) -> dict[str, str]:
    """The .ics attachment, unfolded and read by RFC 5545's rules (no iCalendar parser is
    installed): its properties, each once."""
    (ics,) = list(message.iter_attachments())
    assert ics.get_content_type() == "text/calendar"
    assert ics.get_param("method") == "PUBLISH"
    data = ics.get_payload(decode=True)
    assert isinstance(data, bytes)
    assert all(len(line) <= 75 for line in data.split(b"\r\n"))
    lines = data.replace(b"\r\n ", b"").decode("utf-8").split("\r\n")
    assert lines[-1] == ""
    props: dict[str, str] = {}
    for line in lines[:-1]:
        name, _, value = line.partition(":")
        if name in ("BEGIN", "END"):
            props[f"{name}:{value}"] = ""
            continue
        assert name not in props, name
        props[name] = value
    assert list(props)[:1] == ["BEGIN:VCALENDAR"] and "BEGIN:VEVENT" in props
    return props


async def test_500_invitations_each_delivered_once_with_a_working_link(
    memory: Store, smtp: SmtpServer
) -> None:
    room = await make_room(memory)
    seen = Seen()
    metrics = Metrics()
    box = outbox(memory, mailer(smtp), seen=seen, metrics=metrics)
    batch = invitations(room, 500)
    queued = await box.enqueue(room, batch, now=time.time())
    assert len(set(queued.invite_ids)) == 500
    progress = await box.progress(queued.batch)
    assert progress is not None and (progress.total, progress.waiting) == (500, 500)
    await drain(box, batch=queued.batch)
    progress = await box.progress(queued.batch)
    assert progress is not None
    assert (progress.total, progress.sent, progress.failed, progress.waiting) == (500, 500, 0, 0)
    addresses = [i.address for i in batch]
    received = one_each(smtp.mailbox, addresses)
    tokens = {to: link_token(m) for to, m in received.items()}
    assert len(set(tokens.values())) == 500
    # Each link is its invitee's: the invite it opens bears their name.
    for invitation in batch[::50]:
        token = tokens[invitation.address]
        invite = await memory.redeem_invite(hash_token(token), time.time())
        assert invite.name == invitation.name and invite.room == room.name
        assert invite.id in queued.invite_ids
        message = received[invitation.address].message
        props = calendar_of(message)
        assert props["SUMMARY"] == "Annual assembly"
        assert props["URL;VALUE=URI"] == f"{PUBLIC}/j/{token}"
        assert props["UID"] == f"{invite.id}@meetgate"
        assert props["DTSTART"].endswith("Z")
        assert f"Hello {invitation.name}," in received[invitation.address].body
    assert sorted(address for _, address, _ in seen.calls) == sorted(addresses)
    assert {room_name for room_name, _, _ in seen.calls} == {room.name}
    assert metrics.invitations_sent.value() == 500


class StopAfter:
    """SmtpMailer, and the server stopped once `count` messages have gone (an outage)."""

    def __init__(self, server: SmtpServer, count: int) -> None:
        self.server = server
        self.count = count
        self.mailer = mailer(server)
        self.stopped = asyncio.Event()

    async def send(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        language: str = "en",
        attachments: tuple[Attachment, ...] = (),
    ) -> None:
        await self.mailer.send(to, subject, body, language=language, attachments=attachments)
        if len(self.server.mailbox.messages) >= self.count and not self.stopped.is_set():
            self.stopped.set()
            await asyncio.to_thread(self.server.controller.stop)


def restart(server: SmtpServer) -> Controller:
    """The server again on its port, keeping its mailbox."""
    controller = Controller(_Handler(server.mailbox), hostname=server.host, port=server.port)
    controller.start()
    server.controller = controller
    return controller


async def wait_for(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_smtp_outage_resumes_and_nobody_gets_two(memory: Store) -> None:
    server = start_smtp()
    try:
        room = await make_room(memory)
        settings = OutboxSettings(
            per_minute=100_000,
            burst=10_000,
            retry_seconds=0.1,
            retry_max_seconds=1,
            max_attempts=100,
        )
        # One at a time: a message in flight when the server stops could be taken by it with
        # its answer lost (sent again then): the outage comes between two messages here.
        box = outbox(memory, StopAfter(server, 20), settings, concurrency=1)
        batch = invitations(room, 60)
        queued = await box.enqueue(room, batch, now=time.time())
        await box.start()
        try:

            async def retrying() -> bool:
                progress = await box.progress(queued.batch)
                assert progress is not None
                return progress.retry_at is not None and progress.sent == 20

            await wait_for(retrying, "a retry planned while the server is down")
            progress = await box.progress(queued.batch)
            assert progress is not None
            assert (progress.sent, progress.failed, progress.waiting) == (20, 0, 40)
            assert not progress.done
            assert len(server.mailbox.messages) == 20
            restart(server)

            async def done() -> bool:
                progress = await box.progress(queued.batch)
                return progress is not None and progress.done

            await wait_for(done, "the batch sent after the outage")
        finally:
            await box.aclose()
        progress = await box.progress(queued.batch)
        assert progress is not None and (progress.sent, progress.failed) == (60, 0)
        one_each(server.mailbox, [i.address for i in batch])
    finally:
        server.stop()


async def test_failed_after_max_attempts_then_resent(memory: Store) -> None:
    port = free_port()  # nothing listens: every attempt fails
    room = await make_room(memory)
    settings = OutboxSettings(retry_seconds=0.1, retry_max_seconds=1, max_attempts=3)
    metrics = Metrics()
    box = outbox(memory, mailer(port), settings, metrics=metrics)
    (invitation,) = invitations(room, 1)
    queued = await box.enqueue(room, [invitation], now=START - 86_400)
    clock = [START - 86_400]
    await drain(box, batch=queued.batch, clock=clock)
    progress = await box.progress(queued.batch)
    assert progress is not None and (progress.failed, progress.sent) == (1, 0)
    assert metrics.invitations_retried.value() == 2
    assert metrics.invitations_failed.value() == 1
    # Resent once the server is there: the same link goes, once.
    server = start_smtp()
    try:
        box = outbox(memory, mailer(server), settings)
        await box.resend(queued.invite_ids[0], now=clock[0])
        assert await box.send_due(clock[0]) == 1
        (message,) = server.mailbox.wait_for(invitation.address)
        invite = await memory.find_invite(hash_token(link_token(message)))
        assert invite is not None and invite.id == queued.invite_ids[0]
        with pytest.raises(InvitationSent, match="no longer kept"):
            await box.resend(queued.invite_ids[0], now=clock[0])
    finally:
        server.stop()


async def test_revoked_before_sending_never_goes(memory: Store, smtp: SmtpServer) -> None:
    room = await make_room(memory)
    box = outbox(memory, mailer(smtp))
    batch = invitations(room, 3)
    queued = await box.enqueue(room, batch, now=time.time())
    assert await box.revoke(queued.invite_ids[1])
    await drain(box, batch=queued.batch)
    progress = await box.progress(queued.batch)
    assert progress is not None and (progress.sent, progress.failed) == (2, 1)
    one_each(smtp.mailbox, [batch[0].address, batch[2].address])
    with pytest.raises(InvitationRevoked):
        await box.resend(queued.invite_ids[1], now=time.time())
    invite = await memory.get_invite(queued.invite_ids[1])
    assert invite is not None and invite.revoked


async def test_two_replicas_send_a_batch_once(redis_url: str, smtp: SmtpServer) -> None:
    first, second = await open_store(redis_url), await open_store(redis_url)
    try:
        room = await make_room(first)
        boxes = (outbox(first, mailer(smtp)), outbox(second, mailer(smtp)))
        batch = invitations(room, 200)
        queued = await boxes[0].enqueue(room, batch[:100], now=time.time())
        # The second replica adds to the same batch.
        again = await boxes[1].enqueue(room, batch[100:], now=time.time(), batch=queued.batch)
        assert again.batch == queued.batch
        sent = await drain(*boxes, batch=queued.batch)
        assert sum(sent) == 200
        assert all(count > 0 for count in sent), sent
        one_each(smtp.mailbox, [i.address for i in batch])
    finally:
        await first.close()
        await second.close()


async def test_rate_limit_holds_across_replicas(redis_url: str, smtp: SmtpServer) -> None:
    first, second = await open_store(redis_url), await open_store(redis_url)
    try:
        room = await make_room(first)
        # One a minute after a burst of 5: a pass of both replicas sends the burst, no more.
        settings = OutboxSettings(per_minute=1, burst=5)
        boxes = (outbox(first, mailer(smtp), settings), outbox(second, mailer(smtp), settings))
        queued = await boxes[0].enqueue(room, invitations(room, 30), now=time.time())
        counts = await asyncio.gather(*(box.send_due(time.time()) for box in boxes))
        counts += await asyncio.gather(*(box.send_due(time.time()) for box in boxes))
        assert sum(counts) == 5
        assert len(smtp.mailbox.messages) == 5
        progress = await boxes[1].progress(queued.batch)
        assert progress is not None and (progress.sent, progress.waiting) == (5, 25)
    finally:
        await first.close()
        await second.close()


async def test_items_refused_by_the_limit_go_in_a_later_pass(
    memory: Store, smtp: SmtpServer
) -> None:
    room = await make_room(memory)
    # One a second, no burst: a pass of four at once is refused for three of them, which must
    # not stay claimed (for the lease's 10 minutes) but go in the next passes.
    box = outbox(memory, mailer(smtp), OutboxSettings(per_minute=60, burst=1))
    batch = invitations(room, 3)
    queued = await box.enqueue(room, batch, now=time.time())
    assert await box.send_due(time.time()) == 1
    await drain(box, batch=queued.batch)
    one_each(smtp.mailbox, [i.address for i in batch])


async def dump(url: str) -> bytes:
    """Every key and value the Redis holds, as bytes."""
    client = redis.asyncio.Redis.from_url(url)
    out = bytearray()
    try:
        async for key in client.scan_iter(count=1000):
            out += key + b"\n"
            kind = (await client.type(key)).decode()
            if kind == "string":
                out += await client.get(key) or b""
            elif kind == "zset":
                out += b" ".join(await client.zrange(key, 0, -1))
            elif kind == "hash":
                for name, value in (await client.hgetall(key)).items():
                    out += name + b"=" + value + b" "
            elif kind == "set":
                out += b" ".join(await client.smembers(key))
            elif kind == "list":
                out += b" ".join(await client.lrange(key, 0, -1))
            elif kind == "stream":
                out += repr(await client.xrange(key)).encode()
            out += b"\n"
    finally:
        await client.aclose()
    return bytes(out)


async def test_no_address_or_link_in_the_store(redis_url: str, smtp: SmtpServer) -> None:
    store = await open_store(redis_url)
    try:
        room = await make_room(store)
        box = outbox(store, mailer(smtp))
        batch = invitations(room, 20)
        queued = await box.enqueue(room, batch, now=time.time())
        before = await dump(redis_url)
        # Queued: the address sealed, never in clear.
        assert b"outbox:item:" in before and b'"sealed":"' in before
        for invitation in batch:
            assert invitation.address.encode() not in before
            assert invitation.address.split("@")[0].encode() not in before
        await drain(box, batch=queued.batch)
        after = await dump(redis_url)
        received = one_each(smtp.mailbox, [i.address for i in batch])
        for invitation in batch:
            assert invitation.address.encode() not in after
            assert link_token(received[invitation.address]).encode() not in after
        # Nor the sealed blobs: each item keeps its state only.
        assert b'"sealed":"' not in after and b'"sealed":null' in after
    finally:
        await store.close()


@pytest.mark.parametrize("language", ["zh-Hans", "zh-Hant"])
async def test_chinese_invitations(memory: Store, smtp: SmtpServer, language: str) -> None:
    title = "年度大会\uff1a开幕式" if language == "zh-Hans" else "年度大會\uff1a開幕式"
    room = await make_room(memory, title=title)
    box = outbox(memory, mailer(smtp))
    batch = [
        Invitation(
            room=room.name,
            name="张三" if language == "zh-Hans" else "張三",
            address=f"zhang.{secrets.token_hex(3)}@example.org",
            role=Role.ATTENDEE,
            language=language,
            origin="registration",
        )
    ]
    queued = await box.enqueue(room, batch, now=time.time())
    await drain(box, batch=queued.batch)
    message = one_each(smtp.mailbox, [batch[0].address])[batch[0].address].message
    raw_subject = dict(message.raw_items())["Subject"]
    assert raw_subject.isascii() and "=?utf-8?" in raw_subject
    assert title in str(message["Subject"])
    assert message["Content-Language"] == language
    body = message.get_body(("plain",))
    assert body is not None and body.get_content_charset() == "utf-8"
    text = body.get_content()
    assert batch[0].name in text
    assert f"{time.gmtime(START).tm_year}年" in text
    assert calendar_of(message)["SUMMARY"] == title


@pytest.mark.parametrize(
    "title",
    [
        "Evil\r\nBcc: victim@example.org",
        "Evil\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:Phish",
        "semi;colon,comma\\back",
    ],
    ids=["header-injection", "vevent-injection", "separators"],
)
async def test_hostile_room_titles(memory: Store, smtp: SmtpServer, title: str) -> None:
    room = await make_room(memory, title=title)
    box = outbox(memory, mailer(smtp))
    (invitation,) = invitations(room, 1)
    queued = await box.enqueue(room, [invitation], now=time.time())
    await drain(box, batch=queued.batch)
    message = one_each(smtp.mailbox, [invitation.address])[invitation.address]
    assert message.rcpt_tos == (invitation.address,)
    assert message.message["Bcc"] is None
    assert "\n" not in str(message.message["Subject"])
    props = calendar_of(message.message)
    assert "SUMMARY" in props and list(props).count("BEGIN:VEVENT") == 1
    assert "Phish" not in props.get("URL;VALUE=URI", "")


@pytest.mark.parametrize(
    ("name", "address", "error"),
    [
        ("Eve\r\nBcc: x@example.org", "eve@example.org", InvalidInput),
        ("Eve\nEvil", "eve@example.org", InvalidInput),
        ("", "eve@example.org", InvalidInput),
        ("Eve", "eve@example.org\r\nBcc: x@example.org", InvalidAddress),
        ("Eve", "not an address", InvalidAddress),
    ],
    ids=["crlf-name", "lf-name", "empty-name", "crlf-address", "no-address"],
)
async def test_bad_invitations_refused_before_anything_is_made(
    memory: Store, smtp: SmtpServer, name: str, address: str, error: type[Exception]
) -> None:
    room = await make_room(memory)
    box = outbox(memory, mailer(smtp))
    good = invitations(room, 3)
    bad = Invitation(
        room=room.name,
        name=name,
        address=address,
        role=Role.ATTENDEE,
        language="en",
        origin="import",
    )
    with pytest.raises(error):
        await box.enqueue(room, [*good, bad], now=time.time())
    # Nothing half made: no invite, nothing queued, nothing sent.
    assert await memory.list_invites(room.name) == []
    assert await box.send_due(time.time()) == 0
    assert smtp.mailbox.messages == []


async def test_other_refusals(memory: Store, smtp: SmtpServer) -> None:
    room = await make_room(memory)
    box = outbox(memory, mailer(smtp))
    other = await make_room(memory)
    with pytest.raises(InvalidInput):
        await box.enqueue(room, invitations(other, 1), now=time.time())
    with pytest.raises(BatchUnknown):
        await box.enqueue(room, invitations(room, 1), now=time.time(), batch="0" * 16)
    queued = await box.enqueue(other, invitations(other, 1), now=time.time())
    # A batch of another room is not this room's.
    with pytest.raises(BatchUnknown):
        await box.enqueue(room, invitations(room, 1), now=time.time(), batch=queued.batch)
    with pytest.raises(MeetingOver):
        await box.enqueue(room, invitations(room, 1), now=START + 86_400 * 3)
    assert await box.progress("f" * 16) is None


async def test_no_start_no_calendar(memory: Store, smtp: SmtpServer) -> None:
    room = await make_room(memory, starts_at=None, ends_at=None)
    box = outbox(memory, mailer(smtp))
    (invitation,) = invitations(room, 1)
    queued = await box.enqueue(room, [invitation], now=time.time())
    await drain(box, batch=queued.batch)
    message = one_each(smtp.mailbox, [invitation.address])[invitation.address].message
    assert message.get_content_type() == "text/plain"
    assert list(message.iter_attachments()) == []
    invite = await memory.get_invite(queued.invite_ids[0])
    assert invite is not None
    # Thirty days for a meeting without an end.
    assert invite.expires_at - invite.created_at == pytest.approx(30 * 86_400)


async def test_a_sealed_item_under_another_key_is_not_sent(memory: Store, smtp: SmtpServer) -> None:
    room = await make_room(memory)
    queued = await outbox(memory, mailer(smtp)).enqueue(room, invitations(room, 1), now=time.time())
    other = Outbox(memory, FAST, key=b"x" * 32, mailer=mailer(smtp), public_url=PUBLIC)
    assert await other.send_due(time.time()) == 0
    progress = await other.progress(queued.batch)
    assert progress is not None and progress.failed == 1
    assert smtp.mailbox.messages == []


class Refusing(_Handler):
    """Answers RCPT TO as a real server does for an unknown mailbox (550, for good) and for
    one it cannot take now (451, try later); counts the attempts at each address."""

    def __init__(self, mailbox: Mailbox, refused: str, deferred: str) -> None:
        super().__init__(mailbox)
        self.answers = {refused: "550 5.1.1 No such user", deferred: "451 4.3.0 Try again later"}
        self.tried: dict[str, int] = {}

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        self.tried[address] = self.tried.get(address, 0) + 1
        answer = self.answers.get(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]  # aiosmtpd's Envelope
        return "250 OK"


async def test_a_permanent_refusal_fails_at_once_and_a_temporary_one_is_retried(
    memory: Store,
) -> None:
    room = await make_room(memory)
    good, refused, deferred = invitations(room, 3)
    mailbox = Mailbox()
    handler = Refusing(mailbox, refused.address, deferred.address)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings = OutboxSettings(retry_seconds=0.1, retry_max_seconds=1, max_attempts=4)
        metrics = Metrics()
        box = outbox(memory, mailer(controller.port), settings, metrics=metrics)
        queued = await box.enqueue(room, [good, refused, deferred], now=START - 86_400)
        await drain(box, batch=queued.batch, clock=[START - 86_400])
    finally:
        controller.stop()
    progress = await box.progress(queued.batch)
    assert progress is not None
    assert (progress.sent, progress.failed, progress.waiting) == (1, 2, 0)
    assert handler.tried[refused.address] == 1
    assert handler.tried[deferred.address] == 4
    assert [m.rcpt_tos for m in mailbox.messages] == [(good.address,)]
    assert metrics.invitations_retried.value() == 3
    assert metrics.invitations_failed.value() == 2


class CountedReads:
    """Counts the item records each get_values call of a store reads."""

    def __init__(self, store: Store) -> None:
        self.reads: list[int] = []
        read = store.get_values

        async def counted(keys: Sequence[str]) -> list[str | None]:
            self.reads.append(sum(key.startswith("outbox:item:") for key in keys))
            return await read(keys)

        store.get_values = counted  # type: ignore[method-assign]  # counted, then the store's


async def test_one_rooms_flood_does_not_hold_up_another_rooms_few(
    memory: Store, smtp: SmtpServer
) -> None:
    flooded, small = await make_room(memory), await make_room(memory)
    # Ten a pass at most (the burst), sixty a minute after it.
    box = outbox(memory, mailer(smtp), OutboxSettings(per_minute=60, burst=10))
    await box.enqueue(flooded, invitations(flooded, 300), now=time.time())
    few = invitations(small, 3)
    await box.enqueue(small, few, now=time.time())
    reads = CountedReads(memory)
    assert await box.send_due(time.time()) == 10
    # The small room's three went in the first pass, beside seven of the flood.
    received = [to for message in smtp.mailbox.messages for to in message.rcpt_tos]
    assert sorted(a for a in received if a in {i.address for i in few}) == sorted(
        i.address for i in few
    )
    # The pass read what it could send, not the whole queue.
    assert reads.reads and max(reads.reads) <= 10


async def test_a_rooms_unsent_invitations_are_capped(memory: Store, smtp: SmtpServer) -> None:
    room, other = await make_room(memory), await make_room(memory)
    box = Outbox(
        memory, FAST, key=KEY, mailer=mailer(smtp), public_url=PUBLIC, max_unsent_per_room=5
    )
    await box.enqueue(room, invitations(room, 3), now=time.time())
    over = invitations(room, 3)
    with pytest.raises(OutboxFull) as refused:
        await box.enqueue(room, over, now=time.time())
    assert refused.value.status == 409 and "too many invitation e-mails" in refused.value.message
    # Refused whole: none of them made.
    assert len(await memory.list_invites(room.name)) == 3
    # Another room is not held up; once some are sent, the room takes more.
    await box.enqueue(other, invitations(other, 5), now=time.time())
    await box.enqueue(room, invitations(room, 2), now=time.time())
    assert await box.send_due(time.time()) == 10
    await box.enqueue(room, over, now=time.time())


async def sealed_of(store: Store, invite_id: str) -> str | None:
    item_id = await store.get_value(f"outbox:invite:{invite_id}")
    assert item_id is not None
    raw = await store.get_value(f"outbox:item:{item_id}")
    assert raw is not None
    sealed: str | None = json.loads(raw)["sealed"]
    return sealed


async def test_an_invitation_that_can_never_go_keeps_no_address(
    memory: Store, smtp: SmtpServer
) -> None:
    room = await make_room(memory)
    box = outbox(memory, mailer(smtp))
    queued = await box.enqueue(room, invitations(room, 2), now=time.time())
    # Its invite revoked behind the outbox's back (the item still queued): never sent.
    await memory.revoke_invite(queued.invite_ids[0])
    assert await box.send_due(time.time()) == 1
    assert await sealed_of(memory, queued.invite_ids[0]) is None
    progress = await box.progress(queued.batch)
    assert progress is not None and (progress.sent, progress.failed) == (1, 1)


async def test_a_permanent_refusal_keeps_no_address_and_a_temporary_one_keeps_it_to_resend(
    memory: Store,
) -> None:
    room = await make_room(memory)
    refused, deferred = invitations(room, 2)
    handler = Refusing(Mailbox(), refused.address, deferred.address)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings = OutboxSettings(retry_seconds=0.1, retry_max_seconds=1, max_attempts=2)
        box = outbox(memory, mailer(controller.port), settings)
        queued = await box.enqueue(room, [refused, deferred], now=START - 86_400)
        await drain(box, batch=queued.batch, clock=[START - 86_400])
    finally:
        controller.stop()
    assert await sealed_of(memory, queued.invite_ids[0]) is None
    assert await sealed_of(memory, queued.invite_ids[1]) is not None


async def test_every_batch_of_a_room_is_kept_for_its_hosts(memory: Store, smtp: SmtpServer) -> None:
    room, other = await make_room(memory), await make_room(memory)
    box = outbox(memory, mailer(smtp))
    first = await box.enqueue(room, invitations(room, 1), now=time.time())
    # One batch filled by several calls (an approval's) is one batch.
    second = await box.enqueue(room, invitations(room, 1), now=time.time() + 1)
    await box.enqueue(room, invitations(room, 1), now=time.time() + 2, batch=second.batch)
    await box.enqueue(other, invitations(other, 1), now=time.time())
    assert await box.batches(room.name, 10) == [second.batch, first.batch]
    assert await box.batches(room.name, 1) == [second.batch]


# What a batch's hosts do: retry the failed, revoke them all; and a deleted room's mail


async def test_a_batchs_failed_invitations_retried_once_the_server_is_back_each_go_once(
    memory: Store,
) -> None:
    port = free_port()  # nothing listens at first: every attempt fails
    room = await make_room(memory)
    settings = OutboxSettings(retry_seconds=0.1, retry_max_seconds=1, max_attempts=2)
    box = outbox(memory, mailer(port), settings)
    batch = invitations(room, 3)
    queued = await box.enqueue(room, batch, now=START - 86_400)
    clock = [START - 86_400]
    await drain(box, batch=queued.batch, clock=clock)
    progress = await box.progress(queued.batch)
    assert progress is not None and (progress.failed, progress.retryable) == (3, 3)
    assert sorted(await box.batch_items(room.name, queued.batch)) == sorted(
        (invite, "failed") for invite in queued.invite_ids
    )
    # One of them revoked meanwhile: it stays failed, the others go once each.
    assert await box.revoke(queued.invite_ids[2])
    server = start_smtp()
    try:
        box = outbox(memory, mailer(server), settings)
        assert await box.retry_failed(room.name, queued.batch, now=clock[0]) == 2
        progress = await box.progress(queued.batch)
        assert progress is not None and (progress.waiting, progress.retryable) == (2, 0)
        # A second press while they wait changes nothing: nobody gets two.
        assert await box.retry_failed(room.name, queued.batch, now=clock[0]) == 0
        await drain(box, batch=queued.batch, clock=clock)
        one_each(server.mailbox, [batch[0].address, batch[1].address])
        progress = await box.progress(queued.batch)
        assert progress is not None and (progress.sent, progress.failed) == (2, 1)
        # Sent: nothing left to retry (the addresses are gone).
        assert await box.retry_failed(room.name, queued.batch, now=clock[0]) == 0
    finally:
        server.stop()


async def test_revoking_a_batch_stops_its_queued_mail_and_its_links(
    memory: Store, smtp: SmtpServer
) -> None:
    room = await make_room(memory)
    box = outbox(memory, mailer(smtp))
    sent = invitations(room, 2)
    queued = await box.enqueue(room, sent, now=time.time())
    await drain(box, batch=queued.batch)
    received = one_each(smtp.mailbox, [i.address for i in sent])
    waiting = invitations(room, 3)
    more = await box.enqueue(room, waiting, now=time.time(), batch=queued.batch)
    assert await box.revoke_batch(room.name, queued.batch) == 5
    assert await box.send_due(time.time()) == 0
    # The queued e-mails never went, and kept no address; the links sent no longer work.
    one_each(smtp.mailbox, [i.address for i in sent])
    for invite_id in more.invite_ids:
        assert await sealed_of(memory, invite_id) is None
    for message in received.values():
        invite = await memory.find_invite(hash_token(link_token(message)))
        assert invite is not None and invite.revoked
    for invite_id in (*queued.invite_ids, *more.invite_ids):
        invite = await memory.get_invite(invite_id)
        assert invite is not None and not invite.is_usable(time.time())
    progress = await box.progress(queued.batch)
    assert progress is not None
    assert (progress.sent, progress.failed, progress.revoked, progress.revocable) == (2, 3, 5, 0)
    assert progress.done
    assert (
        sorted(state for _, state in await box.batch_items(room.name, queued.batch))
        == ["revoked"] * 5
    )
    # Again: nothing more to revoke.
    assert await box.revoke_batch(room.name, queued.batch) == 0


async def test_a_batch_is_its_own_rooms_only(memory: Store, smtp: SmtpServer) -> None:
    room, other = await make_room(memory), await make_room(memory)
    box = outbox(memory, mailer(smtp))
    queued = await box.enqueue(room, invitations(room, 2), now=time.time())
    for call in (
        box.revoke_batch(other.name, queued.batch),
        box.retry_failed(other.name, queued.batch, now=time.time()),
        box.batch_items(other.name, queued.batch),
        box.revoke_batch(room.name, "0123456789abcdef"),
    ):
        with pytest.raises(BatchUnknown):
            await call
    progress = await box.progress(queued.batch)
    assert progress is not None and (progress.waiting, progress.revoked) == (2, 0)


async def test_a_deleted_rooms_unsent_invitations_leave_nothing_in_the_store(
    redis_url: str,
) -> None:
    store = await open_store(redis_url)
    port = free_port()  # nothing listens: some fail for good, some wait for a retry
    try:
        room, other = await make_room(store), await make_room(store)
        settings = OutboxSettings(retry_seconds=3600, retry_max_seconds=3600, max_attempts=1)
        box = outbox(store, mailer(port), settings)
        failed = invitations(room, 2)
        first = await box.enqueue(room, failed, now=time.time())
        await box.send_due(time.time())
        progress = await box.progress(first.batch)
        assert progress is not None and progress.retryable == 2
        waiting = invitations(room, 3)
        second = await box.enqueue(room, waiting, now=time.time())
        kept = invitations(other, 1)
        await box.enqueue(other, kept, now=time.time())
        before = await dump(redis_url)
        assert before.count(b'"sealed":"') == 6
        assert await store.delete_room(room.name, time.time())
        assert await box.forget_room(room.name) == 5
        after = await dump(redis_url)
        # The other room's one is still sealed; nothing of the deleted room's.
        assert after.count(b'"sealed":"') == 1
        assert f"outbox:queue:{room.name}".encode() not in after
        assert f"outbox:batches:{room.name}".encode() not in after
        for batch in (first.batch, second.batch):
            progress = await box.progress(batch)
            assert progress is not None and progress.waiting == 0 and progress.retryable == 0
        assert await box.batches(room.name, 10) == []
        for invitation in failed + waiting:
            assert invitation.address.encode() not in after
        # A room made again under the name inherits none of them: only the other room's goes.
        await store.create_room(dataclasses.replace(room, created_at=time.time()))
        server = start_smtp()
        try:
            assert await outbox(store, mailer(server), settings).send_due(time.time()) == 1
            one_each(server.mailbox, [kept[0].address])
        finally:
            server.stop()
    finally:
        await store.close()
