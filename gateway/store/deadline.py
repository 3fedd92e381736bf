"""How long the store may keep a request waiting: a deadline for each call, and a budget that all
the calls of one request share.

A stalled store must cost a join or a ticket refresh a bounded wait, then a 503, not a hang. Each
call gets at most `StoreOptions.deadline_seconds`. The gate opens a budget when a request starts
(`begin_request`); every call that request makes (in its task, or in tasks it starts) draws on it,
and one that finds it spent fails at once. The budget counts time spent waiting on the store only,
not the request's own work, so a busy replica does not refuse joins the store answers promptly.
Calls outside a request (background work, the admin API) have their per-call deadline alone.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from gateway.errors import StoreUnavailable


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How a store is driven (the `[store]` settings but its URL).

    `deadline_seconds`: the longest one call may take, waiting for a pooled connection included.
    `request_seconds`: the longest all store calls of one request may take together.
    `pool_size`: connections per replica; a call that finds them all busy waits for one up to
    `pool_wait_seconds` (never beyond its deadline) instead of failing.
    """

    deadline_seconds: float = 0.5
    request_seconds: float = 1.0
    pool_size: int = 64
    pool_wait_seconds: float = 0.5

    def __post_init__(self) -> None:
        for name in ("deadline_seconds", "request_seconds", "pool_wait_seconds"):
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
async def store_deadline(deadline_seconds: float) -> AsyncIterator[None]:
    """Run one store call within its deadline and the request's remaining budget;
    StoreUnavailable when either runs out (the call is cancelled then)."""
    budget = _request_budget.get()
    limit = deadline_seconds if budget is None else min(deadline_seconds, budget.remaining)
    if limit <= 0:
        raise StoreUnavailable()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError as exc:
        raise StoreUnavailable() from exc
    finally:
        if budget is not None:
            budget.remaining -= loop.time() - started
