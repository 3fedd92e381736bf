"""The refusals a replica remembers, so that the gate can answer a flood's repeat attempts itself:
only for the address or network that was out of budget, never longer than any room's limit would
refuse, and counted toward the pressure all the same."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.admission.limits import GATE, Attempt, RateLimiter
from gateway.admission.local_limits import MAX_ENTRIES, KnownRefusals, KnownWait
from gateway.client_address import network_of
from gateway.errors import RATE_LIMIT_MESSAGES, RateLimited
from gateway.metrics import Metrics
from gateway.settings import Rate, RateSettings, RoomRates
from gateway.store.memory import MemoryStore

WIDE = Rate(per_minute=1_000_000, burst=100_000)


def rates(**changes: object) -> RateSettings:
    values: dict[str, object] = {
        "address": Rate(per_minute=60, burst=2),
        "network": WIDE,
        "room": WIDE,
        "identity": WIDE,
        "invite": WIDE,
        "gate": WIDE,
    }
    values.update(changes)
    return RateSettings.model_validate(values)


async def refuse(limiter: RateLimiter, attempt: Attempt) -> None:
    with pytest.raises(RateLimited):
        await limiter.charge(attempt)


async def test_an_address_refused_for_its_own_limit_is_remembered_with_its_room() -> None:
    metrics = Metrics()
    limiter = RateLimiter(MemoryStore(), rates(), metrics)
    for _ in range(2):
        await limiter.charge(Attempt("198.51.100.7", room="agora"))
    assert limiter.known_wait("198.51.100.7").seconds == 0
    await refuse(limiter, Attempt("198.51.100.7", room="agora"))
    known = limiter.known_wait("198.51.100.7")
    assert 0 < known.seconds <= 1.0 and known.room == "agora" and known.limit == "address"
    assert 'meetgate_rate_limited_total{limit="address"} 1' in metrics.render()
    # Its neighbours are not: the address was out of budget, not the network.
    assert limiter.known_wait("198.51.100.8").seconds == 0


async def test_a_network_refusal_covers_every_address_in_it() -> None:
    limiter = RateLimiter(
        MemoryStore(), rates(address=WIDE, network=Rate(per_minute=60, burst=2)), Metrics()
    )
    for host in (1, 2):
        await limiter.charge(Attempt(f"203.0.113.{host}"))
    await refuse(limiter, Attempt("203.0.113.3"))
    assert limiter.known_wait("203.0.113.200").limit == "network"
    assert limiter.known_wait("203.0.113.200").seconds > 0
    assert limiter.known_wait("203.0.114.1").seconds == 0


async def test_a_refusal_by_another_limit_is_not_remembered() -> None:
    # The room was full, not the address: the same address may try another room at once.
    metrics = Metrics()
    limiter = RateLimiter(
        MemoryStore(), rates(address=WIDE, room=Rate(per_minute=60, burst=1)), metrics
    )
    await limiter.charge(Attempt("198.51.100.9", room="small"))
    await refuse(limiter, Attempt("198.51.100.9", room="small"))
    assert limiter.known_wait("198.51.100.9").seconds == 0
    assert 'meetgate_rate_limited_total{limit="room"} 1' in metrics.render()


async def test_a_link_out_of_its_shared_budget_is_remembered_by_its_token_hash() -> None:
    # A leaked link flooded from many addresses: refused by the invite's limit, whatever the
    # address; the link's later attempts are known refused, other links are not.
    limiter = RateLimiter(
        MemoryStore(), rates(address=WIDE, invite=Rate(per_minute=60, burst=2)), Metrics()
    )
    for host in (1, 2):
        await limiter.charge(Attempt(f"198.51.{host}.1", room="agora", invite="i1", link="h1"))
    await refuse(limiter, Attempt("198.51.3.1", room="agora", invite="i1", link="h1"))
    known = limiter.known_link_wait("h1")
    assert 0 < known.seconds <= 1.0 and known.room == "agora" and known.limit == "invite"
    assert limiter.known_link_wait("h2").seconds == 0
    assert limiter.known_wait("198.51.3.1").seconds == 0


async def test_a_joins_own_identity_limit_does_not_close_the_link() -> None:
    # Only joins are charged against the identity limit: its refusal must not refuse the
    # landing page, which the shared limits would still show.
    limiter = RateLimiter(
        MemoryStore(), rates(address=WIDE, identity=Rate(per_minute=60, burst=1)), Metrics()
    )
    join = Attempt("198.51.100.1", room="agora", identity="p1", invite="i1", link="h1")
    await limiter.charge(join)
    await refuse(limiter, join)
    assert limiter.known_link_wait("h1").seconds == 0


@pytest.mark.parametrize("limit", ["address", "network", "room", "identity", "invite", "gate"])
async def test_a_refusal_names_the_limit_that_refused_it(limit: str) -> None:
    # The 429 page says which limit refused, in words of its own for each; the metrics agree.
    metrics = Metrics()
    wide = {name: WIDE for name in ("address", "network", "room", "identity", "invite", "gate")}
    limiter = RateLimiter(
        MemoryStore(), rates(**{**wide, limit: Rate(per_minute=60, burst=1)}), metrics
    )
    join = Attempt("198.51.100.1", room="agora", identity="p1", invite="i1", link="h1")
    await limiter.charge(join)
    with pytest.raises(RateLimited) as refused:
        await limiter.charge(join)
    assert refused.value.limit == limit
    assert refused.value.message == RATE_LIMIT_MESSAGES[limit]
    assert 1 <= (refused.value.retry_after or 0) <= 2
    assert f'meetgate_rate_limited_total{{limit="{limit}"}} 1' in metrics.render()
    assert len(set(RATE_LIMIT_MESSAGES.values())) == len(RATE_LIMIT_MESSAGES)


async def test_never_longer_than_the_most_lenient_rooms_limit_would_refuse() -> None:
    # The gate does not know an attempt's room before it answers; a room whose address limit
    # allows a burst of 5 must still get the attempts the default burst of 2 refuses.
    lenient = RoomRates(address=Rate(per_minute=60, burst=5))
    limiter = RateLimiter(MemoryStore(), rates(rooms={"lecture": lenient}), Metrics())
    for _ in range(2):
        await limiter.charge(Attempt("198.51.100.10", room="small"))
    await refuse(limiter, Attempt("198.51.100.10", room="small"))
    assert limiter.known_wait("198.51.100.10").seconds == 0
    await limiter.charge(Attempt("198.51.100.10", room="lecture"))
    # Refused by the lenient limit itself: that is known for as long as the store says.
    for _ in range(2):
        await limiter.charge(Attempt("198.51.100.10", room="lecture"))
    await refuse(limiter, Attempt("198.51.100.10", room="lecture"))
    assert limiter.known_wait("198.51.100.10").seconds > 0


async def test_refusals_answered_by_the_gate_count_toward_the_pressure() -> None:
    store = MemoryStore()
    metrics = Metrics()
    limiter = RateLimiter(store, rates(), metrics)
    for _ in range(5):
        limiter.note_local_refusal(KnownWait(1.0, "agora"))
    limiter.note_local_refusal(KnownWait(1.0, None, "network"))
    assert await limiter.pressure("agora") == 5
    assert await limiter.pressure(None) == 6
    text = metrics.render()
    assert 'meetgate_rejections_total{reason="rate_limited"} 6' in text
    assert 'meetgate_rate_limited_total{limit="address"} 5' in text
    assert 'meetgate_rate_limited_total{limit="network"} 1' in text


async def test_refusals_answered_by_the_gate_reach_the_store_in_the_background() -> None:
    # The store counts in fixed 10 s windows: start well inside one, so that no two counts
    # compared below are read on either side of a window's end.
    while time.monotonic() % 10 > 8:
        await asyncio.sleep(0.05)
    store = MemoryStore()
    limiter = RateLimiter(store, rates(), Metrics())
    limiter.note_local_refusal(KnownWait(1.0, "agora"))
    # No pressure read (which flushes itself): the background flush alone stores the first.
    for _ in range(100):
        if await store.read_recent("reject:room:agora", 10):
            break
        await asyncio.sleep(0.01)
    assert await store.read_recent("reject:room:agora", 10) == 1
    assert await store.read_recent(f"reject:{GATE}", 10) == 1
    # Those within the next second wait for a later flush, or for the pressure to be read.
    limiter.note_local_refusal(KnownWait(1.0, "agora"))
    limiter.note_local_refusal(KnownWait(1.0, "agora"))
    await asyncio.sleep(0.05)
    assert await store.read_recent("reject:room:agora", 10) == 1
    assert await limiter.pressure("agora") == 3
    await limiter.aclose()


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "n"]), st.floats(min_value=0.01, max_value=30)),
        max_size=40,
    ),
    now=st.floats(min_value=0, max_value=1e6),
)
def test_a_remembered_wait_ends_when_it_should(steps: list[tuple[str, float]], now: float) -> None:
    known = KnownRefusals()
    longest: dict[str, float] = {}
    addresses = {"a": "192.0.2.1", "b": "192.0.2.2", "n": "192.0.2.3"}
    for which, wait in steps:
        if which == "n":
            known.network_refused(addresses[which], wait, None, now)
            key = network_of(addresses[which])
        else:
            known.address_refused(addresses[which], wait, None, now)
            key = addresses[which]
        longest[key] = max(longest.get(key, 0.0), wait)
    expected = {
        address: max(longest.get(address, 0.0), longest.get(network_of(address), 0.0))
        for address in addresses.values()
    }
    for address, wait in expected.items():
        assert known.wait(address, now).seconds == pytest.approx(wait)
    later = now + max(expected.values(), default=0.0) + 1e-6
    for address in addresses.values():
        assert known.wait(address, later).seconds == 0


def test_the_table_is_bounded() -> None:
    known = KnownRefusals()
    for n in range(MAX_ENTRIES + 10):
        known.address_refused(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 5.0, None, 0.0)
    assert len(known._addresses.until) <= MAX_ENTRIES


def test_network_keys() -> None:
    assert network_of("198.51.100.7") == "198.51.100.0/24"
    assert network_of("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert network_of("unknown") == "unknown"
