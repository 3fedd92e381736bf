"""What the store keeps of a client's address: the day's keyed hash, agreed by every replica
(for Redis: tests/integration/test_address_keys_redis.py), a new random key each UTC day, and
yesterday's still found; no address in any record."""

from __future__ import annotations

import json

import pytest

from gateway.admission.address_keys import DAY_SECONDS, AddressHasher, utc_day
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.lobby import Lobby, LobbyRequest, LobbyState, new_request_id
from gateway.errors import AdmissionBanned
from gateway.settings import LobbySettings
from gateway.store.memory import MemoryStore
from gateway.store.records import (
    Admission,
    CorruptRecord,
    RecordKind,
    Role,
    Room,
    admission_fields,
    parse_admission,
)

# 23:59:30 UTC on some day.
BEFORE_MIDNIGHT = 20_000 * DAY_SECONDS - 30.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_replicas_agree_on_the_days_hash_and_it_hides_the_address() -> None:
    store = MemoryStore()
    clock = Clock(BEFORE_MIDNIGHT)
    one, other = AddressHasher(store, clock=clock), AddressHasher(store, clock=clock)
    tag = await one.address("192.0.2.7")
    assert tag == await other.address("192.0.2.7")
    # Hex digits only: nothing of the address is in it (a "192" may turn up by chance).
    assert len(tag) == 32 and set(tag) <= set("0123456789abcdef")
    assert tag != await one.address("192.0.2.8")
    # An address and its network are hashed apart; a network's addresses share its hash.
    assert await one.network("192.0.2.7") == await other.network("192.0.2.200")
    assert await one.network("192.0.2.7") != await one.network("192.0.3.7")
    assert await one.network("2001:db8::1") == await one.network("2001:db8::ffff:1")
    assert await one.network("192.0.2.7") != tag
    # The key is random, not derived from anything configured: another store, another hash.
    assert await AddressHasher(MemoryStore(), clock=clock).address("192.0.2.7") != tag


async def test_a_new_day_has_a_new_key_and_yesterdays_is_still_found() -> None:
    store = MemoryStore()
    clock = Clock(BEFORE_MIDNIGHT)
    hasher = AddressHasher(store, clock=clock)
    before = await hasher.address("192.0.2.7")
    assert await hasher.addresses_since_yesterday("192.0.2.7") == (before,)
    clock.now += 60
    assert utc_day(clock.now) == utc_day(BEFORE_MIDNIGHT) + 1
    after = await hasher.address("192.0.2.7")
    assert after != before
    assert await hasher.addresses_since_yesterday("192.0.2.7") == (after, before)
    # A replica that starts today finds yesterday's key in the store too.
    fresh = AddressHasher(store, clock=clock)
    assert await fresh.addresses_since_yesterday("192.0.2.7") == (after, before)
    # Two days on, the first day's key is gone from the store.
    clock.now += DAY_SECONDS
    assert before not in await hasher.addresses_since_yesterday("192.0.2.7")
    assert store.held_day_key(utc_day(BEFORE_MIDNIGHT)) is None


async def test_a_guests_bar_set_before_midnight_holds_after_it() -> None:
    store = MemoryStore()
    clock = Clock(BEFORE_MIDNIGHT)
    lobby = Lobby(store, LobbySettings(), addresses=AddressHasher(store, clock=clock))
    room = Room(name="weekly", title="Weekly", created_at=0.0)

    async def knock() -> LobbyRequest:
        verified = VerifiedIdentity(
            path=Path.LOBBY, subject=new_request_id(), name="Troll", guest=True
        )
        queued = await lobby.queue(
            verified,
            identity=f"id-{verified.subject}",
            room=room,
            client_addr="198.51.100.66",
            message="",
            now=clock.now,
        )
        return queued.request

    request = await knock()
    assert "198.51.100" not in request.encode()
    assert await lobby.answer(room, request.id, LobbyState.BANNED, "Host", clock.now)
    clock.now += 60
    with pytest.raises(AdmissionBanned):
        await knock()


def test_an_admission_stored_with_its_address_reads_and_is_written_without_it() -> None:
    admission = Admission(
        id="a" * 64,
        room="weekly",
        identity="who",
        name="Ada",
        role=Role.ATTENDEE,
        via="invite",
        created_at=1.0,
        expires_at=2.0,
    )
    old = json.loads(admission_fields(admission)["record"])
    old["client_addr"] = "192.0.2.7"
    read = parse_admission(json.dumps(old), "0")
    assert read == admission
    assert "192.0.2.7" not in json.dumps(admission_fields(read))
    # Anything else but text there is still corrupt, as before.
    old["client_addr"] = 7
    with pytest.raises(CorruptRecord) as corrupt:
        parse_admission(json.dumps(old), "0")
    assert corrupt.value.kind is RecordKind.ADMISSION


def test_a_lobby_request_stored_with_its_address_reads_without_it() -> None:
    request = LobbyRequest(
        id=new_request_id(),
        room="weekly",
        verified=VerifiedIdentity(path=Path.LOBBY, subject="s", name="Gina", guest=True),
        identity="who",
        message="",
        created_at=1.0,
        expires_at=2.0,
        waiter="w",
    )
    old = json.loads(request.encode())
    del old["address"]
    old["client_addr"] = "2001:db8::7"
    read = LobbyRequest.decode(json.dumps(old))
    assert read == request
    assert "2001:db8" not in read.encode()
