"""The Redis store against a real redis-server that is paused (SIGSTOP), killed and busy: calls
end in StoreUnavailable within their deadline and the request's budget instead of hanging, a full
pool is waited for rather than failing, and outages are told once with the store's address (never
its password) and again on recovery.

The time bounds below are bounds on hanging (the deadline plus a generous allowance for a loaded
machine), not performance figures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.errors import StoreUnavailable
from gateway.store import Store, StoreOptions, begin_request, open_store
from gateway.store.health import store_address
from tests.contract.test_store import make_admission, unique
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis

# Beyond the deadline, what a loaded 2-core machine may add before the answer is seen.
ALLOWANCE = 2.0
OPTIONS = StoreOptions(deadline_seconds=0.3, request_seconds=0.6, pool_wait_seconds=0.3)
PASSWORD = "s3cret-store-password"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis(tmp_path / "redis", "--requirepass", PASSWORD)
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.proc.pid, signal.SIGCONT)
        stop_process(server.proc)


def with_password(server: RedisProcess) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"


@pytest.fixture
async def store(own_redis: RedisProcess) -> AsyncIterator[Store]:
    opened = await open_store(with_password(own_redis), OPTIONS)
    await opened.ping()
    try:
        yield opened
    finally:
        with contextlib.suppress(StoreUnavailable):
            await opened.close()


@contextlib.contextmanager
def paused(server: RedisProcess) -> Iterator[None]:
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_a_paused_store_fails_each_call_within_its_deadline(
    store: Store, own_redis: RedisProcess
) -> None:
    with paused(own_redis):
        for call in (store.get_admission("x"), store.is_banned("r", "i", time.time())):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call
            assert time.monotonic() - started < OPTIONS.deadline_seconds + ALLOWANCE
    assert store.health.up is False


async def test_the_calls_of_one_request_share_one_budget(
    store: Store, own_redis: RedisProcess
) -> None:
    async def request() -> int:
        begin_request(OPTIONS.request_seconds)
        failed = 0
        for _ in range(10):
            with contextlib.suppress(StoreUnavailable):
                await store.get_admission(unique("adm"))
            failed += 1
        return failed

    with paused(own_redis):
        started = time.monotonic()
        # Its own task, as the server runs each request: the budget is the request's alone.
        assert await asyncio.create_task(request()) == 10
        # Ten calls of 0.3 s each would take 3 s; the budget ends them after about 0.6 s.
        assert time.monotonic() - started < OPTIONS.request_seconds + ALLOWANCE
    # Once the store answers again (its probe finds out), another request has its own budget.
    await until(lambda: store.health.up)
    assert await asyncio.create_task(store.get_admission("x")) is None


async def test_a_busy_store_is_waited_for_a_stalled_one_is_not(
    store: Store, own_redis: RedisProcess
) -> None:
    # The event loop held for twice the deadline while calls are in flight (a loaded replica):
    # the store answered them meanwhile, so none fails.
    room = unique("room")
    calls = [asyncio.create_task(store.add_admission(make_admission(room))) for _ in range(50)]
    await asyncio.sleep(0)
    time.sleep(2 * OPTIONS.deadline_seconds)  # blocks the loop on purpose: the load
    await asyncio.gather(*calls)
    assert len(await store.list_admissions(room)) == 50
    assert store.health.up
    # While the store is known to be down, calls fail at once rather than wait again.
    with paused(own_redis):
        with pytest.raises(StoreUnavailable):
            await store.ping()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get_admission("x")
        assert time.monotonic() - started < OPTIONS.deadline_seconds


async def test_outage_and_recovery_are_logged_with_the_address_only(
    store: Store, own_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meetgate.store")
    stop_process(own_redis.proc)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert store.health.up is False
    own_redis.restart()
    # Nobody calls: the store's own probe notices the recovery.
    await until(lambda: store.health.up)
    lines = [record.getMessage() for record in caplog.records]
    address = f"127.0.0.1:{own_redis.port}/0"
    assert any("unreachable" in line and address in line for line in lines)
    assert any("answers again after" in line and address in line for line in lines)
    assert not any(PASSWORD in line for line in lines)
    # One line each way, however many calls failed.
    assert sum("unreachable" in line for line in lines) == 1


def test_store_addresses_never_carry_a_password() -> None:
    assert store_address("redis://:pw@db.internal:6380/2") == "db.internal:6380/2"
    assert store_address("redis://user:pw@db.internal/0?socket_timeout=1") == "db.internal:6379/0"
    assert store_address("rediss://:pw@[::1]:6390") == "::1:6390/0"
    sentinel = store_address("redis+sentinel://:pw@s1:26379,s2:26380/main/3")
    assert sentinel == "sentinel:main@s1:26379,s2:26380/3"
    assert "pw" not in sentinel


async def test_a_full_pool_is_waited_for_not_failed(own_redis: RedisProcess) -> None:
    small = StoreOptions(pool_size=2, deadline_seconds=5.0, request_seconds=5.0)
    opened = await open_store(with_password(own_redis), small)
    try:
        room = unique("room")
        await asyncio.gather(*(opened.add_admission(make_admission(room)) for _ in range(200)))
        assert len(await opened.list_admissions(room)) == 200
    finally:
        await opened.close()


async def test_500_concurrent_joins_fit_the_default_pool(own_redis: RedisProcess) -> None:
    # What one join asks of the store, 500 at once, at default settings.
    opened = await open_store(with_password(own_redis))
    try:
        room = unique("room")

        async def join() -> None:
            admission = make_admission(room)
            await opened.charge_limits([])
            await opened.rate_limit(unique("addr"), 100.0, 10)
            assert not await opened.is_banned(room, admission.identity, time.time())
            await opened.add_admission(admission)
            assert await opened.get_admission(admission.id) == admission

        await asyncio.gather(*(join() for _ in range(500)))
    finally:
        await opened.close()
