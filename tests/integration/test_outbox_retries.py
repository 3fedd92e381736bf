"""The outbox's retries and a revoke racing a send (gateway/admission/outbox.py), against a real
SMTP server (aiosmtpd) and both stores: invitations waiting for a retry (a greylisting server's
451) never hold up newer ones, of their room or of others; and an invitation revoked, or its room
deleted, while its e-mail is with the server never gets its address back nor returns to the
queue, whatever the server answers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from aiosmtpd.controller import Controller

from gateway.admission.outbox import QUEUE, RETRYING, Outbox
from gateway.settings import OutboxSettings
from gateway.store import Store, open_store
from gateway.store.records import Room
from tests.fixtures.processes import free_port
from tests.fixtures.redis_server import RedisProcess
from tests.fixtures.smtp import Mailbox, _Handler
from tests.integration.test_outbox import (
    Seen,
    invitations,
    mailer,
    make_room,
    outbox,
    outbox_redis,
    sealed_of,
)

pytestmark = pytest.mark.slow

__all__ = ["outbox_redis"]  # the fixture store_url asks for by name

# Ten a pass (the burst), far beyond it a minute; a retry an hour after a 451.
PACED = OutboxSettings(per_minute=100_000, burst=10, retry_seconds=3600, retry_max_seconds=3600)


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisProcess = request.getfixturevalue("outbox_redis")
    client = redis.Redis.from_url(server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return server.url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


class Greylisting(_Handler):
    """Answers RCPT TO with 451 the first time it sees an address tagged "grey", as a
    greylisting server does, and takes it the next time; counts the attempts at each address."""

    def __init__(self, mailbox: Mailbox) -> None:
        super().__init__(mailbox)
        self.tried: dict[str, int] = {}

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        self.tried[address] = self.tried.get(address, 0) + 1
        if ".grey" in address and self.tried[address] == 1:
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]  # aiosmtpd's Envelope
        return "250 OK"


class Holding(_Handler):
    """Holds each RCPT TO until the test lets it go, then answers `answer`: the SMTP exchange
    in flight while the test acts."""

    def __init__(self, mailbox: Mailbox, answer: str) -> None:
        super().__init__(mailbox)
        self.answer = answer
        self.entered = threading.Event()
        self.release = threading.Event()
        self.tried = 0

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        self.tried += 1
        self.entered.set()
        # The server's own loop, in its thread: wait without holding it.
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        if self.answer.startswith("250"):
            envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]  # aiosmtpd's Envelope
        return self.answer


@pytest.fixture
def greylisting() -> Iterator[tuple[int, Greylisting]]:
    handler = Greylisting(Mailbox())
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, handler
    controller.stop()


def received(handler: _Handler) -> list[str]:
    mailbox: Mailbox = handler._mailbox  # the test's own handler
    return [to for message in mailbox.messages for to in message.rcpt_tos]


async def test_invitations_waiting_for_a_retry_do_not_hold_up_newer_ones_of_their_room(
    store: Store, greylisting: tuple[int, Greylisting]
) -> None:
    port, handler = greylisting
    room = await make_room(store)
    box = outbox(store, mailer(port), PACED)
    now = time.time()
    grey = invitations(room, 10, tag="grey")
    await box.enqueue(room, grey, now=now)
    assert await box.send_due(now) == 0
    assert len(await store.index_members(RETRYING)) == 10
    (new,) = invitations(room, 1, tag="new")
    await box.enqueue(room, [new], now=now + 1)
    assert await box.send_due(now + 2) == 1
    assert received(handler) == [new.address]
    # Their hour come, the ten go.
    assert await box.send_due(now + 3601) == 10
    assert sorted(received(handler)) == sorted([new.address] + [i.address for i in grey])
    assert await store.index_members(RETRYING) == []


async def test_invitations_waiting_for_a_retry_do_not_hold_up_other_rooms(
    store: Store, greylisting: tuple[int, Greylisting]
) -> None:
    port, handler = greylisting
    rooms = [await make_room(store) for _ in range(10)]
    box = outbox(store, mailer(port), PACED)
    now = time.time()
    for number, room in enumerate(rooms):
        await box.enqueue(room, invitations(room, 1, tag=f"grey{number}"), now=now)
    assert await box.send_due(now) == 0
    fresh = await make_room(store)
    new = [invitations(rooms[0], 1, tag="new")[0], invitations(fresh, 1, tag="new")[0]]
    await box.enqueue(rooms[0], new[:1], now=now + 1)
    await box.enqueue(fresh, new[1:], now=now + 1)
    assert await box.send_due(now + 2) == 2
    assert sorted(received(handler)) == sorted(i.address for i in new)


async def test_an_invitation_queued_before_retries_were_kept_apart_is_put_apart(
    store: Store, greylisting: tuple[int, Greylisting]
) -> None:
    port, handler = greylisting
    room = await make_room(store)
    box = outbox(store, mailer(port), PACED)
    now = time.time()
    await box.enqueue(room, invitations(room, 10, tag="grey"), now=now)
    assert await box.send_due(now) == 0
    # As an older version left them: back in the room's queue, not yet due.
    for member in await store.index_members(RETRYING):
        await store.index_remove(RETRYING, member)
        await store.index_add(QUEUE + room.name, member.split(":")[1], 3600)
    (new,) = invitations(room, 1, tag="new")
    await box.enqueue(room, [new], now=now + 1)
    # The first pass reads the ten and puts them apart; the next sends the new one.
    await box.send_due(now + 2)
    assert len(await store.index_members(RETRYING)) == 10
    await box.send_due(now + 3)
    assert received(handler) == [new.address]


@pytest.mark.parametrize(
    "member",
    ["", "x", "notanumber:abc:room", "123", "123:", "123:abc", "123::room", "1e3:abc:room"],
    ids=["empty", "word", "time", "time-only", "no-id", "no-room", "empty-id", "float"],
)
async def test_a_malformed_retry_entry_is_dropped(store: Store, member: str) -> None:
    box = outbox(store, mailer(1))
    await store.index_add(RETRYING, member, 3600)
    assert await box.send_due(time.time()) == 0
    assert await store.index_members(RETRYING) == []


async def exchange_in_flight(
    store: Store, answer: str, max_attempts: int
) -> tuple[Holding, Outbox, Room, str, str, asyncio.Task[int], Seen]:
    """An invitation whose SMTP exchange is under way, held at RCPT TO until released."""
    handler = Holding(Mailbox(), answer)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.controller = controller  # type: ignore[attr-defined]  # stopped by the test
    settings = OutboxSettings(
        per_minute=100_000,
        burst=10,
        retry_seconds=3600,
        retry_max_seconds=3600,
        max_attempts=max_attempts,
    )
    seen = Seen()
    box = outbox(store, mailer(controller.port), settings, seen=seen)
    room = await make_room(store)
    now = time.time()
    queued = await box.enqueue(room, invitations(room, 1), now=now)
    task = asyncio.create_task(box.send_due(now))
    entered = await asyncio.to_thread(handler.entered.wait, 30)
    assert entered, "the SMTP exchange never began"
    return handler, box, room, queued.batch, queued.invite_ids[0], task, seen


@pytest.mark.parametrize("action", ["revoke", "revoke_batch", "forget_room"])
@pytest.mark.parametrize(
    ("answer", "max_attempts"),
    [("451 4.7.1 Try again later", 3), ("451 4.7.1 Try again later", 1), ("250 OK", 3)],
    ids=["451-retried", "451-last-attempt", "250"],
)
async def test_revoked_while_its_email_is_with_the_server(
    store: Store, action: str, answer: str, max_attempts: int
) -> None:
    handler, box, room, batch, invite_id, task, seen = await exchange_in_flight(
        store, answer, max_attempts
    )
    try:
        if action == "revoke":
            assert await box.revoke(invite_id)
        elif action == "revoke_batch":
            assert await box.revoke_batch(room.name, batch) == 1
        else:
            assert await store.delete_room(room.name, time.time())
            assert await box.forget_room(room.name) == 1
        handler.release.set()
        await task
        # The sender's stale copy did not bring the address back, nor the item to the queue.
        assert await sealed_of(store, invite_id) is None
        assert await store.index_members(RETRYING) == []
        assert await store.index_members(QUEUE + room.name) == []
        progress = await box.progress(batch)
        assert progress is not None and (progress.waiting, progress.retryable) == (0, 0)
        # What revoke or forget_room wrote stands.
        if action != "forget_room":
            assert await box.batch_items(room.name, batch) == [(invite_id, "revoked")]
            assert await box.retry_failed(room.name, batch, now=time.time()) == 0
            delivered = answer.startswith("250")
            # Sent after all: counted sent and revoked since; never remembered as seen.
            assert (progress.sent, progress.revoked) == (int(delivered), 1)
        else:
            await store.create_room(room)
            assert await box.batch_items(room.name, batch) == [(invite_id, "failed")]
        assert seen.calls == []
        # Never tried again, even once its retry would have come.
        assert await box.send_due(time.time() + 7200) == 0
        assert handler.tried == 1
    finally:
        handler.release.set()
        if not task.done():
            await task
        handler.controller.stop()  # type: ignore[attr-defined]  # set by exchange_in_flight
