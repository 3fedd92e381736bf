"""The day's address key behind Redis: agreed by replicas over pub/sub, held in their memory
only. Nothing in Redis, nor in its AOF, can reverse an address hash (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from gateway.admission.address_keys import AddressHasher, utc_day
from gateway.errors import StoreUnavailable
from gateway.store.day_keys import CHANNEL, DayKeys
from gateway.store.redis import RedisStore
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own that writes every change to its AOF at once."""
    server = start_redis(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    try:
        yield server
    finally:
        stop_process(server.proc)


@pytest.fixture
async def replicas(aof_redis: RedisProcess) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two replicas' stores, each on its own connections."""
    one = await RedisStore.connect(aof_redis.url)
    other = await RedisStore.connect(aof_redis.url)
    try:
        yield one, other
    finally:
        await one.close()
        await other.close()


async def eventually(check: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


def aof_text(server: RedisProcess) -> str:
    files = sorted((server.workdir / "appendonlydir").iterdir())
    assert files, "the AOF holds nothing"
    return "".join(path.read_text(errors="replace") for path in files)


async def test_a_replica_that_needs_the_key_is_given_the_one_another_holds(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    one, other = replicas
    tag = await AddressHasher(one).address("192.0.2.7")
    # The other replica asks and is answered: the same hash, without the key stored anywhere.
    assert await AddressHasher(other).address("192.0.2.7") == tag
    day = utc_day(time.time())
    assert one.held_day_key(day) == other.held_day_key(day) is not None
    # Yesterday's key nobody holds: asked once, not made.
    assert await other.day_key(day - 1, create=False) is None


async def test_replicas_that_start_at_once_converge_on_one_key(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    one, other = replicas
    day = utc_day(time.time())
    # Neither holds a key: both ask, neither is answered, both make one and announce it.
    made = await asyncio.gather(one.day_key(day, create=True), other.day_key(day, create=True))
    assert all(made)
    await eventually(lambda: one.held_day_key(day) == other.held_day_key(day) in made, "agreement")
    hashes = [await AddressHasher(store).network("192.0.2.7") for store in replicas]
    assert hashes[0] == hashes[1]


async def test_a_holder_announces_its_key_again_each_period(aof_redis: RedisProcess) -> None:
    store = await RedisStore.connect(aof_redis.url)
    listener = redis.asyncio.Redis.from_url(aof_redis.url, decode_responses=True)
    pubsub = listener.pubsub()
    keys = DayKeys(store.publish, store.subscribe, answer_wait=0.05, announce_every=0.2)
    try:
        day = utc_day(time.time())
        key = await keys.key(day, create=True)
        await pubsub.subscribe("meetgate:channel:" + CHANNEL)
        heard = []
        deadline = time.monotonic() + 5
        # Nobody asks: a replica that missed the first announcement still hears it.
        while len(heard) < 2 and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                heard.append(message["data"])
        assert len(heard) == 2 and heard[0] == heard[1]
        assert heard[0].startswith(f"key {day} ") and heard[0].endswith(f" {key}")
    finally:
        await keys.close()
        await pubsub.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        await listener.aclose()
        await store.close()


@pytest.mark.parametrize(
    "message",
    [
        "",
        "key",
        "key {day}",
        "key {day} 0",
        "key {day} " + "0" * 64,
        "key {day} 0 " + "0" * 63,
        "key {day} 0 " + "0" * 65,
        "key {day} 0 " + "G" * 64,
        "key {day} 0 " + "0" * 64 + " ",
        "key {day} -1 " + "0" * 64,
        "key {day} 1e3 " + "0" * 64,
        "key {day} 9999999999999999 " + "0" * 64,
        "key {old} 0 " + "0" * 64,
        "key 99999999999 0 " + "0" * 64,
        "key -1 0 " + "0" * 64,
        "ask",
        "ask x",
        "ask {day} more",
        "\x00" * 10_000,
    ],
)
async def test_what_does_not_parse_on_the_channel_is_ignored(
    aof_redis: RedisProcess, replicas: tuple[RedisStore, RedisStore], message: str
) -> None:
    one, _ = replicas
    day = utc_day(time.time())
    key = await one.day_key(day, create=True)
    publisher = redis.asyncio.Redis.from_url(aof_redis.url)
    try:
        text = message.format(day=day, old=day - 2)
        await publisher.publish("meetgate:channel:" + CHANNEL, text)
        # A key that does parse (made before the one held) and is published after it is
        # adopted: the bad one was read and passed over.
        older = "f" * 64
        await publisher.publish("meetgate:channel:" + CHANNEL, f"key {day} 1 {older}")
        await eventually(lambda: one.held_day_key(day) == older, "the good key adopted")
        assert key != older
        assert one.held_day_key(day - 2) is None
    finally:
        await publisher.aclose()


async def test_neither_the_key_nor_an_address_reaches_redis_or_its_aof(
    aof_redis: RedisProcess, replicas: tuple[RedisStore, RedisStore]
) -> None:
    one, other = replicas
    addresses = [f"198.51.100.{n}" for n in range(1, 40)]
    tags = []
    for n, address in enumerate(addresses):
        hasher = AddressHasher(replicas[n % 2])
        tags.append(await hasher.address(address))
        await (one if n % 2 else other).rate_limit(f"addr:{tags[-1]}", 1.0, 5)
    day = utc_day(time.time())
    key = one.held_day_key(day)
    assert key is not None and other.held_day_key(day) == key
    client = redis.asyncio.Redis.from_url(aof_redis.url, decode_responses=True)
    try:
        names = [name async for name in client.scan_iter()]
        values = [await client.get(name) for name in names if await client.type(name) == "string"]
    finally:
        await client.aclose()
    assert not [name for name in names if "day" in name]
    assert all(key not in str(value) for value in values)
    text = aof_text(aof_redis)
    # The rate limits were written down under their hashes...
    assert all(tag in text for tag in tags)
    # ...but neither the key that would reverse them nor any address itself.
    assert key not in text and "day-key" not in text
    assert not [address for address in addresses if address in text]
    # What the reviewer did (/tmp/rv/aof.py): every key-sized hex string in the AOF, tried as
    # the key over the addresses' /24: none gives back a hash that was stored.
    for word in {w for w in text.replace("\r\n", " ").split() if len(w) == 64}:
        try:
            candidate = bytes.fromhex(word)
        except ValueError:
            continue
        tried = hmac.new(candidate, b"address\x00" + addresses[0].encode(), hashlib.sha256)
        assert tried.hexdigest()[:32] != tags[0]


async def test_a_redis_restart_loses_no_key_the_replicas_hold(
    aof_redis: RedisProcess, replicas: tuple[RedisStore, RedisStore]
) -> None:
    one, other = replicas
    tag = await AddressHasher(one).address("192.0.2.7")
    stop_process(aof_redis.proc)
    aof_redis.restart()
    # Once the store answers again, the other replica asks, and is answered by the holder; or,
    # asking before the holder has subscribed again, makes a key of its own that loses to the
    # older one the holder announces on subscribing again.
    held = one.held_day_key(utc_day(time.time()))
    deadline = time.monotonic() + 10
    hasher = AddressHasher(other)
    while True:
        with contextlib.suppress(StoreUnavailable):
            if await hasher.address("192.0.2.7") == tag:
                break
        assert time.monotonic() < deadline, "the replicas never agreed again"
        await asyncio.sleep(0.05)
    assert one.held_day_key(utc_day(time.time())) == held
    assert await AddressHasher(one).address("192.0.2.7") == tag


async def test_a_replica_that_needs_a_key_of_a_paused_redis_makes_its_own_in_bounded_time(
    aof_redis: RedisProcess,
) -> None:
    """The channel out of reach does not stop joins by itself: the replica hashes with a key of
    its own (the join's store calls then answer for the store, within their deadline)."""
    store = await RedisStore.connect(aof_redis.url)
    try:
        os.kill(aof_redis.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert len(await AddressHasher(store).address("192.0.2.7")) == 32
            assert time.monotonic() - started < 5
        finally:
            os.kill(aof_redis.proc.pid, signal.SIGCONT)
        # Once Redis answers again, the key is made.
        deadline = time.monotonic() + 10
        while True:
            try:
                assert len(await AddressHasher(store).address("192.0.2.7")) == 32
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    finally:
        await store.close()
