"""The lobby's domain without HTTP: queueing, bounds, expiry (injected time), one answer per
request, one collection per approval, the waiting browser's token, and what deny-and-ban bars."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.lobby import (
    GUEST_MARKER,
    Lobby,
    LobbyFull,
    LobbyRequest,
    LobbyRequestUnknown,
    LobbyRoomFull,
    LobbyState,
    Queued,
    address_key,
    clean_name,
    new_request_id,
    shown_name,
)
from gateway.errors import AdmissionBanned, InvalidInput
from gateway.settings import LobbySettings
from gateway.store.memory import MemoryStore
from gateway.store.records import Role, Room

NOW = 1_000_000.0
TTL = 900


def lobby_of(store: MemoryStore, **settings: int) -> Lobby:
    return Lobby(store, LobbySettings(ttl_seconds=TTL, **settings))


def guest(name: str = "Gina") -> VerifiedIdentity:
    return VerifiedIdentity(path=Path.LOBBY, subject=new_request_id(), name=name, guest=True)


def room(name: str = "weekly") -> Room:
    return Room(name=name, title="Weekly", created_at=NOW)


async def knock(
    lobby: Lobby,
    verified: VerifiedIdentity | None = None,
    *,
    where: Room | None = None,
    address: str = "192.0.2.1",
    now: float = NOW,
    message: str = "",
) -> Queued:
    verified = verified or guest()
    return await lobby.queue(
        verified,
        identity=f"id-{verified.subject}",
        room=where or room(),
        client_addr=address,
        message=message,
        now=now,
    )


def test_guest_names_carry_a_visible_marker_once() -> None:
    assert shown_name(guest("Gina")) == "Gina" + GUEST_MARKER
    assert shown_name(guest("Gina" + GUEST_MARKER)) == "Gina" + GUEST_MARKER
    signed_in = VerifiedIdentity(path=Path.OIDC, subject="s", name="Olga", provider="kc")
    assert shown_name(signed_in) == "Olga"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "x" * 65,
        "Ada\x00",
        "Ad\na",
        "Ada\u202eevil",
        "\u200fAda",
        "Ad\u200ba",
        # The display-name rules (names.normalise) as for an invite's name: stacked marks
        # ("Zalgo"), a name of blank letters or of marks alone.
        "Ada" + "\u0301" * 6,
        "\u3164\u3164",
        "\u0301\u0302",
    ],
)
def test_names_that_cannot_be_shown_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        clean_name(bad)


def test_names_are_normalised() -> None:
    assert clean_name("  \uff27\uff49\uff4e\uff41  ") == "Gina"  # NFKC folds full-width letters
    assert clean_name("x" * 64) == "x" * 64
    assert clean_name("Gina   de la  Cruz") == "Gina de la Cruz"
    assert clean_name("Zoe\u0308") == "Zo\u00eb"


def test_one_waiting_address_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("unknown") == "unknown"


async def test_a_request_waits_until_its_time_is_up() -> None:
    lobby = lobby_of(MemoryStore())
    queued = await knock(lobby, message="From the tenants' union")
    request = queued.request
    assert request.id == request.verified.subject  # one guest, one request
    assert len(request.id) == 32 and len(queued.secret) == 43
    assert queued.secret not in request.encode()
    assert request.name == "Gina" + GUEST_MARKER and request.guest and request.via == "lobby"
    assert [r.id for r in await lobby.waiting("weekly", NOW + TTL - 1)] == [request.id]
    assert request.state_at(NOW + TTL - 1) is LobbyState.WAITING
    assert await lobby.waiting("weekly", NOW + TTL) == []
    assert request.state_at(NOW + TTL) is LobbyState.EXPIRED
    # Too late for a host's answer, and so for collecting one.
    assert await lobby.answer(room(), request.id, LobbyState.APPROVED, "Hilde", NOW + TTL) is None
    assert not await lobby.collect(request, NOW + TTL)


async def test_waiting_lists_are_per_room_and_oldest_first() -> None:
    lobby = lobby_of(MemoryStore())
    first = await knock(lobby, guest("First"), address="192.0.2.1")
    second = await knock(lobby, guest("Second"), address="192.0.2.2")
    await knock(lobby, guest("Elsewhere"), where=room("other"), address="192.0.2.3")
    waiting = await lobby.waiting("weekly", NOW + 1)
    assert [r.id for r in waiting] == [first.request.id, second.request.id]


async def test_the_lobby_is_bounded_per_address_and_per_room() -> None:
    lobby = lobby_of(MemoryStore(), max_waiting_per_address=2, max_waiting_per_room=4)
    await knock(lobby, address="192.0.2.1")
    await knock(lobby, address="192.0.2.1")
    with pytest.raises(LobbyFull) as full:
        await knock(lobby, address="192.0.2.1")
    assert full.value.status == 429 and full.value.retry_after > 0
    # The same subscriber's other IPv6 addresses count as one address.
    await knock(lobby, address="2001:db8::1")
    await knock(lobby, address="2001:db8::2")
    with pytest.raises(LobbyRoomFull):
        await knock(lobby, address="192.0.2.9")
    assert len(await lobby.waiting("weekly", NOW)) == 4
    # Another room has its own bound; an address's bound holds across rooms.
    await knock(lobby, where=room("other"), address="192.0.2.9")
    with pytest.raises(LobbyFull):
        await knock(lobby, where=room("other"), address="2001:db8::3")


async def test_an_answered_request_frees_its_place() -> None:
    lobby = lobby_of(MemoryStore(), max_waiting_per_address=1)
    queued = await knock(lobby)
    assert await lobby.answer(room(), queued.request.id, LobbyState.DENIED, "Hilde", NOW)
    await knock(lobby)


async def test_of_racing_answers_exactly_one_counts() -> None:
    lobby = lobby_of(MemoryStore())
    queued = await knock(lobby)
    answers = await asyncio.gather(
        lobby.answer(room(), queued.request.id, LobbyState.APPROVED, "Hilde", NOW),
        lobby.answer(room(), queued.request.id, LobbyState.DENIED, "Hans", NOW),
        lobby.answer(room(), queued.request.id, LobbyState.BANNED, "Hans", NOW),
    )
    given = [a for a in answers if a is not None]
    assert len(given) == 1 and given[0].answered_by == "Hilde"
    stored = await lobby.get(queued.request.id)
    assert stored is not None and stored.state is LobbyState.APPROVED


async def test_answers_only_for_this_rooms_waiting_requests() -> None:
    lobby = lobby_of(MemoryStore())
    queued = await knock(lobby)
    assert (
        await lobby.answer(room("other"), queued.request.id, LobbyState.APPROVED, "X", NOW) is None
    )
    assert await lobby.answer(room(), new_request_id(), LobbyState.APPROVED, "X", NOW) is None
    assert await lobby.answer(room(), "not-an-id", LobbyState.APPROVED, "X", NOW) is None
    with pytest.raises(ValueError):
        await lobby.answer(room(), queued.request.id, LobbyState.WAITING, "X", NOW)
    assert len(await lobby.waiting("weekly", NOW)) == 1


async def test_an_approval_is_collected_once() -> None:
    lobby = lobby_of(MemoryStore())
    queued = await knock(lobby)
    assert not await lobby.collect(queued.request, NOW)  # nobody approved yet
    approved = await lobby.answer(room(), queued.request.id, LobbyState.APPROVED, "Hilde", NOW)
    assert approved is not None
    results = await asyncio.gather(lobby.collect(approved, NOW), lobby.collect(approved, NOW))
    assert sorted(results) == [False, True]
    stored = await lobby.get(approved.id)
    assert stored is not None and stored.state is LobbyState.ADMITTED


async def test_only_the_waiting_browsers_token_finds_its_request() -> None:
    lobby = lobby_of(MemoryStore())
    mine = await knock(lobby, address="192.0.2.1")
    theirs = await knock(lobby, address="192.0.2.2")
    assert (await lobby.held(mine.token, "weekly")).id == mine.request.id
    forged = [
        None,
        "",
        mine.request.id,  # the id hosts see is not enough
        f"{mine.request.id}.{theirs.secret}",  # another browser's secret
        f"{mine.request.id}.{'A' * 43}",
        f"{mine.request.id}.{mine.secret}x",
        f"{'0' * 32}.{mine.secret}",
        f"../{mine.request.id}.{mine.secret}",
    ]
    for token in forged:
        with pytest.raises(LobbyRequestUnknown):
            await lobby.held(token, "weekly")
    with pytest.raises(LobbyRequestUnknown):
        await lobby.held(mine.token, "other")  # good token, another room


async def test_deny_and_ban_bars_the_identity_and_a_guests_address() -> None:
    store = MemoryStore()
    lobby = lobby_of(store)
    meeting = replace(room(), lineage="weekly-first")
    queued = await knock(lobby, where=meeting, address="192.0.2.66")
    banned = await lobby.answer(meeting, queued.request.id, LobbyState.BANNED, "Hilde", NOW)
    assert banned is not None and banned.state is LobbyState.BANNED
    # Bans hold for the meeting, under its first name.
    assert await store.is_banned("weekly-first", queued.request.identity, NOW)
    with pytest.raises(AdmissionBanned):
        await knock(lobby, where=meeting, address="192.0.2.66")
    await knock(lobby, where=meeting, address="192.0.2.67")
    await knock(lobby, where=room("other"), address="192.0.2.66")


async def test_a_signed_in_persons_request_keeps_their_identity() -> None:
    lobby = lobby_of(MemoryStore())
    olga = VerifiedIdentity(
        path=Path.OIDC,
        subject="https://id.example|olga",
        name="Olga Organiser",
        role=Role.ATTENDEE,
        email="olga@example.org",
        email_verified=True,
        issuer="https://id.example",
        provider="keycloak",
        groups=("organisers", "press"),
    )
    queued = await knock(lobby, olga)
    assert queued.request.id != olga.subject
    assert queued.request.name == "Olga Organiser" and not queued.request.guest
    assert queued.request.via == "oidc:keycloak <olga@example.org>"
    again = await lobby.get(queued.request.id)
    assert again == queued.request
    assert LobbyRequest.decode(queued.request.encode()).verified == olga


async def test_withdrawing_leaves_the_lobby() -> None:
    lobby = lobby_of(MemoryStore(), max_waiting_per_address=1)
    queued = await knock(lobby)
    assert await lobby.withdraw(queued.request, NOW)
    assert await lobby.waiting("weekly", NOW) == []
    assert await lobby.get(queued.request.id) is None
    assert not await lobby.withdraw(queued.request, NOW)
    await knock(lobby)  # the address's place is free again
