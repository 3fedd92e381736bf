"""How long the store may keep a request waiting: a stall is cut short, a busy store is not.

A call fails with StoreUnavailable once the store has answered *nothing* (no call of this
replica) for `deadline_seconds` while it waits: that is a stall (a paused, partitioned or dead
Redis), and every call waiting on it fails together. A store that keeps answering other calls is
busy, not stalled (500 joins at once on a loaded replica wait on the event loop, not on Redis),
so a call waits on it up to `LONGEST_CALL` seconds. Once a call has found the store stalled, the
store fails further calls at once until it answers again (gateway/store/redis.py), so a join or
refresh making several calls is answered within one deadline, not one per call.

The calls of one request share a budget of such silent waiting (`begin_request`, set by the gate
when a request starts): `request_seconds` in all, so no request waits on a silent store longer
than that however its calls fall. Calls outside a request have their own deadline alone.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from gateway.errors import StoreUnavailable

# The longest one call waits on a store that keeps answering other calls (a busy, not a stalled,
# store); past it the call fails all the same.
LONGEST_CALL: Final = 30.0
# A deadline check the event loop runs later than this is not trusted: the loop was busy, and
# answers may wait unread.
LATE: Final = 0.05


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How a store is driven (the `[store]` settings but its URL).

    `deadline_seconds`: how long a call waits on a store that answers nothing (a stall).
    `request_seconds`: how long all calls of one request may wait on such a store together.
    `pool_size`: connections per replica; a call that finds them all busy waits for one up to
    `pool_wait_seconds` instead of failing (a stall ends that wait at its deadline too).
    `audit_retention_seconds`: how long an audit entry is kept after its time.
    """

    deadline_seconds: float = 0.5
    request_seconds: float = 1.0
    pool_size: int = 64
    pool_wait_seconds: float = 10.0
    # How long a host action's audit entry is kept ([privacy] audit_retention_days).
    audit_retention_seconds: float = 30 * 86_400.0

    def __post_init__(self) -> None:
        for name in (
            "deadline_seconds",
            "request_seconds",
            "pool_wait_seconds",
            "audit_retention_seconds",
        ):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be positive and finite")
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")


class _Budget:
    """What is left of one request's store time; shared (by reference) with the tasks it
    starts."""

    __slots__ = ("remaining",)

    def __init__(self, seconds: float) -> None:
        self.remaining = seconds


_request_budget: ContextVar[_Budget | None] = ContextVar("meetgate_store_budget", default=None)


def begin_request(seconds: float) -> None:
    """Give the current request (its task and the tasks it starts) `seconds` of store time.

    Set in the request's own context: the server runs each request in a task of its own, so the
    budget ends with the request and never leaks into another.
    """
    _request_budget.set(_Budget(seconds))


@asynccontextmanager
async def store_deadline(
    deadline_seconds: float, last_answer: Callable[[], float]
) -> AsyncIterator[None]:
    """Run one store call until it is answered, or until the store has answered nothing
    (`last_answer()`: when it last answered any call, on the event loop's clock) for the
    deadline or the rest of the request's budget, or for `LONGEST_CALL` in all: then cancel it
    and raise StoreUnavailable."""
    budget = _request_budget.get()
    silence = deadline_seconds if budget is None else min(deadline_seconds, budget.remaining)
    if silence <= 0:
        raise StoreUnavailable()
    loop = asyncio.get_running_loop()
    started = loop.time()
    give_up = started + LONGEST_CALL

    def quiet_since() -> float:
        return max(started, last_answer())

    try:
        async with asyncio.timeout(None) as timeout:
            watch: list[asyncio.TimerHandle] = []

            def check(due: float) -> None:
                now = loop.time()
                if now - due > LATE and now < give_up:
                    # The loop itself was held up (load, not the store): the answers that came
                    # meanwhile are read before the store is judged silent.
                    watch[0] = loop.call_at(now + LATE, check, now + LATE)
                elif now >= give_up or now - quiet_since() >= silence:
                    timeout.reschedule(now)
                else:
                    due = min(give_up, quiet_since() + silence)
                    watch[0] = loop.call_at(due, check, due)

            watch.append(loop.call_at(started + silence, check, started + silence))
            try:
                yield
            finally:
                watch[0].cancel()
    except TimeoutError as exc:
        raise StoreUnavailable() from exc
    finally:
        if budget is not None:
            budget.remaining -= max(0.0, loop.time() - quiet_since())
