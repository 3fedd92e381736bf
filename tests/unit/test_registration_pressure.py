"""A room's registration refusals are counted apart from its joins' and from the gate's: the
pressure that asks proof-of-work of the room's joins (and the dashboard's "under attack") never
rises with a registration flood; the registration form's reads both."""

from __future__ import annotations

import pytest

from gateway.admission.limits import Attempt, RateLimiter
from gateway.errors import RateLimited
from gateway.metrics import Metrics
from gateway.settings import Rate, RateSettings
from gateway.store.memory import MemoryStore

WIDE = Rate(per_minute=1_000_000, burst=100_000)
NEVER = Rate(per_minute=0.001, burst=3)


def limiter() -> RateLimiter:
    values: dict[str, object] = {
        name: WIDE for name in ("address", "network", "room", "identity", "invite", "gate")
    }
    values["registration"] = NEVER
    return RateLimiter(MemoryStore(), RateSettings.model_validate(values), Metrics())


async def test_refused_registrations_raise_only_the_registrations_pressure() -> None:
    limits = limiter()
    refused = 0
    for i in range(8):
        try:
            await limits.charge(Attempt(f"10.{i}.0.7", registration="agora"))
        except RateLimited:
            refused += 1
    await limits.note_rejection("agora", "invalid_address", registration=True)
    assert refused == 5
    assert await limits.pressure("agora", registration=True) == refused + 1
    assert await limits.pressure("agora") == 0
    assert await limits.pressure(None) == 0


@pytest.mark.parametrize("registration", [False, True], ids=["join", "registration"])
async def test_a_joins_refusal_raises_the_rooms_and_the_gates(registration: bool) -> None:
    limits = limiter()
    await limits.note_rejection("agora", "invite_unknown")
    assert await limits.pressure("agora", registration=registration) == (0 if registration else 1)
    assert await limits.pressure(None) == 1
