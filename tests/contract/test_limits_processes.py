"""Rate limits hold across replicas: separate processes, each with its own `RedisStore`, charge
the same limit at once and together never get more than it allows.

The test runs this module as each worker (`python -m tests.contract.test_limits_processes`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import pytest
import redis

from gateway.store import LimitCharge
from gateway.store.redis import RedisStore

pytestmark = pytest.mark.slow

# Apart from db 0 (the gateway processes) and db 1 (the contract suite); only this one is flushed.
LIMITS_DB: Final = 2
WORKERS: Final = 3
REQUESTS_IN_FLIGHT: Final = 4  # per worker
HAMMER_SECONDS: Final = 1.0
SHARED_RATE, SHARED_BURST = 40.0, 8  # the limit all workers share, e.g. a room's
OWN_RATE, OWN_BURST = 30.0, 5  # each worker's own, e.g. its client address's
# One request more may slip in at the edge of the measured span: the first and last request's
# times are taken on the workers, around the round trip, not by Redis.
TOLERANCE: Final = 1
REPO: Final = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Hammered:
    """What one worker saw; times are CLOCK_MONOTONIC, which all processes on a host share."""

    admitted: int
    refused: int
    first_sent: float
    last_answered: float


async def hammer(url: str, shared_key: str, own_key: str) -> Hammered:
    """Charge both limits as fast as REQUESTS_IN_FLIGHT concurrent requests go, once told to."""
    store = await RedisStore.connect(url)
    charges = [
        LimitCharge(shared_key, SHARED_RATE, SHARED_BURST),
        LimitCharge(own_key, OWN_RATE, OWN_BURST),
    ]
    admitted = refused = 0
    sent: list[float] = []
    answered: list[float] = []
    try:
        await store.ping()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        stop = time.monotonic() + HAMMER_SECONDS

        async def charge_until_stop() -> None:
            nonlocal admitted, refused
            while time.monotonic() < stop:
                sent.append(time.monotonic())
                decision = await store.charge_limits(charges)
                answered.append(time.monotonic())
                if decision.allowed:
                    admitted += 1
                else:
                    refused += 1

        await asyncio.gather(*(charge_until_stop() for _ in range(REQUESTS_IN_FLIGHT)))
    finally:
        await store.close()
    return Hammered(admitted, refused, min(sent), max(answered))


def start_worker(url: str, shared_key: str, own_key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.contract.test_limits_processes", url, shared_key, own_key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_processes_sharing_a_limit_never_exceed_it_together(redis_server: str) -> None:
    url = redis_server.rsplit("/", 1)[0] + f"/{LIMITS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    shared_key = f"room-{secrets.token_hex(6)}"
    own_keys = [f"ip-{secrets.token_hex(6)}" for _ in range(WORKERS)]
    workers = [start_worker(url, shared_key, own_key) for own_key in own_keys]
    try:
        # Every worker has its connection before any starts, so that they overlap.
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline() != "ready\n":
                pytest.fail(f"a worker did not start: {worker.communicate(timeout=10)[1]}")
        results: list[Hammered] = []
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            out, err = worker.communicate(timeout=HAMMER_SECONDS + 30)
            assert worker.returncode == 0, err
            results.append(Hammered(**json.loads(out)))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    elapsed = max(r.last_answered for r in results) - min(r.first_sent for r in results)
    admitted = sum(r.admitted for r in results)
    assert elapsed >= HAMMER_SECONDS
    assert admitted <= SHARED_RATE * elapsed + SHARED_BURST + TOLERANCE, results
    for result in results:
        assert result.admitted <= OWN_RATE * elapsed + OWN_BURST + TOLERANCE
        # The workers asked for far more than the limits give, and the shared limit did give.
        assert result.refused > result.admitted
    assert admitted >= SHARED_BURST + SHARED_RATE * HAMMER_SECONDS / 2, results


if __name__ == "__main__":
    url, shared_key, own_key = sys.argv[1:]
    print(json.dumps(asdict(asyncio.run(hammer(url, shared_key, own_key)))))
