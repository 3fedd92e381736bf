"""A room's registrations are charged against a limit of their own: a registration flood from many
networks spends neither the room's join budget nor the gate's, so the people holding invites
still get in; the registration limit refuses the flood, under its own name and words."""

from __future__ import annotations

import pytest

from gateway.admission.limits import Attempt, RateLimiter
from gateway.errors import RATE_LIMIT_MESSAGES, RateLimited
from gateway.metrics import Metrics
from gateway.settings import Rate, RateSettings, RoomRates
from gateway.store.memory import MemoryStore

WIDE = Rate(per_minute=1_000_000, burst=100_000)
NEVER = Rate(per_minute=0.001, burst=3)


def limiter(**changes: object) -> RateLimiter:
    values: dict[str, object] = {
        name: WIDE
        for name in ("address", "network", "room", "identity", "invite", "gate", "registration")
    }
    values.update(changes)
    return RateLimiter(MemoryStore(), RateSettings.model_validate(values), Metrics())


def network_address(i: int) -> str:
    return f"10.{i // 200}.{i % 200}.7"


async def test_a_registration_flood_from_many_networks_costs_no_join() -> None:
    # The room's and the gate's budgets are as small as the registrations' (3): a flood of
    # registrations spending them would refuse the invited.
    limits = limiter(room=NEVER, gate=NEVER, registration=NEVER)
    allowed = refused = 0
    for i in range(50):
        try:
            await limits.charge(
                Attempt(network_address(i), registration="agora", identity=f"address {i}")
            )
            allowed += 1
        except RateLimited as refusal:
            assert refusal.limit == "registration"
            assert refusal.message == RATE_LIMIT_MESSAGES["registration"]
            refused += 1
    assert (allowed, refused) == (3, 47)
    # Every invited person gets in, up to the room's own budget.
    for i in range(3):
        await limits.charge(
            Attempt(f"192.0.2.{i + 1}", room="agora", identity=f"p{i}", invite=f"i{i}")
        )
    with pytest.raises(RateLimited) as full:
        await limits.charge(Attempt("192.0.2.9", room="agora", identity="p9", invite="i9"))
    assert full.value.limit in ("room", "gate")


async def test_joins_never_spend_the_registrations_budget() -> None:
    limits = limiter(room=WIDE, registration=NEVER)
    for i in range(20):
        await limits.charge(Attempt(network_address(i), room="agora", identity=f"p{i}"))
    for i in range(3):
        await limits.charge(Attempt(network_address(i), registration="agora"))
    with pytest.raises(RateLimited):
        await limits.charge(Attempt(network_address(4), registration="agora"))


async def test_each_room_has_its_own_registrations_budget_and_may_override_it() -> None:
    limits = limiter(
        registration=NEVER,
        rooms={"assembly": RoomRates(registration=Rate(per_minute=0.001, burst=6))},
    )
    for room, burst in (("agora", 3), ("forum", 3), ("assembly", 6)):
        for i in range(burst):
            await limits.charge(Attempt(network_address(i), registration=room))
        with pytest.raises(RateLimited):
            await limits.charge(Attempt(network_address(burst), registration=room))


async def test_a_registration_is_still_charged_to_its_address_network_and_identity() -> None:
    for limit, attempts in (
        ("address", [Attempt("198.51.100.1", registration=f"room-{i}") for i in range(4)]),
        ("network", [Attempt(f"198.51.100.{i}", registration=f"room-{i}") for i in range(4)]),
        (
            "identity",
            [Attempt(network_address(i), registration="agora", identity="a") for i in range(4)],
        ),
    ):
        limits = limiter(**{limit: NEVER})
        for attempt in attempts[:3]:
            await limits.charge(attempt)
        with pytest.raises(RateLimited) as refused:
            await limits.charge(attempts[3])
        assert refused.value.limit == limit


def test_a_room_that_only_sets_its_registrations_limit_is_joined_as_any() -> None:
    # Rooms whose join limits vary are joined step by step (no store-side plain join): one
    # that varies only the registrations' need not be.
    limits = limiter(
        rooms={
            "assembly": RoomRates(registration=NEVER),
            "forum": RoomRates(registration=NEVER, room=NEVER),
        }
    )
    assert limits.varied_rooms() == frozenset({"forum"})


def test_an_attempt_is_a_join_or_a_registration_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        Attempt("198.51.100.1", room="agora", registration="agora")
