"""Records that do not parse, on both backends: each kind is corrupted (Redis: in the real
redis-server; memory: through its `write_raw` test seam, which holds the same stored forms; the
lobby's records are plain values, written with `put_value` on either) and no join, refresh,
signalling check or lobby approval may pass on it. Each one is counted by kind, logged with its
kind alone."""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admission.address_keys import AddressHasher
from gateway.admission.flood import FloodGuard
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.invites import make_invite
from gateway.admission.limits import RateLimiter
from gateway.admission.lobby import (
    ANSWERS,
    Lobby,
    LobbyRequest,
    LobbyRequestUnknown,
    LobbyState,
    Queued,
    new_request_id,
)
from gateway.admission.pipeline import AdmissionPipeline, Admitted
from gateway.errors import AdmissionBanned, InviteError, NotAdmitted, RateLimited
from gateway.metrics import Metrics
from gateway.settings import ChallengeSettings, LobbySettings, Rate, RateSettings
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.records import (
    NameClaim,
    RecordKind,
    Role,
    Room,
    admission_fields,
    encode_record,
    invite_fields,
)
from gateway.store.redis import RedisStore
from tests.contract.test_store import unique

KEY = b"k" * 40
HOUR = 3600.0
EXAMPLES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Fields records written before them lack (they take their defaults then).
OPTIONAL = (
    "locked",
    "approval_required",
    "moved_to",
    "lineage",
    "pow_required",
    "language",
    # The wire guard's room settings (issue 16): a record written before them reads as defaults.
    "quiet",
    "quiet_private_to_hosts",
    "chat_per_10s",
    "chat_burst",
    "chat_max_bytes",
    "guard_strikes",
    # Registration (issue 19).
    "registration",
    "auto_approve_domains",
    "auto_approve_emails",
    "series",
    "starts_at",
    "ends_at",
)
# A lobby request's fields with defaults, and its identity's; fields that are null in the records
# below and may hold a value of another type (a time, a text).
LOBBY_OPTIONAL = ("answered_at", "answered_by", "address")
LOBBY_NULLABLE = ("answered_at",)
IDENTITY_OPTIONAL = ("role", "email", "email_verified", "issuer", "provider", "groups", "guest")
IDENTITY_NULLABLE = ("email", "issuer", "provider")
# Where the lobby keeps its records (gateway/admission/lobby.py's key layout).
LOBBY_RECORD = "lobby:request:{}"
LOBBY_PENDING = "lobby:pending:{}"
LOBBY_GRANT = "lobby:grant:{}"
LOBBY_ROOM = "lobby:room:{}"
LOBBY_BARRED = "lobby:barred:{}:{}"

# Any text, and text that looks almost right: what a bug, a bad migration or a hand edit leaves.
garbage = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "1 ", "true", "yes", "null", "{}", "[]", "-1", "0x1", "NaN", "inf"]),
)


def _wrong_value(current: Any) -> st.SearchStrategy[Any]:
    """JSON values of another type than `current` (bools, null and numbers apart)."""
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=10),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    )
    return values.filter(lambda value: _json_type(value) != _json_type(current))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number" if isinstance(value, int | float) else type(value).__name__


def mutated_record(
    text: str, optional: tuple[str, ...] = OPTIONAL, nullable: tuple[str, ...] = ()
) -> st.SearchStrategy[str]:
    """A stored JSON record with one field dropped, given a wrong type, or one field added;
    or plain garbage. `nullable` fields, null in `text`, are not retyped (another type may be
    theirs)."""
    data: dict[str, Any] = json.loads(text)
    names = sorted(name for name in data if name not in nullable)

    def drop(name: str) -> str:
        return json.dumps({k: v for k, v in data.items() if k != name})

    def retype(name: str) -> st.SearchStrategy[str]:
        return _wrong_value(data[name]).map(lambda value: json.dumps({**data, name: value}))

    required = [n for n in names if n not in optional]
    return st.one_of(
        garbage,
        st.sampled_from(required).map(drop),
        st.sampled_from(names).flatmap(retype),
        st.just(json.dumps({**data, "admitted": True})),
    )


def mutated_lobby_request(request: LobbyRequest) -> st.SearchStrategy[str]:
    """A stored lobby request mutated as `mutated_record` does, at its top level or in the
    identity it carries."""
    data: dict[str, Any] = json.loads(request.encode())

    def with_identity(text: str) -> str:
        try:
            identity = json.loads(text)
        except ValueError:
            identity = text
        return json.dumps({**data, "verified": identity})

    nullable = tuple(name for name in LOBBY_NULLABLE if data[name] is None)
    identity_nullable = tuple(name for name in IDENTITY_NULLABLE if data["verified"][name] is None)
    return st.one_of(
        mutated_record(request.encode(), LOBBY_OPTIONAL, nullable),
        mutated_record(json.dumps(data["verified"]), IDENTITY_OPTIONAL, identity_nullable).map(
            with_identity
        ),
    )


def not_a_claim(text: str) -> bool:
    words = text.split(" ")
    return len(words) != 2 or not (words[0].isascii() and words[0].isdigit()) or not words[1]


def not_a_flag(text: str) -> bool:
    return text not in ("0", "1")


def not_a_time(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return True


@pytest.fixture
async def pipeline(store: Store) -> AsyncIterator[AdmissionPipeline]:
    wide = Rate(per_minute=1_000_000, burst=100_000)
    rates = RateSettings(
        address=wide, network=wide, room=wide, identity=wide, invite=wide, gate=wide
    )
    metrics = Metrics()
    limiter = RateLimiter(store, rates, metrics)
    flood = FloodGuard(store, limiter, ChallengeSettings(mode="off"), KEY, metrics)
    yield AdmissionPipeline(
        store,
        pseudonym_key=KEY,
        admission_ttl_seconds=int(HOUR),
        limiter=limiter,
        flood=flood,
        metrics=metrics,
    )
    await limiter.aclose()


async def write_raw(store: Store, kind: RecordKind, name: str, fields: dict[str, str]) -> None:
    if isinstance(store, MemoryStore):
        store.write_raw(kind, name, fields)
    else:
        assert isinstance(store, RedisStore)
        await store.write_raw(kind, name, fields)


async def room_with_invite(store: Store, max_uses: int = 5) -> tuple[Room, str, str]:
    """A room and a usable invite to it: (room, invite id, the link's token)."""
    room = Room(name=unique("room"), title="Call", created_at=time.time())
    await store.create_room(room)
    made = make_invite(
        room=room.name,
        name="Ada Lovelace",
        role=Role.ATTENDEE,
        max_uses=max_uses,
        lifetime_seconds=HOUR,
        now=time.time(),
    )
    await store.add_invite(made.invite)
    return room, made.invite.id, made.token


async def joined(store: Store, pipeline: AdmissionPipeline) -> Admitted:
    _, _, token = await room_with_invite(store)
    admitted = await pipeline.redeem(token, "192.0.2.7", time.time())
    # As it is before anything is corrupted: live, by id and by cookie.
    assert await pipeline.live(admitted.admission.id, time.time())
    return admitted


def counted(store: Store, kind: RecordKind) -> bool:
    return store.health.take_corrupt_counts().get(kind, 0) > 0


async def refused_everywhere(pipeline: AdmissionPipeline, admitted: Admitted) -> None:
    """Nothing passes on the admission: not a refresh (cookie), not the ticket's check (the
    gate's signalling access is `live()` of the ticket's admission)."""
    now = time.time()
    with pytest.raises(NotAdmitted):
        await pipeline.live(admitted.admission.id, now)
    with pytest.raises(NotAdmitted):
        await pipeline.from_cookie(admitted.cookie_secret, now)


@EXAMPLES
@given(value=garbage.filter(not_a_flag))
async def test_an_unreadable_revocation_flag_refuses(
    store: Store, pipeline: AdmissionPipeline, value: str
) -> None:
    admitted = await joined(store, pipeline)
    await write_raw(store, RecordKind.ADMISSION, admitted.admission.id, {"revoked": value})
    await refused_everywhere(pipeline, admitted)
    assert counted(store, RecordKind.ADMISSION)
    # The reconciliation sweep reads it as gone, so its sockets are cut.
    assert await store.get_admission(admitted.admission.id) is None


@EXAMPLES
@given(data=st.data())
async def test_an_unreadable_admission_record_refuses(
    store: Store, pipeline: AdmissionPipeline, data: st.DataObject
) -> None:
    admitted = await joined(store, pipeline)
    record = data.draw(mutated_record(admission_fields(admitted.admission)["record"]))
    await write_raw(store, RecordKind.ADMISSION, admitted.admission.id, {"record": record})
    await refused_everywhere(pipeline, admitted)
    assert counted(store, RecordKind.ADMISSION)
    assert admitted.admission.id not in {a.id for a in await store.list_admissions("any")}
    assert await store.move_admission(admitted.admission.id, unique("room")) is None


@EXAMPLES
@given(data=st.data())
async def test_an_unreadable_invite_admits_nobody(
    store: Store, pipeline: AdmissionPipeline, data: st.DataObject
) -> None:
    _, invite_id, token = await room_with_invite(store)
    invite = await store.get_invite(invite_id)
    assert invite is not None
    stored = invite_fields(invite)
    field = data.draw(st.sampled_from(["record", "uses", "revoked"]))
    if field == "record":
        value = data.draw(mutated_record(stored["record"]))
    elif field == "uses":
        value = data.draw(garbage.filter(lambda text: not (text.isascii() and text.isdigit())))
    else:
        value = data.draw(garbage.filter(not_a_flag))
    await write_raw(store, RecordKind.INVITE, invite_id, {field: value})
    with pytest.raises(InviteError):
        await pipeline.preview(token, "192.0.2.7", time.time())
    with pytest.raises(InviteError):
        await pipeline.redeem(token, "192.0.2.7", time.time())
    assert counted(store, RecordKind.INVITE)


@EXAMPLES
@given(data=st.data())
async def test_an_unreadable_room_admits_nobody(
    store: Store, pipeline: AdmissionPipeline, data: st.DataObject
) -> None:
    room, _, token = await room_with_invite(store)
    # A room not moved holds `moved_to: null`; another string there is a move, not garbage.
    # `guard_strikes: null` is the gate's default; a count there is the room's own.
    nullable = ("moved_to", "guard_strikes", "starts_at", "ends_at")
    record = data.draw(mutated_record(encode_record(room), nullable=nullable))
    await write_raw(store, RecordKind.ROOM, room.name, {"record": record})
    with pytest.raises(InviteError):
        await pipeline.redeem(token, "192.0.2.7", time.time())
    assert await store.get_room(room.name) is None
    assert counted(store, RecordKind.ROOM)


@EXAMPLES
@given(value=garbage.filter(lambda text: text != "" and not_a_time(text)))
async def test_an_unreadable_ban_still_bans(
    store: Store, pipeline: AdmissionPipeline, value: str
) -> None:
    room, invite_id, token = await room_with_invite(store)
    identity = pipeline.pseudonym("invite", invite_id)
    await store.ban_identity(room.ban_scope, identity, time.time() + HOUR)
    await write_raw(store, RecordKind.BAN, f"{room.ban_scope}:{identity}", {"value": value})
    with pytest.raises(AdmissionBanned):
        await pipeline.redeem(token, "192.0.2.7", time.time())
    assert counted(store, RecordKind.BAN)


@EXAMPLES
@given(value=garbage.filter(lambda text: not (text.isascii() and text.isdigit())))
async def test_an_unreadable_rate_limit_refuses(
    store: Store, pipeline: AdmissionPipeline, value: str
) -> None:
    _, invite_id, token = await room_with_invite(store)
    await write_raw(store, RecordKind.RATE, f"invite:{invite_id}", {"value": value})
    with pytest.raises(RateLimited):
        await pipeline.redeem(token, "192.0.2.7", time.time())
    # Refused again: the garbage is not taken for an empty bucket after one refusal either.
    decision = await store.rate_limit(f"invite:{invite_id}", 1000.0, 1000)
    assert not decision.allowed and decision.retry_after > 0
    assert counted(store, RecordKind.RATE)


@EXAMPLES
@given(value=garbage.filter(not_a_claim))
async def test_an_unreadable_name_claim_keeps_the_name_taken(store: Store, value: str) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("the memory store keeps name claims as typed values: none can be unreadable")
    room = unique("room")
    await write_raw(store, RecordKind.NAME, room, {"n:ada": value})
    claim = NameClaim(
        holder="h" * 64, shapes=("ada",), expires_at=time.time() + HOUR, host_shape="ada"
    )
    assert await store.claim_name(room, claim) is None
    assert counted(store, RecordKind.NAME)


def fresh_address() -> str:
    """An address no other example knocked from (the lobby bounds each address's requests)."""
    return str(ipaddress.IPv4Address(0x0A000000 + next(ADDRESSES)))


ADDRESSES = itertools.count(1)


def lobby_room() -> Room:
    return Room(name=unique("room"), title="Call", created_at=time.time())


async def knock(lobby: Lobby, room: Room, address: str, name: str = "Gina") -> Queued:
    """A guest's request in `room`'s lobby, from `address`."""
    verified = VerifiedIdentity(path=Path.LOBBY, subject=new_request_id(), name=name, guest=True)
    return await lobby.queue(
        verified,
        identity=f"id-{verified.subject}",
        room=room,
        client_addr=address,
        message="",
        now=time.time(),
    )


@EXAMPLES
@given(data=st.data())
async def test_an_unreadable_lobby_request_lets_nobody_in(
    store: Store, data: st.DataObject
) -> None:
    lobby = Lobby(store, LobbySettings())
    room = lobby_room()
    good = await knock(lobby, room, fresh_address(), name="Gina")
    bad = await knock(lobby, room, fresh_address(), name="Mallory")
    # Corrupted while it waits, or once a host approved it (its grant waiting to be collected).
    stored = bad.request
    if data.draw(st.booleans()):
        approved = await lobby.answer(
            room, bad.request.id, LobbyState.APPROVED, "Host", time.time()
        )
        assert approved is not None
        stored = approved
    record = data.draw(mutated_lobby_request(stored))
    await store.put_value(LOBBY_RECORD.format(bad.request.id), record, HOUR)
    # A member of the room's list that is no request id at all.
    await store.index_add(LOBBY_ROOM.format(room.name), data.draw(garbage), HOUR)
    now = time.time()
    # The waiting browser's token names no request: its pages, status and stream, and the
    # collection of an approval, all begin with `held`.
    with pytest.raises(LobbyRequestUnknown):
        await lobby.held(bad.token, room.name)
    assert await lobby.get(bad.request.id) is None
    for answer in ANSWERS:
        assert await lobby.answer(room, bad.request.id, answer, "Host", now) is None
    # The hosts' list still shows the good request, and nothing else.
    assert [request.id for request in await lobby.waiting(room.name, now)] == [good.request.id]
    assert await lobby.held(good.token, room.name) == good.request
    assert counted(store, RecordKind.LOBBY)


@EXAMPLES
@given(value=garbage.filter(lambda text: text != "1"))
async def test_an_unreadable_lobby_grant_lets_nobody_in(store: Store, value: str) -> None:
    lobby = Lobby(store, LobbySettings())
    room = lobby_room()
    queued = await knock(lobby, room, fresh_address())
    assert await lobby.answer(room, queued.request.id, LobbyState.APPROVED, "Host", time.time())
    await store.put_value(LOBBY_GRANT.format(queued.request.id), value, HOUR)
    now = time.time()
    approved = await lobby.held(queued.token, room.name)
    assert approved.state_at(now) is LobbyState.APPROVED
    assert not await lobby.collect(approved, now)
    # Nor later: the unreadable grant is gone, not left to be taken for a grant.
    assert not await lobby.collect(approved, now)
    assert counted(store, RecordKind.LOBBY)


@EXAMPLES
@given(value=garbage.filter(lambda text: text != "1"), answer=st.sampled_from(ANSWERS))
async def test_an_unreadable_waiting_mark_approves_nobody_but_denies(
    store: Store, value: str, answer: LobbyState
) -> None:
    lobby = Lobby(store, LobbySettings())
    room = lobby_room()
    queued = await knock(lobby, room, fresh_address())
    await store.put_value(LOBBY_PENDING.format(queued.request.id), value, HOUR)
    answered = await lobby.answer(room, queued.request.id, answer, "Host", time.time())
    if answer is LobbyState.APPROVED:
        assert answered is None
        # The request is gone: its browser may knock again, through a host again.
        with pytest.raises(LobbyRequestUnknown):
            await lobby.held(queued.token, room.name)
    else:
        # A refusal still counts: a host's "deny and ban" is not lost to a bad mark.
        assert answered is not None and answered.state is answer
    assert await store.get_value(LOBBY_GRANT.format(queued.request.id)) is None
    assert await lobby.waiting(room.name, time.time()) == []
    assert counted(store, RecordKind.LOBBY)


@EXAMPLES
@given(value=garbage)
async def test_an_unreadable_address_bar_still_bars(store: Store, value: str) -> None:
    lobby = Lobby(store, LobbySettings())
    room = lobby_room()
    # Kept under the day's hash of the address, which any replica's hasher agrees on.
    barred = await AddressHasher(store).address("192.0.2.7")
    await store.put_value(LOBBY_BARRED.format(room.ban_scope, barred), value, HOUR)
    with pytest.raises(AdmissionBanned):
        await knock(lobby, room, "192.0.2.7")
    assert await lobby.waiting(room.name, time.time()) == []
    assert counted(store, RecordKind.LOBBY) is (value != "1")


async def test_a_corrupt_record_is_logged_by_kind_and_counted_in_the_metrics(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    metrics.watch_store(store.health)
    lobby = Lobby(store, LobbySettings())
    room = lobby_room()
    queued = await knock(lobby, room, "192.0.2.77", name="Mallory Example")
    private = (room.name, queued.request.id, queued.secret, "Mallory", "192.0.2.77")
    with caplog.at_level(logging.ERROR, logger="meetgate.store"):
        for _ in range(3):
            await store.put_value(LOBBY_RECORD.format(queued.request.id), "{garbage", HOUR)
            assert await lobby.get(queued.request.id) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "meetgate.store"]
    # Logged once (at most once a minute per kind), naming the kind and nothing personal.
    assert len(lines) == 1
    assert "of kind lobby that does not parse" in lines[0]
    assert not any(value in lines[0] for value in private)
    text = metrics.render()
    assert 'meetgate_store_corrupt_records_total{kind="lobby"} 3' in text
    assert not any(value in text for value in private)
    # Counted once each: a second rendering adds nothing.
    assert 'meetgate_store_corrupt_records_total{kind="lobby"} 3' in metrics.render()
