"""Registrations with host review (gateway/admission/registrations.py) on both stores: register,
confirm by code, update, approve and deny, the flags hosts judge by, paging, refusals of bad
input and bad codes, and that nothing of a registrant is left once it is answered or kept no
longer. Codes are read from a recording mailer (the SMTP path has its own tests)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence

import pytest
import redis.asyncio

from gateway.admission.challenge import ChallengeFailed
from gateway.admission.email_codes import EmailCodes, InvalidAddress
from gateway.admission.flood import ChallengeRequired, FloodGuard, Proof
from gateway.admission.invitations import BatchProgress, Invitation, Queued, mail_address_key
from gateway.admission.limits import RateLimiter
from gateway.admission.outbox import SEAL_PURPOSE as OUTBOX_SEAL_PURPOSE
from gateway.admission.registrations import (
    SEAL_PURPOSE,
    Confirmed,
    Registering,
    RegistrationClosed,
    RegistrationCodeExpired,
    RegistrationCodeWrong,
    Registrations,
    RegistrationsFull,
    RegistrationState,
    RegistrationUnknown,
    TooManyWrongRegistrationCodes,
    network_of_registrant,
)
from gateway.admission.sealing import Sealer
from gateway.errors import InvalidInput, RateLimited, StoreUnavailable
from gateway.i18n import ENGLISH, SIMPLIFIED, Language
from gateway.metrics import Metrics
from gateway.settings import (
    ChallengeSettings,
    EmailCodeSettings,
    Rate,
    RateSettings,
    RegistrationSettings,
)
from gateway.store import Store
from gateway.store.memory import _SWEEP_EVERY, MemoryStore
from gateway.store.records import Invite, RecordKind, Role, Room, RoomPolicy
from gateway.store.redis import RedisStore
from tests.fixtures.proof_of_work import solve

HOUR = 3600.0
KEY = b"p" * 32


class Mailbox:
    """A CodeMailer that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []

    async def send(self, to: str, subject: str, body: str, *, language: str = "en") -> None:
        self.sent.append((to, subject, body, language))

    def code_for(self, address: str) -> str:
        bodies = [body for to, _, body, _ in self.sent if to == address]
        assert bodies, "no mail to that address"
        found = re.search(r"^\s+(\d{6,8})$", bodies[-1], re.MULTILINE)
        assert found
        return found.group(1)


class Queue:
    """An InvitationQueue that keeps what it is given (each call's batch and invitations);
    `failing` makes the next calls raise, as a queue whose store is down does."""

    def __init__(self) -> None:
        self.made: list[tuple[str, Invitation]] = []
        self.failing = 0

    async def enqueue(
        self, room: Room, invitations: Sequence[Invitation], *, now: float, batch: str | None = None
    ) -> Queued:
        # Another approval may run meanwhile, as it may between a real queue's writes.
        await asyncio.sleep(0)
        if self.failing:
            self.failing -= 1
            raise StoreUnavailable()
        batch = batch or secrets.token_hex(8)
        self.made += [(batch, invitation) for invitation in invitations]
        return Queued(batch, tuple(secrets.token_hex(8) for _ in invitations))

    async def progress(self, batch: str) -> BatchProgress | None:
        return None

    def of(self, batch: str | None) -> list[Invitation]:
        return [invitation for made, invitation in self.made if made == batch]


def generous() -> RateSettings:
    wide = Rate(per_minute=1_000_000, burst=100_000)
    return RateSettings(
        address=wide, network=wide, room=wide, identity=wide, invite=wide, gate=wide
    )


@dataclasses.dataclass
class Desk:
    store: Store
    registrations: Registrations
    mailbox: Mailbox
    limiter: RateLimiter
    queue: Queue = dataclasses.field(default_factory=Queue)

    async def approve(
        self, room: Room | str, ids: Sequence[str], actor: str, now: float
    ) -> list[Invitation]:
        """Approve through the one way there is; the invitations this call queued."""
        approved = await self.registrations.approve(room, ids, actor, now, queue=self.queue)
        return self.queue.of(approved.batch) if approved.ids else []

    async def register(
        self,
        room: Room,
        name: str,
        address: str,
        note: str = "",
        *,
        client: str | None = None,
        language: Language = ENGLISH,
        now: float | None = None,
    ) -> Registering:
        return await self.registrations.register(
            room,
            name,
            address,
            note,
            client or fresh_client(),
            time.time() if now is None else now,
            language=language,
        )

    async def confirm(self, room: Room, started: Registering, address: str) -> Confirmed:
        await self.registrations.drain()
        code = self.mailbox.code_for(address)
        return await self.registrations.confirm(
            room, started.id, started.secret, code, time.time(), queue=self.queue
        )

    async def registered(
        self,
        room: Room,
        name: str,
        address: str,
        note: str = "",
        *,
        client: str | None = None,
        language: Language = ENGLISH,
    ) -> Confirmed:
        started = await self.register(room, name, address, note, client=client, language=language)
        return await self.confirm(room, started, address.strip().lower())


def make_desk(
    store: Store,
    *,
    rates: RateSettings | None = None,
    flood: bool = False,
    codes: EmailCodeSettings | None = None,
    **settings: int,
) -> Desk:
    limiter = RateLimiter(store, rates or generous(), Metrics())
    guard = None
    if flood:
        challenge = ChallengeSettings(base_difficulty=4, max_difficulty=4)
        guard = FloodGuard(store, limiter, challenge, b"s" * 32, Metrics())
    mailbox = Mailbox()
    registrations = Registrations(
        store,
        RegistrationSettings(**settings),
        key=KEY,
        limiter=limiter,
        mailer=mailbox,
        flood=guard,
        codes=codes,
    )
    return Desk(store, registrations, mailbox, limiter)


def make_room(**changes: object) -> Room:
    room = Room(
        name=f"reg-{secrets.token_hex(5)}",
        title="Annual conference",
        created_at=time.time(),
        hosts=("host-a",),
        policy=RoomPolicy(invite=True),
        registration=True,
    )
    return dataclasses.replace(room, **changes)


async def stored_room(store: Store, **changes: object) -> Room:
    room = make_room(**changes)
    await store.create_room(room)
    return room


_clients = iter(range(1, 1_000_000))


def fresh_client() -> str:
    """An address of a network of its own (a /24 no other test address is in)."""
    n = next(_clients)
    return f"10.{n // 256 % 256}.{n % 256}.7"


def fresh_address(domain: str = "example.net") -> str:
    return f"person-{secrets.token_hex(4)}@{domain}"


@pytest.fixture
def desk(store: Store) -> Desk:
    return make_desk(store)


# What the store holds, every key and value, to look for a registrant's details in: in clear
# (what a dump shows), and with the registrations' sealed parts opened (what is kept at all).

SEALED = Sealer(KEY, SEAL_PURPOSE)
SEALED_RECORD = re.compile(r"registration:(?:record|pending):[0-9a-f]{32}")


def opened(key: str, raw: str | None) -> str:
    """A registration's record (or one awaiting its code) with its sealed part opened."""
    if raw is None:
        return ""
    found = SEALED_RECORD.search(key)
    if found is None:
        return raw
    details = SEALED.open(found.group(0), json.loads(raw)["sealed"])
    assert isinstance(details, dict), key
    return raw + json.dumps(details, ensure_ascii=False)


async def store_text(store: Store, request: pytest.FixtureRequest) -> str:
    text = await clear_text(store, request)
    keys = sorted(set(SEALED_RECORD.findall(text)))
    return "\n".join([text, *[opened(key, await store.get_value(key)) for key in keys]])


async def clear_text(store: Store, request: pytest.FixtureRequest) -> str:
    if isinstance(store, RedisStore):
        client = redis.asyncio.Redis.from_url(
            request.getfixturevalue("contract_redis_url"), decode_responses=True
        )
        parts: list[str] = []
        try:
            async for key in client.scan_iter(count=1000):
                parts.append(key)
                kind = await client.type(key)
                if kind == "string":
                    parts.append(str(await client.get(key)))
                elif kind == "hash":
                    parts.append(repr(await client.hgetall(key)))
                elif kind == "zset":
                    parts.append(repr(await client.zrange(key, 0, -1)))
                elif kind == "set":
                    parts.append(repr(await client.smembers(key)))
                elif kind == "list":
                    parts.append(repr(await client.lrange(key, 0, -1)))
                elif kind == "stream":
                    parts.append(repr(await client.xrange(key)))
                else:
                    parts.append(f"<{kind}>")
        finally:
            await client.aclose()
        return "\n".join(parts)
    assert isinstance(store, MemoryStore)
    return repr(vars(store))


async def swept(store: Store) -> None:
    """Let the memory store drop what has lapsed, as a running store does every so many calls
    (a lapsed value is never read back either way; here it must be gone)."""
    if isinstance(store, MemoryStore):
        for _ in range(_SWEEP_EVERY):
            await store.get_value("sweep")


async def wait_until_gone(
    store: Store, request: pytest.FixtureRequest, secrets_: list[str], seconds: float = 10
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        await swept(store)
        text = await store_text(store, request)
        left = [s for s in secrets_ if s in text]
        if not left:
            return
        assert time.monotonic() < deadline, f"still stored: {len(left)} of {len(secrets_)}"
        await asyncio.sleep(0.1)


# Registering and confirming


async def test_a_registration_confirmed_by_its_code_waits_for_the_hosts(desk: Desk) -> None:
    room = await stored_room(desk.store)
    address = fresh_address("Example.ORG")
    started = await desk.register(room, "  Ada   Lovelace ", f"  {address.upper()} ", "Speaker")
    await desk.registrations.drain()
    to, subject, body, language = desk.mailbox.sent[-1]
    assert to == address.lower() and language == "en"
    assert "Annual conference" in subject and "registration" in body
    # Nothing counts before the code.
    empty = await desk.registrations.page(room.name, now=time.time())
    assert empty.total == 0 and not empty.items
    confirmed = await desk.confirm(room, started, address.lower())
    registration = confirmed.registration
    assert not confirmed.approved and not desk.queue.made
    assert registration.state is RegistrationState.WAITING
    assert (registration.name, registration.note, registration.domain) == (
        "Ada Lovelace",
        "Speaker",
        "example.org",
    )
    assert not registration.flags
    assert registration.address_key == mail_address_key(KEY, address.lower())
    listed = await desk.registrations.page(room.name, now=time.time())
    assert [item.id for item in listed.items] == [registration.id]
    assert listed.counts["waiting"] == 1
    assert address.lower() not in repr(listed)


async def test_the_code_mail_is_written_in_the_registrants_language(desk: Desk) -> None:
    room = await stored_room(desk.store)
    address = fresh_address()
    started = await desk.register(room, "李雷", address, "", language=SIMPLIFIED)
    await desk.registrations.drain()
    assert desk.mailbox.sent[-1][3] == SIMPLIFIED.tag
    confirmed = await desk.confirm(room, started, address)
    assert confirmed.registration.language == SIMPLIFIED.tag
    (invitation,) = await desk.approve(room.name, [confirmed.registration.id], "h", 1)
    assert invitation.language == SIMPLIFIED.tag and invitation.name == "李雷"


async def test_registering_again_updates_the_registration_never_adds_one(desk: Desk) -> None:
    room = await stored_room(desk.store)
    address = fresh_address()
    first = (await desk.registered(room, "Grace Hopper", address, "first")).registration
    # The same address however it is written.
    again = await desk.registered(room, "Grace M. Hopper", address.upper(), "second")
    assert again.registration.id == first.id
    assert again.registration.updated
    assert (again.registration.name, again.registration.note) == ("Grace M. Hopper", "second")
    listed = await desk.registrations.page(room.name, now=time.time())
    assert listed.total == 1 and listed.items[0].updated
    assert listed.counts["updated"] == 1


async def test_the_same_address_has_one_registration_in_each_room(desk: Desk) -> None:
    one, other = await stored_room(desk.store), await stored_room(desk.store)
    address = fresh_address()
    a = (await desk.registered(one, "Ada", address)).registration
    b = (await desk.registered(other, "Ada", address)).registration
    assert a.id != b.id
    assert (await desk.registrations.page(one.name, now=time.time())).total == 1


async def test_racing_confirmations_of_one_address_make_one_registration(desk: Desk) -> None:
    room = await stored_room(desk.store)
    address = fresh_address()
    starts = [await desk.register(room, f"Twin {n}", address) for n in range(2)]
    await desk.registrations.drain()
    codes = []
    for to, _, body, _ in desk.mailbox.sent:
        found = re.search(r"^\s+(\d{6})$", body, re.MULTILINE)
        assert to == address and found
        codes.append(found.group(1))
    answers = await asyncio.gather(
        *(
            desk.registrations.confirm(room, started.id, started.secret, code, time.time())
            for started, code in zip(starts, codes, strict=True)
        )
    )
    assert len({answer.registration.id for answer in answers}) == 1
    assert (await desk.registrations.page(room.name, now=time.time())).total == 1


async def test_an_answered_registration_keeps_its_answer_when_registered_again(
    desk: Desk,
) -> None:
    room = await stored_room(desk.store)
    approved_address, denied_address = fresh_address(), fresh_address()
    approved = (await desk.registered(room, "Ada", approved_address)).registration
    denied = (await desk.registered(room, "Troll", denied_address)).registration
    assert len(await desk.approve(room.name, [approved.id], "Hilde", time.time()))
    assert await desk.registrations.deny(room.name, [denied.id], "Hilde", time.time()) == 1
    again = (await desk.registered(room, "Ada Again", approved_address)).registration
    assert (again.id, again.state, again.name) == (approved.id, RegistrationState.APPROVED, "Ada")
    troll = (await desk.registered(room, "Not A Troll", denied_address, "let me in")).registration
    assert (troll.id, troll.state, troll.name) == (denied.id, RegistrationState.DENIED, "Troll")
    # Still no address kept, and nothing to approve.
    assert await desk.approve(room.name, [denied.id, approved.id], "H", 1) == []
    listed = await desk.registrations.page(room.name, now=time.time())
    assert listed.total == 2 and listed.counts["approved"] == 1 and listed.counts["denied"] == 1


# Approving and denying


async def test_approving_moves_the_address_into_the_invitation_and_out_of_the_store(
    desk: Desk, request: pytest.FixtureRequest
) -> None:
    room = await stored_room(desk.store)
    address = fresh_address("approve.example")
    registration = (await desk.registered(room, "Ada", address, "A note")).registration
    assert address in await store_text(desk.store, request)
    invitations = await desk.approve(
        room.name, [registration.id, registration.id, "nonsense"], "Hilde", time.time()
    )
    assert len(invitations) == 1
    invitation = invitations[0]
    assert (invitation.room, invitation.name, invitation.address) == (room.name, "Ada", address)
    assert (invitation.role, invitation.origin) == (Role.ATTENDEE, "registration")
    assert address not in repr(invitation)
    assert address not in await store_text(desk.store, request)
    kept = await desk.registrations.get(room.name, registration.id)
    assert kept is not None and kept.state is RegistrationState.APPROVED
    assert (kept.name, kept.note, kept.domain, kept.answered_by) == (
        "Ada",
        "A note",
        "approve.example",
        "Hilde",
    )
    # Approving again invites nobody again.
    assert await desk.approve(room.name, [registration.id], "Hilde", 1) == []


async def test_denying_drops_the_address(desk: Desk, request: pytest.FixtureRequest) -> None:
    room = await stored_room(desk.store)
    address = fresh_address("deny.example")
    registration = (await desk.registered(room, "Troll", address)).registration
    assert await desk.registrations.deny(room, [registration.id], "Hilde", time.time()) == 1
    assert await desk.registrations.deny(room, [registration.id], "Hilde", time.time()) == 0
    assert address not in await store_text(desk.store, request)
    kept = await desk.registrations.get(room.name, registration.id)
    assert kept is not None and kept.state is RegistrationState.DENIED


async def test_racing_approvals_invite_once(desk: Desk) -> None:
    room = await stored_room(desk.store)
    registration = (await desk.registered(room, "Ada", fresh_address())).registration
    answers = await asyncio.gather(
        *(desk.approve(room.name, [registration.id], f"host {n}", time.time()) for n in range(5))
    )
    assert sum(len(invitations) for invitations in answers) == 1


async def test_a_queue_failing_leaves_the_person_approved_and_pending_never_lost(
    desk: Desk, request: pytest.FixtureRequest
) -> None:
    """Catches an approval that erases the address before the invitation is queued: the queue
    fails, and the next approval in the room (of anyone, or no one) still invites the person."""
    room = await stored_room(desk.store)
    address = fresh_address("pending.example")
    registration = (await desk.registered(room, "Ada", address)).registration
    other = (await desk.registered(room, "Bob", fresh_address())).registration
    desk.queue.failing = 1
    with pytest.raises(StoreUnavailable):
        await desk.approve(room.name, [registration.id], "Hilde", time.time())
    assert not desk.queue.made
    # Approved, its invitation pending: the address is kept for it, and nobody answers it again.
    kept = await desk.registrations.get(room.name, registration.id)
    assert kept is not None and kept.state is RegistrationState.APPROVED and kept.inviting
    assert address in await store_text(desk.store, request)
    assert await desk.registrations.deny(room.name, [registration.id], "H", time.time()) == 0
    invited = await desk.approve(room.name, [other.id], "Hilde", time.time())
    assert sorted(invitation.name for invitation in invited) == ["Ada", "Bob"]
    assert [i.address for i in invited if i.name == "Ada"] == [address]
    assert address not in await store_text(desk.store, request)
    done = await desk.registrations.get(room.name, registration.id)
    assert done is not None and not done.inviting and done.answered_by == "Hilde"
    assert await desk.approve(room.name, [registration.id], "Hilde", time.time()) == []
    assert len(desk.queue.made) == 2


class Failing(MemoryStore):
    """A memory store whose writes of records `failing` picks fail, `times` times."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: Callable[[str, str], bool] = lambda key, value: False
        self.times = 0

    async def put_value(self, key: str, value: str, ttl_seconds: float) -> None:
        if self.times and self.failing(key, value):
            self.times -= 1
            raise StoreUnavailable()
        await super().put_value(key, value, ttl_seconds)


@pytest.mark.parametrize(
    ("step", "times"), [("marking-approved", 1), ("erasing-address", 1), ("erasing-address", 2)]
)
async def test_a_store_failing_half_way_through_an_approval_loses_nobody(
    step: str, times: int
) -> None:
    """The store fails as the registration is marked approved: it is still waiting, with its
    address, and answerable. It fails as the address is erased once the invitation is queued:
    once, and the approval tries again; twice, and the person is invited, the address kept
    until the meeting's retention, and no approval queues a second invitation meanwhile."""

    def picks(key: str, value: str) -> bool:
        if not key.startswith("registration:record:"):
            return False
        if step == "marking-approved":
            return '"inviting":true' in value
        return '"state":"approved"' in value and '"inviting":false' in value

    store = Failing()
    desk = make_desk(store)
    room = await stored_room(store)
    address = fresh_address()
    registration = (await desk.registered(room, "Ada", address)).registration
    store.failing, store.times = picks, times
    record = f"registration:record:{registration.id}"
    if (step, times) == ("erasing-address", 1):
        assert len(await desk.approve(room.name, [registration.id], "Hilde", time.time())) == 1
    else:
        with pytest.raises(StoreUnavailable):
            await desk.approve(room.name, [registration.id], "Hilde", time.time())
        found = await desk.registrations.get(room.name, registration.id)
        assert found is not None
        if step == "marking-approved":
            assert found.state is RegistrationState.WAITING and not desk.queue.made
        else:
            assert found.state is RegistrationState.APPROVED and found.inviting
            assert [invitation.address for _, invitation in desk.queue.made] == [address]
        await desk.approve(room.name, [registration.id], "Hilde", time.time())
    assert [invitation.address for _, invitation in desk.queue.made] == [address]
    done = await desk.registrations.get(room.name, registration.id)
    assert done is not None and done.state is RegistrationState.APPROVED
    assert (address in opened(record, await store.get_value(record))) is (times == 2)


async def test_racing_approvals_of_a_pending_registration_invite_once(desk: Desk) -> None:
    room = await stored_room(desk.store)
    registration = (await desk.registered(room, "Ada", fresh_address())).registration
    desk.queue.failing = 1
    with pytest.raises(StoreUnavailable):
        await desk.approve(room.name, [registration.id], "Hilde", time.time())
    answers = await asyncio.gather(
        *(desk.approve(room.name, [registration.id], f"host {n}", time.time()) for n in range(5))
    )
    assert sum(len(invitations) for invitations in answers) == 1
    assert len(desk.queue.made) == 1


async def test_a_registration_of_another_room_is_not_answered_here(desk: Desk) -> None:
    room, other = await stored_room(desk.store), await stored_room(desk.store)
    registration = (await desk.registered(other, "Ada", fresh_address())).registration
    assert await desk.approve(room.name, [registration.id], "H", 1) == []
    assert await desk.registrations.deny(room.name, [registration.id], "H", 1) == 0
    assert await desk.registrations.get(room.name, registration.id) is None


async def test_an_address_on_the_auto_approve_lists_is_approved_at_once(
    desk: Desk, request: pytest.FixtureRequest
) -> None:
    room = await stored_room(
        desk.store,
        auto_approve_domains=("Trusted.example",),
        auto_approve_emails=("Vip@elsewhere.example",),
    )
    for address in (fresh_address("trusted.example"), "vip@elsewhere.example"):
        confirmed = await desk.registered(room, "Welcome Person", address)
        assert confirmed.registration.state is RegistrationState.APPROVED
        assert confirmed.approved and desk.queue.made[-1][1].address == address
        assert address not in await store_text(desk.store, request)
    other = await desk.registered(room, "Someone Else", fresh_address("untrusted.example"))
    assert not other.approved and other.registration.state is RegistrationState.WAITING


# Flags


async def test_a_look_alike_of_a_hosts_name_is_flagged(desk: Desk) -> None:
    room = await stored_room(desk.store)
    now = time.time()
    host = Invite(
        id=f"inv-{secrets.token_hex(4)}",
        token_hash=secrets.token_hex(32),
        room=room.name,
        name="Hilde Host",
        role=Role.HOST,
        max_uses=1,
        uses=0,
        expires_at=now + HOUR,
        created_at=now,
    )
    await desk.store.add_invite(host)
    # A digit one for the l, a Cyrillic En for the H.
    fake_name = "H1lde \N{CYRILLIC CAPITAL LETTER EN}ost"
    fake = (await desk.registered(room, fake_name, fresh_address())).registration
    honest = (await desk.registered(room, "Someone Else", fresh_address())).registration
    assert fake.looks_like and not honest.looks_like
    listed = await desk.registrations.page(room.name, flag="looks_like", now=time.time())
    assert [item.id for item in listed.items] == [fake.id]


async def test_look_alike_registrants_are_flagged_both(desk: Desk) -> None:
    room = await stored_room(desk.store)
    first = (await desk.registered(room, "Rosa Luxemburg", fresh_address())).registration
    assert not first.looks_like
    second = (await desk.registered(room, "Rosa Luxernburg", fresh_address())).registration
    assert second.looks_like
    listed = await desk.registrations.page(room.name, flag="looks_like", now=time.time())
    assert {item.id for item in listed.items} == {first.id, second.id}


async def test_a_name_like_someone_in_the_room_now_is_flagged_on_the_page(desk: Desk) -> None:
    from tests.contract.test_store import make_admission

    room = await stored_room(desk.store)
    registration = (await desk.registered(room, "Clara Zetkin", fresh_address())).registration
    assert not registration.looks_like
    admission = make_admission(room.name, name="Clara Zetkin")
    await desk.store.add_admission(admission)
    listed = await desk.registrations.page(room.name, now=time.time())
    assert listed.items[0].looks_like and listed.counts["looks_like"] == 1


@pytest.mark.parametrize(
    "clients",
    [
        pytest.param(["203.0.113.5", "203.0.113.6", "203.0.113.200"], id="ipv4-one-24"),
        pytest.param(
            ["2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:1:ffff::9"], id="ipv6-one-48"
        ),
    ],
)
async def test_registrations_from_one_network_are_flagged_as_a_burst(
    store: Store, clients: list[str]
) -> None:
    desk = make_desk(store, burst_threshold=3)
    room = await stored_room(store)
    made = [
        (await desk.registered(room, f"Person {n}", fresh_address(), client=client)).registration
        for n, client in enumerate(clients)
    ]
    assert [r.burst for r in made] == [False, False, True]
    listed = await desk.registrations.page(room.name, flag="burst", now=time.time())
    # Every one of the burst, the earlier ones too.
    assert listed.total == 3 and listed.counts["burst"] == 3


async def test_registrations_from_many_networks_are_no_burst(store: Store) -> None:
    desk = make_desk(store, burst_threshold=3)
    room = await stored_room(store)
    clients = ["203.0.113.5", "198.51.100.5", "192.0.2.5", "2001:db8:1::1", "2001:db8:2::1"]
    for n, client in enumerate(clients):
        await desk.registered(room, f"Person {n}", fresh_address(), client=client)
    listed = await desk.registrations.page(room.name, now=time.time())
    assert listed.total == 5 and listed.counts["burst"] == 0


def test_a_registrants_network_is_a_24_or_a_48() -> None:
    assert network_of_registrant("203.0.113.77") == "203.0.113.0/24"
    assert network_of_registrant("[2001:db8:abcd:12::1]:443") == "2001:db8:abcd::/48"
    assert network_of_registrant("not an address") == "unknown"


async def test_an_address_or_domain_remembered_is_seen_before(desk: Desk) -> None:
    earlier = await stored_room(desk.store, series="conf-2026")
    room = await stored_room(desk.store, series="conf-2026")
    elsewhere = await stored_room(desk.store)
    known = fresh_address("known.example")
    await desk.registrations.remember(earlier, known.upper(), time.time())
    same = (await desk.registered(room, "Ada", known)).registration
    colleague = (await desk.registered(room, "Bea", fresh_address("known.example"))).registration
    stranger = (await desk.registered(room, "Cy", fresh_address("new.example"))).registration
    outside = (await desk.registered(elsewhere, "Ada", known)).registration
    assert (same.seen_address, same.seen_domain) == (True, True)
    assert (colleague.seen_address, colleague.seen_domain) == (False, True)
    assert (stranger.seen_address, stranger.seen_domain) == (False, False)
    assert (outside.seen_address, outside.seen_domain) == (False, False)
    listed = await desk.registrations.page(room.name, flag="seen_domain", now=time.time())
    assert {item.id for item in listed.items} == {same.id, colleague.id}


async def test_the_seen_index_holds_no_address(desk: Desk, request: pytest.FixtureRequest) -> None:
    room = await stored_room(desk.store)
    address = fresh_address("hidden-domain.example")
    await desk.registrations.remember(room, address, time.time())
    text = await store_text(desk.store, request)
    assert address not in text and "hidden-domain" not in text


async def test_an_email_code_admission_is_remembered_by_the_pipeline(store: Store) -> None:
    """Catches the gate not telling registrations of an address it admitted (the hook in
    AdmissionPipeline._admit)."""
    from gateway.admission.identity import Path, VerifiedIdentity
    from gateway.admission.pipeline import AdmissionPipeline

    desk = make_desk(store)
    limiter = desk.limiter
    flood = FloodGuard(store, limiter, ChallengeSettings(mode="off"), b"s" * 32, Metrics())
    pipeline = AdmissionPipeline(
        store,
        pseudonym_key=KEY,
        admission_ttl_seconds=3600,
        limiter=limiter,
        flood=flood,
        metrics=Metrics(),
        registrations=desk.registrations,
    )
    room = await stored_room(store, policy=RoomPolicy(invite=True, email_code=True))
    address = fresh_address("admitted.example")
    verified = VerifiedIdentity(
        path=Path.EMAIL, subject=address, name="Ada", email=address, email_verified=True
    )
    await pipeline.enter(verified, room, fresh_client(), time.time())
    registration = (await desk.registered(room, "Ada", address)).registration
    assert registration.seen_address and registration.seen_domain


# Paging


async def test_pages_filters_and_counts(store: Store) -> None:
    desk = make_desk(store)
    room = await stored_room(store)
    made = [
        (await desk.registered(room, f"Person {n}", fresh_address())).registration for n in range(7)
    ]
    await desk.registrations.deny(room.name, [made[0].id], "H", time.time())
    now = time.time()
    first = await desk.registrations.page(room.name, state="waiting", limit=4, now=now)
    second = await desk.registrations.page(room.name, state="waiting", offset=4, limit=4, now=now)
    assert first.total == second.total == 6
    assert [i.id for i in first.items + second.items] == [r.id for r in made[1:]]
    assert dict(first.states) == {"waiting": 6, "approved": 0, "denied": 1}
    everything = await desk.registrations.page(room.name, now=now)
    assert everything.total == 7 and len(everything.items) == 7
    denied = await desk.registrations.page(room.name, state=RegistrationState.DENIED, now=now)
    assert [i.id for i in denied.items] == [made[0].id]
    # Never more than a page, however much is asked for.
    huge = await desk.registrations.page(room.name, limit=10_000, now=now)
    assert huge.limit == 100
    with pytest.raises(InvalidInput):
        await desk.registrations.page(room.name, state="pending", now=now)
    with pytest.raises(InvalidInput):
        await desk.registrations.page(room.name, flag="evil", now=now)


async def test_a_room_takes_no_more_than_its_limit(store: Store) -> None:
    desk = make_desk(store, max_per_room=2)
    room = await stored_room(store)
    first = fresh_address()
    await desk.registered(room, "One", first)
    await desk.registered(room, "Two", fresh_address())
    with pytest.raises(RegistrationsFull):
        await desk.registered(room, "Three", fresh_address())
    # An update is no new registration.
    again = await desk.registered(room, "One Again", first)
    assert again.registration.updated
    assert (await desk.registrations.page(room.name, now=time.time())).total == 2


# Refusals


async def test_a_room_without_registration_takes_none(desk: Desk) -> None:
    room = await stored_room(desk.store, registration=False)
    with pytest.raises(RegistrationClosed):
        await desk.register(room, "Ada", fresh_address())
    assert not desk.mailbox.sent


async def test_a_meeting_long_over_takes_no_registration(store: Store) -> None:
    desk = make_desk(store, kept_after_meeting_seconds=60)
    room = await stored_room(store, ends_at=time.time() - 120)
    with pytest.raises(RegistrationClosed):
        await desk.register(room, "Ada", fresh_address())


async def test_registration_switched_off_before_the_code_counts_nothing(desk: Desk) -> None:
    room = await stored_room(desk.store)
    address = fresh_address()
    started = await desk.register(room, "Ada", address)
    closed = dataclasses.replace(room, registration=False)
    await desk.registrations.drain()
    with pytest.raises(RegistrationClosed):
        await desk.registrations.confirm(
            closed, started.id, started.secret, desk.mailbox.code_for(address), time.time()
        )


BAD_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("Ada\x00Lovelace", id="nul"),
    pytest.param("Ada\nLovelace", id="newline"),
    pytest.param("Ada\u202eecalevoL", id="bidi-override"),
    pytest.param("Ada\u200b", id="zero-width"),
    pytest.param("A" * 65, id="over-long"),
    pytest.param("a" * 64, id="id-shaped"),
    pytest.param("\u3164\u3164", id="blank-letters"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_name_that_cannot_be_shown_is_refused(
    desk: Desk, name: str, request: pytest.FixtureRequest
) -> None:
    room = await stored_room(desk.store)
    address = fresh_address()
    with pytest.raises(InvalidInput):
        await desk.register(room, name, address)
    await desk.registrations.drain()
    assert not desk.mailbox.sent
    assert address not in await store_text(desk.store, request)


BAD_ADDRESSES = [
    pytest.param("", id="empty"),
    pytest.param("no-at-sign", id="no-at"),
    pytest.param("Ada <ada@example.org>", id="display-name"),
    pytest.param('"quoted"@example.org', id="quoted"),
    pytest.param("ada@[192.0.2.1]", id="literal"),
    pytest.param("ada@localhost", id="no-tld"),
    pytest.param("ada\n@example.org", id="newline"),
    pytest.param("ada@exa\u202emple.org", id="bidi-override"),
    pytest.param("a" * 65 + "@example.org", id="over-long-local"),
    pytest.param("a@" + "b" * 250 + ".org", id="over-long"),
]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
async def test_an_address_a_code_cannot_go_to_is_refused(desk: Desk, address: str) -> None:
    room = await stored_room(desk.store)
    with pytest.raises(InvalidAddress):
        await desk.register(room, "Ada", address)
    await desk.registrations.drain()
    assert not desk.mailbox.sent


BAD_NOTES = [
    pytest.param("line\x07bell", id="control"),
    pytest.param("two\nlines", id="newline"),
    pytest.param("abc\u202edef", id="bidi-override"),
    pytest.param("abc\u2066def", id="bidi-isolate"),
    pytest.param("x" * 501, id="over-long"),
    pytest.param("\ue000", id="private-use"),
]


@pytest.mark.parametrize("note", BAD_NOTES)
async def test_a_note_that_cannot_be_shown_is_refused(desk: Desk, note: str) -> None:
    room = await stored_room(desk.store)
    with pytest.raises(InvalidInput):
        await desk.register(room, "Ada", fresh_address(), note)
    await desk.registrations.drain()
    assert not desk.mailbox.sent


async def test_an_empty_note_and_one_at_the_limit_are_taken(store: Store) -> None:
    desk = make_desk(store, max_note_chars=20)
    room = await stored_room(store)
    empty = (await desk.registered(room, "Ada", fresh_address(), "")).registration
    full = (await desk.registered(room, "Bea", fresh_address(), "说" * 20)).registration
    assert (empty.note, full.note) == ("", "说" * 20)
    with pytest.raises(InvalidInput):
        await desk.register(room, "Cy", fresh_address(), "说" * 21)


# Codes


async def registering(desk: Desk) -> tuple[Room, Registering, str, str]:
    room = await stored_room(desk.store)
    address = fresh_address()
    started = await desk.register(room, "Ada", address)
    await desk.registrations.drain()
    return room, started, address, desk.mailbox.code_for(address)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_a_wrong_code_may_be_tried_again_then_the_right_one_counts(desk: Desk) -> None:
    room, started, _, code = await registering(desk)
    with pytest.raises(RegistrationCodeWrong) as refused:
        await desk.registrations.confirm(room, started.id, started.secret, wrong(code), 1)
    assert refused.value.can_retry
    for malformed in ("", "12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16"):
        with pytest.raises(RegistrationCodeWrong):
            await desk.registrations.confirm(room, started.id, started.secret, malformed, 1)
    # Spaces and dashes a person types are not part of the code.
    spaced = f"{code[:3]} - {code[3:]}"
    confirmed = await desk.registrations.confirm(
        room, started.id, started.secret, spaced, time.time()
    )
    assert confirmed.registration.state is RegistrationState.WAITING


async def test_a_code_works_once(desk: Desk) -> None:
    room, started, _, code = await registering(desk)
    await desk.registrations.confirm(room, started.id, started.secret, code, time.time())
    with pytest.raises(RegistrationUnknown) as refused:
        await desk.registrations.confirm(room, started.id, started.secret, code, time.time())
    assert not refused.value.can_retry


async def test_too_many_wrong_codes_end_the_registration(store: Store) -> None:
    desk = make_desk(store, codes=EmailCodeSettings(max_attempts=3))
    room, started, _, code = await registering(desk)
    for _ in range(2):
        with pytest.raises(RegistrationCodeWrong):
            await desk.registrations.confirm(room, started.id, started.secret, wrong(code), 1)
    with pytest.raises(TooManyWrongRegistrationCodes) as refused:
        await desk.registrations.confirm(room, started.id, started.secret, wrong(code), 1)
    assert not refused.value.can_retry
    with pytest.raises(RegistrationUnknown):
        await desk.registrations.confirm(room, started.id, started.secret, code, time.time())
    assert (await desk.registrations.page(room.name, now=time.time())).total == 0


async def test_guesses_racing_past_the_cap_do_not_let_the_right_code_through(
    store: Store,
) -> None:
    """Catches a cap that holds only for guesses made one after another: attempts counted by
    guesses still in flight (here counted directly) refuse even the right code."""
    desk = make_desk(store, codes=EmailCodeSettings(max_attempts=3))
    room, started, _, code = await registering(desk)
    for _ in range(3):
        await store.bump_value(f"registration:tries:{started.id}", HOUR)
    with pytest.raises(TooManyWrongRegistrationCodes):
        await desk.registrations.confirm(room, started.id, started.secret, code, time.time())
    assert (await desk.registrations.page(room.name, now=time.time())).total == 0


async def test_an_expired_code_counts_nothing(desk: Desk) -> None:
    room, started, _, code = await registering(desk)
    later = started.expires_at + 1
    with pytest.raises(RegistrationCodeExpired):
        await desk.registrations.confirm(room, started.id, started.secret, code, later)
    with pytest.raises(RegistrationUnknown):
        await desk.registrations.confirm(room, started.id, started.secret, code, time.time())


async def test_only_the_browser_that_registered_can_confirm(desk: Desk) -> None:
    room, started, _, code = await registering(desk)
    other_room = await stored_room(desk.store)
    forged = secrets.token_urlsafe(32)
    for registration_id, secret, where in (
        (started.id, forged, room),
        (started.id, "short", room),
        ("../" + started.id, started.secret, room),
        (secrets.token_hex(16), started.secret, room),
        (started.id, started.secret, other_room),
    ):
        with pytest.raises(RegistrationUnknown):
            await desk.registrations.confirm(where, registration_id, secret, code, time.time())
    confirmed = await desk.registrations.confirm(
        room, started.id, started.secret, code, time.time()
    )
    assert confirmed.registration.room == room.name


async def test_registration_codes_to_one_address_are_capped_apart_from_e_mail_codes(
    store: Store,
) -> None:
    settings = EmailCodeSettings(max_sends_per_address=3)
    desk = make_desk(store, codes=settings)
    room = await stored_room(store)
    email_room = await stored_room(
        store, policy=RoomPolicy(invite=False, email_code=True, allowed_domains=("example.net",))
    )
    email_codes = EmailCodes(store, settings, key=KEY, limiter=desk.limiter, mailer=desk.mailbox)
    address = fresh_address()
    # Past the cap a registration is answered as any other, and no code goes.
    for _ in range(4):
        await desk.register(room, "Ada", address)
    await desk.registrations.drain()
    assert len(desk.mailbox.sent) == 3
    # Registering did not use up the address's e-mail codes: a stranger cannot lock it out.
    await email_codes.request(email_room, address, fresh_client(), time.time())
    await email_codes.drain()
    assert len(desk.mailbox.sent) == 4
    # Another address is not held back.
    await desk.register(room, "Bea", fresh_address())


async def test_registering_is_rate_limited_per_address(store: Store) -> None:
    tight = Rate(per_minute=1, burst=2)
    wide = Rate(per_minute=1_000_000, burst=100_000)
    rates = RateSettings(
        address=wide, network=wide, room=wide, identity=tight, invite=wide, gate=wide
    )
    desk = make_desk(store, rates=rates)
    room = await stored_room(store)
    address = fresh_address()
    for _ in range(2):
        await desk.register(room, "Ada", address)
    with pytest.raises(RateLimited):
        await desk.register(room, "Ada", address.upper())


async def test_a_room_under_proof_of_work_asks_for_it(store: Store) -> None:
    desk = make_desk(store, flood=True)
    room = await stored_room(store, pow_required=True)
    client, address = fresh_client(), fresh_address()
    with pytest.raises(ChallengeRequired) as demanded:
        await desk.registrations.register(room, "Ada", address, "", client, time.time())
    challenge = demanded.value.challenge
    # An answer that does not solve it (at this low difficulty, one in 16 would).
    unsolved = next(
        str(n) for n in range(100) if not solves(challenge.token, challenge.difficulty, n)
    )
    with pytest.raises(ChallengeFailed):
        await desk.registrations.register(
            room, "Ada", address, "", client, time.time(), Proof(challenge.token, unsolved)
        )
    await desk.registrations.drain()
    assert not desk.mailbox.sent
    answer = solve(challenge.token, challenge.difficulty)
    await desk.registrations.register(
        room, "Ada", address, "", client, time.time(), Proof(challenge.token, answer)
    )
    await desk.registrations.drain()
    assert len(desk.mailbox.sent) == 1


def solves(token: str, difficulty: int, answer: int) -> bool:
    digest = hashlib.sha256(f"{token}:{answer}".encode()).digest()
    return int.from_bytes(digest, "big") >> (256 - difficulty) == 0


# Sealed


async def test_a_registrants_details_are_sealed_in_the_store(
    desk: Desk, request: pytest.FixtureRequest
) -> None:
    """Catches a registration, or one awaiting its code, that keeps a name, an address or a note
    in clear: a dump of the store shows none of them (the domain only), the pages all."""
    room = await stored_room(desk.store)
    tag = secrets.token_hex(4)
    waiting = (f"Zoë Wåiting{tag}", f"waiter{tag}@sealed{tag}.example", f"Nöte wait {tag}")
    awaiting = (f"李 Awaiting{tag}", f"awaiter{tag}@sealed{tag}.example", f"Nöte code {tag}")
    confirmed = (await desk.registered(room, *waiting)).registration
    await desk.register(room, *awaiting)
    clear = await clear_text(desk.store, request)
    details = [*waiting, *awaiting, f"waiter{tag}", f"awaiter{tag}"]
    escaped = [json.dumps(detail)[1:-1] for detail in details]
    assert [detail for detail in details + escaped if detail in clear] == []
    assert f"sealed{tag}.example" in clear
    kept = await store_text(desk.store, request)
    assert all(detail in kept for detail in details)
    shown = await desk.registrations.get(room.name, confirmed.id)
    assert shown is not None and (shown.name, shown.note) == (waiting[0], waiting[2])


def sealed_for(case: str, key: str, others: dict[str, str]) -> str:
    """A sealed part that does not open as the record under `key`'s."""
    details = {"name": "Mallory", "note": "", "address": "mallory@evil.example"}
    if case == "another registration's":
        return str(json.loads(others["record"])["sealed"])
    if case == "one awaiting a code's":
        return str(json.loads(others["pending"])["sealed"])
    if case == "an outbox item's key":
        return Sealer(KEY, OUTBOX_SEAL_PURPOSE).seal(key, details)
    if case == "another pseudonym key's":
        return Sealer(b"q" * 32, SEAL_PURPOSE).seal(key, details)
    if case == "without an address":
        return SEALED.seal(key, {"name": "Mallory", "note": ""})
    if case == "a number for a name":
        return SEALED.seal(key, {**details, "name": 7})
    if case == "not base64":
        return "not base64!"
    assert case == "too short"
    return "AAAA"


SEALED_CASES = [
    "another registration's",
    "one awaiting a code's",
    "an outbox item's key",
    "another pseudonym key's",
    "without an address",
    "a number for a name",
    "not base64",
    "too short",
]


async def sealed_others(desk: Desk, room: Room) -> dict[str, str]:
    other = (await desk.registered(room, "Other", fresh_address())).registration
    awaiting = await desk.register(room, "Awaiting", fresh_address())
    found = {
        "record": await desk.store.get_value(f"registration:record:{other.id}"),
        "pending": await desk.store.get_value(f"registration:pending:{awaiting.id}"),
    }
    return {kind: raw for kind, raw in found.items() if raw is not None}


@pytest.mark.parametrize("case", SEALED_CASES)
async def test_a_registration_whose_sealed_part_does_not_open_is_counted_and_invites_nobody(
    store: Store, case: str
) -> None:
    desk = make_desk(store)
    room = await stored_room(desk.store)
    registration = (await desk.registered(room, "Ada", fresh_address())).registration
    others = await sealed_others(desk, room)
    key = f"registration:record:{registration.id}"
    raw = await desk.store.get_value(key)
    assert raw is not None
    data = json.loads(raw)
    data["sealed"] = sealed_for(case, key, others)
    await desk.store.put_value(key, json.dumps(data), HOUR)
    desk.store.health.take_corrupt_counts()
    assert await desk.registrations.get(room.name, registration.id) is None
    page = await desk.registrations.page(room.name, now=time.time())
    assert registration.id not in {item.id for item in page.items}
    assert await desk.approve(room.name, [registration.id], "H", time.time()) == []
    assert await desk.registrations.deny(room.name, [registration.id], "H", time.time()) == 0
    counts = desk.store.health.take_corrupt_counts()
    assert counts.get(RecordKind.REGISTRATION, 0) >= 3


@pytest.mark.parametrize("case", SEALED_CASES)
async def test_one_awaiting_its_code_whose_sealed_part_does_not_open_counts_nothing(
    store: Store, case: str
) -> None:
    desk = make_desk(store)
    room = await stored_room(desk.store)
    address = fresh_address()
    started = await desk.register(room, "Ada", address)
    others = await sealed_others(desk, room)
    key = f"registration:pending:{started.id}"
    raw = await desk.store.get_value(key)
    assert raw is not None
    data = json.loads(raw)
    data["sealed"] = sealed_for(case, key, others)
    await desk.store.put_value(key, json.dumps(data), HOUR)
    desk.store.health.take_corrupt_counts()
    with pytest.raises(RegistrationUnknown):
        await desk.confirm(room, started, address)
    assert desk.store.health.take_corrupt_counts().get(RecordKind.REGISTRATION) == 1
    page = await desk.registrations.page(room.name, now=time.time())
    assert page.total == 1  # the other one only


# Corrupt records


async def test_a_registration_that_does_not_parse_is_counted_and_invites_nobody(
    desk: Desk,
) -> None:
    room = await stored_room(desk.store)
    registration = (await desk.registered(room, "Ada", fresh_address())).registration
    desk.store.health.take_corrupt_counts()
    key = f"registration:record:{registration.id}"
    raw = await desk.store.get_value(key)
    assert raw is not None
    await desk.store.put_value(key, raw.replace('"waiting"', '"approvedish"'), HOUR)
    assert (await desk.registrations.page(room.name, now=time.time())).total == 0
    assert await desk.approve(room.name, [registration.id], "H", 1) == []
    counts = desk.store.health.take_corrupt_counts()
    assert counts.get(RecordKind.REGISTRATION, 0) >= 2


# Nothing left


def registrants(count: int) -> Iterator[tuple[str, str, str]]:
    for _ in range(count):
        tag = secrets.token_hex(4)
        yield f"Registrant{tag}", f"reg-{tag}@leak{tag}.example", f"Note{tag}"


async def test_after_the_meetings_retention_nothing_of_a_registrant_is_left(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """Catches a record, an index entry or a mark that outlives what is kept of a registrant:
    every key and value of the store is searched for each one's name, address and note."""
    desk = make_desk(store, kept_after_meeting_seconds=0, burst_threshold=2)
    room = await stored_room(store, ends_at=time.time() + 3)
    people = list(registrants(4))
    client = fresh_client()
    made = [
        (await desk.registered(room, name, address, note, client=client)).registration
        for name, address, note in people
    ]
    await desk.approve(room.name, [made[0].id], "H", time.time())
    await desk.registrations.deny(room.name, [made[1].id], "H", time.time())
    # One awaiting its code is kept no longer than the registrations either.
    extra_name, extra_address, extra_note = next(registrants(1))
    await desk.register(room, extra_name, extra_address, extra_note)
    text = await store_text(store, request)
    details = [d for person in people for d in person] + [extra_name, extra_address, extra_note]
    assert all(name in text for name, _, _ in people) and extra_address in text
    await wait_until_gone(store, request, details)
    assert (await desk.registrations.page(room.name, now=time.time())).total == 0


async def test_without_a_meeting_end_a_registrant_is_kept_no_longer_than_kept_seconds(
    contract_redis_url: str,
) -> None:
    """Catches a key holding a registrant's details that lives longer than `kept_seconds`
    after the registration last changed (or for ever)."""
    store = await RedisStore.connect(contract_redis_url)
    client = redis.asyncio.Redis.from_url(contract_redis_url, decode_responses=True)
    try:
        await client.flushdb()
        desk = make_desk(store, kept_seconds=7200, burst_threshold=2)
        room = await stored_room(store)
        name, address, note = next(registrants(1))
        await desk.registered(room, name, address, note, client="203.0.113.9")
        await desk.registered(room, "Other Person", fresh_address(), client="203.0.113.10")
        holding = []
        async for key in client.scan_iter(match="meetgate:*registration*"):
            ttl = await client.pttl(key)
            # An index's key lasts until its last member lapses, rounded up to the millisecond
            # (gateway/store/scripts/index.lua keeps members' expiries in microseconds).
            assert 0 < ttl <= 7200 * 1000 + 1, key
            if await client.type(key) == "string" and name in opened(key, await client.get(key)):
                holding.append(key)
        assert len(holding) == 1
    finally:
        await client.aclose()
        await store.close()


async def test_a_meeting_end_moved_earlier_shortens_what_is_kept(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """Catches registrations kept as long as the meeting's first end time said after the end
    was moved earlier (the admin's room change calls `retime`)."""
    desk = make_desk(store, kept_after_meeting_seconds=0, burst_threshold=2)
    room = await stored_room(store, ends_at=time.time() + 30 * 86_400)
    people = list(registrants(3))
    client = fresh_client()
    made = [
        (await desk.registered(room, name, address, note, client=client)).registration
        for name, address, note in people
    ]
    await desk.approve(room.name, [made[0].id], "H", time.time())
    sooner = dataclasses.replace(room, ends_at=time.time() + 2)
    await store.update_room(sooner)
    assert await desk.registrations.retime(sooner, time.time()) == 3
    # Still there, and still answerable, until then.
    listed = await desk.registrations.page(room.name, now=time.time())
    assert listed.counts["waiting"] == 2 and listed.counts["burst"] == 3
    assert len(await desk.approve(sooner, [made[1].id], "H", time.time())) == 1
    await wait_until_gone(store, request, [d for person in people for d in person])


async def test_a_meeting_long_over_drops_its_registrations_at_once(desk: Desk) -> None:
    room = await stored_room(desk.store)
    for name, address, note in registrants(2):
        await desk.registered(room, name, address, note)
    over = dataclasses.replace(room, ends_at=time.time() - 7 * 86_400)
    assert await desk.registrations.retime(over, time.time()) == 2
    assert (await desk.registrations.page(room.name, now=time.time())).total == 0


async def test_a_deleted_rooms_registrations_are_forgotten(
    desk: Desk, request: pytest.FixtureRequest
) -> None:
    room = await stored_room(desk.store)
    people = list(registrants(3))
    for name, address, note in people[:2]:
        await desk.registered(room, name, address, note)
    name, address, note = people[2]
    await desk.register(room, name, address, note)
    assert await desk.registrations.forget_room(room.name) == 2
    await swept(desk.store)
    text = await store_text(desk.store, request)
    assert not [d for person in people for d in person if d in text]
    assert (await desk.registrations.page(room.name, now=time.time())).total == 0
